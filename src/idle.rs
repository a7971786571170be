//! The idle store: where returned resources wait for their next user.
//!
//! FIFO order is a `crossbeam_queue::ArrayQueue` (the fastest bounded MPMC
//! queue available, and the floor the benchmarks compare against). LIFO
//! order is a lock-free stack built from safe parts: a tagged Treiber stack
//! of slot indices (the 32-bit tag in the head word defeats ABA) and one
//! single-element `ArrayQueue` per slot, used as an atomic cell.
//!
//! Invariants:
//! * an index is in exactly one of `free` or `used`, or held by exactly one
//!   thread between a pop from one and the push to the other;
//! * `slots[i]` holds a value exactly while `i` is in `used` (or held by the
//!   thread that is moving it).

use crate::sync::{ArrayQueue, AtomicU32, AtomicU64, AtomicUsize, CachePadded, Ordering};

/// Which idle resource a checkout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ReuseOrder {
    /// The resource idle the longest goes out first: every resource is used
    /// in turn, which keeps them all warm (the default, as in deadpool and
    /// bb8).
    #[default]
    Fifo,
    /// The resource returned last goes out first: a few hot resources serve
    /// a light load and the rest stay idle, so `idle_timeout` can reap them.
    Lifo,
}

/// One per pool, inline in the shared state: boxing the larger variant
/// would put a pointer chase on every acquire and release.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum IdleStore<T> {
    Fifo(ArrayQueue<T>),
    Lifo(Stack<T>),
}

impl<T> IdleStore<T> {
    pub(crate) fn new(order: ReuseOrder, capacity: usize) -> Self {
        match order {
            ReuseOrder::Fifo => Self::Fifo(ArrayQueue::new(capacity)),
            ReuseOrder::Lifo => Self::Lifo(Stack::new(capacity)),
        }
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        match self {
            Self::Fifo(q) => q.pop(),
            Self::Lifo(s) => s.pop(),
        }
    }

    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        match self {
            Self::Fifo(q) => q.push(value),
            Self::Lifo(s) => s.push(value),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Fifo(q) => q.len(),
            Self::Lifo(s) => s.len(),
        }
    }
}

const NIL: u32 = u32::MAX;

/// A Treiber stack of indices below `u32::MAX`, head tagged against ABA.
#[derive(Debug)]
struct IndexStack {
    /// `tag << 32 | index`, `index == NIL` when empty.
    head: CachePadded<AtomicU64>,
    next: Box<[AtomicU32]>,
}

impl IndexStack {
    fn new(len: usize, full: bool) -> Self {
        let next = (0..len)
            .map(|i| {
                let below = if i == 0 { NIL } else { i as u32 - 1 };
                AtomicU32::new(if full { below } else { NIL })
            })
            .collect();
        let top = if full && len > 0 { len as u32 - 1 } else { NIL };
        Self {
            head: CachePadded::new(AtomicU64::new(u64::from(top))),
            next,
        }
    }

    fn push(&self, index: u32) {
        // Acquire: the tag we build on must be the latest we can see.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // Relaxed: published by the Release CAS below.
            self.next[index as usize].store(head as u32, Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(index);
            // Release: publishes `next[index]` and the slot contents written
            // before this call to the popper's Acquire CAS.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }

    fn pop(&self) -> Option<u32> {
        // Acquire: pairs with the Release CAS in `push`, so `next[top]` read
        // below is the value written before `top` was pushed.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            if top == NIL {
                return None;
            }
            // Relaxed: ordered by the Acquire load of `head`; if `top` was
            // popped and pushed again meanwhile, the tag changed and the CAS
            // below fails.
            let below = self.next[top as usize].load(Ordering::Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(below);
            // Acquire: we take over the slot published by the pusher.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(top),
                Err(seen) => head = seen,
            }
        }
    }
}

/// Bounded lock-free LIFO.
#[derive(Debug)]
pub(crate) struct Stack<T> {
    used: IndexStack,
    free: IndexStack,
    slots: Box<[ArrayQueue<T>]>,
    /// Statistics only (status reports), hence Relaxed.
    len: AtomicUsize,
}

impl<T> Stack<T> {
    fn new(capacity: usize) -> Self {
        assert!(
            capacity < NIL as usize,
            "capacity is validated by the builder"
        );
        Self {
            used: IndexStack::new(capacity, false),
            free: IndexStack::new(capacity, true),
            slots: (0..capacity).map(|_| ArrayQueue::new(1)).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn push(&self, value: T) -> Result<(), T> {
        let Some(index) = self.free.pop() else {
            return Err(value);
        };
        if let Err(value) = self.slots[index as usize].push(value) {
            // Unreachable by the invariants; keep the index and the value.
            self.free.push(index);
            return Err(value);
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        self.used.push(index);
        Ok(())
    }

    fn pop(&self) -> Option<T> {
        let index = self.used.pop()?;
        let value = self.slots[index as usize].pop();
        self.free.push(index);
        if value.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        value
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lifo_and_fifo_orders() {
        let lifo = IdleStore::new(ReuseOrder::Lifo, 3);
        let fifo = IdleStore::new(ReuseOrder::Fifo, 3);
        for i in 0..3 {
            lifo.push(i).unwrap();
            fifo.push(i).unwrap();
        }
        assert_eq!(lifo.push(9), Err(9));
        assert_eq!(fifo.push(9), Err(9));
        assert_eq!(lifo.len(), 3);
        assert_eq!(
            (0..3).map(|_| lifo.pop().unwrap()).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(
            (0..3).map(|_| fifo.pop().unwrap()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(lifo.pop(), None);
        assert_eq!(lifo.len(), 0);
    }

    #[test]
    fn lifo_stack_under_threads_loses_nothing() {
        let stack = std::sync::Arc::new(IdleStore::new(ReuseOrder::Lifo, 8));
        for i in 0..8 {
            stack.push(i).unwrap();
        }
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let stack = stack.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(v) = stack.pop() {
                            stack.push(v).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut all: Vec<_> = std::iter::from_fn(|| stack.pop()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }
}
