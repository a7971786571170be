//! A pool of objects you make yourself and [`add`](Pool::add): buffers,
//! parsers, pre-opened handles. No manager and no create: the same fair
//! hand-off core, the same cancel safety, waiters served in arrival order.
//!
//! ```
//! use quickslot::unmanaged::Pool;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pool = Pool::new(2).unwrap();
//! pool.add(vec![0u8; 4096]).unwrap();
//! pool.add(vec![0u8; 4096]).unwrap();
//! assert!(pool.add(Vec::new()).is_err(), "full: the object comes back");
//!
//! let mut buf = pool.acquire().await.unwrap();
//! buf[0] = 1;
//! drop(buf); // back to the pool
//! assert_eq!(pool.status().idle, 2);
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
#[cfg(any(feature = "tokio", feature = "smol"))]
use std::time::Duration;

use crate::error::{BuildError, Error, TryAcquireError};
use crate::handoff::Grant;
use crate::manager::{Manager, ResourceInfo};
use crate::rt;
use crate::shared::Record;
use crate::status::Status;

/// The manager of an unmanaged pool: it never creates (the core hands no
/// waiter a slot to create with), and accepts every object back.
struct Adopted<T>(PhantomData<fn() -> T>);

impl<T: Send + 'static> Manager for Adopted<T> {
    type Resource = T;
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<T, Self::Error> {
        unreachable!("an unmanaged pool never creates: its core grants no slots to waiters")
    }
}

/// A pool of objects added with [`add`](Pool::add). Cheap to clone; all
/// clones share the objects. See the [module docs](self).
pub struct Pool<T: Send + 'static> {
    inner: crate::Pool<Adopted<T>>,
}

impl<T: Send + 'static> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// An object checked out of an unmanaged [`Pool`]. Derefs to the object and
/// returns it to the pool when dropped.
#[must_use = "dropping the guard returns the object at once"]
pub struct Pooled<T: Send + 'static>(crate::Pooled<Adopted<T>>);

impl<T: Send + 'static> Pool<T> {
    /// An empty pool that holds at most `max_size` objects. Waiting acquires
    /// have no deadline unless they ask for one (`acquire_timeout`, with a
    /// runtime feature).
    ///
    /// # Errors
    ///
    /// [`BuildError`] for a `max_size` of 0 or above
    /// [`MAX_SIZE_LIMIT`](crate::MAX_SIZE_LIMIT).
    pub fn new(max_size: usize) -> Result<Self, BuildError> {
        let inner = crate::Pool::builder(Adopted(PhantomData))
            .adopting()
            .max_size(max_size)
            .acquire_timeout(None)
            .build()?;
        Ok(Self { inner })
    }

    /// Adds an object: to the longest waiter if anyone waits, else idle.
    ///
    /// # Errors
    ///
    /// Gives the object back when the pool holds `max_size` objects already
    /// or is closed.
    pub fn add(&self, object: T) -> Result<(), T> {
        let core = self.inner.shared.core();
        if core.try_grow().is_err() {
            return Err(object);
        }
        let info = ResourceInfo::new(self.inner.shared.next_id(), rt::now(), None);
        let entry = Record::new(object, info);
        core.release(Grant::Item(entry));
        Ok(())
    }

    /// Takes an idle object out of the pool for good, if there is one.
    pub fn remove(&self) -> Option<T> {
        self.try_acquire().ok().map(Pooled::detach)
    }

    /// Checks out an object, waiting in line (FIFO) for one if none is idle.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the pool is or gets closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the line; an object handed to it in the
    /// meantime goes to the next waiter.
    pub async fn acquire(&self) -> Result<Pooled<T>, Error<std::convert::Infallible>> {
        self.inner.acquire().await.map(Pooled)
    }

    /// [`acquire`](Self::acquire) that gives up after `timeout`.
    ///
    /// Available with a runtime feature (`tokio` or `smol`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] at the deadline, [`Error::Closed`] when closed.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Self::acquire).
    #[cfg(any(feature = "tokio", feature = "smol"))]
    pub async fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Pooled<T>, Error<std::convert::Infallible>> {
        self.inner.acquire_timeout(timeout).await.map(Pooled)
    }

    /// An idle object, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError`] says why not: closed, others waiting, or none
    /// idle (`Empty` while there is room to [`add`](Self::add), `Exhausted`
    /// when all `max_size` are out).
    pub fn try_acquire(&self) -> Result<Pooled<T>, TryAcquireError> {
        self.inner.try_acquire().map(Pooled)
    }

    /// [`acquire`](Self::acquire) for synchronous code: blocks the thread
    /// (see [`crate::Pool::acquire_blocking`]).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`crate::Pool::acquire_blocking`]: when called on a thread that
    /// drives async tasks.
    pub fn acquire_blocking(&self) -> Result<Pooled<T>, Error<std::convert::Infallible>> {
        self.inner.acquire_blocking().map(Pooled)
    }

    /// [`acquire_blocking`](Self::acquire_blocking) that gives up after
    /// `timeout`.
    ///
    /// Available with a runtime feature (`tokio` or `smol`).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    ///
    /// # Panics
    ///
    /// As [`acquire_blocking`](Self::acquire_blocking).
    #[cfg(any(feature = "tokio", feature = "smol"))]
    pub fn acquire_blocking_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Pooled<T>, Error<std::convert::Infallible>> {
        self.inner.acquire_blocking_timeout(timeout).map(Pooled)
    }

    /// Closes the pool: waiters fail with [`Error::Closed`], idle objects
    /// are dropped now and checked-out ones when they come back, and later
    /// adds give their object back.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// A snapshot of the pool's gauges and counters (`size` counts the
    /// objects added and not removed).
    pub fn status(&self) -> Status {
        self.inner.status()
    }
}

impl<T: Send + 'static> Pooled<T> {
    /// Takes the object out of the pool for good; the pool can take another
    /// in its place.
    pub fn detach(this: Self) -> T {
        crate::Pooled::detach(this.0)
    }
}

impl<T: Send + 'static> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + 'static> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Send + fmt::Debug + 'static> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

impl<T: Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
