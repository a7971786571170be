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
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickslot::postgres::{parse_config, Client, Config, PgError, PgManager};
use quickslot::{Error, Pool, Pooled, ResourceInfo, Status, TimeoutPhase};
use tokio_postgres::NoTls;

/// Creates and drops of [`Counted`] connections.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub created: AtomicU64,
    pub dropped: AtomicU64,
    /// Most connections alive at once.
    pub max_live: AtomicU64,
}

impl ConnCounters {
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
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
    pub inner: PgManager,
    pub counters: Arc<ConnCounters>,
}

impl Counted {
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

/// Settings of a [`Load`].
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub tasks: usize,
    /// The pool's acquire deadline (for the lateness check).
    pub deadline: Duration,
    /// Slack allowed past the deadline (scheduling on busy cores).
    pub tolerance: Duration,
    /// Client-side statement timeout around each query.
    pub query_timeout: Duration,
    /// Pause after a failure before the task tries again.
    pub backoff: Duration,
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
    pub started: Instant,
    pub ok: AtomicU64,
    /// Acquires that ended later than deadline + tolerance.
    pub late: AtomicU64,
    /// Longest acquire, in microseconds.
    pub max_acquire_us: AtomicU64,
    /// Outcomes of the late acquires.
    pub late_kinds: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<Failure>>,
    /// Latency (acquire + query) of successful operations, microseconds.
    latencies: Mutex<hdrhistogram::Histogram<u64>>,
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
            latencies: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 120_000_000, 2).unwrap(),
            ),
        }
    }

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
    pub fn take_latencies(&self) -> hdrhistogram::Histogram<u64> {
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
    pub stats: Arc<LoadStats>,
    pub config: LoadConfig,
}

impl Load {
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
        let all = futures::future::join_all(self.tasks);
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
                        let _ = stats.latencies.lock().unwrap().record(us.max(1));
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
    pub samples: u64,
    pub violations: Vec<String>,
    pub max_size_seen: usize,
    /// The canary's worst oversleep.
    pub max_wake_delay: Duration,
}

impl Monitor {
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
