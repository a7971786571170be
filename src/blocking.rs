//! Blocking acquires: the async acquire state machine, driven to completion
//! on the calling thread by [`rt::block_on`].
//!
//! The acquire future is polled once in place (inside the runtime context:
//! a wait arms a timer); an acquire served at once (an idle resource whose
//! recycle is ready) returns from there. Otherwise the thread blocks: with
//! the `tokio` feature in `Handle::block_on`, on the current Tokio
//! runtime's handle when there is one (a `spawn_blocking` thread, or a
//! thread that entered a runtime), else on a small runtime of the crate's
//! own, started on first use (one driver thread, with the time driver, and
//! I/O when Tokio's `net` feature is on); with `smol` alone in
//! `async_io::block_on`; with no runtime feature in a thread-parking loop.
//! Either way the waiter is a record in the same line as async waiters,
//! woken through the same `event-listener` event, and deadlines, create and
//! recycle timeouts and the background finish of an abandoned create behave
//! as for `acquire`.

use std::panic::Location;
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::time::Duration;

use crate::acquire::Timeout;
use crate::error::Error;
use crate::guard::Pooled;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt;
use crate::shared::Shared;
use crate::sync::Arc;

/// A blocking acquire: see [`Pool::acquire_blocking`](crate::Pool::acquire_blocking).
pub(crate) fn acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    timeout: Timeout,
    caller: Option<&'static Location<'static>>,
) -> Result<Pooled<M>, Error<M::Error>> {
    rt::block_on(crate::acquire::acquire(shared, timeout, caller))
}

impl<M: Manager> Pool<M> {
    /// [`acquire`](Self::acquire) for synchronous code: blocks the calling
    /// thread until a resource is handed out, under the builder's
    /// `acquire_timeout`. For plain threads (r2d2-style) and
    /// `tokio::task::spawn_blocking`; never call it from an async task.
    ///
    /// A blocking acquire waits in the same line as async acquires: waiters
    /// of both kinds are served in arrival order, with the same deadline
    /// semantics, errors and cancel-free guarantees. An acquire served at
    /// once costs about what `acquire` does. When it has to wait, create or
    /// recycle, it runs the pool's async machinery on the calling thread:
    ///
    /// * with the `tokio` feature (whether or not `smol` is on too), on the
    ///   current Tokio runtime (inside `spawn_blocking`, or on a thread that
    ///   entered a runtime) or, on a thread with no runtime, on a small
    ///   runtime of quickslot's own (one thread, started on first use, with
    ///   Tokio's time and, when enabled, I/O drivers). So managers that need
    ///   Tokio's I/O, such as the PostgreSQL adapter's, work from plain
    ///   threads too; their connection tasks then run on that runtime.
    ///   Managers written for async-io work there as well;
    /// * with `smol` alone, in `async_io::block_on`;
    /// * with no runtime feature, in a loop that parks the thread until the
    ///   acquire is woken (nothing it waits for needs a timer then).
    ///
    /// ```
    /// use quickslot::{Manager, Pool};
    ///
    /// struct Counter;
    ///
    /// impl Manager for Counter {
    ///     type Resource = u32;
    ///     type Error = String;
    ///
    ///     async fn create(&self) -> Result<u32, String> {
    ///         Ok(0)
    ///     }
    /// }
    ///
    /// // No runtime anywhere: plain threads sharing one pool, r2d2-style.
    /// let pool = Pool::builder(Counter).max_size(2).build().unwrap();
    /// let workers: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let pool = pool.clone();
    ///         std::thread::spawn(move || {
    ///             for _ in 0..100 {
    ///                 let mut n = pool.acquire_blocking().unwrap();
    ///                 *n += 1;
    ///             }
    ///         })
    ///     })
    ///     .collect();
    /// for w in workers {
    ///     w.join().unwrap();
    /// }
    /// let total: u32 = [pool.acquire_blocking().unwrap(), pool.acquire_blocking().unwrap()]
    ///     .iter()
    ///     .map(|n| **n)
    ///     .sum();
    /// assert_eq!(total, 400);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// With the `tokio` feature, when called on a thread that drives async
    /// tasks (a Tokio runtime worker, or inside `block_on`): in debug
    /// builds with a message naming the mistake, in release builds with
    /// Tokio's own. On other executors such a call is not detected: it
    /// blocks the executor's thread until the acquire ends.
    #[track_caller]
    pub fn acquire_blocking(&self) -> Result<Pooled<M>, Error<M::Error>> {
        let caller = self.caller();
        acquire(&self.shared, Timeout::Pool, caller)
    }

    /// [`acquire_blocking`](Self::acquire_blocking) with this deadline
    /// instead of the builder's `acquire_timeout`.
    ///
    /// Available with a runtime feature (`tokio` or `smol`), which the
    /// deadline's timer needs.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`acquire_blocking`](Self::acquire_blocking).
    #[cfg(any(feature = "tokio", feature = "smol"))]
    #[track_caller]
    pub fn acquire_blocking_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let caller = self.caller();
        acquire(&self.shared, Timeout::Given(timeout), caller)
    }
}
