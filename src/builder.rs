//! [`Builder`]: validated pool settings.

use std::fmt;
use std::time::Duration;

use crate::capacity::Capacity;
use crate::config::Config;
use crate::error::{BuildError, HookError};
use crate::hooks::{Hook, Hooks};
use crate::idle::ReuseOrder;
use crate::manager::{Manager, ResourceInfo};
use crate::rt;

/// The largest accepted `max_size` (and `max_size_limit`). The idle store is
/// allocated up front.
pub const MAX_SIZE_LIMIT: usize = 1 << 20;

/// Builds a [`Pool`](crate::Pool): `Pool::builder(manager)`, setters, then
/// [`build`](Builder::build).
///
/// Building validates the settings, creates no resource and needs no
/// runtime.
///
/// # Background upkeep
///
/// `min_idle`, `idle_timeout`, `max_lifetime`, `keepalive_interval`,
/// `leak_threshold` and the `metrics` feature are served by one background
/// task per pool. With the `tokio` feature it goes to the current Tokio
/// runtime (with the time driver), so it is started lazily: by `build` when
/// called inside a runtime, otherwise by
/// [`Pool::warm_up`](crate::Pool::warm_up) or by the first create (a slow
/// path; the acquire fast path never checks for it), on the Tokio runtime
/// found there or, with `smol` on too and outside any Tokio runtime, on
/// smol's global executor. With `smol` alone, `build` starts it on smol's
/// global executor. It holds only a weak reference to the pool and ends
/// when the last [`Pool`](crate::Pool) handle and [`Pooled`](crate::Pooled)
/// guard are gone, or when the pool is closed.
///
/// # Without a runtime feature
///
/// Built with neither `tokio` nor `smol`, quickslot has no timer and starts
/// no task, so [`build`](Self::build) fails with
/// [`BuildError::NeedsRuntime`] naming the first setting that would need
/// one: an `acquire_timeout`, `create_timeout` or `recycle_timeout`, an
/// `idle_timeout`, `max_lifetime` or `keepalive_interval` (reaped or
/// checked in the background), a `leak_threshold` (reported in the
/// background), a `min_idle` above 0, an `upkeep_interval`, or
/// `fail_fast_when_late` (it refuses only acquires with a deadline). The
/// default `acquire_timeout` is then `None` instead of 30 s, and an
/// adapter's [`default_idle_timeout`](Self::default_idle_timeout) and
/// [`default_max_lifetime`](Self::default_max_lifetime) yield (are
/// dropped) as they do to a conflicting explicit setting. With the
/// `metrics` feature, gauges are then published only by
/// `Pool::publish_metrics`.
///
/// ```
/// use std::time::Duration;
/// # use quickslot::{Manager, Pool};
/// # struct M;
/// # impl Manager for M {
/// #     type Resource = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
/// # }
/// let pool = Pool::builder(M)
///     .max_size(16)
///     .acquire_timeout(Duration::from_secs(5))
///     .max_lifetime(Duration::from_secs(30 * 60))
///     .build()
///     .expect("valid settings");
/// assert_eq!(pool.status().max_size, 16);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<M: Manager> {
    manager: M,
    config: Config,
    hooks: Hooks<M::Resource>,
}

impl<M: Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Self {
            manager,
            config: Config::default(),
            hooks: Hooks::default(),
        }
    }

    /// For `unmanaged` pools: resources are only added
    /// from outside, never created.
    pub(crate) fn adopting(mut self) -> Self {
        self.config.adopting = true;
        self
    }

    /// The most resources the pool holds at once, idle and in use, counting
    /// creates in flight. Default: 10. Must be between 1 and
    /// [`MAX_SIZE_LIMIT`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// One end-to-end deadline for [`Pool::acquire`](crate::Pool::acquire), covering the wait for a
    /// resource, its create and its recycle. `None` waits for ever.
    /// Default: 30 seconds (as in bb8, sqlx and HikariCP) with a runtime
    /// feature (`tokio` or `smol`); `None` without one, where a deadline
    /// has no timer (see [Without a runtime feature](Self#without-a-runtime-feature)).
    pub fn acquire_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.acquire_timeout = timeout.into();
        self
    }

    /// A deadline for each create, inside the acquire deadline. Default:
    /// `None` (only the acquire deadline applies).
    ///
    /// It also bounds a create whose acquire gave up on it (the acquire's
    /// deadline passed, or its future was dropped): such a create finishes
    /// in the background, keeping its slot, and its resource goes to the
    /// next waiter. Without a `create_timeout` the `acquire_timeout` bounds
    /// it; with neither, it is dropped at once (see [`Pool::acquire`](crate::Pool::acquire)).
    pub fn create_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.create_timeout = timeout.into();
        self
    }

    /// A deadline for each recycle, inside the acquire deadline; a recycle
    /// that overruns it counts as failed. Default: `None`.
    pub fn recycle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.recycle_timeout = timeout.into();
        self
    }

    /// Idle resources unused for longer than this are dropped when found on
    /// checkout instead of being handed out. Setting it turns on
    /// [`track_idle_time`](Self::track_idle_time). Default: `None`.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self.config.defaulted.idle_timeout = false;
        self
    }

    /// An `idle_timeout` as an adapter's default (`pool_builder()`): like
    /// [`idle_timeout`](Self::idle_timeout), but it yields to the settings
    /// the user makes. An explicit [`idle_timeout`](Self::idle_timeout)
    /// replaces it, and where it would conflict with an explicit
    /// `max_lifetime` (be longer than it), it is dropped instead of failing
    /// `build` (as HikariCP does). Only settings made explicitly can
    /// contradict each other. In a build without a runtime feature it is
    /// dropped too (see [Without a runtime feature](Self#without-a-runtime-feature)).
    pub fn default_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self.config.defaulted.idle_timeout = true;
        self
    }

    /// A `max_lifetime` as an adapter's default: like
    /// [`max_lifetime`](Self::max_lifetime), but an explicit `max_lifetime`
    /// replaces it, and where an explicit `idle_timeout` is longer than it,
    /// it is dropped instead of failing `build`. In a build without a
    /// runtime feature it is dropped too.
    pub fn default_max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        self.config.defaulted.max_lifetime = true;
        self
    }

    /// Resources older than this are dropped when they come back or are
    /// found on checkout. Default: `None`.
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = lifetime.into();
        self.config.defaulted.max_lifetime = false;
        self
    }

    /// The most acquires that may wait in line at once. An acquire that
    /// would be waiter `max + 1` fails at once with
    /// [`Error::Overloaded`](crate::Error::Overloaded) (counted in
    /// [`Status::overloaded`](crate::Status::overloaded)) instead of joining
    /// a line too long to be served before its deadline: under overload a
    /// service refuses some requests at once rather than failing all of
    /// them at their timeouts. An acquire served at once (an idle resource,
    /// a free slot) is never refused. `Some(0)` means "never wait". Default:
    /// `None` (unbounded).
    ///
    /// ```
    /// # use quickslot::{Error, Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = ();
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M).max_size(1).max_waiters(0).build().unwrap();
    /// let held = pool.acquire().await.unwrap();
    /// assert!(matches!(pool.acquire().await, Err(Error::Overloaded { waiting: 0, .. })));
    /// drop(held);
    /// # }
    /// ```
    pub fn max_waiters(mut self, max: impl Into<Option<usize>>) -> Self {
        self.config.max_waiters = max.into();
        self
    }

    /// Refuses at once an acquire that is expected to wait past its
    /// deadline, with [`Error::Overloaded`](crate::Error::Overloaded)
    /// carrying the expected wait (counted in
    /// [`Status::overloaded`](crate::Status::overloaded)), instead of letting
    /// it wait until the deadline and fail anyway.
    ///
    /// The estimate is the number of acquires ahead plus one, times a moving
    /// mean (weight 1/8) of the intervals between consecutive waits served
    /// with a resource. It assumes the recent rate holds: its relative
    /// error shrinks like `1 / sqrt(n)` for a line of `n`, and a burst of
    /// slow returns makes it pessimistic for about eight grants. An acquire
    /// is never refused while a resource is idle or a slot is free, before
    /// eight waits were served, or when the last one is older than ten mean
    /// intervals. Acquires without a deadline are never refused. Default:
    /// `false`.
    pub fn fail_fast_when_late(mut self, on: bool) -> Self {
        self.config.fail_fast_when_late = on;
        self
    }

    /// Which idle resource goes out first. Default: [`ReuseOrder::Fifo`].
    pub fn reuse_order(mut self, order: ReuseOrder) -> Self {
        self.config.reuse_order = order;
        self
    }

    /// Records when each resource was returned, for
    /// [`ResourceInfo::last_returned`](crate::ResourceInfo::last_returned).
    /// It costs one clock read per release. Default: `false`, or `true` when
    /// an `idle_timeout` is set.
    pub fn track_idle_time(mut self, track: bool) -> Self {
        self.config.track_idle_time = track;
        self
    }

    /// How many idle resources the pool keeps ready, created in the
    /// background (see [Background upkeep](Self#background-upkeep)) and
    /// spared by `idle_timeout`. A failing create is retried with
    /// exponential backoff (100 ms doubling to 30 s, with jitter).
    /// [`Pool::warm_up`](crate::Pool::warm_up) fills up to it at once. Default: 0. Must not exceed
    /// `max_size`.
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
    /// let pool = Pool::builder(M).max_size(8).min_idle(2).build().unwrap();
    /// pool.warm_up().await.unwrap();
    /// assert_eq!(pool.status().idle, 2);
    /// # }
    /// ```
    pub fn min_idle(mut self, min_idle: usize) -> Self {
        self.config.min_idle = min_idle;
        self
    }

    /// The largest `max_size` a later [`Pool::resize`](crate::Pool::resize) may set. Default:
    /// `max_size` (the pool can shrink and grow back, not beyond).
    ///
    /// The idle store is allocated for this many resources when the pool is
    /// built: 16 bytes per unit with [`ReuseOrder::Fifo`], about 400 bytes
    /// per unit with [`ReuseOrder::Lifo`]. Must be between `max_size` and
    /// [`MAX_SIZE_LIMIT`].
    ///
    /// (The store is not swapped on resize: swapping needs an `ArcSwap`
    /// load, a hazard-slot write and fence, on every acquire and release.)
    pub fn max_size_limit(mut self, limit: usize) -> Self {
        self.config.max_size_limit = Some(limit);
        self
    }

    /// Idle resources unused for this long are checked in the background
    /// with [`Manager::recycle`] (and the recycle hooks), so a dead
    /// connection is found before a request finds it; those that fail are
    /// dropped. Turns on [`track_idle_time`](Self::track_idle_time).
    /// Default: `None`.
    pub fn keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.keepalive_interval = interval.into();
        self
    }

    /// A resource held longer than this is reported once, as a `tracing`
    /// warning (target `quickslot::leak`) naming the line that acquired it.
    /// Costs a clock read, a short lock and a `#[track_caller]` location per
    /// checkout and return while set; nothing when `None`. Default: `None`.
    pub fn leak_threshold(mut self, threshold: impl Into<Option<Duration>>) -> Self {
        self.config.leak_threshold = threshold.into();
        self
    }

    /// With a `leak_threshold`, also capture a backtrace at every checkout
    /// and print it in the report (expensive: for debugging). Honours
    /// `RUST_BACKTRACE`/`RUST_LIB_BACKTRACE` like
    /// [`Backtrace::capture`](std::backtrace::Backtrace::capture).
    /// Default: `false`.
    pub fn leak_backtrace(mut self, capture: bool) -> Self {
        self.config.leak_backtrace = capture;
        self
    }

    /// The pause between two rounds of background upkeep. Default: a
    /// quarter of the shortest of `idle_timeout`, `max_lifetime / 10`,
    /// `keepalive_interval` and `leak_threshold`, at most 30 s.
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.config.upkeep_interval = Some(interval);
        self
    }

    /// A name for this pool in `tracing` events and in the `pool` label of
    /// its metrics. Default: `"quickslot"`.
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Whether this pool records metrics when the crate's `metrics` feature
    /// is on (it costs two clock reads per checkout for the hold-time
    /// histogram). Without the feature, nothing is recorded. Default: `true`.
    pub fn metrics(mut self, record: bool) -> Self {
        self.config.metrics = record;
        self
    }

    /// Runs after each create, before the resource is used. Failing it
    /// fails the acquire with [`Error::Hook`](crate::Error::Hook) (see
    /// [`Hook`]).
    pub fn post_create(mut self, hook: Hook<M::Resource>) -> Self {
        self.hooks.post_create = Some(hook);
        self
    }

    /// Runs on an idle resource before [`Manager::recycle`]. Failing it
    /// fails the acquire with [`Error::Hook`](crate::Error::Hook).
    pub fn pre_recycle(mut self, hook: Hook<M::Resource>) -> Self {
        self.hooks.pre_recycle = Some(hook);
        self
    }

    /// Runs on an idle resource after a successful [`Manager::recycle`].
    /// Failing it fails the acquire with [`Error::Hook`](crate::Error::Hook).
    pub fn post_recycle(mut self, hook: Hook<M::Resource>) -> Self {
        self.hooks.post_recycle = Some(hook);
        self
    }

    /// Runs synchronously whenever a resource is returned (in the guard's
    /// `Drop`, after [`Manager::is_broken`]). An error drops the resource
    /// and frees its slot; there is no caller to tell, so it is counted in
    /// [`Discarded::hook`](crate::Discarded::hook) and traced.
    ///
    /// ```
    /// # use quickslot::{Manager, Pool, HookError};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = Vec<u8>;
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<Vec<u8>, Self::Error> { Ok(Vec::new()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M)
    ///     .on_release(|buf: &mut Vec<u8>, _| {
    ///         if buf.capacity() > 1 << 20 {
    ///             return Err(HookError::msg("buffer grew too large"));
    ///         }
    ///         buf.clear();
    ///         Ok(())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// pool.acquire().await.unwrap().extend_from_slice(b"scratch");
    /// assert!(pool.acquire().await.unwrap().is_empty());
    /// # }
    /// ```
    pub fn on_release<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Resource, &ResourceInfo) -> Result<(), HookError> + Send + Sync + 'static,
    {
        self.hooks.on_release = Some(Box::new(hook));
        self
    }

    /// Draws this pool's slots from `capacity`, a budget shared with other
    /// pools: every resource of this pool also takes one unit of it, so all
    /// the pools built with one [`Capacity`] together hold at most
    /// [`Capacity::max`] resources. The pool keeps its own `max_size`, idle
    /// resources and line; a unit freed in any member pool goes to the
    /// acquire that has waited longest across them, and a resource idle in
    /// one pool may be closed for a waiting acquire of another (see
    /// [`Capacity::set_idle_grace`]).
    ///
    /// An acquire that has to wait for a unit waits under its own deadline,
    /// as for a resource; while it waits, a resource returned to its own
    /// pool serves it.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`BuildError::ZeroCapacity`] for a
    /// budget of zero, and with [`BuildError::TooLarge`] if `min_idle` is
    /// above the budget.
    pub fn capacity(mut self, capacity: &Capacity) -> Self {
        self.config.shared_capacity = Some(capacity.clone());
        self
    }

    /// The validated settings, with every derived flag computed.
    pub(crate) fn into_parts(mut self) -> Result<(M, Config, Hooks<M::Resource>), BuildError> {
        yield_defaults(&mut self.config);
        validate(&self.config)?;
        let mut hooks = self.hooks;
        hooks.around_recycle = hooks.pre_recycle.is_some() || hooks.post_recycle.is_some();
        let config = self
            .config
            .derive(hooks.on_release.is_some(), hooks.around_recycle);
        Ok((self.manager, config, hooks))
    }
}

/// Drops an adapter's default that an explicit setting contradicts, or that
/// a build without a runtime feature cannot serve (see
/// [`Builder::default_idle_timeout`]).
fn yield_defaults(c: &mut Config) {
    if !rt::HAS_RUNTIME {
        if c.defaulted.idle_timeout {
            c.idle_timeout = None;
        }
        if c.defaulted.max_lifetime {
            c.max_lifetime = None;
        }
    }
    if let (Some(idle), Some(life)) = (c.idle_timeout, c.max_lifetime) {
        if idle > life {
            if c.defaulted.idle_timeout {
                c.idle_timeout = None;
            } else if c.defaulted.max_lifetime {
                c.max_lifetime = None;
            }
        }
    }
}

fn validate(c: &Config) -> Result<(), BuildError> {
    if c.max_size == 0 {
        return Err(BuildError::ZeroMaxSize);
    }
    if c.max_size > MAX_SIZE_LIMIT {
        return Err(BuildError::MaxSizeTooLarge {
            max_size: c.max_size,
            limit: MAX_SIZE_LIMIT,
        });
    }
    if c.min_idle > c.max_size {
        return Err(BuildError::TooLarge {
            setting: "min_idle",
            value: c.min_idle,
            bound: "max_size",
            bound_value: c.max_size,
        });
    }
    if let Some(capacity) = &c.shared_capacity {
        if capacity.max() == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if c.min_idle > capacity.max() {
            return Err(BuildError::TooLarge {
                setting: "min_idle",
                value: c.min_idle,
                bound: "capacity",
                bound_value: capacity.max(),
            });
        }
    }
    if let Some(limit) = c.max_size_limit {
        if limit > MAX_SIZE_LIMIT {
            return Err(BuildError::MaxSizeTooLarge {
                max_size: limit,
                limit: MAX_SIZE_LIMIT,
            });
        }
        if c.max_size > limit {
            return Err(BuildError::TooLarge {
                setting: "max_size",
                value: c.max_size,
                bound: "max_size_limit",
                bound_value: limit,
            });
        }
    }
    let durations = [
        ("acquire_timeout", c.acquire_timeout),
        ("create_timeout", c.create_timeout),
        ("recycle_timeout", c.recycle_timeout),
        ("idle_timeout", c.idle_timeout),
        ("max_lifetime", c.max_lifetime),
        ("keepalive_interval", c.keepalive_interval),
        ("leak_threshold", c.leak_threshold),
        ("upkeep_interval", c.upkeep_interval),
    ];
    for (setting, value) in durations {
        if value == Some(Duration::ZERO) {
            return Err(BuildError::ZeroDuration { setting });
        }
    }
    let bounded = [
        (
            "create_timeout",
            c.create_timeout,
            "acquire_timeout",
            c.acquire_timeout,
        ),
        (
            "recycle_timeout",
            c.recycle_timeout,
            "acquire_timeout",
            c.acquire_timeout,
        ),
        (
            "idle_timeout",
            c.idle_timeout,
            "max_lifetime",
            c.max_lifetime,
        ),
    ];
    for (setting, value, other, other_value) in bounded {
        if let (Some(value), Some(other_value)) = (value, other_value) {
            if value > other_value {
                return Err(BuildError::Conflict {
                    setting,
                    value,
                    other,
                    other_value,
                });
            }
        }
    }
    if !rt::HAS_RUNTIME {
        needs_no_runtime(c)?;
    }
    Ok(())
}

/// In a build without a runtime feature: the first setting that needs a
/// timer or a background task.
fn needs_no_runtime(c: &Config) -> Result<(), BuildError> {
    let needing = [
        // A deadline's timer.
        ("acquire_timeout", c.acquire_timeout.is_some()),
        ("create_timeout", c.create_timeout.is_some()),
        ("recycle_timeout", c.recycle_timeout.is_some()),
        // Refuses only acquires with a deadline: a no-op without one.
        ("fail_fast_when_late", c.fail_fast_when_late),
        // The background task: reaping, keepalive checks, leak reports,
        // refills, and its rounds.
        ("idle_timeout", c.idle_timeout.is_some()),
        ("max_lifetime", c.max_lifetime.is_some()),
        ("keepalive_interval", c.keepalive_interval.is_some()),
        ("leak_threshold", c.leak_threshold.is_some()),
        ("min_idle", c.min_idle > 0),
        ("upkeep_interval", c.upkeep_interval.is_some()),
    ];
    match needing.into_iter().find(|&(_, set)| set) {
        Some((setting, _)) => Err(BuildError::NeedsRuntime { setting }),
        None => Ok(()),
    }
}

impl<M: Manager> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}
