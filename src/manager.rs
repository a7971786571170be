//! The [`Manager`] trait: how a pool creates and checks its resources.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::rt::Instant;

/// Creates and checks the resources of a [`Pool`](crate::Pool).
///
/// Adapters (such as `quickslot::postgres`) and users implement it. Methods
/// may be written as `async fn`; the returned futures must be `Send`.
///
/// Manager code never runs while the pool holds any internal state, so it may
/// freely use the pool itself (but see [`Pool::acquire`](crate::Pool::acquire)
/// on nested acquires).
///
/// # Example
///
/// ```
/// use quickslot::{Manager, Pool};
///
/// struct Numbers;
///
/// impl Manager for Numbers {
///     type Resource = u64;
///     type Error = std::convert::Infallible;
///
///     async fn create(&self) -> Result<u64, Self::Error> {
///         Ok(42)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::builder(Numbers).max_size(4).build().unwrap();
/// let n = pool.acquire().await.unwrap();
/// assert_eq!(*n, 42);
/// # }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource, such as a database connection.
    type Resource: Send + 'static;
    /// The error of [`create`](Manager::create) and
    /// [`recycle`](Manager::recycle): any printable type, such as a
    /// `std::error::Error`, `anyhow::Error`, `String` or
    /// `Box<dyn std::error::Error + Send + Sync>`. The pool's
    /// [`Error`](crate::Error) implements `std::error::Error` whatever it is,
    /// with this error as its [`source`](std::error::Error::source).
    type Error: fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// Creates a new resource.
    ///
    /// # Errors
    ///
    /// Any error is handed to the caller of `acquire` at once as
    /// [`Error::Create`](crate::Error::Create), and the slot is freed.
    ///
    /// # Cancel safety
    ///
    /// The future is dropped when the acquire that runs it is dropped or
    /// times out; nothing of it is kept.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks an idle resource before it is handed out. The default accepts
    /// every resource without awaiting anything.
    ///
    /// # Errors
    ///
    /// An error discards the resource; the acquire then creates a fresh one
    /// in its place, and the error is counted and kept as the last error of
    /// a possible timeout.
    ///
    /// # Cancel safety
    ///
    /// If the acquire is dropped or times out during `recycle`, the resource
    /// is in an unknown state and is dropped, not returned.
    fn recycle(
        &self,
        resource: &mut Self::Resource,
        info: &ResourceInfo,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (resource, info);
        std::future::ready(Ok(()))
    }

    /// A cheap synchronous check run when a resource is returned; `true`
    /// drops it and frees its slot. The default is `false`.
    fn is_broken(&self, resource: &mut Self::Resource) -> bool {
        let _ = resource;
        false
    }

    /// Called exactly once for every resource that leaves the pool for
    /// good, just before it is dropped: broken, expired, rejected by a
    /// recycle, a hook or [`Pool::retain`](crate::Pool::retain), shed by a
    /// shrink, dropped at close or with the pool, dropped because user code
    /// panicked while the pool held it, and also just before
    /// [`Pooled::detach`](crate::Pooled::detach) hands it to its user. For
    /// unregistering per-object state (a statement cache registry, a
    /// metrics label). The default does nothing.
    ///
    /// It runs synchronously wherever the resource leaves (in a guard's
    /// `Drop`, in `close`, in the upkeep task). If it panics, the slot is
    /// freed all the same and the resource dropped.
    fn detach(&self, resource: &mut Self::Resource) {
        let _ = resource;
    }
}

/// Bookkeeping the pool keeps about each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub(crate) id: u64,
    pub(crate) created_at: Instant,
    pub(crate) last_returned: Option<Instant>,
    pub(crate) uses: u64,
    pub(crate) lifetime: Option<Duration>,
}

impl ResourceInfo {
    pub(crate) fn new(id: u64, created_at: Instant, lifetime: Option<Duration>) -> Self {
        Self {
            id,
            created_at,
            last_returned: None,
            uses: 0,
            lifetime,
        }
    }

    /// A number for this resource, unique within its pool (1, 2, ... in
    /// the order resources were made or added) and fixed for its life.
    /// Tracing events about a resource name it as `resource`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This resource's own lifetime: the builder's `max_lifetime` scaled by
    /// a factor drawn once at creation between 0.9 and 1.0, so resources
    /// created together do not all expire together. `None` without a
    /// `max_lifetime`.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// Whether the resource is past its [`lifetime`](Self::lifetime) at
    /// `now`.
    pub(crate) fn expired_at(&self, now: Instant) -> bool {
        self.lifetime
            .is_some_and(|life| now.saturating_duration_since(self.created_at) >= life)
    }

    /// When the manager created the resource, on the pool's clock
    /// ([`Instant`](crate::Instant): Tokio's with the `tokio` feature, so a
    /// paused Tokio clock applies, std's otherwise).
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// When the resource was last returned to the pool, on the pool's clock
    /// (see [`created_at`](Self::created_at)).
    ///
    /// Recorded only when the pool tracks idle time
    /// ([`Builder::track_idle_time`](crate::Builder::track_idle_time), implied
    /// by an `idle_timeout`): reading the clock on every return costs more
    /// than the rest of a release. `None` otherwise, and before the first
    /// return.
    pub fn last_returned(&self) -> Option<Instant> {
        self.last_returned
    }

    /// How many times the resource was checked out and returned.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// Time since creation.
    pub fn age(&self) -> Duration {
        self.created_at.elapsed()
    }

    /// Time since the last return, when [`last_returned`](Self::last_returned)
    /// is known.
    pub fn idle_for(&self) -> Option<Duration> {
        self.last_returned.map(|t| t.elapsed())
    }
}
