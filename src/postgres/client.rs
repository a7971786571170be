//! The pooled connection: [`Client`] and its tracked [`Transaction`].

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{
    GenericClient, IsolationLevel, Row, SimpleQueryMessage, Statement, ToStatement,
};

use super::cancel::{guarded, Hygiene};
use super::statement_cache::{StatementCache, StatementCacheStats};

/// One pooled PostgreSQL connection.
///
/// This is the resource type of [`PgManager`](super::PgManager): a checked-out
/// [`PooledClient`](super::PooledClient) derefs to it, and it derefs (mutably
/// too) to [`tokio_postgres::Client`], so every `tokio_postgres` method works
/// on a pooled client directly.
///
/// On top of that it adds:
///
/// * a per-connection prepared-statement cache:
///   [`prepare_cached`](Self::prepare_cached) and the `*_cached` query methods,
///   which re-prepare and retry once when the server reports a cached plan as
///   stale after a schema change;
/// * tracked transactions: [`transaction`](Self::transaction) and
///   [`build_transaction`](Self::build_transaction) shadow the
///   `tokio_postgres` methods of the same name. A [`Transaction`] that is
///   dropped without commit is rolled back before the connection is used again
///   (`tokio_postgres` queues the `ROLLBACK` on drop), and a connection whose
///   transaction was leaked (for example with [`std::mem::forget`]) is reported
///   broken and discarded when it returns to the pool, whatever the
///   [`RecyclingMethod`](super::RecyclingMethod);
/// * cancel on drop (below).
///
/// # Cancel on drop
///
/// When the future of one of these methods is dropped before it completed
/// (a `tokio::time::timeout` ran out, a `select!` took another branch, the
/// request was aborted), the statement is cancelled on the server and the
/// connection is not used again until the server has finished with it:
///
/// * [`query`](Self::query), [`query_one`](Self::query_one),
///   [`query_opt`](Self::query_opt), [`query_typed`](Self::query_typed),
///   [`execute`](Self::execute), [`simple_query`](Self::simple_query),
///   [`batch_execute`](Self::batch_execute);
/// * [`query_cached`](Self::query_cached),
///   [`query_one_cached`](Self::query_one_cached),
///   [`query_opt_cached`](Self::query_opt_cached),
///   [`execute_cached`](Self::execute_cached);
/// * the same methods of [`Transaction`].
///
/// In the background, a cancel request is sent for the connection's
/// backend, and an empty query queued behind the dropped statement shows
/// when the server is done with it. Meanwhile the connection may go back to
/// the pool, but the next checkout waits for that (about one round trip
/// plus the server's cancel latency, a few milliseconds on a local
/// network), and so do the methods above if the holder goes on using it.
/// A connection whose drain does not finish within the manager's
/// [`recycle_timeout`](super::PgManager::recycle_timeout) is discarded.
/// [`PgManager::cancel_on_drop`](super::PgManager::cancel_on_drop)`(false)`
/// keeps the wait and drops the cancel: the statement then runs to its end.
/// The cancel request uses the manager's TLS connector, so TLS and
/// [`NoTls`](super::NoTls) both work; the details are in the
/// [module documentation](super#cancel-on-drop).
///
/// Methods reached through `Deref` on [`tokio_postgres::Client`] (`query_raw`,
/// `copy_in`, `copy_out`, `query_scalar`, ...) are not covered: dropping
/// them leaves the statement running, and the next user of the connection
/// waits behind it, as with `tokio_postgres` alone.
pub struct Client {
    client: tokio_postgres::Client,
    statements: StatementCache,
    txn_open: bool,
    hygiene: Arc<Hygiene>,
    generation: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.client.is_closed())
            .field("transaction_open", &self.txn_open)
            .field("generation", &self.generation)
            .field("statement_cache", &self.statements.stats())
            .finish_non_exhaustive()
    }
}

impl Deref for Client {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        &mut self.client
    }
}

impl AsRef<tokio_postgres::Client> for Client {
    fn as_ref(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl Client {
    pub(crate) fn new(
        client: tokio_postgres::Client,
        statements: StatementCache,
        hygiene: Arc<Hygiene>,
        generation: u64,
    ) -> Self {
        Client {
            client,
            statements,
            txn_open: false,
            hygiene,
            generation,
        }
    }

    /// Whether a [`Transaction`] of this client is alive (or was leaked).
    pub(crate) fn transaction_open(&self) -> bool {
        self.txn_open
    }

    pub(crate) fn hygiene(&self) -> &Arc<Hygiene> {
        &self.hygiene
    }

    /// The manager's generation this connection was created in (see
    /// [`PgManager::soft_evict`](super::PgManager::soft_evict)).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a query dropped before it completed is still being cleared
    /// from this connection (see [Cancel on drop](Self#cancel-on-drop)).
    pub fn is_draining(&self) -> bool {
        self.hygiene.is_dirty()
    }

    /// The underlying `tokio_postgres` client (the same as `&*client`).
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Returns a prepared statement for `query`, from this connection's cache
    /// when possible, preparing and caching it otherwise (least recently used
    /// entries are evicted beyond the configured capacity; capacity 0 disables
    /// caching).
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::Client::prepare`] on a cache miss.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped before the server answers, nothing is cached.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        prepare_cached(&self.client, &self.statements, query, &[]).await
    }

    /// Like [`prepare_cached`](Self::prepare_cached), with explicit parameter
    /// types (cached separately for each type list).
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::Client::prepare_typed`] on a cache miss.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped before the server answers, nothing is cached.
    pub async fn prepare_typed_cached(
        &self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        prepare_cached(&self.client, &self.statements, query, types).await
    }

    /// Runs `query` through the statement cache and returns its rows.
    ///
    /// When the server rejects the cached statement with SQLSTATE `0A000`
    /// ("cached plan must not change result type", after a schema change),
    /// the entry is dropped, the statement prepared again and the query run
    /// once more.
    ///
    /// # Errors
    ///
    /// Errors from preparing or running the query, unchanged (a constraint
    /// violation or a `statement_timeout` cancellation comes back as the
    /// server's error; the connection stays usable).
    ///
    /// # Cancel safety
    ///
    /// Cancelled on the server when dropped before it completed (see
    /// [Cancel on drop](Self#cancel-on-drop)).
    pub async fn query_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let run = run_cached(&self.client, &self.statements, query, Query(params), true);
        guarded(&self.hygiene, &self.client, run).await
    }

    /// Like [`query_cached`](Self::query_cached), expecting exactly one row.
    ///
    /// # Errors
    ///
    /// As [`query_cached`](Self::query_cached), plus the error of
    /// [`tokio_postgres::Client::query_one`] when the row count is not one.
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn query_one_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let run = run_cached(
            &self.client,
            &self.statements,
            query,
            QueryOne(params),
            true,
        );
        guarded(&self.hygiene, &self.client, run).await
    }

    /// Like [`query_cached`](Self::query_cached), expecting zero or one row.
    ///
    /// # Errors
    ///
    /// As [`query_cached`](Self::query_cached), plus the error of
    /// [`tokio_postgres::Client::query_opt`] when more than one row comes back.
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn query_opt_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let run = run_cached(
            &self.client,
            &self.statements,
            query,
            QueryOpt(params),
            true,
        );
        guarded(&self.hygiene, &self.client, run).await
    }

    /// Runs a statement through the statement cache and returns the number of
    /// rows it affected, retrying once on a stale cached plan like
    /// [`query_cached`](Self::query_cached).
    ///
    /// # Errors
    ///
    /// As [`query_cached`](Self::query_cached).
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn execute_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let run = run_cached(&self.client, &self.statements, query, Execute(params), true);
        guarded(&self.hygiene, &self.client, run).await
    }

    /// Hit, miss, eviction and invalidation counts of this connection's
    /// statement cache, and how many statements it holds.
    pub fn statement_cache_stats(&self) -> StatementCacheStats {
        self.statements.stats()
    }

    /// The most statements this connection caches.
    pub fn statement_cache_capacity(&self) -> usize {
        self.statements.capacity()
    }

    /// Empties this connection's statement cache (see
    /// [`PgManager::clear_statement_caches`](super::PgManager::clear_statement_caches)
    /// for every connection of a pool).
    pub fn clear_statement_cache(&self) {
        self.statements.clear();
    }

    /// Begins a transaction (tracked; see the type's documentation).
    ///
    /// The transaction rolls back unless [`Transaction::commit`] is called.
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::Client::transaction`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped after `START TRANSACTION` was
    /// sent, `tokio_postgres` queues a `ROLLBACK` before any later request.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, tokio_postgres::Error> {
        self.build_transaction().start().await
    }

    /// Returns a builder for a transaction with an isolation level, read-only
    /// or deferrable mode (tracked like [`transaction`](Self::transaction)).
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        let Client {
            client,
            statements,
            txn_open,
            hygiene,
            ..
        } = self;
        TransactionBuilder {
            inner: client.build_transaction(),
            statements,
            hygiene,
            open: txn_open,
        }
    }

    fn raw(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

/// The guarded query methods, the same on [`Client`] and [`Transaction`]
macro_rules! guarded_methods {
    () => {
        /// Like `tokio_postgres`'s `prepare`; waits first while a dropped
        /// query is being cleared.
        ///
        /// # Errors
        ///
        /// The server's error for a statement it cannot prepare.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: a dropped prepare leaves nothing running.
        pub async fn prepare(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
            let _ = self.hygiene.settle().await;
            self.inner().prepare(query).await
        }

        /// Like `tokio_postgres`'s `prepare_typed`; waits first while a
        /// dropped query is being cleared.
        ///
        /// # Errors
        ///
        /// The server's error for a statement it cannot prepare.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: a dropped prepare leaves nothing running.
        pub async fn prepare_typed(
            &self,
            query: &str,
            types: &[Type],
        ) -> Result<Statement, tokio_postgres::Error> {
            let _ = self.hygiene.settle().await;
            self.inner().prepare_typed(query, types).await
        }

        /// Runs a statement and returns its rows, like `tokio_postgres`'s `query`, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// `statement` is a [`Statement`] or the query text.
        ///
        /// # Errors
        ///
        /// The server's error, unchanged.
        ///
        /// # Cancel safety
        ///
        /// Dropping the future before it completed cancels the statement on
        /// the server; the connection is reused only once that is done.
        pub async fn query<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, tokio_postgres::Error>
        where
            T: ?Sized + ToStatement,
        {
            guarded(
                &self.hygiene,
                self.raw(),
                self.inner().query(statement, params),
            )
            .await
        }

        /// Runs a statement that returns exactly one row, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, or an error when the row count is not one.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn query_one<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, tokio_postgres::Error>
        where
            T: ?Sized + ToStatement,
        {
            guarded(
                &self.hygiene,
                self.raw(),
                self.inner().query_one(statement, params),
            )
            .await
        }

        /// Runs a statement that returns zero or one row, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, or an error when more than one row comes back.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn query_opt<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, tokio_postgres::Error>
        where
            T: ?Sized + ToStatement,
        {
            guarded(
                &self.hygiene,
                self.raw(),
                self.inner().query_opt(statement, params),
            )
            .await
        }

        /// Runs a statement with explicitly typed parameters, without preparing it, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, unchanged.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn query_typed(
            &self,
            query: &str,
            params: &[(&(dyn ToSql + Sync), Type)],
        ) -> Result<Vec<Row>, tokio_postgres::Error> {
            guarded(
                &self.hygiene,
                self.raw(),
                self.inner().query_typed(query, params),
            )
            .await
        }

        /// Runs a statement and returns the number of rows it affected, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, unchanged.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn execute<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, tokio_postgres::Error>
        where
            T: ?Sized + ToStatement,
        {
            guarded(
                &self.hygiene,
                self.raw(),
                self.inner().execute(statement, params),
            )
            .await
        }

        /// Runs one or more `;`-separated statements with the simple query protocol and returns what they sent back, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, unchanged.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn simple_query(
            &self,
            query: &str,
        ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
            guarded(&self.hygiene, self.raw(), self.inner().simple_query(query)).await
        }

        /// Runs one or more `;`-separated statements with the simple query protocol, with [cancel on drop](Client#cancel-on-drop).
        ///
        /// # Errors
        ///
        /// The server's error, unchanged.
        ///
        /// # Cancel safety
        ///
        /// As [`query`](Self::query).
        pub async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
            guarded(&self.hygiene, self.raw(), self.inner().batch_execute(query)).await
        }
    };
}

impl Client {
    fn inner(&self) -> &tokio_postgres::Client {
        &self.client
    }

    guarded_methods!();
}

/// Builder of a tracked [`Transaction`]; see [`Client::build_transaction`].
#[must_use = "a transaction builder does nothing until `start` is awaited"]
pub struct TransactionBuilder<'a> {
    inner: tokio_postgres::TransactionBuilder<'a>,
    statements: &'a StatementCache,
    hygiene: &'a Arc<Hygiene>,
    open: &'a mut bool,
}

impl fmt::Debug for TransactionBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionBuilder").finish_non_exhaustive()
    }
}

impl<'a> TransactionBuilder<'a> {
    /// Sets the isolation level.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.inner = self.inner.isolation_level(level);
        self
    }

    /// Sets the read-only mode.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.inner = self.inner.read_only(read_only);
        self
    }

    /// Sets the deferrable mode (meaningful for serializable read-only
    /// transactions).
    pub fn deferrable(mut self, deferrable: bool) -> Self {
        self.inner = self.inner.deferrable(deferrable);
        self
    }

    /// Begins the transaction; waits first while a dropped query is being
    /// cleared from the connection.
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::TransactionBuilder::start`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Client::transaction`].
    pub async fn start(self) -> Result<Transaction<'a>, tokio_postgres::Error> {
        let TransactionBuilder {
            inner,
            statements,
            hygiene,
            open,
        } = self;
        let _ = hygiene.settle().await;
        let inner = inner.start().await?;
        *open = true;
        Ok(Transaction {
            inner,
            statements,
            hygiene,
            _open: Some(OpenFlag(open)),
        })
    }
}

/// Clears the client's "transaction open" flag when the transaction wrapper
/// goes away by any means other than a leak.
struct OpenFlag<'a>(&'a mut bool);

impl Drop for OpenFlag<'_> {
    fn drop(&mut self) {
        *self.0 = false;
    }
}

/// A tracked transaction on a pooled [`Client`].
///
/// Derefs (mutably too) to [`tokio_postgres::Transaction`], so every query
/// method works. Dropping it without [`commit`](Self::commit) rolls it back:
/// `tokio_postgres` queues the `ROLLBACK` at once, ahead of anything the
/// next user of the connection sends. [`transaction`](Self::transaction) and
/// [`savepoint`](Self::savepoint) nest a transaction on a savepoint.
///
/// The query methods it defines itself (`query`, `execute`, the `*_cached`
/// ones, ...) cancel their statement on the server when dropped before they
/// completed, as the [`Client`]'s do ([Cancel on drop](Client#cancel-on-drop));
/// the transaction is then aborted: it rolls back when dropped, and a later
/// [`commit`](Self::commit) rolls it back too (PostgreSQL answers `COMMIT`
/// of an aborted transaction with `ROLLBACK`, without an error).
///
/// The `*_cached` methods use the connection's statement cache. Unlike the
/// [`Client`] ones they do not retry on a stale cached plan, because the
/// error has already aborted the transaction: the stale entry is dropped and
/// the error returned, so retrying the whole transaction works.
#[must_use = "a transaction rolls back when dropped; call `commit`"]
pub struct Transaction<'a> {
    // Field order matters: `inner` drops first (queueing its ROLLBACK), then
    // the flag is cleared.
    inner: tokio_postgres::Transaction<'a>,
    statements: &'a StatementCache,
    hygiene: &'a Arc<Hygiene>,
    /// `None` for a savepoint: its parent owns the flag.
    _open: Option<OpenFlag<'a>>,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("savepoint", &self._open.is_none())
            .finish_non_exhaustive()
    }
}

impl<'a> Deref for Transaction<'a> {
    type Target = tokio_postgres::Transaction<'a>;

    fn deref(&self) -> &tokio_postgres::Transaction<'a> {
        &self.inner
    }
}

impl<'a> DerefMut for Transaction<'a> {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Transaction<'a> {
        &mut self.inner
    }
}

impl<'a> Transaction<'a> {
    fn inner(&self) -> &tokio_postgres::Transaction<'a> {
        &self.inner
    }

    fn raw(&self) -> &tokio_postgres::Client {
        self.inner.client()
    }

    guarded_methods!();

    /// Commits the transaction (for a savepoint: releases it); waits first
    /// while a dropped query is being cleared from the connection.
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::Transaction::commit`].
    ///
    /// # Cancel safety
    ///
    /// As `tokio_postgres`: once polled, `COMMIT` has been sent and runs; if
    /// the future is dropped before its first poll the transaction rolls back.
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        let Transaction {
            inner,
            hygiene,
            _open,
            ..
        } = self;
        let _ = hygiene.settle().await;
        inner.commit().await
    }

    /// Rolls the transaction back (dropping it does the same without
    /// waiting for the server's answer).
    ///
    /// # Errors
    ///
    /// The error of [`tokio_postgres::Transaction::rollback`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the rollback happens either way.
    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        let Transaction {
            inner,
            hygiene,
            _open,
            ..
        } = self;
        let _ = hygiene.settle().await;
        inner.rollback().await
    }

    /// Starts a nested transaction on a savepoint (`sp_1`, `sp_2`, ... by
    /// depth), rolled back to when dropped without
    /// [`commit`](Self::commit).
    ///
    /// # Errors
    ///
    /// The server's error for `SAVEPOINT`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Client::transaction`].
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        let inner = self.inner.transaction().await?;
        Ok(Transaction {
            inner,
            statements: self.statements,
            hygiene: self.hygiene,
            _open: None,
        })
    }

    /// Like [`transaction`](Self::transaction), with a savepoint of the
    /// given name.
    ///
    /// # Errors
    ///
    /// The server's error for `SAVEPOINT` (an invalid name, for one).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Client::transaction`].
    pub async fn savepoint(
        &mut self,
        name: impl Into<String>,
    ) -> Result<Transaction<'_>, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        let inner = self.inner.savepoint(name).await?;
        Ok(Transaction {
            inner,
            statements: self.statements,
            hygiene: self.hygiene,
            _open: None,
        })
    }

    /// [`Client::prepare_cached`] inside the transaction (prepared statements
    /// outlive the transaction, so the cache entry stays valid after it).
    ///
    /// # Errors
    ///
    /// The error of preparing the statement on a cache miss.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        prepare_cached(&self.inner, self.statements, query, &[]).await
    }

    /// [`Client::prepare_typed_cached`] inside the transaction.
    ///
    /// # Errors
    ///
    /// The error of preparing the statement on a cache miss.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn prepare_typed_cached(
        &self,
        query: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        let _ = self.hygiene.settle().await;
        prepare_cached(&self.inner, self.statements, query, types).await
    }

    /// Runs `query` through the statement cache (no retry; see the type's
    /// documentation).
    ///
    /// # Errors
    ///
    /// Errors from preparing or running the query, unchanged.
    ///
    /// # Cancel safety
    ///
    /// Cancelled on the server when dropped before it completed.
    pub async fn query_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let run = run_cached(&self.inner, self.statements, query, Query(params), false);
        guarded(self.hygiene, self.raw(), run).await
    }

    /// Like [`query_cached`](Self::query_cached), expecting exactly one row.
    ///
    /// # Errors
    ///
    /// As [`query_cached`](Self::query_cached), plus an error when the row
    /// count is not one.
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn query_one_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let run = run_cached(&self.inner, self.statements, query, QueryOne(params), false);
        guarded(self.hygiene, self.raw(), run).await
    }

    /// Like [`query_cached`](Self::query_cached), expecting zero or one row.
    ///
    /// # Errors
    ///
    /// As [`query_cached`](Self::query_cached), plus an error when more than
    /// one row comes back.
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn query_opt_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let run = run_cached(&self.inner, self.statements, query, QueryOpt(params), false);
        guarded(self.hygiene, self.raw(), run).await
    }

    /// Runs a statement through the statement cache and returns the number of
    /// rows it affected (no retry).
    ///
    /// # Errors
    ///
    /// Errors from preparing or running the statement, unchanged.
    ///
    /// # Cancel safety
    ///
    /// As [`query_cached`](Self::query_cached).
    pub async fn execute_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let run = run_cached(&self.inner, self.statements, query, Execute(params), false);
        guarded(self.hygiene, self.raw(), run).await
    }
}

/// One way of running a cached statement, with its own output type.
trait CachedOp: Sync {
    type Output;

    fn run<'a, C: GenericClient + Sync>(
        &'a self,
        client: &'a C,
        statement: &'a Statement,
    ) -> impl Future<Output = Result<Self::Output, tokio_postgres::Error>> + Send + 'a;
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

struct Query<'p>(Params<'p>);
struct QueryOne<'p>(Params<'p>);
struct QueryOpt<'p>(Params<'p>);
struct Execute<'p>(Params<'p>);

impl CachedOp for Query<'_> {
    type Output = Vec<Row>;

    fn run<'a, C: GenericClient + Sync>(
        &'a self,
        client: &'a C,
        statement: &'a Statement,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query(statement, self.0)
    }
}

impl CachedOp for QueryOne<'_> {
    type Output = Row;

    fn run<'a, C: GenericClient + Sync>(
        &'a self,
        client: &'a C,
        statement: &'a Statement,
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a {
        client.query_one(statement, self.0)
    }
}

impl CachedOp for QueryOpt<'_> {
    type Output = Option<Row>;

    fn run<'a, C: GenericClient + Sync>(
        &'a self,
        client: &'a C,
        statement: &'a Statement,
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query_opt(statement, self.0)
    }
}

impl CachedOp for Execute<'_> {
    type Output = u64;

    fn run<'a, C: GenericClient + Sync>(
        &'a self,
        client: &'a C,
        statement: &'a Statement,
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        client.execute(statement, self.0)
    }
}

/// True for the server's "cached plan must not change result type" error.
pub(crate) fn is_stale_plan(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            db.code() == &SqlState::FEATURE_NOT_SUPPORTED
                && (db.routine() == Some("RevalidateCachedQuery")
                    || db
                        .message()
                        .contains("cached plan must not change result type"))
        }
        None => false,
    }
}

async fn prepare_cached<C: GenericClient + Sync>(
    client: &C,
    cache: &StatementCache,
    query: &str,
    types: &[Type],
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = cache.get(query, types) {
        return Ok(statement);
    }
    let statement = client.prepare_typed(query, types).await?;
    cache.insert(query, types, statement.clone());
    Ok(statement)
}

async fn run_cached<C: GenericClient + Sync, O: CachedOp>(
    client: &C,
    cache: &StatementCache,
    query: &str,
    op: O,
    retry: bool,
) -> Result<O::Output, tokio_postgres::Error> {
    let statement = prepare_cached(client, cache, query, &[]).await?;
    match op.run(client, &statement).await {
        Err(e) if is_stale_plan(&e) => {
            cache.invalidate(query, &[]);
            drop(statement);
            if !retry {
                return Err(e);
            }
            let statement = match prepare_cached(client, cache, query, &[]).await {
                Ok(s) => s,
                // Inside a transaction opened with raw SQL the first error
                // aborted it; report that error, not the follow-up.
                Err(e2) if e2.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                    return Err(e)
                }
                Err(e2) => return Err(e2),
            };
            op.run(client, &statement).await
        }
        other => other,
    }
}
