//! [`DieselManager`]: opens Diesel connections and checks them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ::diesel::r2d2::R2D2Connection;
use ::diesel::Connection;
use tokio::runtime::{Handle, RuntimeFlavor};

use super::error::{AfterConnectError, ConfigError, ConnectError, DieselError};
use crate::ResourceInfo;

/// `max_size` set by [`DieselManager::pool_builder`]: r2d2's default (and
/// quickslot's).
pub const DEFAULT_MAX_SIZE: usize = 10;

/// `acquire_timeout` set by [`DieselManager::pool_builder`]: r2d2's default
/// `connection_timeout`.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// `idle_timeout` set by [`DieselManager::pool_builder`]: r2d2's default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// `max_lifetime` set by [`DieselManager::pool_builder`]: r2d2's default.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Default window within which [`RecyclingMethod::Verified`] trusts a
/// connection without a round trip.
pub const DEFAULT_VERIFY_WINDOW: Duration = Duration::from_millis(500);

/// What is checked when an idle connection is checked out again.
///
/// In both modes a connection is checked when it is returned, with no I/O,
/// and discarded (never rolled back: that would be I/O in a `Drop`, maybe
/// on an async worker) if
///
/// * it is inside a transaction Diesel tracks (one begun by
///   `Connection::transaction`, `build_transaction` or the
///   `TransactionManager`, and left open: a panic inside the transaction's
///   closure, a leaked manual `begin_transaction`), except the one of
///   [`begin_test_transaction`](DieselManager::begin_test_transaction);
/// * Diesel's transaction manager is in its error state (for PostgreSQL,
///   this is also how a connection the server closed shows: libpq reports
///   its transaction status as unknown after the next query);
/// * the guard is dropped while its thread panics.
///
/// A transaction begun with raw SQL (`batch_execute("BEGIN")`) is invisible
/// to Diesel and so to these checks: begin transactions through Diesel.
///
/// | r2d2 (Diesel's `ConnectionManager`) | quickslot |
/// |---|---|
/// | `test_on_check_out(true)` (r2d2's default) | `Verified` with `verify_window(Duration::ZERO)` |
/// | `test_on_check_out(false)` | `Fast` |
/// | `has_broken` (`R2D2Connection::is_broken`) on return | the same check, on return, in both modes |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecyclingMethod {
    /// No check on checkout: no round trip. A connection that died while
    /// idle (a server restart, a killed backend) is handed out, the first
    /// query on it fails, and (for PostgreSQL) it is discarded when
    /// returned.
    Fast,
    /// `SELECT 1` on checkout (Diesel's `R2D2Connection::ping`), so a
    /// connection that died while idle is replaced before anyone sees it.
    /// Skipped when the connection was returned less than
    /// [`verify_window`](DieselManager::verify_window) ago (this needs the
    /// pool to track idle time, as [`DieselManager::pool_builder`] sets it
    /// up; without it the check always runs). The default: Diesel
    /// connections have no free liveness check, and r2d2 checks every
    /// checkout by default.
    #[default]
    Verified,
}

type HookFn<C> = dyn Fn(&mut C) -> Result<(), AfterConnectError> + Send + Sync;

/// What the blocking task that opens a connection needs: shared with it
/// (and between clones of the manager; copied on write).
struct Settings<C> {
    url: String,
    hooks: Vec<Arc<HookFn<C>>>,
}

impl<C> Clone for Settings<C> {
    fn clone(&self) -> Self {
        Self {
            url: self.url.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

impl<C: Connection> Settings<C> {
    /// Opens a connection and runs the hooks, on the calling thread.
    fn connect(&self) -> Result<C, DieselError> {
        let mut conn = C::establish(&self.url)
            .map_err(|e| DieselError::Connect(ConnectError::new(&self.url, e)))?;
        for hook in &self.hooks {
            hook(&mut conn).map_err(DieselError::AfterConnect)?;
        }
        Ok(conn)
    }
}

/// A [`quickslot::Manager`](crate::Manager) of Diesel connections of type
/// `C`: [`PgConnection`](https://docs.rs/diesel/2/diesel/pg/struct.PgConnection.html),
/// [`SqliteConnection`](https://docs.rs/diesel/2/diesel/sqlite/struct.SqliteConnection.html),
/// [`MysqlConnection`](https://docs.rs/diesel/2/diesel/mysql/struct.MysqlConnection.html)
/// (with the matching Diesel feature on in your own `diesel` dependency),
/// or a `#[derive(MultiConnection)]` type; also exported as
/// [`quickslot::diesel::Manager`](super::Manager).
///
/// Diesel is synchronous: `establish` blocks. So [`create`](crate::Manager::create)
/// runs it (and the `after_connect` hooks) on Tokio's blocking pool when a
/// runtime is there (`tokio::task::spawn_blocking`), and on the calling
/// thread otherwise. The `SELECT 1` of [`RecyclingMethod::Verified`] runs
/// in place: inside `tokio::task::block_in_place` on a multi-thread
/// runtime's worker (the worker's other tasks move to another thread
/// meanwhile), on the calling thread anywhere else. A `block_in_place`
/// costs a thread hand-off, which is why the default
/// [`verify_window`](Self::verify_window) skips the check for connections
/// in steady use (in `examples/diesel_bench.rs`, 64 tasks on `interact`
/// against PostgreSQL ran about twice as many queries per second with it
/// as with a zero window).
///
/// The driver's own timeouts bound a connect or a check that hangs (for
/// PostgreSQL `connect_timeout=...` in the URL, and the server's or the
/// kernel's TCP timeouts): the pool's deadlines end the wait for a connect,
/// which runs on the blocking pool, but cannot interrupt a checkout check,
/// which runs in place.
///
/// # Examples
///
/// ```
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
/// use quickslot::diesel::{DieselManager, RecyclingMethod};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("quickslot-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("manager.db");
/// # let path = path.to_str().unwrap();
/// let pool = DieselManager::<SqliteConnection>::new(path)
///     .recycling_method(RecyclingMethod::Verified)
///     .after_connect_sql("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
///     .pool_builder()
///     .max_size(4)
///     .build()?;
///
/// let conn = pool.acquire().await?;
/// let n = conn
///     .interact(|conn| {
///         diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1 + 1"))
///             .get_result::<i32>(conn)
///     })
///     .await??;
/// assert_eq!(n, 2);
/// # drop(pool); std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct DieselManager<C> {
    settings: Arc<Settings<C>>,
    recycling_method: RecyclingMethod,
    verify_window: Duration,
    // `fn() -> C`: the manager holds no `C`, so it is `Send + Sync` for
    // every connection type (a `SqliteConnection` is not `Sync`).
    _connection: PhantomData<fn() -> C>,
}

/// A clone shares the settings (and hooks) of the original; setting
/// anything on either copies them first.
impl<C> Clone for DieselManager<C> {
    fn clone(&self) -> Self {
        Self {
            settings: Arc::clone(&self.settings),
            recycling_method: self.recycling_method,
            verify_window: self.verify_window,
            _connection: PhantomData,
        }
    }
}

impl<C> fmt::Debug for DieselManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DieselManager")
            .field("connection", &std::any::type_name::<C>())
            .field("url", &super::error::redact(&self.settings.url))
            .field("recycling_method", &self.recycling_method)
            .field("verify_window", &self.verify_window)
            .field("after_connect_hooks", &self.settings.hooks.len())
            .finish()
    }
}

impl<C> DieselManager<C> {
    /// A manager for the database at `database_url`, in the form
    /// `C::establish` takes (a `postgres://` URL or `key=value` string for
    /// PostgreSQL, a path, `:memory:` or `file:` URI for SQLite, a
    /// `mysql://` URL for MySQL). Nothing is opened until the pool needs a
    /// connection.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            settings: Arc::new(Settings {
                url: database_url.into(),
                hooks: Vec::new(),
            }),
            recycling_method: RecyclingMethod::default(),
            verify_window: DEFAULT_VERIFY_WINDOW,
            _connection: PhantomData,
        }
    }

    /// A manager for the URL in the `DATABASE_URL` environment variable
    /// (the variable Diesel's CLI reads).
    ///
    /// ```
    /// use diesel::PgConnection;
    /// use quickslot::diesel::{ConfigError, DieselManager};
    ///
    /// match DieselManager::<PgConnection>::from_env() {
    ///     Ok(manager) => println!("{manager:?}"),
    ///     Err(ConfigError::Missing { var }) => println!("set {var} first"),
    ///     Err(e) => println!("{e}"),
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the variable is unset, empty or not Unicode.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_var("DATABASE_URL")
    }

    /// A manager for the URL in the environment variable `var` (such as
    /// `TEST_DATABASE_URL`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the variable is unset, empty or not Unicode.
    pub fn from_env_var(var: &str) -> Result<Self, ConfigError> {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => Ok(Self::new(url)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(ConfigError::Missing {
                var: var.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode {
                var: var.to_owned(),
            }),
        }
    }

    /// Sets how idle connections are checked on checkout (default
    /// [`RecyclingMethod::Verified`]).
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
        self
    }

    /// Sets the window within which [`RecyclingMethod::Verified`] skips its
    /// `SELECT 1` for a connection returned that recently (default
    /// [`DEFAULT_VERIFY_WINDOW`], 500 ms; zero checks every checkout, as
    /// r2d2's `test_on_check_out(true)` does).
    pub fn verify_window(mut self, window: Duration) -> Self {
        self.verify_window = window;
        self
    }

    /// Adds a closure to run on every new connection, before the pool hands
    /// it out: session settings, SQLite pragmas, a check of the server's
    /// version. Hooks run in the order they were added, on the thread that
    /// opened the connection (Tokio's blocking pool inside a runtime).
    ///
    /// ```
    /// use diesel::connection::SimpleConnection;
    /// use diesel::SqliteConnection;
    /// use quickslot::diesel::DieselManager;
    ///
    /// let manager = DieselManager::<SqliteConnection>::new(":memory:").after_connect(|conn| {
    ///     conn.batch_execute("PRAGMA foreign_keys = ON")?;
    ///     Ok(())
    /// });
    /// # drop(manager);
    /// ```
    ///
    /// # Errors
    ///
    /// A hook returning an error makes the create fail with
    /// [`DieselError::AfterConnect`]; the connection is closed.
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut C) -> Result<(), AfterConnectError> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).hooks.push(Arc::new(hook));
        self
    }

    /// Adds SQL (one or more `;`-separated statements, run with
    /// `batch_execute`) to run on every new connection, such as `SET
    /// search_path = app` or `PRAGMA busy_timeout = 5000`. A failure makes
    /// the create fail with [`DieselError::AfterConnect`] holding the
    /// [`diesel::result::Error`](::diesel::result::Error).
    ///
    /// On SQLite, set `busy_timeout` first: a statement before it that
    /// needs a lock (`PRAGMA journal_mode = WAL` does, even on a database
    /// already in WAL mode) fails at once with "database is locked" while
    /// another connection writes, instead of waiting.
    pub fn after_connect_sql(self, sql: impl Into<String>) -> Self
    where
        C: Connection,
    {
        let sql = sql.into();
        self.after_connect(move |conn| Ok(conn.batch_execute(&sql)?))
    }

    /// Makes every new connection begin a test transaction (Diesel's
    /// `Connection::begin_test_transaction`): whatever it writes is rolled
    /// back when it closes, never committed. For test pools, r2d2's
    /// `CustomizeConnection::on_acquire` idiom.
    ///
    /// Each connection has its own test transaction, so build test pools
    /// with `max_size(1)` when every checkout must see the same data, and
    /// without `idle_timeout` and `max_lifetime`, which would close the
    /// connection and its data. The checks on return do not count the test
    /// transaction as one left open.
    ///
    /// ```
    /// use diesel::SqliteConnection;
    /// use quickslot::diesel::DieselManager;
    ///
    /// let test_pool = DieselManager::<SqliteConnection>::new("app.db")
    ///     .begin_test_transaction()
    ///     .pool_builder()
    ///     .max_size(1)
    ///     .idle_timeout(None)
    ///     .max_lifetime(None)
    ///     .build()
    ///     .unwrap();
    /// # drop(test_pool);
    /// ```
    pub fn begin_test_transaction(self) -> Self
    where
        C: Connection,
    {
        self.after_connect(|conn| Ok(conn.begin_test_transaction()?))
    }

    /// The database URL, as given (with its password, if any).
    pub fn database_url(&self) -> &str {
        &self.settings.url
    }

    /// The recycling method, as set with
    /// [`recycling_method`](Self::recycling_method).
    pub fn configured_recycling_method(&self) -> RecyclingMethod {
        self.recycling_method
    }

    /// The window of [`RecyclingMethod::Verified`], as set with
    /// [`verify_window`](Self::verify_window).
    pub fn configured_verify_window(&self) -> Duration {
        self.verify_window
    }

    /// A pool builder for this manager with r2d2's defaults: `max_size`
    /// [`DEFAULT_MAX_SIZE`] (10), `acquire_timeout`
    /// [`DEFAULT_CONNECTION_TIMEOUT`] (30 s, r2d2's `connection_timeout`),
    /// `idle_timeout` [`DEFAULT_IDLE_TIMEOUT`] (10 min) and `max_lifetime`
    /// [`DEFAULT_MAX_LIFETIME`] (30 min), with idle-time tracking on (so
    /// [`RecyclingMethod::Verified`] can skip recently used connections).
    /// Each can be changed on the returned builder.
    ///
    /// Unlike r2d2's `build`, quickslot's opens no connection (r2d2 opens
    /// `min_idle`, by default `max_size`, and fails if it cannot): add
    /// `.min_idle(n)` and call [`Pool::warm_up`](crate::Pool::warm_up) for
    /// that.
    ///
    /// ```
    /// use diesel::PgConnection;
    /// use quickslot::diesel::DieselManager;
    ///
    /// let pool = DieselManager::<PgConnection>::new("postgres://app@localhost/app")
    ///     .pool_builder()
    ///     .max_size(32)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.status().max_size, 32);
    /// ```
    pub fn pool_builder(self) -> crate::Builder<Self>
    where
        Self: crate::Manager,
    {
        crate::Pool::builder(self)
            .max_size(DEFAULT_MAX_SIZE)
            .acquire_timeout(DEFAULT_CONNECTION_TIMEOUT)
            .default_idle_timeout(DEFAULT_IDLE_TIMEOUT)
            .default_max_lifetime(DEFAULT_MAX_LIFETIME)
            .track_idle_time(true)
    }
}

/// Runs `f`, which blocks, where it does the least harm: inside
/// `block_in_place` on a multi-thread runtime (a worker hands its other
/// tasks on first; on a blocking-pool thread it just runs `f`), on the
/// calling thread otherwise (no runtime, a current-thread runtime).
fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl<C> crate::Manager for DieselManager<C>
where
    C: R2D2Connection + 'static,
{
    type Resource = C;
    type Error = DieselError;

    /// Opens a connection with `C::establish` and runs the `after_connect`
    /// hooks: on Tokio's blocking pool inside a runtime, else on the calling
    /// thread.
    ///
    /// # Panics
    ///
    /// When `establish` or a hook panics, with its panic.
    async fn create(&self) -> Result<C, DieselError> {
        let Ok(handle) = Handle::try_current() else {
            return self.settings.connect();
        };
        let settings = Arc::clone(&self.settings);
        match handle.spawn_blocking(move || settings.connect()).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(DieselError::Shutdown),
        }
    }

    async fn recycle(&self, conn: &mut C, info: &ResourceInfo) -> Result<(), DieselError> {
        match self.recycling_method {
            RecyclingMethod::Fast => Ok(()),
            RecyclingMethod::Verified => {
                if info
                    .idle_for()
                    .is_some_and(|idle| idle < self.verify_window)
                {
                    return Ok(());
                }
                run_blocking(|| conn.ping()).map_err(DieselError::Ping)
            }
        }
    }

    fn is_broken(&self, conn: &mut C) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}
