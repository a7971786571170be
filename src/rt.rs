//! The runtime: the clock, timers, background tasks and blocking waits. The
//! only module that names Tokio, async-io or smol; everything else asks it.
//!
//! Which runtime serves a call depends on the crate features and, with both
//! on, on where the call happens:
//!
//! | features | timers and tasks | blocking acquires |
//! |---|---|---|
//! | `tokio` | the current Tokio runtime (a timer outside one panics, as Tokio's do; a task outside one is not started) | the current runtime's handle, else a runtime of the crate's own |
//! | `smol` | `async_io::Timer`; tasks on smol's global executor | `async_io::block_on` |
//! | both | Tokio inside a Tokio runtime, smol elsewhere | as `tokio` (below) |
//! | neither | none: [`Builder::build`](crate::Builder::build) refuses every setting that needs them | a thread-parking `block_on` of this module's own |
//!
//! With both features, a blocking acquire on a thread without a Tokio
//! runtime still goes to the crate's own Tokio runtime rather than to
//! `async_io::block_on`: that runtime drives managers written for Tokio
//! (the adapters, anything that calls `tokio::time` or `tokio::net`) and
//! runtime-agnostic or async-io ones alike (async-io drives its timers and
//! I/O from its own thread under any executor), while `async_io::block_on`
//! would make every Tokio manager panic. So turning `smol` on beside
//! `tokio` never breaks what worked with `tokio` alone.
//!
//! For the same reason, with `tokio` on, [`start_tasks_at_build`] is false
//! outside a Tokio runtime: a pool built before its runtime starts its
//! upkeep at its first create or `warm_up`, on the runtime found there, as
//! with `tokio` alone, instead of on smol behind a Tokio application's back.
//! And a create abandoned by its acquire finishes on the runtime it started
//! on ([`TaskHome`]): a future begun on Tokio may hold Tokio timers or
//! sockets, which smol cannot drive (dropped after its Tokio runtime is
//! gone, it is dropped, as with `tokio` alone).
//!
//! Each runtime is a submodule with the same items; a disabled one has the
//! same signatures over an uninhabited type ([`Never`]), so the code here
//! matches on every runtime in every build and the compiler drops the arms
//! that cannot happen (an enum variant holding only uninhabited zero-sized
//! fields takes no space and no tag).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The pool's clock: [`ResourceInfo::created_at`](crate::ResourceInfo::created_at),
/// [`ResourceInfo::last_returned`](crate::ResourceInfo::last_returned) and
/// every deadline.
///
/// With the `tokio` feature it is [`tokio::time::Instant`], so a paused
/// Tokio clock (`tokio::time::pause`, `start_paused`) moves the pool's
/// deadlines, lifetimes and idle times too, and it converts to and from
/// [`std::time::Instant`] with `into_std` and `from_std`. Without it, it is
/// [`std::time::Instant`] (async-io's timers use that clock).
#[cfg(feature = "tokio")]
pub use tokio::time::Instant;

/// The pool's clock: [`ResourceInfo::created_at`](crate::ResourceInfo::created_at),
/// [`ResourceInfo::last_returned`](crate::ResourceInfo::last_returned) and
/// every deadline.
///
/// With the `tokio` feature it is `tokio::time::Instant`, so a paused Tokio
/// clock moves the pool's deadlines, lifetimes and idle times too. Without
/// it, as in this build, it is [`std::time::Instant`].
#[cfg(not(feature = "tokio"))]
pub use std::time::Instant;

/// Whether this build has timers and background tasks (a runtime feature).
pub(crate) const HAS_RUNTIME: bool = cfg!(any(feature = "tokio", feature = "smol"));

/// The current time on the pool's clock.
#[inline]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A type with no values: a disabled runtime's stand-in.
#[cfg_attr(all(feature = "tokio", feature = "smol"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Never {}

impl Future for Never {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match *self {}
    }
}

/// The runtime a timer made here and now belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Here {
    /// A Tokio runtime, by id.
    Tokio(tokio_rt::Id),
    /// smol / async-io, which serve any thread.
    Smol(smol_rt::Present),
}

impl Here {
    /// Where this thread's timers go.
    ///
    /// # Panics
    ///
    /// With `tokio` alone, outside a Tokio runtime (Tokio's timers panic
    /// there). Without a runtime feature, always: `Builder::build` refuses
    /// every setting that arms a timer, and the methods that take a
    /// deadline need a runtime feature.
    pub(crate) fn current() -> Self {
        if let Some(id) = tokio_rt::current() {
            return Here::Tokio(id);
        }
        if let Some(present) = smol_rt::PRESENT {
            return Here::Smol(present);
        }
        if cfg!(feature = "tokio") {
            // The panic Tokio's own timer gives outside a runtime.
            tokio_rt::require();
        }
        unreachable!(
            "quickslot: a timer was armed in a build without a runtime feature (tokio or smol)"
        )
    }
}

pin_project_lite::pin_project! {
    /// A one-shot timer, bound to the runtime it was made on.
    #[project = SleepProj]
    #[project_ref = SleepRef]
    #[derive(Debug)]
    pub(crate) enum Sleep {
        Tokio { runtime: tokio_rt::Id, #[pin] sleep: tokio_rt::Sleep },
        Smol { #[pin] timer: smol_rt::Sleep },
    }
}

impl Sleep {
    /// A timer that fires at `at`, on the runtime `here`.
    pub(crate) fn new(here: Here, at: Instant) -> Self {
        match here {
            Here::Tokio(runtime) => tokio_rt::sleep_until(runtime, at),
            Here::Smol(present) => smol_rt::sleep_until(present, at),
        }
    }

    /// Whether a cache may keep this timer for reuse on the same runtime.
    /// A Tokio timer stays registered in its wheel, and moving it later is
    /// cheap (see `timer`); an async-io timer is not worth keeping.
    pub(crate) fn reusable(&self) -> bool {
        matches!(self, Sleep::Tokio { .. })
    }

    /// Whether this timer belongs to the runtime `here`.
    pub(crate) fn belongs_to(&self, here: Here) -> bool {
        match (self, here) {
            (Sleep::Tokio { runtime, .. }, Here::Tokio(now)) => *runtime == now,
            _ => false,
        }
    }

    /// When it fires.
    pub(crate) fn deadline(&self) -> Instant {
        match self {
            Sleep::Tokio { sleep, .. } => sleep.deadline(),
            Sleep::Smol { timer } => timer.deadline(),
        }
    }

    /// Whether it fired.
    pub(crate) fn is_elapsed(&self) -> bool {
        match self {
            Sleep::Tokio { sleep, .. } => sleep.is_elapsed(),
            Sleep::Smol { timer } => timer.deadline() <= now(),
        }
    }

    /// Moves it to fire at `at` instead.
    pub(crate) fn reset(self: Pin<&mut Self>, at: Instant) {
        match self.project() {
            SleepProj::Tokio { sleep, .. } => tokio_rt::reset(sleep, at),
            SleepProj::Smol { timer } => timer.get_mut().reset(at),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project() {
            SleepProj::Tokio { sleep, .. } => sleep.poll(cx),
            SleepProj::Smol { timer } => timer.poll(cx),
        }
    }
}

/// Runs `fut` until it completes (`Some`) or `at` passes (`None`, and `fut`
/// is dropped), on this thread's timer (see [`Here::current`]).
// Without a runtime feature, `Here` has no values: all after it is dead.
#[cfg_attr(
    not(any(feature = "tokio", feature = "smol")),
    allow(unreachable_code, unused_variables)
)]
pub(crate) async fn timeout_at<F: Future>(at: Instant, fut: F) -> Option<F::Output> {
    match Here::current() {
        Here::Tokio(runtime) => tokio_rt::timeout_at(runtime, at, fut).await,
        Here::Smol(present) => smol_rt::timeout_at(present, at, fut).await,
    }
}

/// [`timeout_at`] `timeout` from now.
pub(crate) async fn timeout<F: Future>(timeout: Duration, fut: F) -> Option<F::Output> {
    timeout_at(after(now(), timeout), fut).await
}

/// `start + timeout`, or about 30 years on for a timeout too large to add
/// (as `tokio::time::sleep` does).
pub(crate) fn after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365 * 30))
}

/// Whether `Builder::build` starts the pool's background task itself (else
/// its first create or `warm_up` does): with `smol` alone always, with
/// `tokio` only inside a Tokio runtime (see the module docs).
pub(crate) fn start_tasks_at_build() -> bool {
    if cfg!(feature = "tokio") {
        tokio_rt::current().is_some()
    } else {
        smol_rt::PRESENT.is_some()
    }
}

/// Whether [`spawn`] would start a task here.
// Its callers (upkeep, background creates) are not built under loom.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn can_spawn() -> bool {
    tokio_rt::current().is_some() || smol_rt::PRESENT.is_some()
}

/// Starts `task` in the background, detached: on the current Tokio
/// runtime, else on smol's global executor. `false` (and `task` dropped)
/// where there is neither: with `tokio` alone outside a runtime, or without
/// a runtime feature.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn spawn<F>(task: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    TaskHome::here().spawn(task)
}

/// Where a future started here belongs, for a task that finishes it later
/// (an abandoned create): a future started on Tokio may hold Tokio timers
/// or sockets, which only a Tokio runtime drives, and one started off Tokio
/// belongs on smol.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TaskHome {
    /// Tokio: the task goes to the Tokio runtime current when it is
    /// spawned, if any (as with `tokio` alone).
    Tokio,
    /// smol's global executor.
    Smol(smol_rt::Present),
}

impl TaskHome {
    /// The home of a future started on this thread now: Tokio inside a
    /// Tokio runtime, else smol if it is in this build, else Tokio (whose
    /// spawn then finds a runtime or not when it is asked).
    pub(crate) fn here() -> Self {
        // smol first: with `tokio` alone this is a constant, and a create
        // (which records its home) asks no runtime handle for it.
        match smol_rt::PRESENT {
            Some(present) if tokio_rt::current().is_none() => TaskHome::Smol(present),
            _ => TaskHome::Tokio,
        }
    }

    /// Starts `task` there, detached; `false` (and `task` dropped) when
    /// it is Tokio's and no Tokio runtime is current.
    pub(crate) fn spawn<F>(self, task: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            TaskHome::Tokio => tokio_rt::spawn(task),
            TaskHome::Smol(present) => {
                smol_rt::spawn(present, task);
                true
            }
        }
    }
}

/// Drives `fut` to completion on the calling thread, for blocking acquires.
///
/// It is polled once in place first, with a no-op waker (inside the Tokio
/// runtime's context when blocking on one, so that a wait can arm a
/// timer): a future ready at once returns without any blocking machinery.
/// A future left pending there must accept being polled again with another
/// waker, as every future must.
///
/// # Panics
///
/// With `tokio`, when called on a thread that drives async tasks (see
/// `tokio_rt::block_on`).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    if cfg!(feature = "tokio") {
        return tokio_rt::block_on(fut);
    }
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return out;
    }
    match smol_rt::PRESENT {
        Some(present) => smol_rt::block_on(present, fut),
        None => park::block_on(fut),
    }
}

#[cfg(feature = "tokio")]
mod tokio_rt {
    //! Tokio: timers on the current runtime's wheel, tasks on it, and
    //! blocking on its handle or on a runtime of the crate's own.

    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::sync::OnceLock;
    use std::task::{Context, Poll, Waker};

    use tokio::runtime::Handle;

    use super::Instant;

    pub(super) use tokio::runtime::Id;
    pub(super) use tokio::time::Sleep;

    /// The current runtime, if this thread is in one.
    #[inline]
    pub(super) fn current() -> Option<Id> {
        Handle::try_current().ok().map(|handle| handle.id())
    }

    /// Panics as Tokio does outside a runtime.
    pub(super) fn require() {
        let _ = Handle::current();
    }

    pub(super) fn sleep_until(runtime: Id, at: Instant) -> super::Sleep {
        super::Sleep::Tokio {
            runtime,
            sleep: tokio::time::sleep_until(at),
        }
    }

    pub(super) fn reset(sleep: Pin<&mut Sleep>, at: Instant) {
        sleep.reset(at);
    }

    pub(super) async fn timeout_at<F: Future>(_: Id, at: Instant, fut: F) -> Option<F::Output> {
        tokio::time::timeout_at(at, fut).await.ok()
    }

    pub(super) fn spawn<F>(task: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match Handle::try_current() {
            Ok(runtime) => {
                drop(runtime.spawn(task));
                true
            }
            Err(_) => false,
        }
    }

    /// The handle of the crate's own runtime for blocking acquires on
    /// threads without one.
    static FALLBACK: OnceLock<Handle> = OnceLock::new();

    /// The handle to block on: the current runtime's, else the fallback's.
    fn handle() -> Handle {
        if let Ok(handle) = Handle::try_current() {
            return handle;
        }
        FALLBACK.get_or_init(start_fallback).clone()
    }

    /// Starts the fallback runtime: a current-thread runtime drives its
    /// timers and I/O only while a thread is in `Runtime::block_on`, so one
    /// thread stays there for the life of the process, and callers block on
    /// clones of its handle.
    #[cold]
    fn start_fallback() -> Handle {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("quickslot: could not start the runtime for blocking acquires");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("quickslot-blocking".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("quickslot: could not start the thread for blocking acquires");
        handle
    }

    /// Panics with a clear message when called on a thread that drives
    /// async tasks (blocking there would stall every task on it). Debug
    /// builds only; in release builds Tokio's own check in `block_on`
    /// panics there.
    #[cfg(debug_assertions)]
    fn check_not_async(handle: &Handle) {
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle.block_on(async {});
        }));
        if probe.is_err() {
            panic!(
                "quickslot: a blocking acquire was called from an async task on a runtime \
                 worker thread; use `acquire().await` there, or call it inside \
                 `tokio::task::spawn_blocking`"
            );
        }
    }

    /// Polls once inside the runtime's context (a wait arms a timer), then
    /// blocks in `Handle::block_on`.
    pub(super) fn block_on<F: Future>(fut: F) -> F::Output {
        let handle = handle();
        let entered = handle.enter();
        let mut fut = pin!(fut);
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return out;
        }
        drop(entered);
        #[cfg(debug_assertions)]
        check_not_async(&handle);
        handle.block_on(fut)
    }
}

#[cfg(not(feature = "tokio"))]
mod tokio_rt {
    //! Tokio is not in this build: no runtime is ever current.

    use std::future::Future;
    use std::pin::Pin;

    use super::{Instant, Never};

    pub(super) type Id = Never;
    pub(super) type Sleep = Never;

    /// The methods `super::Sleep` calls on a Tokio timer.
    impl Never {
        pub(super) fn deadline(&self) -> Instant {
            match *self {}
        }

        pub(super) fn is_elapsed(&self) -> bool {
            match *self {}
        }
    }

    #[inline]
    pub(super) fn current() -> Option<Id> {
        None
    }

    pub(super) fn require() {}

    pub(super) fn sleep_until(never: Id, _: Instant) -> super::Sleep {
        match never {}
    }

    pub(super) fn reset(sleep: Pin<&mut Sleep>, _: Instant) {
        match *sleep {}
    }

    pub(super) async fn timeout_at<F: Future>(never: Id, _: Instant, _: F) -> Option<F::Output> {
        match never {}
    }

    pub(super) fn spawn<F: Future<Output = ()> + Send + 'static>(_: F) -> bool {
        false
    }

    pub(super) fn block_on<F: Future>(_: F) -> F::Output {
        unreachable!("only called with the tokio feature")
    }
}

#[cfg(feature = "smol")]
mod smol_rt {
    //! smol / async-io: `async_io::Timer`, smol's global executor and
    //! `async_io::block_on`. All three serve any thread under any executor:
    //! async-io drives timers from its own thread when no `block_on` of its
    //! does.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::Instant;

    /// Proof that smol is in this build.
    pub(super) type Present = ();

    pub(super) const PRESENT: Option<Present> = Some(());

    /// An async-io timer and its deadline on the pool's clock. A fresh one
    /// per wait: registering it takes the reactor's lock, which is cheap
    /// next to a wait.
    #[derive(Debug)]
    pub(super) struct Sleep {
        timer: async_io::Timer,
        deadline: Instant,
    }

    pub(super) fn sleep_until(present: Present, at: Instant) -> super::Sleep {
        super::Sleep::Smol {
            timer: Sleep::new(present, at),
        }
    }

    /// Races `fut` against a fresh timer.
    pub(super) async fn timeout_at<F: Future>(
        present: Present,
        at: Instant,
        fut: F,
    ) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let mut timer = Sleep::new(present, at);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            Pin::new(&mut timer).poll(cx).map(|()| None)
        })
        .await
    }

    impl Sleep {
        fn new((): Present, at: Instant) -> Self {
            Self {
                timer: async_io::Timer::at(to_std(at)),
                deadline: at,
            }
        }

        pub(super) fn deadline(&self) -> Instant {
            self.deadline
        }

        pub(super) fn reset(&mut self, at: Instant) {
            self.timer.set_at(to_std(at));
            self.deadline = at;
        }
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            Pin::new(&mut self.timer).poll(cx).map(drop)
        }
    }

    /// The pool's clock is Tokio's with the `tokio` feature, which reads
    /// std's outside a (paused) Tokio runtime, where smol timers are used.
    #[cfg(feature = "tokio")]
    fn to_std(at: Instant) -> std::time::Instant {
        at.into_std()
    }

    #[cfg(not(feature = "tokio"))]
    fn to_std(at: Instant) -> std::time::Instant {
        at
    }

    /// On smol's global executor, detached. smol's rather than a bare
    /// `async_executor::Executor` of our own: the global executor runs its
    /// tasks on threads of its own (`SMOL_THREADS`, one by default), so the
    /// pool's background work progresses whatever executor the application
    /// polls its own futures with (a local executor, `block_on`), and an
    /// application on smol shares those threads instead of gaining a second
    /// set.
    pub(super) fn spawn<F>((): Present, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(task).detach();
    }

    pub(super) fn block_on<F: Future>((): Present, fut: Pin<&mut F>) -> F::Output {
        async_io::block_on(fut)
    }
}

#[cfg(not(feature = "smol"))]
mod smol_rt {
    //! smol is not in this build.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::{Instant, Never};

    pub(super) type Present = Never;

    pub(super) const PRESENT: Option<Present> = None;

    #[derive(Debug)]
    pub(super) enum Sleep {}

    pub(super) fn sleep_until(never: Present, _: Instant) -> super::Sleep {
        match never {}
    }

    pub(super) async fn timeout_at<F: Future>(
        never: Present,
        _: Instant,
        _: F,
    ) -> Option<F::Output> {
        match never {}
    }

    impl Sleep {
        pub(super) fn deadline(&self) -> Instant {
            match *self {}
        }

        pub(super) fn reset(&mut self, _: Instant) {
            match *self {}
        }
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            match *self {}
        }
    }

    pub(super) fn spawn<F: Future<Output = ()> + Send + 'static>(never: Present, _: F) {
        match never {}
    }

    pub(super) fn block_on<F: Future>(never: Present, _: Pin<&mut F>) -> F::Output {
        match never {}
    }
}

mod park {
    //! A minimal `block_on` for builds without a runtime feature: poll, and
    //! park the thread until the waker unparks it. Nothing the pool does
    //! then needs a timer or a reactor: the only thing a blocking acquire
    //! waits for is another thread's release, which wakes it.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    use crate::sync::StdArc;

    /// Wakes the blocked thread. `unpark` before `park` makes that `park`
    /// return at once, so a wake between a poll and the park is not lost.
    struct Unpark(Thread);

    impl Wake for Unpark {
        fn wake(self: StdArc<Self>) {
            self.0.unpark();
        }

        fn wake_by_ref(self: &StdArc<Self>) {
            self.0.unpark();
        }
    }

    pub(super) fn block_on<F: Future>(mut fut: Pin<&mut F>) -> F::Output {
        let waker = Waker::from(StdArc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            // A spurious return only polls again.
            thread::park();
        }
    }
}
