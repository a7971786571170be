//! quickslot built with no runtime feature (neither `tokio` nor `smol`):
//! the pool works on any executor for everything that needs no timer and
//! no task, and `Builder::build` refuses each setting that needs one with
//! `BuildError::NeedsRuntime` instead of panicking later.
//!
//! Run on its own (`cargo test -p quickslot-no-runtime-tests`): in a
//! workspace-wide build other members turn a runtime feature on.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future::{block_on, poll_once};
use quickslot::{BuildError, Error, Pool, Pooled, TryAcquireError};
use quickslot_no_runtime_tests::{Counting, Probe};

fn pool(max_size: usize) -> Pool<Counting> {
    Pool::builder(Counting::default())
        .max_size(max_size)
        .build()
        .expect("the defaults need no runtime")
}

/// The pool's clock is std's in this build. (Checked when run rather than
/// by a type annotation: `cargo clippy --workspace --all-features` builds
/// this crate against quickslot with Tokio's clock, and must compile it.)
#[test]
fn the_pool_clock_is_std() {
    let p = pool(1);
    let before = Instant::now();
    let guard = block_on(p.acquire()).unwrap();
    let created = Pooled::info(&guard).created_at();
    assert_eq!(
        std::any::type_name_of_val(&created),
        std::any::type_name::<Instant>(),
        "quickslot::Instant is std's without the tokio feature"
    );
    assert!(created.elapsed() <= before.elapsed());
}

/// Acquire (which waits without a deadline: the default `acquire_timeout`
/// is `None` here), release, `try_acquire`, `with`, `resize`, `retain`,
/// `status` and `close` under `futures_lite::future::block_on`.
#[test]
fn the_pool_works_under_futures_lite_block_on() {
    let p = pool(2);
    block_on(async {
        let a = p.acquire().await.unwrap();
        let b = p.acquire().await.unwrap();
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Exhausted);
        drop(a);
        let again = p.try_acquire().unwrap();
        assert_eq!(again.id, 0, "released and reused");
        drop((again, b));
        assert_eq!(p.with(async |res| res.id).await.unwrap(), 0);
    });
    let s = p.status();
    assert_eq!((s.size, s.idle, s.in_use, s.created), (2, 2, 0, 2), "{s:?}");
    assert_eq!(p.retain(|res, _| res.id != 1), 1);
    assert_eq!(p.manager().dropped(), 1);
    p.resize(1).unwrap();
    assert_eq!(p.status().max_size, 1);
    p.close();
    assert!(p.is_closed());
    assert!(matches!(block_on(p.acquire()), Err(Error::Closed)));
    assert_eq!(p.manager().dropped(), 2, "idle resources dropped on close");
}

/// A hand executor: a waiting acquire is pending, is woken by a release on
/// another thread, and is then served the released resource; a second
/// waiter is woken by `close` with `Error::Closed`.
#[test]
fn a_waiter_is_woken_by_a_release_and_by_close() {
    let p = pool(1);
    let held = block_on(p.acquire()).unwrap();
    let (probe, waker) = Probe::new();
    let mut cx = Context::from_waker(&waker);
    let mut waiter = pin!(p.acquire());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    assert_eq!(p.status().waiting, 1);
    std::thread::scope(|s| {
        s.spawn(move || drop(held));
    });
    assert!(probe.wakes() >= 1, "the release woke the waiter");
    let Poll::Ready(Ok(guard)) = waiter.as_mut().poll(&mut cx) else {
        panic!("served after the wake");
    };
    assert_eq!(guard.id, 0);

    let (probe, waker) = Probe::new();
    let mut cx = Context::from_waker(&waker);
    let mut closed = pin!(p.acquire());
    assert!(closed.as_mut().poll(&mut cx).is_pending());
    p.close();
    assert!(probe.wakes() >= 1, "close woke the waiter");
    assert!(matches!(
        closed.as_mut().poll(&mut cx),
        Poll::Ready(Err(Error::Closed))
    ));
    drop(guard);
    assert_eq!(p.status().size, 0);
}

/// Acquires dropped while waiting leave the line, and a resource handed to
/// one of them goes to the next.
#[test]
fn cancelled_waiters_lose_nothing() {
    let p = pool(1);
    block_on(async {
        let held = p.acquire().await.unwrap();
        let mut first = Box::pin(p.acquire());
        let mut second = Box::pin(p.acquire());
        assert!(poll_once(first.as_mut()).await.is_none());
        assert!(poll_once(second.as_mut()).await.is_none());
        drop(held);
        drop(first);
        let served = second.await.unwrap();
        assert_eq!(served.id, 0);
    });
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.waiting, s.created),
        (1, 1, 0, 1),
        "{s:?}"
    );
}

/// `acquire_blocking` on a plain thread parks until another thread
/// releases (the thread-parking `block_on` of this build).
#[test]
fn acquire_blocking_parks_until_a_release() {
    let p = pool(1);
    let held = p.acquire_blocking().unwrap();
    let waiter = {
        let p = p.clone();
        std::thread::spawn(move || p.acquire_blocking().map(|guard| guard.id))
    };
    let until = Instant::now() + Duration::from_secs(20);
    while p.status().waiting == 0 {
        assert!(Instant::now() < until, "timed out waiting for the waiter");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), 0);
    assert_eq!(p.with_blocking(|res| res.id).unwrap(), 0);
    assert_eq!(p.status().acquired_after_wait, 1);
}

fn refused<M: quickslot::Manager>(builder: quickslot::Builder<M>) -> &'static str {
    match builder.build() {
        Err(BuildError::NeedsRuntime { setting }) => setting,
        Err(other) => panic!("expected NeedsRuntime, got {other}"),
        Ok(_) => panic!("built a pool with a setting that needs a runtime"),
    }
}

/// Each setting that needs a timer or a task, alone, is refused by name.
#[test]
fn build_refuses_each_setting_that_needs_a_runtime() {
    let b = || Pool::builder(Counting::default()).max_size(4);
    let d = Duration::from_secs(1);
    assert_eq!(refused(b().acquire_timeout(d)), "acquire_timeout");
    assert_eq!(refused(b().create_timeout(d)), "create_timeout");
    assert_eq!(refused(b().recycle_timeout(d)), "recycle_timeout");
    assert_eq!(
        refused(b().fail_fast_when_late(true)),
        "fail_fast_when_late"
    );
    assert_eq!(refused(b().idle_timeout(d)), "idle_timeout");
    assert_eq!(refused(b().max_lifetime(d)), "max_lifetime");
    assert_eq!(refused(b().keepalive_interval(d)), "keepalive_interval");
    assert_eq!(refused(b().leak_threshold(d)), "leak_threshold");
    assert_eq!(refused(b().min_idle(1)), "min_idle");
    assert_eq!(refused(b().upkeep_interval(d)), "upkeep_interval");
}

/// The refusal says what happened and how to fix it.
#[test]
fn the_refusal_names_the_setting_and_the_features() {
    let err = Pool::builder(Counting::default())
        .min_idle(1)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::NeedsRuntime {
            setting: "min_idle"
        }
    );
    assert_eq!(
        err.to_string(),
        "min_idle needs a runtime feature (tokio or smol), and quickslot was built without one"
    );
    assert!(std::error::Error::source(&err).is_none());
}

/// Settings that need no runtime build; an adapter's defaults that would
/// need one yield (are dropped) rather than fail, as they do to a
/// conflicting explicit setting; unsetting a deadline builds.
#[test]
fn settings_without_a_timer_build() {
    let d = Duration::from_secs(1);
    let p = Pool::builder(Counting::default())
        .max_size(4)
        .max_waiters(8)
        .track_idle_time(true)
        .leak_backtrace(true)
        .acquire_timeout(None)
        .default_idle_timeout(d)
        .default_max_lifetime(d)
        .build()
        .unwrap();
    let guard = block_on(p.acquire()).unwrap();
    assert_eq!(
        Pooled::info(&guard).lifetime(),
        None,
        "max_lifetime dropped"
    );
    drop(guard);
    assert!(
        Pooled::info(&p.try_acquire().unwrap())
            .last_returned()
            .is_some(),
        "track_idle_time works: it only reads the clock"
    );
    // The explicit setting is refused even beside a default.
    let explicit = Pool::builder(Counting::default())
        .default_max_lifetime(d)
        .idle_timeout(d);
    assert_eq!(refused(explicit), "idle_timeout");
}
