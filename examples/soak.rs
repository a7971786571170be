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
//! Memory is measured two ways. The process RSS (`VmRSS` of
//! `/proc/self/status`) is what the OS sees, including what the allocator
//! (glibc malloc and its per-thread arenas) keeps cached after a free. The
//! live heap is what the program holds: a counting global allocator around
//! [`System`] tracks the bytes and number of allocations not yet freed, by
//! size class. RSS that grows while the live heap stays flat is the
//! allocator's caching or fragmentation, not a leak.
//!
//! Each minute it prints q/s, p50/p99/max latency, errors by kind, the
//! faults injected, connections created, the RSS (with its anonymous and
//! file-backed parts, and the thread count) and the live heap (bytes and
//! allocations at the minute's end, the minute's median and peak). At the
//! end it checks that the pool is at rest with exact counts, that no
//! connection leaked, and that the live heap has grown by at most
//! [`HEAP_GROWTH_MAX`] both from the end of minute 1 to the end of the run
//! (load stopped, pool at rest) and from the median of minute 1 to that of
//! the last minute (each minute's median of samples every 250 ms, under
//! load). It prints the RSS and the live heap of the first and last minute
//! and at rest, and the change in live allocations by size class from
//! minute 1 to rest (where a leak would show). Exit status 1 if a check
//! failed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickslot::postgres::PgManager;
use quickslot::Pool;
use quickslot_testkit::pgload::{
    backends, by_kind, check_at_rest, config_for, kill_backends, rss_kb, server_addr, Counted,
    Load, LoadConfig, Monitor,
};
use quickslot_testkit::proxy::Proxy;

const TASKS: usize = 256;
const MAX_SIZE: usize = 16;
const APP: &str = "qs_soak";

/// How much the live heap may grow over a run: 256 KiB, in each of two
/// comparisons. (1) At rest: from the end of minute 1 (under load) to the
/// end of the run, load stopped and pool at rest. (2) Under load: from the
/// median of minute 1 to the median of the last minute.
///
/// A leak is paid per event, and a soak has many events: a 15-minute run
/// created 624 connections (faults kill them, the pool makes new ones) and
/// ran 22.1 M queries, about 40 connections and 1.5 M queries a minute. Over
/// 600 connections, 256 KiB is about 440 bytes per connection: the ~2 KB per
/// connection that the RSS of that run suggested passes it after about 130
/// connections, 3 or 4 minutes of soak. Over 10 M queries it is one 16-byte
/// allocation per 600 queries. What legitimately differs between samples is
/// far smaller: tokio's and the pool's free lists and slabs, sized by the
/// peak load and kept for reuse, which minute 1 has already reached; the
/// run's statistics (a few error kinds); and under load, the instant's
/// traffic (an idle connection holds 60-80 KB, so a connection being
/// replaced moves a sample by that much), which the median smooths out:
/// in five 10-minute runs, each run's per-minute medians were within 90 KB
/// of each other, with no trend.
///
/// Why both: the load's own in-flight state (256 task futures, 240 queued
/// waiters, query buffers: 60-380 KB measured) is in the minute-1 sample
/// and gone at rest, so (1) misses a leak up to that much larger; (2) has
/// the in-flight state on both sides, but sees only what leaked by the last
/// minute's median, and can be fooled by a change in the load's shape. A
/// simulated leak of 2 KB per created connection (160 connections in 5
/// minutes, 320 KiB) passed (1) at +40 KB and failed (2) at +314 KB.
const HEAP_GROWTH_MAX: i64 = 256 * 1024;

/// A global allocator that counts what it hands out and gets back, around
/// the system allocator (glibc malloc on Linux, so the RSS behaves as
/// without it).
///
/// The counters use `Relaxed` atomics: they are pure statistics that order
/// no other memory and guard nothing, each update is a single atomic
/// read-modify-write so no increment is lost, and a reader only needs a
/// value that was true at some recent instant. A reader that loads several
/// counters one after another does not get a consistent snapshot across
/// them; at a point where the program is at rest, they are exact.
struct Counting;

/// Live allocations by size class: class `c` holds sizes in
/// `[2^(c-1), 2^c)` (class 0: zero-sized). Their sum is the live allocation
/// count (kept only here, to pay for one counter per allocation, not two).
static LIVE_BY_CLASS: [AtomicI64; 65] = {
    #[allow(clippy::declare_interior_mutable_const)] // only a repeat operand
    const ZERO: AtomicI64 = AtomicI64::new(0);
    [ZERO; 65]
};
/// Bytes requested and not yet freed (`Layout::size`, not malloc's
/// rounded-up chunk size).
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Allocations made since start (`alloc` and `alloc_zeroed`; a `realloc`
/// resizes one, it does not count as another).
static TOTAL_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// The highest `LIVE_BYTES` since the last reset (each minute's end). The
/// allocator keeps the memory of a peak resident after it is freed, so the
/// RSS follows the peaks, not the live heap.
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

/// The RSS split by what backs it, and the thread count, from
/// `/proc/self/status`: `RssAnon` (malloc's heap and arenas, thread stacks),
/// `RssFile` (the binary's and libraries' pages, faulted in as code first
/// runs) and `Threads` (glibc malloc gives threads separate arenas).
fn rss_split() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "anon {} file {} kB, {} threads",
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:")
    )
}

fn size_class(size: usize) -> usize {
    (usize::BITS - size.leading_zeros()) as usize
}

impl Counting {
    fn track_alloc(size: usize) {
        Self::grew(LIVE_BYTES.fetch_add(size as i64, Ordering::Relaxed) + size as i64);
        LIVE_BY_CLASS[size_class(size)].fetch_add(1, Ordering::Relaxed);
        TOTAL_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    /// Raises the peak; a plain load first, as it rarely moves.
    fn grew(live: i64) {
        if live > PEAK_BYTES.load(Ordering::Relaxed) {
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
    }
    fn track_dealloc(size: usize) {
        LIVE_BYTES.fetch_sub(size as i64, Ordering::Relaxed);
        LIVE_BY_CLASS[size_class(size)].fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping only touches atomics and never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Self::track_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Self::track_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        Self::track_dealloc(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // The block moved from one size to another; on failure the old
            // one is still live and nothing changed.
            let delta = new_size as i64 - layout.size() as i64;
            Self::grew(LIVE_BYTES.fetch_add(delta, Ordering::Relaxed) + delta);
            let (from, to) = (size_class(layout.size()), size_class(new_size));
            if from != to {
                LIVE_BY_CLASS[from].fetch_sub(1, Ordering::Relaxed);
                LIVE_BY_CLASS[to].fetch_add(1, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The live heap at one instant (see [`Counting`] on consistency).
#[derive(Debug, Clone, Copy)]
struct Heap {
    bytes: i64,
    allocs: i64,
    total_allocs: u64,
    by_class: [i64; 65],
}

impl Heap {
    fn now() -> Heap {
        let mut by_class = [0; 65];
        for (n, c) in by_class.iter_mut().zip(&LIVE_BY_CLASS) {
            *n = c.load(Ordering::Relaxed);
        }
        Heap {
            bytes: LIVE_BYTES.load(Ordering::Relaxed),
            allocs: by_class.iter().sum(),
            total_allocs: TOTAL_ALLOCS.load(Ordering::Relaxed),
            by_class,
        }
    }

    /// Change in live allocations by size class from `earlier` to `self`,
    /// e.g. `[64, 128) B: +12`; classes that did not change are left out.
    fn class_diff(&self, earlier: &Heap) -> Vec<String> {
        (0..self.by_class.len())
            .filter(|&c| self.by_class[c] != earlier.by_class[c])
            .map(|c| {
                let lo = if c == 0 { 0 } else { 1u128 << (c - 1) };
                format!(
                    "[{lo}, {}) B: {:+}",
                    1u128 << c,
                    self.by_class[c] - earlier.by_class[c]
                )
            })
            .collect()
    }
}

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
    let manager = Counted::new(PgManager::from_config(config_for(&url, APP, proxy.port())));
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
                        proxy.refuse().await;
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        proxy.accept().await;
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

    // The live heap, sampled every 250 ms; each minute reports the median of
    // its samples, which the faults (a few seconds in every 5-20) and
    // whatever happens to be in flight at one instant do not move.
    let heap_samples: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new(Vec::with_capacity(512)));
    let sampler = {
        let samples = heap_samples.clone();
        tokio::spawn(async move {
            loop {
                let bytes = LIVE_BYTES.load(Ordering::Relaxed);
                samples.lock().unwrap().push(bytes);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let stats = load.stats.clone();
    let mut rss_first = None;
    let mut rss_last = None;
    let mut heap_first = None;
    let mut heap_last = Heap::now();
    let mut median_first = 0;
    let mut median_last = 0;
    let mut peak_max = 0;
    let mut created_before = 0;
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
        let heap = Heap::now();
        let peak = PEAK_BYTES.swap(heap.bytes, Ordering::Relaxed);
        peak_max = peak_max.max(peak);
        let median = {
            let mut samples = heap_samples.lock().unwrap();
            samples.sort_unstable();
            let median = samples
                .get(samples.len() / 2)
                .copied()
                .unwrap_or(heap.bytes);
            samples.clear();
            median
        };
        let created = counters.created();
        if minute == 1 {
            rss_first = rss;
            heap_first = Some(heap);
            median_first = median;
        }
        rss_last = rss;
        heap_last = heap;
        median_last = median;
        let status = pool.status();
        println!(
            "minute {minute:>3}: {:>8.0} q/s, latency p50 {} µs p99 {} µs max {} µs; \
             rss {} kB ({}); heap {} B in {} allocs (median {median} B, peak {peak} B), {} \
             allocs made; connections created {} (total {created}); pool size {} idle {} \
             waiting {}; faults {:?}; errors {:?}",
            (ok - ok_before) as f64 / secs,
            latencies.value_at_quantile(0.5),
            latencies.value_at_quantile(0.99),
            latencies.max(),
            rss.map_or_else(|| "?".into(), |r| r.to_string()),
            rss_split(),
            heap.bytes,
            heap.allocs,
            heap.total_allocs,
            created - created_before,
            status.size,
            status.idle,
            status.waiting,
            injected,
            kinds,
        );
        ok_before = ok;
        created_before = created;
    }
    sampler.abort();
    let mut failed = Vec::new();
    let heap_first = heap_first.expect("at least one minute");
    // Under load, both medians include the load's in-flight state, so this
    // comparison has no blind spot for it (see `HEAP_GROWTH_MAX`).
    let median_growth = median_last - median_first;
    if median_growth > HEAP_GROWTH_MAX {
        failed.push(format!(
            "median live heap under load grew {median_growth} B from minute 1 ({median_first} B) \
             to minute {minutes} ({median_last} B), more than {HEAP_GROWTH_MAX} B"
        ));
    }

    stop_faults.store(true, Ordering::SeqCst);
    let _ = injector.await;
    proxy.unstall();
    proxy.accept().await;
    proxy.set_latency(Duration::ZERO);

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
    // Memory at rest: the load and its tasks are gone, the pool holds only
    // idle connections. A moment first for what the load's end set going
    // (discarded connections' driver tasks, proxied sockets) to finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heap_rest = Heap::now();
    let rss_rest = rss_kb();
    let rss_rest_split = rss_split();
    let rest_status = pool.status();
    let heap_growth = heap_rest.bytes - heap_first.bytes;
    if heap_growth > HEAP_GROWTH_MAX {
        failed.push(format!(
            "live heap at rest {} B grew {heap_growth} B since minute 1 ({} B), more than {} B",
            heap_rest.bytes, heap_first.bytes, HEAP_GROWTH_MAX
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
    // With every connection closed too: the difference from `heap_rest` is
    // what the idle connections held (for scale against a per-connection
    // leak).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let heap_closed = Heap::now();
    println!(
        "soak summary: {} ok queries; errors by kind {totals:?}; {} connections created, {leaked} \
         leaked; {late} acquires past deadline + {:?} (longest {max_acquire:?}, runtime wake-up \
         delay up to {:?}); final {status:?}",
        stats.ok(),
        counters.created(),
        Duration::from_millis(300),
        monitor.max_wake_delay,
    );
    let kb = |r: Option<u64>| r.map_or_else(|| "?".into(), |r| r.to_string());
    println!(
        "soak RSS: first minute {} kB, last minute {} kB, at rest {} kB ({rss_rest_split})",
        kb(rss_first),
        kb(rss_last),
        kb(rss_rest),
    );
    println!(
        "soak live heap: first minute {} B in {} allocs, last minute {} B in {} allocs, at rest \
         {} B in {} allocs with {} idle connections, {} B in {} allocs once they closed; growth \
         at rest since minute 1 {heap_growth:+} B, of the median under load from minute 1 to \
         {minutes} {median_growth:+} B ({median_first} B to {median_last} B; limit \
         {HEAP_GROWTH_MAX} B each); peak under load {peak_max} B; {} allocations made in all",
        heap_first.bytes,
        heap_first.allocs,
        heap_last.bytes,
        heap_last.allocs,
        heap_rest.bytes,
        heap_rest.allocs,
        rest_status.idle,
        heap_closed.bytes,
        heap_closed.allocs,
        heap_closed.total_allocs,
    );
    println!(
        "soak live allocations by size class, at rest minus minute 1: {:?}",
        heap_rest.class_diff(&heap_first)
    );
    if failed.is_empty() {
        println!("soak: OK");
        true
    } else {
        println!("soak: FAILED: {failed:?}");
        false
    }
}
