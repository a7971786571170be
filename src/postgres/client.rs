//! The pooled connection: [`Client`] and its tracked [`Transaction`].

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, IsolationLevel, Row, Statement};

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
///   [`RecyclingMethod`](super::RecyclingMethod).
pub struct Client {
    client: tokio_postgres::Client,
    statements: StatementCache,
    txn_open: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.client.is_closed())
            .field("transaction_open", &self.txn_open)
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
    pub(crate) fn new(client: tokio_postgres::Client, statements: StatementCache) -> Self {
        Client {
            client,
            statements,
            txn_open: false,
        }
    }

    /// Whether a [`Transaction`] of this client is alive (or was leaked).
    pub(crate) fn transaction_open(&self) -> bool {
        self.txn_open
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
    /// As for [`tokio_postgres::Client::query`]: a query already sent still
    /// runs on the server, and its result is discarded.
    pub async fn query_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        run_cached(&self.client, &self.statements, query, Query(params), true).await
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
        run_cached(
            &self.client,
            &self.statements,
            query,
            QueryOne(params),
            true,
        )
        .await
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
        run_cached(
            &self.client,
            &self.statements,
            query,
            QueryOpt(params),
            true,
        )
        .await
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
        run_cached(&self.client, &self.statements, query, Execute(params), true).await
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
        } = self;
        TransactionBuilder {
            inner: client.build_transaction(),
            statements,
            open: txn_open,
        }
    }
}

/// Builder of a tracked [`Transaction`]; see [`Client::build_transaction`].
#[must_use = "a transaction builder does nothing until `start` is awaited"]
pub struct TransactionBuilder<'a> {
    inner: tokio_postgres::TransactionBuilder<'a>,
    statements: &'a StatementCache,
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

    /// Begins the transaction.
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
            open,
        } = self;
        let inner = inner.start().await?;
        *open = true;
        Ok(Transaction {
            inner,
            statements,
            _open: OpenFlag(open),
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
/// method and savepoints work. Dropping it without [`commit`](Self::commit)
/// rolls it back: `tokio_postgres` queues the `ROLLBACK` at once, ahead of
/// anything the next user of the connection sends.
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
    _open: OpenFlag<'a>,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
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

impl Transaction<'_> {
    /// Commits the transaction.
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
        let Transaction { inner, _open, .. } = self;
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
        let Transaction { inner, _open, .. } = self;
        inner.rollback().await
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
    /// As [`tokio_postgres::Transaction::query`].
    pub async fn query_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        run_cached(&self.inner, self.statements, query, Query(params), false).await
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
    /// As [`tokio_postgres::Transaction::execute`].
    pub async fn execute_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        run_cached(&self.inner, self.statements, query, Execute(params), false).await
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
