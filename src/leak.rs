//! Leak detection: a registry of checkouts, kept only while a
//! `leak_threshold` is set, scanned by the upkeep task.

// The scan runs in the upkeep task, which is not built under loom.
#![cfg_attr(loom, allow(dead_code))]

use std::backtrace::{Backtrace, BacktraceStatus};
use std::collections::HashMap;
use std::panic::Location;
use std::time::Duration;

use crate::rt::Instant;
use crate::sync::Mutex;

/// A stamped checkout, kept in the resource's slot.
#[derive(Debug)]
pub(crate) struct Stamp {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) at: Instant,
    /// The registry key, with leak detection.
    pub(crate) ticket: Option<u64>,
}

#[derive(Debug)]
struct Checkout {
    resource: u64,
    at: Instant,
    caller: Option<&'static Location<'static>>,
    backtrace: Option<Backtrace>,
    reported: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    out: HashMap<u64, Checkout>,
}

/// The checked-out registry. A short lock per checkout and return, taken
/// only when leak detection is on.
#[derive(Debug)]
pub(crate) struct Leaks {
    inner: Mutex<Inner>,
    backtrace: bool,
}

/// One checkout held past the threshold.
#[derive(Debug)]
pub(crate) struct Report {
    /// The resource's id ([`ResourceInfo::id`](crate::ResourceInfo::id)).
    pub(crate) resource: u64,
    pub(crate) held: Duration,
    pub(crate) caller: Option<&'static Location<'static>>,
    pub(crate) backtrace: Option<String>,
}

impl Leaks {
    pub(crate) fn new(backtrace: bool) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            backtrace,
        }
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = Inner> + '_ {
        // A panic while holding it cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(
        &self,
        resource: u64,
        at: Instant,
        caller: Option<&'static Location<'static>>,
    ) -> u64 {
        let backtrace = self.backtrace.then(Backtrace::capture);
        let mut inner = self.lock();
        let ticket = inner.next;
        inner.next += 1;
        inner.out.insert(
            ticket,
            Checkout {
                resource,
                at,
                caller,
                backtrace,
                reported: false,
            },
        );
        ticket
    }

    pub(crate) fn remove(&self, ticket: u64) {
        self.lock().out.remove(&ticket);
    }

    /// Checkouts held at least `threshold` and not reported yet; marks them
    /// reported.
    pub(crate) fn scan(&self, now: Instant, threshold: Duration) -> Vec<Report> {
        let mut inner = self.lock();
        inner
            .out
            .values_mut()
            .filter(|c| !c.reported && now.saturating_duration_since(c.at) >= threshold)
            .map(|c| {
                c.reported = true;
                Report {
                    resource: c.resource,
                    held: now.saturating_duration_since(c.at),
                    caller: c.caller,
                    backtrace: c
                        .backtrace
                        .as_ref()
                        .filter(|b| b.status() == BacktraceStatus::Captured)
                        .map(ToString::to_string),
                }
            })
            .collect()
    }
}
