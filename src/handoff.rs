//! Waiter records: the direct hand-off cell between a releaser and a waiter.
//!
//! This is the crate's only `unsafe` module. A record is shared (through
//! `Arc`) by the waiting task and by whichever thread pops it from the
//! waiter queue. Its `cell` is a plain `UnsafeCell` guarded by the `state`
//! word, with this protocol:
//!
//! * Only the thread that popped the record from the queue calls
//!   [`Waiter::offer`] or [`Waiter::close`], and it does so once (a record
//!   is pushed once and popped at most once). While the state is `WAITING`,
//!   that thread is the only one that touches the cell: the waiter never
//!   reads it before it has observed `GRANTED`.
//! * `offer` writes the cell, then publishes it with a `WAITING → GRANTED`
//!   compare-exchange (`Release`). If the CAS fails, the waiter gave up
//!   (`CANCELLED`) and never reads the cell, so the offerer takes its grant
//!   back out.
//! * The waiter reads the cell only after an `Acquire` load or CAS that saw
//!   `GRANTED`, and moves the state to `TAKEN` so it reads it once.
//!
//! A mutex would also work, but the acquire/release path takes no lock by
//! design; a `Box` per hand-off would allocate on every grant. Under loom,
//! `UnsafeCell` is loom's, which checks this protocol in every explored
//! interleaving (loom-tests models 1-4).

use crate::sync::{AtomicU8, Event, Ordering, UnsafeCell};

/// What a releaser hands to a waiter.
#[derive(Debug)]
pub(crate) enum Grant<T> {
    /// An idle resource.
    Item(T),
    /// A free slot: the receiver may create a resource (already counted in
    /// the pool's size).
    Slot,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CANCELLED: u8 = 2;
const CLOSED: u8 = 3;
const TAKEN: u8 = 4;

/// What a waiter finds when it looks at its record.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// Still waiting.
    Waiting,
    /// A releaser handed this over.
    Granted(Grant<T>),
    /// The pool was closed while waiting.
    Closed,
}

/// One waiting acquire.
#[derive(Debug)]
pub(crate) struct Waiter<T> {
    state: AtomicU8,
    cell: UnsafeCell<Option<Grant<T>>>,
    event: Event,
}

// SAFETY: the cell is accessed by one thread at a time, as the module docs
// lay out, and a `T` only moves between threads through it; that needs
// `T: Send`, not `T: Sync`. Everything else in the record is `Sync`.
unsafe impl<T: Send> Sync for Waiter<T> {}
// SAFETY: as above; sending the record sends at most one `T`.
unsafe impl<T: Send> Send for Waiter<T> {}

impl<T> Waiter<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(WAITING),
            cell: UnsafeCell::new(None),
            event: Event::new(),
        }
    }

    /// Makes a finished record (granted and taken, closed or cancelled)
    /// ready for another wait. Exclusive access: nobody else holds it, so
    /// no offerer or closer can reach it. Its event has no listener (the
    /// wait's was dropped) and keeps its allocation.
    pub(crate) fn reset(&mut self) {
        // A finished record's grant was taken (or never written); a fresh
        // cell says so without reading the old one, which needs no
        // `unsafe`.
        self.cell = UnsafeCell::new(None);
        self.state = AtomicU8::new(WAITING);
    }

    /// The record's event, notified once, after its state leaves WAITING.
    /// Waiters listen, re-check the state, then wait.
    pub(crate) fn event(&self) -> &Event {
        &self.event
    }

    /// Hands `grant` to the waiter. Only the thread that popped this record
    /// may call it, once. Returns the grant if the waiter is gone; on
    /// success the caller then calls [`wake`](Waiter::wake).
    pub(crate) fn offer(&self, grant: Grant<T>) -> Result<(), Grant<T>> {
        // SAFETY: we popped this record, so no other offerer or closer can
        // reach it, and the waiter does not read the cell until it sees
        // GRANTED, which only the CAS below publishes.
        self.cell.with_mut(|cell| unsafe { *cell = Some(grant) });
        // Release: publishes the cell write to the waiter's Acquire load in
        // `poll`/`cancel`. Acquire on failure: nothing to read, but keeps the
        // failure path ordered after the waiter's CANCELLED store.
        #[cfg(not(quickslot_bug = "relaxed_handoff"))]
        let published =
            self.state
                .compare_exchange(WAITING, GRANTED, Ordering::AcqRel, Ordering::Acquire);
        #[cfg(quickslot_bug = "relaxed_handoff")]
        let published =
            self.state
                .compare_exchange(WAITING, GRANTED, Ordering::Relaxed, Ordering::Acquire);
        match published {
            // The offerer wakes the waiter (`wake`) once it has done its
            // own book-keeping.
            Ok(_) => Ok(()),
            Err(_) => {
                // SAFETY: the CAS failed, so the waiter cancelled and will
                // never read the cell; we are still its only user.
                Err(self
                    .cell
                    .with_mut(|cell| unsafe { (*cell).take() })
                    .expect("the grant written above"))
            }
        }
    }

    /// Wakes the waiter after a successful [`offer`](Waiter::offer).
    pub(crate) fn wake(&self) {
        // One notification for the one listener of this record.
        // event-listener's notify synchronises with the listener's wake-up,
        // after which the waiter sees GRANTED.
        self.event.notify_additional(1);
    }

    /// Tells the waiter the pool closed. Same caller rule as [`offer`].
    /// Returns whether the waiter was still waiting.
    ///
    /// [`offer`]: Waiter::offer
    pub(crate) fn close(&self) -> bool {
        // AcqRel: the waiter's Acquire load sees CLOSED after its wake-up.
        let closed = self
            .state
            .compare_exchange(WAITING, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if closed {
            self.event.notify_additional(1);
        }
        closed
    }

    /// The waiter's look at its record. Takes the grant at most once.
    pub(crate) fn poll(&self) -> Outcome<T> {
        // Acquire: pairs with the Release CAS in `offer`/`close`, so a
        // GRANTED state comes with the cell contents written before it.
        match self.state.load(Ordering::Acquire) {
            WAITING => Outcome::Waiting,
            GRANTED => Outcome::Granted(self.take()),
            CLOSED => Outcome::Closed,
            // TAKEN or CANCELLED: the waiter already finished with the record
            // and never polls again. Loud in debug builds; a release build
            // reports the wait as ended rather than reading the cell.
            other => {
                debug_assert!(false, "a finished waiter record was polled (state {other})");
                Outcome::Closed
            }
        }
    }

    /// The waiter gives up (its future was dropped). Returns what it must
    /// pass on: `Granted` when a releaser got there first.
    pub(crate) fn cancel(&self) -> Outcome<T> {
        // AcqRel on success: the CANCELLED store is seen by a racing offerer's
        // failed CAS (Acquire). Acquire on failure: pairs with `offer`'s
        // Release so the cell contents are visible to `take`.
        match self
            .state
            .compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Outcome::Waiting,
            Err(GRANTED) => Outcome::Granted(self.take()),
            Err(CLOSED) => Outcome::Closed,
            Err(other) => {
                debug_assert!(
                    false,
                    "a finished waiter record was cancelled (state {other})"
                );
                Outcome::Closed
            }
        }
    }

    /// Whether the waiter cancelled (used to skip stale records cheaply).
    pub(crate) fn is_waiting(&self) -> bool {
        // Acquire: a racing cancel is seen as early as possible; a stale
        // answer only delays the clean-up, offer re-checks with a CAS.
        self.state.load(Ordering::Acquire) == WAITING
    }

    fn take(&self) -> Grant<T> {
        // Only the waiter's own thread moves the state out of GRANTED, so a
        // plain store is enough; Relaxed because nobody else reads it after.
        self.state.store(TAKEN, Ordering::Relaxed);
        // SAFETY: the state was GRANTED (seen with Acquire), so the offerer
        // wrote the cell before publishing and will never touch it again; we
        // are the only reader and read it once (the state is TAKEN now).
        self.cell
            .with_mut(|cell| unsafe { (*cell).take() })
            .expect("a granted record holds its grant")
    }
}
