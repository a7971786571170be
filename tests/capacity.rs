//! A [`Capacity`] shared by several pools: the budget is never exceeded,
//! a busy pool gets units from idle ones, units go to the longest waiter
//! across pools, and no path (timeout, cancel, close, panic) loses a unit.

use std::sync::Arc;
use std::time::Duration;

use quickslot::{BuildError, Capacity, Error, Pool, Pooled, TimeoutPhase};
use quickslot_testkit::managers::{assert_counts, Ledger, TestManager};

type P = Pool<TestManager>;

fn pool(cap: &Capacity, max_size: usize) -> (P, Arc<Ledger>) {
    let manager = TestManager::new();
    let ledger = manager.ledger.clone();
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .capacity(cap)
        .build()
        .unwrap();
    (pool, ledger)
}

/// Lets spawned tasks run until they block (paused clock: no time passes).
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

fn sizes(pools: &[&P]) -> usize {
    pools.iter().map(|p| p.status().size).sum()
}

async fn take(pool: &P, n: usize) -> Vec<Pooled<TestManager>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    held
}

#[tokio::test(start_paused = true)]
async fn a_busy_pool_takes_units_from_idle_ones() {
    let cap = Capacity::new(8);
    let (a, la) = pool(&cap, 8);
    let (b, lb) = pool(&cap, 8);
    let (c, lc) = pool(&cap, 8);
    // `a` and `b` fill the budget, then go idle.
    drop(take(&a, 4).await);
    drop(take(&b, 4).await);
    assert_eq!((cap.in_use(), a.status().idle, b.status().idle), (8, 4, 4));

    // `c` gets six: each create closes an idle resource of another pool.
    let held = take(&c, 6).await;
    assert_eq!(c.status().size, 6);
    assert_eq!(sizes(&[&a, &b, &c]), 8);
    assert_eq!(cap.in_use(), 8);
    let reclaimed = a.status().discarded.reclaimed + b.status().discarded.reclaimed;
    assert_eq!(reclaimed, 6);
    assert_eq!((la.live() + lb.live(), lc.live()), (2, 6));
    for p in [&a, &b, &c] {
        assert_counts(&p.status());
    }
    drop(held);
    drop((a, b, c));
    for l in [la, lb, lc] {
        l.assert_all_dropped_once();
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_the_sum_of_the_pools() {
    let cap = Capacity::new(3);
    let (a, _) = pool(&cap, 3);
    let (b, _) = pool(&cap, 3);
    let held = take(&a, 3).await;
    // Nothing idle anywhere: `b` waits until its deadline.
    let err = b.acquire_timeout(Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Timeout {
            phase: TimeoutPhase::Wait,
            ..
        }
    ));
    // The slot it held while waiting was freed, and it left the line.
    assert_eq!((b.status().size, cap.waiting(), cap.in_use()), (0, 0, 3));
    assert_eq!(b.status().timeouts, 1);
    drop(held);
}

/// Acquires of two pools that wait for the budget are served in the order
/// they started to wait, whichever pool frees the unit.
#[tokio::test(start_paused = true)]
async fn units_go_to_the_longest_waiter_across_pools() {
    let cap = Capacity::new(2);
    let (a, _) = pool(&cap, 4);
    let (b, _) = pool(&cap, 4);
    let mut held = take(&a, 2).await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, p) in [("b1", &b), ("a3", &a), ("b2", &b), ("a4", &a)] {
        let p = p.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let guard = p.acquire().await.unwrap();
            order.lock().unwrap().push(name);
            // Hold it until the test ends the task.
            std::future::pending::<()>().await;
            drop(guard);
        }));
        settle().await;
    }
    assert_eq!(cap.waiting(), 4);
    // Each unit freed (a resource of `a` dropped as broken) goes to the
    // oldest waiter.
    for _ in 0..2 {
        let mut r = held.pop().unwrap();
        r.broken = true;
        drop(r);
        settle().await;
    }
    assert_eq!(*order.lock().unwrap(), ["b1", "a3"]);
    for t in &tasks[..2] {
        t.abort();
    }
    settle().await;
    assert_eq!(*order.lock().unwrap(), ["b1", "a3", "b2", "a4"]);
    for t in tasks {
        t.abort();
    }
    settle().await;
    assert_eq!(cap.waiting(), 0);
    assert!(cap.in_use() <= 2);
}

/// An acquire that waits for a unit is served by a resource returned to its
/// own pool: nothing is closed and reopened.
#[tokio::test(start_paused = true)]
async fn a_waiter_takes_its_own_pools_returned_resource() {
    let cap = Capacity::new(1);
    let (a, ledger) = pool(&cap, 2);
    let first = a.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move { a.acquire().await.unwrap().id }
    });
    settle().await;
    assert_eq!(cap.waiting(), 1);
    // The waiter's slot is no resource.
    assert_eq!(a.status().size, 1);
    drop(first);
    assert_eq!(waiter.await.unwrap(), 0);
    assert_eq!(ledger.created(), 1);
    assert_eq!((cap.in_use(), cap.waiting()), (1, 0));
    assert_eq!(a.status().discarded.reclaimed, 0);
    assert_counts(&a.status());
}

#[tokio::test(start_paused = true)]
async fn a_resource_returned_idle_goes_to_a_waiting_pool() {
    let cap = Capacity::new(1);
    let (a, la) = pool(&cap, 1);
    let (b, _) = pool(&cap, 1);
    let held = a.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.acquire().await.map(drop) }
    });
    settle().await;
    assert_eq!(cap.waiting(), 1);
    // Returned while `b` waits: closed at once (grace zero) for `b`.
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_eq!(la.live(), 0);
    assert_eq!(a.status().discarded.reclaimed, 1);
    assert_eq!((a.status().size, b.status().size, cap.in_use()), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn idle_grace_keeps_recent_resources_until_it_ends() {
    let cap = Capacity::new(1);
    cap.set_idle_grace(Duration::from_secs(10));
    let (a, _) = pool(&cap, 1);
    let (b, _) = pool(&cap, 1);
    drop(a.acquire().await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = tokio::time::Instant::now();
    let got = b.acquire_timeout(Duration::from_secs(30)).await.unwrap();
    // Idle since 4 s before the wait began: taken when its 10 s were up.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert_eq!(a.status().discarded.reclaimed, 1);
    drop(got);

    // A deadline shorter than the grace left: the resource stays.
    let err = a.acquire_timeout(Duration::from_secs(2)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!((b.status().idle, cap.in_use()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn closing_a_pool_returns_its_units() {
    let cap = Capacity::new(4);
    let (a, la) = pool(&cap, 4);
    let (b, _) = pool(&cap, 4);
    let mut held = take(&a, 4).await;
    let idle = held.split_off(2);
    drop(idle);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { take(&b, 4).await.len() }
    });
    settle().await;
    // Two of `a`'s idle resources went to `b`; `b` waits for two more.
    assert_eq!((b.status().size, cap.waiting()), (2, 1));
    a.close();
    assert_eq!(cap.in_use(), 4);
    // Units come back as `a`'s checked-out resources return.
    drop(held);
    assert_eq!(waiter.await.unwrap(), 4);
    assert_eq!((a.status().size, b.status().size, cap.in_use()), (0, 4, 4));
    assert_eq!(la.live(), 0);
    // A closed pool no longer takes part: it is not asked for resources.
    assert!(matches!(a.acquire().await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn closing_a_pool_ends_its_acquires_that_wait_for_a_unit() {
    let cap = Capacity::new(1);
    let (a, _) = pool(&cap, 2);
    let (b, _) = pool(&cap, 1);
    let held = b.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move { a.acquire().await.map(drop) }
    });
    settle().await;
    assert_eq!(cap.waiting(), 1);
    a.close();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
    assert_eq!((a.status().size, cap.waiting(), cap.in_use()), (0, 0, 1));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_storm_loses_no_unit() {
    let cap = Capacity::new(2);
    let (a, _) = pool(&cap, 2);
    let (b, _) = pool(&cap, 8);
    let held = take(&a, 2).await;
    let mut waiters = Vec::new();
    for _ in 0..50 {
        let b = b.clone();
        waiters.push(tokio::spawn(async move { b.acquire().await.map(drop) }));
    }
    settle().await;
    assert_eq!(cap.waiting(), 8, "one per slot of `b`");
    // Cancel every other one, release a unit in the middle of it.
    let mut held = held;
    for (i, w) in waiters.iter().enumerate() {
        if i % 2 == 0 {
            w.abort();
        }
        if i == 20 {
            let mut r = held.pop().unwrap();
            r.broken = true;
            drop(r);
        }
    }
    settle().await;
    drop(held);
    for w in waiters {
        let _ = w.await;
    }
    assert_eq!((cap.waiting(), b.status().waiting), (0, 0));
    assert!(cap.in_use() <= 2);
    assert_eq!(b.status().size + a.status().size, cap.in_use());
    // Everything still usable: `b` can have both units.
    let two = take(&b, 2).await;
    assert_eq!(cap.in_use(), 2);
    drop(two);
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_holding_costs_no_unit() {
    let cap = Capacity::new(1);
    let (a, _) = pool(&cap, 1);
    let (b, _) = pool(&cap, 1);
    let task = tokio::spawn({
        let a = a.clone();
        async move {
            let _held = a.acquire().await.unwrap();
            panic!("user code panics");
        }
    });
    assert!(task.await.is_err());
    // The resource came back as the task unwound, with its unit...
    assert_eq!((cap.in_use(), a.status().idle), (1, 1));
    // ...which the other pool can have.
    drop(b.acquire().await.unwrap());
    assert_eq!((a.status().size, b.status().size, cap.in_use()), (0, 1, 1));
}

#[test]
fn build_rejects_a_zero_budget_and_min_idle_above_it() {
    let err = Pool::builder(TestManager::new())
        .capacity(&Capacity::new(0))
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroCapacity);
    let err = Pool::builder(TestManager::new())
        .min_idle(3)
        .capacity(&Capacity::new(2))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::TooLarge {
                setting: "min_idle",
                bound: "capacity",
                ..
            }
        ),
        "{err:?}"
    );
}

/// A seeded random schedule over three pools under one budget of 8:
/// acquires (held for random times), broken returns, cancels and a resize;
/// after every step the pools together hold at most 8 resources, and at
/// the end every resource is dropped exactly once.
#[tokio::test(start_paused = true)]
async fn a_fuzzed_schedule_never_exceeds_the_budget() {
    for seed in 1..=20u64 {
        run_schedule(seed).await;
    }
}

async fn run_schedule(seed: u64) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let cap = Capacity::new(8);
    let pools: Vec<(P, Arc<Ledger>)> = (0..3).map(|i| pool(&cap, 4 + i)).collect();
    let mut tasks = Vec::new();
    for step in 0..200 {
        let (p, _) = &pools[next(3) as usize];
        match next(10) {
            0..=5 => {
                let p = p.clone();
                let hold = Duration::from_millis(next(50));
                let broken = next(4) == 0;
                tasks.push(tokio::spawn(async move {
                    if let Ok(mut r) = p.acquire_timeout(Duration::from_millis(200)).await {
                        tokio::time::sleep(hold).await;
                        r.broken = broken;
                    }
                }));
            }
            6 => {
                if let Some(t) = tasks.get(next(tasks.len().max(1) as u64) as usize) {
                    t.abort();
                }
            }
            7 => {
                let _ = p.resize(1 + next(6) as usize);
            }
            _ => tokio::time::sleep(Duration::from_millis(next(20))).await,
        }
        settle().await;
        let total: usize = pools.iter().map(|(p, _)| p.status().size).sum();
        assert!(total <= 8, "seed {seed} step {step}: {total} resources");
        assert!(cap.in_use() <= 8);
    }
    for t in tasks {
        let _ = t.await;
    }
    let total: usize = pools.iter().map(|(p, _)| p.status().size).sum();
    assert_eq!(total, cap.in_use(), "seed {seed}: units match resources");
    assert_eq!(cap.waiting(), 0);
    let ledgers: Vec<_> = pools.iter().map(|(_, l)| l.clone()).collect();
    drop(pools);
    assert_eq!(cap.in_use(), 0, "seed {seed}: every unit back");
    for l in ledgers {
        l.assert_all_dropped_once();
    }
}

#[tokio::test(start_paused = true)]
async fn drain_and_resize_of_a_member_return_its_units() {
    let cap = Capacity::new(4);
    let (a, _) = pool(&cap, 4);
    let (b, _) = pool(&cap, 4);
    let mut held = take(&a, 4).await;
    // A shrink sheds the returned resources above the new size.
    a.resize(2).unwrap();
    drop(held.split_off(2));
    assert_eq!((a.status().size, cap.in_use()), (2, 2));
    let two = take(&b, 2).await;
    assert_eq!(cap.in_use(), 4);

    // Drain: idle ones go now, checked-out ones as they come back, and a
    // waiter of the other pool gets each unit.
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { take(&b, 2).await.len() }
    });
    settle().await;
    assert_eq!(cap.waiting(), 1);
    let drain = tokio::spawn({
        let a = a.clone();
        async move { a.drain(Duration::from_secs(5)).await }
    });
    settle().await;
    drop(held);
    let drained = drain.await.unwrap();
    assert_eq!(drained.outstanding, 0);
    assert_eq!(waiter.await.unwrap(), 2);
    assert_eq!((a.status().size, b.status().size, cap.in_use()), (0, 4, 4));
    drop(two);
}

/// A plain thread waits for a unit in the same line as async acquires.
#[test]
fn a_blocking_acquire_waits_for_a_unit() {
    let cap = Capacity::new(1);
    let (a, _) = pool(&cap, 1);
    let (b, _) = pool(&cap, 1);
    let held = a.acquire_blocking().unwrap();
    let waiter = std::thread::spawn({
        let b = b.clone();
        move || b.acquire_blocking().map(drop)
    });
    while cap.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut held = held;
    held.broken = true;
    drop(held);
    waiter.join().unwrap().unwrap();
    assert_eq!((a.status().size, b.status().size, cap.in_use()), (0, 1, 1));
}
