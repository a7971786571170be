//! Loom models of the pool core, driven through the public API.
//!
//! Each model is at most three spawned threads over a pool of one or two
//! resources. Every resource carries a loom `UnsafeCell` ownership marker
//! written by each holder (two holders at once, or a hand-off without
//! happens-before, fail the model) and counts its drops; a waiter that is
//! never served leaves its thread blocked, which loom reports as a deadlock.
//! Each model ends by checking the pool's gauges and counters.
//!
//! Run with `scripts/loom` (all models, then the seeded-bug check). The
//! seeded bugs (`cfg(quickslot_bug = "...")` in `src/`) and the models that
//! must catch each are listed once, in `loom_tests::SEEDED_BUGS`.
#![cfg(loom)]

use std::task::Poll;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{
    acquire, acquire_owned, check, hold, poll_once, pool, pool_sharing, pool_with, Script,
};
use quickslot::loom_core::{Core, Got};
use quickslot::{Capacity, Error, ReuseOrder, TryAcquireError};

/// Model 1, no lost wake-up: one resource, a holder that releases it and a
/// waiter that arrives at any point around that release. The waiter always
/// completes, the resource is never held twice, and afterwards it is idle
/// with exact counts.
#[test]
fn m1_holder_and_waiter() {
    check("m1_holder_and_waiter", || {
        let (pool, probe) = pool(1, 0);
        let a = acquire(&pool).unwrap();
        hold(&a, 1);
        let holder = thread::spawn(move || {
            hold(&a, 2);
            drop(a);
        });
        let p = pool.clone();
        let waiter = thread::spawn(move || {
            let b = acquire(&p).unwrap();
            hold(&b, 3);
            assert_eq!(b.id, 1);
        });
        holder.join().unwrap();
        waiter.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!(s.acquired_immediately + s.acquired_after_wait, 2);
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 2, one notification per freed resource: two resources held, two
/// waiters, and two quick releases from the same thread. Both waiters
/// complete (a release never wakes one waiter for two resources, or wakes
/// the same one twice), and both resources end idle. FIFO reuse order.
#[test]
fn m2_two_waiters_two_releases() {
    check("m2_two_waiters_two_releases", || {
        two_waiters_two_releases(ReuseOrder::Fifo)
    });
}

/// Model 2 with LIFO reuse order: the same property, with the idle store's
/// tagged index stack (its own atomics) under loom as well.
#[test]
fn m2_two_waiters_two_releases_lifo() {
    check("m2_two_waiters_two_releases_lifo", || {
        two_waiters_two_releases(ReuseOrder::Lifo)
    });
}

fn two_waiters_two_releases(order: ReuseOrder) {
    let (pool, probe) = pool_with(
        2,
        Script {
            order,
            ..Script::default()
        },
    );
    let a = acquire(&pool).unwrap();
    let b = acquire(&pool).unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let p = pool.clone();
            thread::spawn(move || {
                let r = acquire(&p).unwrap();
                hold(&r, 10 + i);
            })
        })
        .collect();
    hold(&a, 1);
    hold(&b, 2);
    drop(a);
    drop(b);
    for w in waiters {
        w.join().unwrap();
    }

    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use, s.waiting), (2, 2, 0, 0));
    assert_eq!(s.acquired_immediately + s.acquired_after_wait, 4);
    assert_eq!((probe.created(), probe.dropped()), (2, 0));
    drop(pool);
    assert_eq!(probe.dropped(), 2);
}

/// Model 3, a granted waiter that goes away passes its grant on: the first
/// waiter is queued and granted the only resource, then its future is
/// dropped before it runs again, while a second waiter arrives at any
/// point. The second waiter always completes, and the resource ends idle
/// with exact counts (it is neither dropped nor counted twice).
#[test]
fn m3_granted_waiter_dropped() {
    check("m3_granted_waiter_dropped", || {
        let (pool, probe) = pool(1, 0);
        let a = acquire(&pool).unwrap();
        let mut first = acquire_owned(&pool);
        assert!(poll_once(&mut first).is_pending());
        let p = pool.clone();
        let second = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 2);
        });
        hold(&a, 1);
        // The first waiter is at the head of the line: this grants it.
        drop(a);
        // Dropped before it looks at its grant.
        drop(first);
        second.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!(s.acquired_immediately + s.acquired_after_wait, 2);
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 4, cancel racing a grant: a queued waiter's future is dropped while
/// another thread releases the only resource to it. Whichever side wins the
/// record's state, the resource has exactly one owner afterwards: it is
/// idle, the next acquire gets it at once, and nothing was dropped.
#[test]
fn m4_cancel_racing_grant() {
    check("m4_cancel_racing_grant", || {
        let (pool, probe) = pool(1, 0);
        let a = acquire(&pool).unwrap();
        let mut waiter = acquire_owned(&pool);
        assert!(poll_once(&mut waiter).is_pending());
        let releaser = thread::spawn(move || {
            hold(&a, 1);
            drop(a);
        });
        drop(waiter);
        releaser.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        let again = pool.try_acquire().expect("the resource is idle");
        hold(&again, 2);
        assert_eq!(again.id, 1);
        drop(again);
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 5, a failed create frees its slot: in a pool of one whose first
/// create fails, two acquires race. Whichever creates first gets the error
/// at once; the other (possibly already waiting) is handed the freed slot,
/// creates, and completes. Counts are exact.
#[test]
fn m5_failed_create_frees_slot() {
    check("m5_failed_create_frees_slot", || {
        let (pool, probe) = pool(1, 1);
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let p = pool.clone();
                thread::spawn(move || match acquire(&p) {
                    Ok(r) => {
                        hold(&r, i + 1);
                        true
                    }
                    Err(Error::Create(_)) => false,
                    Err(e) => panic!("unexpected {e}"),
                })
            })
            .collect();
        let served: Vec<bool> = tasks.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(served.iter().filter(|ok| **ok).count(), 1, "{served:?}");

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!((s.created, s.create_errors), (1, 1));
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 5b, an acquire dropped in the middle of its create frees the slot:
/// in a pool of one, the first acquire grows and is dropped while its
/// create is pending, as a second acquire arrives at any point. The second
/// acquire always completes (with the pool's only resource), the creating
/// gauge returns to zero and counts are exact.
#[test]
fn m5b_cancelled_create_frees_slot() {
    check("m5b_cancelled_create_frees_slot", || {
        let (pool, probe) = pool_with(
            1,
            Script {
                pend_first: 1,
                ..Script::default()
            },
        );
        let mut first = acquire_owned(&pool);
        assert!(poll_once(&mut first).is_pending());
        assert_eq!(pool.status().creating, 1);
        let p = pool.clone();
        let second = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 2);
            assert_eq!(r.id, 1);
        });
        drop(first);
        second.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!((s.creating, s.created, s.create_errors), (0, 1, 0));
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 6, close racing waiters and a release: two waiters queue for the
/// only resource while one thread closes the pool and the holder returns
/// it. Every waiter ends, with the resource or with `Closed`; the resource
/// is dropped exactly once, by the pool, and the pool ends empty.
#[test]
fn m6_close_racing_waiters_and_release() {
    check("m6_close_racing_waiters_and_release", || {
        let (pool, probe) = pool(1, 0);
        let a = acquire(&pool).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let p = pool.clone();
                thread::spawn(move || match acquire(&p) {
                    Ok(r) => {
                        hold(&r, 10 + i);
                        true
                    }
                    Err(Error::Closed) => false,
                    Err(e) => panic!("unexpected {e}"),
                })
            })
            .collect();
        let p = pool.clone();
        let closer = thread::spawn(move || p.close());
        hold(&a, 1);
        drop(a);
        for w in waiters {
            w.join().unwrap();
        }
        closer.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (0, 0, 0, 0));
        assert_eq!(s.discarded.closed, 1);
        assert_eq!((probe.created(), probe.dropped()), (1, 1));
        assert!(matches!(pool.try_acquire(), Err(TryAcquireError::Closed)));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 7, `try_acquire` never jumps the line: one thread releases the only
/// resource while a waiter queues for it and a third thread calls
/// `try_acquire`. If the waiter was queued before `try_acquire` started,
/// `try_acquire` only gets the resource after the waiter was served (and
/// gave it back); the waiter always completes, the resource is never held
/// twice, and it ends idle.
#[test]
fn m7_try_acquire_racing_acquire_and_release() {
    check("m7_try_acquire_racing_acquire_and_release", || {
        let (pool, probe) = pool(1, 0);
        let a = acquire(&pool).unwrap();
        let registered = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicBool::new(false));
        let releaser = thread::spawn(move || {
            hold(&a, 1);
            drop(a);
        });
        let p = pool.clone();
        let (flag, done) = (registered.clone(), served.clone());
        let waiter = thread::spawn(move || {
            let mut fut = acquire_owned(&p);
            let r = match poll_once(&mut fut) {
                Poll::Ready(r) => r,
                Poll::Pending => {
                    flag.store(true, Ordering::SeqCst);
                    loom::future::block_on(fut)
                }
            };
            let r = r.unwrap();
            done.store(true, Ordering::SeqCst);
            hold(&r, 2);
        });
        let p = pool.clone();
        let (flag, done) = (registered.clone(), served.clone());
        let trier = thread::spawn(move || {
            let queued_before = flag.load(Ordering::SeqCst);
            match p.try_acquire() {
                Ok(r) => {
                    hold(&r, 3);
                    assert!(
                        !queued_before || done.load(Ordering::SeqCst),
                        "try_acquire took the resource a queued waiter was waiting for"
                    );
                }
                Err(TryAcquireError::Busy | TryAcquireError::Exhausted) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        });
        releaser.join().unwrap();
        waiter.join().unwrap();
        trier.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!((probe.created(), probe.dropped()), (1, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 1);
    });
}

/// Model 8, a broken resource frees its slot for a waiter: the holder marks
/// the only resource broken and returns it while a waiter queues. The
/// waiter always completes with a freshly created resource; the broken one
/// is dropped exactly once and counts are exact.
#[test]
fn m8_broken_on_return_racing_waiter() {
    check("m8_broken_on_return_racing_waiter", || {
        let (pool, probe) = pool(1, 0);
        let mut a = acquire(&pool).unwrap();
        a.broken = true;
        let releaser = thread::spawn(move || {
            hold(&a, 1);
            drop(a);
        });
        let p = pool.clone();
        let waiter = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 2);
            assert_eq!(r.id, 2, "the waiter got the broken resource");
        });
        releaser.join().unwrap();
        waiter.join().unwrap();

        let s = pool.status();
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        assert_eq!((s.created, s.discarded.broken), (2, 1));
        assert_eq!((probe.created(), probe.dropped()), (2, 1));
        drop(pool);
        assert_eq!(probe.dropped(), 2);
    });
}

/// Model 9a, shrinking racing acquire and release: a pool of two, both
/// resources held, shrinks to one while one holder returns its resource
/// and a waiter queues; then the other holder returns its own. The waiter
/// always completes, no resource is held twice, and the pool ends at its
/// new size with every surplus resource dropped exactly once.
#[test]
fn m9a_shrink_racing_acquire_and_release() {
    check("m9a_shrink_racing_acquire_and_release", || {
        let (pool, probe) = pool_with(
            2,
            Script {
                max_size_limit: Some(2),
                ..Script::default()
            },
        );
        let a = acquire(&pool).unwrap();
        let b = acquire(&pool).unwrap();
        let p = pool.clone();
        let resizer = thread::spawn(move || p.resize(1).unwrap());
        let holder = thread::spawn(move || {
            hold(&a, 1);
            drop(a);
        });
        let p = pool.clone();
        let waiter = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 3);
        });
        hold(&b, 2);
        drop(b);
        resizer.join().unwrap();
        holder.join().unwrap();
        waiter.join().unwrap();

        let s = pool.status();
        assert_eq!(s.max_size, 1);
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
        // An acquire that grows with the old maximum while the resize runs
        // is allowed (it is ordered before the resize); its surplus is shed
        // on return. So: one or two resources shed, one left.
        assert_eq!(probe.created() - probe.dropped(), 1, "{s:?}");
        assert_eq!(s.discarded.resized as usize, probe.dropped(), "{s:?}");
        assert!(probe.created() <= 3, "{s:?}");
        drop(pool);
        assert_eq!(probe.dropped(), probe.created());
    });
}

/// Model 9b, growing racing a waiter: a pool of one whose resource stays
/// held grows to two while an acquire queues for it. The new room alone
/// must serve the waiter (with a fresh resource), whether it queued before
/// the resize or arrived after it; counts are exact.
#[test]
fn m9b_grow_racing_waiter() {
    check("m9b_grow_racing_waiter", || {
        let (pool, probe) = pool_with(
            1,
            Script {
                max_size_limit: Some(2),
                ..Script::default()
            },
        );
        let a = acquire(&pool).unwrap();
        let p = pool.clone();
        let resizer = thread::spawn(move || p.resize(2).unwrap());
        let p = pool.clone();
        let waiter = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 2);
            assert_eq!(r.id, 2, "served by the held resource");
        });
        hold(&a, 1);
        resizer.join().unwrap();
        // Still holding `a`: only the resize can have served the waiter.
        waiter.join().unwrap();
        drop(a);

        let s = pool.status();
        assert_eq!(s.max_size, 2);
        assert_eq!((s.size, s.idle, s.in_use, s.waiting), (2, 2, 0, 0));
        assert_eq!((probe.created(), probe.dropped()), (2, 0));
        drop(pool);
        assert_eq!(probe.dropped(), 2);
    });
}

/// Model 10a, shared capacity, no lost hand-over between pools: a budget of
/// one unit, held by a resource of pool A; its holder returns it (idle)
/// while an acquire of pool B arrives at any point around that return.
/// B is always served (A's idle resource is closed for it, by A's return
/// or by B's own look after it queued), the budget is never exceeded, and
/// nothing leaks.
#[test]
fn m10a_idle_return_racing_a_waiter_of_another_pool() {
    check("m10a_idle_return_racing_a_waiter_of_another_pool", || {
        let cap = Capacity::new(1);
        let (a, probe_a) = pool_sharing(&cap, 1);
        let (b, probe_b) = pool_sharing(&cap, 1);
        let held = acquire(&a).unwrap();
        hold(&held, 1);
        let holder = thread::spawn(move || drop(held));
        let p = b.clone();
        let waiter = thread::spawn(move || {
            let r = acquire(&p).unwrap();
            hold(&r, 2);
        });
        holder.join().unwrap();
        waiter.join().unwrap();

        let (sa, sb) = (a.status(), b.status());
        assert_eq!(cap.waiting(), 0);
        assert_eq!(cap.in_use(), sa.size + sb.size, "units match resources");
        assert_eq!((sa.size, sa.discarded.reclaimed), (0, 1));
        assert_eq!((probe_a.created(), probe_a.dropped()), (1, 1));
        // B's resource is idle, unless B's own return came while the
        // releaser that served B had not yet taken B's record off the
        // budget's count: then B closed it for a waiter already served (a
        // needless close; never a lost or extra unit).
        assert_eq!(sb.size + sb.discarded.reclaimed as usize, 1);
        // Closing leaves the budget (whose member list holds strong
        // references under loom), so everything drops.
        a.close();
        b.close();
        drop((a, b));
        assert_eq!((probe_b.created(), probe_b.dropped()), (1, 1));
        assert_eq!(cap.waiting(), 0);
        assert_eq!(cap.in_use(), 0);
    });
}

/// Model 10b, shared capacity, same pool: a budget of one unit held by
/// a resource of a pool of two; an acquire of the same pool gets a slot,
/// finds the budget spent and waits for a unit, while the resource is
/// returned at any point around that. The acquire is always served by the
/// returned resource itself (no close and reopen).
#[test]
fn m10b_return_racing_a_waiter_for_a_unit_of_the_same_pool() {
    check(
        "m10b_return_racing_a_waiter_for_a_unit_of_the_same_pool",
        || {
            let cap = Capacity::new(1);
            let (pool, probe) = pool_sharing(&cap, 2);
            let held = acquire(&pool).unwrap();
            hold(&held, 1);
            let holder = thread::spawn(move || drop(held));
            let p = pool.clone();
            let waiter = thread::spawn(move || {
                let r = acquire(&p).unwrap();
                hold(&r, 2);
                assert_eq!(r.id, 1, "served by the returned resource");
            });
            holder.join().unwrap();
            waiter.join().unwrap();

            let s = pool.status();
            assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0));
            assert_eq!((cap.in_use(), cap.waiting()), (1, 0));
            assert_eq!((probe.created(), probe.dropped()), (1, 0));
            pool.close();
            drop(pool);
            assert_eq!((probe.dropped(), cap.in_use()), (1, 0));
        },
    );
}

// ----------------------------------------------------------------------------
// Models of the concurrency core itself, through `quickslot::loom_core` (a
// `Core<u32>` surface that exists only under `--cfg loom`), without the pool
// layer above: register, offer, cancel, close, resize and queue compaction.
// Compaction runs on every cancel under loom, so these models reach it.
// ----------------------------------------------------------------------------

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

/// c8: a blocking waiter (a thread parked until its record is notified, as
/// `acquire_blocking` is) and an async waiter (a future polled by hand)
/// in one line, racing two releases: each is served once, the first to
/// register with the first item.
#[test]
fn c8_blocking_and_async_waiters_racing_releases() {
    check("c8_blocking_and_async_waiters_racing_releases", || {
        let core = full(2);
        let blocking = core.register();
        let c = core.clone();
        let parked = thread::spawn(move || loom::future::block_on(c.wait(&blocking)));
        let queued = core.register();
        let c = core.clone();
        let releaser = thread::spawn(move || {
            c.release_item(1);
            c.release_item(2);
        });
        let got = loom::future::block_on(core.wait(&queued));
        let first = parked.join().unwrap();
        releaser.join().unwrap();
        assert_eq!((first, got), (Got::Item(1), Got::Item(2)));
        assert_eq!((core.idle_len(), core.waiting(), core.size()), (0, 0, 2));
    });
}

/// c9: two arrivals race for the last place in a bounded line while a
/// release serves the head: exactly one is admitted, and the counts stay
/// exact.
#[test]
fn c9_bounded_line_admits_exactly_up_to_its_bound() {
    check("c9_bounded_line_admits_exactly_up_to_its_bound", || {
        let core = full(1);
        let first = core.register_bounded(2).expect("room for two");
        let c = core.clone();
        let racer = thread::spawn(move || c.register_bounded(2).is_some());
        let mine = core.register_bounded(2);
        let theirs = racer.join().unwrap();
        assert!(mine.is_some() != theirs, "exactly one took the last place");
        assert_eq!(core.waiting(), 2);
        core.release_item(1);
        assert_eq!(core.poll(&first), Got::Item(1));
        assert_eq!(core.waiting(), 1);
    });
}

/// c10: a finished record serves the next wait: each of two threads waits
/// for the one item, retires its record (kept only if the releaser let go
/// of it), and releases the item, so a thread may queue with a record the
/// other just finished with. Both waits are served and the item ends idle;
/// then a wait from the spare records, with nobody racing.
#[test]
fn c10_a_reused_record_serves_the_next_wait() {
    check("c10_a_reused_record_serves_the_next_wait", || {
        let core = full(1);
        let wait_and_pass_on = |core: &Core| {
            let waiter = core.register();
            let got = loom::future::block_on(core.wait(&waiter));
            core.retire(waiter);
            assert_eq!(got, Got::Item(7));
            core.release_item(7);
        };
        let c = core.clone();
        let first = thread::spawn(move || wait_and_pass_on(&c));
        core.release_item(7);
        wait_and_pass_on(&core);
        first.join().unwrap();
        assert_eq!((core.idle_len(), core.waiting(), core.size()), (1, 0, 1));
        assert_eq!(core.try_acquire(), Got::Item(7));
        let waiter = core.register();
        assert_eq!(core.poll(&waiter), Got::Waiting);
        core.release_item(7);
        assert_eq!(core.poll(&waiter), Got::Item(7));
        core.retire(waiter);
    });
}
