//! Soak test: steady load on a PostgreSQL pool with faults injected at
//! random intervals, reporting throughput, latency, errors and memory every
//! minute.
//!
//! Run it through `scripts/soak MINUTES` (which starts a throw-away server
//! with `scripts/with-postgres` and builds this in release mode), or by hand:
//!
//! ```text
//! QUICKSLOT_PG_URL=postgres://... cargo run --release --features postgres --example soak -- 10
//! ```
//!
//! Load: 256 tasks on a pool of 16 connections through a fault-injecting
//! loopback proxy; each task loops acquire → `SELECT 1` (1 s client-side
//! statement timeout) → return, discarding connections whose query failed.
//! Every 5-20 s (random) one fault: 50 ms latency for 3 s, a 2 s stall, a
//! cut of every connection, 3 s of refused connections, or
//! `pg_terminate_backend` of every pooled backend.
//!
//! Each minute it prints q/s, p50/p99/max latency, errors by kind, the
//! faults injected and the process RSS (`/proc/self/status`). At the end it
//! checks that the pool is at rest with exact counts and that no connection
//! leaked, and prints the RSS of the first and last minute. Exit status 1 if
//! a check failed.

#[path = "../tests/support/pgload.rs"]
mod pgload;
#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgload::{
    backends, by_kind, check_at_rest, config_for, kill_backends, rss_kb, server_addr, Counted,
    Load, LoadConfig, Monitor,
};
use proxy::Proxy;
use quickslot::postgres::Manager;
use quickslot::Pool;

const TASKS: usize = 256;
const MAX_SIZE: usize = 16;
const APP: &str = "qs_soak";

/// xorshift64*, seeded from the clock (printed, so a run can be repeated).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn main() {
    let minutes: u64 = match std::env::args().nth(1).map(|m| m.parse()) {
        Some(Ok(m)) if m > 0 => m,
        None => 1,
        _ => {
            eprintln!("usage: soak MINUTES");
            std::process::exit(2);
        }
    };
    let Ok(url) = std::env::var("QUICKSLOT_PG_URL") else {
        eprintln!("soak: QUICKSLOT_PG_URL is not set (run it through scripts/soak)");
        std::process::exit(2);
    };
    let seed = std::env::var("QUICKSLOT_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(soak(url, minutes, seed));
    drop(runtime);
    std::process::exit(if ok { 0 } else { 1 });
}

async fn soak(url: String, minutes: u64, seed: u64) -> bool {
    let proxy = Arc::new(Proxy::start(server_addr(&url)).await.expect("proxy"));
    let manager = Counted::new(Manager::from_config(config_for(&url, APP, proxy.port())));
    let counters = manager.counters.clone();
    let deadline = Duration::from_secs(2);
    let pool = Pool::builder(manager)
        .max_size(MAX_SIZE)
        .acquire_timeout(deadline)
        .track_idle_time(true)
        .recycle_timeout(Duration::from_secs(1))
        .build()
        .expect("pool");
    let load = Load::start(
        &pool,
        LoadConfig {
            tasks: TASKS,
            deadline,
            query_timeout: Duration::from_secs(1),
            ..LoadConfig::default()
        },
    );
    let monitor = Monitor::start(&pool);
    println!(
        "soak: {minutes} min, {TASKS} tasks on {MAX_SIZE} connections through a fault proxy; \
         seed {seed} (QUICKSLOT_SOAK_SEED)"
    );

    // Faults at random intervals until told to stop.
    let faults: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    let stop_faults = Arc::new(AtomicBool::new(false));
    let injector = {
        let proxy = proxy.clone();
        let faults = faults.clone();
        let stop = stop_faults.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            while !stop.load(Ordering::SeqCst) {
                let pause = Duration::from_millis(rng.between(5_000, 20_000));
                let end = Instant::now() + pause;
                while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = match rng.between(0, 4) {
                    0 => {
                        proxy.set_latency(Duration::from_millis(50));
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        proxy.set_latency(Duration::ZERO);
                        "latency 50 ms x 3 s"
                    }
                    1 => {
                        proxy.stall();
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        proxy.unstall();
                        "stall 2 s"
                    }
                    2 => {
                        proxy.cut_all();
                        "cut all connections"
                    }
                    3 => {
                        proxy.refuse();
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        proxy.accept();
                        "refuse new connections 3 s"
                    }
                    _ => {
                        kill_backends(&url, APP).await;
                        "pg_terminate_backend all"
                    }
                };
                *faults.lock().unwrap().entry(name).or_insert(0) += 1;
            }
        })
    };

    let stats = load.stats.clone();
    let mut rss_first = None;
    let mut rss_last = None;
    let mut ok_before = 0;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for minute in 1..=minutes {
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let secs = t0.elapsed().as_secs_f64();
        let ok = stats.ok();
        let latencies = stats.take_latencies();
        let failures = stats.take_failures();
        let kinds = by_kind(&failures);
        for (k, n) in &kinds {
            *totals.entry(k.clone()).or_insert(0) += n;
        }
        let injected = std::mem::take(&mut *faults.lock().unwrap());
        let rss = rss_kb();
        if minute == 1 {
            rss_first = rss;
        }
        rss_last = rss;
        let status = pool.status();
        println!(
            "minute {minute:>3}: {:>8.0} q/s, latency p50 {} µs p99 {} µs max {} µs; rss {} kB; \
             pool size {} idle {} waiting {}; faults {:?}; errors {:?}",
            (ok - ok_before) as f64 / secs,
            latencies.value_at_quantile(0.5),
            latencies.value_at_quantile(0.99),
            latencies.max(),
            rss.map_or_else(|| "?".into(), |r| r.to_string()),
            status.size,
            status.idle,
            status.waiting,
            injected,
            kinds,
        );
        ok_before = ok;
    }

    stop_faults.store(true, Ordering::SeqCst);
    let _ = injector.await;
    proxy.unstall();
    proxy.accept();
    proxy.set_latency(Duration::ZERO);

    let mut failed = Vec::new();
    let late = stats.late.load(Ordering::SeqCst);
    let max_acquire = Duration::from_micros(stats.max_acquire_us.load(Ordering::SeqCst));
    if !load.stop(Duration::from_secs(20)).await {
        failed.push("a load task hung".to_string());
    }
    let monitor = monitor.stop().await;
    if !monitor.violations.is_empty() {
        failed.push(format!("gauges out of bounds: {:?}", monitor.violations));
    }
    let status = pool.status();
    failed.extend(check_at_rest(&status));
    if counters.live() != status.size as u64 {
        failed.push(format!(
            "live connections {} != pool size {}",
            counters.live(),
            status.size
        ));
    }
    pool.close();
    drop(pool);
    let leaked = counters.live();
    if leaked != 0 {
        failed.push(format!("{leaked} connections leaked"));
    }
    let mut server_left = backends(&url, APP).await;
    for _ in 0..500 {
        if server_left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        server_left = backends(&url, APP).await;
    }
    if server_left != 0 {
        failed.push(format!("{server_left} backends left on the server"));
    }
    if !proxy.wait_idle(Duration::from_secs(5)).await {
        failed.push(format!(
            "{} proxied connections left",
            proxy.open_connections()
        ));
    }
    println!(
        "soak summary: {} ok queries; errors by kind {totals:?}; {} connections created, {leaked} \
         leaked; {late} acquires past deadline + {:?} (longest {max_acquire:?}, runtime wake-up \
         delay up to {:?}); final {status:?}",
        stats.ok(),
        counters.created(),
        Duration::from_millis(300),
        monitor.max_wake_delay,
    );
    println!(
        "soak RSS: first minute {} kB, last minute {} kB",
        rss_first.map_or_else(|| "?".into(), |r| r.to_string()),
        rss_last.map_or_else(|| "?".into(), |r| r.to_string()),
    );
    if failed.is_empty() {
        println!("soak: OK");
        true
    } else {
        println!("soak: FAILED: {failed:?}");
        false
    }
}
