//! The [`PgManager`] that creates, checks and recycles PostgreSQL connections.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, Connection, NoTls, SimpleQueryMessage, Socket};

use super::cancel::{self, Hygiene, Unclean};
use super::client::Client;
use super::config::{config_from_env, parse_config, ConfigError};
use super::statement_cache::{SharedCounters, StatementCache, StatementCacheStats};
use crate::ResourceInfo;

/// The error type of an `after_connect` closure.
pub type AfterConnectError = Box<dyn std::error::Error + Send + Sync>;

/// The future an `after_connect` closure returns.
pub type AfterConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), AfterConnectError>> + Send + 'a>>;

type HookFn = dyn for<'a> Fn(&'a tokio_postgres::Client) -> AfterConnectFuture<'a> + Send + Sync;

/// The error a credential provider returns (see
/// [`PgManager::password_provider`] and [`PgManager::config_provider`]).
pub type CredentialError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type PasswordFn = dyn Fn() -> BoxFuture<Result<String, CredentialError>> + Send + Sync;
type ConfigFn = dyn Fn() -> BoxFuture<Result<Config, CredentialError>> + Send + Sync;

#[derive(Clone)]
enum Credentials {
    Password(Arc<PasswordFn>),
    Config(Arc<ConfigFn>),
}

enum Hook {
    Sql(String),
    Fn(Box<HookFn>),
}

/// Default number of prepared statements cached per connection.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 128;

/// Default window within which [`RecyclingMethod::Verified`] trusts a
/// connection without a round trip.
pub const DEFAULT_VERIFY_WINDOW: Duration = Duration::from_millis(500);

/// Default bound of a checkout check and of clearing a dropped query from a
/// connection (see [`PgManager::recycle_timeout`]).
pub const DEFAULT_RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `max_lifetime` [`PgManager::pool_builder`] sets: 30 minutes, as sqlx
/// and HikariCP (each connection's own lifetime is drawn between 90 % and
/// 100 % of it, so connections made together do not expire together).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The `idle_timeout` [`PgManager::pool_builder`] sets: 10 minutes, as sqlx
/// and HikariCP.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What happens to an idle connection when it is checked out again.
///
/// In every mode a connection the server closed (`is_closed()`) is discarded
/// both when it is returned and when it is checked out, and a connection
/// whose tracked [`Transaction`](super::Transaction) was leaked is discarded
/// on return.
///
/// Transactions and the modes:
///
/// | transaction left open by... | `Fast` | `Verified` | `Clean` |
/// |---|---|---|---|
/// | a dropped, uncommitted [`Transaction`](super::Transaction) (also on panic or cancellation) | rolled back (queued on drop) | rolled back | rolled back |
/// | a leaked [`Transaction`](super::Transaction) (`mem::forget`) | connection discarded | connection discarded | connection discarded |
/// | raw SQL (`batch_execute("BEGIN")`) | **not detected** | rolled back when the check runs (not within the verify window) | rolled back |
///
/// So with `Fast`, start transactions through
/// [`Client::transaction`](super::Client::transaction) /
/// [`Client::build_transaction`](super::Client::build_transaction), never with
/// a raw `BEGIN`; use `Clean` (or `Verified` with a zero window) if code you do
/// not control may issue raw `BEGIN`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecyclingMethod {
    /// Only checks `is_closed()`: no round trip. The default.
    #[default]
    Fast,
    /// One round trip (`SELECT transaction_timestamp() <> statement_timestamp()`)
    /// that proves the connection alive and detects a transaction left open
    /// by raw SQL, which is then rolled back. Skipped when the connection was
    /// returned less than [`PgManager::verify_window`] ago (this needs the pool
    /// to track idle time, which [`PgManager::pool_builder`] turns on; without
    /// it the check always runs). Bounded by the pool's recycle timeout.
    Verified,
    /// Resets the session in one round trip: rolls back any open
    /// transaction, closes cursors, resets the session authorization and all
    /// settings (`RESET ALL`), releases advisory locks, stops listening
    /// (`UNLISTEN *`) and drops temporary tables and sequence state. Cached
    /// prepared statements are kept (no `DISCARD ALL`). Settings made with
    /// `SET` by an `after_connect` hook are reset too: put settings that must
    /// survive in the startup options instead (`Config::options("-c
    /// search_path=app")`, `PGOPTIONS`) or in `ALTER ROLE ... SET`.
    Clean,
}

/// Errors of creating or recycling a connection.
///
/// A pool reports creation errors as [`quickslot::Error::Create`](crate::Error::Create)
/// (at once, not after the acquire timeout). Recycling errors only discard the
/// connection; the pool then tries another or creates a new one.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgError {
    /// Could not connect or authenticate: unreachable host, refused port,
    /// wrong password, unknown database, TLS failure... `Display` names the
    /// hosts and ports tried; the server's message (or the I/O error) is in
    /// the `source()` chain. Derefs to the [`tokio_postgres::Error`].
    Connect(ConnectError),
    /// An `after_connect` hook failed on a new connection (the connection is
    /// closed). For an SQL hook the boxed error is a [`tokio_postgres::Error`].
    AfterConnect(AfterConnectError),
    /// The connection was found closed when checked out.
    Closed,
    /// The round trip of [`RecyclingMethod::Verified`] or the session reset
    /// of [`RecyclingMethod::Clean`] failed.
    Recycle(tokio_postgres::Error),
    /// The checkout check (or the wait for a dropped query to be cleared)
    /// took longer than [`PgManager::recycle_timeout`].
    RecycleTimeout(Duration),
    /// A query dropped before it completed could not be cleared from the
    /// connection (see [Cancel on drop](super::Client#cancel-on-drop)); the
    /// reason is the `source()`.
    Abandoned(AbandonedQuery),
    /// The connection was made before the last
    /// [`soft_evict`](PgManager::soft_evict).
    Evicted,
    /// The password or configuration provider failed (its error is the
    /// `source()`).
    Credentials(CredentialError),
}

/// Why a connection could not be cleared after a dropped query (the source
/// of [`PgError::Abandoned`]).
#[derive(Debug, Clone)]
pub struct AbandonedQuery(Arc<Unclean>);

impl AbandonedQuery {
    pub(crate) fn new(why: Arc<Unclean>) -> Self {
        Self(why)
    }
}

impl fmt::Display for AbandonedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Unclean::Probe(_) => f.write_str("the connection failed while the query was cleared"),
            Unclean::Unconfirmed => f.write_str(
                "the cancel request could not be confirmed, so a late cancel could hit the next query",
            ),
            Unclean::Cancel(_) => f.write_str("the cancel request failed"),
            Unclean::Timeout(bound) => {
                write!(f, "the server did not finish the query within {bound:?}")
            }
            Unclean::NoProbe => f.write_str("the connection could not queue its drain"),
        }
    }
}

impl std::error::Error for AbandonedQuery {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Unclean::Probe(e) | Unclean::Cancel(e) => Some(e),
            _ => None,
        }
    }
}

/// A failed connect: the [`tokio_postgres::Error`] and where it tried.
#[derive(Debug)]
pub struct ConnectError {
    target: String,
    error: tokio_postgres::Error,
}

impl ConnectError {
    fn new(config: &Config, error: tokio_postgres::Error) -> Self {
        Self {
            target: describe_targets(config),
            error,
        }
    }

    /// The hosts and ports tried, as shown in the message
    /// (`127.0.0.1:5432`, `db1:5432, db2:5432`, `/run/postgresql:5432`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The driver's error.
    pub fn into_inner(self) -> tokio_postgres::Error {
        self.error
    }
}

impl std::ops::Deref for ConnectError {
    type Target = tokio_postgres::Error;

    fn deref(&self) -> &tokio_postgres::Error {
        &self.error
    }
}

/// `host:port` for each configured host, in the order they are tried.
fn describe_targets(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port_at = |i: usize| match ports {
        [] => 5432,
        [only] => *only,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return format!("localhost:{}", port_at(0));
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port_at(i)),
            #[cfg(unix)]
            Host::Unix(path) => format!("{}:{}", path.display(), port_at(i)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for PgError {
    // What happened only: the cause is the `source()`, so a report that
    // walks the chain shows each message once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Connect(e) => write!(f, "could not connect to PostgreSQL at {}", e.target),
            PgError::AfterConnect(_) => f.write_str("the after_connect hook failed"),
            PgError::Closed => f.write_str("the PostgreSQL connection is closed"),
            PgError::Recycle(_) => f.write_str("recycling the PostgreSQL connection failed"),
            PgError::RecycleTimeout(bound) => write!(
                f,
                "recycling the PostgreSQL connection took longer than {bound:?}"
            ),
            PgError::Abandoned(_) => {
                f.write_str("the PostgreSQL connection was discarded after a dropped query")
            }
            PgError::Evicted => f.write_str("the PostgreSQL connection was evicted"),
            PgError::Credentials(_) => f.write_str("the credential provider failed"),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Connect(e) => Some(&e.error),
            PgError::Recycle(e) => Some(e),
            PgError::AfterConnect(e) | PgError::Credentials(e) => Some(&**e),
            PgError::Abandoned(e) => Some(e),
            PgError::Closed | PgError::RecycleTimeout(_) | PgError::Evicted => None,
        }
    }
}

/// A [`quickslot::Manager`](crate::Manager) of `tokio_postgres` connections.
///
/// Generic over the TLS connector: [`NoTls`] by default, any
/// [`MakeTlsConnect`] (e.g. `tokio_postgres_rustls::MakeRustlsConnect`, see the
/// [module documentation](super#tls)) through [`PgManager::new`] or
/// [`PgManager::with_tls`].
///
/// Each new connection's I/O task is spawned on the current tokio runtime.
///
/// # Examples
///
/// ```no_run
/// use quickslot::postgres::{PgManager, RecyclingMethod};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgManager::from_url("postgres://app:secret@localhost/app")?
///     .recycling_method(RecyclingMethod::Verified)
///     .after_connect_sql("SET search_path = app, public")
///     .pool_builder()
///     .max_size(16)
///     .build()?;
///
/// let client = pool.acquire().await?;
/// let row = client.query_one_cached("SELECT $1::int + 1", &[&41]).await?;
/// assert_eq!(row.get::<_, i32>(0), 42);
/// # Ok(())
/// # }
/// ```
pub struct PgManager<T = NoTls> {
    config: Config,
    tls: T,
    recycling_method: RecyclingMethod,
    verify_window: Duration,
    statement_cache_capacity: usize,
    recycle_timeout: Duration,
    cancel_on_drop: bool,
    name: Option<Arc<str>>,
    credentials: Option<Credentials>,
    hooks: Vec<Arc<Hook>>,
    shared: Arc<SharedCounters>,
    /// Bumped by `soft_evict`; each connection keeps the value it was made
    /// under.
    generation: Arc<AtomicU64>,
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug redacts the password.
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .field("recycling_method", &self.recycling_method)
            .field("verify_window", &self.verify_window)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("cancel_on_drop", &self.cancel_on_drop)
            .field("name", &self.name)
            .field(
                "credentials",
                &match self.credentials {
                    None => "static",
                    Some(Credentials::Password(_)) => "password provider",
                    Some(Credentials::Config(_)) => "config provider",
                },
            )
            .field("after_connect_hooks", &self.hooks.len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl PgManager<NoTls> {
    /// A manager for `config` without TLS.
    pub fn from_config(config: Config) -> Self {
        PgManager::new(config, NoTls)
    }

    /// A manager for a URL or `key=value` connection string, without TLS
    /// (see [`parse_config`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] when the string is malformed.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Ok(PgManager::from_config(parse_config(url)?))
    }

    /// A manager configured from the `PG*` environment variables, without
    /// TLS (see [`config_from_env_map`](super::config_from_env_map) for the
    /// variables).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable that holds an unusable value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(PgManager::from_config(config_from_env()?))
    }
}

impl<T> PgManager<T> {
    /// A manager for `config` using the TLS connector `tls`.
    pub fn new(config: Config, tls: T) -> Self {
        PgManager {
            config,
            tls,
            recycling_method: RecyclingMethod::default(),
            verify_window: DEFAULT_VERIFY_WINDOW,
            statement_cache_capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
            recycle_timeout: DEFAULT_RECYCLE_TIMEOUT,
            cancel_on_drop: true,
            name: None,
            credentials: None,
            hooks: Vec::new(),
            shared: Arc::new(SharedCounters::default()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Replaces the TLS connector, keeping every other setting.
    pub fn with_tls<U>(self, tls: U) -> PgManager<U> {
        PgManager {
            config: self.config,
            tls,
            recycling_method: self.recycling_method,
            verify_window: self.verify_window,
            statement_cache_capacity: self.statement_cache_capacity,
            recycle_timeout: self.recycle_timeout,
            cancel_on_drop: self.cancel_on_drop,
            name: self.name,
            credentials: self.credentials,
            hooks: self.hooks,
            shared: self.shared,
            generation: self.generation,
        }
    }

    /// A copy sharing everything, for a listener's own connections.
    pub(crate) fn clone_shared(&self) -> Self
    where
        T: Clone,
    {
        PgManager {
            config: self.config.clone(),
            tls: self.tls.clone(),
            recycling_method: self.recycling_method,
            verify_window: self.verify_window,
            statement_cache_capacity: self.statement_cache_capacity,
            recycle_timeout: self.recycle_timeout,
            cancel_on_drop: self.cancel_on_drop,
            name: self.name.clone(),
            credentials: self.credentials.clone(),
            hooks: self.hooks.clone(),
            shared: self.shared.clone(),
            generation: self.generation.clone(),
        }
    }

    /// Sets how idle connections are checked on checkout (default
    /// [`RecyclingMethod::Fast`]).
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
        self
    }

    /// Sets the window within which [`RecyclingMethod::Verified`] skips its
    /// round trip for a connection returned that recently (default 500 ms;
    /// zero always checks).
    pub fn verify_window(mut self, window: Duration) -> Self {
        self.verify_window = window;
        self
    }

    /// Sets how many prepared statements each connection caches (default
    /// 128; 0 disables caching: every `prepare_cached` prepares anew).
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// Adds SQL (one or more `;`-separated statements, run with the simple
    /// query protocol) to run on every new connection, e.g.
    /// `SET search_path = app`. Hooks run in the order they were added.
    /// A failing hook makes the creation fail with [`PgError::AfterConnect`].
    pub fn after_connect_sql(mut self, sql: impl Into<String>) -> Self {
        self.hooks.push(Arc::new(Hook::Sql(sql.into())));
        self
    }

    /// Adds an async closure to run on every new connection. Hooks run in
    /// the order they were added. A hook returning an error makes the
    /// creation fail with [`PgError::AfterConnect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use quickslot::postgres::PgManager;
    ///
    /// let manager = PgManager::from_url("host=localhost user=app")?.after_connect(|client| {
    ///     Box::pin(async move {
    ///         let row = client.query_one("SHOW server_version_num", &[]).await?;
    ///         let version: i32 = row.get::<_, String>(0).parse()?;
    ///         if version < 130000 {
    ///             return Err("PostgreSQL 13 or newer required".into());
    ///         }
    ///         Ok(())
    ///     })
    /// });
    /// # Ok::<(), quickslot::postgres::ConfigError>(())
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a tokio_postgres::Client) -> AfterConnectFuture<'a> + Send + Sync + 'static,
    {
        self.hooks.push(Arc::new(Hook::Fn(Box::new(hook))));
        self
    }

    /// Bounds each checkout check ([`RecyclingMethod::Verified`]'s round
    /// trip, [`RecyclingMethod::Clean`]'s reset) and the clearing of a query
    /// dropped before it completed ([Cancel on drop](super::Client#cancel-on-drop)).
    /// Default [`DEFAULT_RECYCLE_TIMEOUT`] (5 s). A connection that overruns
    /// it is discarded.
    ///
    /// This is the adapter's own bound, not the pool's
    /// [`Builder::recycle_timeout`](crate::Builder::recycle_timeout), so it
    /// never conflicts with a shorter
    /// [`acquire_timeout`](crate::Builder::acquire_timeout): a checkout is
    /// bounded by whichever ends first. Setting the pool's
    /// `recycle_timeout` as well bounds it further.
    ///
    /// # Panics
    ///
    /// When `timeout` is zero.
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "recycle_timeout must not be zero");
        self.recycle_timeout = timeout;
        self
    }

    /// Whether a statement whose query future is dropped before it
    /// completed is cancelled on the server (default `true`; see
    /// [Cancel on drop](super::Client#cancel-on-drop)). With `false` it runs
    /// to its end, as with `tokio_postgres` alone, and the connection is
    /// still handed to no one before it is done: the next checkout waits
    /// for it, up to the [`recycle_timeout`](Self::recycle_timeout), after
    /// which the connection is discarded.
    pub fn cancel_on_drop(mut self, cancel: bool) -> Self {
        self.cancel_on_drop = cancel;
        self
    }

    /// The bound set with [`recycle_timeout`](Self::recycle_timeout).
    pub fn configured_recycle_timeout(&self) -> Duration {
        self.recycle_timeout
    }

    /// Names the pool in the adapter's log events (the `pool` field of the
    /// `quickslot::postgres` target), and [`pool_builder`](Self::pool_builder)
    /// gives the pool the same [`name`](crate::Builder::name). Default: the
    /// pool's default name, `"quickslot"`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Calls `provider` for the password of every new connection, in place
    /// of the configured one: for short-lived credentials such as an AWS RDS
    /// IAM token or a Vault lease. Connections already made keep working
    /// (PostgreSQL checks the password only when connecting); call
    /// [`Pool::soft_evict`](crate::Pool::soft_evict) to replace them all.
    ///
    /// Replaces an earlier [`config_provider`](Self::config_provider).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use quickslot::postgres::PgManager;
    ///
    /// async fn fetch_token() -> std::io::Result<String> {
    ///     Ok("token".to_owned())
    /// }
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgManager::from_url("postgres://app@db.example.com/app")?
    ///     .password_provider(|| async { Ok(fetch_token().await?) })
    ///     .pool_builder()
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn password_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, CredentialError>> + Send + 'static,
    {
        self.credentials = Some(Credentials::Password(Arc::new(
            move || Box::pin(provider()),
        )));
        self
    }

    /// Calls `provider` for the whole configuration of every new connection,
    /// in place of the configured one (hosts, user, password, options...).
    /// The configuration given to the manager is then used only for
    /// [`config`](Self::config) and error messages.
    ///
    /// Replaces an earlier [`password_provider`](Self::password_provider).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use quickslot::postgres::{parse_config, PgManager};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = PgManager::from_url("postgres://app@primary/app")?.config_provider(|| async {
    ///     // For example: ask a service registry where the primary is now.
    ///     Ok(parse_config("postgres://app:secret@primary/app")?)
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn config_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Config, CredentialError>> + Send + 'static,
    {
        self.credentials = Some(Credentials::Config(Arc::new(move || Box::pin(provider()))));
        self
    }

    /// The current generation: 0, plus one for each
    /// [`soft_evict`](Self::soft_evict).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks every connection made so far as evicted: each is discarded
    /// when it is next returned or checked out, and new ones replace them,
    /// while traffic keeps flowing (HikariCP's `softEvictConnections`).
    /// Returns the new generation.
    ///
    /// [`Pool::soft_evict`](crate::Pool::soft_evict) does this and also
    /// drops the idle connections at once; prefer it when you have the pool.
    pub fn soft_evict(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The connection configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The recycling method, as set with
    /// [`recycling_method`](Self::recycling_method).
    pub fn configured_recycling_method(&self) -> RecyclingMethod {
        self.recycling_method
    }

    /// The window of [`RecyclingMethod::Verified`], set with
    /// [`verify_window`](Self::verify_window).
    pub fn configured_verify_window(&self) -> Duration {
        self.verify_window
    }

    /// The recycling method.
    #[deprecated(note = "renamed to `configured_recycling_method`")]
    pub fn get_recycling_method(&self) -> RecyclingMethod {
        self.configured_recycling_method()
    }

    /// The window of [`RecyclingMethod::Verified`].
    #[deprecated(note = "renamed to `configured_verify_window`")]
    pub fn get_verify_window(&self) -> Duration {
        self.configured_verify_window()
    }

    /// Empties the prepared-statement cache of every connection of this
    /// manager, idle or checked out. Each connection notices on its next
    /// cache lookup (an atomic load), so this is cheap and never waits.
    pub fn clear_statement_caches(&self) {
        self.shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Hit, miss, eviction and invalidation counts summed over every
    /// connection this manager created (`len` is 0 here).
    pub fn statement_cache_stats(&self) -> StatementCacheStats {
        self.shared.stats()
    }

    /// A pool builder for this manager with the settings this adapter
    /// wants, each of which can be overridden on the returned builder:
    ///
    /// | setting | value | why |
    /// |---|---|---|
    /// | [`max_lifetime`](crate::Builder::max_lifetime) | [`DEFAULT_MAX_LIFETIME`], 30 min, jittered down by up to 10 % per connection | as sqlx and HikariCP: connections do not outlive a failover, a DNS change or server-side memory growth for long |
    /// | [`idle_timeout`](crate::Builder::idle_timeout) | [`DEFAULT_IDLE_TIMEOUT`], 10 min | as sqlx and HikariCP: an idle pool gives its server connections back |
    /// | [`track_idle_time`](crate::Builder::track_idle_time) | on | [`RecyclingMethod::Verified`] skips recently used connections |
    /// | [`name`](crate::Builder::name) | the manager's [`name`](Self::name), when set | |
    ///
    /// The checkout bound is the manager's
    /// [`recycle_timeout`](Self::recycle_timeout), not the pool's, so a short
    /// [`acquire_timeout`](crate::Builder::acquire_timeout) is fine:
    ///
    /// ```
    /// use std::time::Duration;
    /// use quickslot::postgres::PgManager;
    ///
    /// let pool = PgManager::from_url("postgres://app@localhost/app")?
    ///     .pool_builder()
    ///     .acquire_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// These two are defaults that yield to your settings: a `max_lifetime`
    /// below 10 minutes drops the default `idle_timeout` instead of
    /// conflicting with it (see
    /// [`Builder::default_idle_timeout`](crate::Builder::default_idle_timeout)).
    pub fn pool_builder(self) -> crate::Builder<Self>
    where
        Self: crate::Manager,
    {
        let name = self.name.clone();
        let builder = crate::Pool::builder(self)
            .track_idle_time(true)
            .default_max_lifetime(DEFAULT_MAX_LIFETIME)
            .default_idle_timeout(DEFAULT_IDLE_TIMEOUT);
        match name {
            Some(name) => builder.name(name),
            None => builder,
        }
    }

    /// The pool name for log events.
    pub(crate) fn log_name(&self) -> Arc<str> {
        self.name.clone().unwrap_or_else(|| Arc::from("quickslot"))
    }

    /// The configuration for the next connection (from the provider, if
    /// any).
    async fn connect_config(&self) -> Result<Cow<'_, Config>, PgError> {
        match &self.credentials {
            None => Ok(Cow::Borrowed(&self.config)),
            Some(Credentials::Password(provider)) => {
                let password = provider().await.map_err(PgError::Credentials)?;
                let mut config = self.config.clone();
                config.password(password);
                Ok(Cow::Owned(config))
            }
            Some(Credentials::Config(provider)) => provider()
                .await
                .map(Cow::Owned)
                .map_err(PgError::Credentials),
        }
    }

    /// Runs the `after_connect` hooks on a new connection.
    pub(crate) async fn run_hooks(&self, client: &tokio_postgres::Client) -> Result<(), PgError> {
        for hook in &self.hooks {
            match &**hook {
                Hook::Sql(sql) => client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| PgError::AfterConnect(Box::new(e)))?,
                Hook::Fn(f) => f(client).await.map_err(PgError::AfterConnect)?,
            }
        }
        Ok(())
    }
}

/// A new connection whose I/O the caller drives.
pub(crate) struct Opened<T: MakeTlsConnect<Socket>> {
    pub(crate) client: tokio_postgres::Client,
    pub(crate) connection: Connection<Socket, T::Stream>,
    /// The configuration it was made with.
    pub(crate) config: Config,
    /// Its host, when the configuration tells.
    pub(crate) target: Option<cancel::Target>,
    /// The generation it was made under.
    pub(crate) generation: u64,
}

impl<T> PgManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// Connects (trying each configured host in turn) without spawning the
    /// connection's I/O and without running the hooks.
    pub(crate) async fn open(&self) -> Result<Opened<T>, PgError> {
        // Read before connecting: a soft_evict during the connect evicts
        // this connection too (it may carry the old credentials).
        let generation = self.generation();
        let config = self.connect_config().await?;
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|e| PgError::Connect(ConnectError::new(&config, e)))?;
        let target = cancel::resolve_target(&config, &client.cancel_token()).await;
        Ok(Opened {
            client,
            connection,
            config: config.into_owned(),
            target,
            generation,
        })
    }

    /// How cancel requests reach the backend of a connection (whose I/O
    /// is running).
    async fn canceller(
        &self,
        client: &tokio_postgres::Client,
        config: &Config,
        target: Option<cancel::Target>,
    ) -> cancel::Canceller {
        let tls_in_use = if cancel::tls_undecided::<T>(config) {
            client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .ok()
                .and_then(|row| row.try_get::<_, bool>(0).ok())
        } else {
            None
        };
        cancel::canceller(self.tls.clone(), config, target, tls_in_use)
    }
}

/// An error and its `source()` chain on one line, for log events (a
/// message already shown by the one before it is not repeated).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !shown.ends_with(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&shown)
    }
}

/// `host:port` of a connection for log events.
pub(crate) fn describe_server(config: &Config, target: Option<&cancel::Target>) -> String {
    match target {
        Some(target) => target.to_string(),
        None => describe_targets(config),
    }
}

/// Detects (and the caller rolls back) a transaction left open by raw SQL;
/// in a single simple-protocol statement outside a transaction block, the
/// two timestamps are equal.
const VERIFY_SQL: &str = "SELECT transaction_timestamp() <> statement_timestamp()";

/// One simple-protocol message. `BEGIN; ROLLBACK` ends any open transaction
/// without the server warning "there is no transaction in progress" when
/// there is none. `DISCARD ALL` is avoided on purpose: it would deallocate
/// the cached prepared statements.
const CLEAN_SQL: &str = "BEGIN; ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; \
     RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

fn in_failed_transaction(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION)
}

async fn verify(client: &Client) -> Result<(), PgError> {
    match client.simple_query(VERIFY_SQL).await {
        Ok(messages) => {
            let in_transaction = messages.iter().any(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0) == Some("t"),
                _ => false,
            });
            if in_transaction {
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(PgError::Recycle)?;
            }
            Ok(())
        }
        Err(e) if in_failed_transaction(&e) => client
            .batch_execute("ROLLBACK")
            .await
            .map_err(PgError::Recycle),
        Err(e) => Err(PgError::Recycle(e)),
    }
}

async fn clean(client: &Client) -> Result<(), PgError> {
    match client.batch_execute(CLEAN_SQL).await {
        Ok(()) => Ok(()),
        Err(e) if in_failed_transaction(&e) => {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(PgError::Recycle)?;
            client
                .batch_execute(CLEAN_SQL)
                .await
                .map_err(PgError::Recycle)
        }
        Err(e) => Err(PgError::Recycle(e)),
    }
}

impl<T> crate::Manager for PgManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Resource = Client;
    type Error = PgError;

    /// Connects (trying each configured host in turn, with the credentials
    /// of the provider if one is set), spawns the connection's I/O task on
    /// tokio and runs the `after_connect` hooks.
    ///
    /// The I/O task logs how the connection ended (target
    /// `quickslot::postgres`): a `warn` event with the pool's name, the
    /// server's `host:port` and the error when it failed (the server
    /// terminated the backend, restarted, the network dropped), a `debug`
    /// event when it was closed normally.
    async fn create(&self) -> Result<Client, PgError> {
        let opened = self.open().await?;
        let Opened {
            client,
            connection,
            config,
            target,
            generation,
        } = opened;
        let pool = self.log_name();
        let server = describe_server(&config, target.as_ref());
        // The task ends when the client is dropped or the server goes away;
        // the client then reports `is_closed()`.
        tokio::spawn(async move {
            match connection.await {
                Ok(()) => tracing::debug!(
                    target: "quickslot::postgres",
                    pool = %pool,
                    server = %server,
                    "PostgreSQL connection closed"
                ),
                Err(error) => tracing::warn!(
                    target: "quickslot::postgres",
                    pool = %pool,
                    server = %server,
                    error = %Chain(&error),
                    "PostgreSQL connection failed"
                ),
            }
        });
        self.run_hooks(&client).await?;
        let canceller = match self.cancel_on_drop {
            true => Some(self.canceller(&client, &config, target).await),
            false => None,
        };
        let statements = StatementCache::new(self.statement_cache_capacity, self.shared.clone());
        let hygiene = Hygiene::new(canceller, self.recycle_timeout);
        Ok(Client::new(client, statements, hygiene, generation))
    }

    async fn recycle(&self, client: &mut Client, info: &ResourceInfo) -> Result<(), PgError> {
        if client.is_closed() {
            return Err(PgError::Closed);
        }
        if client.generation() < self.generation() {
            return Err(PgError::Evicted);
        }
        let hygiene = client.hygiene().clone();
        if let Some(why) = hygiene.is_broken().then(|| hygiene.unclean()).flatten() {
            return Err(PgError::Abandoned(AbandonedQuery::new(why)));
        }
        let check = match self.recycling_method {
            RecyclingMethod::Fast => false,
            RecyclingMethod::Verified => info
                .idle_for()
                .is_none_or(|idle| idle >= self.verify_window),
            RecyclingMethod::Clean => true,
        };
        if !check && !hygiene.is_dirty() {
            return Ok(());
        }
        let work = async {
            hygiene
                .settle()
                .await
                .map_err(|why| PgError::Abandoned(AbandonedQuery::new(why)))?;
            if client.is_closed() {
                return Err(PgError::Closed);
            }
            match (check, self.recycling_method) {
                (false, _) | (_, RecyclingMethod::Fast) => Ok(()),
                (true, RecyclingMethod::Verified) => verify(client).await,
                (true, RecyclingMethod::Clean) => clean(client).await,
            }
        };
        match tokio::time::timeout(self.recycle_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(PgError::RecycleTimeout(self.recycle_timeout)),
        }
    }

    fn is_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
            || client.transaction_open()
            || client.hygiene().is_broken()
            || client.generation() < self.generation()
    }
}
