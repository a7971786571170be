//! Load generation against a PostgreSQL pool, shared by `tests/chaos.rs` and
//! `examples/soak.rs`.
//!
//! * [`Counted`] wraps the adapter's manager and counts every connection
//!   created and dropped, so a test can prove none leaked.
//! * [`Load`] runs N tasks that each loop: acquire (under the pool's
//!   deadline), run one query under a client-side timeout, and discard the
//!   connection when the query failed or timed out. Every outcome is
//!   classified by kind and time-stamped, and every acquire is timed
//!   against its deadline.
//! * [`Monitor`] samples the pool's gauges while the load runs.
//! * The rest: connection settings, server queries ([`backends`],
//!   [`kill_backends`]) and error classification shared by both users.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickslot::postgres::tokio_postgres::{self, NoTls};
use quickslot::postgres::{parse_config, Client, Config, PgError, PgManager};
use quickslot::{Error, Pool, Pooled, ResourceInfo, Status, TimeoutPhase};

/// Creates and drops of [`Counted`] connections.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections created.
    pub created: AtomicU64,
    /// Connections dropped.
    pub dropped: AtomicU64,
    /// Most connections alive at once.
    pub max_live: AtomicU64,
}

impl ConnCounters {
    /// Connections created so far.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }
    /// Connections dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
    /// Connections alive now.
    pub fn live(&self) -> u64 {
        self.created() - self.dropped()
    }
}

/// A connection that reports its drop.
pub struct Conn {
    client: Client,
    counters: Arc<ConnCounters>,
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// The PostgreSQL manager with create/drop accounting.
pub struct Counted {
    /// The adapter's manager, which does the real work.
    pub inner: PgManager,
    /// Creates and drops of this manager's connections.
    pub counters: Arc<ConnCounters>,
}

impl Counted {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: PgManager) -> Self {
        Counted {
            inner,
            counters: Arc::default(),
        }
    }
}

impl quickslot::Manager for Counted {
    type Resource = Conn;
    type Error = PgError;

    async fn create(&self) -> Result<Conn, PgError> {
        let client = quickslot::Manager::create(&self.inner).await?;
        let live = self.counters.created.fetch_add(1, Ordering::SeqCst) + 1
            - self.counters.dropped.load(Ordering::SeqCst);
        self.counters.max_live.fetch_max(live, Ordering::SeqCst);
        Ok(Conn {
            client,
            counters: self.counters.clone(),
        })
    }

    async fn recycle(&self, conn: &mut Conn, info: &ResourceInfo) -> Result<(), PgError> {
        quickslot::Manager::recycle(&self.inner, &mut conn.client, info).await
    }

    fn is_broken(&self, conn: &mut Conn) -> bool {
        quickslot::Manager::is_broken(&self.inner, &mut conn.client)
    }
}

/// A pool of [`Counted`] connections.
pub type CountedPool = Pool<Counted>;

/// Short, stable name of a `tokio_postgres` error.
pub fn pg_kind(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("db {} {}", db.code().code(), short(db.message()));
    }
    if e.is_closed() {
        return "connection closed".into();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("io {:?}", io.kind());
        }
        source = s.source();
    }
    short(&e.to_string())
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Short, stable name of a manager error, e.g. `connect: io ConnectionRefused`.
pub fn manager_error_kind(e: &PgError) -> String {
    match e {
        PgError::Connect(e) => format!("connect: {}", pg_kind(e)),
        PgError::Recycle(e) => format!("recycle: {}", pg_kind(e)),
        PgError::Closed => "closed connection".into(),
        other => short(&other.to_string()),
    }
}

/// The kind of a failed acquire, e.g. `create: connect: io ConnectionRefused`
/// or `timeout Wait (last error: none)`.
pub fn acquire_error_kind(e: &Error<PgError>) -> String {
    match e {
        Error::Create(e) => format!("create: {}", manager_error_kind(e)),
        Error::Timeout {
            phase, last_error, ..
        } => format!(
            "timeout {} (last error: {})",
            phase_name(*phase),
            last_error
                .as_ref()
                .map_or_else(|| "none".to_string(), manager_error_kind)
        ),
        Error::Closed => "pool closed".into(),
        _ => short(&e.to_string()),
    }
}

/// The name of a timeout phase.
pub fn phase_name(p: TimeoutPhase) -> &'static str {
    match p {
        TimeoutPhase::Wait => "Wait",
        TimeoutPhase::Create => "Create",
        TimeoutPhase::Recycle => "Recycle",
        _ => "other",
    }
}

/// One failed operation.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When the operation (acquire or acquire + query) started, since the
    /// load started.
    pub started: Duration,
    /// How long the acquire took.
    pub acquire_elapsed: Duration,
    /// `acquire: ...` or `query: ...`.
    pub kind: String,
    /// Whether the acquire failed with a timeout.
    pub acquire_timeout: bool,
}

/// A latency histogram in microseconds, of fixed size: values below 64 have
/// a bucket each, larger ones 64 buckets per power of two (under 1.6 %
/// error). Recording never allocates, so it keeps the soak run's live heap
/// flat, and it spares the test dependencies a histogram crate.
#[derive(Debug, Clone)]
pub struct Latencies {
    counts: Box<[u64]>,
    len: u64,
    max: u64,
}

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`: the exact ones, then one row of `SUB`
/// per power of two from 2^SUB_BITS to 2^63.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        Latencies {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            len: 0,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        if value < SUB as u64 {
            return value as usize;
        }
        let shift = 63 - value.leading_zeros() - SUB_BITS;
        SUB + shift as usize * SUB + ((value >> shift) as usize & (SUB - 1))
    }

    /// The largest value that falls in bucket `index`.
    fn bucket_high(index: usize) -> u64 {
        if index < SUB {
            return index as u64;
        }
        let shift = (index - SUB) / SUB;
        let low = ((SUB + (index - SUB) % SUB) as u64) << shift;
        low + ((1u64 << shift) - 1)
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[Self::index(value)] += 1;
        self.len += 1;
        self.max = self.max.max(value);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` (0 to 1) of the values lie, to
    /// the histogram's precision: the top of the bucket holding that rank,
    /// at most [`max`](Self::max). 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.len == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.len as f64).ceil() as u64).clamp(1, self.len);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::bucket_high(index).min(self.max);
            }
        }
        self.max
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.len = 0;
        self.max = 0;
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of a [`Load`].
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Tasks running the loop.
    pub tasks: usize,
    /// The pool's acquire deadline (for the lateness check).
    pub deadline: Duration,
    /// Slack allowed past the deadline (scheduling on busy cores).
    pub tolerance: Duration,
    /// Client-side statement timeout around each query.
    pub query_timeout: Duration,
    /// Pause after a failure before the task tries again.
    pub backoff: Duration,
    /// The statement each operation runs.
    pub query: &'static str,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            tasks: 256,
            deadline: Duration::from_secs(2),
            tolerance: Duration::from_millis(300),
            query_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(5),
            query: "SELECT 1",
        }
    }
}

/// What the load tasks record.
pub struct LoadStats {
    /// When the load started.
    pub started: Instant,
    /// Successful operations.
    pub ok: AtomicU64,
    /// Acquires that ended later than deadline + tolerance.
    pub late: AtomicU64,
    /// Longest acquire, in microseconds.
    pub max_acquire_us: AtomicU64,
    /// Outcomes of the late acquires.
    pub late_kinds: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<Failure>>,
    /// Latency (acquire + query) of successful operations, microseconds.
    latencies: Mutex<Latencies>,
}

impl LoadStats {
    fn new() -> Self {
        LoadStats {
            started: Instant::now(),
            ok: AtomicU64::new(0),
            late: AtomicU64::new(0),
            max_acquire_us: AtomicU64::new(0),
            late_kinds: Mutex::default(),
            failures: Mutex::new(Vec::new()),
            latencies: Mutex::new(Latencies::new()),
        }
    }

    /// Successful operations so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// All failures so far (kept).
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap().clone()
    }

    /// Takes the failures recorded so far (for periodic reports).
    pub fn take_failures(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.failures.lock().unwrap())
    }

    /// Takes the latency histogram recorded so far.
    pub fn take_latencies(&self) -> Latencies {
        let mut h = self.latencies.lock().unwrap();
        let out = h.clone();
        h.reset();
        out
    }

    /// Waits (bounded) until one more operation succeeds than `since_ok`;
    /// returns how long that took, or `None` after `within`.
    pub async fn wait_for_success(&self, since_ok: u64, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.ok() > since_ok {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

/// Counts failures by kind.
pub fn by_kind<'a>(failures: impl IntoIterator<Item = &'a Failure>) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    for f in failures {
        *map.entry(f.kind.clone()).or_insert(0) += 1;
    }
    map
}

/// Running load; [`stop`](Load::stop) it to join the tasks.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the tasks record.
    pub stats: Arc<LoadStats>,
    /// The settings it runs with.
    pub config: LoadConfig,
}

impl Load {
    /// Spawns `config.tasks` tasks looping on `pool`.
    pub fn start(pool: &CountedPool, config: LoadConfig) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::new());
        let tasks = (0..config.tasks)
            .map(|_| {
                tokio::spawn(run_task(
                    pool.clone(),
                    config.clone(),
                    stop.clone(),
                    stats.clone(),
                ))
            })
            .collect();
        Load {
            stop,
            tasks,
            stats,
            config,
        }
    }

    /// Stops the tasks and waits for them (bounded by `within`: a task that
    /// does not finish is a hang). Returns whether all finished.
    pub async fn stop(self, within: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        // The tasks run on their own: awaiting them in turn takes as long as
        // the slowest, and every result is kept as a join of all would.
        let tasks = self.tasks;
        let all = async move {
            let mut results = Vec::with_capacity(tasks.len());
            for task in tasks {
                results.push(task.await);
            }
            results
        };
        match tokio::time::timeout(within, all).await {
            Ok(results) => {
                for r in results {
                    if let Err(e) = r {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
                true
            }
            Err(_) => false,
        }
    }
}

async fn run_task(
    pool: CountedPool,
    config: LoadConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) {
    let late_after = config.deadline + config.tolerance;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let started = stats.started.elapsed();
        let acquired = pool.acquire().await;
        let acquire_elapsed = t0.elapsed();
        stats
            .max_acquire_us
            .fetch_max(acquire_elapsed.as_micros() as u64, Ordering::Relaxed);
        if acquire_elapsed > late_after {
            stats.late.fetch_add(1, Ordering::SeqCst);
            let kind = match &acquired {
                Ok(_) => "ok".to_string(),
                Err(e) => acquire_error_kind(e),
            };
            *stats.late_kinds.lock().unwrap().entry(kind).or_insert(0) += 1;
        }
        let failure = |kind: String, acquire_timeout: bool| Failure {
            started,
            acquire_elapsed,
            kind,
            acquire_timeout,
        };
        let failed = match acquired {
            Ok(conn) => {
                match tokio::time::timeout(config.query_timeout, conn.simple_query(config.query))
                    .await
                {
                    Ok(Ok(_)) => {
                        stats.ok.fetch_add(1, Ordering::SeqCst);
                        let us = t0.elapsed().as_micros() as u64;
                        stats.latencies.lock().unwrap().record(us);
                        None
                    }
                    Ok(Err(e)) => {
                        // Unknown state: never give it back.
                        Pooled::discard(conn);
                        Some(failure(format!("query: {}", pg_kind(&e)), false))
                    }
                    Err(_) => {
                        // The statement hangs (stalled network): the
                        // connection is unusable, discard it.
                        Pooled::discard(conn);
                        Some(failure("query: client-side timeout".into(), false))
                    }
                }
            }
            Err(e) => Some(failure(
                format!("acquire: {}", acquire_error_kind(&e)),
                e.is_timeout(),
            )),
        };
        if let Some(f) = failed {
            stats.failures.lock().unwrap().push(f);
            tokio::time::sleep(config.backoff).await;
        }
    }
}

/// Checks a pool at rest: exact counts, nothing in use, nobody waiting.
/// Returns a description of every violation.
pub fn check_at_rest(status: &Status) -> Vec<String> {
    let mut bad = Vec::new();
    if status.size > status.max_size {
        bad.push(format!(
            "size {} > max_size {}",
            status.size, status.max_size
        ));
    }
    if status.idle + status.creating > status.size {
        bad.push(format!(
            "idle {} + creating {} > size {}",
            status.idle, status.creating, status.size
        ));
    }
    if status.idle + status.in_use + status.creating != status.size {
        bad.push("idle + in_use + creating != size".into());
    }
    if status.in_use != 0 {
        bad.push(format!("in_use {} != 0", status.in_use));
    }
    if status.waiting != 0 {
        bad.push(format!("waiting {} != 0", status.waiting));
    }
    if status.creating != 0 {
        bad.push(format!("creating {} != 0", status.creating));
    }
    bad
}

/// Samples the pool's gauges while it runs and records violations of the
/// invariants that hold at every instant (`size <= max_size`, each gauge
/// within bounds).
///
/// It doubles as a canary for the runtime: it sleeps 5 ms between samples
/// and records how much later than asked it woke up. On busy cores (and in
/// debug builds, where SCRAM's PBKDF2 in every connect blocks a worker for
/// tens of milliseconds) a task whose timer fired may wait that long to
/// run, whatever the pool does; acquire lateness is judged against it.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<MonitorReport>,
}

/// What a [`Monitor`] saw.
#[derive(Debug)]
pub struct MonitorReport {
    /// Samples taken.
    pub samples: u64,
    /// The status of every sample that broke an invariant.
    pub violations: Vec<String>,
    /// Largest `size` seen.
    pub max_size_seen: usize,
    /// The canary's worst oversleep.
    pub max_wake_delay: Duration,
}

impl Monitor {
    /// Starts sampling `pool` in a task.
    pub fn start(pool: &CountedPool) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            let mut report = MonitorReport {
                samples: 0,
                violations: Vec::new(),
                max_size_seen: 0,
                max_wake_delay: Duration::ZERO,
            };
            let period = Duration::from_millis(5);
            while !flag.load(Ordering::Relaxed) {
                let s = pool.status();
                report.samples += 1;
                report.max_size_seen = report.max_size_seen.max(s.size);
                if s.size > s.max_size || s.idle > s.max_size || s.creating > s.max_size {
                    report.violations.push(format!("{s:?}"));
                }
                let t0 = Instant::now();
                tokio::time::sleep(period).await;
                // The timer wheel rounds up to the next millisecond.
                let late = t0
                    .elapsed()
                    .saturating_sub(period + Duration::from_millis(1));
                report.max_wake_delay = report.max_wake_delay.max(late);
            }
            report
        });
        Monitor { stop, task }
    }

    /// Stops sampling and returns what it saw.
    pub async fn stop(self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("monitor")
    }
}

/// Reads this process's resident set size (kB) from /proc/self/status.
pub fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// Connections.

/// The server's loopback address.
pub fn server_addr(url: &str) -> SocketAddr {
    let config = parse_config(url).expect("QUICKSLOT_PG_URL parses");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The server's credentials with our own application name, connecting to
/// `port` on loopback (the server's, or a proxy's).
pub fn config_for(url: &str, app: &str, port: u16) -> Config {
    let base = parse_config(url).expect("QUICKSLOT_PG_URL parses");
    let mut c = Config::new();
    if let Some(user) = base.get_user() {
        c.user(user);
    }
    if let Some(password) = base.get_password() {
        c.password(password);
    }
    if let Some(db) = base.get_dbname() {
        c.dbname(db);
    }
    c.host("127.0.0.1")
        .port(port)
        .application_name(app)
        .connect_timeout(Duration::from_secs(10));
    c
}

/// An unpooled connection straight to the server.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
}

/// Server backends with this application name.
pub async fn backends(url: &str, app: &str) -> i64 {
    admin(url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("count backends")
        .get(0)
}

/// Terminates every backend with this application name; waits for each.
pub async fn kill_backends(url: &str, app: &str) -> i64 {
    admin(url)
        .await
        .query_one(
            "SELECT coalesce(sum(pg_terminate_backend(pid, 5000)::int), 0)::bigint \
             FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_terminate_backend")
        .get(0)
}

#[cfg(test)]
mod tests {
    use super::Latencies;

    #[test]
    fn latencies_bucket_bounds_and_quantiles() {
        // Every value lands in a bucket whose top is at least the value and
        // within 1/64 of it.
        for v in (0..5000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let high = Latencies::bucket_high(Latencies::index(v));
            assert!(high >= v && high - v <= v / 64, "{v} -> {high}");
        }
        let mut h = Latencies::new();
        assert_eq!((h.len(), h.max(), h.value_at_quantile(0.5)), (0, 0, 0));
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.len(), 1000);
        assert_eq!(h.max(), 1000);
        let p50 = h.value_at_quantile(0.5);
        assert!((500..=508).contains(&p50), "p50 {p50}");
        assert_eq!(h.value_at_quantile(1.0), 1000);
        h.reset();
        assert!(h.is_empty());
    }
}
