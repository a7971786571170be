//! Upkeep and operations: min_idle, reaper, keepalive, resize, leak
//! detection, hooks, drain. Paused clocks, scripted managers.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quickslot::{Error, Hook, HookError, HookKind, Pool, Pooled, ReuseOrder};
use quickslot_testkit::managers::{assert_counts, CreateStep, Res, TestManager};
use tokio::time::{sleep, Instant};

const SEC: Duration = Duration::from_secs(1);

/// Lets the upkeep task run its due rounds.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_kept_in_the_background() {
    let p = Pool::builder(TestManager::new())
        .max_size(8)
        .min_idle(3)
        .build()
        .unwrap();
    settle().await;
    assert_eq!(p.status().idle, 3, "filled by the task started in build");
    // Taking them out makes the task top up.
    let a = p.acquire().await.unwrap();
    let b = p.acquire().await.unwrap();
    sleep(Duration::from_secs(31)).await;
    let s = p.status();
    assert_eq!((s.idle, s.in_use), (3, 2));
    assert_counts(&s);
    // Discarding one wakes the task at once.
    Pooled::discard(a);
    drop(b);
    settle().await;
    assert!(p.status().idle >= 3);
}

#[tokio::test(start_paused = true)]
async fn warm_up_fills_and_reports_the_first_error() {
    let p = Pool::builder(TestManager::scripted(&[CreateStep::Ok, CreateStep::Fail]))
        .max_size(4)
        .min_idle(3)
        .build()
        .unwrap();
    // The background task and warm_up race for the script; whichever meets
    // the failure, warm_up either reports it or finds the pool filled.
    match p.warm_up().await {
        Err(Error::Create(e)) => assert!(e.0.contains("failed")),
        Ok(()) => {}
        other => panic!("unexpected {other:?}"),
    }
    p.warm_up().await.unwrap();
    assert_eq!(p.status().idle, 3);
    assert_counts(&p.status());
}

#[test]
fn build_needs_no_runtime_and_warm_up_starts_upkeep() {
    let p = Pool::builder(TestManager::new())
        .max_size(4)
        .min_idle(2)
        .idle_timeout(SEC)
        .build()
        .unwrap();
    assert_eq!(p.status().size, 0, "nothing created without a runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        p.warm_up().await.unwrap();
        assert_eq!(p.status().idle, 2);
        // The task started by warm_up keeps it filled.
        let a = p.acquire().await.unwrap();
        Pooled::discard(a);
        settle().await;
        assert_eq!(p.status().idle, 2);
    });
}

#[tokio::test(start_paused = true)]
async fn min_idle_recovers_after_a_burst_of_create_failures() {
    let m = TestManager::new();
    *m.default.lock().unwrap() = CreateStep::Fail;
    let p = Pool::builder(m).max_size(4).min_idle(2).build().unwrap();
    let start = Instant::now();
    // 10 s of failures: the task backs off instead of spinning.
    sleep(Duration::from_secs(10)).await;
    let tries = p.manager().creates.load(Ordering::SeqCst);
    assert!(
        (3..=12).contains(&tries),
        "exponential backoff from 100 ms: {tries} tries in 10 s"
    );
    assert_eq!(p.status().size, 0, "failed creates give their slots back");
    // The database comes back.
    *p.manager().default.lock().unwrap() = CreateStep::Ok;
    sleep(Duration::from_secs(31)).await;
    let s = p.status();
    assert_eq!(s.idle, 2, "refilled within one backoff period");
    assert!(s.create_errors >= 3);
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_counts(&s);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_reaps_only_above_min_idle() {
    let p = Pool::builder(TestManager::new())
        .max_size(6)
        .min_idle(2)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..6).map(|_| p.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    assert_eq!(p.status().idle, 6);
    sleep(Duration::from_secs(5)).await;
    assert_eq!(p.status().idle, 6, "not idle long enough yet");
    sleep(Duration::from_secs(10)).await;
    let s = p.status();
    assert_eq!(s.idle, 2, "reaped down to min_idle, no further");
    assert_eq!(s.discarded.expired, 4);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(p.status().idle, 2);
    assert_counts(&p.status());
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_is_jittered_for_100_resources() {
    let lifetime = Duration::from_secs(1000);
    let p = Pool::builder(TestManager::new())
        .max_size(100)
        .max_lifetime(lifetime)
        .upkeep_interval(SEC)
        .build()
        .unwrap();
    // 100 resources created at the same instant.
    let held: Vec<_> = futures::future::join_all((0..100).map(|_| p.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut lifetimes: Vec<_> = held
        .iter()
        .map(|r| Pooled::info(r).lifetime().unwrap())
        .collect();
    drop(held);
    lifetimes.sort();
    lifetimes.dedup();
    assert!(
        lifetimes.len() > 90,
        "lifetimes differ: {}",
        lifetimes.len()
    );
    assert!(lifetimes[0] >= lifetime.mul_f64(0.9));
    assert!(*lifetimes.last().unwrap() <= lifetime);
    // They expire spread over the last 10 % of the lifetime, not at once.
    let mut expired_at = Vec::new();
    sleep(Duration::from_secs(899)).await;
    assert_eq!(p.status().discarded.expired, 0);
    let mut last = 0;
    while last < 100 {
        sleep(SEC).await;
        let now = p.status().discarded.expired;
        if now > last {
            expired_at.push(now - last);
            last = now;
        }
    }
    assert!(
        expired_at.len() > 20,
        "expiries spread over many rounds: {expired_at:?}"
    );
    assert!(
        expired_at.iter().all(|&n| n < 20),
        "no mass expiry: {expired_at:?}"
    );
    assert_eq!(p.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn checked_out_past_lifetime_is_dropped_on_return() {
    let p = Pool::builder(TestManager::new())
        .max_size(2)
        .max_lifetime(Duration::from_secs(100))
        .build()
        .unwrap();
    let r = p.acquire().await.unwrap();
    let life = Pooled::info(&r).lifetime().unwrap();
    assert!(life >= Duration::from_secs(90) && life <= Duration::from_secs(100));
    sleep(life).await;
    drop(r);
    let s = p.status();
    assert_eq!((s.size, s.discarded.expired), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn keepalive_checks_idle_resources_and_drops_dead_ones() {
    let p = Pool::builder(TestManager::new())
        .max_size(4)
        .keepalive_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| p.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held);
    let recycles = || p.manager().recycles.load(Ordering::SeqCst);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(recycles(), 0, "not due yet");
    sleep(Duration::from_secs(20)).await;
    assert_eq!(recycles(), 3, "each idle resource checked once");
    assert_eq!(p.status().idle, 3);
    // The server goes away: the next keepalive finds them dead.
    p.manager().fail_recycle.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(40)).await;
    let s = p.status();
    assert_eq!((s.idle, s.size), (0, 0));
    assert_eq!(s.discarded.recycle_failed, 3);
    let ledger = p.manager().ledger.clone();
    drop(p);
    ledger.assert_all_dropped_once();
}

#[tokio::test(start_paused = true)]
async fn upkeep_task_ends_with_the_last_handle() {
    let m = TestManager::new();
    let ledger = m.ledger.clone();
    let p = Pool::builder(m)
        .max_size(4)
        .min_idle(2)
        .idle_timeout(SEC)
        .build()
        .unwrap();
    settle().await;
    assert_eq!(ledger.created(), 2);
    let weak_probe = Arc::downgrade(&ledger);
    drop(p);
    settle().await;
    sleep(Duration::from_secs(60)).await;
    assert_eq!(ledger.created(), 2, "no create after the pool is gone");
    ledger.assert_all_dropped_once();
    drop(ledger);
    assert!(
        weak_probe.upgrade().is_none(),
        "the manager (and its ledger) was dropped: the task keeps no strong reference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_up_and_down_under_load_keeps_the_invariants() {
    let m = TestManager::new();
    let ledger = m.ledger.clone();
    let p = Pool::builder(m)
        .max_size(4)
        .max_size_limit(32)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (p, stop) = (p.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = p.acquire().await.expect("served");
                tokio::task::yield_now().await;
                drop(r);
                n += 1;
            }
            n
        }));
    }
    let mut ceiling = 4;
    for &max in &[16, 2, 32, 1, 8, 3, 24, 4] {
        p.resize(max).unwrap();
        ceiling = ceiling.max(max);
        for _ in 0..50 {
            let s = p.status();
            assert!(s.size <= ceiling, "size {} above {ceiling}", s.size);
            assert!(s.idle <= s.size.max(s.idle));
            assert_eq!(s.max_size, max);
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Once shrunk, the pool drains to the new maximum.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.status().size > max {
            assert!(std::time::Instant::now() < deadline, "{:?}", p.status());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ceiling = max;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(total > 100);
    let s = p.status();
    assert_counts(&s);
    assert_eq!(s.in_use, 0);
    assert!(s.size <= 4);
    assert!(s.discarded.resized > 0);
    assert!(p.resize(33).is_err());
    assert!(p.resize(0).is_err());
    drop(p);
    ledger.assert_all_dropped_once();
}

#[tokio::test(start_paused = true)]
async fn growing_lets_waiters_create() {
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .max_size_limit(3)
        .build()
        .unwrap();
    let a = p.acquire().await.unwrap();
    let (p1, p2) = (p.clone(), p.clone());
    let w1 = tokio::spawn(async move { p1.acquire().await.map(|r| r.id) });
    let w2 = tokio::spawn(async move { p2.acquire().await.map(|r| r.id) });
    settle().await;
    assert_eq!(p.status().waiting, 2);
    p.resize(3).unwrap();
    assert!(w1.await.unwrap().is_ok());
    assert!(w2.await.unwrap().is_ok());
    assert_eq!(p.status().created, 3);
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn shrinking_drops_idle_now_and_in_use_on_return() {
    let p = Pool::builder(TestManager::new())
        .max_size(4)
        .build()
        .unwrap();
    let mut held: Vec<_> = futures::future::join_all((0..4).map(|_| p.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held.split_off(2)); // two idle, two in use
    p.resize(1).unwrap();
    let s = p.status();
    assert_eq!(
        (s.size, s.idle, s.in_use),
        (2, 0, 2),
        "idle dropped at once"
    );
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.acquire().await.map(|r| r.id) })
    };
    settle().await;
    drop(held.pop());
    assert_eq!(p.status().size, 1, "shed on return");
    drop(held.pop());
    // The pool fits again: this return goes to the waiter.
    assert!(waiter.await.unwrap().is_ok());
    let s = p.status();
    assert_eq!((s.size, s.idle, s.discarded.resized), (1, 1, 3));
    assert_counts(&s);
}

/// A `tracing` writer that keeps everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(start_paused = true)]
async fn a_leak_is_reported_once_naming_the_line() {
    let (out, _guard) = capture();
    let p = Pool::builder(TestManager::new())
        .max_size(2)
        .leak_threshold(Duration::from_secs(10))
        .build()
        .unwrap();
    let line = line!() + 1;
    let leaked = p.acquire().await.unwrap();
    let quick = p.acquire().await.unwrap();
    drop(quick);
    sleep(Duration::from_secs(60)).await;
    let text = out.text();
    let reports: Vec<_> = text
        .lines()
        .filter(|l| l.contains("quickslot::leak"))
        .collect();
    assert_eq!(reports.len(), 1, "one report, once: {text}");
    let site = format!("tests/upkeep.rs:{line}:");
    assert!(reports[0].contains(&site), "names {site}: {}", reports[0]);
    assert_eq!(p.status().leaks_reported, 1);
    drop(leaked);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(p.status().leaks_reported, 1);
}

/// The same for a checkout of an idle resource (the acquire's fast path)
/// and for `acquire_timeout`.
#[tokio::test(start_paused = true)]
async fn a_leak_of_an_idle_resource_names_the_line() {
    let (out, _guard) = capture();
    let p = Pool::builder(TestManager::new())
        .max_size(2)
        .leak_threshold(Duration::from_secs(10))
        .build()
        .unwrap();
    drop((p.acquire().await.unwrap(), p.acquire().await.unwrap()));
    assert_eq!(p.status().idle, 2);
    let line = line!() + 1;
    let first = p.acquire().await.unwrap();
    let second = p.acquire_timeout(SEC).await.unwrap();
    assert_eq!(p.status().created, 2, "both were idle");
    sleep(Duration::from_secs(60)).await;
    let text = out.text();
    let reports: Vec<_> = text
        .lines()
        .filter(|l| l.contains("quickslot::leak"))
        .collect();
    assert_eq!(reports.len(), 2, "{text}");
    for (n, line) in [(0, line), (1, line + 1)] {
        let site = format!("tests/upkeep.rs:{line}:");
        assert!(
            reports.iter().any(|r| r.contains(&site)),
            "report {n} names {site}: {reports:?}"
        );
    }
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn tracing_names_create_failure_discard_and_timeout() {
    let (out, _guard) = capture();
    let p = Pool::builder(TestManager::scripted(&[CreateStep::Fail]))
        .name("orders-db")
        .max_size(1)
        .acquire_timeout(SEC)
        .build()
        .unwrap();
    assert!(p.acquire().await.is_err());
    let r = p.acquire().await.unwrap();
    assert!(p.acquire().await.unwrap_err().is_timeout());
    Pooled::discard(r);
    let text = out.text();
    for needle in [
        "create failed",
        "resource created",
        "acquire timed out",
        "resource discarded",
        "reason=\"broken\"",
        "orders-db",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn failing_hooks_discard_and_name_the_hook() {
    let p = Pool::builder(TestManager::new())
        .max_size(2)
        .post_create(Hook::sync(|r: &mut Res, _| {
            if r.id == 0 {
                Err(HookError::msg("first one is bad"))
            } else {
                Ok(())
            }
        }))
        .build()
        .unwrap();
    match p.acquire().await {
        Err(Error::Hook { hook, error, .. }) => {
            assert_eq!(hook, HookKind::PostCreate);
            assert_eq!(error.to_string(), "first one is bad");
        }
        other => panic!("expected a hook error, got {other:?}"),
    }
    let s = p.status();
    assert_eq!((s.size, s.discarded.hook), (0, 1));
    let r = p.acquire().await.unwrap();
    assert_eq!(r.id, 1);
    drop(r);

    // Recycle hooks, async.
    let fail_pre = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fail_pre.clone();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .pre_recycle(Hook::async_fn(move |_r: &mut Res, _| {
            let fail = flag.load(Ordering::SeqCst);
            let o1 = o1.clone();
            Box::pin(async move {
                o1.lock().unwrap().push("pre");
                if fail {
                    Err(HookError::msg("stale"))
                } else {
                    Ok(())
                }
            })
        }))
        .post_recycle(Hook::sync(move |_r: &mut Res, _| {
            o2.lock().unwrap().push("post");
            Ok(())
        }))
        .build()
        .unwrap();
    drop(p.acquire().await.unwrap());
    drop(p.acquire().await.unwrap());
    assert_eq!(*order.lock().unwrap(), ["pre", "post"]);
    assert_eq!(p.manager().recycles.load(Ordering::SeqCst), 1);
    fail_pre.store(true, Ordering::SeqCst);
    let e = p.acquire().await.unwrap_err();
    assert_eq!(e.hook_error().unwrap().0, HookKind::PreRecycle);
    assert!(e.to_string().contains("pre_recycle"));
    assert_eq!(p.status().size, 0, "the resource was dropped");
}

#[tokio::test]
async fn on_release_failure_discards() {
    let p = Pool::builder(TestManager::new())
        .max_size(1)
        .on_release(|r: &mut Res, info| {
            if info.uses() >= 2 {
                Err(HookError::msg(format!("{} used enough", r.id)))
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    drop(p.acquire().await.unwrap());
    assert_eq!(p.status().idle, 1);
    drop(p.acquire().await.unwrap());
    let s = p.status();
    assert_eq!((s.size, s.discarded.hook), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_returns_and_reports_the_rest() {
    let p = Pool::builder(TestManager::new())
        .max_size(4)
        .reuse_order(ReuseOrder::Lifo)
        .build()
        .unwrap();
    let mut held: Vec<_> = futures::future::join_all((0..4).map(|_| p.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    drop(held.pop()); // one idle
    let back_soon = held.pop().unwrap();
    tokio::spawn(async move {
        sleep(Duration::from_secs(2)).await;
        drop(back_soon);
    });
    let start = Instant::now();
    let report = p.drain(Duration::from_secs(5)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        (report.checked_out, report.returned, report.outstanding),
        (3, 1, 2)
    );
    assert!(matches!(p.acquire().await, Err(Error::Closed)));
    drop(held);
    let report = p.drain(SEC).await;
    assert_eq!(report.outstanding, 0);
    let ledger = p.manager().ledger.clone();
    drop(p);
    ledger.assert_all_dropped_once();
}
