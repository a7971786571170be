//! [`Pool`]: the public handle over the concurrency core.

use std::fmt;
use std::future::{poll_fn, Future};
use std::ops::Deref;
use std::panic::Location;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::builder::{Builder, Config};
use crate::core::{Busy, Core};
use crate::error::{Error, HookError, HookKind, TimeoutPhase, TryAcquireError};
use crate::guard::Pooled;
use crate::handoff::{Grant, Outcome, Waiter};
use crate::hooks::Hooks;
use crate::leak::{Leaks, Stamp};
use crate::manager::{Manager, ResourceInfo};
use crate::status::{Counter, Stats, Status};
use crate::sync::Arc;
use crate::timer::{Deadline, Timers};
use crate::upkeep::Upkeep;

/// A resource with its bookkeeping, as it sits in the pool.
///
/// Boxed once at creation: the idle queue and the hand-off then move one
/// pointer, whatever the size of the resource (measured: an `ArrayQueue` of
/// 56-byte items cycles 2.6 times slower than one of pointers).
pub(crate) type Entry<R> = Box<Slot<R>>;

/// The contents of an [`Entry`].
#[derive(Debug)]
pub(crate) struct Slot<R> {
    pub(crate) resource: R,
    pub(crate) info: ResourceInfo,
    /// The last keepalive check, if any (upkeep only).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) checked_at: Option<Instant>,
    /// The current checkout, when checkouts are stamped (leak detection or
    /// hold-time metrics).
    pub(crate) stamp: Option<Stamp>,
}

/// Everything the handles of one pool share.
pub(crate) struct Shared<M: Manager> {
    pub(crate) core: Core<Entry<M::Resource>>,
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    pub(crate) hooks: Hooks<M::Resource>,
    /// Whether a return needs more than `is_broken` and a release: a
    /// clock read (idle time, lifetime), an unstamp or an `on_release` hook.
    /// The one flag the release path tests.
    release_extras: bool,
    pub(crate) upkeep: Upkeep,
    /// Idle deadline timers, reused by later waits.
    pub(crate) timers: Timers,
    /// The checked-out registry, with a `leak_threshold`.
    pub(crate) leaks: Option<Leaks>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

/// Why a resource left the pool; named in `tracing` events.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) enum Reason {
    Broken,
    Expired,
    IdleTimeout,
    RecycleFailed,
    KeepaliveFailed,
    Hook(HookKind),
}

impl Reason {
    fn counter(self) -> Counter {
        match self {
            Self::Broken => Counter::Broken,
            Self::Expired | Self::IdleTimeout => Counter::Expired,
            Self::RecycleFailed | Self::KeepaliveFailed => Counter::RecycleFailed,
            Self::Hook(_) => Counter::Hook,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Expired => "past its lifetime",
            Self::IdleTimeout => "idle too long",
            Self::RecycleFailed => "recycle failed",
            Self::KeepaliveFailed => "keepalive check failed",
            Self::Hook(HookKind::PostCreate) => "post_create hook failed",
            Self::Hook(HookKind::PreRecycle) => "pre_recycle hook failed",
            Self::Hook(HookKind::PostRecycle) => "post_recycle hook failed",
            Self::Hook(_) => "on_release hook failed",
        }
    }
}

/// Why a create gave no resource.
pub(crate) enum CreateFail<E> {
    Manager(E),
    /// `create_timeout` passed.
    Timeout,
    Hook(HookKind, HookError),
}

/// Why a recycle (with its hooks) rejected a resource.
pub(crate) enum RecycleFail<E> {
    Manager(E),
    /// `recycle_timeout` passed.
    Timeout,
    Hook(HookKind, HookError),
}

type BoxedAcquire<'a, M> =
    Pin<Box<dyn Future<Output = Result<Pooled<M>, Error<<M as Manager>::Error>>> + Send + 'a>>;

pin_project_lite::pin_project! {
    /// See [`Pool::acquire_tracked`].
    #[project = AcquireProj]
    enum AcquireFuture<'a, F, M: Manager> {
        Plain { #[pin] fut: F },
        Tracked { fut: BoxedAcquire<'a, M> },
    }
}

impl<F, M> Future for AcquireFuture<'_, F, M>
where
    M: Manager,
    F: Future<Output = Result<Pooled<M>, Error<M::Error>>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        match self.project() {
            AcquireProj::Plain { fut } => fut.poll(cx),
            AcquireProj::Tracked { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// How a recycle in an acquire ended.
enum Recycled<E> {
    Ok,
    /// The manager's error, or `None` when `recycle_timeout` passed.
    Failed(Option<E>),
    Hook(HookKind, HookError),
    /// The acquire's deadline passed.
    DeadlinePassed,
}

/// What [`Pool::drain`] found.
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
/// to the longest waiter, never to a newcomer, and the acquire/release path
/// takes no lock.
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

    pub(crate) fn from_parts(manager: M, config: Config, hooks: Hooks<M::Resource>) -> Self {
        let capacity = config.max_size_limit.unwrap_or(config.max_size);
        let release_extras = config.track_idle_time
            || config.max_lifetime.is_some()
            || config.stamp_checkout
            || hooks.on_release.is_some();
        let pool = Self {
            shared: Arc::new(Shared {
                core: Core::new(config.max_size, capacity, config.reuse_order),
                manager,
                leaks: config
                    .leak_threshold
                    .map(|_| Leaks::new(config.leak_backtrace)),
                #[cfg(feature = "metrics")]
                metrics: config
                    .metrics
                    .then(|| crate::metrics::Metrics::new(&config.name)),
                config,
                stats: Stats::new(),
                hooks,
                release_extras,
                upkeep: Upkeep::new(),
                timers: Timers::new(),
            }),
        };
        crate::upkeep::start(&pool.shared);
        pool
    }

    /// The manager this pool was built with.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Checks out a resource: an idle one (recycled first), a new one if
    /// the pool has room, or the next one returned, in arrival order.
    ///
    /// The builder's `acquire_timeout` (30 s by default) bounds the whole
    /// call, waiting, create and recycle together. The clock starts when the
    /// acquire first has to wait: an acquire served at once reads no clock.
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
    /// When the acquire has to wait under a deadline outside a Tokio runtime
    /// with the time driver enabled (Tokio's timer panics).
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
    /// or outside a Tokio runtime, the create is dropped and its slot freed
    /// at once.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        let caller = self.caller();
        self.acquire_tracked(self.shared.config.acquire_timeout, caller)
    }

    /// The caller's location, for leak reports; `None` (and no work) unless
    /// leak detection is on.
    #[track_caller]
    #[inline]
    fn caller(&self) -> Option<&'static Location<'static>> {
        if self.shared.leaks.is_some() {
            Some(Location::caller())
        } else {
            None
        }
    }

    /// [`acquire`](Self::acquire) with this deadline instead of the
    /// builder's `acquire_timeout`.
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
    #[track_caller]
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        let caller = self.caller();
        self.acquire_tracked(Some(timeout), caller)
    }

    /// The acquire future; with leak detection, wrapped to record the
    /// caller.
    ///
    /// The caller is not an argument of `acquire_within`: two adjacent
    /// pointer-sized arguments of an async fn are moved into its state with
    /// one 16-byte load over two 8-byte stores, a store-forwarding stall
    /// measured at +5 ns per acquire. Without leak detection the future is
    /// `acquire_within` itself behind one predictable branch; with it, the
    /// wrapper is boxed (one allocation per acquire, only then).
    fn acquire_tracked(
        &self,
        timeout: Option<Duration>,
        caller: Option<&'static Location<'static>>,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        match caller {
            None => AcquireFuture::Plain {
                fut: self.acquire_within(timeout),
            },
            Some(caller) => AcquireFuture::Tracked {
                fut: Box::pin(async move {
                    let mut guard = self.acquire_within(timeout).await?;
                    Pooled::set_caller(&mut guard, caller);
                    Ok(guard)
                }),
            },
        }
    }

    async fn acquire_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let shared = &*self.shared;
        // The slow parts (waiting, creating) are boxed, so the future stays
        // small and the fast path moves few bytes; they allocate only when
        // they run. The deadline arms a timer only when something waits.
        let mut deadline = Deadline::new(timeout, &shared.timers);
        let mut last_error = None;
        let mut waited = false;
        let mut grant = match shared.core.try_acquire() {
            Ok(grant) => grant,
            Err(Busy::Closed) => return Err(Error::Closed),
            Err(Busy::Full) => {
                waited = true;
                // One clock read serves the wait statistics and the deadline.
                let started = deadline.start();
                match deadline.run(self.wait()).await {
                    Some(grant) => {
                        self.waited(started, grant.is_ok());
                        grant?
                    }
                    None => return Err(self.timed_out(TimeoutPhase::Wait, None)),
                }
            }
        };
        // From here on this acquire owns a slot; `slot` gives it back (to the
        // next waiter, who may create with it) if the future is dropped or
        // fails. A resource held meanwhile is a local and drops with it.
        let mut slot = SlotGuard {
            shared,
            armed: true,
            recycling: false,
        };
        loop {
            match grant {
                Grant::Item(mut entry) => {
                    if let Some(reason) = shared.expired(&entry.info) {
                        shared.discarded(reason, &entry.info);
                        drop(entry);
                        grant = Grant::Slot;
                        continue;
                    }
                    // Dropped while recycling (cancelled, or the deadline
                    // passed), the resource is in an unknown state: it drops
                    // with `entry` and `slot` frees its slot.
                    slot.recycling = true;
                    let recycled = if shared.hooks.around_recycle {
                        match deadline
                            .run(Box::pin(shared.recycle_hooked(&mut entry)))
                            .await
                        {
                            Some(Ok(())) => Recycled::Ok,
                            Some(Err(RecycleFail::Manager(e))) => Recycled::Failed(Some(e)),
                            Some(Err(RecycleFail::Timeout)) => Recycled::Failed(None),
                            Some(Err(RecycleFail::Hook(kind, e))) => Recycled::Hook(kind, e),
                            None => Recycled::DeadlinePassed,
                        }
                    } else {
                        let fut = shared.manager.recycle(&mut entry.resource, &entry.info);
                        let mut fut = pin!(fut);
                        // Poll once without any timer: most recycles finish
                        // at once.
                        let result = match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                            Poll::Ready(result) => Some(result.map_err(Some)),
                            Poll::Pending => {
                                let mut inner =
                                    Deadline::new(shared.config.recycle_timeout, &shared.timers);
                                deadline
                                    .run(async {
                                        match inner.run(fut).await {
                                            Some(result) => result.map_err(Some),
                                            None => Err(None),
                                        }
                                    })
                                    .await
                            }
                        };
                        match result {
                            Some(Ok(())) => Recycled::Ok,
                            Some(Err(e)) => Recycled::Failed(e),
                            None => Recycled::DeadlinePassed,
                        }
                    };
                    slot.recycling = false;
                    match recycled {
                        Recycled::Ok => {
                            slot.armed = false;
                            return Ok(self.checked_out(entry, waited, None));
                        }
                        Recycled::Hook(hook, error) => {
                            shared.discarded(Reason::Hook(hook), &entry.info);
                            drop(entry);
                            // `slot` frees the slot.
                            return Err(Error::Hook { hook, error });
                        }
                        Recycled::Failed(e) => {
                            shared.stats.add(Counter::RecycleFailures, 1);
                            shared.recycle_failed(Reason::RecycleFailed, e.as_ref(), &entry.info);
                            last_error = e.or(last_error);
                            drop(entry);
                            grant = Grant::Slot;
                        }
                        Recycled::DeadlinePassed => {
                            shared.stats.add(Counter::Cancelled, 1);
                            drop(entry);
                            drop(slot);
                            return Err(self.timed_out(TimeoutPhase::Recycle, last_error));
                        }
                    }
                }
                Grant::Slot => {
                    if shared.core.is_closed() {
                        return Err(Error::Closed);
                    }
                    crate::upkeep::start(&self.shared);
                    // The create owns the slot while it runs; if this acquire
                    // gives up on it, it finishes in the background (see
                    // `InFlight`).
                    slot.armed = false;
                    let mut create = InFlight::new(&self.shared);
                    let created = deadline.run(&mut create).await;
                    if created.is_some() {
                        // Done: the slot is this acquire's again.
                        slot.armed = true;
                    }
                    return match created {
                        Some(Ok(entry)) => {
                            slot.armed = false;
                            Ok(self.checked_out(entry, waited, None))
                        }
                        Some(Err(CreateFail::Manager(e))) => Err(Error::Create(e)),
                        Some(Err(CreateFail::Hook(hook, error))) => {
                            Err(Error::Hook { hook, error })
                        }
                        // Traced by `create`; not an acquire timeout.
                        Some(Err(CreateFail::Timeout)) => Err(Error::Timeout {
                            phase: TimeoutPhase::Create,
                            last_error,
                        }),
                        None => Err(self.timed_out(TimeoutPhase::Create, last_error)),
                    };
                }
            }
        }
    }

    #[cold]
    fn timed_out(&self, phase: TimeoutPhase, last_error: Option<M::Error>) -> Error<M::Error> {
        self.shared.stats.add(Counter::Timeouts, 1);
        tracing::warn!(
            target: "quickslot",
            pool = %self.shared.config.name,
            %phase,
            last_error = last_error.as_ref().map(tracing::field::display),
            "acquire timed out",
        );
        Error::Timeout { phase, last_error }
    }

    fn checked_out(
        &self,
        mut entry: Entry<M::Resource>,
        waited: bool,
        caller: Option<&'static Location<'static>>,
    ) -> Pooled<M> {
        if !waited {
            self.shared.stats.acquired_immediately();
        }
        if self.shared.config.stamp_checkout {
            self.shared.stamp(&mut entry, caller);
        }
        Pooled::new(self.shared.clone(), entry)
    }

    /// Waits in line for a grant.
    async fn wait(&self) -> Result<Grant<Entry<M::Resource>>, Error<M::Error>> {
        let shared = &*self.shared;
        let waiter = shared.core.new_waiter();
        let mut registration = Registration {
            core: &shared.core,
            waiter: &waiter,
            done: false,
        };
        shared.core.register(&waiter);
        // Listen, re-check, wait: the record's one notification comes after
        // its state changed, so a change before `listener!` is seen by the
        // re-check and one after it wakes the listener. The listener lives in
        // this future (no allocation).
        let result = loop {
            match waiter.poll() {
                Outcome::Granted(grant) => break Ok(grant),
                Outcome::Closed => break Err(Error::Closed),
                Outcome::Waiting => {}
            }
            crate::sync::listener!(waiter.event() => listener);
            match waiter.poll() {
                Outcome::Granted(grant) => break Ok(grant),
                Outcome::Closed => break Err(Error::Closed),
                Outcome::Waiting => {}
            }
            listener.await;
        };
        registration.done = true;
        drop(registration);
        shared.core.retire_waiter(waiter);
        result
    }

    /// Counts a wait that ended with a grant (`served`) or the pool closed.
    fn waited(&self, started: Instant, served: bool) {
        let shared = &*self.shared;
        if served {
            shared.stats.add(Counter::AcquiredAfterWait, 1);
        }
        let waited = started.elapsed();
        shared.stats.add(
            Counter::WaitNanos,
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
        );
        #[cfg(feature = "metrics")]
        if let Some(m) = &shared.metrics {
            m.acquire_wait.record(waited);
        }
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
        let shared = &*self.shared;
        loop {
            if shared.core.is_closed() {
                return Err(TryAcquireError::Closed);
            }
            match shared.core.pop_idle() {
                Some(entry) => {
                    if let Some(reason) = shared.expired(&entry.info) {
                        shared.discard(reason, entry);
                        continue;
                    }
                    return Ok(self.checked_out(entry, false, self.caller()));
                }
                None if shared.core.waiting() > 0 => return Err(TryAcquireError::Busy),
                None if shared.core.size() < shared.core.max_size() => {
                    return Err(TryAcquireError::Empty)
                }
                None => return Err(TryAcquireError::Exhausted),
            }
        }
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
        self.shared.core.close();
    }

    /// Whether [`close`](Self::close) (or [`drain`](Self::drain)) was
    /// called.
    pub fn is_closed(&self) -> bool {
        self.shared.core.is_closed()
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
    /// # Panics
    ///
    /// Outside a Tokio runtime with the time driver, if anything is still
    /// checked out.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only; the pool stays closed.
    pub async fn drain(&self, timeout: Duration) -> Drained {
        let core = &self.shared.core;
        core.close();
        let checked_out = core.size();
        let deadline = Instant::now() + timeout;
        loop {
            let listener = core.listen_emptied();
            let outstanding = core.size();
            if outstanding == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                break;
            }
        }
        let outstanding = core.size();
        if outstanding > 0 {
            tracing::warn!(
                target: "quickslot",
                pool = %self.shared.config.name,
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
        let config = &self.shared.config;
        let limit = config.max_size_limit.unwrap_or(config.max_size);
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
        self.shared.core.resize(max_size);
        self.shared.upkeep.wake();
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
        match self.shared.fill_min_idle().await {
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
    pub fn retain(&self, mut keep: impl FnMut(&mut M::Resource, &ResourceInfo) -> bool) -> usize {
        let shared = &*self.shared;
        let mut taken = Vec::with_capacity(shared.core.idle_len());
        while let Some(entry) = shared.core.pop_idle_any() {
            taken.push(entry);
        }
        let mut removed = 0;
        for mut entry in taken {
            if keep(&mut entry.resource, &entry.info) {
                shared.core.release(Grant::Item(entry));
            } else {
                removed += 1;
                drop(entry);
                shared.core.release(Grant::Slot);
            }
        }
        shared.stats.add(Counter::Retained, removed as u64);
        removed
    }
}

impl<M: Manager> Shared<M> {
    pub(crate) fn status(&self) -> Status {
        let core = &self.core;
        let mut status = Status {
            max_size: core.max_size(),
            size: core.size(),
            idle: core.idle_len(),
            in_use: 0,
            creating: 0,
            waiting: core.waiting(),
            acquired_immediately: 0,
            acquired_after_wait: 0,
            timeouts: 0,
            created: 0,
            create_errors: 0,
            recycle_failures: 0,
            discarded: Default::default(),
            total_wait: Duration::ZERO,
            leaks_reported: 0,
        };
        self.stats.snapshot_into(&mut status);
        status.discarded.closed = core.dropped_closed() as u64;
        status.discarded.resized = core.dropped_resized() as u64;
        status.in_use = status
            .size
            .saturating_sub(status.idle)
            .saturating_sub(status.creating);
        status
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn publish_gauges(&self) {
        if let Some(m) = &self.metrics {
            m.publish(&self.status());
        }
    }

    /// Why a resource found idle must go: past its lifetime, or idle past
    /// `idle_timeout` while the pool holds more than `min_idle` resources.
    /// Reads the clock only when one of them is set.
    #[inline]
    fn expired(&self, info: &ResourceInfo) -> Option<Reason> {
        let c = &self.config;
        if c.max_lifetime.is_none() && c.idle_timeout.is_none() {
            return None;
        }
        self.expired_at(info, Instant::now())
    }

    #[cold]
    fn expired_at(&self, info: &ResourceInfo, now: Instant) -> Option<Reason> {
        if info.expired_at(now) {
            return Some(Reason::Expired);
        }
        let idle_too_long = matches!(
            (self.config.idle_timeout, info.last_returned),
            (Some(idle), Some(at)) if now.saturating_duration_since(at) >= idle
        );
        (idle_too_long && self.core.size() > self.config.min_idle).then_some(Reason::IdleTimeout)
    }

    /// Counts and traces a resource leaving the pool. The caller drops it.
    #[cold]
    pub(crate) fn discarded(&self, reason: Reason, info: &ResourceInfo) {
        self.stats.add(reason.counter(), 1);
        tracing::debug!(
            target: "quickslot",
            pool = %self.config.name,
            reason = reason.as_str(),
            age = ?info.age(),
            uses = info.uses,
            "resource discarded",
        );
        if self.config.min_idle > 0 {
            self.upkeep.wake();
        }
    }

    /// Drops a resource and frees its slot.
    #[cold]
    pub(crate) fn discard(&self, reason: Reason, entry: Entry<M::Resource>) {
        self.discarded(reason, &entry.info);
        drop(entry);
        self.core.release(Grant::Slot);
    }

    #[cold]
    pub(crate) fn recycle_failed(&self, reason: Reason, e: Option<&M::Error>, info: &ResourceInfo) {
        tracing::info!(
            target: "quickslot",
            pool = %self.config.name,
            error = e.map(tracing::field::display),
            timed_out = e.is_none(),
            "{}",
            reason.as_str(),
        );
        self.discarded(reason, info);
    }

    /// Creates one resource under `create_timeout`, and runs `post_create`.
    pub(crate) async fn create(&self) -> Result<Entry<M::Resource>, CreateFail<M::Error>> {
        self.stats.creating(1);
        let _creating = CreatingGauge(&self.stats);
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let mut deadline = Deadline::new(self.config.create_timeout, &self.timers);
        let created = deadline
            .run(async {
                let resource = self.manager.create().await.map_err(CreateFail::Manager)?;
                let info = ResourceInfo::new(
                    Instant::now(),
                    self.config.max_lifetime.map(crate::upkeep::jittered),
                );
                let mut entry = Box::new(Slot {
                    resource,
                    info,
                    checked_at: None,
                    stamp: None,
                });
                if let Some(hook) = &self.hooks.post_create {
                    if let Err((kind, e)) = hook
                        .run(HookKind::PostCreate, &mut entry.resource, &entry.info)
                        .await
                    {
                        self.discarded(Reason::Hook(kind), &entry.info);
                        return Err(CreateFail::Hook(kind, e));
                    }
                }
                Ok(entry)
            })
            .await
            .unwrap_or(Err(CreateFail::Timeout));
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.create_time.record(started.elapsed());
        }
        match &created {
            Ok(_) => {
                self.stats.add(Counter::Created, 1);
                tracing::debug!(target: "quickslot", pool = %self.config.name, "resource created");
            }
            Err(fail) => {
                self.stats.add(Counter::CreateErrors, 1);
                match fail {
                    CreateFail::Manager(e) => tracing::warn!(
                        target: "quickslot",
                        pool = %self.config.name,
                        error = %e,
                        "create failed",
                    ),
                    CreateFail::Timeout => tracing::warn!(
                        target: "quickslot",
                        pool = %self.config.name,
                        "create failed: create_timeout passed",
                    ),
                    CreateFail::Hook(kind, e) => tracing::warn!(
                        target: "quickslot",
                        pool = %self.config.name,
                        hook = %kind,
                        error = %e,
                        "create failed: hook failed",
                    ),
                }
            }
        }
        created
    }

    /// The recycle hooks around [`Manager::recycle`], all under
    /// `recycle_timeout`.
    pub(crate) async fn recycle_hooked(
        &self,
        entry: &mut Slot<M::Resource>,
    ) -> Result<(), RecycleFail<M::Error>> {
        let mut deadline = Deadline::new(self.config.recycle_timeout, &self.timers);
        let run = async {
            if let Some(hook) = &self.hooks.pre_recycle {
                hook.run(HookKind::PreRecycle, &mut entry.resource, &entry.info)
                    .await
                    .map_err(|(k, e)| RecycleFail::Hook(k, e))?;
            }
            self.manager
                .recycle(&mut entry.resource, &entry.info)
                .await
                .map_err(RecycleFail::Manager)?;
            if let Some(hook) = &self.hooks.post_recycle {
                hook.run(HookKind::PostRecycle, &mut entry.resource, &entry.info)
                    .await
                    .map_err(|(k, e)| RecycleFail::Hook(k, e))?;
            }
            Ok(())
        };
        deadline.run(run).await.unwrap_or(Err(RecycleFail::Timeout))
    }

    /// Stamps a checkout: its time and, with leak detection, its entry in
    /// the checked-out registry.
    #[cold]
    fn stamp(&self, entry: &mut Slot<M::Resource>, caller: Option<&'static Location<'static>>) {
        let at = Instant::now();
        let ticket = self.leaks.as_ref().map(|leaks| leaks.insert(at, caller));
        entry.stamp = Some(Stamp { at, ticket });
    }

    /// Ends a stamped checkout (also from `detach` and `discard`).
    #[cold]
    pub(crate) fn unstamp(&self, entry: &mut Slot<M::Resource>) {
        let Some(stamp) = entry.stamp.take() else {
            return;
        };
        if let (Some(leaks), Some(ticket)) = (&self.leaks, stamp.ticket) {
            leaks.remove(ticket);
        }
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.hold_time.record(stamp.at.elapsed());
        }
    }

    /// A resource comes back from its user.
    pub(crate) fn give_back(&self, mut entry: Entry<M::Resource>) {
        if self.manager.is_broken(&mut entry.resource) {
            if self.config.stamp_checkout {
                self.unstamp(&mut entry);
            }
            self.discard(Reason::Broken, entry);
            return;
        }
        entry.info.uses += 1;
        if self.release_extras {
            return self.give_back_slow(entry);
        }
        self.core.release(Grant::Item(entry));
    }

    /// The return path when something is configured to run on it.
    #[cold]
    fn give_back_slow(&self, mut entry: Entry<M::Resource>) {
        if self.config.stamp_checkout {
            self.unstamp(&mut entry);
        }
        if let Some(hook) = &self.hooks.on_release {
            if let Err(e) = hook(&mut entry.resource, &entry.info) {
                tracing::warn!(
                    target: "quickslot",
                    pool = %self.config.name,
                    error = %e,
                    "on_release hook failed",
                );
                self.discard(Reason::Hook(HookKind::OnRelease), entry);
                return;
            }
        }
        if self.config.track_idle_time || self.config.max_lifetime.is_some() {
            let now = Instant::now();
            if entry.info.expired_at(now) {
                self.discard(Reason::Expired, entry);
                return;
            }
            if self.config.track_idle_time {
                entry.info.last_returned = Some(now);
            }
        }
        self.core.release(Grant::Item(entry));
    }
}

impl<M: Manager> Drop for Shared<M> {
    fn drop(&mut self) {
        // The upkeep task holds only a weak reference: wake it so it ends now
        // rather than at its next round.
        self.upkeep.wake();
    }
}

/// Decrements the creating gauge when a create ends or is dropped.
struct CreatingGauge<'a>(&'a Stats);

impl Drop for CreatingGauge<'_> {
    fn drop(&mut self) {
        self.0.creating(-1);
    }
}

/// The slot an acquire owns between getting a grant and returning a guard.
/// Dropped while armed, it frees the slot.
struct SlotGuard<'a, M: Manager> {
    shared: &'a Shared<M>,
    armed: bool,
    recycling: bool,
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            if self.recycling {
                self.shared.stats.add(Counter::Cancelled, 1);
            }
            self.shared.core.release(Grant::Slot);
        }
    }
}

type CreateFuture<M> = Pin<
    Box<
        dyn Future<
                Output = Result<Entry<<M as Manager>::Resource>, CreateFail<<M as Manager>::Error>>,
            > + Send,
    >,
>;

/// A create started by an acquire. It owns the acquire's slot while it
/// runs. If the acquire gives up on it (its deadline passed, or its future
/// was dropped), the create is not thrown away: it finishes in a background
/// task, bounded by `create_timeout` or else `acquire_timeout`, and its
/// resource goes to the next waiter (or idle), or its slot is freed. So a
/// stalled server sees at most `max_size` connection attempts at a time,
/// not a new one for every acquire that times out. With neither timeout,
/// or outside a Tokio runtime, the create is dropped and its slot freed at
/// once.
struct InFlight<M: Manager> {
    shared: Arc<Shared<M>>,
    fut: Option<CreateFuture<M>>,
}

impl<M: Manager> InFlight<M> {
    fn new(shared: &Arc<Shared<M>>) -> Self {
        let owned = shared.clone();
        Self {
            shared: shared.clone(),
            fut: Some(Box::pin(async move { owned.create().await })),
        }
    }
}

impl<M: Manager> Future for InFlight<M> {
    type Output = Result<Entry<M::Resource>, CreateFail<M::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let fut = self.fut.as_mut().expect("polled after completion");
        let out = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<M: Manager> Drop for InFlight<M> {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else {
            return;
        };
        let shared = &self.shared;
        let bound = shared
            .config
            .create_timeout
            .or(shared.config.acquire_timeout);
        let runtime = tokio::runtime::Handle::try_current();
        // A create that panicked (we are unwinding through it) cannot be
        // resumed.
        let (Some(bound), Ok(runtime), false) = (bound, runtime, std::thread::panicking()) else {
            drop(fut);
            shared.core.release(Grant::Slot);
            return;
        };
        tracing::debug!(
            target: "quickslot",
            pool = %shared.config.name,
            "create abandoned by its acquire: finishing it in the background",
        );
        // Frees the slot if the task is dropped unfinished (or never runs:
        // a runtime shutting down drops it at once).
        let slot = OwnedSlot::new(shared.clone());
        runtime.spawn(async move {
            let mut slot = slot;
            let created = tokio::time::timeout(bound, fut).await;
            let shared = slot.disarm();
            match created {
                Ok(Ok(entry)) => shared.core.release(Grant::Item(entry)),
                // Counted and traced by `create` (a timeout here is not).
                _ => shared.core.release(Grant::Slot),
            }
        });
    }
}

/// A slot held outside an acquire (a background create, a `min_idle`
/// create, a keepalive check), by reference or by `Arc`: freed if dropped
/// while still held, handed back by [`disarm`](Self::disarm) otherwise.
pub(crate) struct OwnedSlot<M: Manager, P: Deref<Target = Shared<M>>>(Option<P>);

impl<M: Manager, P: Deref<Target = Shared<M>>> OwnedSlot<M, P> {
    pub(crate) fn new(shared: P) -> Self {
        Self(Some(shared))
    }

    /// The holder is done with the slot itself (it releases a grant).
    pub(crate) fn disarm(&mut self) -> P {
        self.0.take().expect("disarmed once")
    }
}

impl<M: Manager, P: Deref<Target = Shared<M>>> Drop for OwnedSlot<M, P> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.core.release(Grant::Slot);
        }
    }
}

/// A queued waiter; leaves the line if dropped before it is served.
struct Registration<'a, T> {
    core: &'a Core<T>,
    waiter: &'a Arc<Waiter<T>>,
    done: bool,
}

impl<T> Drop for Registration<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.core.cancel(self.waiter);
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
