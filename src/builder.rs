//! [`Builder`]: validated pool settings.

use std::fmt;
use std::time::Duration;

use crate::error::BuildError;
use crate::idle::ReuseOrder;
use crate::manager::Manager;
use crate::pool::Pool;

/// The largest accepted `max_size`. The idle store is allocated up front.
pub const MAX_SIZE_LIMIT: usize = 1 << 20;

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_size: 10,
            acquire_timeout: Some(Duration::from_secs(30)),
            create_timeout: None,
            recycle_timeout: None,
            idle_timeout: None,
            max_lifetime: None,
            reuse_order: ReuseOrder::Fifo,
            track_idle_time: false,
        }
    }
}

/// Builds a [`Pool`]: `Pool::builder(manager)`, setters, then
/// [`build`](Builder::build).
///
/// Building validates the settings, creates no resource and needs no
/// runtime.
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
pub struct Builder<M> {
    manager: M,
    config: Config,
}

impl<M: Manager> Builder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Self {
            manager,
            config: Config::default(),
        }
    }

    /// The most resources the pool holds at once, idle and in use, counting
    /// creates in flight. Default: 10. Must be between 1 and
    /// [`MAX_SIZE_LIMIT`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// One end-to-end deadline for [`Pool::acquire`], covering the wait for a
    /// resource, its create and its recycle. `None` waits for ever.
    /// Default: 30 seconds (as in bb8, sqlx and HikariCP).
    pub fn acquire_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.acquire_timeout = timeout.into();
        self
    }

    /// A deadline for each create, inside the acquire deadline. Default:
    /// `None` (only the acquire deadline applies).
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
        self
    }

    /// Resources older than this are dropped when they come back or are
    /// found on checkout. Default: `None`.
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = lifetime.into();
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

    /// Validates the settings and makes the pool. Creates no resource and
    /// needs no runtime.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the setting: `max_size` of 0 or above
    /// [`MAX_SIZE_LIMIT`], a zero duration, a `create_timeout` or
    /// `recycle_timeout` longer than the `acquire_timeout`, or an
    /// `idle_timeout` longer than the `max_lifetime`.
    pub fn build(self) -> Result<Pool<M>, BuildError> {
        let mut config = self.config;
        validate(&config)?;
        config.track_idle_time |= config.idle_timeout.is_some();
        Ok(Pool::from_parts(self.manager, config))
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
    let durations = [
        ("acquire_timeout", c.acquire_timeout),
        ("create_timeout", c.create_timeout),
        ("recycle_timeout", c.recycle_timeout),
        ("idle_timeout", c.idle_timeout),
        ("max_lifetime", c.max_lifetime),
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
    Ok(())
}

impl<M> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
