//! Background upkeep: `min_idle`, the reaper (`idle_timeout`,
//! `max_lifetime`), keepalive checks, leak reports and metric gauges.
//!
//! One task per pool, started lazily (see [`start`]) and holding only a
//! [`Weak`] reference to the pool, so it ends when the last handle and guard
//! are gone. Everything here runs off the acquire/release fast path: it
//! takes resources from the idle store and gives them back through the
//! core's ordinary release, which serves waiters first.

// Most of this runs in the task, which is not built under loom.
#![cfg_attr(loom, allow(dead_code))]

use std::ops::Deref;
use std::time::Duration;

use crate::create::{create, CreateFail};
use crate::jitter::random_unit;
use crate::manager::{Manager, ResourceInfo};
use crate::recycle::{recycle_hooked, RecycleFail};
use crate::rt::{self, Instant};
use crate::shared::{Held, Reason, Shared, Slot};
use crate::status::Counter;
use crate::sync::Arc;

/// The first retry delay of `min_idle` creates after a failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the upkeep task if the pool needs one, it is not running yet, and
/// a runtime can take it here (see [`rt::spawn`]). Called by `warm_up` and
/// each create: never on the acquire fast path.
#[inline]
pub(crate) fn start<M: Manager>(shared: &Arc<Shared<M>>) {
    if shared.config().needs_upkeep {
        spawn(shared);
    }
}

/// [`start`] as `build` calls it: with the `tokio` feature only inside a
/// Tokio runtime, else it waits for the first create or `warm_up` (see
/// [`rt::start_tasks_at_build`]).
pub(crate) fn start_at_build<M: Manager>(shared: &Arc<Shared<M>>) {
    if shared.config().needs_upkeep && rt::start_tasks_at_build() {
        spawn(shared);
    }
}

#[cold]
#[inline(never)]
fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    #[cfg(not(loom))]
    {
        // A task already spawned makes this a no-op without touching the
        // runtime.
        if shared.upkeep().started() {
            return;
        }
        if !rt::can_spawn() || !shared.upkeep().claim_start() {
            return;
        }
        tracing::debug!(target: "quickslot", pool = %shared.config().name, "upkeep task started");
        let started = rt::spawn(run(Arc::downgrade(shared), shared.upkeep().signal()));
        debug_assert!(started, "rt::can_spawn said a runtime was here");
    }
    #[cfg(loom)]
    let _ = shared;
}

#[cfg(not(loom))]
async fn run<M: Manager>(pool: crate::sync::Weak<Shared<M>>, wake: Arc<crate::sync::Event>) {
    let mut backoff = Backoff::default();
    let mut next_round = rt::now();
    let mut fill_after = rt::now();
    loop {
        // Listening before the round's checks: a wake from here on (a
        // discard during the round, the pool dropped) ends the sleep below
        // at once.
        let woken = wake.listen();
        let wake_at = {
            let Some(shared) = pool.upgrade() else {
                return;
            };
            if shared.core().is_closed() {
                return;
            }
            let now = rt::now();
            if now >= next_round {
                reap(&*shared, now).await;
                report_leaks(&shared, rt::now());
                #[cfg(feature = "metrics")]
                shared.publish_gauges();
                next_round = now + shared.config().upkeep_period();
            }
            if shared.config().min_idle > 0 && rt::now() >= fill_after {
                match fill_min_idle(&*shared).await {
                    Ok(()) => backoff.reset(),
                    Err(None) => return,
                    // Traced by `create`.
                    Err(Some(_)) => fill_after = rt::now() + backoff.next_delay(),
                }
            }
            if backoff.failing() {
                next_round.min(fill_after)
            } else {
                next_round
            }
        };
        // Sleeping without a strong reference: dropping the last handle
        // ends the task (through `wake`) rather than waiting for it.
        let _ = rt::timeout_at(wake_at, woken).await;
    }
}

/// Exponential backoff with jitter for `min_idle` creates.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn reset(&mut self) {
        self.failures = 0;
    }

    fn failing(&self) -> bool {
        self.failures > 0
    }

    /// 100 ms, 200 ms, ... up to 30 s, each scaled by a random factor in
    /// [0.5, 1.0] so that many pools do not retry in lockstep.
    fn next_delay(&mut self) -> Duration {
        let base = BACKOFF_START
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures += 1;
        base.mul_f64(0.5 + random_unit() / 2.0)
    }
}

/// Creates until `min_idle` resources are idle (or being created), one at
/// a time. `Err(None)`: the pool is closed.
pub(crate) async fn fill_min_idle<M: Manager>(
    shared: &Shared<M>,
) -> Result<(), Option<CreateFail<M::Error>>> {
    let core = shared.core();
    loop {
        if core.is_closed() {
            return Err(None);
        }
        if core.idle_len() + shared.stats().creating_now() >= shared.config().min_idle {
            return Ok(());
        }
        if core.try_grow().is_err() {
            // Full (or closed, seen on the next turn): nothing to do.
            return if core.is_closed() { Err(None) } else { Ok(()) };
        }
        let mut slot = Slot::new(shared);
        if let Some(budget) = shared.budget() {
            // Never waits for the shared capacity, and never takes a unit
            // that an acquire of any member waits for.
            if !budget.try_take() {
                return Ok(());
            }
            slot.add_permit();
        }
        match create(shared).await {
            // To a waiter if anyone waits, else idle.
            Ok(entry) => slot.fill(entry).park(),
            Err(fail) => {
                drop(slot);
                return Err(Some(fail));
            }
        }
    }
}

/// Takes every idle resource out of the pool (for a sweep over them).
/// Whatever the caller still holds when it is dropped (the task cancelled
/// by a runtime shutdown, say) is dropped and its slot freed.
fn take_idle<M: Manager, P: Deref<Target = Shared<M>> + Clone>(shared: &P) -> Vec<Held<M, P>> {
    let core = shared.core();
    let mut taken = Vec::with_capacity(core.idle_len());
    for _ in 0..core.idle_len() {
        match core.pop_idle_any() {
            Some(entry) => taken.push(Held::new(shared.clone(), entry)),
            None => break,
        }
    }
    taken
}

/// One reaper and keepalive round over the idle resources.
async fn reap<M: Manager>(shared: &Shared<M>, now: Instant) {
    let c = shared.config();
    if c.idle_timeout.is_none() && c.max_lifetime.is_none() && c.keepalive_interval.is_none() {
        return;
    }
    let mut taken = take_idle(&shared);
    // Oldest return first: the order both reuse orders give back.
    let since = |info: &ResourceInfo| info.last_returned.unwrap_or(info.created_at);
    // Popped oldest first (FIFO) or newest first (LIFO); sorted, then
    // released in this order, each store gets its own order back.
    taken.sort_by_key(|held| since(&held.record().info));
    // Past their (jittered) lifetime: always.
    let mut kept = Vec::with_capacity(taken.len());
    for held in taken {
        if held.record().info.expired_at(now) {
            held.discard(Reason::Expired);
        } else {
            kept.push(held);
        }
    }
    // Idle too long: only while more than `min_idle` stay idle, longest
    // idle first.
    if let Some(idle_timeout) = c.idle_timeout {
        let mut spare = (kept.len() + shared.core().idle_len()).saturating_sub(c.min_idle);
        let mut still = Vec::with_capacity(kept.len());
        for held in kept {
            let info = &held.record().info;
            let idle_for = now.saturating_duration_since(since(info));
            if spare > 0 && info.last_returned.is_some() && idle_for >= idle_timeout {
                spare -= 1;
                held.discard(Reason::IdleTimeout);
            } else {
                still.push(held);
            }
        }
        kept = still;
    }
    // Keepalive: the ones unused (and unchecked) for the interval are
    // recycled; the rest go back now.
    let (mut due, kept): (Vec<_>, Vec<_>) = kept.into_iter().partition(|held| {
        let record = held.record();
        c.keepalive_interval.is_some_and(|interval| {
            let active =
                since(&record.info).max(record.checked_at.unwrap_or(record.info.created_at));
            now.saturating_duration_since(active) >= interval
        })
    });
    for held in kept {
        held.park();
    }
    // Dropped here (the task cancelled), `due` drops the unchecked ones
    // and frees their slots.
    while let Some(mut held) = due.pop() {
        match recycle_hooked(shared, held.record_mut()).await {
            Ok(()) => {
                held.record_mut().checked_at = Some(rt::now());
                held.park();
            }
            Err(fail) => {
                let error = match &fail {
                    RecycleFail::Manager(e) => Some(e),
                    _ => None,
                };
                let info = &held.record().info;
                shared.count_recycle_failure(Reason::KeepaliveFailed, error, info);
                drop(held.empty());
            }
        }
    }
}

/// Drops the idle resources `keep` rejects (see [`Pool::retain`]).
///
/// [`Pool::retain`]: crate::Pool::retain
pub(crate) fn retain<M: Manager>(
    shared: &Shared<M>,
    mut keep: impl FnMut(&mut M::Resource, &ResourceInfo) -> bool,
) -> usize {
    /// The resources not visited yet; parked back if `keep` panics.
    struct Unvisited<'a, M: Manager>(std::vec::IntoIter<Held<M, &'a Shared<M>>>);
    impl<M: Manager> Drop for Unvisited<'_, M> {
        fn drop(&mut self) {
            for held in self.0.by_ref() {
                held.park();
            }
        }
    }
    let mut unvisited = Unvisited(take_idle(&shared).into_iter());
    let mut removed = 0;
    for mut held in unvisited.0.by_ref() {
        // A panic in `keep` drops `held` (its state is unknown) and parks
        // the rest as it unwinds.
        let record = held.record_mut();
        if keep(&mut record.resource, &record.info) {
            held.park();
        } else {
            removed += 1;
            held.discard(Reason::Retain);
        }
    }
    removed
}

/// Reports checkouts held past `leak_threshold`, each once.
fn report_leaks<M: Manager>(shared: &Shared<M>, now: Instant) {
    let config = shared.config();
    let (Some(leaks), Some(threshold)) = (shared.leaks(), config.leak_threshold) else {
        return;
    };
    for report in leaks.scan(now, threshold) {
        shared.stats().add(Counter::Leaks, 1);
        let at = report
            .caller
            .map_or_else(|| String::from("an unknown location"), ToString::to_string);
        tracing::warn!(
            target: "quickslot::leak",
            pool = %config.name,
            resource = report.resource,
            held_for = ?report.held,
            acquired_at = %at,
            backtrace = report.backtrace.as_deref(),
            "a pooled resource has been held for {:?} (leak_threshold {:?}); it was acquired at {}",
            report.held,
            threshold,
            at,
        );
    }
}
