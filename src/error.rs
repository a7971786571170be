//! Errors of building a pool and of acquiring from it.

use std::fmt;
use std::time::Duration;

/// Why [`Pool::acquire`](crate::Pool::acquire) failed.
#[derive(Debug)]
#[non_exhaustive]
// A word-sized tag: the `Ok` of `Result<Pooled, Error>` is then one aligned
// tag word and the guard, which the caller's `.await` copies with aligned
// loads. With the default layout the small fields sat in bytes 1-7 and the
// copy read them across the callee's narrower stores (a store-forwarding
// stall; see `implementation`).
#[repr(u64)]
pub enum Error<E> {
    /// The manager failed to create a resource. Returned at once, not after
    /// the deadline; the slot is freed for the next caller.
    Create(E),
    /// The deadline passed.
    #[non_exhaustive]
    Timeout {
        /// What the acquire was doing when the deadline passed.
        phase: TimeoutPhase,
        /// The last error the manager returned to this acquire (a failed
        /// recycle before a create that then hung, say), if any.
        last_error: Option<E>,
    },
    /// The pool is closed.
    Closed,
    /// Refused at once, without waiting: the line was full
    /// ([`Builder::max_waiters`](crate::Builder::max_waiters) acquires were
    /// waiting already), or the wait it would have had to make was
    /// expected to outlast its deadline
    /// ([`Builder::fail_fast_when_late`](crate::Builder::fail_fast_when_late)).
    #[non_exhaustive]
    Overloaded {
        /// How many acquires were waiting.
        waiting: usize,
        /// The expected wait, when the refusal came from that estimate.
        expected_wait: Option<Duration>,
    },
    /// A hook set on the [`Builder`](crate::Builder) failed. The resource it
    /// ran on was dropped and its slot freed; the error is returned at once.
    #[non_exhaustive]
    Hook {
        /// Which hook failed.
        hook: HookKind,
        /// What it returned.
        error: HookError,
    },
}

impl<E> Error<E> {
    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The manager's error, if this error carries one.
    pub fn manager_error(&self) -> Option<&E> {
        match self {
            Self::Create(e) => Some(e),
            Self::Timeout { last_error, .. } => last_error.as_ref(),
            Self::Closed | Self::Hook { .. } | Self::Overloaded { .. } => None,
        }
    }

    /// The hook that failed and its error, if this is [`Error::Hook`].
    pub fn hook_error(&self) -> Option<(HookKind, &HookError)> {
        match self {
            Self::Hook { hook, error } => Some((*hook, error)),
            _ => None,
        }
    }
}

impl<E> fmt::Display for Error<E> {
    // What happened only: the manager's or the hook's error is the
    // `source()`, so a report that walks the chain shows each message once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(_) => f.write_str("creating a pooled resource failed"),
            Self::Timeout { phase, .. } => write!(f, "timed out while {phase}"),
            Self::Closed => f.write_str("the pool is closed"),
            Self::Overloaded {
                waiting,
                expected_wait: None,
            } => write!(
                f,
                "the pool is overloaded: {waiting} acquires are waiting already"
            ),
            Self::Overloaded {
                waiting,
                expected_wait: Some(wait),
            } => write!(
                f,
                "the pool is overloaded: behind {waiting} waiting acquires, the expected wait \
                 of {wait:?} would outlast the deadline"
            ),
            Self::Hook { hook, .. } => write!(f, "the {hook} hook failed"),
        }
    }
}

/// Any manager error as a `std::error::Error`, for [`Error`]'s `source()`.
///
/// A manager's error type only has to be `Debug + Display`; this wrapper
/// shows it in an error chain. The chain goes on below it for the common
/// error types that carry one (`std::io::Error`,
/// `Box<dyn std::error::Error + Send + Sync>`, and the adapters' errors);
/// their `source()` is the wrapped error's own. To reach the manager's error
/// as its own type, match on [`Error::Create`] or use
/// [`Error::manager_error`] (or [`Cause::get`] on the chain link).
#[derive(ref_cast::RefCast)]
#[repr(transparent)]
pub struct Cause<E>(E);

impl<E> Cause<E> {
    /// The manager's error.
    pub fn get(&self) -> &E {
        &self.0
    }
}

impl<E: fmt::Debug> fmt::Debug for Cause<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: fmt::Display> fmt::Display for Cause<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for Cause<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        known_error(&self.0).and_then(|e| e.source())
    }
}

/// `error` as a `std::error::Error`, when its type is one of the common
/// ones that are (a generic `E` cannot be asked whether it is one).
fn known_error<E: 'static>(error: &E) -> Option<&(dyn std::error::Error + 'static)> {
    let any: &dyn std::any::Any = error;
    if let Some(e) = any.downcast_ref::<std::io::Error>() {
        return Some(e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<HookError>() {
        return Some(e);
    }
    #[cfg(feature = "postgres")]
    if let Some(e) = any.downcast_ref::<crate::postgres::PgError>() {
        return Some(e);
    }
    #[cfg(feature = "diesel")]
    if let Some(e) = any.downcast_ref::<crate::diesel::DieselError>() {
        return Some(e);
    }
    None
}

/// The manager's error as a chain link: itself if it is a common error
/// type (so it can be downcast), else wrapped in [`Cause`].
fn as_source<E: fmt::Debug + fmt::Display + 'static>(
    error: &E,
) -> &(dyn std::error::Error + 'static) {
    use ref_cast::RefCast;
    match known_error(error) {
        Some(e) => e,
        None => Cause::ref_cast(error),
    }
}

impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Hook { error, .. } => Some(error),
            _ => self.manager_error().map(as_source),
        }
    }
}

/// Which [hook](crate::Hook) failed, in [`Error::Hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HookKind {
    /// [`Builder::post_create`](crate::Builder::post_create).
    PostCreate,
    /// [`Builder::pre_recycle`](crate::Builder::pre_recycle).
    PreRecycle,
    /// [`Builder::post_recycle`](crate::Builder::post_recycle).
    PostRecycle,
    /// [`Builder::on_release`](crate::Builder::on_release) (never returned
    /// to a caller: a release has none; it is counted and traced).
    OnRelease,
}

impl HookKind {
    /// The hook's name, as the builder method is called.
    pub fn name(self) -> &'static str {
        match self {
            Self::PostCreate => "post_create",
            Self::PreRecycle => "pre_recycle",
            Self::PostRecycle => "post_recycle",
            Self::OnRelease => "on_release",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error a [hook](crate::Hook) returns: any error, boxed, or a message.
///
/// ```
/// use quickslot::HookError;
///
/// let from_message = HookError::msg("the session is read-only");
/// let from_error = HookError::new(std::io::Error::other("reset failed"));
/// assert_eq!(from_message.to_string(), "the session is read-only");
/// assert_eq!(from_error.to_string(), "reset failed");
/// ```
#[derive(Debug)]
pub struct HookError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl HookError {
    /// Wraps an error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(error.into())
    }

    /// An error that is only a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }

    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// Unwraps the error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The phase an acquire was in when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for a resource or a free slot.
    Wait,
    /// Creating a resource (the acquire deadline or `create_timeout`).
    Create,
    /// Recycling an idle resource (the acquire deadline or
    /// `recycle_timeout`).
    Recycle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wait => "waiting for a resource",
            Self::Create => "creating a resource",
            Self::Recycle => "recycling a resource",
        })
    }
}

/// Why [`Pool::try_acquire`](crate::Pool::try_acquire) returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// The pool is closed.
    Closed,
    /// Other acquires are waiting; taking a resource would jump the line.
    Busy,
    /// No resource is idle, but the pool has room to create one, which
    /// `try_acquire` never does (use `acquire`).
    Empty,
    /// Every slot is in use.
    Exhausted,
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "the pool is closed",
            Self::Busy => "other acquires are waiting",
            Self::Empty => "no idle resource (the pool could create one)",
            Self::Exhausted => "every resource is in use",
        })
    }
}

impl std::error::Error for TryAcquireError {}

/// A setting that [`Builder::build`](crate::Builder::build) rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_size` was 0.
    ZeroMaxSize,
    /// The pool's shared [`Capacity`](crate::Capacity) has a budget of 0.
    ZeroCapacity,
    /// `max_size` was larger than the pool supports.
    MaxSizeTooLarge {
        /// The value given.
        max_size: usize,
        /// The largest supported value.
        limit: usize,
    },
    /// A duration setting was zero.
    ZeroDuration {
        /// The setting's name, as the builder method is called.
        setting: &'static str,
    },
    /// `min_idle` is larger than `max_size`, or `max_size` larger than
    /// `max_size_limit`.
    TooLarge {
        /// The setting whose value is out of bounds.
        setting: &'static str,
        /// Its value.
        value: usize,
        /// The setting that bounds it.
        bound: &'static str,
        /// That setting's value.
        bound_value: usize,
    },
    /// A setting needs a timer or a background task, and this build of
    /// quickslot has neither: it was built without a runtime feature. Turn
    /// on the `tokio` or `smol` feature, or leave the setting unset (see
    /// the crate docs' feature table for what works without one).
    NeedsRuntime {
        /// The setting's name, as the builder method is called.
        setting: &'static str,
    },
    /// Two settings contradict each other.
    Conflict {
        /// The setting whose value is out of bounds.
        setting: &'static str,
        /// Its value.
        value: Duration,
        /// The setting it conflicts with.
        other: &'static str,
        /// That setting's value.
        other_value: Duration,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMaxSize => f.write_str("max_size must be at least 1"),
            Self::ZeroCapacity => f.write_str("a shared capacity must be at least 1"),
            Self::MaxSizeTooLarge { max_size, limit } => {
                write!(f, "max_size {max_size} is above the limit of {limit}")
            }
            Self::ZeroDuration { setting } => write!(f, "{setting} must not be zero"),
            Self::NeedsRuntime { setting } => write!(
                f,
                "{setting} needs a runtime feature (tokio or smol), and quickslot was built \
                 without one"
            ),
            Self::TooLarge {
                setting,
                value,
                bound,
                bound_value,
            } => write!(
                f,
                "{setting} ({value}) must not exceed {bound} ({bound_value})"
            ),
            Self::Conflict {
                setting,
                value,
                other,
                other_value,
            } => write!(
                f,
                "{setting} ({value:?}) must not exceed {other} ({other_value:?})"
            ),
        }
    }
}

impl std::error::Error for BuildError {}
