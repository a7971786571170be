//! An SQLite adapter on [`rusqlite`] (cargo feature `sqlite`), with SQLite
//! compiled in (`rusqlite`'s `bundled` feature): no system library, no
//! server.
//!
//! * [`SqliteManager`] (also named [`Manager`]) opens connections to a file
//!   ([`SqliteManager::file`]), to an in-memory database shared by the pool
//!   ([`SqliteManager::memory`]) or to a `sqlite:` URL
//!   ([`SqliteManager::from_url`]), and applies and checks the settings
//!   people set on an SQLite pool: [`JournalMode`] (WAL by default),
//!   [`Synchronous`], the busy timeout, foreign keys, read-only, any other
//!   [`pragma`](SqliteManager::pragma), and
//!   [`after_connect`](SqliteManager::after_connect) hooks.
//! * [`SqliteManager::pool_builder`] returns a [`quickslot::Builder`](crate::Builder)
//!   with typical SQLite pool defaults; [`Pool`] and [`PooledConnection`]
//!   are the resulting types.
//! * A checked-out connection derefs to [`Connection`], which derefs to
//!   [`rusqlite::Connection`]. From async code,
//!   [`Connection::interact`] runs a closure on Tokio's blocking pool. From
//!   threads or `spawn_blocking`, check out with
//!   [`Pool::acquire_blocking`](crate::Pool::acquire_blocking) (or
//!   [`Pool::with_blocking`](crate::Pool::with_blocking)) and use the
//!   connection directly, r2d2-style (see [Blocking](#blocking)).
//! * Checkout checks follow the [`RecyclingMethod`]; a connection returned
//!   inside a transaction is rolled back, never handed on mid-transaction.
//! * [`PoolExt`] adds [`utilisation`](PoolExt::utilisation) and
//!   [`health_check`](PoolExt::health_check) to the pool.
//!
//! # Example
//!
//! ```
//! use quickslot::sqlite::{rusqlite, Manager, PoolExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("app.db");
//! let pool = Manager::file(&path).pool_builder().max_size(4).build()?;
//!
//! let mut conn = pool.acquire().await?;
//! conn.interact(|conn| {
//!     conn.execute_batch("CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL)")?;
//!     let tx = conn.transaction()?;
//!     tx.execute("INSERT INTO events (kind) VALUES (?1)", ["login"])?;
//!     tx.commit()
//! })
//! .await??;
//! drop(conn);
//!
//! let n: i64 = pool
//!     .acquire()
//!     .await?
//!     .interact(|conn| conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0)))
//!     .await??;
//! assert_eq!(n, 1);
//! pool.health_check().await?;
//! println!("{n} events; {:.0} % of the pool in use", 100.0 * pool.utilisation());
//! # Ok(())
//! # }
//! ```
//!
//! # Errors users see
//!
//! Each is an [`SqliteError`] whose [`kind`](SqliteError::kind) says which, whose message
//! names the database, and whose [`source`](std::error::Error::source) is
//! the `rusqlite` error:
//!
//! * a missing directory ([`ErrorKind::MissingDirectory`]), a file that is
//!   not a database ([`ErrorKind::NotADatabase`]), permission denied
//!   ([`ErrorKind::PermissionDenied`]), a missing file with
//!   `create_if_missing(false)` ([`ErrorKind::NotFound`]): `acquire` returns
//!   at once with [`quickslot::Error::Create`](crate::Error::Create);
//! * a setting the database refused, such as WAL on a read-only file
//!   ([`ErrorKind::Setting`], naming the setting, the value asked for and
//!   the value SQLite kept): the same;
//! * a lock held by another connection past the busy timeout while opening
//!   ([`ErrorKind::Busy`]): the same, after the busy timeout, not as an
//!   acquire timeout (keep the busy timeout below the `acquire_timeout`);
//! * SQL errors inside [`interact`](Connection::interact) come back as
//!   [`rusqlite::Error`]s, unchanged; [`SqliteError::query`] wraps one with the
//!   database's path (and names `SQLITE_BUSY` [`ErrorKind::Busy`]).
//!
//! # Blocking
//!
//! SQLite does its I/O on the calling thread. Connections are opened on
//! Tokio's blocking pool; queries run where they are called: on the
//! blocking pool with [`interact`](Connection::interact), or on the calling
//! thread through `Deref`. So code that is synchronous anyway (a worker
//! thread, a CLI, `spawn_blocking`) checks out with
//! [`Pool::acquire_blocking`](crate::Pool::acquire_blocking), which waits in
//! the same fair line as async acquires and needs no runtime of its own:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("jobs.db");
//! let pool = quickslot::sqlite::Manager::file(&path).pool_builder().max_size(4).build()?;
//! pool.with_blocking(|conn| conn.execute_batch("CREATE TABLE jobs (id INTEGER)"))??;
//!
//! let workers: Vec<_> = (0..8)
//!     .map(|worker| {
//!         let pool = pool.clone();
//!         std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!             let mut conn = pool.acquire_blocking()?;
//!             let tx = conn.transaction()?;
//!             tx.execute("INSERT INTO jobs VALUES (?1)", [worker])?;
//!             tx.commit()?;
//!             Ok(())
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap().unwrap();
//! }
//! let n: i64 = pool.acquire_blocking()?.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?;
//! assert_eq!(n, 8);
//! # Ok(())
//! # }
//! ```
//!
//! The pool itself may close a connection (one past `max_lifetime` or
//! `idle_timeout`, or discarded) on an async worker; closing the last
//! connection to a WAL database checkpoints it.

mod connection;
mod error;
mod manager;
mod options;
mod url;

pub use self::connection::{Connection, InteractError, PanicPayload};
pub use self::error::{AfterConnectError, ConfigError, ErrorKind, SqliteError};
pub use self::manager::{SqliteManager, DEFAULT_BUSY_TIMEOUT};
pub use self::options::{JournalMode, RecyclingMethod, Synchronous};

/// The SQLite manager, as `quickslot::sqlite::Manager`: the same type as
/// [`SqliteManager`], the name to import beside
/// [`quickslot::Manager`](crate::Manager).
///
/// ```
/// use quickslot::sqlite;
///
/// let manager = sqlite::Manager::memory();
/// let same: sqlite::SqliteManager = manager;
/// ```
pub type Manager = SqliteManager;

pub use rusqlite;

use std::fmt;
use std::future::Future;

/// A pool of SQLite connections (build one with
/// [`SqliteManager::pool_builder`]).
pub type Pool = crate::Pool<SqliteManager>;

/// A connection checked out of a [`Pool`]; derefs to [`Connection`] and from
/// there to [`rusqlite::Connection`]. Returned to the pool on drop.
pub type PooledConnection = crate::Pooled<SqliteManager>;

/// The error of [`Pool::acquire`](crate::Pool::acquire) for SQLite pools.
pub type PoolError = crate::Error<SqliteError>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Pool {}
}

/// What an SQLite [`Pool`] adds to [`quickslot::Pool`](crate::Pool).
///
/// ```
/// use quickslot::sqlite::{Manager, PoolExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Manager::memory().pool_builder().max_size(4).build()?;
/// let conn = pool.acquire().await?;
/// assert_eq!(pool.utilisation(), 0.25);
/// drop(conn);
/// pool.health_check().await?;
/// # Ok(()) }
/// ```
pub trait PoolExt: sealed::Sealed {
    /// The share of the pool in use: `(size - idle) / max_size` from
    /// [`status`](crate::Pool::status) (creates in flight count as in use).
    /// From 0.0 to 1.0, and above 1.0 for a while after a
    /// [`resize`](crate::Pool::resize) made the pool smaller.
    fn utilisation(&self) -> f64;

    /// Checks out a connection (creating one if none is idle) and runs
    /// `SELECT 1` on it.
    ///
    /// # Errors
    ///
    /// [`HealthCheckError::Acquire`] when no connection could be checked out
    /// (the database cannot be opened, the pool is closed, the acquire timed
    /// out); [`HealthCheckError::Query`] when the query failed.
    ///
    /// # Cancel safety
    ///
    /// As [`Pool::acquire`](crate::Pool::acquire).
    fn health_check(&self) -> impl Future<Output = Result<(), HealthCheckError>> + Send;
}

impl PoolExt for Pool {
    fn utilisation(&self) -> f64 {
        let status = self.status();
        let used = status.size.saturating_sub(status.idle);
        used as f64 / status.max_size.max(1) as f64
    }

    async fn health_check(&self) -> Result<(), HealthCheckError> {
        let mut conn = self.acquire().await.map_err(HealthCheckError::Acquire)?;
        let conn: &mut rusqlite::Connection = &mut conn;
        conn.prepare_cached("SELECT 1")
            .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
            .map(drop)
            .map_err(|e| HealthCheckError::Query(SqliteError::query(conn, e)))
    }
}

/// Why [`PoolExt::health_check`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealthCheckError {
    /// No connection could be checked out.
    Acquire(PoolError),
    /// `SELECT 1` failed.
    Query(SqliteError),
}

impl fmt::Display for HealthCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheckError::Acquire(_) => {
                f.write_str("health check: no connection could be checked out")
            }
            HealthCheckError::Query(_) => f.write_str("health check: `SELECT 1` failed"),
        }
    }
}

impl std::error::Error for HealthCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HealthCheckError::Acquire(e) => Some(e),
            HealthCheckError::Query(e) => Some(e),
        }
    }
}
