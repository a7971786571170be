//! [`Pooled`]: the guard that returns a resource when dropped.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use crate::manager::{Manager, ResourceInfo};
use crate::shared::{Entry, Held, Reason, Record, Shared};
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
/// half-used, or make `is_broken` detect that). If `is_broken` or an
/// `on_release` hook panics on return, the resource is dropped, its slot
/// freed, and the panic goes on to the code that dropped the guard.
#[must_use = "dropping the guard returns the resource at once"]
pub struct Pooled<M: Manager> {
    /// `Some` until the guard is consumed. The guard holds the slot: every
    /// way out builds a borrowed [`Held`] token over it, which gives the
    /// slot back (unwinding included). Kept as the resource and the handle
    /// side by side rather than one `Held`, so the acquire result keeps the
    /// layout the caller's copy is fast with (see `implementation`).
    ///
    /// `ManuallyDrop`: `Drop` always takes the entry, so the field's own
    /// drop glue (a second test of it after the return) is left out.
    entry: ManuallyDrop<Option<Entry<M::Resource>>>,
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(held: Held<M, Arc<Shared<M>>>) -> Self {
        let (shared, entry) = held.into_parts();
        Self {
            entry: ManuallyDrop::new(Some(entry)),
            shared,
        }
    }

    /// The slot and resource as a token borrowing the handle.
    fn take_held(&mut self) -> Held<M, &Shared<M>> {
        let entry = self.entry.take().expect("present until consumed");
        Held::new(&*self.shared, entry)
    }

    fn record(&self) -> &Record<M::Resource> {
        self.entry.as_ref().expect("present until consumed")
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
        let mut held = this.take_held();
        held.unstamp();
        held.shared().stats().add(Counter::Detached, 1);
        held.detach()
    }

    /// Drops the resource instead of returning it (for example after an
    /// error that leaves it unusable), and frees its slot. Counted as broken.
    pub fn discard(mut this: Self) {
        let mut held = this.take_held();
        held.unstamp();
        held.discard(Reason::Broken);
    }

    /// Drops the resource, whose state is unknown (a scoped use that
    /// panicked or was cancelled), and frees its slot.
    pub(crate) fn abandon(mut this: Self) {
        let mut held = this.take_held();
        held.unstamp();
        drop(held);
    }

    /// The handle of the pool this guard returns to.
    pub(crate) fn shared(this: &Self) -> &Arc<Shared<M>> {
        &this.shared
    }

    /// The pool's bookkeeping for this resource.
    pub fn info(this: &Self) -> &ResourceInfo {
        &this.record().info
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.record().resource
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self
            .entry
            .as_mut()
            .expect("present until consumed")
            .resource
    }
}

impl<M: Manager> Drop for Pooled<M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            Held::new(&*self.shared, entry).give_back();
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("resource", &self.record().resource)
            .field("info", &self.record().info)
            .finish()
    }
}
