//! [`Shared`]: everything the handles of one pool share, and the two linear
//! tokens through which every path holds capacity.
//!
//! All of a pool's state lives here, behind private fields; the acquire,
//! create and upkeep modules reach it through the methods below.
//!
//! # Tokens
//!
//! A *slot* is one unit of capacity: counted in the core's size from the
//! moment a grow or a grant gives it out until it is released. Outside the
//! core, a slot is only ever held in one of two `#[must_use]` tokens:
//!
//! * [`Slot`]: capacity with no resource yet (a create in flight, a
//!   `Grant::Slot`). Dropping it frees the slot; [`Slot::fill`] turns it
//!   into a [`Held`].
//! * [`Held`]: capacity with its resource. It is consumed by
//!   [`park`](Held::park) (back to the pool: the next waiter or idle),
//!   [`discard`](Held::discard), [`detach`](Held::detach) or
//!   [`empty`](Held::empty) (the resource dropped, its slot kept). Dropped
//!   otherwise (an acquire cancelled mid-recycle, user code that panicked
//!   while the pool held it), it drops the resource, whose state is
//!   unknown, and frees the slot.
//!
//! So every path that holds a slot (acquire, background create, `min_idle`
//! refill, keepalive, `retain`, the return of a guard) gives it back exactly
//! once, on every exit, unwinding included: the compiler checks what flags
//! used to.
//!
//! In a pool that draws on a shared [`Capacity`](crate::Capacity), a slot
//! token also carries the budget's permit when it has one (always, once it
//! holds or held a resource), and frees both; see [`crate::capacity`].

use std::ops::Deref;
use std::panic::Location;
use std::time::Duration;

use crate::capacity::{Budget, Member, Reclaim};
use crate::config::Config;
use crate::error::HookKind;
use crate::handoff::Grant;
use crate::hooks::Hooks;
use crate::leak::{Leaks, Stamp};
use crate::manager::{Manager, ResourceInfo};
use crate::raw::{Core, Sink};
use crate::rt::{self, Instant};
use crate::status::{Counter, Stats, Status};
use crate::sync::{fence, Arc, AtomicBool, AtomicU64, AtomicUsize, Event, Ordering};
use crate::timer::Timers;

/// A resource with its bookkeeping, as it sits in the pool.
///
/// Boxed once at creation ([`Entry`]): the idle queue and the hand-off then
/// move one pointer, whatever the size of the resource.
#[derive(Debug)]
pub(crate) struct Record<R> {
    pub(crate) resource: R,
    pub(crate) info: ResourceInfo,
    /// The last keepalive check, if any (upkeep only).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) checked_at: Option<Instant>,
    /// The current checkout, when checkouts are stamped (leak detection or
    /// hold-time metrics).
    stamp: Option<Stamp>,
}

/// A boxed [`Record`]: what the core's idle store and hand-off carry.
pub(crate) type Entry<R> = Box<Record<R>>;

impl<R> Record<R> {
    pub(crate) fn new(resource: R, info: ResourceInfo) -> Entry<R> {
        Box::new(Self {
            resource,
            info,
            checked_at: None,
            stamp: None,
        })
    }
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
    Retain,
    /// Closed to free its share of a [`Capacity`](crate::Capacity) for a
    /// waiting acquire of another pool.
    Reclaimed,
    Hook(HookKind),
}

impl Reason {
    fn counter(self) -> Counter {
        match self {
            Self::Broken => Counter::Broken,
            Self::Expired | Self::IdleTimeout => Counter::Expired,
            Self::RecycleFailed | Self::KeepaliveFailed => Counter::RecycleFailed,
            Self::Retain => Counter::RetainRejected,
            Self::Reclaimed => Counter::Reclaimed,
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
            Self::Retain => "removed by retain",
            Self::Reclaimed => "reclaimed for another pool",
            Self::Hook(HookKind::PostCreate) => "post_create hook failed",
            Self::Hook(HookKind::PreRecycle) => "pre_recycle hook failed",
            Self::Hook(HookKind::PostRecycle) => "post_recycle hook failed",
            Self::Hook(_) => "on_release hook failed",
        }
    }
}

/// A moving estimate of how fast the line advances, for
/// [`Builder::fail_fast_when_late`](crate::Builder::fail_fast_when_late):
/// an exponentially weighted mean (weight 1/8) of the intervals between
/// consecutive waits that ended with a grant, recorded only when the
/// setting is on.
///
/// The expected wait of a newcomer with `k` acquires ahead is `(k + 1)`
/// times that mean. It assumes the recent service rate holds: with
/// independent, similar hold times the error of a sum of `k + 1` intervals
/// shrinks like `1 / sqrt(k + 1)`, so refusals are reliable for long lines
/// and cautious for short ones; a burst of slow returns makes it
/// pessimistic for about eight grants. It gives no estimate (so refuses
/// nothing) before eight grants, or when the last grant is more than ten
/// mean intervals old.
#[derive(Debug)]
pub(crate) struct ServiceRate {
    /// When the last wait ended with a grant, in nanoseconds since the
    /// pool's epoch; 0 before the first.
    last: AtomicU64,
    /// The mean interval, in nanoseconds.
    mean: AtomicU64,
    samples: AtomicU64,
}

impl ServiceRate {
    const MIN_SAMPLES: u64 = 8;

    fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            mean: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        }
    }

    /// A wait ended with a grant at `now`.
    pub(crate) fn record(&self, now: u64) {
        // Relaxed throughout: an estimate; a racing update loses a sample.
        let prev = self.last.swap(now, Ordering::Relaxed);
        if prev == 0 || now <= prev {
            return;
        }
        let interval = now - prev;
        let samples = self.samples.fetch_add(1, Ordering::Relaxed);
        let mean = self.mean.load(Ordering::Relaxed);
        let next = if samples == 0 {
            interval
        } else {
            mean - mean / 8 + interval / 8
        };
        self.mean.store(next, Ordering::Relaxed);
    }

    /// The expected wait behind `ahead` acquires, at `now`; `None` without
    /// a fresh estimate.
    pub(crate) fn expected_wait(&self, ahead: usize, now: u64) -> Option<Duration> {
        // Relaxed: an estimate.
        if self.samples.load(Ordering::Relaxed) < Self::MIN_SAMPLES {
            return None;
        }
        let mean = self.mean.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        if mean == 0 || now.saturating_sub(last) > mean.saturating_mul(10) {
            return None;
        }
        Some(Duration::from_nanos(mean.saturating_mul(ahead as u64 + 1)))
    }
}

/// The pool's side of its upkeep task (see `upkeep`).
#[derive(Debug)]
pub(crate) struct UpkeepHandle {
    /// Whether the task was spawned.
    started: AtomicBool,
    /// Wakes the task early (a discard under `min_idle`, a resize, the pool
    /// dropped). Shared with the task, which must not keep the pool alive.
    /// The task listens before each round's checks, so a wake during a
    /// round is not lost: it asks for another round at once. Not built
    /// under loom, which builds no task.
    #[cfg(not(loom))]
    wake: Arc<Event>,
}

#[cfg_attr(loom, allow(dead_code))] // the upkeep task is not built under loom
impl UpkeepHandle {
    fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            #[cfg(not(loom))]
            wake: Arc::new(Event::new()),
        }
    }

    /// Asks for an upkeep round now. A no-op before the task starts.
    pub(crate) fn wake(&self) {
        // One listener at most: the task's.
        #[cfg(not(loom))]
        self.wake.notify(1);
    }

    /// Whether the task was started already.
    pub(crate) fn started(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `claim_start`.
        self.started.load(Ordering::Acquire)
    }

    /// True for exactly one caller: the one that spawns the task.
    pub(crate) fn claim_start(&self) -> bool {
        // AcqRel: exactly one caller wins the swap.
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// The task's end of the wake-up signal.
    #[cfg(not(loom))]
    pub(crate) fn signal(&self) -> Arc<Event> {
        self.wake.clone()
    }
}

/// The manager, held by the core as the sink of the items the core drops
/// itself, so that each goes through [`Manager::detach`], and the shared
/// budget, if any, which gets the item's permit back (the core has freed
/// its slot already).
pub(crate) struct Departures<M> {
    manager: M,
    budget: Option<Arc<Budget>>,
}

impl<M: Manager> Sink<Entry<M::Resource>> for Departures<M> {
    fn drop_item(&self, entry: Entry<M::Resource>) {
        // Given back even if `detach` or the resource's `Drop` panics.
        struct Permit<'a>(Option<&'a Budget>);
        impl Drop for Permit<'_> {
            fn drop(&mut self) {
                if let Some(budget) = self.0 {
                    budget.give_back();
                }
            }
        }
        let _permit = Permit(self.budget.as_deref());
        let mut entry = entry;
        self.manager.detach(&mut entry.resource);
    }
}

/// Everything the handles of one pool share.
pub(crate) struct Shared<M: Manager> {
    /// The core, which also holds the manager (see [`Departures`]).
    core: Core<Entry<M::Resource>, Departures<M>>,
    config: Config,
    stats: Stats,
    hooks: Hooks<M::Resource>,
    upkeep: UpkeepHandle,
    /// Idle deadline timers, reused by later waits.
    timers: Timers,
    /// The checked-out registry, with a `leak_threshold`.
    leaks: Option<Leaks>,
    /// The last resource id given out (see [`ResourceInfo::id`]).
    last_id: AtomicU64,
    /// The origin of the pool's nanosecond clock (for [`ServiceRate`]).
    epoch: Instant,
    rate: ServiceRate,
    /// This pool's id in its budget (with a shared capacity).
    member_id: u64,
    /// Acquires that hold a slot and wait for the budget's permit.
    awaiting_permit: AtomicUsize,
    /// Notified when a resource goes idle while `awaiting_permit` is
    /// non-zero, or the pool closes.
    item_parked: Event,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, config: Config, hooks: Hooks<M::Resource>) -> Self {
        let budget = config.shared_capacity.as_ref().map(|c| c.budget().clone());
        let member_id = budget.as_ref().map_or(0, |b| b.member_id());
        let core = Core::with_sink(
            config.max_size,
            config.capacity(),
            config.reuse_order,
            Departures { manager, budget },
        );
        Self {
            core: if config.adopting {
                core.adopting()
            } else {
                core
            },
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
            upkeep: UpkeepHandle::new(),
            timers: Timers::new(),
            last_id: AtomicU64::new(0),
            epoch: rt::now(),
            rate: ServiceRate::new(),
            member_id,
            awaiting_permit: AtomicUsize::new(0),
            item_parked: Event::new(),
        }
    }

    // ----- parts -----

    pub(crate) fn core(&self) -> &Core<Entry<M::Resource>, Departures<M>> {
        &self.core
    }

    pub(crate) fn manager(&self) -> &M {
        &self.core.sink().manager
    }

    /// The shared capacity this pool draws on, if any.
    pub(crate) fn budget(&self) -> Option<&Arc<Budget>> {
        self.core.sink().budget.as_ref()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn hooks(&self) -> &Hooks<M::Resource> {
        &self.hooks
    }

    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    pub(crate) fn upkeep(&self) -> &UpkeepHandle {
        &self.upkeep
    }

    pub(crate) fn leaks(&self) -> Option<&Leaks> {
        self.leaks.as_ref()
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.metrics.as_ref()
    }

    /// The line's service rate estimate.
    pub(crate) fn rate(&self) -> &ServiceRate {
        &self.rate
    }

    /// `at` in nanoseconds since the pool was built (at least 1).
    pub(crate) fn clock(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The id of a new resource: unique within the pool.
    pub(crate) fn next_id(&self) -> u64 {
        // Relaxed: only uniqueness matters, which the RMW gives.
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    // ----- a shared capacity -----

    /// This pool's id in its budget.
    pub(crate) fn member_id(&self) -> u64 {
        self.member_id
    }

    /// How many acquires hold a slot and wait for the budget's permit.
    pub(crate) fn awaiting_permit(&self) -> usize {
        // SeqCst: read after a releaser's fence (see `after_park`).
        self.awaiting_permit.load(Ordering::SeqCst)
    }

    /// Counts an acquire as waiting for a permit until the guard drops.
    pub(crate) fn await_permit(&self) -> AwaitingPermit<'_> {
        // SeqCst: ordered before the waiter's fence and look at the idle
        // store (see `after_park`).
        self.awaiting_permit.fetch_add(1, Ordering::SeqCst);
        AwaitingPermit(&self.awaiting_permit)
    }

    /// Listens for a resource going idle (or the pool closing) while
    /// acquires wait for a permit. Listen, fence, look, then await.
    pub(crate) fn listen_parked(&self) -> crate::sync::EventListener {
        self.item_parked.listen()
    }

    /// Wakes the acquires that wait for a permit.
    fn notify_parked(&self) {
        self.item_parked.notify(usize::MAX);
    }

    /// Closes the pool (see [`Pool::close`](crate::Pool::close)); with a
    /// shared capacity, it also leaves the budget and wakes its acquires
    /// that wait for a permit, which then fail.
    pub(crate) fn close(&self) {
        self.core.close();
        if let Some(budget) = self.budget() {
            budget.leave(self.member_id);
            self.notify_parked();
        }
    }

    /// After a resource was parked in a pool with a budget: this pool's own
    /// acquires that wait for a permit get a look at it first; else, if an
    /// acquire of another pool waits for a permit and the grace period is
    /// zero, one idle resource goes to free its permit.
    #[cold]
    fn after_park(&self, budget: &Budget) {
        // SeqCst fence: pairs with the fence a waiter issues after counting
        // itself in `awaiting_permit`, or after queueing in the budget's
        // line (Dekker): either we see it below, or it sees what we parked.
        // The budget's count may still hold a waiter that was just served:
        // its releaser takes it off the count after publishing the grant
        // (before waking it, so a waiter woken by it is off the count; one
        // that saw the grant while still running may not be). Then an idle
        // resource is closed for nobody, and its unit is free. A needless
        // close, never a lost unit (loom model m10a).
        fence(Ordering::SeqCst);
        #[cfg(not(quickslot_bug = "no_park_look"))]
        if self.awaiting_permit() > 0 {
            self.notify_parked();
        } else if budget.waiting() > 0 && budget.grace().is_zero() {
            self.reclaim_idle(Duration::ZERO);
        }
        #[cfg(quickslot_bug = "no_park_look")]
        let _ = budget;
    }

    // ----- reports -----

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
            overloaded: 0,
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
        // A slot held by an acquire that waits for the budget's permit is
        // no resource (see `crate::capacity`).
        status.size = status.size.saturating_sub(self.awaiting_permit());
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

    // ----- resources leaving -----

    /// Why a resource found idle must go: past its lifetime, or idle past
    /// `idle_timeout` while the pool holds more than `min_idle` resources.
    /// Reads the clock only when one of them is set.
    #[inline]
    pub(crate) fn expired(&self, info: &ResourceInfo) -> Option<Reason> {
        let c = &self.config;
        if c.max_lifetime.is_none() && c.idle_timeout.is_none() {
            return None;
        }
        self.expired_at(info, rt::now())
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

    /// Counts and traces a resource leaving the pool, and asks the upkeep
    /// for a `min_idle` refill. The caller drops it.
    #[cold]
    pub(crate) fn count_discard(&self, reason: Reason, info: &ResourceInfo) {
        self.note_discard(reason, info);
        self.want_refill();
    }

    /// Counts and traces a resource leaving the pool.
    #[cold]
    fn note_discard(&self, reason: Reason, info: &ResourceInfo) {
        self.stats.add(reason.counter(), 1);
        tracing::debug!(
            target: "quickslot",
            pool = %self.config.name,
            reason = reason.as_str(),
            resource = info.id,
            age = ?info.age(),
            uses = info.uses,
            "resource discarded",
        );
    }

    /// Wakes the upkeep task to refill `min_idle`, if it has one to fill.
    fn want_refill(&self) {
        if self.config.min_idle > 0 {
            self.upkeep.wake();
        }
    }

    /// Traces a failed recycle or keepalive check, and counts the discard.
    #[cold]
    pub(crate) fn count_recycle_failure(
        &self,
        reason: Reason,
        e: Option<&M::Error>,
        info: &ResourceInfo,
    ) {
        self.stats.add(Counter::RecycleFailures, 1);
        tracing::info!(
            target: "quickslot",
            pool = %self.config.name,
            error = e.map(tracing::field::display),
            timed_out = e.is_none(),
            "{}",
            reason.as_str(),
        );
        self.count_discard(reason, info);
    }

    // ----- checkouts -----

    /// Stamps a checkout: its time and, with leak detection, its entry in
    /// the checked-out registry.
    #[cold]
    fn stamp(&self, record: &mut Record<M::Resource>, caller: Option<&'static Location<'static>>) {
        let at = rt::now();
        let id = record.info.id;
        let ticket = self
            .leaks
            .as_ref()
            .map(|leaks| leaks.insert(id, at, caller));
        record.stamp = Some(Stamp { at, ticket });
    }

    /// Ends a stamped checkout, if it is one.
    #[cold]
    fn unstamp(&self, record: &mut Record<M::Resource>) {
        let Some(stamp) = record.stamp.take() else {
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
}

/// Counts an acquire in `awaiting_permit` while it lives.
pub(crate) struct AwaitingPermit<'a>(&'a AtomicUsize);

impl Drop for AwaitingPermit<'_> {
    fn drop(&mut self) {
        // SeqCst: as the increment.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<M: Manager> Member for Shared<M> {
    fn member_id(&self) -> u64 {
        self.member_id
    }

    fn reclaim_idle(&self, grace: Duration) -> Reclaim {
        let core = &self.core;
        // Its own acquires come first, and `min_idle` stays.
        if core.waiting() > 0
            || self.awaiting_permit() > 0
            || core.idle_len() <= self.config.min_idle
        {
            return Reclaim::Nothing;
        }
        // The longest idle: the head of a FIFO store; in a LIFO one, the
        // bottom of the stack, so all of it comes out and goes back in order.
        let mut taken = Vec::new();
        match self.config.reuse_order {
            crate::ReuseOrder::Lifo => {
                for _ in 0..core.idle_len() {
                    let Some(entry) = core.pop_idle_any() else {
                        break;
                    };
                    taken.push(Held::new(self, entry));
                }
            }
            _ => taken.extend(core.pop_idle_any().map(|entry| Held::new(self, entry))),
        }
        let Some(oldest) = taken.pop() else {
            return Reclaim::Nothing;
        };
        let outcome = if grace.is_zero() {
            oldest.discard(Reason::Reclaimed);
            Reclaim::Done
        } else {
            let info = &oldest.record().info;
            let eligible = info.last_returned.unwrap_or(info.created_at) + grace;
            if Instant::now() >= eligible {
                oldest.discard(Reason::Reclaimed);
                Reclaim::Done
            } else {
                oldest.park_plain();
                Reclaim::NotBefore(eligible)
            }
        };
        // Popped newest first: back in reverse, the stack is as it was.
        while let Some(held) = taken.pop() {
            held.park_plain();
        }
        outcome
    }
}

impl<M: Manager> Drop for Shared<M> {
    fn drop(&mut self) {
        // The upkeep task holds only a weak reference: wake it so it ends now
        // rather than at its next round.
        self.upkeep.wake();
    }
}

/// One unit of capacity with no resource (see the module docs). Frees its
/// slot when dropped.
#[must_use = "dropping a slot frees it at once"]
pub(crate) struct Slot<M: Manager, P: Deref<Target = Shared<M>>> {
    shared: Option<P>,
    /// Whether it carries a permit of the pool's shared capacity.
    permit: bool,
}

impl<M: Manager, P: Deref<Target = Shared<M>>> Slot<M, P> {
    /// Takes charge of a slot the core gave out (a grow or a
    /// `Grant::Slot`).
    pub(crate) fn new(shared: P) -> Self {
        Self {
            shared: Some(shared),
            permit: false,
        }
    }

    /// The slot of a resource that leaves (it has the budget's permit, if
    /// the pool has a budget).
    fn owned(shared: P) -> Self {
        let permit = shared.budget().is_some();
        Self {
            shared: Some(shared),
            permit,
        }
    }

    /// Whether a create may use it: it has the budget's permit, or the pool
    /// has no budget.
    pub(crate) fn may_create(&self) -> bool {
        self.permit || self.shared().budget().is_none()
    }

    /// It now carries a permit taken from the pool's budget.
    pub(crate) fn add_permit(&mut self) {
        debug_assert!(!self.permit, "a slot carries one permit");
        self.permit = true;
    }

    pub(crate) fn shared(&self) -> &Shared<M> {
        self.handle()
    }

    /// The pool handle this token holds.
    pub(crate) fn handle(&self) -> &P {
        self.shared.as_ref().expect("held until consumed")
    }

    /// Frees the slot, then wakes the upkeep to refill `min_idle` (see
    /// [`Held::discard`]).
    fn free_for_refill(mut self) {
        let shared = self.shared.take().expect("held until consumed");
        free(&shared, self.permit);
        shared.want_refill();
    }

    /// The slot now holds `entry`.
    pub(crate) fn fill(mut self, entry: Entry<M::Resource>) -> Held<M, P> {
        debug_assert!(self.may_create(), "a resource holds a permit");
        let shared = self.shared.take().expect("held until consumed");
        Held {
            inner: Some((shared, entry)),
        }
    }
}

/// Frees a slot, and its permit if it carries one (the permit first: the
/// longest waiter across the pools gets it).
fn free<M: Manager>(shared: &Shared<M>, permit: bool) {
    if permit {
        if let Some(budget) = shared.budget() {
            budget.give_back();
        }
    }
    shared.core.release(Grant::Slot);
}

impl<M: Manager, P: Deref<Target = Shared<M>>> Drop for Slot<M, P> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            free(&shared, self.permit);
        }
    }
}

/// One unit of capacity with its resource (see the module docs). Dropped
/// without being consumed, it drops the resource and frees the slot.
#[must_use = "dropping a held resource drops it and frees its slot"]
pub(crate) struct Held<M: Manager, P: Deref<Target = Shared<M>>> {
    inner: Option<(P, Entry<M::Resource>)>,
}

impl<M: Manager, P: Deref<Target = Shared<M>>> Held<M, P> {
    /// Takes charge of a resource the core gave out (an idle one or a
    /// `Grant::Item`).
    pub(crate) fn new(shared: P, entry: Entry<M::Resource>) -> Self {
        Self {
            inner: Some((shared, entry)),
        }
    }

    fn parts(&self) -> &(P, Entry<M::Resource>) {
        self.inner.as_ref().expect("held until consumed")
    }

    /// The pool handle and the resource, for a guard that holds them
    /// itself (the guard then owns the slot).
    pub(crate) fn into_parts(mut self) -> (P, Entry<M::Resource>) {
        self.inner.take().expect("held until consumed")
    }

    pub(crate) fn shared(&self) -> &Shared<M> {
        &self.parts().0
    }

    pub(crate) fn record(&self) -> &Record<M::Resource> {
        &self.parts().1
    }

    pub(crate) fn record_mut(&mut self) -> &mut Record<M::Resource> {
        &mut self.inner.as_mut().expect("held until consumed").1
    }

    /// Gives the resource back to the pool: to the oldest waiter, or idle
    /// (then, with a shared capacity, see `Shared::after_park`).
    pub(crate) fn park(self) {
        let (shared, entry) = self.into_parts();
        shared.core.release(Grant::Item(entry));
        if let Some(budget) = shared.budget() {
            shared.after_park(budget);
        }
    }

    /// [`park`](Self::park) without the shared capacity's look at waiters:
    /// the plain return path (a pool with a budget takes the other), and a
    /// resource put back by a reclaim. Inline: the return path is one chain
    /// of inline calls down to the core's first release round.
    #[inline]
    fn park_plain(self) {
        let (shared, entry) = self.into_parts();
        shared.core.release(Grant::Item(entry));
    }

    /// Drops the resource (after [`Manager::detach`]) and keeps its slot
    /// (to create a replacement) with its permit. The slot is safe if
    /// `detach` or the resource's own `Drop` panics.
    pub(crate) fn empty(self) -> Slot<M, P> {
        let (shared, mut entry) = self.into_parts();
        let slot = Slot::owned(shared);
        slot.shared().manager().detach(&mut entry.resource);
        drop(entry);
        slot
    }

    /// Counts and traces the resource leaving, drops it, frees its slot,
    /// and only then asks the upkeep for a `min_idle` refill: woken before
    /// the slot is free, an upkeep task on another thread could find the
    /// pool full, refill nothing and sleep a whole round.
    pub(crate) fn discard(mut self, reason: Reason) {
        let (shared, entry) = self.inner.as_mut().expect("held until consumed");
        shared.note_discard(reason, &entry.info);
        self.empty().free_for_refill();
    }

    /// Takes the resource out of the pool for good (after
    /// [`Manager::detach`]); frees its slot.
    pub(crate) fn detach(self) -> M::Resource {
        let (shared, mut entry) = self.into_parts();
        let slot = Slot::owned(shared);
        slot.shared().manager().detach(&mut entry.resource);
        drop(slot);
        entry.resource
    }

    /// Stamps a checkout (see [`Shared::stamp`]).
    pub(crate) fn stamp(&mut self, caller: Option<&'static Location<'static>>) {
        let (shared, entry) = self.inner.as_mut().expect("held until consumed");
        shared.stamp(entry, caller);
    }

    /// Ends a stamped checkout (a no-op unless checkouts are stamped).
    pub(crate) fn unstamp(&mut self) {
        let (shared, entry) = self.inner.as_mut().expect("held until consumed");
        if shared.config.stamp_checkout {
            shared.unstamp(entry);
        }
    }

    /// A resource comes back from its user: to the next waiter or idle,
    /// unless it is broken, refused by `on_release`, or past its lifetime.
    /// A panic in `is_broken` or `on_release` drops the resource (in an
    /// unknown state) and frees its slot as it unwinds.
    #[inline]
    pub(crate) fn give_back(mut self) {
        let (shared, entry) = self.inner.as_mut().expect("held until consumed");
        if shared.manager().is_broken(&mut entry.resource) {
            self.unstamp();
            return self.discard(Reason::Broken);
        }
        entry.info.uses += 1;
        if shared.config.release_extras {
            return self.give_back_slow();
        }
        self.park_plain();
    }

    /// The return path when something is configured to run on it.
    #[cold]
    fn give_back_slow(mut self) {
        self.unstamp();
        let (shared, entry) = self.inner.as_mut().expect("held until consumed");
        if let Some(hook) = &shared.hooks.on_release {
            if let Err(e) = hook(&mut entry.resource, &entry.info) {
                tracing::warn!(
                    target: "quickslot",
                    pool = %shared.config.name,
                    error = %e,
                    "on_release hook failed",
                );
                return self.discard(Reason::Hook(HookKind::OnRelease));
            }
        }
        if shared.config.track_idle_time || shared.config.max_lifetime.is_some() {
            let now = rt::now();
            if entry.info.expired_at(now) {
                return self.discard(Reason::Expired);
            }
            if shared.config.track_idle_time {
                entry.info.last_returned = Some(now);
            }
        }
        self.park();
    }
}

impl<M: Manager, P: Deref<Target = Shared<M>>> Drop for Held<M, P> {
    // Inline and branch-only when consumed: every checkout consumes a `Held`
    // (`into_parts`), and out of line this drop of an empty token cost about
    // 26 instructions per acquire (see `implementation`).
    #[inline]
    fn drop(&mut self) {
        if let Some((shared, entry)) = self.inner.take() {
            drop_unconsumed::<M, P>(shared, entry);
        }
    }
}

/// The drop of a [`Held`] that was not consumed: an acquire cancelled
/// mid-recycle, a task dropped mid-round, or user code that panicked while
/// the pool held it. The resource's state is unknown.
#[cold]
#[inline(never)]
fn drop_unconsumed<M: Manager, P: Deref<Target = Shared<M>>>(
    shared: P,
    mut entry: Entry<M::Resource>,
) {
    let counter = if std::thread::panicking() {
        Counter::Panicked
    } else {
        Counter::Cancelled
    };
    shared.stats.add(counter, 1);
    if entry.stamp.is_some() {
        shared.unstamp(&mut entry);
    }
    // The slot (and permit) is freed even if `detach` or the resource's
    // own `Drop` panics.
    let slot = Slot::<M, P>::owned(shared);
    slot.shared().manager().detach(&mut entry.resource);
    drop(entry);
    drop(slot);
}
