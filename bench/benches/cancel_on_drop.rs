//! Cancel on drop: how long the next user of a connection waits after a
//! query on it was dropped mid-flight, for quickslot's adapter,
//! deadpool-postgres and bb8-postgres in one run; and how long quickslot's
//! `Listener` takes to come back after its backend is terminated.
//!
//! ```text
//! scripts/with-postgres cargo bench -p quickslot-bench --features postgres --bench cancel_on_drop
//! scripts/with-postgres cargo bench -p quickslot-bench --features postgres --bench cancel_on_drop -- --rounds 5
//! ```
//!
//! Each pool has one connection and its default settings. One round: a
//! request runs `SELECT pg_sleep(5)` under `tokio::time::timeout(100 ms)`,
//! the timeout drops the query future, the client goes back to the pool;
//! then the next user acquires and runs `SELECT 1`, and its wait (acquire +
//! query) is the figure. quickslot runs `--rounds` x 4 rounds (20 by
//! default), the others `--rounds` (5), since each of theirs takes the
//! sleep's full 4.9 s.
//!
//! The listener figure: `pg_terminate_backend` of the listener's backend,
//! to the `Reconnected` event (a new connection with authentication, and
//! the `LISTEN` again), over 10 rounds.
//!
//! The same over TLS: `bench/tls-check` (its own crate, as it needs
//! openssl's development files).
//!
//! Without `QUICKSLOT_PG_URL` it prints how to run it and exits successfully.

use std::time::{Duration, Instant};

use quickslot::postgres::{parse_config, tokio_postgres, Config, ListenerEvent, NoTls, PgManager};

fn summary(name: &str, mut waits: Vec<Duration>) -> String {
    waits.sort();
    let at = |p: f64| waits[((waits.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        waits.len(),
        waits[0].as_secs_f64() * 1e3,
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        waits[waits.len() - 1].as_secs_f64() * 1e3,
    )
}

const SLEEP: &str = "SELECT pg_sleep(5)";
const CUT: Duration = Duration::from_millis(100);

async fn quickslot_round(pool: &quickslot::postgres::Pool) -> Duration {
    let client = pool.acquire().await.expect("acquire");
    let cut = tokio::time::timeout(CUT, client.query(SLEEP, &[])).await;
    assert!(cut.is_err(), "the sleep finished?");
    drop(client);
    let t0 = Instant::now();
    let next = pool.acquire().await.expect("next acquire");
    next.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    t0.elapsed()
}

async fn deadpool_round(pool: &deadpool_postgres::Pool) -> Duration {
    let client = pool.get().await.expect("get");
    let cut = tokio::time::timeout(CUT, client.query(SLEEP, &[])).await;
    assert!(cut.is_err(), "the sleep finished?");
    drop(client);
    let t0 = Instant::now();
    let next = pool.get().await.expect("next get");
    next.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    t0.elapsed()
}

async fn bb8_round(pool: &bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>) -> Duration {
    let client = pool.get().await.expect("get");
    let cut = tokio::time::timeout(CUT, client.query(SLEEP, &[])).await;
    assert!(cut.is_err(), "the sleep finished?");
    drop(client);
    let t0 = Instant::now();
    let next = pool.get().await.expect("next get");
    next.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    t0.elapsed()
}

async fn listener_rounds(config: &Config, url: &str, rounds: usize) -> Vec<Duration> {
    let mut config = config.clone();
    config.application_name("qs_bench_listener");
    let mut listener = PgManager::from_config(config).listener();
    listener.listen("bench").await.expect("listen");
    let (admin, connection) = tokio_postgres::connect(url, NoTls).await.expect("admin");
    tokio::spawn(connection);
    let mut took = Vec::new();
    for _ in 0..rounds {
        let pid: i32 = admin
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'qs_bench_listener'",
                &[],
            )
            .await
            .expect("the listener's backend")
            .get(0);
        let t0 = Instant::now();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
        loop {
            match tokio::time::timeout(Duration::from_secs(10), listener.recv()).await {
                Ok(Some(ListenerEvent::Reconnected(_))) => break,
                Ok(Some(_)) => {}
                other => panic!("listener: {other:?}"),
            }
        }
        took.push(t0.elapsed());
        admin
            .batch_execute("NOTIFY bench, 'back'")
            .await
            .expect("notify");
        match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
            Ok(Some(ListenerEvent::Notification(n))) => assert_eq!(n.payload(), "back"),
            other => panic!("after the reconnect: {other:?}"),
        }
    }
    listener.close().await;
    took
}

fn main() {
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--rounds N");
        }
    }
    let Ok(url) = std::env::var("QUICKSLOT_PG_URL") else {
        eprintln!(
            "QUICKSLOT_PG_URL is not set; run: scripts/with-postgres \
             cargo bench -p quickslot-bench --features postgres --bench cancel_on_drop"
        );
        return;
    };
    let config = parse_config(&url).expect("QUICKSLOT_PG_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let quickslot = PgManager::from_config(config.clone())
            .pool_builder()
            .max_size(1)
            .build()
            .expect("quickslot pool");
        let deadpool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            config.clone(),
            NoTls,
            deadpool_postgres::ManagerConfig::default(),
        ))
        .max_size(1)
        .build()
        .expect("deadpool pool");
        let bb8 = bb8::Pool::builder()
            .max_size(1)
            .build(bb8_postgres::PostgresConnectionManager::new(
                config.clone(),
                NoTls,
            ))
            .await
            .expect("bb8 pool");

        // Warm each pool (its one connection made) before measuring.
        drop(quickslot.acquire().await.expect("warm quickslot"));
        drop(deadpool.get().await.expect("warm deadpool"));
        drop(bb8.get().await.expect("warm bb8"));

        let (mut q, mut d, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for _ in 0..4 {
                q.push(quickslot_round(&quickslot).await);
            }
            d.push(deadpool_round(&deadpool).await);
            b.push(bb8_round(&bb8).await);
            eprintln!(
                "round {}/{rounds}: quickslot {:?}, deadpool-postgres {:?}, bb8-postgres {:?}",
                round + 1,
                q[q.len() - 1],
                d[d.len() - 1],
                b[b.len() - 1]
            );
        }
        let made = quickslot.status().created;
        println!(
            "Next user's wait (acquire + `SELECT 1`) after a `pg_sleep(5)` dropped at 100 ms, \
             pool of 1, default settings:\n"
        );
        println!("| pool | rounds | min | p50 | p90 | max |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!("{}", summary("quickslot", q));
        println!("{}", summary("deadpool-postgres", d));
        println!("{}", summary("bb8-postgres", b));
        println!(
            "\nquickslot made {made} connection(s) for its {} rounds (1: the connection was \
             cancelled and reused every time, not replaced).\n",
            rounds * 4
        );
        let took = listener_rounds(&config, &url, 10).await;
        println!("Listener, `pg_terminate_backend` to `Reconnected` (re-subscribed):\n");
        println!("| listener | rounds | min | p50 | p90 | max |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!("{}", summary("quickslot", took));
    });
}
