//! [`Status`]: a snapshot of a pool's gauges and cumulative counters.

use std::time::Duration;

use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Ordering, OWNED_STRIPES};

/// A snapshot of a pool, from [`Pool::status`](crate::Pool::status).
///
/// The gauges are read one after the other while the pool runs, so under
/// load they are each exact but not necessarily from the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The configured maximum number of resources.
    pub max_size: usize,
    /// Live resources plus creates in flight.
    pub size: usize,
    /// Resources waiting in the pool.
    pub idle: usize,
    /// Resources checked out (`size - idle - creating`).
    pub in_use: usize,
    /// Creates in flight.
    pub creating: usize,
    /// Acquires waiting for a resource.
    pub waiting: usize,
    /// Acquires served without waiting.
    pub acquired_immediately: u64,
    /// Acquires served after waiting.
    pub acquired_after_wait: u64,
    /// Acquires that ended at their deadline.
    pub timeouts: u64,
    /// Acquires refused at once because
    /// [`max_waiters`](crate::Builder::max_waiters) were waiting already.
    pub overloaded: u64,
    /// Resources created.
    pub created: u64,
    /// Creates that failed or timed out.
    pub create_errors: u64,
    /// Recycles that failed or timed out.
    pub recycle_failures: u64,
    /// Resources dropped by the pool, by reason.
    pub discarded: Discarded,
    /// Total time acquires spent waiting in line.
    pub total_wait: Duration,
    /// Resources reported as held longer than `leak_threshold` (each once).
    pub leaks_reported: u64,
}

/// Resources the pool dropped or gave up, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Discarded {
    /// [`Manager::is_broken`](crate::Manager::is_broken) said so on return,
    /// or the user called [`Pooled::discard`](crate::Pooled::discard).
    pub broken: u64,
    /// Past `max_lifetime` or `idle_timeout`.
    pub expired: u64,
    /// Recycle failed or timed out.
    pub recycle_failed: u64,
    /// Rejected by the predicate of [`Pool::retain`](crate::Pool::retain).
    pub retain_rejected: u64,
    /// Closed while idle so that an acquire of another pool sharing its
    /// [`Capacity`](crate::Capacity) could create.
    pub reclaimed: u64,
    /// Taken out for good by [`Pooled::detach`](crate::Pooled::detach).
    pub detached: u64,
    /// Dropped because the pool was closed.
    pub closed: u64,
    /// Held by an acquire that was cancelled while recycling it (or by an
    /// upkeep round that was dropped mid-way).
    pub cancelled: u64,
    /// Dropped because user code panicked while the pool held it
    /// ([`Manager::is_broken`](crate::Manager::is_broken), `recycle`, a hook,
    /// a [`retain`](crate::Pool::retain) predicate): its state is unknown.
    pub panicked: u64,
    /// A [hook](crate::Hook) failed on it.
    pub hook: u64,
    /// Dropped because [`Pool::resize`](crate::Pool::resize) made the pool
    /// smaller.
    pub resized: u64,
}

/// Counter kinds, indexing [`Stats::cold`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Timeouts,
    Overloaded,
    Created,
    CreateErrors,
    RecycleFailures,
    Broken,
    Expired,
    RecycleFailed,
    RetainRejected,
    Reclaimed,
    Detached,
    Cancelled,
    Panicked,
    Hook,
    Leaks,
}

const COLD: usize = Counter::Leaks as usize + 1;

/// Stripes of the per-acquire counter that threads without an owned stripe
/// share (round-robin).
const SHARED_STRIPES: usize = 8;

/// The counters that every acquire writes: one stripe of them.
#[derive(Debug, Default)]
struct Hot {
    /// Acquires served without waiting.
    immediately: AtomicU64,
    /// Acquires served after a wait.
    after_wait: AtomicU64,
    /// Nanoseconds spent waiting, served or not.
    wait_nanos: AtomicU64,
}

impl Hot {
    /// Adds `n` to `counter` of a stripe that only this thread writes.
    #[inline]
    fn add_owned(counter: &AtomicU64, n: u64) {
        // Relaxed: statistics only. This thread is the stripe's one writer
        // (see `sync::thread_stripe`), so a load and a store lose no
        // count, and need no locked instruction.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// Cumulative statistics. Every access is Relaxed: these are pure
/// statistics, never used to make a decision.
#[derive(Debug)]
pub(crate) struct Stats {
    /// The counters every acquire writes (served at once, served after a
    /// wait, time waited): striped, each stripe on its own cache line, so
    /// cores do not write one line. A thread that owns a stripe (see
    /// `sync::thread_stripe`) counts with a plain load and store; others
    /// share the `shared` stripes.
    hot: [CachePadded<Hot>; OWNED_STRIPES],
    hot_shared: [CachePadded<Hot>; SHARED_STRIPES],
    /// Creates in flight (a gauge).
    creating: CachePadded<AtomicUsize>,
    /// Slow-path counters, together on their own lines.
    cold: CachePadded<[AtomicU64; COLD]>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            hot: std::array::from_fn(|_| CachePadded::new(Hot::default())),
            hot_shared: std::array::from_fn(|_| CachePadded::new(Hot::default())),
            creating: CachePadded::new(AtomicUsize::new(0)),
            cold: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Counts an acquire served without waiting.
    #[inline]
    pub(crate) fn acquired_immediately(&self) {
        let stripe = crate::sync::thread_stripe();
        if let Some(owned) = self.hot.get(stripe) {
            Hot::add_owned(&owned.immediately, 1);
        } else {
            // Relaxed: statistics only.
            self.hot_shared[stripe % SHARED_STRIPES]
                .immediately
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a wait of `nanos` that ended served (`served`) or not.
    #[inline]
    pub(crate) fn waited(&self, served: bool, nanos: u64) {
        let stripe = crate::sync::thread_stripe();
        if let Some(owned) = self.hot.get(stripe) {
            if served {
                Hot::add_owned(&owned.after_wait, 1);
            }
            Hot::add_owned(&owned.wait_nanos, nanos);
        } else {
            let shared = &self.hot_shared[stripe % SHARED_STRIPES];
            // Relaxed: statistics only.
            if served {
                shared.after_wait.fetch_add(1, Ordering::Relaxed);
            }
            shared.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// The sum of one hot counter over every stripe.
    fn hot_sum(&self, counter: impl Fn(&Hot) -> &AtomicU64) -> u64 {
        self.hot
            .iter()
            .chain(&self.hot_shared)
            // Relaxed: statistics only.
            .map(|stripe| counter(stripe).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        // Relaxed: statistics only.
        self.cold[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, counter: Counter) -> u64 {
        // Relaxed: statistics only.
        self.cold[counter as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn creating_now(&self) -> usize {
        // Relaxed: a gauge; upkeep uses it as an estimate only.
        self.creating.load(Ordering::Relaxed)
    }

    pub(crate) fn creating(&self, delta: isize) {
        // Relaxed: a gauge for reports only.
        if delta >= 0 {
            self.creating.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.creating
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot_into(&self, status: &mut Status) {
        // Relaxed: statistics only.
        status.acquired_immediately = self.hot_sum(|hot| &hot.immediately);
        status.creating = self.creating.load(Ordering::Relaxed);
        status.acquired_after_wait = self.hot_sum(|hot| &hot.after_wait);
        status.timeouts = self.get(Counter::Timeouts);
        status.overloaded = self.get(Counter::Overloaded);
        status.created = self.get(Counter::Created);
        status.create_errors = self.get(Counter::CreateErrors);
        status.recycle_failures = self.get(Counter::RecycleFailures);
        status.discarded.broken = self.get(Counter::Broken);
        status.discarded.expired = self.get(Counter::Expired);
        status.discarded.recycle_failed = self.get(Counter::RecycleFailed);
        status.discarded.retain_rejected = self.get(Counter::RetainRejected);
        status.discarded.reclaimed = self.get(Counter::Reclaimed);
        status.discarded.panicked = self.get(Counter::Panicked);
        status.discarded.detached = self.get(Counter::Detached);
        status.discarded.cancelled = self.get(Counter::Cancelled);
        status.discarded.hook = self.get(Counter::Hook);
        status.leaks_reported = self.get(Counter::Leaks);
        status.total_wait = Duration::from_nanos(self.hot_sum(|hot| &hot.wait_nanos));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Owned and shared stripes together count every acquire exactly: more
    /// threads at once than there are owned stripes, and threads that end
    /// and hand their stripes on.
    #[test]
    fn striped_counts_are_exact_across_threads() {
        let stats = std::sync::Arc::new(Stats::new());
        let count = |stats: &Stats| {
            let mut status = crate::Status {
                max_size: 0,
                size: 0,
                idle: 0,
                in_use: 0,
                creating: 0,
                waiting: 0,
                acquired_immediately: 0,
                acquired_after_wait: 0,
                timeouts: 0,
                overloaded: 0,
                created: 0,
                create_errors: 0,
                recycle_failures: 0,
                discarded: Discarded::default(),
                total_wait: Duration::ZERO,
                leaks_reported: 0,
            };
            stats.snapshot_into(&mut status);
            (
                status.acquired_immediately,
                status.acquired_after_wait,
                status.total_wait,
            )
        };
        for round in 0..3 {
            let threads: Vec<_> = (0..OWNED_STRIPES + 8)
                .map(|_| {
                    let stats = stats.clone();
                    std::thread::spawn(move || {
                        for i in 0..10_000 {
                            stats.acquired_immediately();
                            stats.waited(i % 2 == 0, 3);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let expected = (round + 1) * (OWNED_STRIPES as u64 + 8) * 10_000;
            let waits = Duration::from_nanos(3 * expected);
            assert_eq!(count(&stats), (expected, expected / 2, waits));
        }
    }
}
