//! [`Pool`]: the public face of a pool. Documentation and delegations:
//! the acquire state machine is in `acquire`, the create path in `create`,
//! the shared state in `shared`, the background work in `upkeep`, and the
//! concurrency core in `raw`.

use std::fmt;
use std::future::Future;
use std::panic::Location;
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::time::Duration;

use crate::builder::Builder;
use crate::config::Config;
use crate::create::CreateFail;
use crate::error::{BuildError, Error, TimeoutPhase, TryAcquireError};
use crate::guard::Pooled;
use crate::hooks::Hooks;
use crate::manager::{Manager, ResourceInfo};
#[cfg(any(feature = "tokio", feature = "smol"))]
use crate::rt;
use crate::shared::Shared;
use crate::status::Status;
use crate::sync::Arc;

/// What [`Pool::drain`] found.
///
/// Available with a runtime feature (`tokio` or `smol`), as `drain` is.
#[cfg(any(feature = "tokio", feature = "smol"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Resources checked out (or being created) when the drain began.
    pub checked_out: usize,
    /// Of those, how many came back (and were dropped) before the deadline.
    pub returned: usize,
    /// How many were still out at the deadline. They are dropped whenever
    /// they come back.
    pub outstanding: usize,
}

/// A pool of resources made by a [`Manager`].
///
/// A `Pool` is a cheap handle: clone it freely and move it into tasks; all
/// clones share the same resources. It is `Send + Sync` when the manager is.
///
/// Acquiring is fair: while anyone waits, a returned resource goes straight
/// to the longest waiter, never to a newcomer. An acquire served at once and
/// every release take no lock; an acquire that has to wait parks on its own
/// `event-listener` event, whose listen, notify and poll take that event's
/// internal lock (uncontended: only the waiter and the one releaser that
/// serves it touch it).
///
/// ```
/// use quickslot::{Manager, Pool};
///
/// struct Buffers;
///
/// impl Manager for Buffers {
///     type Resource = Vec<u8>;
///     type Error = std::convert::Infallible;
///
///     async fn create(&self) -> Result<Vec<u8>, Self::Error> {
///         Ok(Vec::with_capacity(4096))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::builder(Buffers).max_size(2).build().unwrap();
/// let mut buf = pool.acquire().await.unwrap();
/// buf.extend_from_slice(b"hello");
/// drop(buf); // back to the pool
/// assert_eq!(pool.status().idle, 1);
/// # }
/// ```
pub struct Pool<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Starts building a pool around `manager`.
    pub fn builder(manager: M) -> Builder<M> {
        Builder::new(manager)
    }

    fn from_parts(manager: M, config: Config, hooks: Hooks<M::Resource>) -> Self {
        let pool = Self {
            shared: Arc::new(Shared::new(manager, config, hooks)),
        };
        if let Some(budget) = pool.shared.budget() {
            budget.join(crate::capacity::registration(&pool.shared));
        }
        crate::upkeep::start_at_build(&pool.shared);
        pool
    }

    /// The manager this pool was built with.
    pub fn manager(&self) -> &M {
        self.shared.manager()
    }

    /// Checks out a resource: an idle one (recycled first), a new one if
    /// the pool has room, or the next one returned, in arrival order.
    ///
    /// The builder's `acquire_timeout` (30 s by default with a runtime
    /// feature, none without) bounds the whole call, waiting, create and
    /// recycle together. The clock starts when the acquire first has to
    /// wait: an acquire served at once reads no clock.
    ///
    /// An acquire on a pool whose every resource is held by the calling task
    /// (a nested acquire on a pool of one, say) ends at its deadline.
    ///
    /// # Errors
    ///
    /// * [`Error::Create`] at once when the manager fails to create;
    /// * [`Error::Timeout`] when the deadline passes, naming the phase and
    ///   carrying the last manager error seen;
    /// * [`Error::Closed`] when the pool is or gets closed.
    ///
    /// # Panics
    ///
    /// With the `tokio` feature alone, when the acquire has to wait under a
    /// deadline outside a Tokio runtime with the time driver enabled
    /// (Tokio's timer panics). With `smol` (alone or beside `tokio`) a
    /// deadline outside a Tokio runtime uses an `async_io::Timer`, which
    /// works under any executor.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future at any point loses nothing: a waiting acquire
    /// leaves the line (a resource handed to it in the meantime goes to the
    /// next waiter), a resource being recycled is dropped (its state is
    /// unknown) and its slot freed, and a create in flight is not wasted: it
    /// finishes in the background, bounded by `create_timeout` or else
    /// `acquire_timeout`, and its resource goes to the next waiter (or
    /// idle), or its slot is freed if it fails. The same happens to a create
    /// whose acquire's deadline passes. So a stalled server never sees more
    /// than `max_size` connection attempts at once. Without either timeout,
    /// or where no runtime takes the task (with the `tokio` feature alone,
    /// outside a Tokio runtime), the create is dropped and its slot freed
    /// at once.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        let caller = self.caller();
        crate::acquire::acquire(&self.shared, crate::acquire::Timeout::Pool, caller)
    }

    /// The caller's location, for leak reports; `None` (and no work) unless
    /// leak detection is on.
    #[track_caller]
    #[inline]
    pub(crate) fn caller(&self) -> Option<&'static Location<'static>> {
        if self.shared.leaks().is_some() {
            Some(Location::caller())
        } else {
            None
        }
    }

    /// [`acquire`](Self::acquire) with this deadline instead of the
    /// builder's `acquire_timeout`.
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
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Self::acquire).
    #[cfg(any(feature = "tokio", feature = "smol"))]
    #[track_caller]
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        let caller = self.caller();
        crate::acquire::acquire(
            &self.shared,
            crate::acquire::Timeout::Given(timeout),
            caller,
        )
    }

    /// Checks out an idle resource without waiting and without creating one.
    ///
    /// It skips [`Manager::recycle`] (which may await) but drops resources
    /// past `max_lifetime` or `idle_timeout`, and never jumps the line.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError`] says why nothing was handed out.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<Pooled<M>, TryAcquireError> {
        crate::acquire::try_acquire(&self.shared, self.caller())
    }

    /// A snapshot of the pool's gauges and counters.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Publishes the gauges now (the upkeep task also does, each round).
    /// A no-op for a pool built with `metrics(false)`. The names are listed
    /// under [Metrics](crate#metrics).
    ///
    /// Available with the crate feature `metrics` only.
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        self.shared.publish_gauges();
    }

    /// Closes the pool: waiting acquires fail with [`Error::Closed`], idle
    /// resources are dropped now, resources returned later are dropped, and
    /// later acquires fail. Closing twice does nothing more.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether [`close`](Self::close) (or `drain`) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.core().is_closed()
    }

    /// Shuts the pool down gracefully: stops lending (as
    /// [`close`](Self::close): waiting and later acquires fail with
    /// [`Error::Closed`]), drops idle resources now, then waits up to
    /// `timeout` for the checked-out ones to come back (each is dropped as
    /// it returns) and reports how many did not.
    ///
    /// ```
    /// # use quickslot::{Manager, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = ();
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M).build().unwrap();
    /// let held = pool.acquire().await.unwrap();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    ///     drop(held);
    /// });
    /// let report = pool.drain(Duration::from_secs(5)).await;
    /// assert_eq!((report.returned, report.outstanding), (1, 0));
    /// # }
    /// ```
    ///
    /// Available with a runtime feature (`tokio` or `smol`), which the
    /// deadline's timer needs; without one, [`close`](Self::close) and
    /// watch [`status`](Self::status).
    ///
    /// # Panics
    ///
    /// With the `tokio` feature alone, outside a Tokio runtime with the
    /// time driver, if anything is still checked out.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only; the pool stays closed.
    #[cfg(any(feature = "tokio", feature = "smol"))]
    pub async fn drain(&self, timeout: Duration) -> Drained {
        let core = self.shared.core();
        self.shared.close();
        let checked_out = core.size();
        let deadline = rt::after(rt::now(), timeout);
        loop {
            let listener = core.listen_emptied();
            let outstanding = core.size();
            if outstanding == 0 {
                break;
            }
            if rt::timeout_at(deadline, listener).await.is_none() {
                break;
            }
        }
        let outstanding = core.size();
        if outstanding > 0 {
            tracing::warn!(
                target: "quickslot",
                pool = %self.shared.config().name,
                outstanding,
                "drain: resources still checked out at the deadline",
            );
        }
        Drained {
            checked_out,
            returned: checked_out.saturating_sub(outstanding),
            outstanding,
        }
    }

    /// Changes `max_size` at run time, without stopping traffic.
    ///
    /// * Growing lets queued acquires create at once.
    /// * Shrinking drops idle resources until the pool fits; resources in
    ///   use are dropped as they come back, until it fits. Meanwhile
    ///   `status().size` may exceed `max_size`, and no acquire creates.
    ///
    /// ```
    /// # use quickslot::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = ();
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M).max_size(4).max_size_limit(64).build().unwrap();
    /// pool.resize(32).unwrap();
    /// assert_eq!(pool.status().max_size, 32);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroMaxSize`](crate::BuildError::ZeroMaxSize) for 0,
    /// [`BuildError::TooLarge`](crate::BuildError::TooLarge) above the
    /// builder's [`max_size_limit`](crate::Builder::max_size_limit).
    pub fn resize(&self, max_size: usize) -> Result<(), crate::BuildError> {
        let config = self.shared.config();
        let limit = config.capacity();
        if max_size == 0 {
            return Err(crate::BuildError::ZeroMaxSize);
        }
        if max_size > limit {
            return Err(crate::BuildError::TooLarge {
                setting: "max_size",
                value: max_size,
                bound: "max_size_limit",
                bound_value: limit,
            });
        }
        tracing::debug!(target: "quickslot", pool = %config.name, max_size, "resize");
        self.shared.core().resize(max_size);
        self.shared.upkeep().wake();
        Ok(())
    }

    /// Fills the pool up to the builder's
    /// [`min_idle`](crate::Builder::min_idle) now, one create at a time, and
    /// starts the background upkeep if it is not running yet.
    ///
    /// # Errors
    ///
    /// The first failure: [`Error::Create`], [`Error::Hook`] (`post_create`),
    /// [`Error::Timeout`] (`create_timeout`), or [`Error::Closed`]. The
    /// background task keeps trying after it.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the create in flight, if any, and frees its slot.
    pub async fn warm_up(&self) -> Result<(), Error<M::Error>> {
        crate::upkeep::start(&self.shared);
        match crate::upkeep::fill_min_idle(&*self.shared).await {
            Ok(()) => Ok(()),
            Err(Some(CreateFail::Manager(e))) => Err(Error::Create(e)),
            Err(Some(CreateFail::Hook(hook, error))) => Err(Error::Hook { hook, error }),
            Err(Some(CreateFail::Timeout)) => Err(Error::Timeout {
                phase: TimeoutPhase::Create,
                last_error: None,
            }),
            Err(None) => Err(Error::Closed),
        }
    }

    /// Drops the idle resources for which `keep` returns `false`, and
    /// returns how many it dropped. Resources in use are not visited.
    ///
    /// The visited resources are out of the pool while `keep` runs, so an
    /// acquire meanwhile may wait or create.
    ///
    /// If `keep` panics, the resource it was looking at is dropped (its
    /// state is unknown) and its slot freed, the ones not visited yet go
    /// back to the pool, and the panic goes on to the caller.
    pub fn retain(&self, keep: impl FnMut(&mut M::Resource, &ResourceInfo) -> bool) -> usize {
        crate::upkeep::retain(&self.shared, keep)
    }
}

/// A handle to a pool that does not keep it alive: for background tasks,
/// caches and registries that must not hold a pool open after its owner is
/// done with it. From [`Pool::downgrade`].
///
/// ```
/// # use quickslot::{Manager, Pool};
/// # struct M;
/// # impl Manager for M {
/// #     type Resource = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
/// # }
/// let pool = Pool::builder(M).build().unwrap();
/// let weak = pool.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(pool);
/// assert!(weak.upgrade().is_none());
/// ```
#[cfg(not(loom))]
pub struct WeakPool<M: Manager> {
    shared: crate::sync::Weak<Shared<M>>,
}

#[cfg(not(loom))]
impl<M: Manager> WeakPool<M> {
    /// The pool, if any [`Pool`] handle or [`Pooled`] guard still keeps it.
    pub fn upgrade(&self) -> Option<Pool<M>> {
        self.shared.upgrade().map(|shared| Pool { shared })
    }
}

#[cfg(not(loom))]
impl<M: Manager> Clone for WeakPool<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(not(loom))]
impl<M: Manager> fmt::Debug for WeakPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPool").finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
impl<M: Manager> Pool<M> {
    /// A [`WeakPool`]: a handle that does not keep the pool alive.
    pub fn downgrade(&self) -> WeakPool<M> {
        WeakPool {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

impl<M: Manager> Pooled<M> {
    /// The pool this guard returns its resource to (a guard keeps its pool
    /// alive).
    pub fn pool(this: &Self) -> Pool<M> {
        Pool {
            shared: Pooled::shared(this).clone(),
        }
    }
}

impl<M: Manager> Builder<M> {
    /// Validates the settings and makes the pool. Creates no resource and
    /// needs no runtime.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the setting: `max_size` of 0 or above
    /// `max_size_limit` or [`MAX_SIZE_LIMIT`](crate::MAX_SIZE_LIMIT), a `min_idle` above `max_size`,
    /// a zero duration, a `create_timeout` or `recycle_timeout` longer than
    /// the `acquire_timeout`, an `idle_timeout` longer than the
    /// `max_lifetime`, or, in a build without a runtime feature, a setting
    /// that needs a timer or a background task
    /// ([`BuildError::NeedsRuntime`]; see
    /// [Without a runtime feature](Builder#without-a-runtime-feature)).
    pub fn build(self) -> Result<Pool<M>, BuildError> {
        let (manager, config, hooks) = self.into_parts()?;
        Ok(Pool::from_parts(manager, config, hooks))
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
