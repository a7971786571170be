//! Deterministic managers and drop accounting shared by the integration
//! tests: a scripted [`TestManager`] whose resources report every drop to a
//! [`Ledger`], and [`assert_counts`] for the gauges of a quiet pool.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quickslot::{Manager, ResourceInfo};

/// Test error carrying the index of the create that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError(pub String);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

/// Records every drop of every resource, by id, to prove nothing leaks or
/// drops twice.
#[derive(Debug, Default)]
pub struct Ledger {
    created: AtomicU64,
    drops: Mutex<HashMap<u64, u32>>,
}

impl Ledger {
    /// Resources created so far.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }

    /// Distinct resources dropped so far.
    pub fn dropped(&self) -> u64 {
        self.drops.lock().unwrap().len() as u64
    }

    /// Resources created and not dropped yet.
    pub fn live(&self) -> u64 {
        self.created() - self.dropped()
    }

    /// Every created resource dropped exactly once.
    pub fn assert_all_dropped_once(&self) {
        let drops = self.drops.lock().unwrap();
        let created = self.created();
        assert_eq!(drops.len() as u64, created, "every resource dropped");
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
    pub id: u64,
    /// Set by a test to make the manager's `is_broken` report it.
    pub broken: bool,
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

/// What the next create does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateStep {
    /// Succeeds at once.
    Ok,
    /// Fails at once with a [`TestError`].
    Fail,
    /// Succeeds after sleeping (tokio time).
    Slow(Duration),
    /// Never completes.
    Never,
}

/// A scripted, counting manager. Creates follow `script` (then `default`);
/// recycles fail while `fail_recycle` is set; returns are broken while
/// `broken_on_return` is set; `gate` (when closed) holds creates until a
/// permit is added.
#[derive(Debug)]
pub struct TestManager {
    /// Where the resources report their drops.
    pub ledger: Arc<Ledger>,
    /// Steps of the next creates, the next one last.
    pub script: Mutex<Vec<CreateStep>>,
    /// Step of every create once the script is used up.
    pub default: Mutex<CreateStep>,
    /// While set, every recycle fails.
    pub fail_recycle: AtomicBool,
    /// When set, every recycle sleeps this long (tokio time) first.
    pub slow_recycle: Mutex<Option<Duration>>,
    /// While set, `is_broken` reports every returned resource broken.
    pub broken_on_return: AtomicBool,
    /// Creates started so far.
    pub creates: AtomicUsize,
    /// Recycles started so far.
    pub recycles: AtomicUsize,
    /// When present, every create first waits for a permit of it.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl TestManager {
    /// A manager whose creates and recycles all succeed at once.
    pub fn new() -> Self {
        Self {
            ledger: Arc::default(),
            script: Mutex::new(Vec::new()),
            default: Mutex::new(CreateStep::Ok),
            fail_recycle: AtomicBool::new(false),
            slow_recycle: Mutex::new(None),
            broken_on_return: AtomicBool::new(false),
            creates: AtomicUsize::new(0),
            recycles: AtomicUsize::new(0),
            gate: None,
        }
    }

    /// Creates follow these steps first, in order.
    pub fn scripted(steps: &[CreateStep]) -> Self {
        let m = Self::new();
        *m.script.lock().unwrap() = steps.iter().rev().copied().collect();
        m
    }

    /// Every create follows `step`.
    pub fn always(step: CreateStep) -> Self {
        let m = Self::new();
        *m.default.lock().unwrap() = step;
        m
    }

    /// Creates wait for a permit on the returned semaphore.
    pub fn gated() -> (Self, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut m = Self::new();
        m.gate = Some(gate.clone());
        (m, gate)
    }

    fn next_step(&self) -> CreateStep {
        self.script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(*self.default.lock().unwrap())
    }
}

impl Default for TestManager {
    fn default() -> Self {
        Self::new()
    }
}

impl Manager for TestManager {
    type Resource = Res;
    type Error = TestError;

    fn create(&self) -> impl Future<Output = Result<Res, TestError>> + Send {
        let n = self.creates.fetch_add(1, Ordering::SeqCst);
        let step = self.next_step();
        let ledger = self.ledger.clone();
        let gate = self.gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            match step {
                CreateStep::Ok => {}
                CreateStep::Fail => return Err(TestError(format!("create {n} failed"))),
                CreateStep::Slow(d) => tokio::time::sleep(d).await,
                CreateStep::Never => std::future::pending::<()>().await,
            }
            let id = ledger.created.fetch_add(1, Ordering::SeqCst);
            Ok(Res {
                id,
                broken: false,
                ledger,
            })
        }
    }

    fn recycle(
        &self,
        resource: &mut Res,
        _info: &ResourceInfo,
    ) -> impl Future<Output = Result<(), TestError>> + Send {
        self.recycles.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail_recycle.load(Ordering::SeqCst);
        let slow = *self.slow_recycle.lock().unwrap();
        let id = resource.id;
        async move {
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            if fail {
                Err(TestError(format!("recycle of {id} failed")))
            } else {
                Ok(())
            }
        }
    }

    fn is_broken(&self, resource: &mut Res) -> bool {
        resource.broken || self.broken_on_return.load(Ordering::SeqCst)
    }
}

/// Checks the gauges that must hold whenever the pool is quiet.
pub fn assert_counts(status: &quickslot::Status) {
    assert!(status.size <= status.max_size, "size {} > max", status.size);
    assert_eq!(
        status.idle + status.in_use + status.creating,
        status.size,
        "idle + in_use + creating == size: {status:?}"
    );
}
