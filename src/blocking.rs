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

use crate::error::Error;
use crate::guard::Pooled;
use crate::manager::Manager;
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
    timeout: Option<Duration>,
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
