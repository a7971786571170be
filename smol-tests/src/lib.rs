//! Deterministic managers, drop accounting and bounded waits for the tests
//! of quickslot on smol (`tests/`), with no Tokio anywhere: a scripted
//! [`TestManager`] (creates that are immediate, failing, gated or slow;
//! recycles that can hang) whose resources report every drop to a
//! [`Ledger`], and [`wait_for`] / [`wait_for_blocking`], which poll a
//! condition up to a generous bound instead of sleeping a fixed time.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickslot::{Manager, ResourceInfo};
use smol::channel::{Receiver, Sender};

/// How long [`wait_for`] waits for a condition before failing the test:
/// long, because CI machines are loaded; a passing test waits only as long
/// as the pool takes.
pub const WAIT_BOUND: Duration = Duration::from_secs(20);

/// The manager's error: which create failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError(pub String);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

/// Records every drop of every resource, by id.
#[derive(Debug, Default)]
pub struct Ledger {
    drops: Mutex<HashMap<usize, u32>>,
}

impl Ledger {
    /// Distinct resources dropped so far.
    pub fn dropped(&self) -> usize {
        self.drops.lock().unwrap().len()
    }

    /// Each of the resources `0..created` dropped exactly once, no other.
    pub fn assert_all_dropped_once(&self, created: usize) {
        let drops = self.drops.lock().unwrap();
        assert_eq!(drops.len(), created, "every resource dropped: {drops:?}");
        for (id, n) in drops.iter() {
            assert_eq!(*n, 1, "resource {id} dropped {n} times");
            assert!(*id < created, "unknown resource {id}");
        }
    }
}

/// A resource that reports its drop to the ledger.
#[derive(Debug)]
pub struct Res {
    /// Creation order, from 0.
    pub id: usize,
    ledger: Arc<Ledger>,
}

impl Drop for Res {
    fn drop(&mut self) {
        *self
            .ledger
            .drops
            .lock()
            .unwrap()
            .entry(self.id)
            .or_default() += 1;
    }
}

/// A scripted manager. Creates succeed at once unless set otherwise:
/// the first [`fail_next`](Self::fail_next) ones fail, each waits for a
/// permit of its [`gated`](Self::gated) gate, or sleeps
/// [`create_delay`](Self::create_delay) on an `async_io::Timer`. Recycles
/// succeed at once, or never finish while [`hang_recycles`](Self::hang_recycles)
/// is set.
#[derive(Debug)]
pub struct TestManager {
    ledger: Arc<Ledger>,
    /// Creates begun.
    attempts: AtomicUsize,
    /// Resources made.
    created: AtomicUsize,
    recycles: AtomicUsize,
    fail_next: AtomicUsize,
    gate: Option<Receiver<()>>,
    create_delay: Option<Duration>,
    hang_recycles: AtomicBool,
}

impl Default for TestManager {
    fn default() -> Self {
        Self::new()
    }
}

impl TestManager {
    /// A manager whose creates and recycles succeed at once.
    pub fn new() -> Self {
        Self {
            ledger: Arc::default(),
            attempts: AtomicUsize::new(0),
            created: AtomicUsize::new(0),
            recycles: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            gate: None,
            create_delay: None,
            hang_recycles: AtomicBool::new(false),
        }
    }

    /// Each create waits for one permit sent on the returned gate (or for
    /// the gate to be dropped, which lets every create through).
    pub fn gated(mut self) -> (Self, Sender<()>) {
        let (tx, rx) = smol::channel::unbounded();
        self.gate = Some(rx);
        (self, tx)
    }

    /// Each create sleeps this long first.
    pub fn create_delay(mut self, delay: Duration) -> Self {
        self.create_delay = Some(delay);
        self
    }

    /// The next `n` creates fail.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Recycles from now on never finish (`true`) or succeed at once.
    pub fn hang_recycles(&self, hang: bool) {
        self.hang_recycles.store(hang, Ordering::SeqCst);
    }

    /// The drop ledger of this manager's resources.
    pub fn ledger(&self) -> Arc<Ledger> {
        self.ledger.clone()
    }

    /// Creates begun so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Resources made so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Recycles begun so far.
    pub fn recycles(&self) -> usize {
        self.recycles.load(Ordering::SeqCst)
    }
}

impl Manager for TestManager {
    type Resource = Res;
    type Error = TestError;

    async fn create(&self) -> Result<Res, TestError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            // A dropped sender opens the gate for good.
            let _ = gate.recv().await;
        }
        if let Some(delay) = self.create_delay {
            smol::Timer::after(delay).await;
        }
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(TestError(format!("create {attempt} failed")));
        }
        Ok(Res {
            id: self.created.fetch_add(1, Ordering::SeqCst),
            ledger: self.ledger.clone(),
        })
    }

    fn recycle(
        &self,
        _: &mut Res,
        _: &ResourceInfo,
    ) -> impl Future<Output = Result<(), TestError>> + Send {
        self.recycles.fetch_add(1, Ordering::SeqCst);
        let hang = self.hang_recycles.load(Ordering::SeqCst);
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }
}

/// Waits, on an `async_io::Timer`, until `cond` holds; fails the test after
/// [`WAIT_BOUND`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT_BOUND;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        smol::Timer::after(Duration::from_millis(2)).await;
    }
}

/// [`wait_for`] for a plain thread.
pub fn wait_for_blocking(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT_BOUND;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
