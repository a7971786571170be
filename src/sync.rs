//! The synchronisation facade: the only module that names atomics, `Arc`,
//! cells, the idle queue and the waiter queue.
//!
//! Normal builds use `std`, `crossbeam-queue` and `event-listener`. Under
//! `--cfg loom` the same names resolve to loom's atomics and cells and to
//! loom-visible stand-ins for the crossbeam queues (a `loom::sync::Mutex`
//! around a `VecDeque`, with the same methods), so the loom models in
//! `loom-tests/` drive the real pool core. `event-listener` follows through
//! its own `loom` feature, which the manifest enables under `cfg(loom)`.
//!
//! The stand-ins are only ever compiled under loom: the shipped acquire and
//! release paths take no lock.

pub(crate) use crossbeam_utils::CachePadded;
pub(crate) use event_listener::{listener, Event, EventListener};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, Weak,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex,
};
/// std's `Arc` under loom too: a `Waker` is made from one (`std::task::Wake`),
/// for the thread-parking `block_on` of builds without a runtime feature,
/// which loom models never run; and the few trait objects the crate keeps
/// (loom's `Arc` cannot hold one).
pub(crate) use std::sync::Arc as StdArc;

// loom's `Arc` has no `Weak`: the background upkeep task, the only user of
// `Weak`, is not built under loom (loom models drive the pool by hand).

/// How a registry (a [`Capacity`](crate::Capacity)'s member list) refers to
/// a member without keeping it alive: a `Weak`.
#[cfg(not(loom))]
pub(crate) type Registered<T> = Weak<T>;

/// Under loom, whose `Arc` has no `Weak`, a strong reference; the member
/// removes it itself when it closes, so a model closes its pools.
#[cfg(loom)]
pub(crate) type Registered<T> = StdArc<T>;

/// The member, if it is still there.
#[cfg(not(loom))]
pub(crate) fn registered_get<T: ?Sized>(entry: &Registered<T>) -> Option<StdArc<T>> {
    entry.upgrade()
}

/// The member (always there under loom, see [`Registered`]).
#[cfg(loom)]
pub(crate) fn registered_get<T: ?Sized>(entry: &Registered<T>) -> Option<StdArc<T>> {
    Some(entry.clone())
}

/// How many threads at a time can own a stripe of a per-thread counter
/// (see [`thread_stripe`]).
pub(crate) const OWNED_STRIPES: usize = 16;

/// This thread's stripe of a per-thread counter: below [`OWNED_STRIPES`],
/// a stripe that this thread alone writes, of every such counter (then a
/// plain load and store count exactly, with no locked instruction); from
/// `OWNED_STRIPES` on, a number fixed per thread, for a stripe that other
/// threads write too (a read-modify-write).
///
/// Owned stripes go to the first threads that ask and come back when a
/// thread ends (a thread-local's destructor), to the next thread that
/// asks. The hand-over goes through a mutex, so the old owner's stores
/// happen before the new owner's loads. A thread whose guard is gone
/// (counting from another thread-local's destructor) counts shared.
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_stripe() -> usize {
    let stripe = stripes::STRIPE.get();
    if stripe == stripes::UNCLAIMED {
        return stripes::claim();
    }
    stripe
}

/// Loom does not see thread-locals: every thread shares one stripe.
#[cfg(loom)]
pub(crate) fn thread_stripe() -> usize {
    OWNED_STRIPES
}

#[cfg(not(loom))]
mod stripes {
    use super::OWNED_STRIPES;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    pub(super) const UNCLAIMED: usize = usize::MAX;
    /// The shared stripe of a thread whose guard was destroyed.
    const GONE: usize = OWNED_STRIPES;

    /// Owned stripes given back by threads that ended.
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    /// How many stripes were given out (owned while below
    /// `OWNED_STRIPES`).
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        /// No destructor, so reading it is one load.
        pub(super) static STRIPE: Cell<usize> = const { Cell::new(UNCLAIMED) };
        /// Gives an owned stripe back when the thread ends.
        static GUARD: Guard = const { Guard };
    }

    struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            let stripe = STRIPE.replace(GONE);
            if stripe < OWNED_STRIPES {
                FREE.lock().unwrap_or_else(|e| e.into_inner()).push(stripe);
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn claim() -> usize {
        // The guard first, so that an owned stripe always comes back.
        let stripe = if GUARD.try_with(|_| ()).is_err() {
            GONE
        } else if let Some(free) = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            free
        } else {
            // Relaxed: only uniqueness matters, which the RMW gives.
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            if n < OWNED_STRIPES {
                n
            } else {
                // Shared, and never `UNCLAIMED`.
                OWNED_STRIPES + n % OWNED_STRIPES
            }
        };
        STRIPE.set(stripe);
        stripe
    }
}

/// Spare values kept for reuse (finished timers, waiter records), striped
/// by thread: a value is taken from, and kept in, the stripe of the thread
/// at hand (see [`thread_stripe`]), so two cores do not pass one queue's
/// cache lines back and forth on every use. A stripe is made on first use.
#[derive(Debug)]
pub(crate) struct Spares<T> {
    /// Boxed, so a pool whose acquires never wait carries a pointer per
    /// stripe, not a queue (whose head and tail are padded to their own
    /// cache lines).
    #[cfg(not(loom))]
    stripes: [std::sync::OnceLock<Box<ArrayQueue<T>>>; OWNED_STRIPES + 1],
    /// Under loom (one stripe for every thread, see [`thread_stripe`]), the
    /// one stripe, made at once: std's `OnceLock` would block where loom
    /// cannot see it.
    #[cfg(loom)]
    stripe: ArrayQueue<T>,
    per_stripe: usize,
}

impl<T> Spares<T> {
    /// Keeps at most `per_stripe` values in each stripe.
    pub(crate) fn new(per_stripe: usize) -> Self {
        Self {
            #[cfg(not(loom))]
            stripes: std::array::from_fn(|_| std::sync::OnceLock::new()),
            #[cfg(loom)]
            stripe: ArrayQueue::new(per_stripe),
            per_stripe,
        }
    }

    #[cfg(not(loom))]
    #[inline]
    fn stripe(&self) -> &ArrayQueue<T> {
        // Threads past the owned stripes share the last one.
        let stripe = thread_stripe().min(OWNED_STRIPES);
        self.stripes[stripe].get_or_init(|| Box::new(ArrayQueue::new(self.per_stripe)))
    }

    #[cfg(loom)]
    fn stripe(&self) -> &ArrayQueue<T> {
        let _ = self.per_stripe;
        &self.stripe
    }

    /// A spare value of this thread's stripe, if it has one.
    #[inline]
    pub(crate) fn take(&self) -> Option<T> {
        self.stripe().pop()
    }

    /// Keeps `value` in this thread's stripe; gives it back if that is
    /// full.
    #[inline]
    pub(crate) fn keep(&self, value: T) -> Result<(), T> {
        self.stripe().push(value)
    }
}

/// A cell whose exclusive access is guaranteed by a protocol, not by the
/// type system. Under loom it is loom's `UnsafeCell`, which checks that the
/// protocol really gives exclusive access in every explored interleaving.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// The std twin of `loom::cell::UnsafeCell`, with the same closure API.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Gives the closure a raw pointer to the contents. Dereferencing it is
    /// the caller's `unsafe`, justified by the caller's protocol.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Bounded lock-free MPMC queue holding idle resources (FIFO reuse order).
#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue;

/// Unbounded lock-free MPMC queue of waiter records, in arrival order.
#[cfg(not(loom))]
pub(crate) use crossbeam_queue::SegQueue;

#[cfg(loom)]
pub(crate) use loom_queues::{ArrayQueue, SegQueue};

#[cfg(loom)]
mod loom_queues {
    //! Loom-visible stand-ins with the crossbeam method set the core uses.
    use loom::sync::Mutex;
    use std::collections::VecDeque;

    #[derive(Debug)]
    pub(crate) struct ArrayQueue<T> {
        items: Mutex<VecDeque<T>>,
        cap: usize,
    }

    impl<T> ArrayQueue<T> {
        pub(crate) fn new(cap: usize) -> Self {
            assert!(cap > 0, "capacity must be non-zero");
            Self {
                items: Mutex::new(VecDeque::with_capacity(cap)),
                cap,
            }
        }
        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            let mut q = self.items.lock().unwrap();
            if q.len() == self.cap {
                return Err(value);
            }
            q.push_back(value);
            Ok(())
        }
        pub(crate) fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop_front()
        }
        pub(crate) fn len(&self) -> usize {
            self.items.lock().unwrap().len()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.items.lock().unwrap().is_empty()
        }
    }

    #[derive(Debug)]
    pub(crate) struct SegQueue<T> {
        items: Mutex<VecDeque<T>>,
    }

    impl<T> SegQueue<T> {
        pub(crate) fn new() -> Self {
            Self {
                items: Mutex::new(VecDeque::new()),
            }
        }
        pub(crate) fn push(&self, value: T) {
            self.items.lock().unwrap().push_back(value);
        }
        pub(crate) fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop_front()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.items.lock().unwrap().is_empty()
        }
        pub(crate) fn len(&self) -> usize {
            self.items.lock().unwrap().len()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Spares, OWNED_STRIPES};

    /// A pool carries a stripe it never used as a pointer and a flag, not
    /// as a queue (a few hundred bytes with its padded head and tail).
    #[test]
    fn unused_stripes_are_small() {
        let per_stripe = 2 * std::mem::size_of::<usize>();
        assert!(std::mem::size_of::<Spares<u64>>() <= per_stripe * (OWNED_STRIPES + 2));
    }

    /// A stripe keeps at most its bound and gives back the rest; what it
    /// keeps comes back in the order of its queue.
    #[test]
    fn spares_keep_at_most_their_bound_per_stripe() {
        let spares = Spares::new(2);
        assert_eq!(spares.keep(1), Ok(()));
        assert_eq!(spares.keep(2), Ok(()));
        assert_eq!(spares.keep(3), Err(3));
        assert_eq!(spares.take(), Some(1));
        assert_eq!(spares.take(), Some(2));
        assert_eq!(spares.take(), None);
    }
}
