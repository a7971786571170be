//! The [`PgManager`] that creates, checks and recycles PostgreSQL connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls, SimpleQueryMessage, Socket};

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

enum Hook {
    Sql(String),
    Fn(Box<HookFn>),
}

/// Default number of prepared statements cached per connection.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 128;

/// Default window within which [`RecyclingMethod::Verified`] trusts a
/// connection without a round trip.
pub const DEFAULT_VERIFY_WINDOW: Duration = Duration::from_millis(500);

/// Recycle timeout set by [`PgManager::pool_builder`].
pub const DEFAULT_RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

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
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Connect(e) => Some(&e.error),
            PgError::Recycle(e) => Some(e),
            PgError::AfterConnect(e) => Some(&**e),
            PgError::Closed => None,
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
    hooks: Vec<Hook>,
    shared: Arc<SharedCounters>,
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug redacts the password.
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .field("recycling_method", &self.recycling_method)
            .field("verify_window", &self.verify_window)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("after_connect_hooks", &self.hooks.len())
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
            hooks: Vec::new(),
            shared: Arc::new(SharedCounters::default()),
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
            hooks: self.hooks,
            shared: self.shared,
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
        self.hooks.push(Hook::Sql(sql.into()));
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
        self.hooks.push(Hook::Fn(Box::new(hook)));
        self
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
    /// relies on: idle-time tracking on (so [`RecyclingMethod::Verified`]
    /// can skip recently used connections) and a recycle timeout of
    /// [`DEFAULT_RECYCLE_TIMEOUT`] bounding the checkout round trip. Both
    /// can be overridden on the returned builder.
    pub fn pool_builder(self) -> crate::Builder<Self>
    where
        Self: crate::Manager,
    {
        crate::Pool::builder(self)
            .track_idle_time(true)
            .recycle_timeout(DEFAULT_RECYCLE_TIMEOUT)
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

    /// Connects (trying each configured host in turn), spawns the
    /// connection's I/O task on tokio and runs the `after_connect` hooks.
    async fn create(&self) -> Result<Client, PgError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| PgError::Connect(ConnectError::new(&self.config, e)))?;
        // The task ends when the client is dropped or the server goes away;
        // the client then reports `is_closed()`.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        for hook in &self.hooks {
            match hook {
                Hook::Sql(sql) => client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| PgError::AfterConnect(Box::new(e)))?,
                Hook::Fn(f) => f(&client).await.map_err(PgError::AfterConnect)?,
            }
        }
        let statements = StatementCache::new(self.statement_cache_capacity, self.shared.clone());
        Ok(Client::new(client, statements))
    }

    async fn recycle(&self, client: &mut Client, info: &ResourceInfo) -> Result<(), PgError> {
        if client.is_closed() {
            return Err(PgError::Closed);
        }
        match self.recycling_method {
            RecyclingMethod::Fast => Ok(()),
            RecyclingMethod::Verified => {
                if let Some(idle) = info.idle_for() {
                    if idle < self.verify_window {
                        return Ok(());
                    }
                }
                verify(client).await
            }
            RecyclingMethod::Clean => clean(client).await,
        }
    }

    fn is_broken(&self, client: &mut Client) -> bool {
        client.is_closed() || client.transaction_open()
    }
}
