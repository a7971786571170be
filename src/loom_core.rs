//! The concurrency core's surface for the loom models of `loom-tests`
//! (`tests/core_models.rs`): a `Core<u32>` and its waiter records, behind a
//! small public wrapper that exists only under `--cfg loom`. It adds no
//! logic; each method is one call into `raw`.

use crate::handoff::{Grant, Outcome, Waiter as Record};
use crate::idle::ReuseOrder;
use crate::raw::{Core as Raw, Unavailable};
use crate::sync::Arc;

/// A pool core holding `u32` items.
#[derive(Debug)]
pub struct Core(Raw<u32>);

/// A registered wait.
#[derive(Debug)]
pub struct Waiter(Arc<Record<u32>>);

/// What an acquire or a wait got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// An idle item.
    Item(u32),
    /// A free slot (the caller may create).
    Slot,
    /// Nothing yet.
    Waiting,
    /// The pool is closed.
    Closed,
    /// Every slot is taken (from `try_acquire` only).
    Full,
}

fn got(grant: Grant<u32>) -> Got {
    match grant {
        Grant::Item(v) => Got::Item(v),
        Grant::Slot => Got::Slot,
    }
}

impl Core {
    /// A FIFO core of `max_size` slots that can grow to `capacity`.
    pub fn new(max_size: usize, capacity: usize) -> Self {
        Self(Raw::new(max_size, capacity, ReuseOrder::Fifo))
    }

    /// The fast path, then grow.
    pub fn try_acquire(&self) -> Got {
        match self.0.try_acquire() {
            Ok(grant) => got(grant),
            Err(Unavailable::Full) => Got::Full,
            Err(Unavailable::Closed) => Got::Closed,
        }
    }

    /// Joins the line.
    pub fn register(&self) -> Waiter {
        let waiter = self.0.new_waiter();
        self.0.register(&waiter);
        Waiter(waiter)
    }

    /// Joins the line unless `max` wait already (`None`: refused).
    pub fn register_bounded(&self, max: usize) -> Option<Waiter> {
        let waiter = self.0.new_waiter();
        self.0.register_bounded(&waiter, max).ok()?;
        Some(Waiter(waiter))
    }

    /// Looks at a wait without blocking.
    pub fn poll(&self, waiter: &Waiter) -> Got {
        match waiter.0.poll() {
            Outcome::Granted(grant) => got(grant),
            Outcome::Closed => Got::Closed,
            Outcome::Waiting => Got::Waiting,
        }
    }

    /// Waits until the wait is served or the pool closes (listen,
    /// re-check, await: as the pool's acquire does).
    pub async fn wait(&self, waiter: &Waiter) -> Got {
        loop {
            let state = self.poll(waiter);
            if state != Got::Waiting {
                return state;
            }
            let listener = waiter.0.event().listen();
            let state = self.poll(waiter);
            if state != Got::Waiting {
                return state;
            }
            listener.await;
        }
    }

    /// Ends a finished wait: its record may serve a later one (as the
    /// pool's acquire does once its listener is gone).
    pub fn retire(&self, waiter: Waiter) {
        self.0.retire_waiter(waiter.0);
    }

    /// Gives up a wait (a dropped acquire); a grant it raced goes on.
    pub fn cancel(&self, waiter: &Waiter) {
        self.0.cancel(&waiter.0);
    }

    /// Returns an item.
    pub fn release_item(&self, item: u32) {
        self.0.release(Grant::Item(item));
    }

    /// Frees a slot.
    pub fn release_slot(&self) {
        self.0.release(Grant::Slot);
    }

    /// Closes the core.
    pub fn close(&self) -> bool {
        self.0.close()
    }

    /// Sets `max_size`.
    pub fn resize(&self, max_size: usize) {
        self.0.resize(max_size);
    }

    /// Slots in use.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// Idle items.
    pub fn idle_len(&self) -> usize {
        self.0.idle_len()
    }

    /// Registered waits not yet served.
    pub fn waiting(&self) -> usize {
        self.0.waiting()
    }
}
