//! [`Connection`]: the pooled resource, and [`Connection::interact`].

use std::any::Any;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::oneshot;

/// A pooled SQLite connection: what a [`Pool`](super::Pool) holds, and what
/// a [`PooledConnection`](super::PooledConnection) derefs to. It derefs in
/// turn to [`rusqlite::Connection`], so every `rusqlite` method works on a
/// checked-out connection, r2d2-style:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = quickslot::sqlite::Manager::memory().pool_builder().max_size(1).build()?;
/// let conn = pool.acquire().await?;
/// let n: i64 = conn.query_row("SELECT 40 + 2", [], |row| row.get(0))?;
/// assert_eq!(n, 42);
/// # Ok(()) }
/// ```
///
/// Those calls block the calling thread while SQLite works: fine for an
/// in-memory database, a cached point read or a thread of its own, not for
/// a busy async worker. [`interact`](Self::interact) runs a closure on
/// Tokio's blocking pool instead.
pub struct Connection {
    conn: OnceCell<rusqlite::Connection>,
    /// Set while the connection is out in an `interact` closure; it comes
    /// back through here (or the sender is dropped, if it panicked).
    away: Cell<Option<oneshot::Receiver<rusqlite::Connection>>>,
    location: Arc<str>,
}

impl Connection {
    pub(super) fn new(conn: rusqlite::Connection, location: Arc<str>) -> Self {
        let cell = OnceCell::new();
        let _ = cell.set(conn);
        Connection {
            conn: cell,
            away: Cell::new(None),
            location,
        }
    }

    /// The database: the file's path as given to the manager, or the
    /// `file:` URI of an in-memory database.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` on the connection on Tokio's blocking pool
    /// ([`spawn_blocking`](tokio::task::spawn_blocking)), so that the async
    /// worker is free while SQLite works, and returns what `f` returned.
    ///
    /// The connection moves into the blocking task and back; the pooled slot
    /// stays held by the guard throughout.
    ///
    /// ```
    /// use quickslot::sqlite::{rusqlite, Manager};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Manager::memory().pool_builder().max_size(1).build()?;
    /// let mut conn = pool.acquire().await?;
    /// let n = conn
    ///     .interact(|conn| {
    ///         conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")?;
    ///         conn.query_row("SELECT sum(x) FROM t", [], |row| row.get::<_, i64>(0))
    ///     })
    ///     .await??;
    /// assert_eq!(n, 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// * [`InteractError::Panic`] when `f` panicked. The connection (in an
    ///   unknown state) is dropped, and this guard is left without one: drop
    ///   it, and its slot is freed for a fresh connection (counted as
    ///   [`Discarded::broken`](crate::Discarded::broken)).
    /// * [`InteractError::Aborted`] when the runtime shut down before `f`
    ///   ran; the connection is dropped.
    /// * [`InteractError::Lost`] when an earlier `interact` on this guard
    ///   already lost the connection.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// If the returned future is dropped while `f` runs, `f` still runs to
    /// its end and the connection then comes back to this guard (the next
    /// use of the guard, or the next checkout if the guard went back to the
    /// pool, waits for it). The slot stays held meanwhile, so the pool
    /// never has more than `max_size` connections open.
    pub fn interact<F, R>(
        &mut self,
        f: F,
    ) -> impl Future<Output = Result<R, InteractError>> + Send + '_
    where
        F: FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        // Only `&mut` access in the future: a `&mut Connection` is `Send`, a
        // `&Connection` (its cells) is not.
        let this = self;
        async move {
            let mut conn = this.take().await?;
            let (tx, rx) = oneshot::channel();
            *this.away.get_mut() = Some(rx);
            let task = tokio::task::spawn_blocking(move || {
                match catch_unwind(AssertUnwindSafe(|| f(&mut conn))) {
                    Ok(out) => {
                        // The receiver is gone only if the pool dropped this
                        // `Connection` meanwhile (closed, expired, resized);
                        // the connection then closes here, off the async
                        // worker.
                        let _ = tx.send(conn);
                        Ok(out)
                    }
                    Err(payload) => {
                        drop(conn);
                        Err(payload)
                    }
                }
            });
            let out = task.await;
            // Not cancelled: the connection was sent back before the task
            // returned (or dropped with a panic or abort).
            let back = this
                .away
                .get_mut()
                .take()
                .and_then(|mut rx| rx.try_recv().ok());
            if let Some(conn) = back {
                let _ = this.conn.set(conn);
            }
            match out {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(payload)) => Err(InteractError::Panic(PanicPayload::new(payload))),
                Err(e) if e.is_panic() => {
                    Err(InteractError::Panic(PanicPayload::new(e.into_panic())))
                }
                Err(_) => Err(InteractError::Aborted),
            }
        }
    }

    /// Takes the connection out, waiting (asynchronously) for one out in the
    /// closure of a cancelled `interact`.
    async fn take(&mut self) -> Result<rusqlite::Connection, InteractError> {
        self.reclaim().await?;
        self.conn.take().ok_or(InteractError::Lost)
    }

    /// Brings a connection that is out in the closure of a cancelled
    /// `interact` back, waiting for the closure to end.
    ///
    /// # Cancel safety
    ///
    /// Dropping it leaves the connection out, to be reclaimed later.
    pub(super) async fn reclaim(&mut self) -> Result<(), InteractError> {
        if self.conn.get_mut().is_some() {
            return Ok(());
        }
        // Awaited in place (`&mut` receiver): dropping this future leaves
        // the receiver in the cell.
        let away = self.away.get_mut();
        let Some(rx) = away.as_mut() else {
            return Err(InteractError::Lost);
        };
        let back = rx.await;
        *away = None;
        match back {
            Ok(conn) => {
                let _ = self.conn.set(conn);
                Ok(())
            }
            Err(_) => Err(InteractError::Lost),
        }
    }

    /// Brings the connection back without waiting, if it is here or its
    /// closure ended. `Ok(false)`: still out.
    pub(super) fn try_reclaim(&mut self) -> Result<bool, InteractError> {
        if self.conn.get().is_some() {
            return Ok(true);
        }
        let away = self.away.get_mut();
        let Some(rx) = away.as_mut() else {
            return Err(InteractError::Lost);
        };
        match rx.try_recv() {
            Ok(conn) => {
                *away = None;
                let _ = self.conn.set(conn);
                Ok(true)
            }
            Err(oneshot::error::TryRecvError::Empty) => Ok(false),
            Err(oneshot::error::TryRecvError::Closed) => {
                *away = None;
                Err(InteractError::Lost)
            }
        }
    }

    /// The connection, if it is here (not out in an `interact` closure, not
    /// lost).
    pub(super) fn get_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        self.conn.get_mut()
    }

    /// Unwraps the `rusqlite` connection (after
    /// [`Pooled::detach`](crate::Pooled::detach), say), waiting for it if it
    /// is out in the closure of a cancelled [`interact`](Self::interact).
    /// `None` if it was lost with a panicking closure.
    pub fn into_inner(mut self) -> Option<rusqlite::Connection> {
        if self.conn.get().is_none() {
            let rx = self.away.take()?;
            return wait_blocking(rx).ok();
        }
        self.conn.take()
    }

    #[cold]
    #[track_caller]
    fn wait_away(&self) -> &rusqlite::Connection {
        let back = self.away.take().and_then(|rx| wait_blocking(rx).ok());
        match back {
            Some(conn) => self.conn.get_or_init(|| conn),
            None => panic!(
                "the pooled SQLite connection to `{}` is gone: an interact closure \
                 panicked or was aborted with it (drop this guard)",
                self.location
            ),
        }
    }
}

/// Blocks the thread until the closure holding the connection ends.
fn wait_blocking(
    rx: oneshot::Receiver<rusqlite::Connection>,
) -> Result<rusqlite::Connection, oneshot::error::RecvError> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    // Unconstrained: inside a runtime task whose budget is spent, a
    // budgeted receiver would return `Pending` for ever.
    let mut fut = pin!(tokio::task::unconstrained(rx));
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

impl Deref for Connection {
    type Target = rusqlite::Connection;

    /// # Panics
    ///
    /// When the connection was lost with an [`interact`](Self::interact)
    /// closure that panicked (that `interact` returned
    /// [`InteractError::Panic`]). If the closure of a cancelled `interact`
    /// still holds it, this blocks the thread until the closure ends.
    #[track_caller]
    fn deref(&self) -> &rusqlite::Connection {
        match self.conn.get() {
            Some(conn) => conn,
            None => self.wait_away(),
        }
    }
}

impl DerefMut for Connection {
    /// # Panics
    ///
    /// As [`Deref`](#impl-Deref-for-Connection).
    #[track_caller]
    fn deref_mut(&mut self) -> &mut rusqlite::Connection {
        if self.conn.get().is_none() {
            self.wait_away();
        }
        match self.conn.get_mut() {
            Some(conn) => conn,
            None => unreachable!("wait_away sets the connection or panics"),
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.conn.get().is_some() {
            "ready"
        } else {
            // Peek without taking: the cell holds a receiver or nothing.
            let rx = self.away.take();
            let state = if rx.is_some() { "in interact" } else { "lost" };
            self.away.set(rx);
            state
        };
        f.debug_struct("Connection")
            .field("location", &self.location)
            .field("state", &state)
            .finish()
    }
}

/// Why [`Connection::interact`] returned no value.
#[derive(Debug)]
#[non_exhaustive]
pub enum InteractError {
    /// The closure panicked; the connection was dropped.
    Panic(PanicPayload),
    /// The closure never ran: the runtime is shutting down. The connection
    /// was dropped.
    Aborted,
    /// The connection was already lost with an earlier `interact` on the
    /// same guard that panicked or was aborted.
    Lost,
}

impl InteractError {
    /// Whether the closure panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, InteractError::Panic(_))
    }
}

impl fmt::Display for InteractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InteractError::Panic(p) => match p.message() {
                Some(message) => write!(f, "the interact closure panicked: {message}"),
                None => f.write_str("the interact closure panicked"),
            },
            InteractError::Aborted => {
                f.write_str("the interact closure was aborted: the runtime is shutting down")
            }
            InteractError::Lost => f.write_str(
                "no connection to interact with: an earlier interact closure on this \
                 guard panicked or was aborted",
            ),
        }
    }
}

impl std::error::Error for InteractError {}

/// What a panicking [`interact`](Connection::interact) closure panicked
/// with.
///
/// ```
/// use quickslot::sqlite::{InteractError, Manager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Manager::memory().pool_builder().max_size(1).build().unwrap();
/// let mut conn = pool.acquire().await.unwrap();
/// let e = conn.interact(|_| panic!("boom")).await.unwrap_err();
/// let InteractError::Panic(payload) = e else { unreachable!() };
/// assert_eq!(payload.message(), Some("boom"));
/// // std::panic::resume_unwind(payload.into_inner()) would go on panicking.
/// # }
/// ```
pub struct PanicPayload {
    message: Option<String>,
    // A `Mutex` only so that the error is `Sync` (for `Box<dyn Error + Send
    // + Sync>`); it is never locked while shared.
    payload: Mutex<Box<dyn Any + Send + 'static>>,
}

impl PanicPayload {
    fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Some((*s).to_owned())
        } else {
            payload.downcast_ref::<String>().cloned()
        };
        PanicPayload {
            message,
            payload: Mutex::new(payload),
        }
    }

    /// The panic's message, when it panicked with a string (as `panic!`
    /// does).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The payload, for [`std::panic::resume_unwind`].
    pub fn into_inner(self) -> Box<dyn Any + Send + 'static> {
        match self.payload.into_inner() {
            Ok(payload) => payload,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanicPayload")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}
