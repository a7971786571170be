//! Deterministic tests of the pool core (paused clocks, scripted managers).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use quickslot::{BuildError, Error, Pool, Pooled, ReuseOrder, TimeoutPhase, TryAcquireError};
use quickslot_testkit::managers::{assert_counts, CreateStep, TestError, TestManager};
use tokio::time::Instant;

fn pool(max: usize, m: TestManager) -> Pool<TestManager> {
    Pool::builder(m).max_size(max).build().unwrap()
}

/// Creates take 100 ms; a 1 s acquire_timeout bounds abandoned ones.
fn slow_create_pool(max: usize) -> Pool<TestManager> {
    Pool::builder(TestManager::always(CreateStep::Slow(
        Duration::from_millis(100),
    )))
    .max_size(max)
    .acquire_timeout(Duration::from_secs(1))
    .build()
    .unwrap()
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type AcquireFut =
    Pin<Box<dyn Future<Output = Result<Pooled<TestManager>, Error<TestError>>> + Send>>;

/// An acquire future polled by hand.
struct Task {
    fut: Option<AcquireFut>,
    waker: Arc<CountingWaker>,
}

impl Task {
    fn new(pool: &Pool<TestManager>) -> Self {
        let pool = pool.clone();
        Self {
            fut: Some(Box::pin(async move { pool.acquire().await })),
            waker: Arc::default(),
        }
    }

    fn poll(&mut self) -> Poll<Result<Pooled<TestManager>, Error<TestError>>> {
        let waker = Waker::from(self.waker.clone());
        let out = self
            .fut
            .as_mut()
            .expect("not finished")
            .as_mut()
            .poll(&mut Context::from_waker(&waker));
        if out.is_ready() {
            self.fut = None;
        }
        out
    }

    fn wakes(&self) -> usize {
        self.waker.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn acquire_reuses_and_counts() {
    let p = pool(2, TestManager::new());
    let a = p.acquire().await.unwrap();
    let id = a.id;
    let s = p.status();
    assert_eq!((s.size, s.idle, s.in_use, s.created), (1, 0, 1, 1));
    drop(a);
    let s = p.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 1, 0));
    let b = p.acquire().await.unwrap();
    assert_eq!(b.id, id, "the idle resource is reused");
    assert_eq!(Pooled::info(&b).uses(), 1);
    assert_eq!(p.manager().recycles.load(Ordering::SeqCst), 1);
    let s = p.status();
    assert_eq!(s.acquired_immediately, 2);
    assert_eq!(s.acquired_after_wait, 0);
    drop(b);
    let ledger = p.manager().ledger.clone();
    drop(p);
    ledger.assert_all_dropped_once();
}

#[tokio::test]
async fn try_acquire_says_why() {
    let p = pool(1, TestManager::new());
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Empty);
    let a = p.acquire().await.unwrap();
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Exhausted);
    let mut waiting = Task::new(&p);
    assert!(waiting.poll().is_pending());
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Busy);
    drop(a);
    // Handed straight to the waiter, not to try_acquire.
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Exhausted);
    let b = match waiting.poll() {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("the waiter was granted"),
    };
    drop(b);
    let recycles = p.manager().recycles.load(Ordering::SeqCst);
    let c = p.try_acquire().unwrap();
    assert_eq!(
        p.manager().recycles.load(Ordering::SeqCst),
        recycles,
        "try_acquire skips recycle"
    );
    drop(c);
    p.close();
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Closed);
}

#[tokio::test(start_paused = true)]
async fn create_error_returns_at_once() {
    let p = pool(2, TestManager::always(CreateStep::Fail));
    let start = Instant::now();
    for _ in 0..3 {
        match p.acquire().await {
            Err(Error::Create(e)) => assert!(e.0.contains("failed")),
            other => panic!("expected a create error, got {other:?}"),
        }
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no waiting for the deadline"
    );
    let s = p.status();
    assert_eq!((s.size, s.create_errors), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn create_errors_reach_every_waiter_promptly() {
    let m = TestManager::new();
    let p = pool(1, m);
    let held = p.acquire().await.unwrap();
    let mut w1 = Task::new(&p);
    let mut w2 = Task::new(&p);
    assert!(w1.poll().is_pending());
    assert!(w2.poll().is_pending());
    // The held resource breaks; every later create fails.
    *p.manager().default.lock().unwrap() = CreateStep::Fail;
    p.manager().broken_on_return.store(true, Ordering::SeqCst);
    drop(held);
    assert!(matches!(w1.poll(), Poll::Ready(Err(Error::Create(_)))));
    assert!(matches!(w2.poll(), Poll::Ready(Err(Error::Create(_)))));
    let s = p.status();
    assert_eq!((s.size, s.waiting, s.discarded.broken), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_order_is_arrival_order() {
    // One resource: each grant happens only after the previous holder ran
    // and returned it, so the recorded order is the grant order.
    let p = pool(1, TestManager::new());
    let a = p.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..12 {
        let (pc, order) = (p.clone(), order.clone());
        handles.push(tokio::spawn(async move {
            let r = pc.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
            drop(r);
        }));
        // Let task i queue before task i + 1 starts.
        while p.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    // Newcomers that arrive while the line is long never jump it.
    assert_eq!(p.try_acquire().unwrap_err(), TryAcquireError::Busy);
    drop(a);
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..12).collect::<Vec<_>>());
    assert_eq!(p.status().acquired_after_wait, 12);
}

#[tokio::test]
async fn two_quick_releases_wake_two_waiters() {
    let p = pool(2, TestManager::new());
    let a = p.acquire().await.unwrap();
    let b = p.acquire().await.unwrap();
    let mut w1 = Task::new(&p);
    let mut w2 = Task::new(&p);
    assert!(w1.poll().is_pending());
    assert!(w2.poll().is_pending());
    drop(a);
    drop(b);
    assert_eq!((w1.wakes(), w2.wakes()), (1, 1), "both waiters woken");
    assert!(matches!(w1.poll(), Poll::Ready(Ok(_))));
    assert!(matches!(w2.poll(), Poll::Ready(Ok(_))));
}

#[tokio::test]
async fn granted_waiter_dropped_before_running_passes_it_on() {
    let p = pool(1, TestManager::new());
    let a = p.acquire().await.unwrap();
    let id = a.id;
    let mut w1 = Task::new(&p);
    let mut w2 = Task::new(&p);
    assert!(w1.poll().is_pending());
    assert!(w2.poll().is_pending());
    drop(a); // granted to w1
    assert_eq!(w1.wakes(), 1);
    drop(w1); // w1 never runs
    assert_eq!(w2.wakes(), 1, "the grant moved on to w2");
    let got = match w2.poll() {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("w2 should hold the resource"),
    };
    assert_eq!(got.id, id);
    let s = p.status();
    assert_eq!((s.size, s.waiting, s.in_use), (1, 0, 1));
}

#[tokio::test]
async fn cancelled_waiter_leaves_the_line() {
    let p = pool(1, TestManager::new());
    let a = p.acquire().await.unwrap();
    let mut w1 = Task::new(&p);
    assert!(w1.poll().is_pending());
    assert_eq!(p.status().waiting, 1);
    drop(w1);
    assert_eq!(p.status().waiting, 0);
    drop(a);
    assert_eq!(p.status().idle, 1, "no waiter left: the resource is idle");
    let _b = p.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn timeout_phases_and_last_error() {
    // Wait: everything is held.
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let held = p.acquire().await.unwrap();
    let start = Instant::now();
    match p.acquire().await {
        Err(Error::Timeout {
            phase: TimeoutPhase::Wait,
            last_error: None,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    // The nested acquire on a pool of one ends at its deadline too.
    assert!(p
        .acquire_timeout(Duration::from_millis(5))
        .await
        .unwrap_err()
        .is_timeout());
    drop(held);
    assert_eq!(p.status().timeouts, 2);

    // Create: the manager never answers.
    let p = Pool::builder(TestManager::always(CreateStep::Never))
        .max_size(1)
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let e = p.acquire().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                phase: TimeoutPhase::Create,
                ..
            }
        ),
        "{e:?}"
    );
    // The abandoned create goes on in the background, holding its slot, up
    // to its bound (here the acquire_timeout): then its slot is freed.
    let s = p.status();
    assert_eq!((s.size, s.creating), (1, 1), "{s:?}");
    tokio::time::sleep(Duration::from_millis(51)).await;
    let s = p.status();
    assert_eq!((s.size, s.creating), (0, 0), "given up at its bound: {s:?}");

    // Recycle fails, then the replacement create hangs: the timeout carries
    // the recycle error.
    let p = Pool::builder(TestManager::scripted(&[CreateStep::Ok, CreateStep::Never]))
        .max_size(1)
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    drop(p.acquire().await.unwrap());
    p.manager().fail_recycle.store(true, Ordering::SeqCst);
    match p.acquire().await {
        Err(Error::Timeout {
            phase: TimeoutPhase::Create,
            last_error: Some(e),
            ..
        }) => assert!(e.0.contains("recycle"), "{e}"),
        other => panic!("{other:?}"),
    }
    // (The hanging create goes on in the background up to its bound.)
    tokio::time::sleep(Duration::from_millis(51)).await;
    let s = p.status();
    assert_eq!(
        (s.size, s.recycle_failures, s.discarded.recycle_failed),
        (0, 1, 1)
    );
    p.manager().ledger.assert_all_dropped_once();

    // Recycle hangs past recycle_timeout: discarded, a fresh one is made.
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .recycle_timeout(Duration::from_millis(10))
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let first = p.acquire().await.unwrap().id;
    *p.manager().slow_recycle.lock().unwrap() = Some(Duration::from_secs(1));
    let second = p.acquire().await.unwrap();
    assert_ne!(second.id, first);
    assert_eq!(p.status().recycle_failures, 1);

    // Recycle hangs and only the acquire deadline applies: phase Recycle.
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    drop(p.acquire().await.unwrap());
    *p.manager().slow_recycle.lock().unwrap() = Some(Duration::from_secs(1));
    let e = p.acquire().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                phase: TimeoutPhase::Recycle,
                ..
            }
        ),
        "{e:?}"
    );
    let s = p.status();
    assert_eq!((s.size, s.discarded.cancelled), (0, 1));
}

/// One deadline spans a recycle that pends (and then passes its
/// `recycle_timeout`) and the create that replaces the resource: the
/// acquire ends 50 ms after it began, not 50 ms after the recycle gave up.
#[tokio::test(start_paused = true)]
async fn the_deadline_spans_a_pending_recycle_and_the_create_after_it() {
    let p = Pool::builder(TestManager::scripted(&[CreateStep::Ok, CreateStep::Never]))
        .max_size(1)
        .recycle_timeout(Duration::from_millis(10))
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    drop(p.acquire().await.unwrap());
    *p.manager().slow_recycle.lock().unwrap() = Some(Duration::from_secs(1));
    let start = Instant::now();
    match p.acquire().await {
        Err(Error::Timeout {
            phase: TimeoutPhase::Create,
            last_error: None,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    let s = p.status();
    assert_eq!((s.recycle_failures, s.discarded.recycle_failed), (1, 1));
    tokio::time::sleep(Duration::from_millis(51)).await;
    assert_eq!(p.status().size, 0);
    p.manager().ledger.assert_all_dropped_once();
}

/// A create whose acquire gave up (deadline passed, or future dropped) is
/// finished in the background and its resource serves the next acquire: no
/// second create starts for the same slot, so a slow server sees at most
/// `max_size` connection attempts.
#[tokio::test(start_paused = true)]
async fn abandoned_create_finishes_in_the_background() {
    let p = slow_create_pool(1);
    // Deadline passes mid-create.
    let e = p
        .acquire_timeout(Duration::from_millis(30))
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                phase: TimeoutPhase::Create,
                ..
            }
        ),
        "{e:?}"
    );
    // The next acquire waits for that create instead of starting another.
    let started = Instant::now();
    let got = p.acquire().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(70));
    assert_eq!(p.manager().creates.load(Ordering::SeqCst), 1);
    drop(got);

    // Future dropped mid-create: the resource ends idle.
    let p = slow_create_pool(2);
    let task = {
        let p = p.clone();
        tokio::spawn(async move { p.acquire().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!((p.status().size, p.status().creating), (1, 1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.creating, s.created),
        (1, 1, 0, 1),
        "{s:?}"
    );
    assert_counts(&s);
    let ledger = p.manager().ledger.clone();
    drop(p);
    ledger.assert_all_dropped_once();
}

/// Closing while an abandoned create finishes in the background: its
/// resource is dropped when it arrives, and `drain` waits for it.
#[tokio::test(start_paused = true)]
async fn drain_waits_for_a_background_create() {
    let p = slow_create_pool(2);
    let e = p
        .acquire_timeout(Duration::from_millis(30))
        .await
        .map(drop)
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let started = Instant::now();
    let report = p.drain(Duration::from_secs(5)).await;
    assert_eq!(
        (report.checked_out, report.returned, report.outstanding),
        (1, 1, 0)
    );
    assert_eq!(started.elapsed(), Duration::from_millis(70));
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.creating, s.created),
        (0, 0, 0, 1),
        "{s:?}"
    );
    let ledger = p.manager().ledger.clone();
    assert_eq!((ledger.created(), ledger.dropped()), (1, 1));
    drop(p);
    ledger.assert_all_dropped_once();
}

/// Without any timeout there is no bound for a background create: an
/// abandoned create is dropped and its slot freed at once.
#[tokio::test(start_paused = true)]
async fn abandoned_create_without_a_bound_is_dropped() {
    let p = Pool::builder(TestManager::always(CreateStep::Never))
        .max_size(1)
        .acquire_timeout(None)
        .build()
        .unwrap();
    let task = {
        let p = p.clone();
        tokio::spawn(async move { p.acquire().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(p.status().creating, 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let s = p.status();
    assert_eq!((s.size, s.creating), (0, 0), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn create_timeout_is_reported_at_once() {
    let p = Pool::builder(TestManager::always(CreateStep::Slow(Duration::from_secs(
        5,
    ))))
    .max_size(1)
    .create_timeout(Duration::from_millis(20))
    .acquire_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let start = Instant::now();
    let e = p.acquire().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                phase: TimeoutPhase::Create,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert_eq!(p.status().create_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn cancellation_at_every_await_point_loses_nothing() {
    for slow in [false, true] {
        let m = TestManager::always(if slow {
            CreateStep::Slow(Duration::from_micros(300))
        } else {
            CreateStep::Ok
        });
        *m.slow_recycle.lock().unwrap() = Some(Duration::from_micros(200));
        let p = Pool::builder(m)
            .max_size(3)
            .acquire_timeout(None)
            .build()
            .unwrap();
        let ledger = p.manager().ledger.clone();
        let mut tasks = Vec::new();
        for i in 0..40u64 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let t = Duration::from_micros(i * 37 % 900);
                if let Ok(Ok(r)) = tokio::time::timeout(t, p.acquire()).await {
                    tokio::time::sleep(Duration::from_micros(i % 5 * 100)).await;
                    drop(r);
                }
            }));
        }
        // Abort a few outright, at whatever point they reached.
        for (i, t) in tasks.iter().enumerate() {
            if i % 7 == 3 {
                t.abort();
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let s = p.status();
        assert_counts(&s);
        assert_eq!((s.in_use, s.waiting, s.creating), (0, 0, 0), "{s:?}");
        assert!(s.size <= 3);
        assert_eq!(s.size as u64, ledger.live(), "size matches live resources");
        drop(p);
        ledger.assert_all_dropped_once();
    }
}

#[tokio::test]
async fn close_wakes_waiters_and_drops_everything() {
    let p = pool(2, TestManager::new());
    let ledger = p.manager().ledger.clone();
    // Idle resources are dropped at close.
    let (a, b) = (p.acquire().await.unwrap(), p.acquire().await.unwrap());
    drop(b);
    let held = p.acquire().await.unwrap();
    drop(a);
    assert_eq!(p.status().idle, 1);
    let mut w1 = Task::new(&p);
    let mut w2 = Task::new(&p);
    let _also_held = match w1.poll() {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("an idle resource was there"),
    };
    assert!(w2.poll().is_pending());
    assert_eq!(p.status().waiting, 1);
    p.close();
    assert!(p.is_closed());
    assert!(matches!(w2.poll(), Poll::Ready(Err(Error::Closed))));
    assert!(matches!(p.acquire().await, Err(Error::Closed)));
    assert_eq!(ledger.live(), 2, "both are still held");
    drop(held);
    assert_eq!(ledger.live(), 1, "a return after close is dropped");
    drop(_also_held);
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.waiting, s.discarded.closed),
        (0, 0, 0, 2)
    );
    ledger.assert_all_dropped_once();
    p.close(); // idempotent

    let p = pool(2, TestManager::new());
    let (a, b) = (p.acquire().await.unwrap(), p.acquire().await.unwrap());
    drop((a, b));
    assert_eq!(p.manager().ledger.live(), 2);
    p.close();
    assert_eq!(
        p.manager().ledger.live(),
        0,
        "idle resources dropped at close"
    );
    assert_eq!(p.status().size, 0);
}

#[tokio::test]
async fn detach_and_discard_free_the_slot() {
    let p = pool(1, TestManager::new());
    let r = p.acquire().await.unwrap();
    let mut w = Task::new(&p);
    assert!(w.poll().is_pending());
    let res = Pooled::detach(r);
    // The waiter got the freed slot and creates its own resource.
    let fresh = match w.poll() {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("the freed slot should go to the waiter"),
    };
    assert_ne!(fresh.id, res.id);
    Pooled::discard(fresh);
    let s = p.status();
    assert_eq!(
        (s.size, s.discarded.detached, s.discarded.broken),
        (0, 1, 1)
    );
    drop(res);
    p.manager().ledger.assert_all_dropped_once();
}

#[tokio::test]
async fn broken_on_return_lets_a_waiter_create() {
    let p = pool(1, TestManager::new());
    let mut r = p.acquire().await.unwrap();
    let old = r.id;
    let mut w = Task::new(&p);
    assert!(w.poll().is_pending());
    r.broken = true;
    drop(r);
    let fresh = match w.poll() {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("waiter should create"),
    };
    assert_ne!(fresh.id, old);
    assert_eq!(p.status().discarded.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_and_idle_timeout() {
    let p = Pool::builder(TestManager::new())
        .max_size(2)
        .max_lifetime(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let a = p.acquire().await.unwrap();
    let a_id = a.id;
    assert!(Pooled::info(&a).last_returned().is_none());
    drop(a);
    let a = p.acquire().await.unwrap();
    assert!(
        Pooled::info(&a).last_returned().is_some(),
        "idle time tracked"
    );
    assert_eq!(a.id, a_id);
    drop(a);
    // Idle too long: replaced on checkout.
    tokio::time::advance(Duration::from_secs(11)).await;
    let b = p.acquire().await.unwrap();
    assert_ne!(b.id, a_id);
    assert_eq!(p.status().discarded.expired, 1);
    // Past its lifetime while checked out: dropped on return.
    tokio::time::advance(Duration::from_secs(61)).await;
    drop(b);
    let s = p.status();
    assert_eq!((s.size, s.idle, s.discarded.expired), (0, 0, 2));
    p.manager().ledger.assert_all_dropped_once();
}

#[tokio::test]
async fn retain_drops_what_it_rejects() {
    let p = pool(4, TestManager::new());
    let all: Vec<_> = futures::future::join_all((0..4).map(|_| p.acquire())).await;
    drop(all);
    assert_eq!(p.status().idle, 4);
    let removed = p.retain(|r, info| {
        assert_eq!(info.uses(), 1);
        r.id % 2 == 0
    });
    assert_eq!(removed, 2);
    let s = p.status();
    assert_eq!((s.size, s.idle, s.discarded.retain_rejected), (2, 2, 2));
    let mut ids: Vec<_> = std::iter::from_fn(|| p.try_acquire().ok())
        .map(|r| {
            let id = r.id;
            Pooled::detach(r);
            id
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 2]);
}

#[tokio::test]
async fn lifo_reuses_the_last_returned() {
    let p = Pool::builder(TestManager::new())
        .max_size(3)
        .reuse_order(ReuseOrder::Lifo)
        .build()
        .unwrap();
    let (a, b, c) = (
        p.acquire().await.unwrap(),
        p.acquire().await.unwrap(),
        p.acquire().await.unwrap(),
    );
    let ids = [a.id, b.id, c.id];
    drop(a);
    drop(b);
    drop(c);
    assert_eq!(p.acquire().await.unwrap().id, ids[2]);
    let fifo = pool(3, TestManager::new());
    let (a, b) = (fifo.acquire().await.unwrap(), fifo.acquire().await.unwrap());
    let first = a.id;
    drop(a);
    drop(b);
    assert_eq!(fifo.acquire().await.unwrap().id, first);
}

#[test]
fn build_rejects_bad_settings() {
    let e = |b: quickslot::Builder<TestManager>| b.build().unwrap_err();
    let b = || Pool::builder(TestManager::new());
    assert_eq!(e(b().max_size(0)), BuildError::ZeroMaxSize);
    assert!(matches!(
        e(b().max_size(usize::MAX)),
        BuildError::MaxSizeTooLarge { .. }
    ));
    assert_eq!(
        e(b().create_timeout(Duration::ZERO)),
        BuildError::ZeroDuration {
            setting: "create_timeout"
        }
    );
    let err = e(b()
        .acquire_timeout(Duration::from_secs(1))
        .recycle_timeout(Duration::from_secs(2)));
    assert!(matches!(
        err,
        BuildError::Conflict {
            setting: "recycle_timeout",
            other: "acquire_timeout",
            ..
        }
    ));
    assert!(err.to_string().contains("recycle_timeout"));
    let err = e(b()
        .idle_timeout(Duration::from_secs(20))
        .max_lifetime(Duration::from_secs(10)));
    assert!(matches!(
        err,
        BuildError::Conflict {
            setting: "idle_timeout",
            ..
        }
    ));
    // No runtime needed, nothing created.
    let p = b().acquire_timeout(None).build().unwrap();
    assert_eq!(p.status().size, 0);
    assert_eq!(p.manager().creates.load(Ordering::SeqCst), 0);
}

#[test]
fn pooled_drops_outside_and_after_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p = pool(2, TestManager::new());
    let (a, b) = rt.block_on(async { (p.acquire().await.unwrap(), p.acquire().await.unwrap()) });
    drop(a); // outside any runtime
    drop(rt);
    drop(b); // after the runtime is gone
    assert_eq!(p.status().idle, 2);
}

/// Deadline timers are reused across waits (see `src/timer.rs`): a reused
/// timer set for an earlier instant must not end a later, longer wait early,
/// and one set for a later instant must not let a shorter wait overrun.
#[tokio::test(start_paused = true)]
async fn reused_timers_keep_each_deadline() {
    let p = pool(1, TestManager::new());
    let held = p.acquire().await.unwrap();
    // Leaves a timer armed for now + 100 ms in the pool's cache.
    let short = p.clone();
    let waiter = tokio::spawn(async move {
        short
            .acquire_timeout(Duration::from_millis(100))
            .await
            .map(drop)
    });
    tokio::task::yield_now().await;
    drop(held);
    waiter.await.unwrap().unwrap();

    // A 10 s wait reuses it: woken at 100 ms, it must go on waiting.
    let held = p.acquire().await.unwrap();
    let started = Instant::now();
    let err = p
        .acquire_timeout(Duration::from_secs(10))
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::Wait,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));

    // Now the cached timer is set far out (fired, then reused at 10 s); a
    // 50 ms wait must end at 50 ms.
    let long = p.clone();
    let waiter = tokio::spawn(async move {
        long.acquire_timeout(Duration::from_secs(3600))
            .await
            .map(drop)
    });
    tokio::task::yield_now().await;
    let started = Instant::now();
    let err = p
        .acquire_timeout(Duration::from_millis(50))
        .await
        .map(drop)
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    drop(held);
    waiter.await.unwrap().unwrap();
    assert_counts(&p.status());
    assert_eq!(p.status().timeouts, 2);
}

/// A pool used from one runtime and then from another (the runtime of
/// each `#[tokio::test]`, say): timers cached on the first, which is gone,
/// are never polled on the second, and deadlines still hold.
#[test]
fn timers_are_not_reused_across_runtimes() {
    let p = pool(1, TestManager::new());
    for round in 0..3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let held = p.acquire().await.unwrap();
            for _ in 0..4 {
                let err = p
                    .acquire_timeout(Duration::from_millis(5))
                    .await
                    .map(drop)
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Timeout { .. }),
                    "round {round}: {err:?}"
                );
            }
            drop(held);
        });
        drop(rt);
    }
    assert_eq!(p.status().timeouts, 12);
    assert_counts(&p.status());
}

#[test]
fn runtime_shutdown_with_waiters_and_holders() {
    let p = pool(1, TestManager::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let held = rt.block_on(p.acquire()).unwrap();
    for _ in 0..4 {
        let p = p.clone();
        rt.spawn(async move {
            let _r = p.acquire().await;
            std::future::pending::<()>().await;
        });
    }
    rt.block_on(async {
        while p.status().waiting < 4 {
            tokio::task::yield_now().await;
        }
    });
    drop(rt); // drops every task: waiters leave the line
    assert_eq!(p.status().waiting, 0);
    drop(held);
    assert_eq!(p.status().idle, 1);
    let ledger = p.manager().ledger.clone();
    drop(p);
    ledger.assert_all_dropped_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_with_random_deadlines() {
    let p = Pool::builder(TestManager::new())
        .max_size(4)
        .acquire_timeout(None)
        .build()
        .unwrap();
    let ledger = p.manager().ledger.clone();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..2_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let deadline = Duration::from_micros(x % 50);
                if let Ok(Ok(r)) = tokio::time::timeout(deadline, p.acquire()).await {
                    if x % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    if x % 97 == 0 {
                        Pooled::discard(r);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = p.status();
    assert_counts(&s);
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert_eq!(s.size as u64, ledger.live());
    assert!(ledger.created() >= 1);
    drop(p);
    ledger.assert_all_dropped_once();
}

#[test]
fn bounds() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>() {}
    send_sync_static::<Pool<TestManager>>();
    send_sync_static::<Pooled<TestManager>>();
    send_sync_static::<Error<TestError>>();
    send_sync_static::<quickslot::Status>();
    fn acquire_future_is_send(p: &Pool<TestManager>) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&p.acquire());
        is_send(&p.acquire_timeout(Duration::from_secs(1)));
    }
    let _ = acquire_future_is_send;
    send_static::<quickslot::Builder<TestManager>>();
}
