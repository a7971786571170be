//! [`Pool`]: the public handle over the concurrency core.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::builder::{Builder, Config};
use crate::core::{Busy, Core};
use crate::error::{Error, TimeoutPhase, TryAcquireError};
use crate::guard::Pooled;
use crate::handoff::{Grant, Outcome, Waiter};
use crate::manager::{Manager, ResourceInfo};
use crate::status::{Counter, Stats, Status};
use crate::sync::Arc;

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
}

/// Everything the handles of one pool share.
pub(crate) struct Shared<M: Manager> {
    pub(crate) core: Core<Entry<M::Resource>>,
    pub(crate) manager: M,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
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

    pub(crate) fn from_parts(manager: M, config: Config) -> Self {
        Self {
            shared: Arc::new(Shared {
                core: Core::new(config.max_size, config.reuse_order),
                manager,
                config,
                stats: Stats::new(),
            }),
        }
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
    /// next waiter), a create in flight is dropped and its slot freed, and a
    /// resource being recycled is dropped (its state is unknown) and its
    /// slot freed.
    pub fn acquire(&self) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        self.acquire_within(self.shared.config.acquire_timeout)
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
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + '_ {
        self.acquire_within(Some(timeout))
    }

    async fn acquire_within(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Pooled<M>, Error<M::Error>> {
        let shared = &*self.shared;
        // The slow parts (waiting, creating) are boxed, so the future stays
        // small and the fast path moves few bytes; they allocate only when
        // they run. The deadline arms a timer only when something waits.
        let mut deadline = Deadline::new(timeout);
        let mut last_error = None;
        let mut waited = false;
        let mut grant = match shared.core.try_acquire() {
            Ok(grant) => grant,
            Err(Busy::Closed) => return Err(Error::Closed),
            Err(Busy::Full) => {
                waited = true;
                match deadline.run(self.wait()).await {
                    Some(grant) => grant?,
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
                    if shared.expired(&entry.info) {
                        shared.stats.add(Counter::Expired, 1);
                        drop(entry);
                        grant = Grant::Slot;
                        continue;
                    }
                    // Dropped while recycling (cancelled, or the deadline
                    // passed), the resource is in an unknown state: it drops
                    // with `entry` and `slot` frees its slot.
                    slot.recycling = true;
                    let recycled = {
                        let fut = shared.manager.recycle(&mut entry.resource, &entry.info);
                        let mut fut = pin!(fut);
                        // Poll once without any timer: most recycles finish
                        // at once.
                        match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                            Poll::Ready(result) => Some(result.map_err(Some)),
                            Poll::Pending => {
                                let mut inner = Deadline::new(shared.config.recycle_timeout);
                                deadline
                                    .run(async {
                                        match inner.run(fut).await {
                                            Some(result) => result.map_err(Some),
                                            None => Err(None),
                                        }
                                    })
                                    .await
                            }
                        }
                    };
                    slot.recycling = false;
                    match recycled {
                        Some(Ok(())) => {
                            slot.armed = false;
                            return Ok(self.checked_out(entry, waited));
                        }
                        Some(Err(e)) => {
                            shared.stats.add(Counter::RecycleFailures, 1);
                            shared.stats.add(Counter::RecycleFailed, 1);
                            last_error = e.or(last_error);
                            drop(entry);
                            grant = Grant::Slot;
                        }
                        None => {
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
                    return match deadline.run(Box::pin(shared.create())).await {
                        Some(Ok(entry)) => {
                            slot.armed = false;
                            Ok(self.checked_out(entry, waited))
                        }
                        Some(Err(Some(e))) => Err(Error::Create(e)),
                        Some(Err(None)) => Err(Error::Timeout {
                            phase: TimeoutPhase::Create,
                            last_error,
                        }),
                        None => Err(self.timed_out(TimeoutPhase::Create, last_error)),
                    };
                }
            }
        }
    }

    fn timed_out(&self, phase: TimeoutPhase, last_error: Option<M::Error>) -> Error<M::Error> {
        self.shared.stats.add(Counter::Timeouts, 1);
        Error::Timeout { phase, last_error }
    }

    fn checked_out(&self, entry: Entry<M::Resource>, waited: bool) -> Pooled<M> {
        if !waited {
            self.shared.stats.acquired_immediately();
        }
        Pooled::new(self.shared.clone(), entry)
    }

    /// Waits in line for a grant.
    async fn wait(&self) -> Result<Grant<Entry<M::Resource>>, Error<M::Error>> {
        let shared = &*self.shared;
        let started = Instant::now();
        let waiter = Arc::new(Waiter::new());
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
        if result.is_ok() {
            shared.stats.add(Counter::AcquiredAfterWait, 1);
        }
        let waited = started.elapsed().as_nanos();
        shared.stats.add(
            Counter::WaitNanos,
            u64::try_from(waited).unwrap_or(u64::MAX),
        );
        result
    }

    /// Checks out an idle resource without waiting and without creating one.
    ///
    /// It skips [`Manager::recycle`] (which may await) but drops resources
    /// past `max_lifetime` or `idle_timeout`, and never jumps the line.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError`] says why nothing was handed out.
    pub fn try_acquire(&self) -> Result<Pooled<M>, TryAcquireError> {
        let shared = &*self.shared;
        loop {
            if shared.core.is_closed() {
                return Err(TryAcquireError::Closed);
            }
            match shared.core.pop_idle() {
                Some(entry) if shared.expired(&entry.info) => {
                    shared.stats.add(Counter::Expired, 1);
                    drop(entry);
                    shared.core.release(Grant::Slot);
                }
                Some(entry) => return Ok(self.checked_out(entry, false)),
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
        let core = &self.shared.core;
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
        };
        self.shared.stats.snapshot_into(&mut status);
        status.discarded.closed = core.dropped_closed() as u64;
        status.in_use = status
            .size
            .saturating_sub(status.idle)
            .saturating_sub(status.creating);
        status
    }

    /// Closes the pool: waiting acquires fail with [`Error::Closed`], idle
    /// resources are dropped now, resources returned later are dropped, and
    /// later acquires fail. Closing twice does nothing more.
    pub fn close(&self) {
        self.shared.core.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.core.is_closed()
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
    /// Whether a resource found idle is past `idle_timeout` or
    /// `max_lifetime`. Reads the clock only when one of them is set.
    fn expired(&self, info: &ResourceInfo) -> bool {
        let c = &self.config;
        if c.max_lifetime.is_none() && c.idle_timeout.is_none() {
            return false;
        }
        let now = Instant::now();
        c.max_lifetime
            .is_some_and(|max| now.saturating_duration_since(info.created_at) >= max)
            || matches!(
                (c.idle_timeout, info.last_returned),
                (Some(idle), Some(at)) if now.saturating_duration_since(at) >= idle
            )
    }

    /// `Err(None)` is a `create_timeout`.
    async fn create(&self) -> Result<Entry<M::Resource>, Option<M::Error>> {
        self.stats.creating(1);
        let _creating = CreatingGauge(&self.stats);
        let mut deadline = Deadline::new(self.config.create_timeout);
        match deadline.run(self.manager.create()).await {
            Some(Ok(resource)) => {
                self.stats.add(Counter::Created, 1);
                Ok(Box::new(Slot {
                    resource,
                    info: ResourceInfo::new(Instant::now()),
                }))
            }
            Some(Err(e)) => {
                self.stats.add(Counter::CreateErrors, 1);
                Err(Some(e))
            }
            None => {
                self.stats.add(Counter::CreateErrors, 1);
                Err(None)
            }
        }
    }

    /// A resource comes back from its user.
    pub(crate) fn give_back(&self, mut entry: Entry<M::Resource>) {
        if self.manager.is_broken(&mut entry.resource) {
            self.stats.add(Counter::Broken, 1);
            drop(entry);
            self.core.release(Grant::Slot);
            return;
        }
        entry.info.uses += 1;
        if self.config.track_idle_time || self.config.max_lifetime.is_some() {
            let now = Instant::now();
            if self
                .config
                .max_lifetime
                .is_some_and(|max| now.saturating_duration_since(entry.info.created_at) >= max)
            {
                self.stats.add(Counter::Expired, 1);
                drop(entry);
                self.core.release(Grant::Slot);
                return;
            }
            if self.config.track_idle_time {
                entry.info.last_returned = Some(now);
            }
        }
        self.core.release(Grant::Item(entry));
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

/// A deadline that reads the clock and arms a timer only when something it
/// covers has to wait, so an acquire served at once never touches the timer
/// wheel. Several phases run under one `Deadline` share its end.
struct Deadline {
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            sleep: None,
        }
    }

    /// Runs `fut` until it completes (`Some`) or the deadline passes
    /// (`None`, and `fut` is dropped).
    async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let Some(timeout) = self.timeout else {
            return Some(fut.await);
        };
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
                .as_mut()
                .poll(cx)
                .map(|()| None)
        })
        .await
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
