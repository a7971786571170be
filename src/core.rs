//! The concurrency core: idle store, size, waiters and the fair hand-off.
//!
//! `Core<T>` knows nothing about managers, timeouts or statistics beyond its
//! own counts; the public [`Pool`](crate::Pool) is a thin layer over it.
//!
//! # State
//!
//! * `state`: the number of slots in use (live resources plus creates in
//!   flight) in the low bits, and the `CLOSED` bit on top, in one word so a
//!   grow can never slip past a close.
//! * `idle`: resources nobody holds.
//! * `queue`: waiter records in arrival order (it may also hold records whose
//!   waiter gave up; they are skipped).
//! * `waiters`: how many records are registered and not yet granted,
//!   cancelled or closed. It gates the fast path: while it is non-zero, an
//!   arrival never takes an idle resource, so waiters are served in order.
//!
//! # Invariants
//!
//! * `size <= max_size` at all times (a grow is a CAS that checks it).
//! * Every slot is in exactly one place: an idle resource, a resource held by
//!   a user, a create in flight, or a [`Grant`] being passed along.
//! * No lost wake-up: a waiter registers (count, then queue), issues a
//!   `SeqCst` fence and re-checks the idle store and the size; a releaser
//!   parks its grant, issues a `SeqCst` fence and re-checks the waiters. Of
//!   two fences one comes first in the single total order of `SeqCst`
//!   fences, so one side always sees the other (Dekker's pattern).
//!
//! # Fairness
//!
//! A release first offers its grant to the oldest waiter; only when there is
//! none does the resource go idle. A waiter whose re-check finds an idle
//! resource releases it again, which hands it to the head of the line.

use crate::handoff::{Grant, Outcome, Waiter};
use crate::idle::{IdleStore, ReuseOrder};
use crate::sync::{fence, Arc, AtomicUsize, CachePadded, Ordering, SegQueue};

const CLOSED: usize = 1 << (usize::BITS - 1);

/// Why a grant could not be had without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// Every slot is taken.
    Full,
    /// The pool is closed.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Core<T> {
    /// `size | CLOSED`. Written on grow, shrink and close only.
    state: CachePadded<AtomicUsize>,
    /// Read on every fast-path acquire; written only by waiters.
    waiters: CachePadded<AtomicUsize>,
    /// Records cancelled while still queued (for the clean-up heuristic).
    stale: CachePadded<AtomicUsize>,
    /// Set while one thread compacts the queue.
    compacting: AtomicUsize,
    max_size: AtomicUsize,
    idle: IdleStore<T>,
    queue: SegQueue<Arc<Waiter<T>>>,
    /// Resources dropped because the pool was closed. Statistics only.
    dropped_closed: AtomicUsize,
}

impl<T> Core<T> {
    pub(crate) fn new(max_size: usize, order: ReuseOrder) -> Self {
        Self {
            state: CachePadded::new(AtomicUsize::new(0)),
            waiters: CachePadded::new(AtomicUsize::new(0)),
            stale: CachePadded::new(AtomicUsize::new(0)),
            compacting: AtomicUsize::new(0),
            max_size: AtomicUsize::new(max_size),
            idle: IdleStore::new(order, max_size),
            queue: SegQueue::new(),
            dropped_closed: AtomicUsize::new(0),
        }
    }

    // ----- counts -----

    pub(crate) fn max_size(&self) -> usize {
        // Relaxed: a configuration value read for reports.
        self.max_size.load(Ordering::Relaxed)
    }

    pub(crate) fn size(&self) -> usize {
        // SeqCst: a snapshot consistent with other SeqCst counts.
        self.state.load(Ordering::SeqCst) & !CLOSED
    }

    pub(crate) fn is_closed(&self) -> bool {
        // SeqCst: pairs with the fetch_or in `close`.
        self.state.load(Ordering::SeqCst) & CLOSED != 0
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn waiting(&self) -> usize {
        // SeqCst: see `register`.
        self.waiters.load(Ordering::SeqCst)
    }

    pub(crate) fn dropped_closed(&self) -> usize {
        // Relaxed: statistics only.
        self.dropped_closed.load(Ordering::Relaxed)
    }

    // ----- acquire side -----

    /// The fast path: an idle resource, unless someone is already waiting.
    #[inline]
    pub(crate) fn pop_idle(&self) -> Option<T> {
        // SeqCst: pairs with the increment in `register`. A stale zero only
        // lets this arrival take a resource parked in the instant before a
        // waiter registered; the releaser's re-check then serves the waiter
        // from the next release, so nothing is lost.
        #[cfg(not(quickslot_bug = "barging"))]
        if self.waiters.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.idle.pop()
    }

    /// An idle resource regardless of waiters (for `retain` and upkeep).
    pub(crate) fn pop_idle_any(&self) -> Option<T> {
        self.idle.pop()
    }

    /// Takes a free slot if the pool is below `max_size` and open.
    pub(crate) fn try_grow(&self) -> Result<(), Busy> {
        // Relaxed: the CAS below validates the value.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & CLOSED != 0 {
                return Err(Busy::Closed);
            }
            // Relaxed: max_size is configuration; a stale value only delays
            // the effect of a resize by one attempt.
            if state >= self.max_size.load(Ordering::Relaxed) {
                return Err(Busy::Full);
            }
            // SeqCst: the slot count takes part in the Dekker pairs of
            // `recheck` (a waiter that grows) and `release` (a releaser that
            // frees a slot).
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => state = seen,
            }
        }
    }

    /// Fast path, then grow. `Err(Full)` means the caller has to wait.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Grant<T>, Busy> {
        if let Some(item) = self.pop_idle() {
            return Ok(Grant::Item(item));
        }
        self.try_grow().map(|()| Grant::Slot)
    }

    /// Publishes a waiter record. The caller listens on it first.
    pub(crate) fn register(&self, waiter: &Arc<Waiter<T>>) {
        // Counted before it is queued, so the count never underflows when a
        // releaser pops and grants it at once. SeqCst: read by the fast path
        // and by the releaser's re-check.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.queue.push(waiter.clone());
        self.recheck();
    }

    /// After a record was (re)queued: anything parked meanwhile goes to the
    /// head of the line.
    fn recheck(&self) {
        // SeqCst fence: pairs with the fence in `release` (and in `close`).
        // Either this thread sees what the releaser parked, or the releaser
        // sees our record and count.
        fence(Ordering::SeqCst);
        if self.is_closed() {
            self.close_waiters();
            return;
        }
        #[cfg(not(quickslot_bug = "no_recheck"))]
        {
            if let Some(item) = self.idle.pop() {
                self.release(Grant::Item(item));
            } else if self.try_grow().is_ok() {
                self.release(Grant::Slot);
            }
        }
    }

    /// The waiter's future was dropped.
    pub(crate) fn cancel(&self, waiter: &Waiter<T>) {
        match waiter.cancel() {
            Outcome::Waiting => {
                // SeqCst: as in `register`.
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                // Relaxed: a heuristic count for the clean-up below.
                // Read as signed: a racing decrement may run first.
                let stale = self.stale.fetch_add(1, Ordering::Relaxed).wrapping_add(1) as isize;
                if stale > 64 && stale > 2 * self.waiting() as isize {
                    self.compact();
                }
            }
            #[cfg(not(quickslot_bug = "drop_grant"))]
            Outcome::Granted(grant) => self.release(grant),
            #[cfg(quickslot_bug = "drop_grant")]
            Outcome::Granted(grant) => drop(grant),
            Outcome::Closed => {}
        }
    }

    /// Drops cancelled records from the queue, so a pool whose resources are
    /// all held for a long time does not accumulate the records of every
    /// acquire that timed out meanwhile. One thread at a time; live records
    /// keep their relative order.
    fn compact(&self) {
        // Acquire/Release: a plain try-lock flag around the compaction; it
        // is never waited on, so it is no lock on any path.
        if self
            .compacting
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut live = Vec::new();
        for _ in 0..self.queue.len() {
            let Some(waiter) = self.queue.pop() else {
                break;
            };
            if waiter.is_waiting() {
                live.push(waiter);
            } else {
                // Relaxed: heuristic count.
                self.stale.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let requeued = !live.is_empty();
        for waiter in live {
            self.queue.push(waiter);
        }
        // Release: pairs with the Acquire CAS above.
        self.compacting.store(0, Ordering::Release);
        if requeued {
            // A releaser may have found the queue empty while we held the
            // records and parked its grant: same re-check as a new waiter.
            self.recheck();
        }
    }

    // ----- release side -----

    /// Returns a resource or a slot: to the oldest waiter, else to the pool.
    #[inline]
    pub(crate) fn release(&self, mut grant: Grant<T>) {
        loop {
            // SeqCst: pairs with `register`; a stale zero is caught by the
            // re-check after parking.
            if self.waiters.load(Ordering::SeqCst) != 0 {
                match self.hand_to_waiter(grant) {
                    Ok(()) => return,
                    Err(back) => grant = back,
                }
            }
            self.park(grant);
            // SeqCst fence: pairs with the fence in `recheck` (see the module
            // docs) and with the one in `close`.
            #[cfg(not(quickslot_bug = "no_release_fence"))]
            fence(Ordering::SeqCst);
            match self.reclaim() {
                Some(again) => grant = again,
                None => return,
            }
        }
    }

    /// Offers `grant` to queued waiters, oldest first.
    #[cold]
    fn hand_to_waiter(&self, mut grant: Grant<T>) -> Result<(), Grant<T>> {
        while let Some(waiter) = self.queue.pop() {
            match waiter.offer(grant) {
                Ok(()) => {
                    // SeqCst: the granted record stops counting (see
                    // `register`).
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(back) => {
                    grant = back;
                    // Relaxed: heuristic count.
                    self.stale.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        Err(grant)
    }

    /// Puts a grant back: an item into the idle store, a slot off the size.
    #[inline]
    fn park(&self, grant: Grant<T>) {
        match grant {
            Grant::Item(item) => {
                if let Err(item) = self.idle.push(item) {
                    // The store holds max_size items and every item owns a
                    // slot, so this cannot happen; if it ever did, dropping
                    // the item and its slot keeps the counts exact.
                    drop(item);
                    // SeqCst: as in `try_grow`.
                    self.state.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Grant::Slot => {
                // SeqCst: as in `try_grow`.
                self.state.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// After parking and the fence: whether a waiter registered meanwhile
    /// (then take something back to hand over) or the pool closed.
    #[inline]
    fn reclaim(&self) -> Option<Grant<T>> {
        // SeqCst: both loads are ordered after the fence in `release`.
        let closed = self.state.load(Ordering::SeqCst) & CLOSED != 0;
        if !closed && self.waiters.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.reclaim_slow(closed)
    }

    #[cold]
    fn reclaim_slow(&self, closed: bool) -> Option<Grant<T>> {
        if closed {
            self.drain_idle_closed();
            return None;
        }
        // An empty queue with a non-zero count means the registering waiter
        // has not queued yet (its own re-check will see what we parked) or
        // another releaser holds its record (and serves it).
        if self.queue.is_empty() {
            return None;
        }
        if let Some(item) = self.idle.pop() {
            Some(Grant::Item(item))
        } else if self.try_grow().is_ok() {
            Some(Grant::Slot)
        } else {
            // Someone else took it; the waiters are theirs to serve.
            None
        }
    }

    // ----- close -----

    /// Closes the pool: waiters are told, idle resources dropped, later
    /// grows fail and later releases drop what they return. Returns whether
    /// this call closed it.
    pub(crate) fn close(&self) -> bool {
        // SeqCst: ordered with the fences below and in `recheck`/`release`.
        let first = self.state.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0;
        // SeqCst fence: a waiter that queues after our drain sees CLOSED in
        // its re-check, and a releaser that parks after our drain sees it
        // after its fence.
        fence(Ordering::SeqCst);
        self.close_waiters();
        self.drain_idle_closed();
        first
    }

    fn close_waiters(&self) {
        while let Some(waiter) = self.queue.pop() {
            if waiter.close() {
                // SeqCst: as in `register`.
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            } else {
                // Relaxed: heuristic count.
                self.stale.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn drain_idle_closed(&self) {
        while let Some(item) = self.idle.pop() {
            self.discard_closed(Grant::Item(item));
        }
    }

    fn discard_closed(&self, grant: Grant<T>) {
        if let Grant::Item(item) = grant {
            // Relaxed: statistics only.
            self.dropped_closed.fetch_add(1, Ordering::Relaxed);
            drop(item);
        }
        // SeqCst: as in `try_grow`.
        self.state.fetch_sub(1, Ordering::SeqCst);
    }
}
