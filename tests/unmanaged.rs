//! `quickslot::unmanaged::Pool`: objects the user makes and adds.

use std::future::Future as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quickslot::unmanaged::{Pool, Pooled};
use quickslot::{BuildError, Error, TryAcquireError};

/// An object that counts its drops in a shared ledger.
#[derive(Debug)]
struct Obj {
    id: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn objects(n: usize) -> (Vec<Obj>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let objs = (0..n)
        .map(|id| Obj {
            id,
            drops: drops.clone(),
        })
        .collect();
    (objs, drops)
}

#[test]
fn bad_sizes_are_typed_errors() {
    assert!(matches!(Pool::<u8>::new(0), Err(BuildError::ZeroMaxSize)));
    assert!(matches!(
        Pool::<u8>::new(usize::MAX),
        Err(BuildError::MaxSizeTooLarge { .. })
    ));
}

#[tokio::test]
async fn add_remove_acquire_try_acquire_status() {
    let (objs, drops) = objects(3);
    let pool = Pool::new(2).unwrap();
    assert!(matches!(pool.try_acquire(), Err(TryAcquireError::Empty)));
    let mut objs = objs.into_iter();
    pool.add(objs.next().unwrap()).unwrap();
    pool.add(objs.next().unwrap()).unwrap();
    let third = objs.next().unwrap();
    let back = pool.add(third).expect_err("full: the object comes back");
    assert_eq!(back.id, 2);
    drop(back);
    let s = pool.status();
    assert_eq!(
        (s.max_size, s.size, s.idle, s.in_use),
        (2, 2, 2, 0),
        "{s:?}"
    );

    let a = pool.acquire().await.unwrap();
    let b = pool.try_acquire().unwrap();
    assert_eq!((a.id, b.id), (0, 1), "FIFO reuse");
    assert!(matches!(
        pool.try_acquire(),
        Err(TryAcquireError::Exhausted)
    ));
    drop(a);
    let removed = pool.remove().expect("one idle");
    assert_eq!(removed.id, 0);
    assert_eq!(pool.status().size, 1, "removed: its place is free");
    let detached = Pooled::detach(b);
    assert_eq!(detached.id, 1);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (0, 0), "{s:?}");
    assert_eq!(pool.remove().map(|o| o.id), None);
    drop((removed, detached));
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_served_by_an_add_and_times_out_without_one() {
    let pool = Pool::<u32>::new(1).unwrap();
    match pool.acquire_timeout(Duration::from_millis(50)).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { *pool.acquire().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(pool.status().waiting, 1);
    pool.add(7).unwrap();
    assert_eq!(waiter.await.unwrap(), 7);
    assert_eq!(pool.status().idle, 1);
}

/// Waiters are served in arrival order.
#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let pool = Pool::<u32>::new(1).unwrap();
    pool.add(0).unwrap();
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let guard = p.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(guard);
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pool.status().waiting, i + 1);
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

/// Many acquires dropped at random points while objects change hands:
/// nothing is lost, the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_storm_loses_nothing() {
    let (objs, drops) = objects(4);
    let pool = Pool::new(4).unwrap();
    for o in objs {
        pool.add(o).unwrap();
    }
    let served = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (pool, served) = (pool.clone(), served.clone());
            tokio::spawn(async move {
                for j in 0..300u64 {
                    let deadline = Duration::from_micros((i * 7 + j) % 50);
                    if let Ok(guard) = pool.acquire_timeout(deadline).await {
                        served.fetch_add(1, Ordering::SeqCst);
                        if j % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                        drop(guard);
                    }
                    if j % 5 == 0 {
                        // A future dropped after one poll, maybe in line.
                        let mut fut = Box::pin(pool.acquire());
                        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(served.load(Ordering::SeqCst) > 0);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.waiting), (4, 4, 0), "{s:?}");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "nothing dropped while in use"
    );
    drop(pool);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        4,
        "each dropped once with the pool"
    );
}

#[tokio::test]
async fn close_fails_waiters_and_refuses_adds() {
    let (objs, drops) = objects(2);
    let pool = Pool::new(2).unwrap();
    let mut objs = objs.into_iter();
    pool.add(objs.next().unwrap()).unwrap();
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.acquire_timeout(Duration::from_secs(5))
                .await
                .map(|_| ())
        })
    };
    while pool.status().waiting == 0 {
        tokio::task::yield_now().await;
    }
    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
    let refused = pool.add(objs.next().unwrap()).expect_err("closed");
    drop(refused);
    drop(held);
    assert_eq!(pool.status().size, 0);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert!(pool.is_closed());
}

#[test]
fn blocking_use_from_plain_threads() {
    let pool = Pool::new(2).unwrap();
    pool.add(String::new()).unwrap();
    pool.add(String::new()).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    pool.acquire_blocking().unwrap().push('x');
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = pool.acquire_blocking().unwrap();
    let b = pool.acquire_blocking().unwrap();
    assert_eq!(a.len() + b.len(), 600);
    assert!(matches!(
        pool.acquire_blocking_timeout(Duration::from_millis(20)),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn pool_and_guard_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Pool<Vec<u8>>>();
    fn send<T: Send>() {}
    send::<Pooled<Vec<u8>>>();
}

#[test]
fn poll_is_pending_while_nothing_was_added() {
    let pool = Pool::<u8>::new(1).unwrap();
    let mut fut = Box::pin(pool.acquire());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    assert!(matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Pending
    ));
    pool.add(3).unwrap();
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(guard)) => assert_eq!(*guard, 3),
        other => panic!("expected the added object, got {other:?}"),
    }
}
