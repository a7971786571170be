//! A [Diesel](https://diesel.rs) adapter (cargo feature `diesel`): pools of
//! Diesel's synchronous connections, for async code and threads alike.
//!
//! * [`DieselManager<C>`] (also named [`Manager<C>`]) opens connections of
//!   any Diesel connection type `C` from a database URL
//!   ([`DieselManager::new`], [`DieselManager::from_env`] reading
//!   `DATABASE_URL`), runs [`after_connect`](DieselManager::after_connect)
//!   hooks (session settings, SQLite pragmas,
//!   [test transactions](DieselManager::begin_test_transaction)) and checks
//!   connections on return and on checkout ([`RecyclingMethod`]).
//! * [`DieselManager::pool_builder`] starts a pool with r2d2's defaults;
//!   [`Pool<C>`] and [`PooledConnection<C>`] are the resulting types. A
//!   checked-out connection derefs to `C`.
//! * From async code, [`interact`](crate::Pooled::interact) runs a closure on
//!   the connection on Tokio's blocking pool. From threads and
//!   `spawn_blocking`, [`acquire_blocking`](crate::Pool::acquire_blocking)
//!   and [`with_blocking`](crate::Pool::with_blocking) work r2d2-style. Both
//!   wait in the same fair line.
//!
//! The feature enables no Diesel backend: turn on `postgres`, `sqlite` or
//! `mysql` in your own `diesel` dependency. It turns on Diesel's `r2d2`
//! feature, for the [`R2D2Connection`](::diesel::r2d2::R2D2Connection)
//! trait through which Diesel offers its ping and broken checks to pools
//! (the `r2d2` crate is compiled in, not used), and needs the Rust version
//! your Diesel needs (1.86 for Diesel 2.3).
//!
//! Import the items, not the module: `use quickslot::diesel;` would hide
//! the `diesel` crate.
//!
//! # Example
//!
//! ```
//! use diesel::prelude::*;
//! use diesel::SqliteConnection;
//! use quickslot::diesel::DieselManager;
//!
//! diesel::table! {
//!     sessions (id) {
//!         id -> Integer,
//!         user_name -> Text,
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("quickslot-doc-mod-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("app.db");
//! # let database_url = path.to_str().unwrap();
//! let pool = DieselManager::<SqliteConnection>::new(database_url)
//!     .after_connect_sql("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL;")
//!     .pool_builder()
//!     .max_size(4)
//!     .build()?;
//!
//! // From async code: the query runs on Tokio's blocking pool.
//! pool.acquire()
//!     .await?
//!     .interact(|conn| {
//!         diesel::sql_query(
//!             "CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL)",
//!         )
//!         .execute(conn)?;
//!         diesel::insert_into(sessions::table)
//!             .values(sessions::user_name.eq("ada"))
//!             .execute(conn)
//!     })
//!     .await??;
//!
//! // From a blocking thread, r2d2-style: the same pool, the same line.
//! let blocking_pool = pool.clone();
//! let names = tokio::task::spawn_blocking(move || -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
//!     let mut conn = blocking_pool.acquire_blocking()?;
//!     Ok(sessions::table.select(sessions::user_name).load(&mut *conn)?)
//! })
//! .await?
//! .map_err(|e| e.to_string())?;
//! assert_eq!(names, ["ada"]);
//! # drop(pool); std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! A [`Pooled`](crate::Pooled) guard derefs to the connection, so Diesel's
//! query methods take `&mut *conn` (`&mut conn` is the guard, which is not a
//! Diesel connection).
//!
//! # From r2d2
//!
//! | r2d2 + `diesel::r2d2` | quickslot |
//! |---|---|
//! | `ConnectionManager::<PgConnection>::new(url)` | [`DieselManager::<PgConnection>::new(url)`](DieselManager::new) |
//! | `Pool::builder().max_size(n).build(manager)?` | `manager.pool_builder().max_size(n).build()?` (opens nothing; see below) |
//! | `Pool::builder().build_unchecked(manager)` | `manager.pool_builder().build()?` |
//! | `.min_idle(Some(n))` (default: `max_size`, opened by `build`) | `.min_idle(n)` (default 0), then [`pool.warm_up().await?`](crate::Pool::warm_up) to open them now |
//! | `.connection_timeout(d)` (30 s) | `.acquire_timeout(d)` (30 s): waiting, connecting and checking together |
//! | `.idle_timeout(Some(d))` (10 min) | `.idle_timeout(d)` (10 min) |
//! | `.max_lifetime(Some(d))` (30 min) | `.max_lifetime(d)` (30 min) |
//! | `.test_on_check_out(true)` (default) | [`RecyclingMethod::Verified`] (default), `.verify_window(Duration::ZERO)` for a ping on every checkout |
//! | `.test_on_check_out(false)` | `.recycling_method(RecyclingMethod::Fast)` |
//! | `.connection_customizer(Box::new(c))` with `on_acquire` | [`.after_connect(\|conn\| ..)`](DieselManager::after_connect), [`.after_connect_sql(sql)`](DieselManager::after_connect_sql) |
//! | `on_acquire` calling `conn.begin_test_transaction()` | [`.begin_test_transaction()`](DieselManager::begin_test_transaction) |
//! | `pool.get()?` | [`pool.acquire_blocking()?`](crate::Pool::acquire_blocking) (threads, `spawn_blocking`); [`pool.acquire().await?`](crate::Pool::acquire) (async) |
//! | `pool.get_timeout(d)?` | [`pool.acquire_blocking_timeout(d)?`](crate::Pool::acquire_blocking_timeout) |
//! | `pool.try_get()` | [`pool.try_acquire()`](crate::Pool::try_acquire) |
//! | `PooledConnection<ConnectionManager<C>>` | [`PooledConnection<C>`] (`quickslot::Pooled<DieselManager<C>>`) |
//! | `&mut pooled` as a connection | `&mut *pooled` |
//! | `spawn_blocking(move \|\| { let mut c = pool.get()?; .. })` | [`pool.acquire().await?.interact(\|c\| ..).await?`](crate::Pooled::interact), or the same `spawn_blocking` with `acquire_blocking` |
//! | `pool.state()` | [`pool.status()`](crate::Pool::status) |
//! | `r2d2::Error` (a timeout, with the last connect error) | [`quickslot::Error<DieselError>`](PoolError): a failed connect at once ([`Error::Create`](crate::Error::Create)), a timeout naming its phase |
//! | `PooledConnection::leak` / dropping with `has_broken` | [`Pooled::detach`](crate::Pooled::detach) / [`Pooled::discard`](crate::Pooled::discard) |
//!
//! # Errors users see
//!
//! * Wrong password, unknown database, server down, a file SQLite cannot
//!   open: `acquire` returns at once with
//!   [`quickslot::Error::Create`](crate::Error::Create)`(`[`DieselError::Connect`]`)`,
//!   whose message names the database (its password hidden) and whose
//!   [`source`](std::error::Error::source) is Diesel's
//!   [`ConnectionError`](::diesel::ConnectionError) with the driver's
//!   message (`FATAL: password authentication failed for user ...`).
//! * A connection the server closed (a restart, `pg_terminate_backend`):
//!   with [`RecyclingMethod::Verified`] the checkout check finds it and the
//!   pool opens another; a query that meets it fails with Diesel's error,
//!   and the connection is discarded when returned.
//! * SQL errors come back from Diesel unchanged, inside `interact`'s
//!   result; the connection stays usable.
//!
//! # Blocking
//!
//! Diesel blocks the calling thread for every query. Connections are opened
//! on Tokio's blocking pool when a runtime is there; queries run where they
//! are called: on the blocking pool with `interact`, on the calling thread
//! through `Deref`. Using `Deref` on an async worker blocks that worker for
//! the query's duration: keep it to code that is already blocking.

mod error;
mod interact;
mod manager;

pub use self::error::{AfterConnectError, ConfigError, ConnectError, DieselError, InteractError};
pub use self::manager::{
    DieselManager, RecyclingMethod, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE, DEFAULT_VERIFY_WINDOW,
};

/// The Diesel manager, as `quickslot::diesel::Manager<C>`: the same type as
/// [`DieselManager<C>`], under the name to use with a module prefix
/// (import [`DieselManager`] beside the [`quickslot::Manager`](crate::Manager)
/// trait).
///
/// ```
/// use diesel::SqliteConnection;
/// use quickslot::diesel as qdiesel;
///
/// let manager = qdiesel::Manager::<SqliteConnection>::new(":memory:");
/// let same: qdiesel::DieselManager<SqliteConnection> = manager;
/// # drop(same);
/// ```
pub type Manager<C> = DieselManager<C>;

/// A pool of Diesel connections of type `C` (build one with
/// [`DieselManager::pool_builder`]).
pub type Pool<C> = crate::Pool<DieselManager<C>>;

/// A connection checked out of a [`Pool`]; derefs to `C`. Returned to the
/// pool on drop.
pub type PooledConnection<C> = crate::Pooled<DieselManager<C>>;

/// The error of [`Pool::acquire`](crate::Pool::acquire) for Diesel pools.
pub type PoolError = crate::Error<DieselError>;
