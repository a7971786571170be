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
//! * A query dropped before it completed is cancelled on the server, and
//!   its connection reused only once clean ([cancel on drop](#cancel-on-drop)).
//! * [`Listener`]: `LISTEN`/`NOTIFY` with reconnects that report their gaps.
//! * Rotating credentials and [`Pool::soft_evict`](crate::Pool::soft_evict)
//!   ([below](#credentials-that-change)).
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
//! * A failing [credential provider](PgManager::password_provider): `acquire`
//!   returns at once with `Error::Create(`[`PgError::Credentials`]`)`, the
//!   provider's error as its `source()`.
//! * Checkout checks that fail ([`PgError::RecycleTimeout`],
//!   [`PgError::Abandoned`] after a dropped query, [`PgError::Evicted`])
//!   never reach the caller: the connection is discarded and another used
//!   or made; they show as the last error of an acquire that times out.
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
//! # Cancel on drop
//!
//! A query future dropped before it completed (a timeout, a `select!`, an
//! aborted request) would leave its statement running on the server, and
//! the next user of the connection would wait behind it. Here the
//! statement is cancelled instead, and the connection is handed to no one
//! until the server is done with it: the next user waits about one round
//! trip plus the server's cancel latency, not the dropped query's runtime.
//! [`Client`](Client#cancel-on-drop) lists the methods that do this.
//!
//! ```no_run
//! use std::time::Duration;
//! # async fn run(pool: quickslot::postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
//! let client = pool.acquire().await?;
//! let slow = client.query("SELECT pg_sleep(5)", &[]);
//! assert!(tokio::time::timeout(Duration::from_millis(100), slow).await.is_err());
//! drop(client);
//! // The pg_sleep is cancelled; this does not wait 4.9 s for it.
//! pool.acquire().await?.query_one("SELECT 1", &[]).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A cancel request is a separate short connection to the server. The
//! adapter waits for the server to close it, which the server does only
//! after it has signalled the backend, so the signal can never land on a
//! later statement (`tokio_postgres`'s `cancel_query` returns before that,
//! and a statement sent right after it is often the one cancelled). Where
//! that confirmation cannot be had (a TLS connector with a server that
//! negotiates no TLS, or several configured hosts that the connection's
//! host cannot be told apart from) the connection is discarded once the
//! server is done with the dropped statement.
//!
//! # Credentials that change
//!
//! [`PgManager::password_provider`] (or [`PgManager::config_provider`]) is
//! called for every new connection, for tokens that expire;
//! [`Pool::soft_evict`](crate::Pool::soft_evict) replaces every connection
//! (idle ones at once, checked-out ones when they come back) while traffic
//! keeps flowing, after a rotation, a failover or a migration.
//!
//! # Notifications
//!
//! Pooled connections drop asynchronous messages. For `LISTEN`/`NOTIFY`,
//! [`PgManager::listener`] (or [`Pool::listener`](crate::Pool::listener))
//! opens a [`Listener`]: a dedicated connection that subscribes to channels,
//! yields notifications as a `Stream`, reconnects with backoff, subscribes
//! again and reports each gap in which notifications may have been missed.
//!
//! # Code that takes a client or a transaction
//!
//! [`GenericClient`] is implemented by [`PooledClient`], [`Client`] and
//! [`Transaction`].
//!
//! # Log events
//!
//! Under the `tracing` target `quickslot::postgres`: a `warn` event when a
//! connection fails (with the pool's name, the server's `host:port` and the
//! error), a `debug` event when one closes normally or is discarded after a
//! dropped query, and the listener's disconnects and reconnects.

mod cancel;
mod client;
mod config;
mod generic;
mod listener;
mod manager;
mod pool;
mod statement_cache;

pub use self::client::{Client, Transaction, TransactionBuilder};
pub use self::config::{config_from_env, config_from_env_map, parse_config, ConfigError, ENV_VARS};
pub use self::generic::GenericClient;
pub use self::listener::{Gap, Listener, ListenerError, ListenerEvent, ListenerOptions};
pub use self::manager::{
    AbandonedQuery, AfterConnectError, AfterConnectFuture, ConnectError, CredentialError, PgError,
    PgManager, RecyclingMethod, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME,
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
