#![cfg(feature = "postgres")]
//! Cancel on drop, the listener, rotating credentials and soft eviction,
//! the pool defaults, strict connection strings, connection-error logs and
//! `GenericClient`, against a real server.
//!
//! Run with `scripts/with-postgres cargo test --features postgres --test postgres_extras`.
//! Without `QUICKSLOT_PG_URL` the server tests print a note and pass
//! locally, but fail when `CI` is set; `QUICKSLOT_SKIP_PG=1` skips them.
//! The restart test also needs `QUICKSLOT_PG_CTL` (set by
//! `scripts/with-postgres` for its throw-away cluster) and skips without it.
//!
//! The tests of this file take a lock each, so the server restart never
//! cuts another test's connections.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use quickslot::postgres::{
    parse_config, Client, ConfigError, GenericClient, ListenerEvent, PgError, PgManager, Pool,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME,
};
use quickslot::{BuildError, Error};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use quickslot_testkit::pg_url;

macro_rules! url_or_skip {
    () => {
        match pg_url() {
            Some(url) => url,
            None => return,
        }
    };
}

/// One test at a time (the restart test stops the server). Each test has
/// its own runtime, so the lock is an async one held across awaits.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A manager whose connections carry `application_name = app`, so the
/// server's backends of one test can be counted.
fn manager(url: &str, app: &str) -> PgManager {
    let mut config = parse_config(url).expect("QUICKSLOT_PG_URL parses");
    config.application_name(app);
    PgManager::from_config(config)
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
}

async fn backends(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn pids(admin: &tokio_postgres::Client, app: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get(0)
}

/// Samples the number of backends of `app` every 5 ms until dropped and
/// keeps the largest.
struct BackendWatch {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl BackendWatch {
    async fn start(url: &str, app: &str) -> Self {
        let admin = admin(url).await;
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s, app) = (max.clone(), stop.clone(), app.to_owned());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let n = backends(&admin, &app).await as u64;
                m.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { max, stop, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watch task");
        self.max.load(Ordering::Relaxed)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

// ---------------------------------------------------------------------------
// 1. Cancel on drop
// ---------------------------------------------------------------------------

/// The scenario: a request times out after 100 ms on
/// `pg_sleep(5)`; the next user of the only connection must get `SELECT 1`
/// within 1 s, 20 times in a row, with default settings, and the server
/// never holds more backends than `max_size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_query_is_cancelled_and_the_next_user_is_served_at_once() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let app = "qs_cancel_drop";
    let pool = manager(&url, app)
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let watch = BackendWatch::start(&url, app).await;
    let mut waits = Vec::new();
    for round in 0..20 {
        let client = pool.acquire().await.expect("acquire");
        let slow = tokio::time::timeout(
            Duration::from_millis(100),
            client.query("SELECT pg_sleep(5)", &[]),
        )
        .await;
        assert!(slow.is_err(), "round {round}: the sleep was cut short");
        drop(client);

        let started = Instant::now();
        let next = pool.acquire().await.expect("next user");
        let one: i32 = next
            .query_one("SELECT 1", &[])
            .await
            .expect("SELECT 1")
            .get(0);
        let waited = started.elapsed();
        assert_eq!(one, 1);
        assert!(
            waited < Duration::from_secs(1),
            "round {round}: waited {waited:?}"
        );
        waits.push(waited);
    }
    let status = pool.status();
    assert_eq!(status.created, 1, "the connection was reused: {status:?}");
    drop(pool);
    let most = watch.finish().await;
    assert!(most <= 1, "{most} backends for a pool of 1");
    waits.sort();
    println!(
        "cancel on drop, next user's wait: p50 {:?}, p90 {:?}, max {:?}",
        percentile(&waits, 0.5),
        percentile(&waits, 0.9),
        waits[waits.len() - 1]
    );
}

/// The same with the dropped query inside a transaction: the next user
/// gets a clean connection (no open or aborted transaction) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_query_in_a_transaction_is_cancelled_and_rolled_back() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let app = "qs_cancel_tx";
    admin(&url)
        .await
        .batch_execute("DROP TABLE IF EXISTS qs_cancel_tx; CREATE TABLE qs_cancel_tx (id int)")
        .await
        .expect("table");
    let pool = manager(&url, app)
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let watch = BackendWatch::start(&url, app).await;
    for round in 0..20 {
        let mut client = pool.acquire().await.expect("acquire");
        let tx = client.transaction().await.expect("begin");
        tx.execute("INSERT INTO qs_cancel_tx VALUES (1)", &[])
            .await
            .expect("insert");
        let slow = tokio::time::timeout(
            Duration::from_millis(100),
            tx.query("SELECT pg_sleep(5)", &[]),
        )
        .await;
        assert!(slow.is_err(), "round {round}");
        drop(tx);
        drop(client);

        let started = Instant::now();
        let next = pool.acquire().await.expect("next user");
        let rows = next
            .simple_query("SELECT transaction_timestamp() = statement_timestamp()")
            .await
            .expect("not in an aborted transaction");
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(1),
            "round {round}: waited {waited:?}"
        );
        let outside = rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t")),
        );
        assert!(outside, "round {round}: still in a transaction");
        let n: i64 = next
            .query_one("SELECT count(*) FROM qs_cancel_tx", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "round {round}: the insert was rolled back");
    }
    drop(pool);
    let most = watch.finish().await;
    assert!(most <= 1, "{most} backends for a pool of 1");
}

/// The holder keeps the connection after its query timed out: its next
/// query waits for the cancel, and is not itself cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_can_go_on_after_a_dropped_query() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_cancel_holder")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let client = pool.acquire().await.expect("acquire");
    for round in 0..10 {
        let slow = tokio::time::timeout(
            Duration::from_millis(50),
            client.execute("SELECT pg_sleep(5)", &[]),
        )
        .await;
        assert!(slow.is_err());
        let started = Instant::now();
        let n: i64 = client
            .query_one_cached("SELECT $1::int8 + 1", &[&41i64])
            .await
            .expect("the next query is not the one cancelled")
            .get(0);
        assert_eq!(n, 42);
        assert!(started.elapsed() < Duration::from_secs(1), "round {round}");
        assert!(!client.is_draining());
    }
}

/// A query dropped right as it finishes on its own is the hard case: the
/// cancel request may reach the server after the statement ended. The
/// cancel is confirmed before the connection is used again, so the signal
/// never lands on a later statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_never_hits_the_next_statement() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_cancel_late")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let mut cut = 0;
    for i in 0..200u64 {
        let client = pool.acquire().await.expect("acquire");
        // Drop the query somewhere around its end.
        let budget = Duration::from_micros(2_000 + (i % 10) * 500);
        if tokio::time::timeout(budget, client.query("SELECT pg_sleep(0.003)", &[]))
            .await
            .is_err()
        {
            cut += 1;
        }
        drop(client);
        let next = pool.acquire().await.expect("next");
        if let Err(e) = next.query("SELECT pg_sleep(0.02)", &[]).await {
            panic!("iteration {i}: the next statement failed: {e:?}");
        }
    }
    assert!(cut > 0, "no query was dropped; the test proved nothing");
    println!(
        "{cut} of 200 queries dropped near their end; {} connections made",
        pool.status().created
    );
}

/// Several queries pipelined on one client and dropped together: the
/// cancel request is sent again until all are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_dropped_queries_on_one_client_are_all_cancelled() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_cancel_many")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    for round in 0..5 {
        let client = pool.acquire().await.expect("acquire");
        let all = async {
            futures::join!(
                client.query("SELECT pg_sleep(5)", &[]),
                client.execute("SELECT pg_sleep(5)", &[]),
                client.simple_query("SELECT pg_sleep(5)"),
            )
        };
        assert!(tokio::time::timeout(Duration::from_millis(100), all)
            .await
            .is_err());
        drop(client);
        let started = Instant::now();
        pool.acquire()
            .await
            .expect("next")
            .query_one("SELECT 1", &[])
            .await
            .expect("SELECT 1");
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(1), "round {round}: {waited:?}");
    }
    assert_eq!(pool.status().created, 1);
}

/// A query dropped while another call of the same holder is in flight on
/// the connection: the live call is never the one cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_call_sharing_the_client_is_never_cancelled() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_cancel_live")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    for round in 0..5 {
        let client = pool.acquire().await.expect("acquire");
        // Sent first, so it runs first; it must finish normally.
        let live = client.query_one("SELECT pg_sleep(0.3), 7", &[]);
        let dropped = client.query("SELECT pg_sleep(5)", &[]);
        let (live, dropped) = futures::join!(
            live,
            tokio::time::timeout(Duration::from_millis(100), dropped)
        );
        assert!(dropped.is_err(), "round {round}");
        let n: i32 = live.expect("the live call was not cancelled").get(1);
        assert_eq!(n, 7);
        let started = Instant::now();
        client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
        assert!(started.elapsed() < Duration::from_secs(1), "round {round}");
    }
}

/// With `cancel_on_drop(false)` a dropped statement runs to its end (a
/// dropped INSERT still inserts), and the next user waits for it; with the
/// default it is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_drop_can_be_turned_off() {
    let url = url_or_skip!();
    let _serial = serial().await;
    admin(&url)
        .await
        .batch_execute("DROP TABLE IF EXISTS qs_cancel_off; CREATE TABLE qs_cancel_off (on_ bool)")
        .await
        .expect("table");
    for cancel in [false, true] {
        let pool = manager(&url, "qs_cancel_off")
            .cancel_on_drop(cancel)
            .pool_builder()
            .max_size(1)
            .build()
            .expect("pool");
        let client = pool.acquire().await.expect("acquire");
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&cancel];
        let insert = client.execute(
            "INSERT INTO qs_cancel_off SELECT $1 FROM pg_sleep(0.5)",
            &params,
        );
        assert!(tokio::time::timeout(Duration::from_millis(50), insert)
            .await
            .is_err());
        drop(client);
        let started = Instant::now();
        let next = pool.acquire().await.expect("next");
        let waited = started.elapsed();
        let n: i64 = next
            .query_one(
                "SELECT count(*) FROM qs_cancel_off WHERE on_ = $1",
                &[&cancel],
            )
            .await
            .expect("count")
            .get(0);
        if cancel {
            assert_eq!(n, 0, "cancelled");
            assert!(waited < Duration::from_millis(300), "{waited:?}");
        } else {
            assert_eq!(n, 1, "ran to its end");
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
        }
        assert_eq!(pool.status().created, 1);
    }
}

/// Cancel on drop through the statement cache and `simple_query`, and a
/// connection that comes back while it is still draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_simple_queries_are_covered_too() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_cancel_cached")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    for sql in ["cached", "simple", "batch"] {
        let client = pool.acquire().await.expect("acquire");
        let slow = async {
            match sql {
                "cached" => client
                    .query_cached("SELECT pg_sleep($1)", &[&5.0f64])
                    .await
                    .map(drop),
                "simple" => client.simple_query("SELECT pg_sleep(5)").await.map(drop),
                _ => client.batch_execute("SELECT 1; SELECT pg_sleep(5)").await,
            }
        };
        assert!(tokio::time::timeout(Duration::from_millis(100), slow)
            .await
            .is_err());
        drop(client);
        let started = Instant::now();
        pool.acquire()
            .await
            .expect("next")
            .query_one("SELECT 1", &[])
            .await
            .expect("SELECT 1");
        assert!(started.elapsed() < Duration::from_secs(1), "{sql}");
    }
    assert_eq!(pool.status().created, 1);
}

// ---------------------------------------------------------------------------
// 2. Listener
// ---------------------------------------------------------------------------

async fn next_notification(
    listener: &mut quickslot::postgres::Listener,
    within: Duration,
) -> tokio_postgres::Notification {
    match tokio::time::timeout(within, listener.recv()).await {
        Ok(Some(ListenerEvent::Notification(n))) => n,
        Ok(Some(other)) => panic!("expected a notification, got {other:?}"),
        Ok(None) => panic!("the listener ended"),
        Err(_) => panic!("no notification within {within:?}"),
    }
}

/// Waits for `Disconnected` then `Reconnected`; returns the gap and when
/// the reconnect was seen.
async fn await_reconnect(
    listener: &mut quickslot::postgres::Listener,
    within: Duration,
) -> (quickslot::postgres::Gap, Instant) {
    let deadline = tokio::time::Instant::now() + within;
    let mut disconnected = false;
    loop {
        match tokio::time::timeout_at(deadline, listener.recv()).await {
            Ok(Some(ListenerEvent::Disconnected(_))) => disconnected = true,
            Ok(Some(ListenerEvent::Reconnected(gap))) => {
                assert!(disconnected, "Reconnected without Disconnected");
                return (gap, Instant::now());
            }
            Ok(Some(ListenerEvent::Notification(n))) => {
                panic!("unexpected notification {n:?} during the gap")
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("the listener ended"),
            Err(_) => panic!("no reconnect within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_receives_resubscribes_after_a_terminated_backend_and_reports_the_gap() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let app = "qs_listener_term";
    let pool = manager(&url, app)
        .pool_builder()
        .max_size(2)
        .build()
        .expect("pool");
    let admin = admin(&url).await;
    let mut listener = pool.listener();
    listener.listen("jobs").await.expect("listen");
    listener
        .listen("Mixed Case \"chan\"")
        .await
        .expect("listen");
    listener.listen("jobs").await.expect("listen twice");

    admin
        .batch_execute("NOTIFY jobs, 'one'")
        .await
        .expect("notify");
    let n = next_notification(&mut listener, Duration::from_secs(5)).await;
    assert_eq!((n.channel(), n.payload()), ("jobs", "one"));
    admin
        .execute("SELECT pg_notify($1, 'two')", &[&"Mixed Case \"chan\""])
        .await
        .expect("notify");
    let n = next_notification(&mut listener, Duration::from_secs(5)).await;
    assert_eq!(n.payload(), "two");

    let mut reconnects = Vec::new();
    for round in 0..5 {
        let victims = pids(&admin, app).await;
        assert_eq!(victims.len(), 1, "the listener's own backend only");
        let cut = Instant::now();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&victims[0]])
            .await
            .expect("terminate");
        let (gap, seen) = await_reconnect(&mut listener, Duration::from_secs(2)).await;
        let took = seen - cut;
        assert!(took < Duration::from_secs(2), "round {round}: {took:?}");
        assert!(gap.attempts >= 1);
        reconnects.push(took);

        admin
            .batch_execute(&format!("NOTIFY jobs, 'after {round}'"))
            .await
            .expect("notify");
        let n = next_notification(&mut listener, Duration::from_secs(5)).await;
        assert_eq!(n.payload(), format!("after {round}"), "resubscribed");
    }
    reconnects.sort();
    println!(
        "listener reconnect after pg_terminate_backend: p50 {:?}, max {:?}",
        percentile(&reconnects, 0.5),
        reconnects[reconnects.len() - 1]
    );

    listener.unlisten("jobs").await.expect("unlisten");
    admin
        .batch_execute("NOTIFY jobs, 'unheard'; SELECT pg_notify('Mixed Case \"chan\"', 'heard')")
        .await
        .expect("notify");
    let n = next_notification(&mut listener, Duration::from_secs(5)).await;
    assert_eq!(n.payload(), "heard");

    assert!(matches!(
        listener.listen("").await,
        Err(quickslot::postgres::ListenerError::Server(_))
    ));
    assert!(matches!(
        listener.listen("a\0b").await,
        Err(quickslot::postgres::ListenerError::InvalidChannel)
    ));
    listener.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while backends(&admin, app).await != 0 {
        assert!(
            Instant::now() < deadline,
            "the listener's connection stayed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The listener never used the pool.
    assert_eq!(pool.status().created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_delivers_a_burst_in_order_with_none_lost() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let mut listener = manager(&url, "qs_listener_burst").listener();
    listener.listen("burst").await.expect("listen");
    let notifier = admin(&url).await;
    const N: i64 = 10_000;
    let started = Instant::now();
    notifier
        .execute(
            "SELECT pg_notify('burst', g::text) FROM generate_series(1, $1::int8) g",
            &[&N],
        )
        .await
        .expect("notify burst");
    // Also as separate transactions, interleaved with our reading.
    let sender = tokio::spawn(async move {
        for i in 1..=100 {
            notifier
                .execute("SELECT pg_notify('burst', $1)", &[&format!("s{i}")])
                .await
                .expect("notify");
        }
    });
    for expected in 1..=N {
        let n = next_notification(&mut listener, Duration::from_secs(10)).await;
        assert_eq!(n.payload(), expected.to_string());
    }
    for i in 1..=100 {
        let n = next_notification(&mut listener, Duration::from_secs(10)).await;
        assert_eq!(n.payload(), format!("s{i}"));
    }
    sender.await.expect("sender");
    println!(
        "listener: {} notifications in {:?}",
        N + 100,
        started.elapsed()
    );
    // The Stream face.
    listener.listen("stream").await.expect("listen");
    admin(&url)
        .await
        .batch_execute("NOTIFY stream, 'x'")
        .await
        .expect("notify");
    match tokio::time::timeout(Duration::from_secs(5), listener.next()).await {
        Ok(Some(ListenerEvent::Notification(n))) => assert_eq!(n.payload(), "x"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_comes_back_after_a_server_restart() {
    let url = url_or_skip!();
    let Some(ctl) = std::env::var_os("QUICKSLOT_PG_CTL") else {
        eprintln!("skipping: QUICKSLOT_PG_CTL is not set (use scripts/with-postgres)");
        return;
    };
    let _serial = serial().await;
    let pool = manager(&url, "qs_listener_restart")
        .pool_builder()
        .max_size(2)
        .build()
        .expect("pool");
    let mut listener = pool.listener();
    listener.listen("restart").await.expect("listen");

    let control = |what: &str| {
        let status = std::process::Command::new(&ctl)
            .arg(what)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run QUICKSLOT_PG_CTL");
        assert!(status.success(), "{what} failed");
    };
    tokio::task::block_in_place(|| control("stop"));
    match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
        Ok(Some(ListenerEvent::Disconnected(_))) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // Down for a while: attempts fail and back off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| control("start"));
    let up = Instant::now();
    let gap = loop {
        match tokio::time::timeout(Duration::from_secs(2), listener.recv()).await {
            Ok(Some(ListenerEvent::Reconnected(gap))) => break gap,
            Ok(Some(ListenerEvent::Disconnected(_))) => {}
            other => panic!("expected Reconnected within 2 s of the start, got {other:?}"),
        }
    };
    let took = up.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(gap.duration() >= Duration::from_millis(1500), "{gap:?}");
    assert!(gap.attempts > 1, "{gap:?}");
    println!(
        "listener after a server restart: resubscribed {took:?} after the server was up \
         (gap {:?}, {} attempts)",
        gap.duration(),
        gap.attempts
    );
    admin(&url)
        .await
        .batch_execute("NOTIFY restart, 'back'")
        .await
        .expect("notify");
    let n = next_notification(&mut listener, Duration::from_secs(5)).await;
    assert_eq!(n.payload(), "back");
    // The pool recovers too.
    let client = pool.acquire().await.expect("acquire after restart");
    client.query_one("SELECT 1", &[]).await.expect("query");
}

// ---------------------------------------------------------------------------
// 3. Rotating credentials, soft eviction
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_password_keeps_the_pool_serving_and_soft_evict_replaces_everything() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let admin = admin(&url).await;
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS qs_rotate; CREATE ROLE qs_rotate LOGIN PASSWORD 'first'",
        )
        .await
        .expect("role");
    let app = "qs_rotate";
    let mut config = parse_config(&url).expect("url");
    config
        .user("qs_rotate")
        .password("wrong")
        .application_name(app);
    let password = Arc::new(Mutex::new(String::from("first")));
    let asked = Arc::new(AtomicUsize::new(0));
    let (p, a) = (password.clone(), asked.clone());
    let pool: Pool = PgManager::from_config(config)
        .password_provider(move || {
            let current = p.lock().unwrap().clone();
            a.fetch_add(1, Ordering::Relaxed);
            async move { Ok(current) }
        })
        .pool_builder()
        .max_size(4)
        .build()
        .expect("pool");

    // Load: eight tasks, each query on a fresh checkout.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pool, stop, errors, done) = (pool.clone(), stop.clone(), errors.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    let client = pool.acquire().await?;
                    client
                        .query_one("SELECT pg_sleep(0.002)", &[])
                        .await
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                }
                .await;
                match result {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.lock().unwrap().push(format!("{e:#?}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = pids(&admin, app).await;
    assert!(!before.is_empty());

    // Rotate: the server and the provider change; existing connections
    // keep working (the password is checked only on connect).
    admin
        .batch_execute("ALTER ROLE qs_rotate PASSWORD 'second'")
        .await
        .expect("alter role");
    *password.lock().unwrap() = String::from("second");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Replace every connection under load.
    let evicted_at = Instant::now();
    let dropped = pool.soft_evict();
    println!("soft_evict dropped {dropped} idle connections at once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "users saw errors: {errors:?}");
    assert!(done.load(Ordering::Relaxed) > 100);

    // Every connection now is new, made with the new password.
    let after = pids(&admin, app).await;
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "an old connection survived: before {before:?}, after {after:?}"
    );
    for _ in 0..4 {
        let c = pool.acquire().await.expect("acquire");
        assert_eq!(c.generation(), 1);
    }
    let status = pool.status();
    assert!(status.created as usize > before.len(), "{status:?}");
    assert!(asked.load(Ordering::Relaxed) as u64 >= status.created);
    println!(
        "rotation: {} queries, {} connections made, all replaced within {:?}",
        done.load(Ordering::Relaxed),
        status.created,
        evicted_at.elapsed()
    );

    // A provider that fails makes creates fail with a typed error.
    let failing: Pool = manager(&url, "qs_rotate_fail")
        .password_provider(|| async { Err("vault is sealed".into()) })
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    match failing.acquire().await {
        Err(Error::Create(e @ PgError::Credentials(_))) => {
            assert_eq!(e.to_string(), "the credential provider failed");
            let source = std::error::Error::source(&e).expect("source");
            assert_eq!(source.to_string(), "vault is sealed");
        }
        other => panic!("{other:?}"),
    }
    drop(pool);
    drop(failing);
    admin
        .batch_execute("DROP ROLE IF EXISTS qs_rotate")
        .await
        .ok();
}

/// `soft_evict` on a checked-out connection: discarded when it comes back,
/// and a checkout racing with the eviction never gets an old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_evict_discards_checked_out_connections_on_return() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let pool = manager(&url, "qs_evict")
        .pool_builder()
        .max_size(2)
        .build()
        .expect("pool");
    let held = pool.acquire().await.expect("acquire");
    let idle = pool.acquire().await.expect("acquire");
    let (held_pid, idle_pid) = (backend_pid(&held).await, backend_pid(&idle).await);
    drop(idle);
    assert_eq!(pool.soft_evict(), 1, "the idle one dropped at once");
    assert_eq!(pool.status().idle, 0);
    held.query_one("SELECT 1", &[]).await.expect("still usable");
    drop(held);
    let status = pool.status();
    assert_eq!(
        status.idle, 0,
        "the held one discarded on return: {status:?}"
    );
    let fresh = pool.acquire().await.expect("acquire");
    let pid = backend_pid(&fresh).await;
    assert!(pid != held_pid && pid != idle_pid);
    assert_eq!(fresh.generation(), 1);
    // The manager's own soft_evict is lazy: the idle one goes on checkout.
    drop(fresh);
    pool.manager().soft_evict();
    let again = pool.acquire().await.expect("acquire");
    assert_ne!(backend_pid(&again).await, pid);
    assert_eq!(again.generation(), 2);
}

// ---------------------------------------------------------------------------
// 4. Pool defaults and timeouts
// ---------------------------------------------------------------------------

#[test]
fn pool_builder_defaults_and_the_timeout_interplay() {
    // A short acquire_timeout is fine: the recycle bound is the manager's.
    let pool = PgManager::from_url("postgres://app@localhost/app")
        .expect("url")
        .pool_builder()
        .acquire_timeout(Duration::from_secs(2))
        .build();
    assert!(pool.is_ok(), "{:?}", pool.err());
    let manager = PgManager::from_url("postgres://app@localhost/app").expect("url");
    assert_eq!(
        manager.configured_recycle_timeout(),
        quickslot::postgres::DEFAULT_RECYCLE_TIMEOUT
    );
    assert_eq!(DEFAULT_MAX_LIFETIME, Duration::from_secs(1800));
    assert_eq!(DEFAULT_IDLE_TIMEOUT, Duration::from_secs(600));
    let shown = format!("{:?}", manager.pool_builder());
    assert!(shown.contains("1800s"), "max_lifetime in {shown}");
    assert!(shown.contains("600s"), "idle_timeout in {shown}");

    // Two settings the user made can still contradict each other.
    let conflict = PgManager::from_url("postgres://app@localhost/app")
        .expect("url")
        .pool_builder()
        .recycle_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(2))
        .build();
    assert!(
        matches!(
            conflict,
            Err(BuildError::Conflict {
                setting: "recycle_timeout",
                ..
            })
        ),
        "{:?}",
        conflict.err()
    );
    // The manager's name goes to the pool.
    let named = PgManager::from_url("postgres://app@localhost/app")
        .expect("url")
        .name("orders")
        .pool_builder();
    assert!(format!("{named:?}").contains("orders"));
}

/// The checkout bound is the smaller of the manager's `recycle_timeout`
/// and what is left of the acquire's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recycle_bound_is_the_smaller_of_the_two() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let config = parse_config(&url).expect("url");
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], config.get_ports()[0]));
    let proxy = quickslot_testkit::proxy::Proxy::start(upstream)
        .await
        .expect("proxy");
    // The server's credentials and database, through the proxy.
    let through = {
        let mut only =
            parse_config(&format!("host=127.0.0.1 port={}", proxy.port())).expect("proxy");
        if let Some(user) = config.get_user() {
            only.user(user);
        }
        if let Some(password) = config.get_password() {
            only.password(password);
        }
        if let Some(db) = config.get_dbname() {
            only.dbname(db);
        }
        only
    };
    for (recycle, acquire, expect) in [
        (
            Duration::from_millis(300),
            Duration::from_secs(3),
            Duration::from_millis(300),
        ),
        (
            Duration::from_secs(5),
            Duration::from_millis(700),
            Duration::from_millis(700),
        ),
    ] {
        let pool = PgManager::from_config(through.clone())
            .recycling_method(quickslot::postgres::RecyclingMethod::Verified)
            .verify_window(Duration::ZERO)
            .recycle_timeout(recycle)
            .pool_builder()
            .max_size(1)
            .acquire_timeout(acquire)
            .build()
            .expect("pool");
        drop(pool.acquire().await.expect("first"));
        proxy.stall();
        let started = Instant::now();
        let err = pool.acquire().await.expect_err("stalled");
        let took = started.elapsed();
        proxy.unstall();
        assert!(
            matches!(err, Error::Timeout { .. } | Error::Create(_)),
            "{err:?}"
        );
        if recycle < acquire {
            // The recycle gave up at its own bound, then the create ran
            // into the acquire deadline.
            match &err {
                Error::Timeout { last_error, .. } => assert!(
                    matches!(last_error, Some(PgError::RecycleTimeout(d)) if *d == recycle),
                    "{err:?}"
                ),
                other => panic!("{other:?}"),
            }
        } else {
            assert!(took < expect + Duration::from_millis(500), "{took:?}");
            assert!(took >= expect, "{took:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Strict connection strings
// ---------------------------------------------------------------------------

fn invalid_part(s: &str) -> &'static str {
    match parse_config(s) {
        Err(ConfigError::Invalid { part, reason }) => {
            let e = ConfigError::Invalid { part, reason };
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!(
                    "invalid {part} in the PostgreSQL connection string"
                )),
                "{shown}"
            );
            part
        }
        other => panic!("{s:?}: expected ConfigError::Invalid, got {other:?}"),
    }
}

#[test]
fn lenient_connection_strings_are_rejected_naming_the_part() {
    assert_eq!(invalid_part("postgres://us%zzer@host/db"), "user");
    assert_eq!(invalid_part("postgres://u:pa%zss@host/db"), "password");
    assert_eq!(invalid_part("postgres://u@ho st/db"), "host");
    assert_eq!(invalid_part("postgres://u@ho%20st/db"), "host");
    assert_eq!(invalid_part("host='ho st'"), "host");
    assert_eq!(invalid_part("postgres://u@host/db#fragment"), "dbname");
    assert_eq!(invalid_part("postgres://u:p#w@host/db"), "password");
    assert_eq!(invalid_part("postgres://u@host/d%zzb"), "dbname");
    assert_eq!(
        invalid_part("postgres://u@host/db?application_name=a%zz"),
        "option value"
    );
    assert_eq!(invalid_part("postgres://u@host:0/db"), "port");
    assert_eq!(invalid_part("postgres://u@host/db?port=0"), "port");
    assert_eq!(invalid_part("host=h port=0"), "port");
    assert_eq!(invalid_part("postgres://u@a,,b/db"), "host");
    assert_eq!(invalid_part("host=a,,b"), "host");
    assert_eq!(invalid_part("postgres://u@host:/db"), "port");
    assert_eq!(invalid_part("postgres://h/db?options=a@b"), "option value");
    assert_eq!(invalid_part("="), "option name");
    assert_eq!(invalid_part("host=h =v"), "option name");
    assert_eq!(invalid_part("postgres://h/db?=v"), "option name");
    assert_eq!(invalid_part(""), "connection string");
    assert_eq!(invalid_part("   "), "connection string");
    assert!(PgManager::from_url("").is_err());
    // The password never appears in a message.
    let shown = parse_config("postgres://u:hunter2%zz@host/db")
        .expect_err("bad password")
        .to_string();
    assert!(!shown.contains("hunter2"), "{shown}");

    // What libpq accepts still parses.
    for good in [
        "postgres://u:p%40ss@host:5433/db?application_name=a%20b",
        "postgres://u@[::1]:5432/db",
        "postgres://%2Ftmp/db",
        "postgres:///db?host=/var/run/postgresql",
        "postgresql://u@h1:5432,h2:5433/db",
        "host=/tmp/my\\ dir port=5432",
        "host='/tmp/a b' dbname='x y'",
        "dbname=a#b",
        "postgres://",
        "host=h password='it''s'",
    ] {
        if let Err(e) = parse_config(good) {
            // `'it''s'` is not libpq quoting; only check the others.
            assert!(good.contains("''"), "{good:?}: {e:?}");
        }
    }
    let c = parse_config("postgres://u:p%40ss@host:5433/db?application_name=a%20b").expect("ok");
    assert_eq!(c.get_password(), Some(&b"p@ss"[..]));
    assert_eq!(c.get_application_name(), Some("a b"));
}

// ---------------------------------------------------------------------------
// 6. Connection errors are logged
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut fields = Fields(format!(
            "{} {}",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn a_failed_connection_is_logged_with_pool_server_and_error() {
    use tracing_subscriber::layer::SubscriberExt;
    let url = url_or_skip!();
    let _serial = serial().await;
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let app = "qs_log";
    let pool = manager(&url, app)
        .name("orders")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let client = pool.acquire().await.expect("acquire");
    let pid = backend_pid(&client).await;
    admin(&url)
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    let deadline = Instant::now() + Duration::from_secs(5);
    let port = parse_config(&url).expect("url").get_ports()[0];
    let line = loop {
        let found = captured
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("PostgreSQL connection failed"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no event: {:?}",
            captured.0.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(line.starts_with("WARN quickslot::postgres"), "{line}");
    assert!(line.contains("pool=orders"), "{line}");
    assert!(line.contains(&format!("server=127.0.0.1:{port}")), "{line}");
    assert!(line.contains("terminating connection"), "{line}");
    drop(client);
}

// ---------------------------------------------------------------------------
// 7. GenericClient
// ---------------------------------------------------------------------------

async fn add_and_count(db: &impl GenericClient, id: i32) -> i64 {
    db.execute_cached("INSERT INTO qs_generic VALUES ($1)", &[&id])
        .await
        .expect("insert");
    db.query_one("SELECT count(*) FROM qs_generic", &[])
        .await
        .expect("count")
        .get(0)
}

async fn nested<C: GenericClient>(db: &mut C) {
    let tx = db.transaction().await.expect("begin or savepoint");
    add_and_count(&tx, 100).await;
    drop(tx); // rolled back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_client_takes_a_pooled_client_a_client_or_a_transaction() {
    let url = url_or_skip!();
    let _serial = serial().await;
    admin(&url)
        .await
        .batch_execute("DROP TABLE IF EXISTS qs_generic; CREATE TABLE qs_generic (id int)")
        .await
        .expect("table");
    let pool = manager(&url, "qs_generic")
        .pool_builder()
        .max_size(1)
        .build()
        .expect("pool");
    let mut pooled = pool.acquire().await.expect("acquire");
    assert_eq!(add_and_count(&pooled, 1).await, 1);
    let client: &Client = &pooled;
    assert_eq!(add_and_count(client, 2).await, 2);
    {
        let mut tx = pooled.transaction().await.expect("begin");
        assert_eq!(add_and_count(&tx, 3).await, 3);
        nested(&mut tx).await; // a savepoint, rolled back
        assert_eq!(add_and_count(&tx, 4).await, 4);
        tx.commit().await.expect("commit");
    }
    nested(&mut pooled).await;
    nested(&mut *pooled).await;
    let n: i64 = GenericClient::query_one(&pooled, "SELECT count(*) FROM qs_generic", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 4);
    let pid: i32 = GenericClient::client(&pooled)
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("raw client")
        .get(0);
    assert!(pid > 0);
    let err = add_fails(&pooled).await;
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
}

async fn add_fails(db: &impl GenericClient) -> tokio_postgres::Error {
    db.simple_query("SELECT * FROM qs_no_such_table")
        .await
        .expect_err("no table")
}

/// Three tenant pools (up to 4 connections each) under one budget of 5
/// server connections: under load on every tenant the pools never hold
/// more than 5 connections, the server's count of their backends settles
/// at no more than 5 once the load stops, a busy tenant takes the
/// connections of idle ones, and every acquire is served.
///
/// While units move between tenants, the server may count a backend whose
/// connection a pool already closed (its I/O task and the backend process
/// end a moment after the unit came back) beside the one that replaced
/// it: a sample during the load may exceed 5 by at most the connections
/// closed so far, never by more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_pools_share_one_connection_budget() {
    let url = url_or_skip!();
    let _serial = serial().await;
    let admin = admin(&url).await;
    let budget = quickslot::Capacity::new(5);
    let apps = ["qs-tenant-a", "qs-tenant-b", "qs-tenant-c"];
    let pools: Vec<Pool> = apps
        .iter()
        .map(|app| {
            manager(&url, app)
                .pool_builder()
                .max_size(4)
                .capacity(&budget)
                .acquire_timeout(Duration::from_secs(20))
                .build()
                .unwrap()
        })
        .collect();
    let count_all = || async {
        let mut n = 0;
        for app in apps {
            n += backends(&admin, app).await;
        }
        n
    };
    // The count once backends of closed connections finished exiting (at
    // most 5 s): the first at or below `at_most`, else the last seen.
    let settled_to = |at_most: i64| {
        let count_all = &count_all;
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut n = count_all().await;
            while n > at_most && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                n = count_all().await;
            }
            n
        }
    };

    // Every tenant busy at once.
    let served = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for pool in &pools {
        for _ in 0..6 {
            let (pool, served) = (pool.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let client = pool.acquire().await.unwrap();
                    client.execute("SELECT pg_sleep(0.005)", &[]).await.unwrap();
                    served.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    let closed_so_far = || {
        pools
            .iter()
            .map(|p| {
                let d = p.status().discarded;
                d.reclaimed + d.broken + d.expired + d.recycle_failed + d.cancelled + d.panicked
            })
            .sum::<u64>()
    };
    while tasks.iter().any(|t| !t.is_finished()) {
        // Closed after the count, so every connection whose backend the
        // count may still have seen exiting is in it.
        let seen = count_all().await;
        let closed = closed_so_far();
        assert!(
            seen <= 5 + closed as i64,
            "{seen} backends for a budget of 5 with {closed} connections closed so far"
        );
        assert!(budget.in_use() <= 5);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 3 * 6 * 10);
    // Backends of closed connections finish exiting; nothing else may be
    // left above the budget.
    let settled = settled_to(5).await;
    assert!(
        settled <= 5,
        "{settled} backends for a budget of 5 after the load"
    );
    assert_eq!(
        pools.iter().map(|p| p.status().size).sum::<usize>(),
        budget.in_use()
    );

    // Tenant `a` alone: it takes the others' idle connections, up to its
    // own max_size.
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pools[0].acquire())).await;
    assert!(held.iter().all(Result::is_ok));
    assert_eq!(pools[0].status().size, 4);
    assert!(budget.in_use() <= 5);
    drop(held);
    for p in &pools {
        p.close();
    }
    assert_eq!(budget.in_use(), 0);
    assert_eq!(settled_to(0).await, 0, "every connection closed");
}
