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
//! * `spare_waiters`: finished records nobody else holds, kept for reuse
//!   (each back in `WAITING`, its cell empty, its event without listeners).
//! * `waiters`: how many records are registered and not yet granted,
//!   cancelled or closed, plus the `SHRINKING` bit on top. It gates the fast
//!   path: while it is non-zero, an arrival never takes an idle resource, so
//!   waiters are served in order, and a release takes the slow branch.
//! * `SHRINKING` (in `waiters`): set by a shrinking [`Core::resize`] while the
//!   size may exceed `max_size`. Folding it into the word both fast paths
//!   already test makes a resizable pool cost nothing on them: only the
//!   slow branches look at it, and there a release that finds
//!   `size > max_size` sheds what it returns instead of passing it on.
//!
//! # Invariants
//!
//! * `size <= max_size` at all times (a grow is a CAS that checks it),
//!   except after a shrinking resize, while `SHRINKING` is set: then no grow
//!   succeeds and every release sheds until `size <= max_size`.
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
use crate::sync::{
    fence, Arc, ArrayQueue, AtomicBool, AtomicUsize, CachePadded, Event, EventListener, Ordering,
    SegQueue, Spares,
};

/// How many finished waiter records a core keeps per thread stripe.
const SPARE_WAITERS: usize = 64;

const CLOSED: usize = 1 << (usize::BITS - 1);

/// Whether a cancel, with `stale` cancelled records in the line and
/// `waiting` live ones, trims the line: more than 64 and more than twice the
/// live ones. Any in unit tests and loom models, to reach it.
fn should_compact(stale: isize, waiting: usize) -> bool {
    if cfg!(any(test, loom)) {
        stale > 0
    } else {
        stale > 64 && stale > 2 * waiting as isize
    }
}

/// In `waiters`: a shrink is in progress (see the module docs).
const SHRINKING: usize = 1 << (usize::BITS - 1);

/// What the slow branch of a release did with its grant.
enum Slow<T> {
    /// A waiter has it.
    Handed,
    /// Dropped (an item) or taken off the size (a slot) while over max_size.
    Shed,
    /// Nobody wanted it: park it.
    Back(Grant<T>),
}

/// Why a grant could not be had without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Every slot is taken.
    Full,
    /// The pool is closed.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Core<T, S: Sink<T> = JustDrop> {
    /// `size | CLOSED`. Written on grow, shrink and close only.
    state: CachePadded<AtomicUsize>,
    /// Read on every fast-path acquire; written only by waiters.
    waiters: CachePadded<AtomicUsize>,
    /// Records cancelled while still queued (for the clean-up heuristic).
    stale: CachePadded<AtomicUsize>,
    /// Set while one thread compacts the queue.
    compacting: AtomicBool,
    max_size: AtomicUsize,
    idle: IdleStore<T>,
    queue: SegQueue<Arc<Waiter<T>>>,
    /// The head of the line, when a compaction put a live record back: it
    /// is older than everything in `queue`. Pushed to only by the compactor.
    front: ArrayQueue<Arc<Waiter<T>>>,
    /// Finished waiter records, for reuse, striped by thread.
    spare_waiters: Spares<Arc<Waiter<T>>>,
    /// Resources dropped because the pool was closed. Statistics only.
    dropped_closed: AtomicUsize,
    /// Resources dropped because a shrink left the pool too large.
    /// Statistics only.
    dropped_resized: AtomicUsize,
    /// Notified when a closed pool's size reaches zero (for `drain`).
    emptied: Event,
    /// Takes every item the core drops itself (closed, shed, left idle when
    /// the core is dropped).
    sink: S,
    /// Whether a free slot is worth something to a waiter (it may create).
    /// False for a pool of adopted objects: only items are handed to
    /// waiters, and a freed slot just lowers the size.
    creates: bool,
    /// Unit tests: run once while a compaction holds a live record.
    #[cfg(test)]
    hold_hook: crate::sync::Mutex<Option<HoldHook<T, S>>>,
}

#[cfg(test)]
type HoldFn<T, S> = dyn FnOnce(&Core<T, S>) + Send;

#[cfg(test)]
struct HoldHook<T, S: Sink<T>>(Box<HoldFn<T, S>>);

#[cfg(test)]
impl<T, S: Sink<T>> std::fmt::Debug for HoldHook<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HoldHook")
    }
}

/// Where the core's own drops go: the pool passes each item to its
/// manager's `detach` first.
pub(crate) trait Sink<T>: Send + Sync {
    /// Takes an item that leaves the pool for good. Called after its slot
    /// was released, so a panic here costs no capacity.
    fn drop_item(&self, item: T);
}

/// The plain sink: drops the item.
#[derive(Debug, Default)]
pub(crate) struct JustDrop;

impl<T> Sink<T> for JustDrop {
    fn drop_item(&self, item: T) {
        drop(item);
    }
}

#[cfg(any(test, loom))]
impl<T> Core<T> {
    /// `capacity` (at least `max_size`) bounds every later resize.
    pub(crate) fn new(max_size: usize, capacity: usize, order: ReuseOrder) -> Self {
        Self::with_sink(max_size, capacity, order, JustDrop)
    }
}

impl<T, S: Sink<T>> Core<T, S> {
    /// [`new`](Core::new), with `sink` taking the items the core drops.
    pub(crate) fn with_sink(max_size: usize, capacity: usize, order: ReuseOrder, sink: S) -> Self {
        debug_assert!(max_size <= capacity);
        Self {
            state: CachePadded::new(AtomicUsize::new(0)),
            waiters: CachePadded::new(AtomicUsize::new(0)),
            stale: CachePadded::new(AtomicUsize::new(0)),
            compacting: AtomicBool::new(false),
            max_size: AtomicUsize::new(max_size),
            idle: IdleStore::new(order, capacity),
            queue: SegQueue::new(),
            front: ArrayQueue::new(1),
            spare_waiters: Spares::new(SPARE_WAITERS),
            dropped_closed: AtomicUsize::new(0),
            dropped_resized: AtomicUsize::new(0),
            emptied: Event::new(),
            sink,
            creates: true,
            #[cfg(test)]
            hold_hook: crate::sync::Mutex::new(None),
        }
    }

    /// A core whose resources are only ever added from outside
    /// ([`try_grow`](Self::try_grow), then a release of the item): no
    /// waiter is ever handed a slot to create with.
    pub(crate) fn adopting(mut self) -> Self {
        self.creates = false;
        self
    }

    /// The sink of the items the core drops.
    pub(crate) fn sink(&self) -> &S {
        &self.sink
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
        self.waiters.load(Ordering::SeqCst) & !SHRINKING
    }

    pub(crate) fn dropped_closed(&self) -> usize {
        // Relaxed: statistics only.
        self.dropped_closed.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped_resized(&self) -> usize {
        // Relaxed: statistics only.
        self.dropped_resized.load(Ordering::Relaxed)
    }

    /// Listens for a closed pool's size reaching zero. Listen, then check
    /// [`size`](Self::size), then await. Only `Pool::drain` waits for it,
    /// and it needs a runtime feature.
    #[cfg_attr(not(any(feature = "tokio", feature = "smol")), allow(dead_code))]
    pub(crate) fn listen_emptied(&self) -> EventListener {
        self.emptied.listen()
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
        let item = self.idle.pop()?;
        // SeqCst: pairs with the `fetch_or` in `close`. A release racing a
        // close may park an item after the close drained the store (its own
        // re-check then drops it); an acquire that comes after the close
        // must not get it. The word is written only by grow, shrink and
        // close, so this read stays in the cache.
        if self.state.load(Ordering::SeqCst) & CLOSED != 0 {
            self.discard_closed(Grant::Item(item));
            return None;
        }
        Some(item)
    }

    /// An idle resource regardless of waiters (for `retain` and upkeep).
    pub(crate) fn pop_idle_any(&self) -> Option<T> {
        self.idle.pop()
    }

    /// Takes a free slot if the pool is below `max_size` and open.
    pub(crate) fn try_grow(&self) -> Result<(), Unavailable> {
        // Relaxed: the CAS below validates the value.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & CLOSED != 0 {
                return Err(Unavailable::Closed);
            }
            // Relaxed: a grow racing a resize may use either value. A waiter
            // that must see a raised value reads it after the SeqCst fence
            // in `recheck`, which pairs with the fence in `resize`.
            if state >= self.max_size.load(Ordering::Relaxed) {
                return Err(Unavailable::Full);
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
                Ok(_) => break,
                Err(seen) => state = seen,
            }
        }
        // A shrink may have lowered max_size between our check and our CAS.
        // SeqCst (in `max_size_now`): if our CAS precedes the `swap` in
        // `resize`, the shrinker's `settle_over` reads our slot and keeps
        // shedding; if it follows it, this load sees the new maximum. Then we
        // took a slot above it and give one back, but only while the pool is
        // still too large (`shrink_one` is one atomic step), so no capacity
        // that a waiter is owed is lost; if someone freed a slot meanwhile,
        // ours fits and we keep it. Without this the pool could stay above
        // its maximum for good.
        if state & !CLOSED >= self.max_size_now() && self.shrink_one() {
            return Err(Unavailable::Full);
        }
        Ok(())
    }

    /// Fast path, then grow. `Err(Full)` means the caller has to wait.
    #[cfg(any(test, loom))]
    pub(crate) fn try_acquire(&self) -> Result<Grant<T>, Unavailable> {
        if let Some(item) = self.pop_idle() {
            return Ok(Grant::Item(item));
        }
        self.try_acquire_slot()
    }

    /// What `try_acquire` does after its [`pop_idle`](Self::pop_idle)
    /// found nothing, for a caller that made that attempt itself: a slot to
    /// create with, or why not. Not trying the idle store again loses
    /// nothing a second try would have found: an item parked after the
    /// first one goes to the waiter this caller then becomes (its re-check
    /// after registering), as after any `Err(Full)`.
    pub(crate) fn try_acquire_slot(&self) -> Result<Grant<T>, Unavailable> {
        if !self.creates {
            return Err(if self.is_closed() {
                Unavailable::Closed
            } else {
                Unavailable::Full
            });
        }
        self.try_grow().map(|()| Grant::Slot)
    }

    /// A waiter record for a new wait: a finished one of this thread's
    /// stripe (see [`retire_waiter`](Self::retire_waiter)), or a fresh
    /// one.
    #[inline]
    pub(crate) fn new_waiter(&self) -> Arc<Waiter<T>> {
        self.spare_waiters
            .take()
            .unwrap_or_else(|| Arc::new(Waiter::new()))
    }

    /// Keeps a finished waiter record for a later wait on this thread, if
    /// nobody else holds it (a releaser that popped it may still): a reused
    /// record keeps its event's allocation, so a wait then allocates
    /// nothing. Call it after the wait's listener is gone.
    #[inline]
    pub(crate) fn retire_waiter(&self, mut waiter: Arc<Waiter<T>>) {
        if let Some(record) = Arc::get_mut(&mut waiter) {
            record.reset();
            let _ = self.spare_waiters.keep(waiter);
        }
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

    /// [`register`](Self::register), unless `max` records wait already:
    /// then `Err` with that count, and the record is not queued.
    pub(crate) fn register_bounded(
        &self,
        waiter: &Arc<Waiter<T>>,
        max: usize,
    ) -> Result<(), usize> {
        // SeqCst: as in `register`; a compare-exchange, so that two arrivals
        // cannot both take the last place in line.
        let mut current = self.waiters.load(Ordering::SeqCst);
        loop {
            let waiting = current & !SHRINKING;
            if waiting >= max {
                return Err(waiting);
            }
            match self.waiters.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.queue.push(waiter.clone());
        self.recheck();
        Ok(())
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
            } else if self.creates && self.try_grow().is_ok() {
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
                if should_compact(stale, self.waiting()) {
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

    /// Trims cancelled records off the head of the line, so a pool whose
    /// resources are all held for a long time does not keep the record of
    /// every acquire that timed out meanwhile. One thread at a time.
    ///
    /// It never trims past a live record: the first one it meets goes into
    /// `front`, which every releaser serves before `queue`, so the line keeps
    /// its order. At most one live record is ever out of both queues (for
    /// the few instructions between its pop and its push into `front`), and
    /// the re-check afterwards, which hands a parked grant to the head of the
    /// line, covers any release that found the line empty meanwhile. A
    /// release in that instant may serve the second waiter before the first.
    fn compact(&self) {
        // Acquire/Release: a try-lock flag around the compaction; it is never
        // waited on, so it is no lock on any path.
        if self
            .compacting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut holds_live = false;
        // `front` first: a cancelled record there would stop the trim.
        if let Some(waiter) = self.front.pop() {
            if waiter.is_waiting() {
                self.put_front(waiter);
                holds_live = true;
            } else {
                // Relaxed: heuristic count.
                self.stale.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if !holds_live {
            for _ in 0..self.queue.len() {
                let Some(waiter) = self.queue.pop() else {
                    break;
                };
                if waiter.is_waiting() {
                    #[cfg(test)]
                    self.run_hold_hook();
                    self.put_front(waiter);
                    holds_live = true;
                    break;
                }
                // Relaxed: heuristic count.
                self.stale.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Release: pairs with the Acquire CAS above.
        self.compacting.store(false, Ordering::Release);
        if holds_live {
            // A releaser may have found the line empty while we held the
            // record, and parked its grant: the same re-check as a new
            // waiter's.
            self.recheck();
        }
    }

    /// Puts the live record a compaction took back at the head of the line.
    fn put_front(&self, waiter: Arc<Waiter<T>>) {
        // Only the compactor pushes to `front`, one record at a time, after
        // emptying it: the push cannot fail.
        let pushed = self.front.push(waiter);
        debug_assert!(
            pushed.is_ok(),
            "the front slot is empty during a compaction"
        );
    }

    /// The oldest queued record: `front` (a record a compaction put back)
    /// comes before `queue`.
    fn pop_waiter(&self) -> Option<Arc<Waiter<T>>> {
        self.front.pop().or_else(|| self.queue.pop())
    }

    /// Whether no record is queued (live or not).
    fn line_is_empty(&self) -> bool {
        self.queue.is_empty() && self.front.is_empty()
    }

    // ----- release side -----

    /// Returns a resource or a slot: to the oldest waiter, else to the pool.
    ///
    /// The first round of [`release_rounds`](Self::release_rounds), inline:
    /// with nobody waiting it parks, fences and finds nothing to do, which
    /// is the whole uncontended release. The same steps in the same order
    /// as the loop; only the call is saved.
    #[inline(always)]
    pub(crate) fn release(&self, grant: Grant<T>) {
        // SeqCst: as in `release_rounds`.
        if self.waiters.load(Ordering::SeqCst) != 0 {
            return self.release_rounds(grant);
        }
        self.park(grant);
        // SeqCst fence: as in `release_rounds`.
        #[cfg(not(quickslot_bug = "no_release_fence"))]
        fence(Ordering::SeqCst);
        if let Some(again) = self.reclaim() {
            self.release_rounds(again);
        }
    }

    /// The release loop: serve a waiter or park, fence, and go round again
    /// with whatever the re-check takes back.
    #[inline(never)]
    fn release_rounds(&self, mut grant: Grant<T>) {
        loop {
            // SeqCst: pairs with `register`; a stale zero is caught by the
            // re-check after parking.
            let waiters = self.waiters.load(Ordering::SeqCst);
            if waiters != 0 {
                match self.release_slow(grant, waiters) {
                    Slow::Handed => return,
                    // The grant was shed. Like a park, that can leave a
                    // waiter behind: it may have re-checked, taken the one
                    // item it found and shed it here, while another item sat
                    // idle. So re-check as after a park.
                    Slow::Shed => {}
                    Slow::Back(back) => {
                        self.park(back);
                    }
                }
            } else {
                self.park(grant);
            }
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

    /// The release path while someone waits or a shrink is in progress
    /// (`waiters` non-zero): shed if the pool is too large, else serve the
    /// oldest waiter, else hand the grant back to be parked.
    #[cold]
    fn release_slow(&self, grant: Grant<T>, waiters: usize) -> Slow<T> {
        let grant = if waiters & SHRINKING != 0 {
            match self.shed(grant) {
                Ok(()) => return Slow::Shed,
                // The size fits: serve waiters as usual.
                Err(back) => back,
            }
        } else {
            grant
        };
        if !self.creates && matches!(grant, Grant::Slot) {
            // Nothing a waiter of adopted objects could use.
            return Slow::Back(grant);
        }
        match self.hand_to_waiter(grant) {
            Ok(()) => Slow::Handed,
            Err(back) => Slow::Back(back),
        }
    }

    /// Offers `grant` to queued waiters, oldest first.
    #[cold]
    fn hand_to_waiter(&self, mut grant: Grant<T>) -> Result<(), Grant<T>> {
        while let Some(waiter) = self.pop_waiter() {
            match waiter.offer(grant) {
                Ok(()) => {
                    // SeqCst: the granted record stops counting (see
                    // `register`). Before the wake-up: a woken waiter that
                    // looks at the count (a shared capacity's member
                    // parking what it was served) does not find itself
                    // still counted. One that saw GRANTED on its own, still
                    // running, may (see `Shared::after_park`).
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    waiter.wake();
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
                    debug_assert!(false, "the idle store overflowed: a slot was counted twice");
                    // SeqCst: as in `try_grow`.
                    self.state.fetch_sub(1, Ordering::SeqCst);
                    self.sink.drop_item(item);
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
            if self.size() == 0 {
                self.emptied.notify(usize::MAX);
            }
            return None;
        }
        // A shrink began: what we parked may be above the new maximum.
        self.shed_idle();
        // An empty queue with a non-zero count means the registering waiter
        // has not queued yet (its own re-check will see what we parked) or
        // another releaser holds its record (and serves it).
        if self.line_is_empty() {
            return None;
        }
        if let Some(item) = self.idle.pop() {
            Some(Grant::Item(item))
        } else if self.creates && self.try_grow().is_ok() {
            Some(Grant::Slot)
        } else {
            // Someone else took it; the waiters are theirs to serve.
            None
        }
    }

    // ----- resize -----

    /// Sets `max_size` (at most the idle store's capacity, checked by the
    /// caller). Growing hands the new room to queued waiters as slots;
    /// shrinking sets `SHRINKING`, drops idle resources until the size fits, and
    /// leaves the rest to releases, which shed while the size is too large.
    pub(crate) fn resize(&self, new_max: usize) {
        // SeqCst: ordered before the fence below, so a waiter whose re-check
        // follows that fence sees the new maximum in its `try_grow`.
        let old = self.max_size.swap(new_max, Ordering::SeqCst);
        if new_max < old {
            // SeqCst: set before the fence below; a releaser whose fence
            // comes later sees it in `release`/`reclaim` and sheds.
            self.waiters.fetch_or(SHRINKING, Ordering::SeqCst);
        }
        // SeqCst fence: pairs with the fences in `recheck` and `release`
        // (Dekker): either a concurrent waiter's re-check sees the new
        // maximum, or we see its count below; either a concurrent releaser
        // sees `SHRINKING`, or we see what it parked below.
        fence(Ordering::SeqCst);
        if new_max < old {
            self.shed_idle();
        } else {
            // At most one slot per unit of new room; each goes to the head
            // waiter (or straight back if that waiter is gone).
            for _ in old..new_max {
                if self.waiting() == 0 || self.line_is_empty() || self.try_grow().is_err() {
                    break;
                }
                self.release(Grant::Slot);
            }
            self.settle_over();
        }
    }

    /// While `SHRINKING`: a returned grant is dropped if the pool is too large.
    /// `Err` gives it back when the size fits (and clears `SHRINKING`).
    #[cold]
    fn shed(&self, grant: Grant<T>) -> Result<(), Grant<T>> {
        if self.shrink_one() {
            if let Grant::Item(item) = grant {
                // Relaxed: statistics only.
                self.dropped_resized.fetch_add(1, Ordering::Relaxed);
                self.sink.drop_item(item);
            }
            return Ok(());
        }
        self.settle_over();
        Err(grant)
    }

    /// Takes one slot off the size if, and only if, the pool is above
    /// `max_size`. One atomic step: two shedders that both saw the pool one
    /// above its maximum must not both shed, or the size would end below the
    /// maximum with waiters queued and nobody left to serve them.
    fn shrink_one(&self) -> bool {
        let max = self.max_size_now();
        // SeqCst: as in `try_grow`.
        self.state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
                (state & !CLOSED > max).then(|| state - 1)
            })
            .is_ok()
    }

    /// Drops idle resources while the pool is above `max_size`, then clears
    /// `SHRINKING` if the size fits.
    fn shed_idle(&self) {
        // SeqCst: see `resize`.
        if self.waiters.load(Ordering::SeqCst) & SHRINKING == 0 {
            return;
        }
        while self.size() > self.max_size_now() {
            let Some(item) = self.idle.pop() else { break };
            if !self.shrink_one() {
                // Another shedder got there first and the size fits: the
                // item goes back through `release`, whose fence and
                // re-check serve a waiter that queued while we held it.
                self.release(Grant::Item(item));
                break;
            }
            // Relaxed: statistics only.
            self.dropped_resized.fetch_add(1, Ordering::Relaxed);
            self.sink.drop_item(item);
        }
        self.settle_over();
    }

    /// Clears `SHRINKING` once the size fits. A shrink racing the clear either
    /// set `SHRINKING` after it (and it stays set), or stored its maximum before
    /// it, and then the re-check below sees the new maximum and sets `SHRINKING`
    /// again.
    fn settle_over(&self) {
        if self.size() > self.max_size_now() {
            return;
        }
        // SeqCst: in the total order with the `fetch_or` and the `swap` in
        // `resize`.
        self.waiters.fetch_and(!SHRINKING, Ordering::SeqCst);
        if self.size() > self.max_size_now() {
            // SeqCst: as above.
            self.waiters.fetch_or(SHRINKING, Ordering::SeqCst);
        }
    }

    fn max_size_now(&self) -> usize {
        // SeqCst: ordered with the `swap` in `resize` (see `settle_over`).
        self.max_size.load(Ordering::SeqCst)
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
        if self.size() == 0 {
            self.emptied.notify(usize::MAX);
        }
        first
    }

    fn close_waiters(&self) {
        while let Some(waiter) = self.pop_waiter() {
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
        // SeqCst: as in `try_grow`.
        self.state.fetch_sub(1, Ordering::SeqCst);
        if let Grant::Item(item) = grant {
            // Relaxed: statistics only.
            self.dropped_closed.fetch_add(1, Ordering::Relaxed);
            self.sink.drop_item(item);
        }
    }
}

impl<T, S: Sink<T>> Drop for Core<T, S> {
    /// The items still idle leave with the core, through the sink.
    fn drop(&mut self) {
        while let Some(item) = self.idle.pop() {
            self.sink.drop_item(item);
        }
    }
}

#[cfg(test)]
impl<T, S: Sink<T>> Core<T, S> {
    fn run_hold_hook(&self) {
        let hook = self.hold_hook.lock().unwrap().take();
        if let Some(HoldHook(hook)) = hook {
            hook(self);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Deterministic tests of the core on `Core<u32>`; the loom models in
    //! `loom-tests/` explore the interleavings.
    use super::*;

    fn granted(w: &Waiter<u32>) -> Option<Grant<u32>> {
        match w.poll() {
            Outcome::Granted(g) => Some(g),
            _ => None,
        }
    }

    /// A finished record nobody else holds serves the next wait on this
    /// thread, back in `WAITING`; one still held elsewhere (a releaser
    /// that popped it) is not kept; a record kept on one thread does not
    /// serve another.
    #[test]
    fn finished_records_are_reused_only_when_unshared() {
        let core = Core::<u32>::new(1, 1, ReuseOrder::Fifo);
        assert!(core.try_grow().is_ok());
        let first = core.new_waiter();
        core.register(&first);
        core.release(Grant::Item(7));
        assert!(matches!(granted(&first), Some(Grant::Item(7))));
        let first_ptr = Arc::as_ptr(&first);
        core.retire_waiter(first);
        let second = core.new_waiter();
        assert_eq!(Arc::as_ptr(&second), first_ptr, "the retired record");
        assert!(second.is_waiting());
        // Held twice (as a releaser holds a record it popped): not kept.
        let other = second.clone();
        core.retire_waiter(second);
        let third = core.new_waiter();
        assert_ne!(Arc::as_ptr(&third), first_ptr);
        drop(other);
        // Kept on this thread, not taken by another (when both own a
        // stripe: threads past the owned ones share one).
        let third_ptr = Arc::as_ptr(&third) as usize;
        core.retire_waiter(third);
        let (elsewhere, their_stripe) = std::thread::scope(|s| {
            s.spawn(|| {
                let stripe = crate::sync::thread_stripe();
                (Arc::as_ptr(&core.new_waiter()) as usize, stripe)
            })
            .join()
            .unwrap()
        });
        let owned = |stripe| stripe < crate::sync::OWNED_STRIPES;
        if owned(crate::sync::thread_stripe()) && owned(their_stripe) {
            assert_ne!(elsewhere, third_ptr);
            assert_eq!(Arc::as_ptr(&core.new_waiter()) as usize, third_ptr);
        }
    }

    /// A full pool of two, with `live` waiters queued and `cancelled` more
    /// that registered and gave up (the last cancel compacts).
    fn full_pool_with_waiters(live: usize) -> (Arc<Core<u32>>, Vec<Arc<Waiter<u32>>>) {
        let core = Arc::new(Core::new(2, 2, ReuseOrder::Fifo));
        assert!(core.try_grow().is_ok());
        assert!(core.try_grow().is_ok());
        let waiters: Vec<_> = (0..live)
            .map(|_| {
                let w = core.new_waiter();
                core.register(&w);
                w
            })
            .collect();
        (core, waiters)
    }

    fn cancel_many(core: &Core<u32>, n: usize) {
        for _ in 0..n {
            let w = core.new_waiter();
            core.register(&w);
            core.cancel(&w);
        }
    }

    /// Releases that run while a compaction holds live records must not
    /// leave a waiter asleep beside an idle resource.
    #[test]
    fn compaction_never_strands_a_waiter_beside_idle_items() {
        let (core, waiters) = full_pool_with_waiters(2);
        *core.hold_hook.lock().unwrap() = Some(HoldHook(Box::new(|core: &Core<u32>| {
            core.release(Grant::Item(1));
            core.release(Grant::Item(2));
        })));
        cancel_many(&core, 5);
        assert!(core.hold_hook.lock().unwrap().is_none(), "compaction ran");
        let served = waiters.iter().filter(|w| granted(w).is_some()).count();
        assert_eq!(
            (served, core.idle_len(), core.waiting()),
            (2, 0, 0),
            "every waiter is served while items were idle"
        );
    }

    /// Compaction keeps the line in arrival order: a waiter that arrives
    /// while the queue is compacted is served after the older ones.
    #[test]
    fn compaction_keeps_arrival_order() {
        let (core, waiters) = full_pool_with_waiters(1);
        let newcomer = core.new_waiter();
        let hooked = newcomer.clone();
        *core.hold_hook.lock().unwrap() = Some(HoldHook(Box::new(move |core: &Core<u32>| {
            core.register(&hooked);
        })));
        cancel_many(&core, 3);
        assert!(core.hold_hook.lock().unwrap().is_none(), "compaction ran");
        core.release(Grant::Item(7));
        assert!(
            matches!(granted(&waiters[0]), Some(Grant::Item(7))),
            "the oldest waiter is served first"
        );
        assert!(granted(&newcomer).is_none());
        core.release(Grant::Item(8));
        assert!(matches!(granted(&newcomer), Some(Grant::Item(8))));
    }

    /// A release that raced `close` may park its item after the close
    /// drained the idle store (its own re-check drops it a moment later);
    /// an acquire in that instant must still fail.
    #[test]
    fn a_closed_pool_hands_out_nothing_parked_after_the_close() {
        let core = Core::new(1, 1, ReuseOrder::Fifo);
        assert!(core.try_grow().is_ok());
        core.close();
        // The racing release's park, before its fence and re-check.
        core.idle.push(5).unwrap();
        assert!(matches!(core.try_acquire(), Err(Unavailable::Closed)));
        assert_eq!(
            (core.size(), core.idle_len(), core.dropped_closed()),
            (0, 0, 1)
        );
    }

    /// Cancelled records are trimmed from the head of the line, up to the
    /// first live one, which stays first.
    #[test]
    fn compaction_trims_cancelled_records() {
        let (core, waiters) = full_pool_with_waiters(0);
        cancel_many(&core, 20);
        assert!(core.line_is_empty(), "all cancelled records were trimmed");
        let live = core.new_waiter();
        core.register(&live);
        cancel_many(&core, 5);
        assert_eq!(core.front.len(), 1, "the live record went to the front");
        core.release(Grant::Item(3));
        assert!(matches!(granted(&live), Some(Grant::Item(3))));
        assert!(waiters.is_empty());
    }

    #[test]
    fn fast_path_grow_and_wait_in_order() {
        let core = Core::new(2, 2, ReuseOrder::Fifo);
        assert!(matches!(core.try_acquire(), Ok(Grant::Slot)));
        assert!(matches!(core.try_acquire(), Ok(Grant::Slot)));
        assert!(matches!(core.try_acquire(), Err(Unavailable::Full)));
        let first = core.new_waiter();
        core.register(&first);
        let second = core.new_waiter();
        core.register(&second);
        assert_eq!(core.waiting(), 2);
        // While anyone waits, an arrival does not take what is released.
        core.release(Grant::Item(1));
        assert!(matches!(granted(&first), Some(Grant::Item(1))));
        assert!(granted(&second).is_none());
        // A freed slot is a grant too: the next waiter may create with it.
        core.release(Grant::Slot);
        assert!(matches!(granted(&second), Some(Grant::Slot)));
        assert_eq!((core.waiting(), core.size(), core.idle_len()), (0, 2, 0));
        core.release(Grant::Item(2));
        assert!(
            matches!(core.try_acquire(), Ok(Grant::Item(2))),
            "no waiter: fast path"
        );
    }

    #[test]
    fn a_cancel_that_lost_the_race_passes_the_grant_on() {
        let (core, waiters) = full_pool_with_waiters(2);
        core.release(Grant::Item(5));
        // The first waiter was granted, then gave up before looking.
        core.cancel(&waiters[0]);
        assert!(matches!(granted(&waiters[1]), Some(Grant::Item(5))));
        assert_eq!(core.waiting(), 0);
    }

    #[test]
    fn close_tells_every_waiter_and_drops_what_comes_back() {
        let (core, waiters) = full_pool_with_waiters(2);
        assert!(core.close());
        assert!(!core.close(), "closing twice does nothing more");
        for w in &waiters {
            assert!(matches!(w.poll(), Outcome::Closed));
        }
        assert_eq!(core.waiting(), 0);
        core.release(Grant::Item(1));
        core.release(Grant::Slot);
        assert_eq!(
            (core.size(), core.idle_len(), core.dropped_closed()),
            (0, 0, 1)
        );
        assert!(matches!(core.try_acquire(), Err(Unavailable::Closed)));
    }

    #[test]
    fn resize_grows_for_waiters_and_sheds_on_release() {
        let (core, waiters) = full_pool_with_waiters(1);
        core.resize(3);
        assert!(
            matches!(granted(&waiters[0]), Some(Grant::Slot)),
            "new room to the waiter"
        );
        assert_eq!(core.size(), 3);
        core.resize(1);
        assert_eq!(core.size(), 3, "nothing idle to drop yet");
        core.release(Grant::Item(1));
        core.release(Grant::Item(2));
        assert_eq!(
            (core.size(), core.idle_len(), core.dropped_resized()),
            (1, 0, 2)
        );
        core.release(Grant::Item(3));
        assert_eq!((core.size(), core.idle_len()), (1, 1), "fits again: kept");
    }

    #[test]
    fn an_adopting_core_never_grants_a_slot() {
        let core = Core::new(2, 2, ReuseOrder::Fifo).adopting();
        assert!(matches!(core.try_acquire(), Err(Unavailable::Full)));
        let waiter = core.new_waiter();
        core.register(&waiter);
        assert!(granted(&waiter).is_none(), "room to add is not a grant");
        assert!(core.try_grow().is_ok());
        core.release(Grant::Item(9));
        assert!(matches!(granted(&waiter), Some(Grant::Item(9))));
        let next = core.new_waiter();
        core.register(&next);
        core.release(Grant::Slot);
        assert!(
            granted(&next).is_none(),
            "a freed slot only lowers the size"
        );
        assert_eq!(core.size(), 0);
    }
}
