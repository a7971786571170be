//! `interact`: a checked-out connection used from async code, on Tokio's
//! blocking pool.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ::diesel::r2d2::R2D2Connection;

use super::error::InteractError;
use super::manager::DieselManager;
use crate::Pooled;

impl<C> Pooled<DieselManager<C>>
where
    C: R2D2Connection + 'static,
{
    /// Runs `f` on the connection on Tokio's blocking pool
    /// (`tokio::task::spawn_blocking`), so the async worker stays free while
    /// Diesel blocks, and returns what `f` returned. The guard goes with the
    /// connection: when `f` ends, the connection returns to the pool from
    /// the blocking thread. This is the `spawn_blocking` pattern of r2d2 +
    /// Diesel services without the boilerplate, and the wait for the
    /// connection (`acquire().await`) holds no thread.
    ///
    /// Do several steps in one closure (or in one `conn.transaction(..)`
    /// inside it); the connection is not handed back between them.
    ///
    /// ```
    /// use diesel::connection::SimpleConnection;
    /// use diesel::prelude::*;
    /// use diesel::sql_types::BigInt;
    /// use diesel::SqliteConnection;
    /// use quickslot::diesel::DieselManager;
    ///
    /// #[derive(QueryableByName)]
    /// struct Count {
    ///     #[diesel(sql_type = BigInt)]
    ///     n: i64,
    /// }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = DieselManager::<SqliteConnection>::new(":memory:")
    ///     .pool_builder()
    ///     .max_size(1)
    ///     .build()?;
    ///
    /// let count = pool
    ///     .acquire()
    ///     .await?
    ///     .interact(|conn| {
    ///         conn.transaction(|conn| {
    ///             conn.batch_execute(
    ///                 "CREATE TABLE events (kind TEXT NOT NULL);
    ///                  INSERT INTO events VALUES ('login'), ('logout');",
    ///             )?;
    ///             diesel::sql_query("SELECT count(*) AS n FROM events").get_result::<Count>(conn)
    ///         })
    ///     })
    ///     .await??;
    /// assert_eq!(count.n, 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// * [`InteractError::Panic`] when `f` panicked: the connection, whose
    ///   state is unknown, is discarded and its slot freed (the pool opens a
    ///   fresh one when needed); the payload goes on for
    ///   `std::panic::resume_unwind`.
    /// * [`InteractError::Cancelled`] when the runtime shut down before `f`
    ///   ran; the connection went back to the pool unused.
    ///
    /// Errors of the queries in `f` are `f`'s to return (hence the `??`
    /// above).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (`spawn_blocking` needs one).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future does not stop `f` once it started: it
    /// runs to its end on the blocking thread and the connection then goes
    /// back to the pool, checked as on any return. Before it started, the
    /// connection goes back at once.
    pub async fn interact<F, R>(self, f: F) -> Result<R, InteractError>
    where
        F: FnOnce(&mut C) -> R + Send + 'static,
        R: Send + 'static,
    {
        let mut guard = self;
        let task = tokio::task::spawn_blocking(move || {
            match catch_unwind(AssertUnwindSafe(|| f(&mut guard))) {
                Ok(out) => {
                    drop(guard);
                    Ok(out)
                }
                Err(payload) => {
                    Pooled::discard(guard);
                    Err(payload)
                }
            }
        });
        match task.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(payload)) => Err(InteractError::Panic(payload)),
            // Only a panic outside the closure lands here (the guard's drop:
            // a panicking `on_release` hook); the slot is freed already.
            Err(e) if e.is_panic() => Err(InteractError::Panic(e.into_panic())),
            Err(_) => Err(InteractError::Cancelled),
        }
    }
}
