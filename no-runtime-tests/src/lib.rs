//! A manager and a hand-driven executor for the tests of quickslot built
//! with no runtime feature (`tests/`): [`Counting`], whose resources are
//! numbered and report their drops, and [`Probe`], a waker that counts its
//! wakes, for polling futures by hand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use quickslot::Manager;

/// Makes numbered resources at once and counts the drops.
#[derive(Debug, Default)]
pub struct Counting {
    created: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

impl Counting {
    /// Resources made so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Resources dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A resource of [`Counting`].
#[derive(Debug)]
pub struct Res {
    /// Creation order, from 0.
    pub id: usize,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Res {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Manager for Counting {
    type Resource = Res;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Res, std::io::Error> {
        Ok(Res {
            id: self.created.fetch_add(1, Ordering::SeqCst),
            dropped: self.dropped.clone(),
        })
    }
}

/// A waker that counts how often it was woken.
#[derive(Debug, Default)]
pub struct Probe {
    wakes: AtomicUsize,
}

impl Probe {
    /// A probe and a waker that reports to it.
    pub fn new() -> (Arc<Self>, Waker) {
        let probe = Arc::new(Self::default());
        let waker = Waker::from(probe.clone());
        (probe, waker)
    }

    /// Wakes so far.
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}
