//! [`Config`]: a pool's settings and the flags derived from them, in one
//! place.

use std::time::Duration;

use crate::idle::ReuseOrder;

/// The longest pause between two upkeep rounds when no setting asks for a
/// shorter one.
#[cfg_attr(loom, allow(dead_code))] // the upkeep task is not built under loom
const MAX_UPKEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Settings shared by every handle of one pool.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_size: usize,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) create_timeout: Option<Duration>,
    pub(crate) recycle_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) reuse_order: ReuseOrder,
    pub(crate) track_idle_time: bool,
    pub(crate) min_idle: usize,
    pub(crate) max_waiters: Option<usize>,
    pub(crate) fail_fast_when_late: bool,
    /// Which settings hold an adapter's default rather than the user's.
    pub(crate) defaulted: Defaulted,
    pub(crate) max_size_limit: Option<usize>,
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) leak_threshold: Option<Duration>,
    pub(crate) leak_backtrace: bool,
    pub(crate) upkeep_interval: Option<Duration>,
    pub(crate) name: std::sync::Arc<str>,
    /// Record metrics (with the `metrics` feature).
    pub(crate) metrics: bool,
    /// A pool of adopted objects (the `unmanaged` pool): it
    /// never creates.
    pub(crate) adopting: bool,
    /// The budget shared with other pools, if any.
    pub(crate) shared_capacity: Option<crate::Capacity>,
    // ----- derived by `derive`, the only place that computes them -----
    /// Some background work is configured (see `upkeep`).
    pub(crate) needs_upkeep: bool,
    /// Checkouts are stamped and registered (leak detection or hold-time
    /// metrics).
    pub(crate) stamp_checkout: bool,
    /// A return needs more than `is_broken` and a release: a clock read
    /// (idle time, lifetime), an unstamp or an `on_release` hook. The one
    /// flag the release path tests.
    pub(crate) release_extras: bool,
    /// A checkout of an idle resource needs more than its recycle: a
    /// lifetime or idle-time check, the recycle hooks or a stamp. The one
    /// flag the fast path of an acquire tests.
    pub(crate) checkout_extras: bool,
}

#[cfg_attr(loom, allow(dead_code))] // the upkeep task is not built under loom
impl Config {
    /// Computes the derived flags of validated settings.
    pub(crate) fn derive(mut self, has_on_release: bool, has_recycle_hooks: bool) -> Self {
        // A pool with a shared capacity needs idle times for the grace
        // period, and so takes the release path that can look at the
        // budget's waiters.
        self.track_idle_time |= self.idle_timeout.is_some()
            || self.keepalive_interval.is_some()
            || self.shared_capacity.is_some();
        self.metrics &= cfg!(feature = "metrics");
        self.stamp_checkout = self.leak_threshold.is_some() || self.metrics;
        // Without a runtime feature, `build` refuses every setting here
        // but `metrics`, whose gauges are then published only by
        // `Pool::publish_metrics`: no task would ever start.
        self.needs_upkeep = self.min_idle > 0
            || self.idle_timeout.is_some()
            || self.max_lifetime.is_some()
            || self.keepalive_interval.is_some()
            || self.leak_threshold.is_some()
            || (self.metrics && crate::rt::HAS_RUNTIME);
        self.release_extras = self.track_idle_time
            || self.max_lifetime.is_some()
            || self.stamp_checkout
            || has_on_release;
        self.checkout_extras = self.idle_timeout.is_some()
            || self.max_lifetime.is_some()
            || self.stamp_checkout
            || has_recycle_hooks;
        self
    }

    /// How many resources the idle store must hold: every later resize
    /// stays within it.
    pub(crate) fn capacity(&self) -> usize {
        self.max_size_limit.unwrap_or(self.max_size)
    }

    /// The pause between two upkeep rounds: the configured one, or a
    /// quarter of the shortest period upkeep enforces, at most 30 s.
    pub(crate) fn upkeep_period(&self) -> Duration {
        if let Some(interval) = self.upkeep_interval {
            return interval;
        }
        [
            self.idle_timeout,
            self.max_lifetime.map(|d| d / 10),
            self.keepalive_interval,
            self.leak_threshold,
        ]
        .into_iter()
        .flatten()
        .map(|d| d / 4)
        .fold(
            if self.metrics {
                // Gauges are published each round.
                Duration::from_secs(1)
            } else {
                MAX_UPKEEP_INTERVAL
            },
            Duration::min,
        )
        .max(Duration::from_millis(1))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_size: 10,
            // Without a runtime feature there is no timer for a deadline.
            acquire_timeout: if crate::rt::HAS_RUNTIME {
                Some(Duration::from_secs(30))
            } else {
                None
            },
            create_timeout: None,
            recycle_timeout: None,
            idle_timeout: None,
            max_lifetime: None,
            reuse_order: ReuseOrder::Fifo,
            track_idle_time: false,
            min_idle: 0,
            max_waiters: None,
            fail_fast_when_late: false,
            defaulted: Defaulted::default(),
            max_size_limit: None,
            keepalive_interval: None,
            leak_threshold: None,
            leak_backtrace: false,
            upkeep_interval: None,
            name: "quickslot".into(),
            metrics: true,
            adopting: false,
            shared_capacity: None,
            needs_upkeep: false,
            stamp_checkout: false,
            release_extras: false,
            checkout_extras: false,
        }
    }
}

/// Settings made by an adapter's `pool_builder()` as defaults: they yield to
/// the user's explicit settings instead of conflicting with them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Defaulted {
    pub(crate) idle_timeout: bool,
    pub(crate) max_lifetime: bool,
}
