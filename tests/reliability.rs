//! Reliability of the pool core under cancellation, panics and runtime
//! shutdown (issue 8, scenarios 5-7), with a no-op manager that counts every
//! create and drop.
//!
//! Sizes: the short version runs in CI; `QUICKSLOT_CHAOS_FULL=1` runs the
//! full one (1,000,000 acquires in the cancellation storm). Each scenario
//! prints a one-line `RELIABILITY` summary (`--nocapture` to see it).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::task::Poll;
use std::time::{Duration, Instant};

use quickslot::{Error, Manager, Pool, Pooled, ResourceInfo, Status};

fn full() -> bool {
    std::env::var("QUICKSLOT_CHAOS_FULL").is_ok_and(|v| v == "1")
}

/// Message of the panics these tests cause on purpose.
const INTENTIONAL: &str = "intentional test panic";

/// Panics other than the intentional ones, process-wide.
static UNEXPECTED_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Silences the intentional panics and counts the others (they still
/// print).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if message.contains(INTENTIONAL) {
                return;
            }
            UNEXPECTED_PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// A no-op manager with exact accounting.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counts {
    created: AtomicU64,
    dropped: AtomicU64,
    /// Most resources alive at once.
    max_live: AtomicU64,
    /// Creates started (including ones cancelled mid-way).
    create_calls: AtomicU64,
}

impl Counts {
    fn created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
    fn live(&self) -> u64 {
        self.created() - self.dropped()
    }
}

#[derive(Debug)]
struct Token {
    id: u64,
    counts: Arc<Counts>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// What `create` does besides succeeding at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateMode {
    Instant,
    /// Never completes (a create in flight when the runtime shuts down).
    Hang,
    /// Panics on the first call, then succeeds.
    PanicOnce,
}

#[derive(Debug)]
struct Noop {
    counts: Arc<Counts>,
    mode: CreateMode,
    panicked: AtomicBool,
    panic_in_recycle: AtomicBool,
}

impl Noop {
    fn new(mode: CreateMode) -> (Self, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        (
            Noop {
                counts: counts.clone(),
                mode,
                panicked: AtomicBool::new(false),
                panic_in_recycle: AtomicBool::new(false),
            },
            counts,
        )
    }
}

#[derive(Debug)]
struct NeverFails;

impl std::fmt::Display for NeverFails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for NeverFails {}

impl Manager for Noop {
    type Resource = Token;
    type Error = NeverFails;

    fn create(&self) -> impl Future<Output = Result<Token, NeverFails>> + Send {
        self.counts.create_calls.fetch_add(1, Ordering::SeqCst);
        let counts = self.counts.clone();
        let mode = self.mode;
        let panic_now =
            mode == CreateMode::PanicOnce && !self.panicked.swap(true, Ordering::SeqCst);
        async move {
            if mode == CreateMode::Hang {
                std::future::pending::<()>().await;
            }
            assert!(!panic_now, "{INTENTIONAL}: in create");
            let id = counts.created.fetch_add(1, Ordering::SeqCst);
            let live = id + 1 - counts.dropped.load(Ordering::SeqCst);
            counts.max_live.fetch_max(live, Ordering::SeqCst);
            Ok(Token { id, counts })
        }
    }

    fn recycle(
        &self,
        _resource: &mut Token,
        _info: &ResourceInfo,
    ) -> impl Future<Output = Result<(), NeverFails>> + Send {
        let panic_now = self.panic_in_recycle.swap(false, Ordering::SeqCst);
        async move {
            assert!(!panic_now, "{INTENTIONAL}: in recycle");
            Ok(())
        }
    }
}

/// Every gauge exact for a pool at rest.
fn assert_at_rest(status: &Status, what: &str) {
    assert!(status.size <= status.max_size, "{what}: {status:?}");
    assert_eq!(
        status.idle + status.creating,
        status.size,
        "{what}: {status:?}"
    );
    assert_eq!(
        status.idle + status.in_use + status.creating,
        status.size,
        "{what}: {status:?}"
    );
    assert_eq!(status.in_use, 0, "{what}: {status:?}");
    assert_eq!(status.waiting, 0, "{what}: {status:?}");
    assert_eq!(status.creating, 0, "{what}: {status:?}");
}

/// xorshift64*: deterministic per task, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Completes at `deadline`, yielding to the scheduler until then: a
/// cancellation point with microsecond resolution (Tokio's timer has 1 ms).
async fn spin_until(deadline: Instant) {
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------
// Scenario 5: cancellation storm.
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct StormCounts {
    ok: AtomicU64,
    timeouts: AtomicU64,
    cancelled: AtomicU64,
    /// `acquire_timeout` calls that returned later than their deadline +
    /// tolerance.
    late: AtomicU64,
    max_overrun_us: AtomicU64,
}

/// Scenario 5: 1,000,000 acquires (200,000 in CI) from 256 tasks on 16
/// resources and 2 workers, each with a random deadline of 0-100 µs,
/// enforced three ways: the pool's own `acquire_timeout`, dropping the
/// future from a `select!` against a spinning µs deadline, and dropping it
/// after exactly one poll. At the end the counts are exact and nothing was
/// ever created beyond `max_size`.
#[test]
fn s5_cancellation_storm() {
    install_panic_hook();
    const TASKS: u64 = 256;
    const MAX: usize = 16;
    let total: u64 = if full() { 1_000_000 } else { 200_000 };
    let tolerance = Duration::from_millis(200);
    let (manager, counts) = Noop::new(CreateMode::Instant);
    let pool = Pool::builder(manager)
        .max_size(MAX)
        .acquire_timeout(None)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let storm = Arc::new(StormCounts::default());
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let pool = pool.clone();
            let storm = storm.clone();
            let per_task = total / TASKS + u64::from(t < total % TASKS);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(t + 1);
                for _ in 0..per_task {
                    let deadline = Duration::from_micros(rng.below(101));
                    let t0 = Instant::now();
                    let outcome: Option<Result<Pooled<Noop>, Error<NeverFails>>> =
                        match rng.below(3) {
                            0 => {
                                let r = pool.acquire_timeout(deadline).await;
                                let overrun = t0.elapsed().saturating_sub(deadline);
                                storm
                                    .max_overrun_us
                                    .fetch_max(overrun.as_micros() as u64, Ordering::Relaxed);
                                if overrun > tolerance {
                                    storm.late.fetch_add(1, Ordering::Relaxed);
                                }
                                Some(r)
                            }
                            1 => {
                                tokio::select! {
                                    r = pool.acquire() => Some(r),
                                    () = spin_until(t0 + deadline) => None,
                                }
                            }
                            _ => {
                                // One poll, then drop: the cancellation lands
                                // right after registering as a waiter.
                                let mut fut = pin!(pool.acquire());
                                std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
                                    Poll::Ready(r) => Poll::Ready(Some(r)),
                                    Poll::Pending => Poll::Ready(None),
                                })
                                .await
                            }
                        };
                    match outcome {
                        Some(Ok(guard)) => {
                            storm.ok.fetch_add(1, Ordering::Relaxed);
                            if rng.below(2) == 0 {
                                tokio::task::yield_now().await;
                            }
                            drop(guard);
                        }
                        Some(Err(e)) => {
                            assert!(e.is_timeout(), "unexpected error {e}");
                            storm.timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            storm.cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("storm task");
        }
    });
    let elapsed = started.elapsed();
    let status = pool.status();
    let ok = storm.ok.load(Ordering::SeqCst);
    let timeouts = storm.timeouts.load(Ordering::SeqCst);
    let cancelled = storm.cancelled.load(Ordering::SeqCst);
    eprintln!(
        "RELIABILITY 5 cancellation storm: {total} acquires, {TASKS} tasks, {MAX} resources, 2 \
         workers in {elapsed:?}: ok {ok}, timed out {timeouts}, cancelled {cancelled}; created {} \
         (create calls {}), max live {}, late {}, worst overrun {} µs; {status:?}",
        counts.created(),
        counts.create_calls.load(Ordering::SeqCst),
        counts.max_live.load(Ordering::SeqCst),
        storm.late.load(Ordering::SeqCst),
        storm.max_overrun_us.load(Ordering::SeqCst),
    );
    assert_eq!(ok + timeouts + cancelled, total);
    assert!(cancelled > 0 && timeouts > 0 && ok > 0);
    assert_at_rest(&status, "after the storm");
    assert_eq!(
        status.idle as u64,
        counts.live(),
        "every live resource is idle"
    );
    assert!(
        counts.created() <= MAX as u64,
        "created {} > max_size {MAX}",
        counts.created()
    );
    assert!(counts.max_live.load(Ordering::SeqCst) <= MAX as u64);
    assert_eq!(counts.dropped(), 0, "a no-op resource was dropped");
    assert_eq!(status.created, counts.created());
    assert_eq!(
        status.timeouts, timeouts,
        "the pool's timeout count is exact"
    );
    assert_eq!(
        status.acquired_immediately + status.acquired_after_wait,
        ok,
        "served acquires counted exactly once: {status:?}"
    );
    assert_eq!(
        storm.late.load(Ordering::SeqCst),
        0,
        "an acquire outlived its deadline"
    );
    drop(rt);
    drop(pool);
    assert_eq!(
        counts.live(),
        0,
        "resources left after the pool was dropped"
    );
    assert_eq!(UNEXPECTED_PANICS.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Scenario 6: a panic while holding a resource.
// ---------------------------------------------------------------------------

/// Scenario 6: tasks panic while holding a resource (as `Pooled`'s docs
/// say, the guard drops during unwinding and the resource returns to the
/// pool like any other: it is neither lost nor dropped), under load from
/// 256 tasks on 16 resources; the capacity all comes back, a waiter queued
/// behind the panicking holder gets the very same resource, and a panic
/// inside `create` or `recycle` frees the slot too.
#[test]
fn s6_panic_while_holding() {
    install_panic_hook();
    const MAX: usize = 16;
    let rounds: u64 = if full() { 200 } else { 40 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Under load: every 10th use panics, in a task or inside catch_unwind.
    let (manager, counts) = Noop::new(CreateMode::Instant);
    let pool = Pool::builder(manager)
        .max_size(MAX)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let panics = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..256u64 {
            let pool = pool.clone();
            let panics = panics.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..rounds {
                    let panicking = (t + i) % 10 == 0;
                    let pool2 = pool.clone();
                    let inner = tokio::spawn(async move {
                        let guard = pool2.acquire().await.expect("acquire");
                        tokio::task::yield_now().await;
                        if panicking {
                            panic!("{INTENTIONAL}: holding resource {}", guard.id);
                        }
                        drop(guard);
                    });
                    match inner.await {
                        Ok(()) => assert!(!panicking),
                        Err(e) => {
                            assert!(e.is_panic() && panicking, "{e}");
                            panics.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if i % 7 == 0 {
                        // A panic in synchronous code holding a guard.
                        if let Ok(guard) = pool.try_acquire() {
                            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                let _held = guard;
                                panic!("{INTENTIONAL}: sync holder");
                            }));
                            assert!(r.is_err());
                            panics.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("load task");
        }
    });
    let status = pool.status();
    eprintln!(
        "RELIABILITY 6 panic while holding: 256 tasks x {rounds} uses on {MAX} resources, {} \
         panics while holding; created {}, dropped {}; {status:?}",
        panics.load(Ordering::SeqCst),
        counts.created(),
        counts.dropped()
    );
    assert!(panics.load(Ordering::SeqCst) >= 256 * rounds / 10);
    assert_at_rest(&status, "after the panics");
    assert_eq!(counts.dropped(), 0, "a resource was dropped, not returned");
    assert!(counts.created() <= MAX as u64);
    assert_eq!(
        status.idle as u64,
        counts.created(),
        "every resource came back"
    );
    // The whole capacity is available without creating anything.
    let all: Vec<_> = (0..status.size)
        .map(|_| pool.try_acquire().expect("capacity came back"))
        .collect();
    drop(all);
    drop(pool);
    assert_eq!(counts.live(), 0);

    // A waiter queued behind the panicking holder gets the same resource.
    let (manager, counts) = Noop::new(CreateMode::Instant);
    let pool = Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    rt.block_on(async {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let p = pool.clone();
        let holder = tokio::spawn(async move {
            let guard = p.acquire().await.unwrap();
            held_tx.send(guard.id).unwrap();
            let _ = go_rx.await;
            panic!("{INTENTIONAL}: holder of the only resource");
        });
        let id = held_rx.await.unwrap();
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire().await.map(|g| g.id) });
        while pool.status().waiting == 0 {
            tokio::task::yield_now().await;
        }
        go_tx.send(()).unwrap();
        assert!(holder.await.unwrap_err().is_panic());
        let got = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the waiter was served")
            .unwrap()
            .expect("acquire");
        assert_eq!(
            got, id,
            "the waiter got the resource the panicking task held"
        );
    });
    assert_at_rest(&pool.status(), "after the hand-over");
    assert_eq!(counts.created(), 1);
    drop(pool);
    assert_eq!(counts.live(), 0);

    // A panic inside the manager's create or recycle frees the slot.
    let (manager, counts) = Noop::new(CreateMode::PanicOnce);
    let pool = Pool::builder(manager)
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    rt.block_on(async {
        let p = pool.clone();
        let r = tokio::spawn(async move { p.acquire().await.map(drop) }).await;
        assert!(r.unwrap_err().is_panic(), "create panicked");
        assert_at_rest(&pool.status(), "after a panic in create");
        assert_eq!(
            pool.status().size,
            0,
            "the slot of the panicked create was freed"
        );
        drop(pool.acquire().await.expect("a create after the panic"));
        pool.manager()
            .panic_in_recycle
            .store(true, Ordering::SeqCst);
        let p = pool.clone();
        let r = tokio::spawn(async move { p.acquire().await.map(drop) }).await;
        assert!(r.unwrap_err().is_panic(), "recycle panicked");
        assert_eq!(
            pool.status().size,
            0,
            "the slot of the panicked recycle was freed"
        );
        drop(pool.acquire().await.expect("an acquire after the panic"));
    });
    assert_at_rest(&pool.status(), "after a panic in recycle");
    assert_eq!(counts.created(), 2);
    assert_eq!(
        counts.dropped(),
        1,
        "the resource being recycled was dropped"
    );
    drop(pool);
    assert_eq!(counts.live(), 0);
    assert_eq!(UNEXPECTED_PANICS.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Scenario 7: the runtime shuts down with resources out and tasks waiting.
// ---------------------------------------------------------------------------

/// Runs `f` on another thread and fails if it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().expect("thread");
            v
        }
        Err(_) => panic!("{what} hung for {limit:?}"),
    }
}

/// Scenario 7: a runtime shuts down while 16 tasks hold every resource of
/// one pool, 240 tasks wait for them (half with a deadline, half without),
/// and 4 tasks are inside a create that never completes on another pool of
/// which only the tasks hold handles. No panic, no hang, the first pool
/// ends at rest with every resource back, and every resource of both pools
/// is dropped once the pools are. Both runtime flavours, dropped and shut
/// down with a timeout.
#[test]
fn s7_runtime_shutdown_with_work_in_flight() {
    install_panic_hook();
    for flavour in [
        "multi_thread drop",
        "multi_thread shutdown_timeout",
        "current_thread drop",
    ] {
        let (manager, counts) = Noop::new(CreateMode::Instant);
        let pool = Pool::builder(manager)
            .max_size(16)
            .acquire_timeout(None)
            .build()
            .unwrap();
        let (hang_manager, hang_counts) = Noop::new(CreateMode::Hang);
        let hang_pool = Pool::builder(hang_manager)
            .max_size(4)
            .acquire_timeout(None)
            .build()
            .unwrap();
        let hang_status = hang_pool.clone();
        let rt = if flavour.starts_with("multi") {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let holding = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            for _ in 0..16 {
                let pool = pool.clone();
                let holding = holding.clone();
                tokio::spawn(async move {
                    let _guard = pool.acquire().await.unwrap();
                    holding.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                });
            }
            while holding.load(Ordering::SeqCst) < 16 {
                tokio::task::yield_now().await;
            }
            for i in 0..240 {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let r = if i % 2 == 0 {
                        pool.acquire().await
                    } else {
                        pool.acquire_timeout(Duration::from_secs(3600)).await
                    };
                    let _guard = r.unwrap();
                    std::future::pending::<()>().await;
                });
            }
            for _ in 0..8 {
                let pool = hang_pool.clone();
                tokio::spawn(async move {
                    let _ = pool.acquire().await;
                });
            }
            drop(hang_pool);
            let end = Instant::now() + Duration::from_secs(10);
            while (pool.status().waiting < 240
                || hang_status.status().creating < 4
                || hang_status.status().waiting < 4)
                && Instant::now() < end
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let s = pool.status();
            assert_eq!((s.in_use, s.waiting), (16, 240), "{s:?}");
            let s = hang_status.status();
            assert_eq!((s.creating, s.waiting), (4, 4), "{s:?}");
        });
        let panics_before = UNEXPECTED_PANICS.load(Ordering::SeqCst);
        let shutdown = flavour.to_string();
        within(
            Duration::from_secs(10),
            &format!("{flavour}: runtime shutdown"),
            move || {
                if shutdown.ends_with("shutdown_timeout") {
                    rt.shutdown_timeout(Duration::from_secs(5));
                } else {
                    drop(rt);
                }
            },
        );
        assert_eq!(
            UNEXPECTED_PANICS.load(Ordering::SeqCst),
            panics_before,
            "{flavour}: a panic during shutdown"
        );
        let status = pool.status();
        let hang = hang_status.status();
        eprintln!(
            "RELIABILITY 7 runtime shutdown ({flavour}): 16 holding, 240 waiting, 4 creating \
             + 4 waiting on a second pool; after shutdown {status:?}; second pool size {} \
             creating {} waiting {}; created {} + {}",
            hang.size,
            hang.creating,
            hang.waiting,
            counts.created(),
            hang_counts.created()
        );
        assert_at_rest(&status, flavour);
        assert_eq!(status.idle, 16, "{flavour}: every resource came back");
        assert_at_rest(&hang, flavour);
        assert_eq!(
            hang.size, 0,
            "{flavour}: the cancelled creates freed their slots"
        );
        drop(hang_status);
        assert_eq!(hang_counts.created(), 0);
        assert_eq!(counts.created(), 16);
        assert_eq!(counts.dropped(), 0);
        // Dropped outside any runtime.
        drop(pool);
        assert_eq!(counts.dropped(), 16, "{flavour}: every resource dropped");
    }
}
