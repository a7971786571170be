//! Admission control: `Builder::max_waiters` bounds the line.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use quickslot::{Error, Manager, Pool};

struct Unit;

impl Manager for Unit {
    type Resource = ();
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn pool(max_size: usize, max_waiters: usize) -> Pool<Unit> {
    Pool::builder(Unit)
        .max_size(max_size)
        .max_waiters(max_waiters)
        .build()
        .unwrap()
}

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn a_full_line_refuses_at_once_and_admits_when_a_waiter_leaves() {
    let pool = pool(4, 3);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(pool.acquire())).collect();
    for w in &mut waiters {
        assert!(poll_once(w.as_mut()).is_pending());
    }
    assert_eq!(pool.status().waiting, 3);
    let started = tokio::time::Instant::now();
    match pool.acquire().await {
        Err(Error::Overloaded { waiting, .. }) => assert_eq!(waiting, 3),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(pool.status().overloaded, 1);
    // One waiter leaves: a new one is admitted.
    drop(waiters.remove(0));
    assert_eq!(pool.status().waiting, 2);
    let mut admitted = Box::pin(pool.acquire());
    assert!(poll_once(admitted.as_mut()).is_pending());
    assert_eq!(pool.status().waiting, 3);
    // Served in order as resources come back.
    drop(held.pop());
    drop(held.pop());
    drop(held.pop());
    for w in &mut waiters {
        assert!(matches!(
            poll_once(w.as_mut()),
            std::task::Poll::Ready(Ok(_))
        ));
    }
    assert!(matches!(
        poll_once(admitted.as_mut()),
        std::task::Poll::Ready(Ok(_))
    ));
    assert_eq!(pool.status().overloaded, 1);
}

#[tokio::test(start_paused = true)]
async fn never_refused_while_something_is_idle_or_a_slot_is_free() {
    let pool = pool(2, 0);
    let a = pool.acquire().await.expect("a free slot");
    let b = pool.acquire().await.expect("a free slot");
    assert!(matches!(
        pool.acquire().await,
        Err(Error::Overloaded { .. })
    ));
    drop(a);
    let _c = pool.acquire().await.expect("an idle resource");
    drop(b);
    assert_eq!(pool.status().overloaded, 1);
}

/// Many acquires with short deadlines against a small bounded line: the
/// counts stay exact, every acquire ends as served, timed out or refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_storm_keeps_the_line_count_exact() {
    let pool = pool(4, 8);
    let (served, refused, timed_out) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let tasks: Vec<_> = (0..64u64)
        .map(|i| {
            let pool = pool.clone();
            let (served, refused, timed_out) = (served.clone(), refused.clone(), timed_out.clone());
            tokio::spawn(async move {
                for j in 0..200u64 {
                    let deadline = Duration::from_micros((i * 13 + j) % 200);
                    match pool.acquire_timeout(deadline).await {
                        Ok(guard) => {
                            served.fetch_add(1, Ordering::Relaxed);
                            tokio::task::yield_now().await;
                            drop(guard);
                        }
                        Err(Error::Overloaded { waiting, .. }) => {
                            assert!(waiting >= 8, "refused with {waiting} waiting");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Timeout { .. }) => {
                            timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.status();
    assert_eq!(s.waiting, 0, "{s:?}");
    assert_eq!(s.overloaded, refused.load(Ordering::Relaxed), "{s:?}");
    assert_eq!(s.timeouts, timed_out.load(Ordering::Relaxed), "{s:?}");
    assert_eq!(
        served.load(Ordering::Relaxed)
            + refused.load(Ordering::Relaxed)
            + timed_out.load(Ordering::Relaxed),
        64 * 200
    );
    assert_eq!((s.size, s.idle), (4, 4), "{s:?}");
}

/// A holder that keeps the only resource 100 ms each time: the estimate
/// learns that the line advances one waiter per 100 ms.
#[tokio::test(start_paused = true)]
async fn fail_fast_refuses_what_would_be_late_and_serves_what_would_not() {
    let pool = Pool::builder(Unit)
        .max_size(1)
        .fail_fast_when_late(true)
        .acquire_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // Warm up: 12 waiters, each holding 100 ms, served one after another.
    let held = pool.acquire().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let guard = pool.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(guard);
        }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    // While the last few still wait: 3 or so ahead, about 100 ms each.
    tokio::time::sleep(Duration::from_millis(850)).await;
    let ahead = pool.status().waiting;
    assert!(ahead >= 2, "still waiting: {ahead}");
    let started = tokio::time::Instant::now();
    match pool.acquire_timeout(Duration::from_millis(150)).await {
        Err(Error::Overloaded {
            waiting,
            expected_wait: Some(expected),
            ..
        }) => {
            assert_eq!(waiting, ahead);
            let per = Duration::from_millis(100);
            assert!(
                expected >= per * (ahead as u32) && expected <= per * (ahead as u32 + 2),
                "expected {expected:?} for {ahead} ahead"
            );
        }
        other => panic!("expected a fail-fast refusal, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    // A deadline long enough is served.
    let patient = pool.acquire_timeout(Duration::from_secs(5)).await;
    assert!(patient.is_ok(), "{patient:?}");
    drop(patient);
    for t in tasks {
        t.await.unwrap();
    }
    // Nothing waits, the resource is idle: never refused, however short.
    assert!(pool.acquire_timeout(Duration::from_nanos(1)).await.is_ok());
    assert_eq!(pool.status().overloaded, 1);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_refuses_nothing_without_an_estimate() {
    let pool = Pool::builder(Unit)
        .max_size(1)
        .fail_fast_when_late(true)
        .build()
        .unwrap();
    let held = pool.acquire().await.unwrap();
    match pool.acquire_timeout(Duration::from_millis(10)).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("no estimate yet: waits and times out, got {other:?}"),
    }
    drop(held);
    assert_eq!(pool.status().overloaded, 0);
}

/// An adapter's defaults yield to explicit settings; explicit settings
/// still contradict each other.
#[test]
fn adapter_defaults_yield_to_explicit_settings() {
    let min = Duration::from_secs(60);
    assert!(Pool::builder(Unit)
        .default_idle_timeout(10 * min)
        .max_lifetime(5 * min)
        .build()
        .is_ok());
    assert!(Pool::builder(Unit)
        .idle_timeout(10 * min)
        .default_max_lifetime(5 * min)
        .build()
        .is_ok());
    assert!(matches!(
        Pool::builder(Unit)
            .idle_timeout(10 * min)
            .max_lifetime(5 * min)
            .build(),
        Err(quickslot::BuildError::Conflict { .. })
    ));
    // An explicit setting replaces the default outright.
    assert!(matches!(
        Pool::builder(Unit)
            .default_idle_timeout(min)
            .idle_timeout(10 * min)
            .max_lifetime(5 * min)
            .build(),
        Err(quickslot::BuildError::Conflict { .. })
    ));
}
