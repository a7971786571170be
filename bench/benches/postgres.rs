//! PostgreSQL benchmark: `simple_query("SELECT 1")` through quickslot's
//! adapter (`quickslot::postgres`), deadpool-postgres and bb8-postgres, all
//! in one process and one run, on a real server.
//!
//! Run it under a throw-away server:
//!
//! ```text
//! scripts/with-postgres cargo bench -p quickslot-bench --features postgres --bench postgres
//! scripts/with-postgres cargo bench -p quickslot-bench --features postgres --bench postgres -- --secs 2 --rounds 5
//! ```
//!
//! Tasks 16, 64 and 256 share 16 connections, on a multi-thread runtime with
//! one worker per core. Settings:
//! - `equal`: the same checkout check for all three, a cheap `is_closed()`
//!   and no round trip (quickslot `RecyclingMethod::Fast`, deadpool
//!   `RecyclingMethod::Fast`, bb8 `test_on_check_out(false)`);
//! - `equal-verified`: one round trip on every checkout for all three
//!   (quickslot `Verified` with a zero verify window, deadpool `Verified`,
//!   bb8 `test_on_check_out(true)`);
//! - `defaults`: each pool as it comes (quickslot `Manager::pool_builder()`,
//!   deadpool-postgres defaults, bb8 defaults, which test every checkout).
//!
//! Reported per cell and pool: queries/s (median over rounds) and the
//! latency of one request (acquire + query) at p50/p99/p99.9/max, plus the
//! acquire-only p99.9, from per-task HDR histograms merged.
//!
//! Without `QUICKSLOT_PG_URL` it prints how to run it and exits successfully.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quickslot::postgres::{parse_config, Config, NoTls};

const CONNECTIONS: usize = 16;
const TASKS: [usize; 3] = [16, 64, 256];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setting {
    Equal,
    EqualVerified,
    Defaults,
}

impl Setting {
    const ALL: [Setting; 3] = [Setting::Equal, Setting::EqualVerified, Setting::Defaults];

    fn name(self) -> &'static str {
        match self {
            Setting::Equal => "equal",
            Setting::EqualVerified => "equal-verified",
            Setting::Defaults => "defaults",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Setting::Equal => {
                "same checkout check for all, no round trip: quickslot `RecyclingMethod::Fast`, \
                 deadpool `RecyclingMethod::Fast`, bb8 `test_on_check_out(false)`"
            }
            Setting::EqualVerified => {
                "one round trip on every checkout for all: quickslot `Verified` with \
                 `verify_window(0)`, deadpool `Verified`, bb8 `test_on_check_out(true)`"
            }
            Setting::Defaults => {
                "each pool's defaults: quickslot `Manager::pool_builder()` (`Fast`), \
                 deadpool-postgres defaults (`Fast`), bb8 defaults (tests every checkout \
                 with a round trip)"
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Kind {
    Quickslot,
    Deadpool,
    Bb8,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Quickslot, Kind::Deadpool, Kind::Bb8];

    fn name(self) -> &'static str {
        match self {
            Kind::Quickslot => "quickslot",
            Kind::Deadpool => "deadpool-postgres",
            Kind::Bb8 => "bb8-postgres",
        }
    }
}

/// A PostgreSQL pool as this benchmark sees it.
trait PgPool: Send + Sync + Sized + 'static {
    fn build(config: Config, setting: Setting) -> impl Future<Output = Self> + Send;

    /// One request: acquire, `SELECT 1`, release. Returns the acquire time.
    fn select1(&self) -> impl Future<Output = Duration> + Send;
}

struct Quickslot(quickslot::postgres::Pool);

impl PgPool for Quickslot {
    async fn build(config: Config, setting: Setting) -> Self {
        use quickslot::postgres::{PgManager, RecyclingMethod};
        let manager = PgManager::from_config(config);
        let manager = match setting {
            Setting::Equal => manager.recycling_method(RecyclingMethod::Fast),
            Setting::EqualVerified => manager
                .recycling_method(RecyclingMethod::Verified)
                .verify_window(Duration::ZERO),
            Setting::Defaults => manager,
        };
        let pool = manager
            .pool_builder()
            .max_size(CONNECTIONS)
            .build()
            .expect("quickslot build");
        Quickslot(pool)
    }

    async fn select1(&self) -> Duration {
        let t0 = Instant::now();
        let client = match self.0.acquire().await {
            Ok(c) => c,
            Err(e) => panic!("quickslot acquire: {e}"),
        };
        let acquired = t0.elapsed();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        acquired
    }
}

struct Deadpool(deadpool_postgres::Pool);

impl PgPool for Deadpool {
    async fn build(config: Config, setting: Setting) -> Self {
        use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
        let recycling_method = match setting {
            Setting::Equal => RecyclingMethod::Fast,
            Setting::EqualVerified => RecyclingMethod::Verified,
            Setting::Defaults => ManagerConfig::default().recycling_method,
        };
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method });
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(CONNECTIONS)
            .build()
            .expect("deadpool build");
        Deadpool(pool)
    }

    async fn select1(&self) -> Duration {
        let t0 = Instant::now();
        let client = self.0.get().await.expect("deadpool get");
        let acquired = t0.elapsed();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        acquired
    }
}

struct Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>);

impl PgPool for Bb8 {
    async fn build(config: Config, setting: Setting) -> Self {
        let manager = bb8_postgres::PostgresConnectionManager::new(config, NoTls);
        let mut builder = bb8::Pool::builder().max_size(CONNECTIONS as u32);
        match setting {
            Setting::Equal => builder = builder.test_on_check_out(false),
            Setting::EqualVerified => builder = builder.test_on_check_out(true),
            Setting::Defaults => {}
        }
        Bb8(builder.build(manager).await.expect("bb8 build"))
    }

    async fn select1(&self) -> Duration {
        let t0 = Instant::now();
        let client = self.0.get().await.expect("bb8 get");
        let acquired = t0.elapsed();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        acquired
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("histogram bounds")
}

#[derive(Default)]
struct Stats {
    qps: Vec<f64>,
    request: Option<Histogram<u64>>,
    acquire: Option<Histogram<u64>>,
}

impl Stats {
    fn median_qps(&self) -> f64 {
        let mut v = self.qps.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    /// Half the min..max range over rounds, relative to the median.
    fn spread(&self) -> f64 {
        let min = self.qps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.qps.iter().copied().fold(0.0, f64::max);
        (max - min) / 2.0 / self.median_qps()
    }

    fn req(&self, q: f64) -> u64 {
        self.request.as_ref().map_or(0, |h| h.value_at_quantile(q))
    }
}

/// One pool, one cell, one round: open and fill the pool, warm up, then
/// `tasks` tasks run requests for `dur`.
fn run_cell<P: PgPool>(
    config: &Config,
    setting: Setting,
    tasks: usize,
    dur: Duration,
    stats: &mut Stats,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = config.clone();
    let (qps, req, acq) = rt.block_on(async move {
        let pool = Arc::new(P::build(config, setting).await);
        // Open every connection before measuring.
        let warm: Vec<_> = (0..CONNECTIONS.max(tasks))
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    for _ in 0..5 {
                        pool.select1().await;
                    }
                })
            })
            .collect();
        for w in warm {
            w.await.expect("warm-up task");
        }

        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let pool = Arc::clone(&pool);
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut req = new_histogram();
                    let mut acq = new_histogram();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let a = pool.select1().await;
                        req.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
                        acq.saturating_record((a.as_nanos() as u64).max(1));
                        n += 1;
                    }
                    (n, req, acq)
                })
            })
            .collect();
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0u64;
        let mut req = new_histogram();
        let mut acq = new_histogram();
        for h in handles {
            let (n, r, a) = h.await.expect("bench task");
            total += n;
            req.add(r).expect("merge");
            acq.add(a).expect("merge");
        }
        (total as f64 / start.elapsed().as_secs_f64(), req, acq)
    });
    stats.qps.push(qps);
    match &mut stats.request {
        Some(h) => h.add(req).expect("merge"),
        None => stats.request = Some(req),
    }
    match &mut stats.acquire {
        Some(h) => h.add(acq).expect("merge"),
        None => stats.acquire = Some(acq),
    }
}

fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

fn main() {
    let mut secs = 1.0f64;
    let mut rounds = 3usize;
    let mut markdown: Option<String> = None;
    let mut filter: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--markdown" => markdown = args.next(),
            "--bench" => {}
            s if s.starts_with('-') => {}
            s => filter = Some(s.to_string()),
        }
    }
    let Ok(url) = std::env::var("QUICKSLOT_PG_URL") else {
        eprintln!(
            "QUICKSLOT_PG_URL is not set; run: scripts/with-postgres \
             cargo bench -p quickslot-bench --features postgres --bench postgres"
        );
        return;
    };
    let config = parse_config(&url).expect("QUICKSLOT_PG_URL");
    let dur = Duration::from_secs_f64(secs);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "`SELECT 1` with `simple_query`, {CONNECTIONS} connections, {cores} runtime workers \
         (the server runs on the same machine), {rounds} rounds x {secs} s per pool and cell. \
         q/s is the median over rounds; latencies are one request (acquire + query), \
         from per-task HDR histograms merged over tasks and rounds. On a machine shared with \
         other work, compare the ± column before believing a ratio.\n"
    );
    let mut checks: Vec<(String, String, bool)> = Vec::new();
    for setting in Setting::ALL {
        if filter
            .as_deref()
            .is_some_and(|f| !setting.name().contains(f))
        {
            continue;
        }
        let _ = writeln!(
            out,
            "#### Setting `{}`: {}\n",
            setting.name(),
            setting.describe()
        );
        out.push_str(
            "| tasks | pool | q/s | ± (rounds) | quickslot ÷ pool | p50 | p99 | p99.9 | max | acquire p99.9 |\n",
        );
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for tasks in TASKS {
            let mut stats: Vec<(Kind, Stats)> =
                Kind::ALL.iter().map(|k| (*k, Stats::default())).collect();
            for round in 0..rounds {
                for i in 0..Kind::ALL.len() {
                    let idx = (i + round) % Kind::ALL.len();
                    let (kind, s) = &mut stats[idx];
                    match kind {
                        Kind::Quickslot => run_cell::<Quickslot>(&config, setting, tasks, dur, s),
                        Kind::Deadpool => run_cell::<Deadpool>(&config, setting, tasks, dur, s),
                        Kind::Bb8 => run_cell::<Bb8>(&config, setting, tasks, dur, s),
                    }
                }
                eprintln!(
                    "{} tasks={tasks} round {}/{rounds}: {}",
                    setting.name(),
                    round + 1,
                    stats
                        .iter()
                        .map(|(k, s)| format!("{}={:.0}", k.name(), s.qps[round]))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            let q = &stats[0].1;
            for (kind, s) in &stats {
                let _ = writeln!(
                    out,
                    "| {tasks} | {} | {:.0} | {:.0} % | {:.2}x | {} | {} | {} | {} | {} |",
                    kind.name(),
                    s.median_qps(),
                    s.spread() * 100.0,
                    q.median_qps() / s.median_qps(),
                    fmt_ns(s.req(0.5)),
                    fmt_ns(s.req(0.99)),
                    fmt_ns(s.req(0.999)),
                    fmt_ns(s.request.as_ref().map_or(0, |h| h.max())),
                    fmt_ns(s.acquire.as_ref().map_or(0, |h| h.value_at_quantile(0.999))),
                );
            }
            let d = &stats[1].1;
            let b = &stats[2].1;
            if setting != Setting::EqualVerified {
                let x = q.median_qps() / d.median_qps();
                checks.push((
                    format!(
                        "`{}`, {tasks} tasks: q/s >= deadpool-postgres",
                        setting.name()
                    ),
                    format!("{x:.2}x"),
                    x >= 1.0,
                ));
                checks.push((
                    format!(
                        "`{}`, {tasks} tasks: p99.9 <= deadpool-postgres's",
                        setting.name()
                    ),
                    format!("{} vs {}", fmt_ns(q.req(0.999)), fmt_ns(d.req(0.999))),
                    q.req(0.999) <= d.req(0.999),
                ));
            }
            if setting == Setting::Defaults {
                let x = q.median_qps() / b.median_qps();
                checks.push((
                    format!("`defaults`, {tasks} tasks: >= 1.7x bb8-postgres"),
                    format!("{x:.2}x"),
                    x >= 1.7,
                ));
            }
        }
        out.push('\n');
    }
    if !checks.is_empty() {
        out.push_str("#### PostgreSQL targets\n\n| target | measured | |\n|---|---:|---|\n");
        for (what, measured, ok) in &checks {
            let _ = writeln!(
                out,
                "| {what} | {measured} | {} |",
                if *ok { "met" } else { "**MISSED**" }
            );
        }
        let met = checks.iter().filter(|c| c.2).count();
        let _ = writeln!(out, "\n{met} of {} targets met.", checks.len());
    }
    println!("{out}");
    if let Some(path) = markdown {
        std::fs::write(&path, &out).expect("write markdown");
        eprintln!("wrote {path}");
    }
}
