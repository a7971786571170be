//! Deterministic fuzz harness.
//!
//! The functions here turn an arbitrary byte string into a run against the
//! pool's public API and panic when an invariant breaks. The cargo-fuzz
//! targets in `fuzz/` call them, and `tests/fuzz_replay.rs` replays the
//! committed corpus and a few thousand seeded inputs through them on the
//! stable toolchain, so no fuzzer is needed to run the checks.
//!
//! * [`run_ops`]: a small pool, a script of manager outcomes and a sequence
//!   of operations among [`TASKS`] simulated tasks, all polled by hand on
//!   one thread under a paused Tokio clock, with the invariants checked
//!   after every step. A create whose acquire gives up (deadline passed or
//!   future dropped) is modelled like the pool: with `create_timeout` or
//!   `acquire_timeout` configured it becomes an orphan that keeps its slot
//!   and finishes in a runtime task (run by the clock advances) under that
//!   bound; without either it is dropped and its slot freed at once.
//! * [`run_config`]: arbitrary builder input; `build` must not panic and
//!   must reject exactly the invalid settings, with a matching
//!   [`BuildError`].
//! * `run_pg_config` (testkit feature `postgres`): arbitrary connection
//!   strings and `PG*` variables through the PostgreSQL adapter's parsing.
//!
//! It drives the pool only through quickslot's public API, so it lives here
//! rather than in the library: the paused clock it needs (tokio's
//! `test-util`) stays out of the library's dependencies.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use arbitrary::Unstructured;
use tokio::runtime::Runtime;
use tokio::time::Instant;

use quickslot::{
    BuildError, Error, Manager, Pool, Pooled, ResourceInfo, ReuseOrder, Status, TimeoutPhase,
    TryAcquireError, MAX_SIZE_LIMIT,
};

/// How many simulated tasks [`run_ops`] drives.
pub const TASKS: usize = 8;

/// The most operations [`run_ops`] reads from one input.
pub const MAX_OPS: usize = 400;

/// The `max_size_limit` of the pools of [`run_ops`]: `resize` goes up to it.
pub const MAX_RESIZE: usize = 4;

// ----------------------------------------------------------------------------
// The scripted manager
// ----------------------------------------------------------------------------

/// What the next create does.
#[derive(Debug, Clone, Copy)]
enum CreateStep {
    Ok,
    Fail,
    Slow(Duration),
    SlowFail(Duration),
    Never,
}

/// What the next recycle does.
#[derive(Debug, Clone, Copy)]
enum RecycleStep {
    Ok,
    Fail,
    Slow(Duration),
    Never,
}

/// What the harness and the manager share. Locked only briefly, and never
/// while a resource or a guard is dropped (a resource's `Drop` locks it).
#[derive(Debug, Default)]
struct Model {
    create_script: VecDeque<CreateStep>,
    recycle_script: VecDeque<RecycleStep>,
    broken_script: VecDeque<bool>,
    /// The task being polled; manager code runs inside its poll.
    current: usize,
    /// Drop count per resource id (ids are indices).
    drops: Vec<u32>,
    /// A resource dropped twice.
    double_drop: Option<u64>,
    /// Live create / recycle futures per task. A create whose acquire gave
    /// up on it (an orphan) counts in `orphans` instead.
    in_create: [u32; TASKS],
    in_recycle: [u32; TASKS],
    /// Live creates by id, with the task whose acquire runs them; `None`
    /// for an orphan, finishing in the background.
    creates: BTreeMap<u64, Option<usize>>,
    next_create: u64,
    /// Live orphan creates.
    orphans: u32,
    /// Resources made by orphans, not yet looked at by the harness.
    orphan_made: Vec<u64>,
    /// Per acquire: whether a create or recycle ever started, and how many
    /// recycles returned an error.
    started_create: [bool; TASKS],
    started_recycle: [bool; TASKS],
    recycle_errors: [u32; TASKS],
    /// A create of this task returned an error during the current poll.
    create_failed: [bool; TASKS],
    /// `is_broken` answers that were `true`.
    broken_returns: u64,
    /// A recycle was run on a resource already dropped.
    recycled_dead: Option<u64>,
}

impl Model {
    fn reset_task(&mut self, task: usize) {
        self.started_create[task] = false;
        self.started_recycle[task] = false;
        self.recycle_errors[task] = 0;
        self.create_failed[task] = false;
    }

    fn alive(&self, id: u64) -> bool {
        self.drops.get(id as usize) == Some(&0)
    }

    /// The task whose acquire runs live create `id`; `None` for an orphan
    /// (or a create no longer live).
    fn create_owner(&self, id: u64) -> Option<usize> {
        self.creates.get(&id).copied().flatten()
    }

    /// The live creates of `task`'s acquire become orphans: no longer the
    /// task's, still live (and holding their slots). Returns their ids.
    fn orphan(&mut self, task: usize) -> Vec<u64> {
        let ids: Vec<u64> = self
            .creates
            .iter()
            .filter(|(_, owner)| **owner == Some(task))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.creates.insert(*id, None);
            self.in_create[task] -= 1;
            self.orphans += 1;
        }
        ids
    }
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The scripted manager's error.
#[derive(Debug)]
struct FuzzError;

impl fmt::Display for FuzzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted failure")
    }
}

impl std::error::Error for FuzzError {}

/// A pooled resource with a unique id; its drop is counted.
#[derive(Debug)]
struct Res {
    id: u64,
    model: Arc<Mutex<Model>>,
}

impl Drop for Res {
    fn drop(&mut self) {
        let mut m = lock(&self.model);
        let count = &mut m.drops[self.id as usize];
        *count += 1;
        if *count > 1 {
            m.double_drop = Some(self.id);
        }
    }
}

/// Which manager call a [`Live`] counts.
#[derive(Debug, Clone, Copy)]
enum LiveKind {
    Create,
    Recycle,
}

/// Counts a create or recycle future of one task while it lives. A create
/// may outlive its task's acquire as an orphan (see [`Model::orphan`]).
struct Live {
    model: Arc<Mutex<Model>>,
    task: usize,
    kind: LiveKind,
    /// The create's id in `Model::creates` (creates only).
    id: u64,
}

impl Live {
    fn start(model: &Arc<Mutex<Model>>, kind: LiveKind) -> Self {
        let mut m = lock(model);
        let task = m.current;
        let mut id = 0;
        match kind {
            LiveKind::Create => {
                id = m.next_create;
                m.next_create += 1;
                m.creates.insert(id, Some(task));
                m.in_create[task] += 1;
                m.started_create[task] = true;
            }
            LiveKind::Recycle => {
                m.in_recycle[task] += 1;
                m.started_recycle[task] = true;
            }
        }
        Self {
            model: model.clone(),
            task,
            kind,
            id,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut m = lock(&self.model);
        match self.kind {
            LiveKind::Create => match m.creates.remove(&self.id) {
                Some(Some(task)) => m.in_create[task] -= 1,
                Some(None) => m.orphans -= 1,
                None => unreachable!("create {} ended twice", self.id),
            },
            LiveKind::Recycle => m.in_recycle[self.task] -= 1,
        }
    }
}

#[derive(Debug)]
struct FuzzManager {
    model: Arc<Mutex<Model>>,
}

impl Manager for FuzzManager {
    type Resource = Res;
    type Error = FuzzError;

    fn create(&self) -> impl Future<Output = Result<Res, FuzzError>> + Send {
        let model = self.model.clone();
        async move {
            let live = Live::start(&model, LiveKind::Create);
            let step = lock(&model)
                .create_script
                .pop_front()
                .unwrap_or(CreateStep::Ok);
            let fail = match step {
                CreateStep::Ok => false,
                CreateStep::Fail => true,
                CreateStep::Slow(d) => {
                    tokio::time::sleep(d).await;
                    false
                }
                CreateStep::SlowFail(d) => {
                    tokio::time::sleep(d).await;
                    true
                }
                CreateStep::Never => std::future::pending().await,
            };
            let mut m = lock(&model);
            if fail {
                // An orphan's failure is no acquire's: it only frees its slot.
                if let Some(task) = m.create_owner(live.id) {
                    m.create_failed[task] = true;
                }
                drop(m);
                return Err(FuzzError);
            }
            let id = m.drops.len() as u64;
            m.drops.push(0);
            if m.create_owner(live.id).is_none() {
                m.orphan_made.push(id);
            }
            drop(m);
            Ok(Res { id, model })
        }
    }

    fn recycle(
        &self,
        resource: &mut Res,
        _info: &ResourceInfo,
    ) -> impl Future<Output = Result<(), FuzzError>> + Send {
        let model = self.model.clone();
        let id = resource.id;
        async move {
            let live = Live::start(&model, LiveKind::Recycle);
            let step = {
                let mut m = lock(&model);
                if !m.alive(id) {
                    m.recycled_dead = Some(id);
                }
                m.recycle_script.pop_front().unwrap_or(RecycleStep::Ok)
            };
            let fail = match step {
                RecycleStep::Ok => false,
                RecycleStep::Fail => true,
                RecycleStep::Slow(d) => {
                    tokio::time::sleep(d).await;
                    false
                }
                RecycleStep::Never => std::future::pending().await,
            };
            if fail {
                lock(&model).recycle_errors[live.task] += 1;
                return Err(FuzzError);
            }
            Ok(())
        }
    }

    fn is_broken(&self, _resource: &mut Res) -> bool {
        let mut m = lock(&self.model);
        let broken = m.broken_script.pop_front().unwrap_or(false);
        if broken {
            m.broken_returns += 1;
        }
        broken
    }
}

// ----------------------------------------------------------------------------
// Simulated tasks
// ----------------------------------------------------------------------------

/// A waker that counts its wake-ups.
#[derive(Debug, Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type AcquireFuture = Pin<Box<dyn Future<Output = Result<Pooled<FuzzManager>, Error<FuzzError>>>>>;

/// Where an acquire stands, as seen from outside after its last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotPolled,
    /// In line; the number orders registrations.
    Waiting(u64),
    Creating,
    Recycling,
}

struct Acquiring {
    fut: AcquireFuture,
    waker: Arc<CountingWaker>,
    /// Wake count before the last poll.
    seen_wakes: usize,
    phase: Phase,
    /// It was among the oldest waiters when the pool's waiting count said
    /// they had been served (granted or closed): its next poll must move on.
    owed: bool,
    /// When its create started (the poll that entered `Creating`).
    create_started: Option<Instant>,
}

/// A create whose acquire gave up on it, finishing in a background task
/// under the orphan bound.
#[derive(Debug)]
struct Orphan {
    /// Its id in `Model::creates`.
    id: u64,
    /// The latest its bound can end: the background task first runs in the
    /// first `advance` after it was spawned (after that advance moved the
    /// clock), and starts its `timeout(bound, ..)` then. `None` until that
    /// advance.
    deadline: Option<Instant>,
    /// Advances that ended at or after `deadline`. The bound's timer fires
    /// in the first (the runtime parks after moving the clock) and the task
    /// runs in the next, so after two the orphan must be gone.
    late: u32,
}

enum Task {
    Empty,
    Acquiring(Acquiring),
    Holding(Pooled<FuzzManager>, u64),
}

/// How a held resource leaves its task.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Return,
    Detach,
    Discard,
}

struct Harness {
    rt: Runtime,
    pool: Pool<FuzzManager>,
    model: Arc<Mutex<Model>>,
    tasks: Vec<Task>,
    closed: bool,
    max_size: usize,
    /// The most the size may be: `max_size`, or more after a shrinking
    /// `resize` until returns bring the size down.
    cap: usize,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    create_timeout: Option<Duration>,
    /// `create_timeout.or(acquire_timeout)` as configured: with it, a
    /// create whose acquire gives up (deadline passed or future dropped)
    /// finishes in the background for at most this long, keeping its slot;
    /// without it, it is dropped and its slot freed at once.
    orphan_bound: Option<Duration>,
    /// Live orphan creates.
    orphans: Vec<Orphan>,
    next_seq: u64,
    detached: u64,
    discarded: u64,
    step: usize,
}

const DURATIONS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(3),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(60),
];

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary().unwrap_or(0)
}

fn duration(u: &mut Unstructured<'_>) -> Duration {
    DURATIONS[usize::from(byte(u)) % DURATIONS.len()]
}

/// `None` about a third of the time, else one of [`DURATIONS`].
fn opt_duration(u: &mut Unstructured<'_>) -> Option<Duration> {
    let b = byte(u);
    (b % 3 != 0).then(|| DURATIONS[usize::from(b / 3) % DURATIONS.len()])
}

fn create_step(u: &mut Unstructured<'_>) -> CreateStep {
    let b = byte(u);
    match b % 6 {
        0 | 1 => CreateStep::Ok,
        2 => CreateStep::Fail,
        3 => CreateStep::Slow(DURATIONS[usize::from(b / 6) % DURATIONS.len()]),
        4 => CreateStep::SlowFail(DURATIONS[usize::from(b / 6) % DURATIONS.len()]),
        _ => CreateStep::Never,
    }
}

fn recycle_step(u: &mut Unstructured<'_>) -> RecycleStep {
    let b = byte(u);
    match b % 5 {
        0 | 1 => RecycleStep::Ok,
        2 => RecycleStep::Fail,
        3 => RecycleStep::Slow(DURATIONS[usize::from(b / 5) % DURATIONS.len()]),
        _ => RecycleStep::Never,
    }
}

impl Harness {
    fn new(u: &mut Unstructured<'_>) -> Self {
        let model = Arc::new(Mutex::new(Model::default()));
        let max_size = 1 + usize::from(byte(u) % 4);
        let order = if byte(u) % 2 == 0 {
            ReuseOrder::Fifo
        } else {
            ReuseOrder::Lifo
        };
        let acquire_timeout = opt_duration(u);
        let bound = |d: Duration, by: Option<Duration>| by.map_or(d, |b| d.min(b));
        let create_timeout = opt_duration(u).map(|d| bound(d, acquire_timeout));
        let recycle_timeout = opt_duration(u).map(|d| bound(d, acquire_timeout));
        let max_lifetime = opt_duration(u);
        let idle_timeout = opt_duration(u).map(|d| bound(d, max_lifetime));
        let track_idle_time = byte(u) % 2 == 0;
        {
            let mut m = lock(&model);
            for _ in 0..byte(u) % 4 {
                m.create_script.push_back(create_step(u));
            }
            for _ in 0..byte(u) % 4 {
                m.recycle_script.push_back(recycle_step(u));
            }
        }
        let pool = Pool::builder(FuzzManager {
            model: model.clone(),
        })
        .max_size(max_size)
        .max_size_limit(MAX_RESIZE)
        .reuse_order(order)
        .acquire_timeout(acquire_timeout)
        .create_timeout(create_timeout)
        .recycle_timeout(recycle_timeout)
        .idle_timeout(idle_timeout)
        .max_lifetime(max_lifetime)
        .track_idle_time(track_idle_time)
        .build()
        .expect("the harness only picks valid settings");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        Self {
            rt,
            pool,
            model,
            tasks: (0..TASKS).map(|_| Task::Empty).collect(),
            closed: false,
            max_size,
            cap: max_size,
            max_lifetime,
            idle_timeout,
            create_timeout,
            orphan_bound: create_timeout.or(acquire_timeout),
            orphans: Vec::new(),
            next_seq: 0,
            detached: 0,
            discarded: 0,
            step: 0,
        }
    }

    fn fail(&self, what: impl fmt::Display) -> ! {
        panic!(
            "invariant violated at step {}: {what}\nstatus: {:?}",
            self.step,
            self.pool.status()
        );
    }

    fn status(&self) -> Status {
        self.pool.status()
    }

    fn held_ids(&self) -> Vec<u64> {
        self.tasks
            .iter()
            .filter_map(|t| match t {
                Task::Holding(_, id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    // ----- operations -----

    fn start(&mut self, k: usize, u: &mut Unstructured<'_>) {
        if !matches!(self.tasks[k], Task::Empty) {
            return;
        }
        lock(&self.model).reset_task(k);
        match byte(u) % 3 {
            0 => self.start_future(k, None),
            1 => self.start_future(k, Some(duration(u))),
            _ => self.try_acquire(k),
        }
    }

    fn start_future(&mut self, k: usize, timeout: Option<Duration>) {
        let pool = self.pool.clone();
        let fut: AcquireFuture = match timeout {
            None => Box::pin(async move { pool.acquire().await }),
            Some(t) => Box::pin(async move { pool.acquire_timeout(t).await }),
        };
        self.tasks[k] = Task::Acquiring(Acquiring {
            fut,
            waker: Arc::new(CountingWaker::default()),
            seen_wakes: 0,
            phase: Phase::NotPolled,
            owed: false,
            create_started: None,
        });
    }

    fn try_acquire(&mut self, k: usize) {
        let before = self.status();
        let result = {
            let _rt = self.rt.enter();
            self.pool.try_acquire()
        };
        match result {
            Ok(guard) => {
                if self.closed || before.waiting > 0 || before.idle == 0 {
                    self.fail(format_args!(
                        "try_acquire succeeded with closed={} waiting={} idle={}",
                        self.closed, before.waiting, before.idle
                    ));
                }
                let info = *Pooled::info(&guard);
                let now = {
                    let _rt = self.rt.enter();
                    Instant::now()
                };
                let too_old = info
                    .lifetime()
                    .is_some_and(|l| now.saturating_duration_since(info.created_at()) >= l);
                let too_idle = match (self.idle_timeout, info.last_returned()) {
                    (Some(t), Some(at)) => now.saturating_duration_since(at) >= t,
                    _ => false,
                };
                if too_old || too_idle {
                    self.fail("try_acquire handed out an expired resource");
                }
                self.hold(k, guard);
            }
            Err(TryAcquireError::Closed) if self.closed => {}
            Err(TryAcquireError::Busy) if !self.closed && before.waiting > 0 => {}
            Err(TryAcquireError::Empty)
                if !self.closed && before.waiting == 0 && self.status().size < self.max_size => {}
            Err(TryAcquireError::Exhausted)
                if !self.closed && before.waiting == 0 && before.size >= self.max_size => {}
            Err(e) => self.fail(format_args!(
                "try_acquire: unexpected {e:?} (closed={}, before={before:?})",
                self.closed
            )),
        }
    }

    /// Puts a freshly acquired guard in task `k`, checking its resource is
    /// not held twice and still alive.
    fn hold(&mut self, k: usize, guard: Pooled<FuzzManager>) {
        let id = guard.id;
        if self.held_ids().contains(&id) {
            self.fail(format_args!("resource {id} handed out twice"));
        }
        if !lock(&self.model).alive(id) {
            self.fail(format_args!(
                "resource {id} handed out after it was dropped"
            ));
        }
        let lifetime = Pooled::info(&guard).lifetime();
        let jitter_ok = match (self.max_lifetime, lifetime) {
            (None, None) => true,
            (Some(max), Some(l)) => l <= max && l >= max.mul_f64(0.9),
            _ => false,
        };
        if !jitter_ok {
            self.fail(format_args!(
                "resource {id} has lifetime {lifetime:?} for max_lifetime {:?}",
                self.max_lifetime
            ));
        }
        self.tasks[k] = Task::Holding(guard, id);
    }

    fn poll(&mut self, k: usize) {
        let Task::Acquiring(acq) = &mut self.tasks[k] else {
            return;
        };
        {
            let mut m = lock(&self.model);
            m.current = k;
            m.create_failed[k] = false;
        }
        let before = acq.phase;
        let owed = acq.owed;
        acq.seen_wakes = acq.waker.count();
        let waker = Waker::from(acq.waker.clone());
        let (result, now) = {
            let _rt = self.rt.enter();
            let result = acq.fut.as_mut().poll(&mut Context::from_waker(&waker));
            (result, Instant::now())
        };
        // When a create of this acquire (live or ended in this poll) started:
        // a create starts in the poll that enters `Creating`, and the clock
        // stands still during a poll.
        let create_started = if before == Phase::Creating {
            acq.create_started.unwrap_or(now)
        } else {
            now
        };
        let (in_create, in_recycle, create_failed, started_create, started_recycle, recycle_errors) = {
            let m = lock(&self.model);
            (
                m.in_create[k],
                m.in_recycle[k],
                m.create_failed[k],
                m.started_create[k],
                m.started_recycle[k],
                m.recycle_errors[k],
            )
        };
        let first_after_close = before == Phase::NotPolled && self.closed;
        match result {
            Poll::Ready(Ok(guard)) => {
                if first_after_close {
                    self.fail("an acquire first polled after close succeeded");
                }
                if create_failed {
                    self.fail("a create failed but the acquire succeeded");
                }
                self.hold(k, guard);
            }
            Poll::Ready(Err(e)) => {
                self.tasks[k] = Task::Empty;
                if first_after_close && !matches!(e, Error::Closed) {
                    self.fail(format_args!(
                        "an acquire first polled after close got {e:?}"
                    ));
                }
                if create_failed != matches!(e, Error::Create(_)) {
                    self.fail(format_args!(
                        "create failed in this poll: {create_failed}, acquire returned {e:?}"
                    ));
                }
                match e {
                    Error::Create(_) => {}
                    // The harness sets no hooks.
                    Error::Hook { hook, .. } => {
                        self.fail(format_args!("hook {hook} failed, but none is set"));
                    }
                    Error::Closed => {
                        if !self.closed {
                            self.fail("Closed from an open pool");
                        }
                    }
                    Error::Timeout {
                        phase, last_error, ..
                    } => {
                        let consistent = match phase {
                            TimeoutPhase::Wait => matches!(before, Phase::Waiting(_)) && !owed,
                            TimeoutPhase::Create => started_create,
                            TimeoutPhase::Recycle => started_recycle,
                            // A phase added later: the harness must learn it.
                            _ => false,
                        };
                        if !consistent {
                            self.fail(format_args!(
                                "timeout in phase {phase:?} from {before:?} (owed: {owed}, \
                                 created: {started_create}, recycled: {started_recycle})"
                            ));
                        }
                        if last_error.is_some() && recycle_errors == 0 {
                            self.fail("a timeout carries an error the manager never returned");
                        }
                        if phase == TimeoutPhase::Create {
                            self.create_timed_out(k, create_started, now);
                        }
                    }
                    // `Error` is non-exhaustive; a new variant needs a model.
                    other => self.fail(format_args!(
                        "an error the harness does not model: {other:?}"
                    )),
                }
            }
            Poll::Pending => {
                if first_after_close {
                    self.fail("an acquire first polled after close is pending");
                }
                let phase = match (in_create, in_recycle) {
                    (0, 0) => match before {
                        Phase::Waiting(seq) => {
                            if owed {
                                self.fail(format_args!(
                                    "task {k} was served (its waiter count dropped) but is \
                                     still waiting"
                                ));
                            }
                            Phase::Waiting(seq)
                        }
                        Phase::NotPolled => {
                            self.next_seq += 1;
                            Phase::Waiting(self.next_seq)
                        }
                        Phase::Creating | Phase::Recycling => self.fail(format_args!(
                            "task {k} went back to waiting after {before:?}"
                        )),
                    },
                    (1, 0) => Phase::Creating,
                    (0, 1) => Phase::Recycling,
                    (c, r) => self.fail(format_args!(
                        "task {k} has {c} creates and {r} recycles in flight"
                    )),
                };
                if let Task::Acquiring(acq) = &mut self.tasks[k] {
                    acq.phase = phase;
                    acq.owed = false;
                    acq.create_started = (phase == Phase::Creating).then_some(create_started);
                }
            }
        }
    }

    fn poll_woken(&mut self) {
        for k in 0..TASKS {
            if let Task::Acquiring(acq) = &self.tasks[k] {
                if acq.waker.count() > acq.seen_wakes || acq.phase == Phase::NotPolled {
                    self.poll(k);
                }
            }
        }
    }

    /// An acquire returned `Timeout { phase: Create }` at `now`, its create
    /// having started at `started`: either the create's own
    /// `create_timeout` passed (the create ended), or the acquire's
    /// deadline passed first and the acquire gave up on a running create.
    fn create_timed_out(&mut self, k: usize, started: Instant, now: Instant) {
        let own_timeout = self
            .create_timeout
            .is_some_and(|t| now.saturating_duration_since(started) >= t);
        if own_timeout {
            // The create is polled before the acquire's deadline is looked
            // at, so its own timeout wins; it ended.
            let live = lock(&self.model).in_create[k];
            if live != 0 {
                self.fail(format_args!(
                    "task {k}'s create outlived its create_timeout {:?} (started {:?} ago)",
                    self.create_timeout,
                    now.saturating_duration_since(started)
                ));
            }
        } else {
            self.create_abandoned(k, "its deadline passed");
        }
    }

    /// Whether a create whose acquire gives up finishes in the background:
    /// with a bound, and a runtime (always entered here), and not while
    /// unwinding.
    fn orphaning(&self) -> bool {
        self.orphan_bound.is_some() && !std::thread::panicking()
    }

    /// Task `k`'s acquire gave up on its running create (`why`): with the
    /// orphan bound the create must live on, no longer the task's and still
    /// holding its slot; without it, it must be gone (and its slot freed).
    fn create_abandoned(&mut self, k: usize, why: &str) {
        let live = lock(&self.model).in_create[k];
        if !self.orphaning() {
            if live != 0 {
                self.fail(format_args!(
                    "task {k}'s create outlived its acquire ({why}) with neither \
                     create_timeout nor acquire_timeout"
                ));
            }
            return;
        }
        if live != 1 {
            self.fail(format_args!(
                "task {k} runs {live} creates after its acquire gave up ({why}); with bound \
                 {:?} its create should finish in the background",
                self.orphan_bound
            ));
        }
        let ids = lock(&self.model).orphan(k);
        self.orphans.extend(ids.into_iter().map(|id| Orphan {
            id,
            deadline: None,
            late: 0,
        }));
    }

    fn drop_future(&mut self, k: usize) {
        let Task::Acquiring(acq) = &self.tasks[k] else {
            return;
        };
        let creating = acq.phase == Phase::Creating;
        {
            let _rt = self.rt.enter();
            self.tasks[k] = Task::Empty;
        }
        if creating {
            self.create_abandoned(k, "its future was dropped");
        }
    }

    fn leave(&mut self, k: usize, how: Leave) {
        let Task::Holding(..) = &self.tasks[k] else {
            return;
        };
        let Task::Holding(guard, id) = std::mem::replace(&mut self.tasks[k], Task::Empty) else {
            unreachable!()
        };
        let _rt = self.rt.enter();
        let should_drop = match how {
            Leave::Return => {
                // Each resource's lifetime is `max_lifetime` with jitter.
                let info = *Pooled::info(&guard);
                let expired = info.lifetime().is_some_and(|l| {
                    Instant::now().saturating_duration_since(info.created_at()) >= l
                });
                let over = self.status().size > self.max_size;
                let broken_before = lock(&self.model).broken_returns;
                drop(guard);
                let broken = lock(&self.model).broken_returns > broken_before;
                broken || expired || self.closed || over
            }
            Leave::Detach => {
                let resource = Pooled::detach(guard);
                self.detached += 1;
                if resource.id != id {
                    self.fail("detach returned another resource");
                }
                drop(resource);
                true
            }
            Leave::Discard => {
                Pooled::discard(guard);
                self.discarded += 1;
                true
            }
        };
        let drops = lock(&self.model).drops[id as usize];
        if drops != u32::from(should_drop) {
            self.fail(format_args!(
                "{how:?} of resource {id}: dropped {drops} times, expected {}",
                u32::from(should_drop)
            ));
        }
    }

    /// Moves the paused clock on; this also runs the runtime's tasks, so
    /// orphan creates progress here (see [`Orphan`]).
    fn advance(&mut self, d: Duration) {
        // Above `max_size` after a shrink, a released resource may be shed.
        let may_shed = self.cap > self.max_size;
        self.rt.block_on(tokio::time::advance(d));
        // An orphan's resource enters the pool like a returned one: to a
        // waiter or idle (the checks account for it there), or dropped at
        // once if the pool is closed.
        let made = std::mem::take(&mut lock(&self.model).orphan_made);
        for id in made {
            let alive = lock(&self.model).alive(id);
            if self.closed && alive {
                self.fail(format_args!(
                    "resource {id}, made by an orphan create, kept by a closed pool"
                ));
            }
            if !self.closed && !may_shed && !alive {
                self.fail(format_args!(
                    "resource {id}, made by an orphan create, was dropped instead of \
                     entering the pool"
                ));
            }
        }
        let now = {
            let _rt = self.rt.enter();
            Instant::now()
        };
        // Orphans exist only with a bound.
        let bound = self.orphan_bound.unwrap_or_default();
        for orphan in &mut self.orphans {
            match orphan.deadline {
                None => orphan.deadline = Some(now + bound),
                Some(at) if now >= at => orphan.late += 1,
                Some(_) => {}
            }
        }
    }

    fn retain(&mut self, mask: u8, nested: bool) {
        let idle_before = self.status().idle;
        let held = self.held_ids();
        let model = self.model.clone();
        let pool = self.pool.clone();
        let mut visited = Vec::new();
        let mut removed = Vec::new();
        let mut bad = None;
        let count = {
            let _rt = self.rt.enter();
            self.pool.retain(|res, _info| {
                let i = visited.len();
                visited.push(res.id);
                if held.contains(&res.id) || !lock(&model).alive(res.id) {
                    bad = Some(res.id);
                }
                if nested {
                    // Re-entrancy: user code may use the pool meanwhile.
                    let _ = pool.status();
                    drop(pool.try_acquire());
                }
                let keep = mask & (1 << (i % 8)) != 0;
                if !keep {
                    removed.push(res.id);
                }
                keep
            })
        };
        if let Some(id) = bad {
            self.fail(format_args!(
                "retain visited resource {id}, held or dropped"
            ));
        }
        if visited.len() != idle_before || count != removed.len() {
            self.fail(format_args!(
                "retain visited {} of {idle_before} idle and reported {count} removed of {}",
                visited.len(),
                removed.len()
            ));
        }
        let unique: HashSet<_> = visited.iter().collect();
        if unique.len() != visited.len() {
            self.fail("retain visited a resource twice");
        }
        let m = lock(&self.model);
        if let Some(id) = removed.iter().find(|id| m.alive(**id)) {
            let id = *id;
            drop(m);
            self.fail(format_args!(
                "retain removed resource {id} but did not drop it"
            ));
        }
    }

    fn resize(&mut self, to: usize) {
        let size = self.status().size;
        match (self.pool.resize(to), to) {
            (Err(BuildError::ZeroMaxSize), 0) => {}
            (Ok(()), 1..=MAX_RESIZE) => {
                self.max_size = to;
                // Shrinking sheds idle resources now and the rest as they
                // come back; meanwhile nothing may grow the pool.
                self.cap = self.cap.max(size).max(to);
            }
            (result, _) => self.fail(format_args!("resize({to}) returned {result:?}")),
        }
    }

    fn close(&mut self) {
        self.pool.close();
        self.closed = true;
        if !self.pool.is_closed() {
            self.fail("is_closed is false after close");
        }
    }

    // ----- invariants -----

    fn check(&mut self) {
        let st = self.status();
        let m = lock(&self.model);
        let mut problems = Vec::new();
        if st.max_size != self.max_size || st.size > self.cap {
            problems.push(format!(
                "size {} of max {} (at most {} after a shrink)",
                st.size, st.max_size, self.cap
            ));
        }
        if st.idle + st.creating > st.size || st.in_use != st.size - st.idle - st.creating {
            problems.push("idle + in_use + creating != size".to_string());
        }
        // Orphans still create (and hold their slots).
        let creating: u32 = m.in_create.iter().sum::<u32>() + m.orphans;
        let recycling: u32 = m.in_recycle.iter().sum();
        if st.creating != creating as usize {
            problems.push(format!(
                "creating gauge {} but {creating} creates live ({} orphans)",
                st.creating, m.orphans
            ));
        }
        self.orphans.retain(|o| m.creates.contains_key(&o.id));
        let unowned = m.creates.values().filter(|owner| owner.is_none()).count();
        if unowned != m.orphans as usize || unowned != self.orphans.len() {
            problems.push(format!(
                "{unowned} creates unowned, {} orphans counted, {} abandoned",
                m.orphans,
                self.orphans.len()
            ));
        }
        if let Some(o) = self.orphans.iter().find(|o| o.late >= 2) {
            problems.push(format!(
                "orphan create {} outlived its bound {:?} (due by {:?})",
                o.id, self.orphan_bound, o.deadline
            ));
        }
        let mut held = 0;
        let mut waiting = Vec::new();
        for (k, task) in self.tasks.iter().enumerate() {
            let (c, r) = (m.in_create[k], m.in_recycle[k]);
            match task {
                Task::Acquiring(a) => {
                    let expected = match a.phase {
                        Phase::Creating => (1, 0),
                        Phase::Recycling => (0, 1),
                        Phase::Waiting(seq) => {
                            waiting.push((seq, k));
                            (0, 0)
                        }
                        Phase::NotPolled => (0, 0),
                    };
                    if (c, r) != expected {
                        problems.push(format!("task {k} in {:?} runs ({c}, {r})", a.phase));
                    }
                }
                Task::Holding(_, id) => {
                    held += 1;
                    if !m.alive(*id) {
                        problems.push(format!("held resource {id} was dropped"));
                    }
                    if (c, r) != (0, 0) {
                        problems.push(format!("holding task {k} runs ({c}, {r})"));
                    }
                }
                Task::Empty => {
                    if (c, r) != (0, 0) {
                        problems.push(format!("empty task {k} runs ({c}, {r})"));
                    }
                }
            }
        }
        // The pool's count excludes waiters already granted (or closed):
        // those must be the oldest, and each must have been woken.
        let served = waiting.len().checked_sub(st.waiting);
        let served = served.unwrap_or_else(|| {
            problems.push(format!(
                "pool counts {} waiters, tasks {}",
                st.waiting,
                waiting.len()
            ));
            0
        });
        // Slots held by served waiters that have not polled yet.
        let transit = st.size as i64
            - st.idle as i64
            - st.creating as i64
            - held as i64
            - i64::from(recycling);
        if transit < 0 || transit > served as i64 || (!self.closed && transit != served as i64) {
            problems.push(format!(
                "slot accounting: {transit} in transit, {served} served waiters \
                 (held {held}, recycling {recycling})"
            ));
        }
        if st.waiting > 0 && (st.idle > 0 || st.size < st.max_size) {
            problems.push("a waiter waits while a resource or slot is free".to_string());
        }
        if self.closed && (st.idle > 0 || st.waiting > 0) {
            problems.push("closed pool keeps idle resources or waiters".to_string());
        }
        if self.pool.is_closed() != self.closed {
            problems.push("is_closed disagrees".to_string());
        }
        let ids: HashSet<u64> = self.held_ids().into_iter().collect();
        if ids.len() != held {
            problems.push("a resource is held twice".to_string());
        }
        let alive = m.drops.iter().filter(|d| **d == 0).count() as i64;
        let in_pool = alive - held as i64 - i64::from(recycling);
        if in_pool < st.idle as i64 || in_pool > st.idle as i64 + transit.max(0) {
            problems.push(format!(
                "{in_pool} live resources unaccounted, {} idle",
                st.idle
            ));
        }
        if let Some(id) = m.double_drop {
            problems.push(format!("resource {id} dropped twice"));
        }
        if let Some(id) = m.recycled_dead {
            problems.push(format!("recycle ran on dropped resource {id}"));
        }
        if st.created != m.drops.len() as u64 {
            problems.push(format!("created {} but {} made", st.created, m.drops.len()));
        }
        if st.discarded.detached != self.detached
            || st.discarded.broken != self.discarded + m.broken_returns
        {
            problems.push("detached or broken counters drift".to_string());
        }
        waiting.sort_unstable();
        for &(_, k) in waiting.iter().take(served) {
            if let Task::Acquiring(a) = &self.tasks[k] {
                if a.waker.count() <= a.seen_wakes {
                    problems.push(format!(
                        "task {k} is among the {served} oldest waiters served, but was not woken \
                         (lost wake-up or out-of-order hand-off)"
                    ));
                }
            }
        }
        drop(m);
        if !problems.is_empty() {
            self.fail(problems.join("; "));
        }
        for &(_, k) in waiting.iter().take(served) {
            if let Task::Acquiring(a) = &mut self.tasks[k] {
                a.owed = true;
            }
        }
        // Above `max_size` after a shrink, the size only goes down.
        self.cap = self.max_size.max(self.cap.min(st.size));
    }

    /// Ends the run: drops everything in an order the input picks and
    /// checks that nothing leaked and every resource dropped exactly once.
    fn finish(mut self, how: u8) {
        if how & 1 != 0 {
            self.close();
        }
        let Self {
            rt,
            pool,
            model,
            mut tasks,
            closed,
            ..
        } = self;
        if how & 2 != 0 {
            // Guards and futures dropped after the runtime is gone.
            drop(rt);
            drop_tasks(&mut tasks, how & 4 != 0);
        } else {
            {
                let _rt = rt.enter();
                drop_tasks(&mut tasks, how & 4 != 0);
            }
            drop(rt);
        }
        let st = pool.status();
        let alive = lock(&model).drops.iter().filter(|d| **d == 0).count();
        assert!(
            st.creating == 0
                && st.waiting == 0
                && st.in_use == 0
                && st.size == st.idle
                && alive == st.idle
                && (!closed || st.size == 0),
            "leak after every task ended: {st:?}, {alive} resources alive"
        );
        drop(pool);
        let m = lock(&model);
        assert!(m.double_drop.is_none(), "a resource dropped twice");
        if let Some(id) = m.drops.iter().position(|d| *d != 1) {
            panic!("resource {id} dropped {} times", m.drops[id]);
        }
    }
}

fn drop_tasks(tasks: &mut Vec<Task>, reverse: bool) {
    if reverse {
        while tasks.pop().is_some() {}
    } else {
        tasks.drain(..).for_each(drop);
    }
}

/// Runs one operation sequence read from `data` against a small pool and
/// panics if any invariant breaks.
///
/// The input picks the configuration (`max_size` 1 to 4, FIFO or LIFO,
/// optional timeouts, idle timeout and lifetime), the manager's scripted
/// outcomes, then up to [`MAX_OPS`] operations: start an acquire
/// (`acquire`, `acquire_timeout` or `try_acquire`) in one of [`TASKS`]
/// tasks, poll a task, poll every woken task, drop a task's future, return,
/// detach or discard a held resource, advance the paused clock, `retain`,
/// `close`, `resize` (up to [`MAX_RESIZE`]), or extend the manager's script.
pub fn run_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new(&mut u);
    h.check();
    while !u.is_empty() && h.step < MAX_OPS {
        h.step += 1;
        let op = byte(&mut u);
        let k = usize::from(byte(&mut u)) % TASKS;
        match op % 21 {
            0..=2 => h.start(k, &mut u),
            3..=6 => h.poll(k),
            7 => h.poll_woken(),
            8 => h.drop_future(k),
            9 | 10 => h.leave(k, Leave::Return),
            11 => h.leave(k, Leave::Detach),
            12 => h.leave(k, Leave::Discard),
            13 | 14 => {
                let d = duration(&mut u);
                h.advance(d);
            }
            15 => {
                let mask = byte(&mut u);
                h.retain(mask, k % 2 == 0);
            }
            16 => h.close(),
            17 => {
                let step = create_step(&mut u);
                lock(&h.model).create_script.push_back(step);
            }
            18 => {
                let step = recycle_step(&mut u);
                lock(&h.model).recycle_script.push_back(step);
            }
            19 => lock(&h.model).broken_script.push_back(k % 2 == 0),
            _ => h.resize(k % (MAX_RESIZE + 1)),
        }
        h.check();
    }
    let how = byte(&mut u);
    h.finish(how);
}

// ----------------------------------------------------------------------------
// Builder input
// ----------------------------------------------------------------------------

/// The settings a run of [`run_config`] gave the builder, last call wins.
#[derive(Debug, Clone)]
struct Settings {
    max_size: usize,
    acquire_timeout: Option<Duration>,
    create_timeout: Option<Duration>,
    recycle_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    min_idle: usize,
    max_size_limit: Option<usize>,
    keepalive_interval: Option<Duration>,
    leak_threshold: Option<Duration>,
    upkeep_interval: Option<Duration>,
}

impl Default for Settings {
    /// The documented defaults.
    fn default() -> Self {
        Self {
            max_size: 10,
            acquire_timeout: Some(Duration::from_secs(30)),
            create_timeout: None,
            recycle_timeout: None,
            idle_timeout: None,
            max_lifetime: None,
            min_idle: 0,
            max_size_limit: None,
            keepalive_interval: None,
            leak_threshold: None,
            upkeep_interval: None,
        }
    }
}

impl Settings {
    /// Every error `build` may rightly return for these settings; empty when
    /// they are valid.
    fn violations(&self) -> Vec<BuildError> {
        let mut errors = Vec::new();
        if self.max_size == 0 {
            errors.push(BuildError::ZeroMaxSize);
        }
        if self.max_size > MAX_SIZE_LIMIT {
            errors.push(BuildError::MaxSizeTooLarge {
                max_size: self.max_size,
                limit: MAX_SIZE_LIMIT,
            });
        }
        if self.min_idle > self.max_size {
            errors.push(BuildError::TooLarge {
                setting: "min_idle",
                value: self.min_idle,
                bound: "max_size",
                bound_value: self.max_size,
            });
        }
        if let Some(limit) = self.max_size_limit {
            if limit > MAX_SIZE_LIMIT {
                errors.push(BuildError::MaxSizeTooLarge {
                    max_size: limit,
                    limit: MAX_SIZE_LIMIT,
                });
            }
            if self.max_size > limit {
                errors.push(BuildError::TooLarge {
                    setting: "max_size",
                    value: self.max_size,
                    bound: "max_size_limit",
                    bound_value: limit,
                });
            }
        }
        let named = [
            ("acquire_timeout", self.acquire_timeout),
            ("create_timeout", self.create_timeout),
            ("recycle_timeout", self.recycle_timeout),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("keepalive_interval", self.keepalive_interval),
            ("leak_threshold", self.leak_threshold),
            ("upkeep_interval", self.upkeep_interval),
        ];
        for (setting, value) in named {
            if value == Some(Duration::ZERO) {
                errors.push(BuildError::ZeroDuration { setting });
            }
        }
        let pairs = [
            (
                "create_timeout",
                self.create_timeout,
                "acquire_timeout",
                self.acquire_timeout,
            ),
            (
                "recycle_timeout",
                self.recycle_timeout,
                "acquire_timeout",
                self.acquire_timeout,
            ),
            (
                "idle_timeout",
                self.idle_timeout,
                "max_lifetime",
                self.max_lifetime,
            ),
        ];
        for (setting, value, other, other_value) in pairs {
            if let (Some(value), Some(other_value)) = (value, other_value) {
                if value > other_value {
                    errors.push(BuildError::Conflict {
                        setting,
                        value,
                        other,
                        other_value,
                    });
                }
            }
        }
        errors
    }
}

/// A manager of unit resources that counts its creates.
#[derive(Debug, Default)]
struct UnitManager {
    created: AtomicUsize,
}

impl Manager for UnitManager {
    type Resource = ();
    type Error = FuzzError;

    fn create(&self) -> impl Future<Output = Result<(), FuzzError>> + Send {
        self.created.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

fn any_max_size(u: &mut Unstructured<'_>) -> usize {
    match byte(u) % 16 {
        0 => 0,
        1 => MAX_SIZE_LIMIT,
        2 => MAX_SIZE_LIMIT + 1,
        3 => usize::MAX,
        4 => u.arbitrary::<u64>().unwrap_or(0) as usize,
        5 => MAX_SIZE_LIMIT + usize::from(byte(u)),
        6..=9 => usize::from(byte(u)),
        _ => 1 + usize::from(byte(u) % 4),
    }
}

fn any_duration(u: &mut Unstructured<'_>) -> Option<Duration> {
    match byte(u) % 10 {
        0 => None,
        1 => Some(Duration::ZERO),
        2 => Some(Duration::from_nanos(1 + u64::from(byte(u)))),
        3 | 4 => Some(Duration::from_millis(u64::from(byte(u)))),
        5 => Some(Duration::from_secs(u64::from(
            u.arbitrary::<u16>().unwrap_or(0),
        ))),
        6 => Some(Duration::MAX),
        7 => Some(Duration::new(
            u.arbitrary().unwrap_or(0),
            u.arbitrary::<u32>().unwrap_or(0) % 1_000_000_000,
        )),
        _ => Some(Duration::from_secs(30)),
    }
}

/// Feeds arbitrary settings to a [`Builder`](quickslot::Builder) and panics if
/// `build` panics, accepts invalid settings, rejects valid ones, or returns
/// a [`BuildError`] that does not name a setting actually at fault. A pool
/// that builds is checked to report its settings and to serve acquires,
/// time out and expire as configured.
pub fn run_config(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut s = Settings::default();
    let mut lifo = false;
    let mut builder = Pool::builder(UnitManager::default());
    for _ in 0..24 {
        if u.is_empty() {
            break;
        }
        builder = match byte(&mut u) % 15 {
            0 => {
                s.max_size = any_max_size(&mut u);
                builder.max_size(s.max_size)
            }
            1 => {
                s.acquire_timeout = any_duration(&mut u);
                builder.acquire_timeout(s.acquire_timeout)
            }
            2 => {
                s.create_timeout = any_duration(&mut u);
                builder.create_timeout(s.create_timeout)
            }
            3 => {
                s.recycle_timeout = any_duration(&mut u);
                builder.recycle_timeout(s.recycle_timeout)
            }
            4 => {
                s.idle_timeout = any_duration(&mut u);
                builder.idle_timeout(s.idle_timeout)
            }
            5 => {
                s.max_lifetime = any_duration(&mut u);
                builder.max_lifetime(s.max_lifetime)
            }
            6 => {
                lifo = byte(&mut u) % 2 == 1;
                builder.reuse_order(if lifo {
                    ReuseOrder::Lifo
                } else {
                    ReuseOrder::Fifo
                })
            }
            7 => builder.track_idle_time(byte(&mut u) % 2 == 1),
            8 => {
                s.min_idle = any_max_size(&mut u);
                builder.min_idle(s.min_idle)
            }
            9 => {
                let limit = any_max_size(&mut u);
                s.max_size_limit = Some(limit);
                builder.max_size_limit(limit)
            }
            10 => {
                s.keepalive_interval = any_duration(&mut u);
                builder.keepalive_interval(s.keepalive_interval)
            }
            11 => {
                s.leak_threshold = any_duration(&mut u);
                builder.leak_threshold(s.leak_threshold)
            }
            12 => match any_duration(&mut u) {
                Some(interval) => {
                    s.upkeep_interval = Some(interval);
                    builder.upkeep_interval(interval)
                }
                None => builder,
            },
            13 => builder.metrics(byte(&mut u) % 2 == 1),
            _ => {
                let len = usize::from(byte(&mut u) % 16);
                let name = u.bytes(len.min(u.len())).unwrap_or_default();
                builder.name(String::from_utf8_lossy(name).into_owned())
            }
        };
    }
    let debug = format!("{builder:?}");
    assert!(debug.starts_with("Builder"), "Debug of a builder: {debug}");
    let allowed = s.violations();
    match builder.build() {
        Ok(pool) => {
            assert!(
                allowed.is_empty(),
                "build accepted {s:?} (lifo: {lifo}), expected one of {allowed:?}"
            );
            check_built(&pool, &s);
        }
        Err(e) => {
            assert!(
                allowed.contains(&e),
                "build rejected {s:?} with {e:?}, expected one of {allowed:?}"
            );
            let message = e.to_string();
            let named = match &e {
                BuildError::ZeroDuration { setting } => message.contains(setting),
                BuildError::Conflict { setting, other, .. } => {
                    message.contains(setting) && message.contains(other)
                }
                BuildError::TooLarge { setting, bound, .. } => {
                    message.contains(setting) && message.contains(bound)
                }
                _ => message.contains("max_size"),
            };
            assert!(
                named,
                "the message of {e:?} does not name the setting: {message}"
            );
        }
    }
}

/// A pool built from `s` reports it and behaves as configured.
fn check_built(pool: &Pool<UnitManager>, s: &Settings) {
    let st = pool.status();
    assert!(
        st.max_size == s.max_size && st.size == 0 && st.idle == 0 && st.waiting == 0,
        "fresh pool: {st:?}"
    );
    assert_eq!(pool.try_acquire().err(), Some(TryAcquireError::Empty));
    let limit = s.max_size_limit.unwrap_or(s.max_size);
    assert_eq!(pool.resize(0), Err(BuildError::ZeroMaxSize));
    if let Some(above) = limit.checked_add(1) {
        assert_eq!(
            pool.resize(above),
            Err(BuildError::TooLarge {
                setting: "max_size",
                value: above,
                bound: "max_size_limit",
                bound_value: limit,
            })
        );
    }
    assert_eq!(pool.resize(limit), Ok(()));
    assert_eq!(pool.status().max_size, limit);
    assert_eq!(pool.resize(s.max_size), Ok(()));
    assert_eq!(pool.status().max_size, s.max_size);
    // Background upkeep (min_idle, keepalive, leak checks) would create and
    // drop resources on its own; the checks below expect a quiet pool.
    let upkeep = s.min_idle > 0
        || s.keepalive_interval.is_some()
        || s.leak_threshold.is_some()
        || s.upkeep_interval.is_some();
    if s.max_size > 4 || upkeep {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let _rt = rt.enter();
    let waker = Waker::from(Arc::new(CountingWaker::default()));
    let mut cx = Context::from_waker(&waker);
    let mut guards = Vec::new();
    for _ in 0..s.max_size {
        let mut fut = Box::pin(pool.acquire());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(guard)) => guards.push(guard),
            other => panic!("acquire on a pool with room: {:?}", other.map(|r| r.err())),
        }
    }
    assert_eq!(pool.manager().created.load(Ordering::SeqCst), s.max_size);
    assert_eq!(pool.try_acquire().err(), Some(TryAcquireError::Exhausted));
    let mut waiter = Box::pin(pool.acquire());
    assert!(
        waiter.as_mut().poll(&mut cx).is_pending(),
        "acquire on a full pool"
    );
    assert_eq!(pool.status().waiting, 1);
    assert_eq!(pool.try_acquire().err(), Some(TryAcquireError::Busy));
    let step = Duration::from_millis(1);
    rt.block_on(tokio::time::advance(step));
    let polled = waiter.as_mut().poll(&mut cx);
    match s.acquire_timeout {
        Some(t) if t <= step => assert!(
            matches!(
                polled,
                Poll::Ready(Err(Error::Timeout {
                    phase: TimeoutPhase::Wait,
                    ..
                }))
            ),
            "acquire_timeout {t:?} did not end a wait of {step:?}"
        ),
        Some(t) if t <= step * 2 => {}
        _ => assert!(polled.is_pending(), "a wait ended early"),
    }
    drop(waiter);
    drop(guards);
    let st = pool.status();
    // Lifetimes are jittered between 0.9 and 1.0 of `max_lifetime`.
    let expected = match s.max_lifetime {
        Some(l) if l <= step => Some(0),
        Some(l) if l.mul_f64(0.9) <= step => None,
        _ => Some(s.max_size),
    };
    assert!(
        st.waiting == 0 && st.size == st.idle && expected.is_none_or(|n| st.size == n),
        "after returning every resource (max_lifetime {:?}): {st:?}",
        s.max_lifetime
    );
}

// ----------------------------------------------------------------------------
// PostgreSQL connection settings
// ----------------------------------------------------------------------------

/// Words the `PG*` variables and connection strings accept, so that random
/// input reaches the paths behind valid values.
#[cfg(feature = "postgres")]
const PG_WORDS: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
    "postgres",
    "direct",
    "any",
    "read-write",
    "read-only",
    "random",
    "localhost",
    "/tmp",
    "127.0.0.1",
    "::1",
    "db1,db2",
    "10.0.0.1,10.0.0.2",
    "5432",
    "5432,5433",
    "0",
    "1",
    "-1",
    "65536",
    "99999999999999999999",
    ",",
    " ",
];

/// Feeds arbitrary connection strings and `PG*` variables to the
/// PostgreSQL adapter's configuration parsing. The first byte picks the
/// entry point: [`parse_config`](quickslot::postgres::parse_config) (and
/// [`PgManager::from_url`](quickslot::postgres::PgManager::from_url), which must
/// agree with it) on the rest as text, or
/// [`config_from_env_map`](quickslot::postgres::config_from_env_map) on
/// variables read from the rest. Panics on a panic, on an error that does
/// not name the offending variable and value, or on a configuration that
/// does not carry the values it was given.
#[cfg(feature = "postgres")]
pub fn run_pg_config(data: &[u8]) {
    use quickslot::postgres::{self, ConfigError, ENV_VARS};

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        let parsed = postgres::parse_config(&text);
        let manager = postgres::PgManager::from_url(&text);
        assert_eq!(
            parsed.is_ok(),
            manager.is_ok(),
            "parse_config and Manager::from_url disagree on {text:?}"
        );
        match parsed {
            Ok(config) => {
                let _ = format!("{config:?}");
            }
            Err(e) => {
                match &e {
                    ConfigError::Parse(_) => assert!(
                        std::error::Error::source(&e).is_some(),
                        "{e:?} has no source"
                    ),
                    // The adapter's own checks name the part at fault.
                    ConfigError::Invalid { part, reason } => {
                        assert!(!part.is_empty() && !reason.is_empty(), "{e:?}")
                    }
                    _ => panic!("{e:?} from a string"),
                }
                assert!(!e.to_string().is_empty());
            }
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let mut env: Vec<(&'static str, String)> = Vec::new();
    for &var in ENV_VARS {
        let value = match byte(&mut u) % 4 {
            0 | 1 => continue,
            2 => PG_WORDS[usize::from(byte(&mut u)) % PG_WORDS.len()].to_string(),
            _ => {
                let len = usize::from(byte(&mut u) % 24);
                let bytes = u.bytes(len.min(u.len())).unwrap_or_default();
                String::from_utf8_lossy(bytes).into_owned()
            }
        };
        env.push((var, value));
    }
    let get = |name: &str| {
        env.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.clone())
    };
    let set = |name: &str| get(name).filter(|v| !v.is_empty());
    match postgres::config_from_env_map(get) {
        Ok(config) => {
            assert!(
                !config.get_hosts().is_empty() || !config.get_hostaddrs().is_empty(),
                "no host and no address in {env:?}"
            );
            assert_eq!(config.get_user(), set("PGUSER").as_deref());
            assert_eq!(config.get_dbname(), set("PGDATABASE").as_deref());
            assert_eq!(
                config.get_password(),
                set("PGPASSWORD").as_deref().map(str::as_bytes)
            );
            assert_eq!(config.get_application_name(), set("PGAPPNAME").as_deref());
            if let Some(ports) = set("PGPORT") {
                assert_eq!(config.get_ports().len(), ports.split(',').count());
            }
            if let Some(timeout) = config.get_connect_timeout() {
                assert!(
                    *timeout >= Duration::from_secs(2),
                    "connect_timeout {timeout:?}"
                );
            }
        }
        Err(ConfigError::InvalidEnv { var, value, reason }) => {
            assert_eq!(
                set(var).as_deref(),
                Some(value.as_str()),
                "the error names {var}={value:?} ({reason}), not what was set: {env:?}"
            );
            let message = ConfigError::InvalidEnv {
                var,
                value: value.clone(),
                reason,
            }
            .to_string();
            assert!(message.contains(var), "{message}");
        }
        Err(e) => panic!("config_from_env_map returned {e:?}"),
    }
}
