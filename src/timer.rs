//! Deadlines, and the per-pool cache of timers that keeps them cheap.
//!
//! A waiting acquire needs a timer for its deadline, and almost every wait
//! ends long before it (the default `acquire_timeout` is 30 s). A fresh
//! `tokio::time::Sleep` per wait costs an allocation, two locks on the timer
//! wheel (register on first poll, deregister on drop) and a runtime-handle
//! clone (see [`implementation`](crate::implementation) for what it cost).
//!
//! So a pool keeps finished timers and reuses them, in a cache striped by
//! thread ([`Spares`]): a wait takes a timer from its thread's stripe and
//! leaves it in the stripe of the thread it ends on, so the cache is no
//! line that two cores write on every wait. A reused timer is still
//! registered in the wheel, and moving it to a *later* deadline is one
//! compare-and-swap in Tokio (`Sleep::reset` extends the registered entry in
//! place; the wheel re-files it when the old instant comes). Deadlines of
//! successive waits under one `acquire_timeout` only move forward, so the
//! common case takes no lock at all. An earlier deadline, or a timer that
//! already fired, re-registers under the wheel's lock, as a fresh one would.
//!
//! A timer belongs to the runtime that made it: one is reused only on that
//! runtime (compared by Tokio's runtime id), so a pool shared by several
//! runtimes, or outliving one, never polls a timer of another or a dead one.
//!
//! All of that is Tokio's: the timers themselves come from [`rt`](crate::rt).
//! Off Tokio (the `smol` feature, outside a Tokio runtime) each wait gets a
//! fresh `async_io::Timer`, which the cache does not keep.
//!
//! A cached timer keeps the waker of the last task that polled it until it
//! is reused, fires or is dropped with the pool: at most [`CACHED_TIMERS`]
//! wakers per stripe, a bounded amount of retained memory. A timer that fires
//! while cached wakes that task once, spuriously, which futures tolerate.

use std::future::{poll_fn, Future};
use std::mem::ManuallyDrop;
use std::pin::{pin, Pin};
use std::task::{ready, Poll};
use std::time::Duration;

use crate::rt::{self, Here, Instant, Sleep};
use crate::sync::Spares;

/// How many idle timers a pool keeps per thread stripe (see
/// [`Timers`]), about 100 bytes each: enough for the waits a few hundred
/// tasks queued on one worker have in flight.
pub(crate) const CACHED_TIMERS: usize = 128;

/// A timer (with the runtime it belongs to) lives in one allocation, so
/// `Option<Timer>` is a nullable pointer whose drop on the (common) unarmed
/// path is one test.
type Timer = Pin<Box<Sleep>>;

/// A pool's idle timers, striped by thread: a wait arms a timer from its
/// thread's stripe and gives it back to the stripe of the thread it ends
/// on, so two cores do not pass one queue's cache lines back and forth on
/// every wait. Stripes are made on first use (a pool whose acquires never
/// wait allocates none).
#[derive(Debug)]
pub(crate) struct Timers {
    idle: Spares<Timer>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self {
            idle: Spares::new(CACHED_TIMERS),
        }
    }

    /// A timer that fires at `at`: an idle one of this runtime, or a new one.
    ///
    /// Panics where no timer can be made (see [`Here::current`]): with the
    /// `tokio` feature alone outside a Tokio runtime, or on one without the
    /// time driver (Tokio's timer panics there).
    // Without a runtime feature, `Here` has no values: all after it is dead.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "smol")),
        allow(unreachable_code, unused_variables)
    )]
    fn arm(&self, at: Instant) -> Timer {
        let here = Here::current();
        if let Some(mut timer) = self.idle.take() {
            if timer.belongs_to(here) {
                // A timer still pending at or before `at` is used as it is:
                // if it fires first, `Deadline::run` moves it on to `at`.
                // That skips the reset in the common case, where the wait
                // ends long before either.
                if timer.is_elapsed() || timer.deadline() > at {
                    timer.as_mut().reset(at);
                }
                return timer;
            }
            // Another runtime's: dropped here, deregistered from its wheel.
        }
        Box::pin(Sleep::new(here, at))
    }

    /// Keeps a timer for reuse; dropped when the cache is full, or when it
    /// is not worth keeping (see [`Sleep::reusable`]).
    fn put_back(&self, timer: Timer) {
        if timer.reusable() {
            let _ = self.idle.keep(timer);
        }
    }
}

/// An end-to-end deadline over several phases of one acquire (waiting,
/// creating, recycling). It reads the clock only when something it covers
/// has to wait, and arms a timer (from the pool's cache) only then, so an
/// acquire served at once touches neither the clock nor the timer wheel.
pub(crate) struct Deadline<'a> {
    timeout: Option<Duration>,
    timers: &'a Timers,
    started: Option<Instant>,
    /// Taken (never dropped in place) by `Drop`, so the common unarmed
    /// drop is one test, with no call into the timer's drop glue.
    timer: ManuallyDrop<Option<Timer>>,
}

impl<'a> Deadline<'a> {
    pub(crate) fn new(timeout: Option<Duration>, timers: &'a Timers) -> Self {
        Self {
            timeout,
            timers,
            started: None,
            timer: ManuallyDrop::new(None),
        }
    }

    /// A deadline whose clock started at `started` (if it did): one over
    /// the later phases of an acquire whose earlier phase had its own
    /// (see `acquire`).
    pub(crate) fn resume(
        timeout: Option<Duration>,
        timers: &'a Timers,
        started: Option<Instant>,
    ) -> Self {
        Self {
            timeout,
            timers,
            started,
            timer: ManuallyDrop::new(None),
        }
    }

    /// When the clock started, if it did.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Starts the clock now, unless it already runs; returns when it
    /// started. The deadline is that instant plus the timeout.
    pub(crate) fn start(&mut self) -> Instant {
        *self.started.get_or_insert_with(rt::now)
    }

    /// Runs `fut` until it completes (`Some`) or the deadline passes
    /// (`None`, and `fut` is dropped).
    pub(crate) async fn run<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let Some(timeout) = self.timeout else {
            return Some(fut.await);
        };
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let at = rt::after(*self.started.get_or_insert_with(rt::now), timeout);
            let timer = match &mut *self.timer {
                Some(timer) => timer,
                None => self.timer.insert(self.timers.arm(at)),
            };
            loop {
                ready!(timer.as_mut().poll(cx));
                if timer.deadline() >= at {
                    return Poll::Ready(None);
                }
                // A reused timer set for an earlier instant fired: move it
                // on to this deadline and wait again.
                timer.as_mut().reset(at);
            }
        })
        .await
    }
}

impl Drop for Deadline<'_> {
    // Inline and branch-only when nothing was armed: every acquire drops a
    // `Deadline`, and the uncontended path should pay one test for it.
    #[inline]
    fn drop(&mut self) {
        if self.timer.is_some() {
            self.put_back();
        }
    }
}

impl Deadline<'_> {
    #[cold]
    #[inline(never)]
    fn put_back(&mut self) {
        if let Some(timer) = self.timer.take() {
            self.timers.put_back(timer);
        }
    }
}

impl std::fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("timeout", &self.timeout)
            .field("started", &self.started)
            .field("armed", &self.timer.is_some())
            .finish()
    }
}
