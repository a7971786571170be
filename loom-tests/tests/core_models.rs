//! Loom models of the concurrency core itself (`quickslot::loom_core`, a
//! `Core<u32>` surface that exists only under `--cfg loom`): register,
//! offer, cancel, close, resize and queue compaction, without the pool layer
//! above. Compaction runs on every cancel under loom, so these models reach
//! it.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release --test core_models
//! ```
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::check;
use quickslot::loom_core::{Core, Got};

/// A core of `n` slots, all taken (as if held by users).
fn full(n: usize) -> Arc<Core> {
    let core = Arc::new(Core::new(n, n));
    for _ in 0..n {
        assert_eq!(core.try_acquire(), Got::Slot);
    }
    core
}

/// c1: a registration racing a release: the waiter is served with the
/// item, never left asleep beside it.
#[test]
fn c1_register_racing_release() {
    check("c1_register_racing_release", || {
        let core = full(1);
        let c = core.clone();
        let releaser = thread::spawn(move || c.release_item(7));
        let waiter = core.register();
        assert_eq!(loom::future::block_on(core.wait(&waiter)), Got::Item(7));
        releaser.join().unwrap();
        assert_eq!((core.idle_len(), core.waiting(), core.size()), (0, 0, 1));
    });
}

/// c2: a cancel racing the offer of an item: the item is never lost; it
/// ends idle (passed on by the cancel, or parked by the releaser).
#[test]
fn c2_cancel_racing_offer() {
    check("c2_cancel_racing_offer", || {
        let core = full(1);
        let waiter = core.register();
        let c = core.clone();
        let releaser = thread::spawn(move || c.release_item(7));
        core.cancel(&waiter);
        releaser.join().unwrap();
        assert_eq!((core.idle_len(), core.waiting(), core.size()), (1, 0, 1));
        assert_eq!(core.try_acquire(), Got::Item(7));
    });
}

/// c3: a release racing `close`: once `close` has returned, nothing is
/// handed out, and the released item is dropped (size back to zero).
#[test]
fn c3_close_racing_release_then_acquire() {
    check("c3_close_racing_release_then_acquire", || {
        let core = full(1);
        let c = core.clone();
        let releaser = thread::spawn(move || c.release_item(7));
        core.close();
        assert_eq!(core.try_acquire(), Got::Closed);
        releaser.join().unwrap();
        assert_eq!(core.try_acquire(), Got::Closed);
        assert_eq!((core.idle_len(), core.size()), (0, 0));
    });
}

/// c4: a compaction (triggered by a cancel) racing two releases, with two
/// live waiters in the line: both waiters are served; no item stays idle
/// beside a waiter.
#[test]
fn c4_compaction_racing_releases() {
    check("c4_compaction_racing_releases", || {
        let core = full(2);
        let first = core.register();
        let second = core.register();
        let stale = core.register();
        let c = core.clone();
        let releaser = thread::spawn(move || {
            c.release_item(1);
            c.release_item(2);
        });
        // Cancelling trims the line (threshold 0 under loom).
        core.cancel(&stale);
        releaser.join().unwrap();
        let mut served = [core.poll(&first), core.poll(&second)];
        served.sort_by_key(|g| match g {
            Got::Item(v) => *v,
            _ => 0,
        });
        assert_eq!(served, [Got::Item(1), Got::Item(2)]);
        assert_eq!((core.idle_len(), core.waiting(), core.size()), (0, 0, 2));
    });
}

/// c5: a compaction racing a newcomer: the oldest live waiter, which the
/// compaction moves to the front, is served before the newcomer.
#[test]
fn c5_compaction_keeps_the_oldest_first() {
    check("c5_compaction_keeps_the_oldest_first", || {
        let core = full(1);
        let oldest = core.register();
        let stale = core.register();
        let c = core.clone();
        let newcomer = thread::spawn(move || {
            let w = c.register();
            // Hold the record until the main thread has released once.
            w
        });
        core.cancel(&stale);
        let newcomer = newcomer.join().unwrap();
        core.release_item(1);
        assert_eq!(core.poll(&oldest), Got::Item(1));
        assert_eq!(core.poll(&newcomer), Got::Waiting);
        core.release_item(2);
        assert_eq!(core.poll(&newcomer), Got::Item(2));
    });
}

/// c6: a grow racing a registration: the new room goes to the waiter as a
/// slot, never lost.
#[test]
fn c6_grow_racing_register() {
    check("c6_grow_racing_register", || {
        let core = Arc::new(Core::new(1, 2));
        assert_eq!(core.try_acquire(), Got::Slot);
        let c = core.clone();
        let grower = thread::spawn(move || c.resize(2));
        let waiter = core.register();
        assert_eq!(loom::future::block_on(core.wait(&waiter)), Got::Slot);
        grower.join().unwrap();
        assert_eq!((core.size(), core.waiting()), (2, 0));
    });
}

/// c7: a close racing a waiter: the waiter is told, never left waiting.
#[test]
fn c7_close_racing_register() {
    check("c7_close_racing_register", || {
        let core = full(1);
        let c = core.clone();
        let closer = thread::spawn(move || {
            c.close();
        });
        let waiter = core.register();
        assert_eq!(loom::future::block_on(core.wait(&waiter)), Got::Closed);
        closer.join().unwrap();
        assert_eq!(core.waiting(), 0);
    });
}
