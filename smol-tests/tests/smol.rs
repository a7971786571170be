//! quickslot on smol / async-io, without Tokio: every test runs in
//! `smol::block_on` (async-io's), spawns on smol's global executor, and
//! waits on `async_io::Timer`s. Durations are real; conditions are polled
//! up to a generous bound (`wait_for`), never slept for.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future::{self, poll_once};
use quickslot::{Error, Pool, Pooled, TimeoutPhase, TryAcquireError};
use quickslot_smol_tests::{wait_for, wait_for_blocking, TestManager};

/// Short deadlines: long enough to be sure a wait is in line, short enough
/// to keep the tests quick.
const SHORT: Duration = Duration::from_millis(50);

fn pool(max_size: usize, manager: TestManager) -> Pool<TestManager> {
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

/// The pool's clock is std's without the `tokio` feature (a compile-time
/// check: this crate builds quickslot with `smol` only), and Tokio's, which
/// converts to std's, with it.
#[test]
fn resource_times_are_on_the_pool_clock() {
    let p = pool(1, TestManager::new());
    let before = Instant::now();
    let guard = smol::block_on(p.acquire()).unwrap();
    let created: quickslot::Instant = Pooled::info(&guard).created_at();
    let now = quickslot::Instant::now();
    assert!(created <= now);
    assert!(now.duration_since(created) <= before.elapsed());
}

/// Eight tasks queue one after another on a pool whose one resource is
/// held; the resource, released, is passed along the line in arrival order.
#[test]
fn waiters_are_served_in_arrival_order() {
    smol::block_on(async {
        let p = pool(1, TestManager::new());
        let held = p.acquire().await.unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (pool, served) = (p.clone(), served.clone());
            tasks.push(smol::spawn(async move {
                let guard = pool.acquire().await.unwrap();
                served.lock().unwrap().push((i, guard.id));
                // Held across a yield: the next waiter must wait for it.
                future::yield_now().await;
            }));
            // The next task arrives only once this one is in line.
            wait_for("a waiter to queue", || p.status().waiting == i + 1).await;
        }
        drop(held);
        for t in tasks {
            t.await;
        }
        let served = served.lock().unwrap().clone();
        assert_eq!(served, (0..8).map(|i| (i, 0)).collect::<Vec<_>>());
        let s = p.status();
        assert_eq!(
            (s.size, s.idle, s.waiting, s.created),
            (1, 1, 0, 1),
            "{s:?}"
        );
        assert_eq!(s.acquired_after_wait, 8);
    });
}

/// 100 acquires queue on a full pool of 2 and most are dropped mid-wait,
/// including ones a released resource was just handed to: the resources
/// reach the next live waiters, the counts are exact, and the pool is
/// fully usable afterwards.
#[test]
fn a_cancel_storm_loses_nothing() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = pool(2, manager);
        let a = p.acquire().await.unwrap();
        let b = p.acquire().await.unwrap();
        let mut waiters: Vec<_> = (0..100).map(|_| Some(Box::pin(p.acquire()))).collect();
        for w in waiters.iter_mut().flatten() {
            assert!(poll_once(w.as_mut()).await.is_none(), "the pool is full");
        }
        assert_eq!(p.status().waiting, 100);
        // Handed to waiter 0, which is dropped before it sees it: the
        // resource goes on to waiter 1.
        drop(a);
        waiters[0] = None;
        // Every waiter but 1 and each 10th is dropped.
        for (i, w) in waiters.iter_mut().enumerate() {
            if i != 1 && i % 10 != 0 {
                *w = None;
            }
        }
        // To the first live waiter in line: waiter 10.
        drop(b);
        let first = poll_once(waiters[1].take().unwrap()).await;
        let tenth = poll_once(waiters[10].take().unwrap()).await;
        let (first, tenth) = (first.unwrap().unwrap(), tenth.unwrap().unwrap());
        assert_eq!(
            p.status().waiting,
            8,
            "waiters 20, 30, ... 90 still in line"
        );
        drop(waiters);
        let s = p.status();
        assert_eq!((s.size, s.idle, s.waiting), (2, 0, 0), "{s:?}");
        drop((first, tenth));
        let s = p.status();
        assert_eq!(
            (s.size, s.idle, s.waiting, s.created),
            (2, 2, 0, 2),
            "{s:?}"
        );
        // Fully usable: both resources at once, and a third caller in line.
        {
            let x = p.try_acquire().unwrap();
            let y = p.acquire().await.unwrap();
            assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Exhausted);
            let mut third = pin!(p.acquire());
            assert!(poll_once(third.as_mut()).await.is_none());
            drop(x);
            assert!(third.await.is_ok());
            drop(y);
        }
        assert_eq!(ledger.dropped(), 0, "nothing dropped: no resource was lost");
        drop(p);
        ledger.assert_all_dropped_once(2);
    });
}

/// A full pool: the builder's `acquire_timeout` and an explicit deadline
/// both end the wait with `Error::Timeout` in the wait phase, no earlier
/// than asked, and the timed-out waiters leave the line.
#[test]
fn acquire_deadlines_fire_on_a_full_pool() {
    smol::block_on(async {
        let p = Pool::builder(TestManager::new())
            .max_size(1)
            .acquire_timeout(SHORT)
            .build()
            .unwrap();
        let held = p.acquire().await.unwrap();
        let started = Instant::now();
        match p.acquire().await {
            Err(Error::Timeout {
                phase: TimeoutPhase::Wait,
                last_error: None,
                ..
            }) => {}
            other => panic!("expected a wait timeout, got {other:?}"),
        }
        assert!(started.elapsed() >= SHORT, "not before the deadline");
        let err = p.acquire_timeout(SHORT).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        let s = p.status();
        assert_eq!((s.timeouts, s.waiting, s.size), (2, 0, 1), "{s:?}");
        drop(held);
        assert!(p.acquire().await.is_ok(), "served once a resource is back");
    });
}

/// A create that never finishes fails the acquire at `create_timeout`
/// with a create-phase timeout, and frees its slot.
#[test]
fn create_timeout_bounds_a_hung_create() {
    smol::block_on(async {
        let (manager, _gate) = TestManager::new().gated();
        let p = Pool::builder(manager)
            .max_size(1)
            .create_timeout(SHORT)
            .build()
            .unwrap();
        match p.acquire().await {
            Err(Error::Timeout {
                phase: TimeoutPhase::Create,
                ..
            }) => {}
            other => panic!("expected a create timeout, got {other:?}"),
        }
        let s = p.status();
        assert_eq!((s.size, s.creating, s.create_errors), (0, 0, 1), "{s:?}");
        assert_eq!(p.manager().attempts(), 1);
    });
}

/// A recycle that never finishes fails at `recycle_timeout`: the resource
/// is dropped and the acquire creates a fresh one in its place.
#[test]
fn recycle_timeout_replaces_a_hung_recycle() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = Pool::builder(manager)
            .max_size(1)
            .recycle_timeout(SHORT)
            .build()
            .unwrap();
        drop(p.acquire().await.unwrap());
        p.manager().hang_recycles(true);
        let fresh = p.acquire().await.unwrap();
        assert_eq!(fresh.id, 1, "a fresh resource replaced the hung one");
        assert_eq!(ledger.dropped(), 1, "the hung one was dropped");
        let s = p.status();
        assert_eq!((s.recycle_failures, s.size), (1, 1), "{s:?}");
    });
}

/// Closing the pool wakes every waiter with `Error::Closed`; a resource
/// returned afterwards is dropped.
#[test]
fn close_wakes_waiters_with_closed() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = pool(1, manager);
        let held = p.acquire().await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                smol::spawn(async move { p.acquire().await.map(drop) })
            })
            .collect();
        wait_for("three waiters", || p.status().waiting == 3).await;
        p.close();
        for w in waiters {
            assert!(matches!(w.await, Err(Error::Closed)));
        }
        assert!(matches!(p.acquire().await, Err(Error::Closed)));
        assert_eq!(ledger.dropped(), 0);
        drop(held);
        assert_eq!(ledger.dropped(), 1, "returned after close: dropped");
        assert_eq!(p.status().size, 0);
    });
}

/// `drain` closes the pool, waits for what comes back before its deadline,
/// and reports what did not.
#[test]
fn drain_waits_up_to_its_deadline() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = pool(2, manager);
        let a = p.acquire().await.unwrap();
        let b = p.acquire().await.unwrap();
        // Returns `a` once the drain has begun (closed the pool).
        let returner = {
            let p = p.clone();
            smol::spawn(async move {
                wait_for("the drain to close the pool", || p.is_closed()).await;
                drop(a);
            })
        };
        let started = Instant::now();
        let report = p.drain(Duration::from_millis(500)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "waited for b"
        );
        returner.await;
        assert_eq!(
            (report.checked_out, report.returned, report.outstanding),
            (2, 1, 1)
        );
        drop(b);
        assert_eq!(p.status().size, 0);
        ledger.assert_all_dropped_once(2);
        // Nothing out: a second drain returns at once.
        let report = p.drain(Duration::from_secs(60)).await;
        assert_eq!((report.checked_out, report.outstanding), (0, 0));
    });
}

/// The upkeep task on smol: `idle_timeout` reaps the resources idle past
/// it, sparing `min_idle` of them. (The reaper takes the idle resources out
/// for a moment each round, so only counters that no round moves back are
/// checked.)
#[test]
fn upkeep_reaps_idle_resources_down_to_min_idle() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = Pool::builder(manager)
            .max_size(3)
            .min_idle(1)
            .idle_timeout(Duration::from_millis(100))
            .upkeep_interval(Duration::from_millis(10))
            .build()
            .unwrap();
        // Three checked out at once: whether one came from the background
        // `min_idle` fill or not, exactly three are made.
        let held = (
            p.acquire().await.unwrap(),
            p.acquire().await.unwrap(),
            p.acquire().await.unwrap(),
        );
        drop(held);
        wait_for("the reaper to drop two idle resources", || {
            let s = p.status();
            s.discarded.expired == 2 && s.size == 1
        })
        .await;
        assert_eq!(ledger.dropped(), 2);
        assert_eq!(p.manager().created(), 3, "min_idle was met all along");
    });
}

/// The upkeep task on smol refills `min_idle` after a discard. With one
/// slot, the task is the only one that can have made the second resource.
#[test]
fn upkeep_refills_min_idle_after_a_discard() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = Pool::builder(manager)
            .max_size(1)
            .min_idle(1)
            .build()
            .unwrap();
        // The first create starts the upkeep if `build` did not (it does
        // with `smol` alone; with `tokio` on too, outside a Tokio runtime,
        // the first create does).
        let first = p.acquire().await.unwrap();
        assert_eq!(first.id, 0);
        Pooled::discard(first);
        wait_for("min_idle to be refilled", || p.status().idle == 1).await;
        assert_eq!(p.manager().created(), 2);
        assert_eq!(ledger.dropped(), 1);
        assert_eq!(p.try_acquire().unwrap().id, 1, "the refill is handed out");
    });
}

/// The upkeep task on smol: `max_lifetime` reaps idle resources that
/// outlive it (min_idle or not), and `keepalive_interval` recycles idle
/// ones in the background.
#[test]
fn upkeep_reaps_past_max_lifetime_and_runs_keepalive_checks() {
    smol::block_on(async {
        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = Pool::builder(manager)
            .max_size(2)
            .keepalive_interval(Duration::from_millis(20))
            .upkeep_interval(Duration::from_millis(10))
            .build()
            .unwrap();
        drop(p.acquire().await.unwrap());
        wait_for("two keepalive recycles", || p.manager().recycles() >= 2).await;
        assert_eq!(p.status().size, 1, "checked and kept");
        assert_eq!(ledger.dropped(), 0);

        let manager = TestManager::new();
        let ledger = manager.ledger();
        let p = Pool::builder(manager)
            .max_size(2)
            .max_lifetime(Duration::from_millis(100))
            .upkeep_interval(Duration::from_millis(10))
            .build()
            .unwrap();
        drop(p.acquire().await.unwrap());
        wait_for("the reaper to drop the old resource", || {
            ledger.dropped() == 1
        })
        .await;
        let s = p.status();
        assert_eq!((s.idle, s.size, s.discarded.expired), (0, 0, 1), "{s:?}");
    });
}

/// A create whose acquire gives up on it (dropped, or past its deadline)
/// finishes in a background task on smol, and its resource goes to the
/// pool instead of being thrown away.
#[test]
fn an_abandoned_create_finishes_in_the_background() {
    smol::block_on(async {
        let (manager, gate) = TestManager::new().gated();
        let p = pool(1, manager);
        // Dropped mid-create.
        {
            let mut acquire = pin!(p.acquire());
            assert!(poll_once(acquire.as_mut()).await.is_none());
            assert_eq!(p.manager().attempts(), 1, "the create began");
        }
        let s = p.status();
        assert_eq!((s.size, s.creating), (1, 1), "still creating: {s:?}");
        gate.send(()).await.unwrap();
        wait_for("the create to finish", || p.status().idle == 1).await;
        // Past its deadline mid-create: the next create, after a discard.
        Pooled::discard(p.acquire().await.unwrap());
        match p.acquire_timeout(SHORT).await {
            Err(Error::Timeout {
                phase: TimeoutPhase::Create,
                ..
            }) => {}
            other => panic!("expected a create timeout, got {other:?}"),
        }
        assert_eq!(p.status().creating, 1, "finishing in the background");
        gate.send(()).await.unwrap();
        wait_for("the second create to finish", || p.status().idle == 1).await;
        assert_eq!((p.manager().attempts(), p.manager().created()), (2, 2));
        let s = p.status();
        assert_eq!((s.size, s.created, s.create_errors), (1, 2, 0), "{s:?}");
    });
}

/// `acquire_blocking` from plain threads: one waits in line until the main
/// thread releases, one times out on a full pool, and `with_blocking`
/// scopes a use.
#[test]
fn acquire_blocking_from_plain_threads() {
    let manager = TestManager::new();
    let ledger = manager.ledger();
    let p = pool(1, manager);
    let held = p.acquire_blocking().unwrap();
    let timed_out = {
        let p = p.clone();
        std::thread::spawn(move || p.acquire_blocking_timeout(SHORT).map(drop))
    };
    assert!(timed_out.join().unwrap().unwrap_err().is_timeout());
    let waiter = {
        let p = p.clone();
        std::thread::spawn(move || p.acquire_blocking().map(|guard| guard.id))
    };
    wait_for_blocking("the blocking waiter to queue", || p.status().waiting == 1);
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), 0);
    assert_eq!(p.with_blocking(|res| res.id).unwrap(), 0);
    // A create from a plain thread, on a slow manager (an async-io timer).
    let slow = pool(
        1,
        TestManager::new().create_delay(Duration::from_millis(10)),
    );
    assert_eq!(slow.acquire_blocking().unwrap().id, 0);
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.waiting, s.timeouts),
        (1, 1, 0, 1),
        "{s:?}"
    );
    drop(p);
    ledger.assert_all_dropped_once(1);
}

/// A failed create reaches the caller at once as `Error::Create`, and its
/// slot is free for the next one.
#[test]
fn a_failed_create_is_returned_at_once() {
    smol::block_on(async {
        let p = pool(1, TestManager::new());
        p.manager().fail_next(1);
        match p.acquire().await {
            Err(Error::Create(e)) => assert_eq!(e.0, "create 0 failed"),
            other => panic!("expected a create error, got {other:?}"),
        }
        assert_eq!(p.acquire().await.unwrap().id, 0);
    });
}

/// A shared capacity on smol: a waiting pool takes an idle resource of
/// another at once (grace zero) and, with a grace period, when it ends (on
/// async-io's timer).
#[test]
fn a_shared_capacity_moves_idle_units_to_a_waiting_pool() {
    smol::block_on(async {
        let cap = quickslot::Capacity::new(1);
        let build = || {
            Pool::builder(TestManager::new())
                .max_size(1)
                .capacity(&cap)
                .build()
                .unwrap()
        };
        let (a, b) = (build(), build());
        drop(a.acquire().await.unwrap());
        drop(b.acquire().await.unwrap());
        assert_eq!((a.status().size, b.status().size), (0, 1));
        assert_eq!(a.status().discarded.reclaimed, 1);

        cap.set_idle_grace(SHORT);
        let started = Instant::now();
        let got = a.acquire().await.unwrap();
        assert!(started.elapsed() >= SHORT / 2, "waited out the grace");
        assert_eq!((a.status().size, b.status().size, cap.in_use()), (1, 0, 1));
        drop(got);
    });
}
