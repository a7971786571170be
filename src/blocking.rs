//! Blocking acquires: the async acquire state machine, driven to completion
//! on the calling thread.
//!
//! The acquire future is polled once in place (inside the runtime context:
//! a wait arms a timer); an acquire served at once (an idle resource whose
//! recycle is ready) returns from there. Otherwise the thread blocks in
//! `Handle::block_on`: on the
//! current Tokio runtime's handle when there is one (a `spawn_blocking`
//! thread, or a thread that entered a runtime), else on a small runtime of
//! the crate's own, started on first use (one driver thread, with the time
//! driver, and I/O when Tokio's `net` feature is on). Either way the waiter
//! is a record in the same line as async waiters, woken through the same
//! `event-listener` event, and deadlines, create and recycle timeouts and
//! the background finish of an abandoned create behave as for `acquire`.

use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::acquire::Timeout;
use crate::error::Error;
use crate::guard::Pooled;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::shared::Shared;
use crate::sync::Arc;

/// The handle of the crate's own runtime for blocking acquires on threads
/// without one.
static FALLBACK: OnceLock<Handle> = OnceLock::new();

/// The handle to block on: the current runtime's, else the fallback's.
fn handle() -> Handle {
    if let Ok(handle) = Handle::try_current() {
        return handle;
    }
    FALLBACK.get_or_init(start_fallback).clone()
}

/// Starts the fallback runtime: a current-thread runtime drives its timers
/// and I/O only while a thread is in `Runtime::block_on`, so one thread
/// stays there for the life of the process, and callers block on clones of
/// its handle.
#[cold]
fn start_fallback() -> Handle {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("quickslot: could not start the runtime for blocking acquires");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("quickslot-blocking".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .expect("quickslot: could not start the thread for blocking acquires");
    handle
}

/// Panics with a clear message when called on a thread that drives async
/// tasks (blocking there would stall every task on it). Debug builds only;
/// in release builds Tokio's own check in `block_on` panics there.
#[cfg(debug_assertions)]
fn check_not_async(handle: &Handle) {
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle.block_on(async {});
    }));
    if probe.is_err() {
        panic!(
            "quickslot: a blocking acquire was called from an async task on a runtime \
             worker thread; use `acquire().await` there, or call it inside \
             `tokio::task::spawn_blocking`"
        );
    }
}

/// A blocking acquire: see [`Pool::acquire_blocking`](crate::Pool::acquire_blocking).
pub(crate) fn acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    timeout: Timeout,
    caller: Option<&'static Location<'static>>,
) -> Result<Pooled<M>, Error<M::Error>> {
    let handle = handle();
    // The first poll needs the runtime context too (a wait arms a timer).
    let entered = handle.enter();
    let mut fut = pin!(crate::acquire::acquire(shared, timeout, caller));
    if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return out;
    }
    drop(entered);
    #[cfg(debug_assertions)]
    check_not_async(&handle);
    handle.block_on(fut)
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
    /// recycle, it runs the pool's async machinery on the current Tokio
    /// runtime (inside `spawn_blocking`, or on a thread that entered a
    /// runtime) or, on a thread with no runtime, on a small runtime of
    /// quickslot's own (one thread, started on first use, with Tokio's time
    /// and, when enabled, I/O drivers). So managers that need Tokio's I/O,
    /// such as the PostgreSQL adapter's, work from plain threads too; their
    /// connection tasks then run on that runtime.
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
    /// When called on a thread that drives async tasks (a Tokio runtime
    /// worker, or inside `block_on`): in debug builds with a message naming
    /// the mistake, in release builds with Tokio's own.
    #[track_caller]
    pub fn acquire_blocking(&self) -> Result<Pooled<M>, Error<M::Error>> {
        let caller = self.caller();
        acquire(&self.shared, Timeout::Pool, caller)
    }

    /// [`acquire_blocking`](Self::acquire_blocking) with this deadline
    /// instead of the builder's `acquire_timeout`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`acquire_blocking`](Self::acquire_blocking).
    #[track_caller]
    pub fn acquire_blocking_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let caller = self.caller();
        acquire(&self.shared, Timeout::Given(timeout), caller)
    }
}
