//! Point reads on a WAL file through quickslot's SQLite adapter, beside
//! `deadpool-sqlite` and `r2d2_sqlite`, all in one process, the pools
//! interleaved within each run.
//!
//! ```sh
//! cargo run --release -p quickslot-bench --features sqlite --bin sqlite_bench -- \
//!     [--tasks 64] [--pool 8] [--seconds 3] [--runs 3] [--rows 10000]
//! ```
//!
//! Each task loops: check out a connection, run
//! `SELECT v FROM kv WHERE id = ?` (a cached statement, a random id), return
//! it; the latency of one loop is recorded. Every pool is used the way its
//! users use it from async code:
//!
//! * quickslot: `pool.acquire().await?.interact(..).await` (the query on
//!   Tokio's blocking pool);
//! * quickslot inline: `pool.acquire().await?` and the query on the async
//!   worker itself (fine for a cached point read; the floor of the
//!   blocking-pool hop);
//! * quickslot spawn_blocking: `spawn_blocking(|| pool.acquire_blocking()?,
//!   query)`, r2d2's shape: the checkout waits on the blocking thread, and a
//!   connection returned there goes straight to the next blocking thread
//!   waiting;
//! * deadpool-sqlite: `pool.get().await?.interact(..).await` (its checkout
//!   runs a `SELECT` through `interact` too);
//! * r2d2: `spawn_blocking(|| pool.get()?, query)` (r2d2 blocks).
//!
//! Each pool has `max_size` connections, its own defaults otherwise. The
//! table gives the median over the runs of queries per second (with the
//! lowest and highest run) and of the 99th percentile latency, and the
//! median of the per-run ratios.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quickslot::sqlite::{self, rusqlite, Synchronous};
use r2d2_sqlite::SqliteConnectionManager;

const QUERY: &str = "SELECT v FROM kv WHERE id = ?1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Quickslot,
    QuickslotInline,
    QuickslotThreads,
    Deadpool,
    R2d2,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Quickslot,
        Kind::QuickslotInline,
        Kind::QuickslotThreads,
        Kind::Deadpool,
        Kind::R2d2,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Quickslot => "quickslot (interact)",
            Kind::QuickslotInline => "quickslot (inline)",
            Kind::QuickslotThreads => "quickslot (spawn_blocking)",
            Kind::Deadpool => "deadpool-sqlite (interact)",
            Kind::R2d2 => "r2d2_sqlite (spawn_blocking)",
        }
    }
}

struct Pools {
    quickslot: sqlite::Pool,
    deadpool: deadpool_sqlite::Pool,
    r2d2: r2d2::Pool<SqliteConnectionManager>,
}

struct Args {
    tasks: usize,
    pool: usize,
    seconds: f64,
    runs: usize,
    rows: i64,
}

fn args() -> Args {
    let mut a = Args {
        tasks: 64,
        pool: 8,
        seconds: 3.0,
        runs: 3,
        rows: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--tasks" => a.tasks = value.parse().expect("--tasks N"),
            "--pool" => a.pool = value.parse().expect("--pool N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds S"),
            "--runs" => a.runs = value.parse().expect("--runs N"),
            "--rows" => a.rows = value.parse().expect("--rows N"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

fn point_read(conn: &rusqlite::Connection, id: i64) -> rusqlite::Result<usize> {
    let mut statement = conn.prepare_cached(QUERY)?;
    statement.query_row([id], |row| {
        row.get_ref(0).map(|v| v.as_str().map_or(0, str::len))
    })
}

fn seed(path: &Path, rows: i64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO kv VALUES (?1, ?2)").unwrap();
        for id in 0..rows {
            insert
                .execute(rusqlite::params![id, format!("value number {id:08}")])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// A small per-task random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as i64
    }
}

async fn one(kind: Kind, pools: &Pools, id: i64) -> usize {
    match kind {
        Kind::Quickslot => {
            let mut conn = pools.quickslot.acquire().await.unwrap();
            conn.interact(move |c| point_read(c, id))
                .await
                .unwrap()
                .unwrap()
        }
        Kind::QuickslotInline => {
            let conn = pools.quickslot.acquire().await.unwrap();
            point_read(&conn, id).unwrap()
        }
        Kind::QuickslotThreads => {
            let pool = pools.quickslot.clone();
            tokio::task::spawn_blocking(move || {
                let conn = pool.acquire_blocking().unwrap();
                point_read(&conn, id).unwrap()
            })
            .await
            .unwrap()
        }
        Kind::Deadpool => {
            let conn = pools.deadpool.get().await.unwrap();
            conn.interact(move |c| point_read(c, id))
                .await
                .unwrap()
                .unwrap()
        }
        Kind::R2d2 => {
            let pool = pools.r2d2.clone();
            tokio::task::spawn_blocking(move || {
                let conn = pool.get().unwrap();
                point_read(&conn, id).unwrap()
            })
            .await
            .unwrap()
        }
    }
}

struct Cell {
    qps: f64,
    p50: Duration,
    p99: Duration,
}

async fn cell(kind: Kind, pools: &Arc<Pools>, a: &Args, duration: Duration) -> Cell {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    for t in 0..a.tasks {
        let pools = pools.clone();
        let rows = a.rows;
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            let mut bytes = 0;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                bytes += one(kind, &pools, rng.below(rows)).await;
                hist.saturating_record(t0.elapsed().as_nanos() as u64);
            }
            std::hint::black_box(bytes);
            hist
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for task in tasks {
        hist.add(task.await.unwrap()).unwrap();
    }
    let elapsed = started.elapsed();
    Cell {
        qps: hist.len() as f64 / elapsed.as_secs_f64(),
        p50: Duration::from_nanos(hist.value_at_quantile(0.50)),
        p99: Duration::from_nanos(hist.value_at_quantile(0.99)),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn main() {
    let a = args();
    let dir = tempfile::Builder::new()
        .prefix("quickslot-sqlite-bench-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("bench.db");
    seed(&path, a.rows);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = runtime.metrics().num_workers();
    let pools = runtime.block_on(async {
        let quickslot = sqlite::Manager::file(&path)
            .synchronous(Synchronous::Normal)
            .pool_builder()
            .max_size(a.pool)
            .build()
            .unwrap();
        let deadpool = deadpool_sqlite::Config::new(&path)
            .builder(deadpool_sqlite::Runtime::Tokio1)
            .unwrap()
            .max_size(a.pool)
            .build()
            .unwrap();
        let r2d2 = r2d2::Pool::builder()
            .max_size(a.pool as u32)
            .build(SqliteConnectionManager::file(&path))
            .unwrap();
        Arc::new(Pools {
            quickslot,
            deadpool,
            r2d2,
        })
    });

    println!(
        "point reads on a WAL file of {} rows: {} tasks, pools of {}, {} async workers, \
         {} runs of {} s per pool (interleaved), {} cores",
        a.rows,
        a.tasks,
        a.pool,
        workers,
        a.runs,
        a.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let duration = Duration::from_secs_f64(a.seconds);
    let mut results: Vec<Vec<Cell>> = Kind::ALL.iter().map(|_| Vec::new()).collect();
    runtime.block_on(async {
        // Warm-up: every pool fills up and caches its statement.
        for kind in Kind::ALL {
            cell(kind, &pools, &a, Duration::from_millis(300)).await;
        }
        for run in 0..a.runs {
            // Rotate the order, so no pool always runs first or last.
            for k in 0..Kind::ALL.len() {
                let i = (k + run) % Kind::ALL.len();
                let kind = Kind::ALL[i];
                let c = cell(kind, &pools, &a, duration).await;
                println!(
                    "run {}: {:<30} {:>10.0} q/s  p50 {:>9}  p99 {:>9}",
                    run + 1,
                    kind.name(),
                    c.qps,
                    fmt_duration(c.p50),
                    fmt_duration(c.p99)
                );
                results[i].push(c);
            }
        }
    });

    // Ratios are taken run by run (the pools of one run share the machine's
    // state), then the median of those.
    let deadpool = 3;
    let r2d2 = 4;
    let ratio = |i: usize, j: usize| {
        median(
            (0..a.runs)
                .map(|run| results[i][run].qps / results[j][run].qps)
                .collect(),
        )
    };
    println!();
    println!(
        "| pool | queries/s (median of {} runs; min-max) | p99 (median) | vs deadpool-sqlite | vs r2d2_sqlite |",
        a.runs
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, kind) in Kind::ALL.iter().enumerate() {
        let qps: Vec<f64> = results[i].iter().map(|c| c.qps).collect();
        let lo = qps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = qps.iter().copied().fold(0.0, f64::max);
        let p99 = median(results[i].iter().map(|c| c.p99.as_secs_f64()).collect());
        println!(
            "| {} | {:.0} ({:.0}-{:.0}) | {} | {:.2}x | {:.2}x |",
            kind.name(),
            median(qps),
            lo,
            hi,
            fmt_duration(Duration::from_secs_f64(p99)),
            ratio(i, deadpool),
            ratio(i, r2d2)
        );
    }
    let status = pools.quickslot.status();
    assert_eq!(status.create_errors, 0);
    assert!(status.created as usize <= a.pool + 1, "{status:?}");
    // deadpool-sqlite closes its connections on the blocking pool.
    let _runtime = runtime.enter();
    drop(pools);
}
