//! `Manager::detach` runs exactly once for every resource that leaves the
//! pool for good, on every departure path.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quickslot::{Hook, HookError, Manager, Pool, Pooled, ResourceInfo};

/// Per resource: how often `detach` ran, and whether it was dropped.
#[derive(Debug, Default)]
struct Ledger {
    detached: Mutex<HashMap<u64, u32>>,
    dropped: Mutex<HashMap<u64, u32>>,
    created: AtomicU64,
}

impl Ledger {
    fn detached(&self, id: u64) -> u32 {
        *self.detached.lock().unwrap().get(&id).unwrap_or(&0)
    }

    /// Every created resource was detached once and dropped once, except
    /// the ones listed as still in the pool (neither).
    fn check(&self, still_pooled: &[u64]) {
        let created = self.created.load(Ordering::SeqCst);
        let detached = self.detached.lock().unwrap();
        let dropped = self.dropped.lock().unwrap();
        for id in 1..=created {
            let (d, x) = (
                *detached.get(&id).unwrap_or(&0),
                *dropped.get(&id).unwrap_or(&0),
            );
            if still_pooled.contains(&id) {
                assert_eq!((d, x), (0, 0), "resource {id} is still in the pool");
            } else {
                assert_eq!(
                    (d, x),
                    (1, 1),
                    "resource {id}: detached {d} times, dropped {x} times"
                );
            }
        }
    }
}

#[derive(Debug)]
struct Res {
    id: u64,
    ledger: Arc<Ledger>,
    broken: bool,
}

impl Drop for Res {
    fn drop(&mut self) {
        *self
            .ledger
            .dropped
            .lock()
            .unwrap()
            .entry(self.id)
            .or_default() += 1;
    }
}

#[derive(Debug, Default)]
struct Tracked {
    ledger: Arc<Ledger>,
    fail_recycle: AtomicBool,
    panic_in_is_broken: AtomicBool,
}

impl Manager for Tracked {
    type Resource = Res;
    type Error = String;

    async fn create(&self) -> Result<Res, String> {
        let id = self.ledger.created.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Res {
            id,
            ledger: self.ledger.clone(),
            broken: false,
        })
    }

    async fn recycle(&self, _: &mut Res, _: &ResourceInfo) -> Result<(), String> {
        if self.fail_recycle.load(Ordering::SeqCst) {
            Err("recycle refused".into())
        } else {
            Ok(())
        }
    }

    fn is_broken(&self, r: &mut Res) -> bool {
        if self.panic_in_is_broken.load(Ordering::SeqCst) {
            panic!("is_broken panicked");
        }
        r.broken
    }

    fn detach(&self, r: &mut Res) {
        *self
            .ledger
            .detached
            .lock()
            .unwrap()
            .entry(r.id)
            .or_default() += 1;
    }
}

fn tracked() -> (Tracked, Arc<Ledger>) {
    let m = Tracked::default();
    let ledger = m.ledger.clone();
    (m, ledger)
}

#[tokio::test(start_paused = true)]
async fn every_departure_path_detaches_once() {
    let (m, ledger) = tracked();
    let pool = Pool::builder(m)
        .max_size(4)
        .max_size_limit(4)
        .build()
        .unwrap();

    // Broken on return.
    let mut a = pool.acquire().await.unwrap();
    a.broken = true;
    let id = a.id;
    drop(a);
    assert_eq!(ledger.detached(id), 1, "broken");

    // Discarded and detached by the user.
    let b = pool.acquire().await.unwrap();
    let id = b.id;
    Pooled::discard(b);
    assert_eq!(ledger.detached(id), 1, "discard");
    let c = pool.acquire().await.unwrap();
    let id = c.id;
    let kept: Res = Pooled::detach(c);
    assert_eq!(
        ledger.detached(id),
        1,
        "user detach: before it is handed over"
    );
    drop(kept);

    // Recycle failure (the acquire then creates a new one).
    drop(pool.acquire().await.unwrap());
    pool.manager().fail_recycle.store(true, Ordering::SeqCst);
    let fresh = pool.acquire().await.unwrap();
    pool.manager().fail_recycle.store(false, Ordering::SeqCst);
    let fresh_id = fresh.id;
    drop(fresh);

    // Retain.
    let removed = pool.retain(|_, _| false);
    assert_eq!(removed, 1);
    assert_eq!(ledger.detached(fresh_id), 1, "retain");

    // Panicking user code while the pool holds it.
    let p = pool.acquire().await.unwrap();
    let id = p.id;
    pool.manager()
        .panic_in_is_broken
        .store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| drop(p))).is_err());
    pool.manager()
        .panic_in_is_broken
        .store(false, Ordering::SeqCst);
    assert_eq!(ledger.detached(id), 1, "panic");

    // Shed by a shrink: four out, shrink to one, return them.
    let mut out = Vec::new();
    for _ in 0..4 {
        out.push(pool.acquire().await.unwrap());
    }
    pool.resize(1).unwrap();
    let ids: Vec<u64> = out.iter().map(|g| g.id).collect();
    drop(out);
    let shed: Vec<_> = ids.iter().filter(|&&id| ledger.detached(id) == 1).collect();
    assert_eq!(shed.len(), 3, "three shed, one kept: {ids:?}");
    let kept_id = *ids.iter().find(|&&id| ledger.detached(id) == 0).unwrap();
    ledger.check(&[kept_id]);

    // Close: idle ones now, checked-out ones when they come back.
    pool.resize(2).unwrap();
    let held = pool.acquire().await.unwrap();
    let other = pool.acquire().await.unwrap();
    let other_id = other.id;
    drop(other);
    pool.close();
    assert_eq!(ledger.detached(other_id), 1, "idle at close");
    let held_id = held.id;
    drop(held);
    assert_eq!(ledger.detached(held_id), 1, "returned after close");
    ledger.check(&[]);
}

#[tokio::test(start_paused = true)]
async fn expired_and_dropped_with_the_pool_detach_once() {
    let (m, ledger) = tracked();
    let pool = Pool::builder(m)
        .max_size(2)
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_secs(120)).await;
    // Past its lifetime on return; the idle one is reaped or dropped on
    // its next checkout.
    drop(a);
    let c = pool.acquire().await.unwrap();
    let c_id = c.id;
    drop(c);
    ledger.check(&[c_id]);
    drop(pool);
    ledger.check(&[]);
}

#[tokio::test]
async fn a_failing_post_create_hook_detaches_the_resource() {
    let (m, ledger) = tracked();
    let pool = Pool::builder(m)
        .post_create(Hook::sync(|_: &mut Res, _| {
            Err(HookError::msg("not today"))
        }))
        .build()
        .unwrap();
    assert!(pool.acquire().await.is_err());
    ledger.check(&[]);
    assert_eq!(ledger.created.load(Ordering::SeqCst), 1);
}
