//! `SELECT 1` through quickslot's Diesel adapter beside r2d2 with Diesel's
//! `r2d2::ConnectionManager`, in the same run: from 16 threads, and from 64
//! tokio tasks through `spawn_blocking` (the r2d2 + tokio service shape),
//! plus quickslot's own `acquire().await` + `interact`.
//!
//! ```sh
//! cargo run --release --features diesel --example diesel_bench            # SQLite
//! scripts/with-postgres cargo run --release --features diesel --example diesel_bench
//! ```
//!
//! Each pool has 10 connections (r2d2's default `max_size`). r2d2 pings on
//! every checkout by default (`test_on_check_out`); the `quickslot` rows do
//! the same (`verify_window(Duration::ZERO)`), the `quickslot, defaults`
//! rows keep the adapter's 500 ms verify window. Every configuration runs
//! `QUICKSLOT_BENCH_ROUNDS` times (default 3), interleaved, for
//! `QUICKSLOT_BENCH_SECS` seconds each (default 2); the table shows the
//! medians of the rounds. `QUICKSLOT_BENCH_FILTER=text` runs only the
//! configurations whose "scenario / pool" contains `text`. Latency is per operation: checkout, query and
//! return (and for the task rows the hop to the blocking pool and back).
//! Fairness is the least busy worker's query count over the busiest one's
//! (1.0: equal shares). It shows starvation that latencies cannot (a worker
//! that never gets a connection completes no query to time), but when the
//! workers outnumber the cores it mostly measures the OS scheduler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use quickslot::diesel::{DieselManager, Pool};

const MAX_SIZE: u32 = 10;
const THREADS: usize = 16;
const TASKS: usize = 64;

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The pools under test, for one connection type.
enum Subject<C: R2D2Connection + 'static> {
    R2d2(r2d2::Pool<ConnectionManager<C>>),
    Quickslot(Pool<C>),
}

impl<C: R2D2Connection + 'static> Clone for Subject<C> {
    fn clone(&self) -> Self {
        match self {
            Subject::R2d2(p) => Subject::R2d2(p.clone()),
            Subject::Quickslot(p) => Subject::Quickslot(p.clone()),
        }
    }
}

impl<C: R2D2Connection + 'static> Subject<C> {
    /// One checkout, `SELECT 1`, return: blocking.
    fn select_1_blocking(&self) {
        match self {
            Subject::R2d2(pool) => pool
                .get()
                .expect("r2d2 get")
                .batch_execute("SELECT 1")
                .expect("query"),
            Subject::Quickslot(pool) => pool
                .acquire_blocking()
                .expect("acquire")
                .batch_execute("SELECT 1")
                .expect("query"),
        }
    }
}

/// What one run measured.
struct Run {
    queries_per_s: f64,
    p99: Duration,
    /// The least busy worker's query count over the busiest one's: 1.0 when
    /// every worker got the same share, near 0 when some starved.
    fairness: f64,
}

fn summarize(per_worker: Vec<Vec<Duration>>, elapsed: Duration) -> Run {
    let counts = per_worker.iter().map(Vec::len);
    let (min, max) = counts.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
    let fairness = if max == 0 {
        0.0
    } else {
        min as f64 / max as f64
    };
    let mut latencies: Vec<Duration> = per_worker.into_iter().flatten().collect();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    Run {
        queries_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p99,
        fairness,
    }
}

/// 16 threads, each checking out, querying and returning in a loop.
fn threads<C: R2D2Connection + 'static>(subject: &Subject<C>, secs: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (subject, stop, measuring) = (subject.clone(), stop.clone(), measuring.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    subject.select_1_blocking();
                    if measuring.load(Ordering::Relaxed) {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // warm up
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(secs);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let per_worker = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    summarize(per_worker, elapsed)
}

/// How a task gets its query done.
#[derive(Clone, Copy)]
enum TaskShape {
    /// `spawn_blocking(move || { pool.get(); query })`.
    SpawnBlocking,
    /// `pool.acquire().await?.interact(|c| query).await` (quickslot only).
    Interact,
}

/// 64 tokio tasks on a multi-thread runtime, each looping.
fn tasks<C: R2D2Connection + 'static>(
    runtime: &tokio::runtime::Runtime,
    subject: &Subject<C>,
    shape: TaskShape,
    secs: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let workers: Vec<_> = (0..TASKS)
            .map(|_| {
                let (subject, stop, measuring) = (subject.clone(), stop.clone(), measuring.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(1 << 14);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match (shape, &subject) {
                            (TaskShape::SpawnBlocking, _) => {
                                let subject = subject.clone();
                                tokio::task::spawn_blocking(move || subject.select_1_blocking())
                                    .await
                                    .expect("blocking task");
                            }
                            (TaskShape::Interact, Subject::Quickslot(pool)) => pool
                                .acquire()
                                .await
                                .expect("acquire")
                                .interact(|conn| conn.batch_execute("SELECT 1"))
                                .await
                                .expect("interact")
                                .expect("query"),
                            (TaskShape::Interact, Subject::R2d2(_)) => {
                                unreachable!("r2d2 has no interact")
                            }
                        }
                        if measuring.load(Ordering::Relaxed) {
                            latencies.push(started.elapsed());
                        }
                    }
                    latencies
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(secs).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut per_worker = Vec::new();
        for w in workers {
            per_worker.push(w.await.expect("task"));
        }
        summarize(per_worker, elapsed)
    })
}

/// Whether `QUICKSLOT_BENCH_FILTER` (a substring of "scenario / pool",
/// for profiling one configuration) selects this run; all runs without it.
fn selected(run: &str) -> bool {
    std::env::var("QUICKSLOT_BENCH_FILTER").map_or(true, |filter| run.contains(&filter))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One table of results for one database.
fn bench<C: R2D2Connection + 'static>(label: &str, url: &str, prepare: impl Fn(&mut C)) {
    let secs = Duration::from_secs(env_or("QUICKSLOT_BENCH_SECS", 2));
    let rounds = env_or("QUICKSLOT_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    {
        let mut conn = C::establish(url).expect("connect");
        prepare(&mut conn);
    }
    let r2d2_pool = r2d2::Pool::builder()
        .max_size(MAX_SIZE)
        .build(ConnectionManager::<C>::new(url))
        .expect("r2d2 pool");
    let quickslot = |window: Duration| {
        let _guard = runtime.enter();
        DieselManager::<C>::new(url)
            .verify_window(window)
            .pool_builder()
            .max_size(MAX_SIZE as usize)
            .build()
            .expect("quickslot pool")
    };
    let subjects: Vec<(&str, Subject<C>)> = vec![
        ("r2d2", Subject::R2d2(r2d2_pool)),
        ("quickslot", Subject::Quickslot(quickslot(Duration::ZERO))),
        (
            "quickslot, defaults",
            Subject::Quickslot(quickslot(quickslot::diesel::DEFAULT_VERIFY_WINDOW)),
        ),
    ];

    type Scenario<'a, C> = (&'a str, Box<dyn Fn(&Subject<C>) -> Option<Run> + 'a>);
    let scenarios: Vec<Scenario<'_, C>> = vec![
        (
            "16 threads, get + SELECT 1",
            Box::new(|s: &Subject<C>| Some(threads(s, secs))),
        ),
        (
            "64 tasks, spawn_blocking(get + SELECT 1)",
            Box::new(|s: &Subject<C>| Some(tasks(&runtime, s, TaskShape::SpawnBlocking, secs))),
        ),
        (
            "64 tasks, acquire().await + interact(SELECT 1)",
            Box::new(|s: &Subject<C>| match s {
                Subject::Quickslot(_) => Some(tasks(&runtime, s, TaskShape::Interact, secs)),
                Subject::R2d2(_) => None,
            }),
        ),
    ];

    println!("\n### {label}\n");
    println!("| scenario | pool | queries/s | p99 | fairness (min/max per worker) |");
    println!("|---|---|---:|---:|---:|");
    for (scenario, run) in &scenarios {
        // rounds x subjects, interleaved: each round runs every pool once.
        let mut results: Vec<Vec<Run>> = subjects.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (i, (name, subject)) in subjects.iter().enumerate() {
                if !selected(&format!("{scenario} / {name}")) {
                    continue;
                }
                if let Some(r) = run(subject) {
                    results[i].push(r);
                }
            }
        }
        for ((name, _), runs) in subjects.iter().zip(results) {
            if runs.is_empty() {
                continue;
            }
            let qps = median(runs.iter().map(|r| r.queries_per_s).collect());
            let p99 = median(runs.iter().map(|r| r.p99.as_secs_f64() * 1e6).collect());
            let fairness = median(runs.iter().map(|r| r.fairness).collect());
            println!("| {scenario} | {name} | {qps:.0} | {p99:.0} µs | {fairness:.2} |");
        }
    }
}

fn main() {
    println!(
        "SELECT 1, {MAX_SIZE} connections per pool, {} s x {} rounds (medians), {} CPUs",
        env_or("QUICKSLOT_BENCH_SECS", 2),
        env_or("QUICKSLOT_BENCH_ROUNDS", 3),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let dir = std::env::temp_dir().join(format!("quickslot-diesel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("bench.db");
    let path = path.to_str().expect("UTF-8 path");
    bench::<SqliteConnection>("SQLite (file, WAL)", path, |conn| {
        conn.batch_execute("PRAGMA journal_mode = WAL")
            .expect("WAL");
    });
    let _ = std::fs::remove_dir_all(&dir);

    match std::env::var("QUICKSLOT_PG_URL") {
        Ok(url) if !url.is_empty() => bench::<PgConnection>("PostgreSQL (loopback)", &url, |_| {}),
        _ => println!(
            "\n(PostgreSQL skipped: QUICKSLOT_PG_URL is not set; use scripts/with-postgres)"
        ),
    }
}
