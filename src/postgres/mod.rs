//! A [`tokio_postgres`] adapter (cargo feature `postgres`).
//!
//! * [`PgManager`] creates connections from a [`tokio_postgres::Config`], a URL
//!   or `key=value` string ([`PgManager::from_url`], [`parse_config`]) or the
//!   `PG*` environment variables ([`PgManager::from_env`],
//!   [`config_from_env_map`]). Several hosts in one configuration are tried in
//!   order, so a dead first host fails over to the next.
//! * [`PgManager::pool_builder`] returns a [`quickslot::Builder`](crate::Builder)
//!   with the settings this adapter wants; [`Pool`] and [`PooledClient`] are
//!   the resulting types.
//! * A checked-out [`PooledClient`] derefs to [`Client`], which derefs to
//!   [`tokio_postgres::Client`]: all `tokio_postgres` methods work, and
//!   [`Client::transaction`] / [`Client::build_transaction`] return tracked
//!   [`Transaction`]s.
//! * Checkout checks follow the [`RecyclingMethod`]: `Fast` (default),
//!   `Verified` or `Clean`. Its documentation has a table of what happens to a
//!   transaction left open in each mode.
//! * [`Client::prepare_cached`] and the `*_cached` query methods use a bounded
//!   per-connection LRU of prepared statements, retrying once when a schema
//!   change made a cached plan stale; [`PgManager::clear_statement_caches`]
//!   empties every connection's cache.
//!
//! # Example
//!
//! ```no_run
//! use quickslot::postgres::PgManager;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PgManager::from_env()?.pool_builder().max_size(16).build()?;
//!
//! let mut client = pool.acquire().await?;
//! let tx = client.transaction().await?;
//! tx.execute_cached("INSERT INTO events (kind) VALUES ($1)", &[&"login"]).await?;
//! tx.commit().await?;
//!
//! let n: i64 = client
//!     .query_one_cached("SELECT count(*) FROM events", &[])
//!     .await?
//!     .get(0);
//! println!("{n} events; pool: {:?}", pool.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Errors users see
//!
//! * Wrong password, unknown user or database: `acquire` returns at once with
//!   [`quickslot::Error::Create`](crate::Error::Create)`(`[`PgError::Connect`]`)`,
//!   whose message includes the server's (`FATAL: password authentication
//!   failed for user "..."`).
//! * Server down or wrong port: the same variant at once, with the operating
//!   system's message (`Connection refused`); a host that does not answer at
//!   all is bounded by `connect_timeout` (`PGCONNECT_TIMEOUT`) per host and by
//!   the pool's create timeout.
//! * A connection the server terminated (`pg_terminate_backend`, restart):
//!   queries on it fail with `tokio_postgres`'s "connection closed" error;
//!   it is discarded when returned (or, if idle, on the next checkout), and
//!   the pool creates a fresh one.
//! * SQL errors (constraint violations, `statement_timeout`, syntax) come back
//!   unchanged as [`tokio_postgres::Error`]; the connection stays usable.
//!
//! # TLS
//!
//! The manager is generic over any [`tokio_postgres::tls::MakeTlsConnect`].
//! With rustls, add `tokio-postgres-rustls` and `rustls` to your own
//! dependencies and pass the connector:
//!
//! ```ignore
//! use quickslot::postgres::{parse_config, PgManager};
//!
//! let mut roots = rustls::RootCertStore::empty();
//! roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
//! let tls_config = rustls::ClientConfig::builder()
//!     .with_root_certificates(roots)
//!     .with_no_client_auth();
//! let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
//!
//! // `sslmode=require` makes a connection without TLS an error; rustls
//! // verifies the certificate and host name itself.
//! let config = parse_config("postgres://app:secret@db.example.com/app?sslmode=require")?;
//! let pool = PgManager::new(config, tls).pool_builder().build()?;
//! ```
//!
//! `native-tls` works the same way through `postgres-native-tls`.
//!
//! # Notifications
//!
//! The connection task drives the connection and drops asynchronous
//! messages, so `LISTEN`/`NOTIFY` needs a dedicated, unpooled connection.

mod client;
mod config;
mod manager;
mod statement_cache;

pub use self::client::{Client, Transaction, TransactionBuilder};
pub use self::config::{config_from_env, config_from_env_map, parse_config, ConfigError, ENV_VARS};
pub use self::manager::{
    AfterConnectError, AfterConnectFuture, ConnectError, PgError, PgManager, RecyclingMethod,
    DEFAULT_RECYCLE_TIMEOUT, DEFAULT_STATEMENT_CACHE_CAPACITY, DEFAULT_VERIFY_WINDOW,
};
pub use self::statement_cache::StatementCacheStats;

pub use tokio_postgres;
pub use tokio_postgres::{Config, NoTls};

/// A pool of PostgreSQL connections (build one with [`PgManager::pool_builder`]).
pub type Pool<T = NoTls> = crate::Pool<PgManager<T>>;

/// A connection checked out of a [`Pool`]; derefs to [`Client`] and from
/// there to [`tokio_postgres::Client`]. Returned to the pool on drop.
pub type PooledClient<T = NoTls> = crate::Pooled<PgManager<T>>;

/// The error of [`Pool::acquire`](crate::Pool::acquire) for PostgreSQL pools.
pub type PoolError = crate::Error<PgError>;

// The old names, deprecated and kept for one release: each clashed with a
// name of the crate root (`quickslot::Manager`, `quickslot::Error`,
// `quickslot::HookError`, `quickslot::HookFuture`) when both were imported.

/// Renamed to [`PgManager`].
#[deprecated(note = "renamed to `PgManager` (it clashed with the `quickslot::Manager` trait)")]
pub type Manager<T = NoTls> = PgManager<T>;

/// Renamed to [`PgError`].
#[deprecated(note = "renamed to `PgError` (it clashed with `quickslot::Error`)")]
pub type Error = PgError;

/// Renamed to [`AfterConnectError`].
#[deprecated(note = "renamed to `AfterConnectError` (it clashed with `quickslot::HookError`)")]
pub type HookError = AfterConnectError;

/// Renamed to [`AfterConnectFuture`].
#[deprecated(note = "renamed to `AfterConnectFuture` (it clashed with `quickslot::HookFuture`)")]
pub type HookFuture<'a> = AfterConnectFuture<'a>;
