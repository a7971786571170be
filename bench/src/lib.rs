//! Shared benchmark harness for `benches/pool.rs` (criterion) and
//! `src/bin/compare.rs` (the short comparison and the report).
//!
//! Every pool under test hands out a no-op resource (a `u64`, created
//! instantly), so what is measured is the pool's own overhead: the cost of an
//! acquire/release cycle and how long tasks wait when they outnumber the
//! objects. All pools are wrapped behind one trait ([`BenchPool`]) and driven
//! by the same loops, so no peer gets a different harness.
//!
//! The peers:
//! - `floor`: a bare `crossbeam_queue::ArrayQueue` pop + push (when the queue
//!   is empty, a contended task yields and retries: it is a spinning,
//!   barging, unfair reference, not a usable pool);
//! - `semaphore`: a tokio `Semaphore` (fair, FIFO) guarding an `ArrayQueue`;
//! - `deadpool`: deadpool 0.13 `managed::Pool`, default settings;
//! - `bb8`: bb8 0.9 with `test_on_check_out(false)`, otherwise default settings;
//! - `quickslot`: quickslot, default settings.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;

// ---------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------

/// The pools compared, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Floor,
    Semaphore,
    Deadpool,
    Bb8,
    Quickslot,
}

pub const ALL_POOLS: [PoolKind; 5] = [
    PoolKind::Floor,
    PoolKind::Semaphore,
    PoolKind::Deadpool,
    PoolKind::Bb8,
    PoolKind::Quickslot,
];

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Floor => "floor",
            PoolKind::Semaphore => "semaphore",
            PoolKind::Deadpool => "deadpool",
            PoolKind::Bb8 => "bb8",
            PoolKind::Quickslot => "quickslot",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            PoolKind::Floor => "bare crossbeam ArrayQueue pop+push (yield and retry when empty)",
            PoolKind::Semaphore => "tokio Semaphore + ArrayQueue",
            PoolKind::Deadpool => "deadpool 0.13 managed, defaults",
            PoolKind::Bb8 => "bb8 0.9, test_on_check_out(false), other defaults",
            PoolKind::Quickslot => "quickslot, defaults",
        }
    }
}

/// What a task does while it holds the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hold {
    /// Release at once.
    None,
    /// Keep it across one `tokio::task::yield_now()`.
    Yield,
}

impl Hold {
    pub fn name(self) -> &'static str {
        match self {
            Hold::None => "none",
            Hold::Yield => "yield",
        }
    }
}

/// One cell of the matrix. `workers == 0` means the uncontended case: one
/// task on a current-thread runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    pub workers: usize,
    pub tasks: usize,
    pub size: usize,
    pub hold: Hold,
}

/// Pool size used by the uncontended case.
pub const UNCONTENDED_SIZE: usize = 16;

impl Cell {
    pub const UNCONTENDED: Cell = Cell {
        workers: 0,
        tasks: 1,
        size: UNCONTENDED_SIZE,
        hold: Hold::None,
    };

    pub fn is_uncontended(&self) -> bool {
        self.workers == 0
    }

    /// More tasks than objects.
    pub fn is_oversubscribed(&self) -> bool {
        !self.is_uncontended() && self.tasks > self.size
    }

    /// Stable id, used as the criterion parameter and for `--filter`.
    pub fn id(&self) -> String {
        if self.is_uncontended() {
            format!("1task-p{}", self.size)
        } else {
            format!(
                "w{}-t{}-p{}-{}",
                self.workers,
                self.tasks,
                self.size,
                self.hold.name()
            )
        }
    }
}

/// Number of cores this process may use.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Worker counts of the matrix: 2 and all cores (deduplicated, so on a
/// 2-core machine there is a single column).
pub fn worker_counts() -> Vec<usize> {
    let mut w = vec![2, all_cores()];
    w.sort_unstable();
    w.dedup();
    w
}

/// The full contended matrix: workers x tasks (= workers, 64, 256) x pool
/// size (16, 64) x hold (none, yield).
pub fn contended_cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for workers in worker_counts() {
        let mut tasks = vec![workers, 64, 256];
        tasks.dedup();
        for &t in &tasks {
            for size in [16, 64] {
                for hold in [Hold::None, Hold::Yield] {
                    cells.push(Cell {
                        workers,
                        tasks: t,
                        size,
                        hold,
                    });
                }
            }
        }
    }
    cells
}

// ---------------------------------------------------------------------------
// The pools behind one trait
// ---------------------------------------------------------------------------

/// A pool as the harness sees it: build it (async, because bb8 wants that),
/// then acquire a guard whose drop returns the object.
pub trait BenchPool: Send + Sync + Sized + 'static {
    type Guard<'a>: Send
    where
        Self: 'a;

    const KIND: PoolKind;

    fn build(size: usize) -> impl Future<Output = Self> + Send;

    fn acquire(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
}

/// Bare `ArrayQueue`: pop, and push back on drop.
pub struct FloorPool {
    q: ArrayQueue<u64>,
}

pub struct FloorGuard<'a> {
    q: &'a ArrayQueue<u64>,
    v: u64,
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        let _ = self.q.push(black_box(self.v));
    }
}

impl BenchPool for FloorPool {
    type Guard<'a> = FloorGuard<'a>;
    const KIND: PoolKind = PoolKind::Floor;

    async fn build(size: usize) -> Self {
        let q = ArrayQueue::new(size);
        for i in 0..size {
            let _ = q.push(i as u64);
        }
        FloorPool { q }
    }

    async fn acquire(&self) -> FloorGuard<'_> {
        loop {
            if let Some(v) = self.q.pop() {
                return FloorGuard { q: &self.q, v };
            }
            tokio::task::yield_now().await;
        }
    }
}

/// tokio `Semaphore` (one permit per object) + `ArrayQueue`.
pub struct SemaphorePool {
    sem: tokio::sync::Semaphore,
    q: ArrayQueue<u64>,
}

pub struct SemaphoreGuard<'a> {
    q: &'a ArrayQueue<u64>,
    v: u64,
    // Dropped after `Drop::drop` pushed the object back.
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.q.push(black_box(self.v));
    }
}

impl BenchPool for SemaphorePool {
    type Guard<'a> = SemaphoreGuard<'a>;
    const KIND: PoolKind = PoolKind::Semaphore;

    async fn build(size: usize) -> Self {
        let q = ArrayQueue::new(size);
        for i in 0..size {
            let _ = q.push(i as u64);
        }
        SemaphorePool {
            sem: tokio::sync::Semaphore::new(size),
            q,
        }
    }

    async fn acquire(&self) -> SemaphoreGuard<'_> {
        let permit = self.sem.acquire().await.expect("semaphore closed");
        let v = self.q.pop().expect("a permit guarantees an object");
        SemaphoreGuard {
            q: &self.q,
            v,
            _permit: permit,
        }
    }
}

/// No-op manager shared by deadpool, bb8 and quickslot.
pub struct Noop;

impl deadpool::managed::Manager for Noop {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _obj: &mut u64,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Noop {
    type Connection = u64;
    type Error = Infallible;

    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn is_valid(&self, _conn: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut u64) -> bool {
        false
    }
}

impl quickslot::Manager for Noop {
    type Resource = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
}

/// Acquires `size` objects at once, then returns them, so that a lazily
/// filled pool starts the measurement full.
async fn prefill<P: BenchPool>(pool: &P, size: usize) {
    let mut held = Vec::with_capacity(size);
    for _ in 0..size {
        held.push(pool.acquire().await);
    }
    drop(held);
}

pub struct DeadpoolPool(deadpool::managed::Pool<Noop>);

impl BenchPool for DeadpoolPool {
    type Guard<'a> = deadpool::managed::Object<Noop>;
    const KIND: PoolKind = PoolKind::Deadpool;

    async fn build(size: usize) -> Self {
        let pool = deadpool::managed::Pool::builder(Noop)
            .max_size(size)
            .build()
            .expect("deadpool build");
        let pool = DeadpoolPool(pool);
        prefill(&pool, size).await;
        pool
    }

    async fn acquire(&self) -> deadpool::managed::Object<Noop> {
        self.0.get().await.expect("deadpool get")
    }
}

pub struct Bb8Pool(bb8::Pool<Noop>);

impl BenchPool for Bb8Pool {
    type Guard<'a> = bb8::PooledConnection<'a, Noop>;
    const KIND: PoolKind = PoolKind::Bb8;

    async fn build(size: usize) -> Self {
        let pool = bb8::Pool::builder()
            .max_size(u32::try_from(size).expect("pool size"))
            .test_on_check_out(false)
            .build(Noop)
            .await
            .expect("bb8 build");
        let pool = Bb8Pool(pool);
        prefill(&pool, size).await;
        pool
    }

    async fn acquire(&self) -> bb8::PooledConnection<'_, Noop> {
        self.0.get().await.expect("bb8 get")
    }
}

pub struct QuickslotPool(quickslot::Pool<Noop>);

impl BenchPool for QuickslotPool {
    type Guard<'a> = quickslot::Pooled<Noop>;
    const KIND: PoolKind = PoolKind::Quickslot;

    async fn build(size: usize) -> Self {
        let pool = quickslot::Pool::builder(Noop)
            .max_size(size)
            .build()
            .expect("quickslot build");
        let pool = QuickslotPool(pool);
        prefill(&pool, size).await;
        pool
    }

    async fn acquire(&self) -> quickslot::Pooled<Noop> {
        match self.0.acquire().await {
            Ok(obj) => obj,
            Err(_) => panic!("quickslot acquire failed"),
        }
    }
}

/// Calls `$body` with the type alias `$P` bound to the concrete pool type of
/// `$kind` (a runtime value), so generic code can be driven from a loop over
/// [`ALL_POOLS`].
#[macro_export]
macro_rules! for_pool {
    ($kind:expr, $P:ident => $body:expr) => {
        match $kind {
            $crate::PoolKind::Floor => {
                type $P = $crate::FloorPool;
                $body
            }
            $crate::PoolKind::Semaphore => {
                type $P = $crate::SemaphorePool;
                $body
            }
            $crate::PoolKind::Deadpool => {
                type $P = $crate::DeadpoolPool;
                $body
            }
            $crate::PoolKind::Bb8 => {
                type $P = $crate::Bb8Pool;
                $body
            }
            $crate::PoolKind::Quickslot => {
                type $P = $crate::QuickslotPool;
                $body
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Runtimes and loops
// ---------------------------------------------------------------------------

/// The runtime a cell runs on: current-thread for the uncontended case,
/// multi-thread with `workers` workers otherwise.
pub fn runtime(cell: &Cell) -> tokio::runtime::Runtime {
    if cell.is_uncontended() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cell.workers)
            .enable_all()
            .build()
            .expect("runtime")
    }
}

#[inline(always)]
async fn hold(hold: Hold) {
    if hold == Hold::Yield {
        tokio::task::yield_now().await;
    }
}

/// One task, `cycles` acquire/release cycles, no instrumentation.
/// Returns the elapsed time.
pub async fn one_task<P: BenchPool>(pool: &P, cycles: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..cycles {
        let g = pool.acquire().await;
        black_box(&g);
        drop(g);
    }
    start.elapsed()
}

/// Contended fixed-work run (criterion's `iter_custom`): `tasks` tasks share
/// `cycles` cycles (rounded up to a multiple of `tasks`). Returns the time
/// scaled to exactly `cycles` cycles.
pub async fn contended_fixed<P: BenchPool>(
    pool: &Arc<P>,
    tasks: usize,
    h: Hold,
    cycles: u64,
) -> Duration {
    let per_task = cycles.div_ceil(tasks as u64).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let pool = Arc::clone(pool);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let g = pool.acquire().await;
                    black_box(&g);
                    hold(h).await;
                    drop(g);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task panicked");
    }
    let elapsed = start.elapsed();
    elapsed.mul_f64(cycles as f64 / (per_task * tasks as u64) as f64)
}

/// Histogram bounds: 1 ns .. 100 s, two significant figures (1 % resolution),
/// which keeps 256 per-task histograms small.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("histogram bounds")
}

/// Result of one timed pass.
pub struct Pass {
    pub cycles: u64,
    pub elapsed: Duration,
    /// Merged acquire-latency histogram (ns), when recording.
    pub hist: Option<Histogram<u64>>,
}

impl Pass {
    pub fn cycles_per_sec(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64()
    }
}

/// One contended task of a timed pass. `RECORD` picks, at compile time,
/// whether each acquire is timed into the task's own histogram.
async fn timed_task<P: BenchPool, const RECORD: bool>(
    pool: Arc<P>,
    h: Hold,
    stop: Arc<AtomicBool>,
) -> (u64, Option<Histogram<u64>>) {
    let mut hist = RECORD.then(new_histogram);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let g = if RECORD {
            let t0 = Instant::now();
            let g = pool.acquire().await;
            let ns = t0.elapsed().as_nanos() as u64;
            if let Some(hist) = hist.as_mut() {
                hist.saturating_record(ns.max(1));
            }
            g
        } else {
            pool.acquire().await
        };
        black_box(&g);
        hold(h).await;
        drop(g);
        n += 1;
    }
    (n, hist)
}

/// A timed pass on an already built pool, inside its runtime: uncontended
/// runs a calibrated fixed count on the current task; contended spawns
/// `cell.tasks` tasks that run until `dur` has passed.
pub async fn timed_pass<P: BenchPool>(
    pool: &Arc<P>,
    cell: &Cell,
    dur: Duration,
    record: bool,
) -> Pass {
    if cell.is_uncontended() {
        // Calibrate: a single task never yields, so no timer can stop it.
        let probe = 20_000u64;
        let t = one_task(pool.as_ref(), probe).await;
        let per = t.as_secs_f64() / probe as f64;
        let cycles = ((dur.as_secs_f64() / per.max(1e-9)) as u64).clamp(10_000, 200_000_000);
        if record {
            let mut hist = new_histogram();
            let start = Instant::now();
            for _ in 0..cycles {
                let t0 = Instant::now();
                let g = pool.acquire().await;
                let ns = t0.elapsed().as_nanos() as u64;
                hist.saturating_record(ns.max(1));
                black_box(&g);
                drop(g);
            }
            return Pass {
                cycles,
                elapsed: start.elapsed(),
                hist: Some(hist),
            };
        }
        let elapsed = one_task(pool.as_ref(), cycles).await;
        return Pass {
            cycles,
            elapsed,
            hist: None,
        };
    }

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..cell.tasks)
        .map(|_| {
            let pool = Arc::clone(pool);
            let stop = Arc::clone(&stop);
            if record {
                tokio::spawn(timed_task::<P, true>(pool, cell.hold, stop))
            } else {
                tokio::spawn(timed_task::<P, false>(pool, cell.hold, stop))
            }
        })
        .collect();
    // Stop from a plain thread: tasks that never wait (hold none, free
    // objects) never yield, so a tokio timer might never fire.
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(dur);
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut cycles = 0;
    let mut merged = record.then(new_histogram);
    for handle in handles {
        let (n, hist) = handle.await.expect("bench task panicked");
        cycles += n;
        if let (Some(m), Some(h)) = (merged.as_mut(), hist) {
            m.add(h).expect("histogram merge");
        }
    }
    let elapsed = start.elapsed();
    stopper.join().expect("stopper thread");
    Pass {
        cycles,
        elapsed,
        hist: merged,
    }
}

/// Measures one pool on one cell: a fresh runtime and a fresh (prefilled)
/// pool, a short warm-up, an uninstrumented throughput pass, then a
/// recording pass for the latency percentiles.
pub fn measure<P: BenchPool>(cell: &Cell, dur: Duration) -> (Pass, Pass) {
    let rt = runtime(cell);
    rt.block_on(async {
        let pool = Arc::new(P::build(cell.size).await);
        let warm = (dur / 5).max(Duration::from_millis(10));
        timed_pass(&pool, cell, warm, false).await;
        let throughput = timed_pass(&pool, cell, dur, false).await;
        let latency = timed_pass(&pool, cell, dur, true).await;
        (throughput, latency)
    })
}

/// [`measure`] for a pool picked at run time.
pub fn measure_kind(kind: PoolKind, cell: &Cell, dur: Duration) -> (Pass, Pass) {
    for_pool!(kind, P => measure::<P>(cell, dur))
}
