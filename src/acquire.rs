//! The acquire state machine: the fast path, the wait in line, recycling
//! and creating, each under the acquire's one deadline.
//!
//! Every slot this module holds is in a token ([`Slot`] or [`Held`]) or in
//! an [`InFlight`] create, so a dropped acquire future, a failure or a
//! panic in user code frees it on the way out.

use std::future::{poll_fn, Future};
use std::panic::Location;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use crate::create::{CreateFail, InFlight};
use crate::error::{Error, TimeoutPhase, TryAcquireError};
use crate::guard::Pooled;
use crate::handoff::{Grant, Outcome, Waiter};
use crate::manager::Manager;
use crate::raw::{Core, Sink, Unavailable};
use crate::recycle::{recycle, recycle_pending, Recycled};
use crate::rt::Instant;
use crate::shared::{Entry, Held, Reason, Shared, Slot};
use crate::status::Counter;
use crate::sync::Arc;
use crate::timer::Deadline;

/// The acquire future: `acquire_within` itself, with no wrapper.
///
/// The caller's location (with leak detection) is an argument, stamped at
/// checkout. Its first poll copies the arguments into the state with
/// loads of the widths they were stored with (the niche of
/// `Timeout::Pool`, 4 bytes, then the handle and the location, 8 each;
/// checked in the annotated assembly of `bench`'s `uncontended
/// quickslot-outline`): a wide load over narrower stores would stall on
/// store forwarding. An enum of this future and a boxed wrapper that
/// recorded the caller cost 26 instructions per acquire (see
/// `implementation`).
pub(crate) fn acquire<'a, M: Manager>(
    shared: &'a Arc<Shared<M>>,
    timeout: Timeout,
    caller: Option<&'static Location<'static>>,
) -> impl Future<Output = Result<Pooled<M>, Error<M::Error>>> + Send + 'a {
    acquire_within(shared, timeout, caller)
}

/// An acquire's timeout: the pool's `acquire_timeout`, read from the
/// configuration only where a deadline is built (the future then carries
/// no copy of it, and the fast path never reads it), or the caller's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timeout {
    /// The builder's `acquire_timeout`.
    Pool,
    /// The caller's.
    // Given only by the methods that take a deadline, which need a runtime
    // feature.
    #[cfg_attr(not(any(feature = "tokio", feature = "smol")), allow(dead_code))]
    Given(Duration),
}

impl Timeout {
    fn get<M: Manager>(self, shared: &Shared<M>) -> Option<Duration> {
        match self {
            Self::Pool => shared.config().acquire_timeout,
            Self::Given(timeout) => Some(timeout),
        }
    }
}

/// What an acquire holds once it has a grant.
enum Got<M: Manager> {
    /// A resource to check for expiry, then recycle.
    Resource(Held<M, Arc<Shared<M>>>),
    /// A resource whose expiry was checked: recycle it.
    Checked(Held<M, Arc<Shared<M>>>),
    Room(Slot<M, Arc<Shared<M>>>),
}

impl<M: Manager> Got<M> {
    fn new(shared: &Arc<Shared<M>>, grant: Grant<Entry<M::Resource>>) -> Self {
        match grant {
            Grant::Item(entry) => Self::Resource(Held::new(shared.clone(), entry)),
            Grant::Slot => Self::Room(Slot::new(shared.clone())),
        }
    }
}

/// Where the fast path leaves an acquire it cannot finish, for the slow
/// path.
enum Start<M: Manager> {
    /// Nothing was idle (or the pool is closed): `pop_idle` found
    /// nothing.
    Fresh,
    /// An idle resource, not expired, for the recycle hooks.
    Checked(Held<M, Arc<Shared<M>>>),
    /// The idle resource was dropped (expired, or its recycle failed): its
    /// slot, to create a replacement with.
    Room {
        slot: Slot<M, Arc<Shared<M>>>,
        last_error: Option<M::Error>,
        /// When the deadline started (a recycle that did not finish at
        /// once).
        started: Option<Instant>,
    },
}

async fn acquire_within<M: Manager>(
    shared: &Arc<Shared<M>>,
    timeout: Timeout,
    caller: Option<&'static Location<'static>>,
) -> Result<Pooled<M>, Error<M::Error>> {
    // The fast path, first: an idle resource that recycles at once. It
    // keeps little across its one await (the first poll of the recycle,
    // which needs the task's context) and builds no deadline. Everything
    // else (waiting in line, creating, the recycle hooks, replacing a
    // resource that expired or failed its recycle) starts from `start`,
    // under the acquire's one deadline.
    let start = 'fast: {
        let Some(entry) = shared.core().pop_idle() else {
            break 'fast Start::Fresh;
        };
        let mut held = Held::new(shared.clone(), entry);
        // One test for the lifetime, idle-time, hook and stamp settings.
        let extras = shared.config().checkout_extras;
        if extras {
            if let Some(reason) = shared.expired(&held.record().info) {
                shared.count_discard(reason, &held.record().info);
                break 'fast Start::Room {
                    slot: held.empty(),
                    last_error: None,
                    started: None,
                };
            }
            if shared.hooks().around_recycle {
                break 'fast Start::Checked(held);
            }
        }
        // Dropped while recycling (cancelled, or the deadline passed),
        // `held` drops the resource, whose state is unknown, and frees its
        // slot. The deadline lives in the pending branch only (the fast
        // path keeps no drop flag for it); a failure hands on its start.
        // `None` is a recycle that went well: one test, not a match.
        let failed = {
            let record = held.record_mut();
            let fut = shared.manager().recycle(&mut record.resource, &record.info);
            let mut fut = pin!(fut);
            match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                Poll::Ready(Ok(())) => None,
                Poll::Ready(Err(e)) => Some((Recycled::Failed(Some(e)), None)),
                Poll::Pending => {
                    let timeout = timeout.get(shared);
                    let mut deadline = Deadline::new(timeout, shared.timers());
                    match recycle_pending(shared, fut.as_mut(), &mut deadline).await {
                        Recycled::Ok => None,
                        failed => Some((failed, deadline.started())),
                    }
                }
            }
        };
        let Some((failed, started)) = failed else {
            return Ok(checked_out(held, false, caller));
        };
        match after_failed_recycle(shared, held, failed, started) {
            Ok(start) => start,
            Err(e) => return Err(e),
        }
    };
    // The slow path. A create is boxed (see `InFlight`); the deadline arms
    // a timer only when something waits.
    let timeout = timeout.get(shared);
    let mut last_error = None;
    let mut waited = false;
    let (mut deadline, mut got) = match start {
        Start::Fresh => {
            let mut deadline = Deadline::new(timeout, shared.timers());
            // The fast path tried the idle store already.
            let grant = match shared.core().try_acquire_slot() {
                Ok(grant) => grant,
                Err(Unavailable::Closed) => return Err(Error::Closed),
                Err(Unavailable::Full) => {
                    waited = true;
                    // One clock read serves the wait statistics and the
                    // deadline.
                    let started = deadline.start();
                    if shared.config().fail_fast_when_late {
                        if let Some(refused) = refuse_if_late(shared, timeout, started) {
                            return Err(refused);
                        }
                    }
                    match deadline.run(wait(shared)).await {
                        Some(grant) => {
                            count_wait(shared, started, grant.is_ok());
                            grant?
                        }
                        None => return Err(timed_out(shared, TimeoutPhase::Wait, None)),
                    }
                }
            };
            (deadline, Got::new(shared, grant))
        }
        Start::Checked(held) => (Deadline::new(timeout, shared.timers()), Got::Checked(held)),
        Start::Room {
            slot,
            last_error: error,
            started,
        } => {
            last_error = error;
            let deadline = Deadline::resume(timeout, shared.timers(), started);
            (deadline, Got::Room(slot))
        }
    };
    loop {
        match got {
            Got::Resource(held) => {
                if let Some(reason) = shared.expired(&held.record().info) {
                    shared.count_discard(reason, &held.record().info);
                    got = Got::Room(held.empty());
                } else {
                    got = Got::Checked(held);
                }
            }
            Got::Checked(mut held) => {
                // Dropped while recycling (cancelled, or the deadline
                // passed), `held` drops the resource, whose state is
                // unknown, and frees its slot.
                match recycle(shared, held.record_mut(), &mut deadline).await {
                    Recycled::Ok => return Ok(checked_out(held, waited, caller)),
                    Recycled::Hook(hook, error) => {
                        held.discard(Reason::Hook(hook));
                        return Err(Error::Hook { hook, error });
                    }
                    Recycled::Failed(e) => {
                        let info = &held.record().info;
                        shared.count_recycle_failure(Reason::RecycleFailed, e.as_ref(), info);
                        last_error = e.or(last_error);
                        got = Got::Room(held.empty());
                    }
                    Recycled::DeadlinePassed => {
                        drop(held);
                        return Err(timed_out(shared, TimeoutPhase::Recycle, last_error));
                    }
                }
            }
            Got::Room(slot) => {
                if shared.core().is_closed() {
                    return Err(Error::Closed);
                }
                // With a shared capacity, a slot needs the budget's permit.
                let slot = if slot.may_create() {
                    slot
                } else {
                    waited = true;
                    match deadline.run(permit_or_resource(shared, slot)).await {
                        Some(Ok(Got::Room(slot))) => slot,
                        Some(Ok(resource)) => {
                            got = resource;
                            continue;
                        }
                        Some(Err(e)) => return Err(e),
                        None => return Err(timed_out(shared, TimeoutPhase::Wait, last_error)),
                    }
                };
                crate::upkeep::start(shared);
                // If this acquire gives up on the create, it finishes in the
                // background (see `InFlight`).
                let mut create = InFlight::new(slot);
                return match deadline.run(&mut create).await {
                    Some((Ok(entry), slot)) => Ok(checked_out(slot.fill(entry), waited, caller)),
                    Some((Err(CreateFail::Manager(e)), _)) => Err(Error::Create(e)),
                    Some((Err(CreateFail::Hook(hook, error)), _)) => {
                        Err(Error::Hook { hook, error })
                    }
                    // Traced by `create`; not an acquire timeout.
                    Some((Err(CreateFail::Timeout), _)) => Err(Error::Timeout {
                        phase: TimeoutPhase::Create,
                        last_error,
                    }),
                    None => Err(timed_out(shared, TimeoutPhase::Create, last_error)),
                };
            }
        }
    }
}

/// After the fast path's recycle failed: the slot to create a replacement
/// with, or the acquire's error.
#[cold]
fn after_failed_recycle<M: Manager>(
    shared: &Arc<Shared<M>>,
    held: Held<M, Arc<Shared<M>>>,
    failed: Recycled<M::Error>,
    started: Option<Instant>,
) -> Result<Start<M>, Error<M::Error>> {
    match failed {
        Recycled::Failed(e) => {
            let info = &held.record().info;
            shared.count_recycle_failure(Reason::RecycleFailed, e.as_ref(), info);
            Ok(Start::Room {
                slot: held.empty(),
                last_error: e,
                started,
            })
        }
        Recycled::DeadlinePassed => {
            drop(held);
            Err(timed_out(shared, TimeoutPhase::Recycle, None))
        }
        // Not on the fast path, which runs no hooks.
        Recycled::Hook(hook, error) => {
            held.discard(Reason::Hook(hook));
            Err(Error::Hook { hook, error })
        }
        Recycled::Ok => unreachable!("a recycle that went well is no failure"),
    }
}

#[cold]
fn timed_out<M: Manager>(
    shared: &Shared<M>,
    phase: TimeoutPhase,
    last_error: Option<M::Error>,
) -> Error<M::Error> {
    shared.stats().add(Counter::Timeouts, 1);
    tracing::warn!(
        target: "quickslot",
        pool = %shared.config().name,
        %phase,
        last_error = last_error.as_ref().map(tracing::field::display),
        "acquire timed out",
    );
    Error::Timeout { phase, last_error }
}

/// Turns a held resource into the user's guard.
#[inline]
fn checked_out<M: Manager>(
    mut held: Held<M, Arc<Shared<M>>>,
    waited: bool,
    caller: Option<&'static Location<'static>>,
) -> Pooled<M> {
    if !waited {
        held.shared().stats().acquired_immediately();
    }
    if held.shared().config().stamp_checkout {
        held.stamp(caller);
    }
    Pooled::new(held)
}

/// Waits in line for a grant.
async fn wait<M: Manager>(
    shared: &Shared<M>,
) -> Result<Grant<Entry<M::Resource>>, Error<M::Error>> {
    let core = shared.core();
    let waiter = core.new_waiter();
    match shared.config().max_waiters {
        None => core.register(&waiter),
        Some(max) => {
            if let Err(waiting) = core.register_bounded(&waiter, max) {
                shared.stats().add(Counter::Overloaded, 1);
                return Err(Error::Overloaded {
                    waiting,
                    expected_wait: None,
                });
            }
        }
    }
    let mut registration = Registration {
        core,
        waiter: &waiter,
        done: false,
    };
    // Listen, re-check, wait: the record's one notification comes after its
    // state changed, so a change before `listener!` is seen by the re-check
    // and one after it wakes the listener. The listener lives in this future
    // (no allocation). Polling it takes the event's internal lock.
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
    // The listener is gone: the record may serve this thread's next wait.
    core.retire_waiter(waiter);
    result
}

/// With a shared capacity: turns a slot of this pool without the budget's
/// permit into one with it (`Got::Room`), waiting in the budget's line if
/// none is free; or, if a resource of this pool goes idle first, gives
/// that resource instead (`Got::Resource`; the slot is freed). While it
/// waits it asks the other member pools for an idle resource (see
/// [`crate::capacity`]), again whenever one's grace period ends.
///
/// Dropped (its deadline passed), it leaves the line (passing on a permit
/// granted meanwhile) and frees the slot.
#[cold]
async fn permit_or_resource<M: Manager>(
    shared: &Arc<Shared<M>>,
    mut slot: Slot<M, Arc<Shared<M>>>,
) -> Result<Got<M>, Error<M::Error>> {
    let Some(budget) = shared.budget() else {
        return Ok(Got::Room(slot));
    };
    if budget.try_take() {
        slot.add_permit();
        return Ok(Got::Room(slot));
    }
    let core = shared.core();
    // Counted before the record is queued: the fence in `register` orders
    // both before the first look at the idle store below.
    let _awaiting = shared.await_permit();
    let permits = budget.permits();
    let waiter = permits.new_waiter();
    permits.register(&waiter);
    // Leaves the line (passing on a permit granted meanwhile) unless done.
    let mut registration = Registration {
        core: permits,
        waiter: &waiter,
        done: false,
    };
    let mut again = budget.queued(shared.member_id());
    loop {
        // Listen, look, wait: a notification after the listen wakes it, and
        // a change before it is seen by the look.
        let mut granted = waiter.event().listen();
        let mut parked = shared.listen_parked();
        match waiter.poll() {
            Outcome::Granted(Grant::Slot) => {
                registration.done = true;
                slot.add_permit();
                return Ok(Got::Room(slot));
            }
            Outcome::Granted(Grant::Item(never)) => match never {},
            // The budget is never closed.
            Outcome::Waiting | Outcome::Closed => {}
        }
        if core.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(entry) = core.pop_idle() {
            drop(slot);
            return Ok(Got::Resource(Held::new(shared.clone(), entry)));
        }
        let woken = std::future::poll_fn(|cx| {
            if Pin::new(&mut granted).poll(cx).is_ready()
                || Pin::new(&mut parked).poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            Poll::Pending
        });
        // Without a runtime feature there is no timer: a grace period is
        // not waited out (see `Capacity::set_idle_grace`).
        let retry_due = match again {
            Some(at) if crate::rt::HAS_RUNTIME => crate::rt::timeout_at(at, woken).await.is_none(),
            _ => {
                woken.await;
                false
            }
        };
        if retry_due {
            again = budget.reclaim_for(shared.member_id());
        }
    }
}

/// Counts a wait that ended with a grant (`served`) or the pool closed.
fn count_wait<M: Manager>(shared: &Shared<M>, started: Instant, served: bool) {
    let waited = started.elapsed();
    if served && shared.config().fail_fast_when_late {
        shared.rate().record(shared.clock(started + waited));
    }
    shared
        .stats()
        .waited(served, u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    #[cfg(feature = "metrics")]
    if let Some(m) = shared.metrics() {
        m.acquire_wait.record(waited);
    }
}

/// With `fail_fast_when_late`: the refusal of an acquire that is expected
/// to wait past its deadline (see [`ServiceRate`](crate::shared::ServiceRate)).
/// Only ever asked once nothing is idle and no slot is free.
#[cold]
fn refuse_if_late<M: Manager>(
    shared: &Shared<M>,
    timeout: Option<Duration>,
    now: Instant,
) -> Option<Error<M::Error>> {
    let timeout = timeout?;
    let ahead = shared.core().waiting();
    let expected = shared.rate().expected_wait(ahead, shared.clock(now))?;
    if expected <= timeout {
        return None;
    }
    shared.stats().add(Counter::Overloaded, 1);
    tracing::debug!(
        target: "quickslot",
        pool = %shared.config().name,
        waiting = ahead,
        expected_wait = ?expected,
        "acquire refused: expected to wait past its deadline",
    );
    Some(Error::Overloaded {
        waiting: ahead,
        expected_wait: Some(expected),
    })
}

/// An idle resource without waiting and without creating one.
pub(crate) fn try_acquire<M: Manager>(
    shared: &Arc<Shared<M>>,
    caller: Option<&'static Location<'static>>,
) -> Result<Pooled<M>, TryAcquireError> {
    let core = shared.core();
    loop {
        if core.is_closed() {
            return Err(TryAcquireError::Closed);
        }
        match core.pop_idle() {
            Some(entry) => {
                let held = Held::new(shared.clone(), entry);
                if let Some(reason) = shared.expired(&held.record().info) {
                    held.discard(reason);
                    continue;
                }
                return Ok(checked_out(held, false, caller));
            }
            // Closed after the check above (what was idle was dropped).
            None if core.is_closed() => return Err(TryAcquireError::Closed),
            None if core.waiting() > 0 => return Err(TryAcquireError::Busy),
            None if core.size() < core.max_size() => return Err(TryAcquireError::Empty),
            None => return Err(TryAcquireError::Exhausted),
        }
    }
}

/// A queued waiter; leaves the line if dropped before it is served.
struct Registration<'a, T, S: Sink<T>> {
    core: &'a Core<T, S>,
    waiter: &'a Arc<Waiter<T>>,
    done: bool,
}

impl<T, S: Sink<T>> Drop for Registration<'_, T, S> {
    fn drop(&mut self) {
        if !self.done {
            self.core.cancel(self.waiter);
        }
    }
}
