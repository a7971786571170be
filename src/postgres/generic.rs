//! [`GenericClient`]: code that takes "a client or a transaction".

use std::future::Future;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, SimpleQueryMessage, Socket, Statement, ToStatement};

use super::client::{Client, Transaction};
use super::manager::PgManager;

mod sealed {
    pub trait Sealed {}
}

/// The query methods shared by a pooled client ([`PooledClient`](super::PooledClient)),
/// a [`Client`] and a [`Transaction`], for code that should run on any of
/// them, the statement-cache methods included.
///
/// Every method behaves as the inherent method of the same name (so the
/// query methods [cancel on drop](Client#cancel-on-drop)); on a
/// [`Transaction`], [`transaction`](Self::transaction) nests one on a
/// savepoint. The trait is sealed: only this crate implements it.
///
/// # Examples
///
/// ```no_run
/// use quickslot::postgres::{GenericClient, Pool};
///
/// async fn add_event(db: &impl GenericClient, kind: &str) -> Result<u64, tokio_postgres::Error> {
///     db.execute_cached("INSERT INTO events (kind) VALUES ($1)", &[&kind]).await
/// }
///
/// # async fn run(pool: Pool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = pool.acquire().await?;
/// add_event(&client, "login").await?; // on the pooled client
///
/// let tx = client.transaction().await?;
/// add_event(&tx, "audit").await?; // inside a transaction
/// tx.commit().await?;
/// # Ok(())
/// # }
/// ```
pub trait GenericClient: sealed::Sealed + Send + Sync {
    /// Like [`Client::prepare`].
    fn prepare(&self, query: &str) -> impl Future<Output = Result<Statement, Error>> + Send;

    /// Like [`Client::prepare_typed`].
    fn prepare_typed(
        &self,
        query: &str,
        types: &[Type],
    ) -> impl Future<Output = Result<Statement, Error>> + Send;

    /// Like [`Client::prepare_cached`].
    fn prepare_cached(&self, query: &str) -> impl Future<Output = Result<Statement, Error>> + Send;

    /// Like [`Client::prepare_typed_cached`].
    fn prepare_typed_cached(
        &self,
        query: &str,
        types: &[Type],
    ) -> impl Future<Output = Result<Statement, Error>> + Send;

    /// Like [`Client::query`].
    fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync;

    /// Like [`Client::query_one`].
    fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync;

    /// Like [`Client::query_opt`].
    fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync;

    /// Like [`Client::execute`].
    fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send
    where
        T: ?Sized + ToStatement + Sync;

    /// Like [`Client::query_cached`] (on a [`Transaction`], without the
    /// retry on a stale plan).
    fn query_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send;

    /// Like [`Client::query_one_cached`].
    fn query_one_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, Error>> + Send;

    /// Like [`Client::query_opt_cached`].
    fn query_opt_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send;

    /// Like [`Client::execute_cached`].
    fn execute_cached(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Like [`Client::simple_query`].
    fn simple_query(
        &self,
        query: &str,
    ) -> impl Future<Output = Result<Vec<SimpleQueryMessage>, Error>> + Send;

    /// Like [`Client::batch_execute`].
    fn batch_execute(&self, query: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// Begins a tracked transaction; on a [`Transaction`], a nested one on a
    /// savepoint.
    fn transaction(&mut self) -> impl Future<Output = Result<Transaction<'_>, Error>> + Send;

    /// The underlying `tokio_postgres` client.
    fn client(&self) -> &tokio_postgres::Client;
}

impl sealed::Sealed for Client {}
impl sealed::Sealed for Transaction<'_> {}
impl<T> sealed::Sealed for crate::Pooled<PgManager<T>>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
}

/// The query methods of [`GenericClient`], each a call to `$target`'s
/// inherent method of the same name (through `Deref` for a pooled client).
/// The statement's type parameter is `S`, a name no implementing type uses.
macro_rules! delegate_queries {
    ($target:ident) => {
        async fn prepare(&self, query: &str) -> Result<Statement, Error> {
            $target::prepare(self, query).await
        }

        async fn prepare_typed(&self, query: &str, types: &[Type]) -> Result<Statement, Error> {
            $target::prepare_typed(self, query, types).await
        }

        async fn prepare_cached(&self, query: &str) -> Result<Statement, Error> {
            $target::prepare_cached(self, query).await
        }

        async fn prepare_typed_cached(
            &self,
            query: &str,
            types: &[Type],
        ) -> Result<Statement, Error> {
            $target::prepare_typed_cached(self, query, types).await
        }

        async fn query<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, Error>
        where
            S: ?Sized + ToStatement + Sync,
        {
            $target::query(self, statement, params).await
        }

        async fn query_one<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, Error>
        where
            S: ?Sized + ToStatement + Sync,
        {
            $target::query_one(self, statement, params).await
        }

        async fn query_opt<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, Error>
        where
            S: ?Sized + ToStatement + Sync,
        {
            $target::query_opt(self, statement, params).await
        }

        async fn execute<S>(
            &self,
            statement: &S,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, Error>
        where
            S: ?Sized + ToStatement + Sync,
        {
            $target::execute(self, statement, params).await
        }

        async fn query_cached(
            &self,
            query: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Vec<Row>, Error> {
            $target::query_cached(self, query, params).await
        }

        async fn query_one_cached(
            &self,
            query: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Row, Error> {
            $target::query_one_cached(self, query, params).await
        }

        async fn query_opt_cached(
            &self,
            query: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, Error> {
            $target::query_opt_cached(self, query, params).await
        }

        async fn execute_cached(
            &self,
            query: &str,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<u64, Error> {
            $target::execute_cached(self, query, params).await
        }

        async fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
            $target::simple_query(self, query).await
        }

        async fn batch_execute(&self, query: &str) -> Result<(), Error> {
            $target::batch_execute(self, query).await
        }

        async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
            $target::transaction(self).await
        }
    };
}

impl GenericClient for Client {
    delegate_queries!(Client);

    fn client(&self) -> &tokio_postgres::Client {
        Client::client(self)
    }
}

impl GenericClient for Transaction<'_> {
    delegate_queries!(Transaction);

    fn client(&self) -> &tokio_postgres::Client {
        std::ops::Deref::deref(self).client()
    }
}

impl<T> GenericClient for crate::Pooled<PgManager<T>>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    delegate_queries!(Client);

    fn client(&self) -> &tokio_postgres::Client {
        Client::client(self)
    }
}
