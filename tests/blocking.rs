//! Blocking acquires (`acquire_blocking`, `with_blocking`) beside async
//! ones on the same fair line, scoped `with`, and managers whose error is
//! not a `std::error::Error`.

use std::error::Error as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use quickslot::{Error, Manager, Pool, TimeoutPhase};

/// Makes numbered resources at once, with no runtime needed; counts drops.
#[derive(Debug, Default)]
struct Ready {
    created: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Res {
    id: usize,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Res {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Manager for Ready {
    type Resource = Res;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Res, std::io::Error> {
        Ok(Res {
            id: self.created.fetch_add(1, Ordering::SeqCst),
            dropped: self.dropped.clone(),
        })
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// 8 blocking threads and 8 async tasks, alternating, queue on a pool of 2
/// whose resources are both held; one resource is then passed along the
/// line. They are served in arrival order, and nothing leaks.
#[test]
fn blocking_and_async_waiters_are_served_in_arrival_order() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    let (held_a, held_b) =
        runtime.block_on(async { (pool.acquire().await.unwrap(), pool.acquire().await.unwrap()) });
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (p, served) = (pool.clone(), served.clone());
        if i % 2 == 0 {
            threads.push(std::thread::spawn(move || {
                let guard = p.acquire_blocking().unwrap();
                served.lock().unwrap().push((i, guard.id));
            }));
        } else {
            tasks.push(runtime.spawn(async move {
                let guard = p.acquire().await.unwrap();
                served.lock().unwrap().push((i, guard.id));
            }));
        }
        // The next one arrives only once this one is in line.
        wait_until("a waiter to queue", || pool.status().waiting == i + 1);
    }
    drop(held_a);
    for t in threads {
        t.join().unwrap();
    }
    runtime.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    let served = served.lock().unwrap().clone();
    let order: Vec<_> = served.iter().map(|&(i, _)| i).collect();
    assert_eq!(
        order,
        (0..16).collect::<Vec<_>>(),
        "served in arrival order"
    );
    assert!(
        served.iter().all(|&(_, id)| id == 0),
        "one resource passed along"
    );
    drop(held_b);
    let s = pool.status();
    assert_eq!(
        (s.size, s.idle, s.waiting, s.created),
        (2, 2, 0, 2),
        "{s:?}"
    );
    assert_eq!(s.acquired_after_wait, 16);
    drop(pool);
    drop(runtime);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "each resource dropped once"
    );
}

/// A blocking waiter that times out and an async waiter whose future is
/// dropped both leave the line; the counts stay exact.
#[test]
fn cancelled_waiters_of_both_kinds_leave_exact_counts() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let held = pool.acquire_blocking().unwrap();
    let started = Instant::now();
    match pool.acquire_blocking_timeout(Duration::from_millis(50)) {
        Err(Error::Timeout {
            phase: TimeoutPhase::Wait,
            ..
        }) => {}
        other => panic!("expected a wait timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(50));
    runtime.block_on(async {
        let mut fut = Box::pin(pool.acquire());
        assert!(futures_poll_once(fut.as_mut()).is_pending());
        assert_eq!(pool.status().waiting, 1);
        drop(fut);
    });
    let s = pool.status();
    assert_eq!(
        (s.size, s.idle, s.waiting, s.timeouts),
        (1, 0, 0, 1),
        "{s:?}"
    );
    drop(held);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.waiting), (1, 1, 0), "{s:?}");
    drop(pool);
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "dropped exactly once");
}

fn futures_poll_once<F: std::future::Future>(
    fut: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// No runtime anywhere: 16 threads share a pool of 4; close wakes the
/// blocking waiters with `Closed`.
#[test]
fn blocking_acquire_without_any_runtime() {
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(4).build().unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let uses = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (pool, barrier, uses) = (pool.clone(), barrier.clone(), uses.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..200 {
                    let guard = pool.acquire_blocking().unwrap();
                    assert!(guard.id < 4);
                    uses.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(uses.load(Ordering::SeqCst), 3200);
    let s = pool.status();
    // How many were made depends on how the threads overlapped (at most
    // max_size); every one is idle again.
    assert!(
        s.size <= 4 && s.size == s.idle && s.size as u64 == s.created,
        "{s:?}"
    );
    assert_eq!(s.waiting, 0);

    // Close wakes blocking waiters.
    let held: Vec<_> = (0..4).map(|_| pool.acquire_blocking().unwrap()).collect();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || pool.acquire_blocking().map(|_| ()))
        })
        .collect();
    wait_until("3 blocking waiters", || pool.status().waiting == 3);
    pool.close();
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(Error::Closed)));
    }
    drop(held);
    let s = pool.status();
    assert_eq!(s.size, 0);
    drop(pool);
    assert_eq!(dropped.load(Ordering::SeqCst) as u64, s.created);
}

/// A manager whose create needs the Tokio runtime (a timer), used from
/// `spawn_blocking`.
#[derive(Debug, Default)]
struct NeedsRuntime(AtomicUsize);

impl Manager for NeedsRuntime {
    type Resource = usize;
    type Error = std::io::Error;

    async fn create(&self) -> Result<usize, std::io::Error> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[test]
fn blocking_acquire_from_spawn_blocking_with_a_runtime_manager() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder(NeedsRuntime::default())
        .max_size(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::task::spawn_blocking(move || {
                    let n = pool.acquire_blocking().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    *n
                })
            })
            .collect();
        for j in jobs {
            assert!(j.await.unwrap() < 2);
        }
    });
    let s = pool.status();
    assert_eq!((s.size, s.created), (2, 2), "{s:?}");
    // From a plain thread, the same manager runs on quickslot's own runtime.
    let plain = pool.clone();
    let n = std::thread::spawn(move || {
        plain.close();
        plain.acquire_blocking().map(|n| *n)
    })
    .join()
    .unwrap();
    assert!(matches!(n, Err(Error::Closed)));
    let fresh = Pool::builder(NeedsRuntime::default()).build().unwrap();
    let n = std::thread::spawn(move || *fresh.acquire_blocking().unwrap())
        .join()
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn blocking_create_times_out_as_async_does() {
    #[derive(Debug)]
    struct Never;
    impl Manager for Never {
        type Resource = ();
        type Error = String;
        async fn create(&self) -> Result<(), String> {
            std::future::pending().await
        }
    }
    let pool = Pool::builder(Never)
        .acquire_timeout(Duration::from_millis(40))
        .build()
        .unwrap();
    let started = Instant::now();
    match pool.acquire_blocking() {
        Err(Error::Timeout {
            phase: TimeoutPhase::Create,
            ..
        }) => {}
        other => panic!("expected a create timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn with_returns_the_result_and_the_resource() {
    let pool = Pool::builder(Ready::default()).max_size(1).build().unwrap();
    let id = pool.with(async |r: &mut Res| r.id + 100).await.unwrap();
    assert_eq!(id, 100);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
}

#[tokio::test]
async fn with_discards_the_resource_when_f_panics() {
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let task = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.with(async |_: &mut Res| -> usize { panic!("f panicked") })
                .await
        })
    };
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the resource was dropped"
    );
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.discarded.panicked), (0, 0, 1), "{s:?}");
    // The slot is free: a new resource is made.
    let id = pool.with(async |r: &mut Res| r.id).await.unwrap();
    assert_eq!(id, 1);
}

#[tokio::test(start_paused = true)]
async fn with_dropped_mid_f_discards_the_resource() {
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_millis(10),
        pool.with(async |_: &mut Res| tokio::time::sleep(Duration::from_secs(60)).await),
    )
    .await;
    assert!(outcome.is_err(), "timed out mid-f");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.discarded.cancelled), (0, 0, 1), "{s:?}");
}

#[test]
fn with_blocking_runs_f_and_discards_on_panic() {
    let manager = Ready::default();
    let dropped = manager.dropped.clone();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    assert_eq!(pool.with_blocking(|r| r.id * 2).unwrap(), 0);
    assert_eq!(pool.status().idle, 1);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        pool.with_blocking(|_| -> () { panic!("boom") })
    }));
    assert!(caught.is_err());
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(pool.status().size, 0);
    assert_eq!(pool.with_blocking(|r| r.id).unwrap(), 1);
}

/// A manager whose error is an `anyhow::Error`.
#[derive(Debug)]
struct AnyhowManager;

impl Manager for AnyhowManager {
    type Resource = ();
    type Error = anyhow::Error;

    async fn create(&self) -> Result<(), anyhow::Error> {
        Err(anyhow::anyhow!("the backend said no"))
    }
}

/// A manager whose error is a `String`.
#[derive(Debug)]
struct StringManager;

impl Manager for StringManager {
    type Resource = ();
    type Error = String;

    async fn create(&self) -> Result<(), String> {
        Err("no such host: db.invalid".to_owned())
    }
}

/// A manager whose error is a boxed error with a cause of its own.
#[derive(Debug)]
struct BoxedManager;

#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("could not reach the cache")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Manager for BoxedManager {
    type Resource = ();
    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn create(&self) -> Result<(), Self::Error> {
        Err(Box::new(Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))))
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

async fn anyhow_caller<M: Manager>(pool: &Pool<M>) -> anyhow::Result<()> {
    let _guard = pool.acquire().await?;
    Ok(())
}

#[tokio::test]
async fn any_error_type_works_with_question_mark_and_source() {
    let pool = Pool::builder(AnyhowManager).build().unwrap();
    let err = anyhow_caller(&pool).await.unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "creating a pooled resource failed: the backend said no"
    );

    let pool = Pool::builder(StringManager).build().unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(
        chain(&err),
        [
            "creating a pooled resource failed",
            "no such host: db.invalid"
        ]
    );
    let cause = err
        .source()
        .unwrap()
        .downcast_ref::<quickslot::Cause<String>>()
        .expect("a String is shown through Cause");
    assert_eq!(cause.get(), "no such host: db.invalid");
}

#[tokio::test]
async fn error_chains_show_each_message_once() {
    let pool = Pool::builder(BoxedManager).build().unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(
        chain(&err),
        [
            "creating a pooled resource failed",
            "could not reach the cache",
            "connection refused"
        ]
    );
    let err = anyhow_caller(&pool).await.unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "creating a pooled resource failed: could not reach the cache: connection refused"
    );
}
