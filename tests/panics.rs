//! A panic in user code on a pool path never costs capacity and never drops
//! a resource twice; the panic itself reaches the caller.
//!
//! Each test uses a pool of one (or a few) resources and a drop ledger: a
//! lost slot shows up as a later acquire that times out, a double drop as a
//! ledger count above the number created.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quickslot::{Manager, Pool};

/// Counts creates and drops of its resources.
#[derive(Debug, Default)]
struct Ledger {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Ledger {
    fn live(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct Res {
    ledger: Arc<Ledger>,
    id: usize,
}

impl Drop for Res {
    fn drop(&mut self) {
        self.ledger.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A manager whose `is_broken` or `create` panics while the switch is on.
#[derive(Debug, Default)]
struct Panicky {
    ledger: Arc<Ledger>,
    panic_in_is_broken: AtomicBool,
    panic_in_create: AtomicBool,
    /// Polls of a create future after it panicked (must stay 0).
    polled_after_panic: AtomicUsize,
}

/// A create that is pending once (as a real connect would be), then
/// panics or finishes. A hand-written future, so that a poll after its
/// panic is counted instead of panicking again out of sight.
struct Create<'a> {
    manager: &'a Panicky,
    polls: usize,
    panicked: bool,
}

impl Future for Create<'_> {
    type Output = Result<Res, std::io::Error>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.panicked {
            self.manager
                .polled_after_panic
                .fetch_add(1, Ordering::SeqCst);
            return Poll::Pending;
        }
        self.polls += 1;
        if self.polls == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.manager.panic_in_create.load(Ordering::SeqCst) {
            self.panicked = true;
            panic!("create panicked");
        }
        let ledger = self.manager.ledger.clone();
        let id = ledger.created.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(Res { ledger, id }))
    }
}

impl Manager for Panicky {
    type Resource = Res;
    type Error = std::io::Error;

    fn create(&self) -> impl Future<Output = Result<Res, std::io::Error>> + Send {
        Create {
            manager: self,
            polls: 0,
            panicked: false,
        }
    }

    fn is_broken(&self, _: &mut Res) -> bool {
        if self.panic_in_is_broken.load(Ordering::SeqCst) {
            panic!("is_broken panicked");
        }
        false
    }
}

fn panicky_pool(max_size: usize) -> (Pool<Panicky>, Arc<Ledger>) {
    let manager = Panicky::default();
    let ledger = manager.ledger.clone();
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    (pool, ledger)
}

/// Every slot of the pool can still be acquired at once.
async fn assert_full_capacity<M: Manager>(pool: &Pool<M>, max_size: usize)
where
    M::Error: std::fmt::Debug,
{
    let mut held = Vec::new();
    for i in 0..max_size {
        match pool.acquire_timeout(Duration::from_millis(200)).await {
            Ok(guard) => held.push(guard),
            Err(e) => panic!("slot {i} of {max_size} lost: {e:?} ({:?})", pool.status()),
        }
    }
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn panicking_is_broken_frees_the_slot() {
    let (pool, ledger) = panicky_pool(1);
    let guard = pool.acquire().await.unwrap();
    pool.manager()
        .panic_in_is_broken
        .store(true, Ordering::SeqCst);
    let caught = catch_unwind(AssertUnwindSafe(|| drop(guard)));
    assert!(caught.is_err(), "the panic reaches the caller");
    pool.manager()
        .panic_in_is_broken
        .store(false, Ordering::SeqCst);
    // The resource's state is unknown: it was dropped, once.
    assert_eq!(ledger.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_full_capacity(&pool, 1).await;
    drop(pool);
    assert_eq!(ledger.live(), 0);
    assert_eq!(
        ledger.dropped.load(Ordering::SeqCst),
        ledger.created.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_on_release_hook_frees_the_slot() {
    let ledger = Arc::new(Ledger::default());
    let manager = Panicky {
        ledger: ledger.clone(),
        ..Panicky::default()
    };
    let fail = Arc::new(AtomicBool::new(false));
    let hook_fail = fail.clone();
    let pool = Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_millis(200))
        .on_release(move |_res: &mut Res, _info| {
            if hook_fail.load(Ordering::SeqCst) {
                panic!("on_release panicked");
            }
            Ok(())
        })
        .build()
        .unwrap();
    let guard = pool.acquire().await.unwrap();
    fail.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| drop(guard))).is_err());
    fail.store(false, Ordering::SeqCst);
    assert_eq!(ledger.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_full_capacity(&pool, 1).await;
}

#[tokio::test(start_paused = true)]
async fn panicking_retain_predicate_loses_nothing() {
    let (pool, ledger) = panicky_pool(4);
    let held: Vec<_> = [
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    ]
    .into();
    drop(held);
    assert_eq!(pool.status().idle, 4);
    let mut visited = 0;
    let caught = catch_unwind(AssertUnwindSafe(|| {
        pool.retain(|res, _| {
            visited += 1;
            if visited == 2 {
                panic!("retain predicate panicked on {}", res.id);
            }
            true
        })
    }));
    assert!(caught.is_err());
    let status = pool.status();
    // The visited resource whose predicate panicked is dropped (its state is
    // unknown); the others stay idle; nothing else is lost.
    assert_eq!(ledger.live(), status.idle, "{status:?}");
    assert_eq!(status.size, status.idle, "{status:?}");
    assert!(status.idle >= 3, "{status:?}");
    assert_full_capacity(&pool, 4).await;
    drop(pool);
    assert_eq!(ledger.live(), 0);
}

/// A create that panics inside an acquire's poll: the panic is caught by the
/// caller, who drops the acquire later. The panicked create future must not
/// be polled again (in the background or anywhere), and its slot is freed.
#[tokio::test(start_paused = true)]
async fn panicked_create_is_never_polled_again_and_frees_its_slot() {
    let (pool, ledger) = panicky_pool(1);
    pool.manager().panic_in_create.store(true, Ordering::SeqCst);
    {
        let mut acquire = Box::pin(pool.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        // First poll: the create is pending (it yields once).
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        let caught = catch_unwind(AssertUnwindSafe(|| acquire.as_mut().poll(&mut cx)));
        assert!(caught.is_err(), "the create's panic reaches the caller");
        pool.manager()
            .panic_in_create
            .store(false, Ordering::SeqCst);
        drop(acquire);
    }
    // Let any background task run: none may resume the panicked future
    // (that would panic with "resumed after panicking" inside the runtime).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pool.manager().polled_after_panic.load(Ordering::SeqCst), 0);
    assert_eq!(pool.status().size, 0, "{:?}", pool.status());
    assert_eq!(pool.status().creating, 0, "{:?}", pool.status());
    assert_full_capacity(&pool, 1).await;
    assert_eq!(ledger.created.load(Ordering::SeqCst), 1);
}

/// A panicking `recycle` in an acquire frees the slot and drops the resource
/// once.
#[tokio::test(start_paused = true)]
async fn panicking_recycle_frees_the_slot() {
    #[derive(Debug, Default)]
    struct BadRecycle {
        ledger: Arc<Ledger>,
        panic: AtomicBool,
    }
    impl Manager for BadRecycle {
        type Resource = Res;
        type Error = std::io::Error;
        async fn create(&self) -> Result<Res, std::io::Error> {
            let id = self.ledger.created.fetch_add(1, Ordering::SeqCst);
            Ok(Res {
                ledger: self.ledger.clone(),
                id,
            })
        }
        async fn recycle(
            &self,
            _: &mut Res,
            _: &quickslot::ResourceInfo,
        ) -> Result<(), std::io::Error> {
            if self.panic.load(Ordering::SeqCst) {
                panic!("recycle panicked");
            }
            Ok(())
        }
    }
    let manager = BadRecycle::default();
    let ledger = manager.ledger.clone();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    drop(pool.acquire().await.unwrap());
    pool.manager().panic.store(true, Ordering::SeqCst);
    {
        let mut acquire = pin!(pool.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        let caught = catch_unwind(AssertUnwindSafe(|| acquire.as_mut().poll(&mut cx)));
        assert!(caught.is_err());
    }
    pool.manager().panic.store(false, Ordering::SeqCst);
    assert_eq!(ledger.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_full_capacity(&pool, 1).await;
}
