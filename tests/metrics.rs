//! The `metrics` feature, checked with a recording recorder.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use quickslot::Pool;
use quickslot_testkit::managers::{CreateStep, TestManager};

#[tokio::test(start_paused = true)]
async fn gauges_and_histograms_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered at build: install the recorder first.
    let p = metrics::with_local_recorder(&recorder, || {
        Pool::builder(TestManager::always(CreateStep::Slow(
            Duration::from_millis(5),
        )))
        .name("orders")
        .max_size(2)
        .build()
        .unwrap()
    });
    let a = p.acquire().await.unwrap();
    let b = p.acquire().await.unwrap();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { drop(p.acquire().await.unwrap()) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.publish_metrics();
    let gauges = |snap: Vec<_>| {
        let mut out = std::collections::BTreeMap::new();
        for (key, _, _, value) in snap {
            let key: metrics_util::CompositeKey = key;
            let labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            assert_eq!(labels, [("pool".to_owned(), "orders".to_owned())]);
            out.insert(key.key().name().to_owned(), value);
        }
        out
    };
    let snap = gauges(snapshotter.snapshot().into_vec());
    let gauge = |name: &str| match &snap[name] {
        DebugValue::Gauge(v) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge("quickslot_size"), 2.0);
    assert_eq!(gauge("quickslot_in_use"), 2.0);
    assert_eq!(gauge("quickslot_idle"), 0.0);
    assert_eq!(gauge("quickslot_waiting"), 1.0);
    match &snap["quickslot_create_seconds"] {
        DebugValue::Histogram(v) => {
            assert_eq!(v.len(), 2);
            assert!(
                v.iter().all(|s| (s.into_inner() - 0.005).abs() < 1e-6),
                "{v:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(a);
    waiter.await.unwrap();
    drop(b);
    let snap = gauges(snapshotter.snapshot().into_vec());
    match &snap["quickslot_acquire_wait_seconds"] {
        DebugValue::Histogram(v) => {
            assert_eq!(v.len(), 1);
            assert!((v[0].into_inner() - 0.150).abs() < 1e-3, "{v:?}");
        }
        other => panic!("{other:?}"),
    }
    match &snap["quickslot_hold_seconds"] {
        DebugValue::Histogram(v) => assert_eq!(v.len(), 3, "{v:?}"),
        other => panic!("{other:?}"),
    }
    // The upkeep task publishes the gauges by itself too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = gauges(snapshotter.snapshot().into_vec());
    assert!(matches!(&snap["quickslot_idle"], DebugValue::Gauge(v) if v.into_inner() == 2.0));
}
