//! Loom models for quickslot live in `tests/`; this library holds what they
//! share: a loom-friendly [`Manager`](quickslot::Manager) whose resources
//! carry an ownership marker and count their drops, a runner that counts
//! the interleavings each model explores, and [`SEEDED_BUGS`], the bugs
//! the models must catch.
//!
//! Everything here only exists under `--cfg loom`; `scripts/loom` runs it:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release
//! ```
#![cfg(loom)]
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use quickslot::{Error, Manager, Pool, Pooled, ReuseOrder};

/// A bug that can be put back into the core, and the models that must
/// catch it.
#[derive(Debug)]
pub struct SeededBug {
    /// The value of the `cfg(quickslot_bug = "...")` switch in quickslot's
    /// `src/` (set with `QUICKSLOT_SEED_BUG`, see quickslot's `build.rs`).
    pub name: &'static str,
    /// What the switch puts back.
    pub puts_back: &'static str,
    /// The models in `tests/models.rs` that must each fail with it.
    pub caught_by: &'static [&'static str],
}

/// Every seeded bug and its catchers: the one place they are stated.
/// `scripts/loom` reads it (through the `seeded_bugs` binary) and fails
/// unless each listed model catches its bug; `tests/seeded.rs` checks it
/// against the switches in quickslot's `src/` and the models.
pub const SEEDED_BUGS: &[SeededBug] = &[
    SeededBug {
        name: "no_recheck",
        puts_back: "a waiter skips the re-check after queueing",
        caught_by: &[
            "m1_holder_and_waiter",
            "m5_failed_create_frees_slot",
            "m8_broken_on_return_racing_waiter",
        ],
    },
    SeededBug {
        name: "no_release_fence",
        puts_back: "a releaser skips its `SeqCst` fence",
        caught_by: &[
            "m5_failed_create_frees_slot",
            "m8_broken_on_return_racing_waiter",
        ],
    },
    SeededBug {
        name: "drop_grant",
        puts_back: "a cancelled, granted waiter drops its grant",
        caught_by: &["m3_granted_waiter_dropped", "m4_cancel_racing_grant"],
    },
    SeededBug {
        name: "barging",
        puts_back: "the fast path ignores queued waiters",
        caught_by: &["m7_try_acquire_racing_acquire_and_release"],
    },
    SeededBug {
        name: "relaxed_handoff",
        puts_back: "the grant CAS publishes the cell `Relaxed`",
        caught_by: &[
            "m1_holder_and_waiter",
            "m2_two_waiters_two_releases",
            "m3_granted_waiter_dropped",
            "m4_cancel_racing_grant",
        ],
    },
    SeededBug {
        name: "no_park_look",
        puts_back: "a pool with a shared capacity parks a resource without looking at the acquires that wait for a unit",
        caught_by: &[
            "m10a_idle_return_racing_a_waiter_of_another_pool",
            "m10b_return_racing_a_waiter_for_a_unit_of_the_same_pool",
        ],
    },
    SeededBug {
        name: "no_reclaim_look",
        puts_back: "an acquire that queues for a unit of a shared capacity does not ask the other pools for an idle resource",
        caught_by: &["m10a_idle_return_racing_a_waiter_of_another_pool"],
    },
];

/// What the models observe about the resources of one pool. Shared by the
/// manager and every resource it made.
#[derive(Debug, Default)]
pub struct Probe {
    attempts: AtomicUsize,
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Probe {
    /// Resources created so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Resources dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// The error of a create the test manager was told to fail.
#[derive(Debug)]
pub struct CreateFailed;

impl fmt::Display for CreateFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted create failure")
    }
}

impl std::error::Error for CreateFailed {}

/// A pooled resource for the models.
///
/// `id` is its creation number (1, 2, ...). Its `owner` cell is written by
/// every holder through loom's `UnsafeCell::with_mut` (see [`hold`]) and by
/// its `Drop`: loom fails the model if two of those writes are not ordered
/// by happens-before, that is if the pool ever lets two threads hold it at
/// once or hands it over without synchronising.
#[derive(Debug)]
pub struct Res {
    /// Creation number, from 1.
    pub id: usize,
    /// Set by the holder to make [`Manager::is_broken`] report it.
    pub broken: bool,
    owner: UnsafeCell<usize>,
    probe: Arc<Probe>,
}

impl Res {
    fn mark(&self, who: usize) {
        // SAFETY: a plain write through loom's cell; loom checks that no
        // other access to this cell is concurrent with it.
        self.owner.with_mut(|owner| unsafe { *owner = who });
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        self.mark(usize::MAX);
        let before = self.probe.dropped.fetch_add(1, Ordering::SeqCst);
        assert!(
            before < self.probe.created.load(Ordering::SeqCst),
            "more resources dropped than created"
        );
    }
}

/// Records that `who` now holds the resource (see [`Res`]).
pub fn hold(guard: &Pooled<TestManager>, who: usize) {
    guard.mark(who);
}

/// How the test manager's creates behave, by attempt number (from 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// Attempts below this fail with [`CreateFailed`].
    pub fail_first: usize,
    /// Attempts below this return `Pending` once (waking themselves) before
    /// they finish, so an acquire can be dropped in the middle of a create.
    pub pend_first: usize,
    /// The pool's reuse order.
    pub order: ReuseOrder,
    /// The pool's `max_size_limit` (how far `resize` may grow it).
    pub max_size_limit: Option<usize>,
}

/// A manager whose creates follow a [`Script`].
#[derive(Debug)]
pub struct TestManager {
    probe: Arc<Probe>,
    script: Script,
}

/// Returns `Pending` once, waking its task, then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Manager for TestManager {
    type Resource = Res;
    type Error = CreateFailed;

    async fn create(&self) -> Result<Res, CreateFailed> {
        let attempt = self.probe.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.script.pend_first {
            YieldOnce(false).await;
        }
        if attempt < self.script.fail_first {
            return Err(CreateFailed);
        }
        let id = self.probe.created.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Res {
            id,
            broken: false,
            owner: UnsafeCell::new(0),
            probe: self.probe.clone(),
        })
    }

    fn is_broken(&self, resource: &mut Res) -> bool {
        resource.broken
    }
}

/// A pool of `max_size` with no acquire timeout (timers are not modelled;
/// the models cancel by dropping futures), whose first `fail_first` creates
/// fail.
pub fn pool(max_size: usize, fail_first: usize) -> (Pool<TestManager>, Arc<Probe>) {
    pool_with(
        max_size,
        Script {
            fail_first,
            ..Script::default()
        },
    )
}

/// [`pool`] with a full [`Script`] (LIFO reuse order runs the lock-free
/// index stack of the idle store under loom).
pub fn pool_with(max_size: usize, script: Script) -> (Pool<TestManager>, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let manager = TestManager {
        probe: probe.clone(),
        script,
    };
    let mut builder = Pool::builder(manager)
        .max_size(max_size)
        .acquire_timeout(None)
        .reuse_order(script.order);
    if let Some(limit) = script.max_size_limit {
        builder = builder.max_size_limit(limit);
    }
    let pool = builder.build().expect("valid configuration");
    (pool, probe)
}

/// A pool of `max_size` drawing on the shared `capacity` (FIFO, no
/// deadline, grace period zero).
pub fn pool_sharing(
    capacity: &quickslot::Capacity,
    max_size: usize,
) -> (Pool<TestManager>, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let manager = TestManager {
        probe: probe.clone(),
        script: Script::default(),
    };
    let pool = Pool::builder(manager)
        .max_size(max_size)
        .acquire_timeout(None)
        .capacity(capacity)
        .build()
        .expect("valid configuration");
    (pool, probe)
}

/// The result of an acquire.
pub type Acquired = Result<Pooled<TestManager>, Error<CreateFailed>>;

/// An acquire future that owns its pool handle, so it can be polled by
/// hand, moved to another thread and dropped at a chosen point.
pub type AcquireFuture = Pin<Box<dyn Future<Output = Acquired> + Send>>;

/// Starts an acquire on (a clone of) `pool` without polling it.
pub fn acquire_owned(pool: &Pool<TestManager>) -> AcquireFuture {
    let pool = pool.clone();
    Box::pin(async move { pool.acquire().await })
}

/// Polls `fut` once with a waker that does nothing.
pub fn poll_once(fut: &mut AcquireFuture) -> Poll<Acquired> {
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Acquires on the current loom thread, blocking it until served.
pub fn acquire(pool: &Pool<TestManager>) -> Acquired {
    loom::future::block_on(pool.acquire())
}

/// Runs `model` under loom (bounds from the `LOOM_*` environment variables)
/// and prints how many interleavings it explored and how long it took.
pub fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let started = Instant::now();
    loom::model::Builder::new().check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    eprintln!(
        "loom {name}: {} interleavings in {:.1?}",
        count.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
}
