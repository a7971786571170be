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

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::handoff::Grant;
use crate::manager::Manager;
use crate::pool::{CreateFail, Entry, OwnedSlot, Reason, Shared};
use crate::status::Counter;
use crate::sync::{Arc, AtomicBool, Ordering};

/// The first retry delay of `min_idle` creates after a failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The pool's side of its upkeep task.
#[derive(Debug)]
pub(crate) struct Upkeep {
    /// Whether the task was spawned.
    started: AtomicBool,
    /// Wakes the task early (a discard under `min_idle`, a resize, the pool
    /// dropped). Shared with the task, which must not keep the pool alive.
    wake: Arc<Notify>,
}

impl Upkeep {
    pub(crate) fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Asks for an upkeep round now. A no-op before the task starts.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the upkeep task if the pool needs one, it is not running yet, and
/// this thread is inside a Tokio runtime. Called by `build`, `warm_up` and
/// each create: never on the acquire fast path.
#[inline]
pub(crate) fn start<M: Manager>(shared: &Arc<Shared<M>>) {
    if shared.config.needs_upkeep {
        spawn(shared);
    }
}

#[cold]
#[inline(never)]
fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    #[cfg(not(loom))]
    {
        // Acquire: pairs with the AcqRel swap below; a task already spawned
        // makes this a no-op without touching the runtime.
        if shared.upkeep.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // AcqRel: exactly one caller wins the swap and spawns.
        if shared.upkeep.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(target: "quickslot", pool = %shared.config.name, "upkeep task started");
        runtime.spawn(run(
            crate::sync::Arc::downgrade(shared),
            shared.upkeep.wake.clone(),
        ));
    }
    #[cfg(loom)]
    let _ = (&shared.upkeep.started, Ordering::Relaxed);
}

#[cfg(not(loom))]
async fn run<M: Manager>(pool: crate::sync::Weak<Shared<M>>, wake: Arc<Notify>) {
    let mut backoff = Backoff::default();
    let mut next_round = Instant::now();
    let mut fill_after = Instant::now();
    loop {
        let wake_at = {
            let Some(shared) = pool.upgrade() else {
                return;
            };
            if shared.core.is_closed() {
                return;
            }
            let now = Instant::now();
            if now >= next_round {
                shared.reap(now).await;
                shared.report_leaks(Instant::now());
                #[cfg(feature = "metrics")]
                shared.publish_gauges();
                next_round = now + shared.config.upkeep_period();
            }
            if shared.config.min_idle > 0 && Instant::now() >= fill_after {
                match shared.fill_min_idle().await {
                    Ok(()) => backoff.reset(),
                    Err(None) => return,
                    // Traced by `create`.
                    Err(Some(_)) => fill_after = Instant::now() + backoff.next_delay(),
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
        let _ = tokio::time::timeout_at(wake_at, wake.notified()).await;
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

/// A random number in [0, 1). Std's `RandomState` gives each call fresh
/// keys (seeded from the OS once per thread); enough for jitter.
fn random_unit() -> f64 {
    let x = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A resource's own lifetime: `max_lifetime` scaled by a factor in
/// [0.9, 1.0], drawn once at creation.
pub(crate) fn jittered(max_lifetime: Duration) -> Duration {
    max_lifetime.mul_f64(0.9 + random_unit() / 10.0)
}

/// Entries taken out of the idle store by upkeep. Whatever is still held
/// when this drops (the task cancelled by a runtime shutdown, say) is
/// dropped and its slot freed, so the counts stay exact.
struct Taken<'a, M: Manager> {
    shared: &'a Shared<M>,
    entries: Vec<Entry<M::Resource>>,
}

impl<M: Manager> Drop for Taken<'_, M> {
    fn drop(&mut self) {
        for entry in self.entries.drain(..) {
            self.shared.stats.add(Counter::Cancelled, 1);
            drop(entry);
            self.shared.core.release(Grant::Slot);
        }
    }
}

impl<M: Manager> Shared<M> {
    /// Creates until `min_idle` resources are idle (or being created), one
    /// at a time. `Err(None)`: the pool is closed.
    pub(crate) async fn fill_min_idle(&self) -> Result<(), Option<CreateFail<M::Error>>> {
        loop {
            if self.core.is_closed() {
                return Err(None);
            }
            if self.core.idle_len() + self.stats.creating_now() >= self.config.min_idle {
                return Ok(());
            }
            if self.core.try_grow().is_err() {
                // Full (or closed, seen on the next turn): nothing to do.
                return if self.core.is_closed() {
                    Err(None)
                } else {
                    Ok(())
                };
            }
            let mut slot = OwnedSlot::new(self);
            let created = self.create().await;
            slot.disarm();
            match created {
                // To a waiter if anyone waits, else idle.
                Ok(entry) => self.core.release(Grant::Item(entry)),
                Err(fail) => {
                    self.core.release(Grant::Slot);
                    return Err(Some(fail));
                }
            }
        }
    }

    /// One reaper and keepalive round over the idle resources.
    async fn reap(&self, now: Instant) {
        let c = &self.config;
        if c.idle_timeout.is_none() && c.max_lifetime.is_none() && c.keepalive_interval.is_none() {
            return;
        }
        let mut taken = Taken {
            shared: self,
            entries: Vec::with_capacity(self.core.idle_len()),
        };
        for _ in 0..self.core.idle_len() {
            match self.core.pop_idle_any() {
                Some(entry) => taken.entries.push(entry),
                None => break,
            }
        }
        // Oldest return first: the order both reuse orders give back.
        let since = |e: &Entry<M::Resource>| e.info.last_returned.unwrap_or(e.info.created_at);
        // Popped oldest first (FIFO) or newest first (LIFO); sorted, then
        // released in this order, each store gets its own order back.
        taken.entries.sort_by_key(since);
        // Past their (jittered) lifetime: always.
        let mut kept = Vec::with_capacity(taken.entries.len());
        for entry in taken.entries.drain(..) {
            if entry.info.expired_at(now) {
                self.discard(Reason::Expired, entry);
            } else {
                kept.push(entry);
            }
        }
        // Idle too long: only while more than `min_idle` stay idle, longest
        // idle first.
        if let Some(idle_timeout) = c.idle_timeout {
            let mut spare = (kept.len() + self.core.idle_len()).saturating_sub(c.min_idle);
            let mut still = Vec::with_capacity(kept.len());
            for entry in kept.drain(..) {
                let idle_for = now.saturating_duration_since(since(&entry));
                if spare > 0 && entry.info.last_returned.is_some() && idle_for >= idle_timeout {
                    spare -= 1;
                    self.discard(Reason::IdleTimeout, entry);
                } else {
                    still.push(entry);
                }
            }
            kept = still;
        }
        // Keepalive: the ones unused (and unchecked) for the interval are
        // recycled; the rest go back now.
        let (due, kept): (Vec<_>, Vec<_>) = kept.into_iter().partition(|entry| {
            c.keepalive_interval.is_some_and(|interval| {
                let active = since(entry).max(entry.checked_at.unwrap_or(entry.info.created_at));
                now.saturating_duration_since(active) >= interval
            })
        });
        for entry in kept {
            self.core.release(Grant::Item(entry));
        }
        taken.entries = due;
        while let Some(mut entry) = taken.entries.pop() {
            // Out of `taken` while recycling: if the task is dropped here,
            // `entry` drops unrecycled and `guard` frees its slot.
            let mut guard = OwnedSlot::new(self);
            let result = self.recycle_hooked(&mut entry).await;
            guard.disarm();
            match result {
                Ok(()) => {
                    entry.checked_at = Some(Instant::now());
                    self.core.release(Grant::Item(entry));
                }
                Err(fail) => {
                    self.stats.add(Counter::RecycleFailures, 1);
                    let error = match &fail {
                        crate::pool::RecycleFail::Manager(e) => Some(e),
                        _ => None,
                    };
                    self.recycle_failed(Reason::KeepaliveFailed, error, &entry.info);
                    drop(entry);
                    self.core.release(Grant::Slot);
                }
            }
        }
    }

    /// Reports checkouts held past `leak_threshold`, each once.
    fn report_leaks(&self, now: Instant) {
        let (Some(leaks), Some(threshold)) = (&self.leaks, self.config.leak_threshold) else {
            return;
        };
        for report in leaks.scan(now, threshold) {
            self.stats.add(Counter::Leaks, 1);
            let at = report
                .caller
                .map_or_else(|| String::from("an unknown location"), ToString::to_string);
            tracing::warn!(
                target: "quickslot::leak",
                pool = %self.config.name,
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
}
