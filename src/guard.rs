//! [`Pooled`]: the guard that returns a resource when dropped.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::handoff::Grant;
use crate::manager::{Manager, ResourceInfo};
use crate::pool::{Entry, Reason, Shared};
use crate::status::Counter;
use crate::sync::Arc;

/// A checked-out resource. It derefs to the resource and returns it to the
/// pool when dropped.
///
/// It owns a handle to the pool, so it is `'static` and can move into
/// `tokio::spawn`. Dropping it needs no runtime: it is safe in `Drop` code,
/// outside any runtime, and after the runtime shut down.
///
/// On return, [`Manager::is_broken`] is asked first; a broken resource, or
/// one past `max_lifetime`, is dropped and its slot goes to the next waiter.
/// If the holder panics, the guard drops during unwinding and the resource
/// returns like any other (use [`Pooled::discard`] where a panic may leave it
/// half-used, or make `is_broken` detect that).
#[must_use = "dropping the guard returns the resource at once"]
pub struct Pooled<M: Manager> {
    entry: Option<Entry<M::Resource>>,
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, entry: Entry<M::Resource>) -> Self {
        Self {
            entry: Some(entry),
            shared,
        }
    }

    fn entry(&self) -> &Entry<M::Resource> {
        self.entry.as_ref().expect("present until drop")
    }

    /// Takes the resource out of the pool for good. Its slot is freed (a
    /// waiter may create a replacement).
    ///
    /// ```
    /// # use quickslot::{Manager, Pool, Pooled};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = String;
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<String, Self::Error> { Ok("mine".into()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M).max_size(1).build().unwrap();
    /// let s: String = Pooled::detach(pool.acquire().await.unwrap());
    /// assert_eq!(s, "mine");
    /// assert_eq!(pool.status().size, 0);
    /// # }
    /// ```
    pub fn detach(mut this: Self) -> M::Resource {
        let mut entry = this.entry.take().expect("present until drop");
        if this.shared.config.stamp_checkout {
            this.shared.unstamp(&mut entry);
        }
        this.shared.stats.add(Counter::Detached, 1);
        this.shared.core.release(Grant::Slot);
        entry.resource
    }

    /// Drops the resource instead of returning it (for example after an
    /// error that leaves it unusable), and frees its slot. Counted as broken.
    pub fn discard(mut this: Self) {
        let mut entry = this.entry.take().expect("present until drop");
        if this.shared.config.stamp_checkout {
            this.shared.unstamp(&mut entry);
        }
        this.shared.discard(Reason::Broken, entry);
    }

    /// Records where the checkout happened, for leak reports.
    pub(crate) fn set_caller(this: &mut Self, caller: &'static std::panic::Location<'static>) {
        let entry = this.entry.as_ref().expect("present until drop");
        if let (Some(leaks), Some(ticket)) = (
            &this.shared.leaks,
            entry.stamp.as_ref().and_then(|s| s.ticket),
        ) {
            leaks.set_caller(ticket, caller);
        }
    }

    /// The pool's bookkeeping for this resource.
    pub fn info(this: &Self) -> &ResourceInfo {
        &this.entry().info
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.entry().resource
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self.entry.as_mut().expect("present until drop").resource
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.shared.give_back(entry);
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("resource", &self.entry().resource)
            .field("info", &self.entry().info)
            .finish()
    }
}
