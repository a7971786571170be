#![cfg(feature = "postgres")]
//! Integration tests of the PostgreSQL adapter against a real server.
//!
//! Run with `scripts/with-postgres cargo test --features postgres --test postgres`.
//! The server comes from `QUICKSLOT_PG_URL`; without it the tests print a
//! note and pass locally, but fail when `CI` is set. `QUICKSLOT_SKIP_PG=1`
//! skips them everywhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickslot::postgres::{parse_config, PgError, PgManager, Pool, PooledClient, RecyclingMethod};
use quickslot::Error;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use quickslot_testkit::pg_url;

macro_rules! url_or_skip {
    () => {
        match pg_url() {
            Some(url) => url,
            None => return,
        }
    };
}

fn manager(url: &str) -> PgManager {
    PgManager::from_url(url).expect("QUICKSLOT_PG_URL parses")
}

fn pool_with(manager: PgManager, max_size: usize) -> Pool {
    manager
        .pool_builder()
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .expect("valid pool settings")
}

/// An unpooled admin connection.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    client
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get(0)
}

/// Whether the session is inside an explicit transaction block
/// (errors when the block is aborted).
async fn in_transaction(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let messages = client
        .simple_query("SELECT transaction_timestamp() <> statement_timestamp()")
        .await?;
    Ok(messages
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))))
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Creates a fresh table `name (id int primary key, v text)`.
async fn fresh_table(url: &str, name: &str) {
    admin(url)
        .await
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, v text)"
        ))
        .await
        .expect("create table");
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

fn server_port(url: &str) -> u16 {
    let config = parse_config(url).expect("url parses");
    config.get_ports().first().copied().unwrap_or(5432)
}

const ALL_METHODS: [RecyclingMethod; 3] = [
    RecyclingMethod::Fast,
    RecyclingMethod::Verified,
    RecyclingMethod::Clean,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_a_small_pool() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url), 4);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..32i32 {
        let pool = pool.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..10i32 {
                let client = pool.acquire().await.expect("acquire");
                let row = client
                    .query_one_cached("SELECT $1::int4 * 1000 + $2::int4", &[&i, &j])
                    .await
                    .expect("query");
                assert_eq!(row.get::<_, i32>(0), i * 1000 + j);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(done.load(Ordering::Relaxed), 320);
    let status = pool.status();
    assert!(status.size <= 4, "{status:?}");
    assert_eq!(status.in_use, 0, "{status:?}");
    assert_eq!(status.created, status.size as u64, "{status:?}");
    let stats = pool.manager().statement_cache_stats();
    assert_eq!(stats.hits + stats.misses, 320);
    assert_eq!(stats.misses, status.created, "one miss per connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_work_through_the_pooled_client() {
    let url = url_or_skip!();
    fresh_table(&url, "qs_tx_basic").await;
    let pool = pool_with(manager(&url), 2);

    let mut client = pool.acquire().await.expect("acquire");
    let tx = client.transaction().await.expect("begin");
    tx.execute("INSERT INTO qs_tx_basic VALUES (1, 'a')", &[])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await
        .expect("begin serializable");
    let level: String = tx
        .query_one("SHOW transaction_isolation", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(level, "serializable");
    tx.execute_cached("INSERT INTO qs_tx_basic VALUES ($1, 'b')", &[&2i32])
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");

    // Savepoints through DerefMut to tokio_postgres::Transaction.
    let mut tx = client.transaction().await.expect("begin");
    {
        let sp = tx.savepoint("sp1").await.expect("savepoint");
        sp.execute("INSERT INTO qs_tx_basic VALUES (3, 'c')", &[])
            .await
            .expect("insert");
        // dropped: rolled back to the savepoint
    }
    tx.execute("INSERT INTO qs_tx_basic VALUES (4, 'd')", &[])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let ids: Vec<i32> = client
        .query("SELECT id FROM qs_tx_basic ORDER BY id", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 4]);
    assert!(!in_transaction(&client).await.expect("state"));
}

/// A `Transaction` dropped without commit is rolled back before the next
/// user runs anything, and the connection is kept, in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_transaction_never_leaks_in_any_mode() {
    let url = url_or_skip!();
    for (i, method) in ALL_METHODS.into_iter().enumerate() {
        let table = format!("qs_tx_drop_{i}");
        fresh_table(&url, &table).await;
        let pool = pool_with(manager(&url).recycling_method(method), 1);

        let mut client = pool.acquire().await.expect("acquire");
        let pid = backend_pid(&client).await;
        let tx = client.transaction().await.expect("begin");
        tx.execute(&format!("INSERT INTO {table} VALUES (1, 'x')"), &[])
            .await
            .expect("insert");
        drop(tx);
        drop(client);

        let client = pool.acquire().await.expect("reacquire");
        assert_eq!(
            backend_pid(&client).await,
            pid,
            "{method:?}: connection kept"
        );
        assert!(!in_transaction(&client).await.expect("state"), "{method:?}");
        assert_eq!(count(&client, &table).await, 0, "{method:?}");
        drop(client);
        assert_eq!(pool.status().discarded.broken, 0, "{method:?}");
    }
}

/// Dropping a client while a query inside a transaction is still running
/// (a cancelled request future) must not leak the transaction either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_cancelled_mid_query_never_leaks() {
    let url = url_or_skip!();
    for (i, method) in ALL_METHODS.into_iter().enumerate() {
        let table = format!("qs_tx_cancel_{i}");
        fresh_table(&url, &table).await;
        let pool = pool_with(manager(&url).recycling_method(method), 1);

        let mut client = pool.acquire().await.expect("acquire");
        let tx = client.transaction().await.expect("begin");
        tx.execute(&format!("INSERT INTO {table} VALUES (1, 'x')"), &[])
            .await
            .expect("insert");
        let slow = tokio::time::timeout(
            Duration::from_millis(20),
            tx.execute("SELECT pg_sleep(0.3)", &[]),
        )
        .await;
        assert!(slow.is_err(), "the sleep was cut short");
        drop(tx);
        drop(client);

        let client = pool.acquire().await.expect("reacquire");
        assert!(!in_transaction(&client).await.expect("state"), "{method:?}");
        assert_eq!(count(&client, &table).await, 0, "{method:?}");
    }
}

/// A leaked tracked transaction (`mem::forget`, so no ROLLBACK is queued)
/// makes the connection broken: it is discarded on return in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_transaction_discards_the_connection_in_any_mode() {
    let url = url_or_skip!();
    for (i, method) in ALL_METHODS.into_iter().enumerate() {
        let table = format!("qs_tx_leak_{i}");
        fresh_table(&url, &table).await;
        let pool = pool_with(manager(&url).recycling_method(method), 1);

        let mut client = pool.acquire().await.expect("acquire");
        let pid = backend_pid(&client).await;
        let tx = client.transaction().await.expect("begin");
        tx.execute(&format!("INSERT INTO {table} VALUES (1, 'x')"), &[])
            .await
            .expect("insert");
        std::mem::forget(tx);
        drop(client);

        let status = pool.status();
        assert_eq!(status.discarded.broken, 1, "{method:?}: {status:?}");
        assert_eq!(status.size, 0, "{method:?}: {status:?}");

        let client = pool.acquire().await.expect("reacquire");
        assert_ne!(backend_pid(&client).await, pid, "{method:?}");
        assert!(!in_transaction(&client).await.expect("state"), "{method:?}");
        assert_eq!(count(&client, &table).await, 0, "{method:?}");
    }
}

/// Raw-SQL transactions (open or aborted) are rolled back on checkout by
/// `Verified` (when its check runs) and `Clean`, keeping the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_transactions_are_rolled_back_by_verified_and_clean() {
    let url = url_or_skip!();
    let methods = [
        (RecyclingMethod::Verified, "verified"),
        (RecyclingMethod::Clean, "clean"),
    ];
    for (method, name) in methods {
        let table = format!("qs_raw_{name}");
        fresh_table(&url, &table).await;
        let pool = pool_with(
            manager(&url)
                .recycling_method(method)
                .verify_window(Duration::ZERO),
            1,
        );

        // Open transaction.
        let client = pool.acquire().await.expect("acquire");
        let pid = backend_pid(&client).await;
        client
            .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1, 'x')"))
            .await
            .expect("raw begin");
        assert!(in_transaction(&client).await.expect("state"));
        drop(client);

        let client = pool.acquire().await.expect("reacquire");
        assert_eq!(backend_pid(&client).await, pid, "{method:?}");
        assert!(!in_transaction(&client).await.expect("state"), "{method:?}");
        assert_eq!(count(&client, &table).await, 0, "{method:?}");

        // Aborted transaction.
        client.batch_execute("BEGIN").await.expect("begin");
        let err = client
            .batch_execute("SELECT 1/0")
            .await
            .expect_err("division by zero");
        assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
        assert!(in_transaction(&client).await.is_err(), "aborted block");
        drop(client);

        let client = pool.acquire().await.expect("reacquire");
        assert_eq!(backend_pid(&client).await, pid, "{method:?}");
        assert!(!in_transaction(&client).await.expect("state"), "{method:?}");
        assert_eq!(pool.status().recycle_failures, 0, "{method:?}");
    }
}

/// `Verified` skips its round trip for a connection returned within the
/// window (observable: a raw `BEGIN` is then still open), and checks it
/// once the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_skips_the_check_within_its_window() {
    let url = url_or_skip!();
    let pool = pool_with(
        manager(&url)
            .recycling_method(RecyclingMethod::Verified)
            .verify_window(Duration::from_secs(30)),
        1,
    );
    let client = pool.acquire().await.expect("acquire");
    client.batch_execute("BEGIN").await.expect("begin");
    drop(client);
    let client = pool.acquire().await.expect("reacquire");
    assert!(
        in_transaction(&client).await.expect("state"),
        "within the window the check is skipped"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    drop(client);

    let pool = pool_with(
        manager(&url)
            .recycling_method(RecyclingMethod::Verified)
            .verify_window(Duration::from_millis(50)),
        1,
    );
    let client = pool.acquire().await.expect("acquire");
    client.batch_execute("BEGIN").await.expect("begin");
    drop(client);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let client = pool.acquire().await.expect("reacquire");
    assert!(
        !in_transaction(&client).await.expect("state"),
        "after the window the check runs and rolls back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_resets_session_state_but_keeps_cached_statements() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url).recycling_method(RecyclingMethod::Clean), 1);
    let client = pool.acquire().await.expect("acquire");
    let pid = backend_pid(&client).await;
    let default_path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0);
    let stmt = client
        .prepare_cached("SELECT $1::int4 + 1")
        .await
        .expect("prepare");
    client
        .batch_execute(
            "SET search_path = pg_catalog; \
             SET statement_timeout = 1234; \
             SELECT pg_advisory_lock(42); \
             LISTEN qs_channel; \
             CREATE TEMP TABLE qs_temp (a int); \
             BEGIN; DECLARE qs_cursor CURSOR WITH HOLD FOR SELECT 1; COMMIT;",
        )
        .await
        .expect("dirty the session");
    // The state really is there before the reset.
    let dirty: (i64, i64, i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                         AND pid = pg_backend_pid()), \
                        (SELECT count(*) FROM pg_listening_channels()), \
                        (SELECT count(*) FROM pg_cursors WHERE name = 'qs_cursor'), \
                        (SELECT count(*) FROM pg_class WHERE relname = 'qs_temp')",
                &[],
            )
            .await
            .expect("inspect");
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    assert_eq!(dirty, (1, 1, 1, 1));
    drop(stmt);
    drop(client);

    let client = pool.acquire().await.expect("reacquire");
    assert_eq!(backend_pid(&client).await, pid, "same connection");
    let path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(path, default_path);
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "0");
    let locks: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("locks")
        .get(0);
    assert_eq!(locks, 0);
    let channels: i64 = client
        .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
        .await
        .expect("channels")
        .get(0);
    assert_eq!(channels, 0);
    let cursors: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_cursors WHERE name = 'qs_cursor'",
            &[],
        )
        .await
        .expect("cursors")
        .get(0);
    assert_eq!(cursors, 0);
    let temp = client
        .query_opt("SELECT to_regclass('pg_temp.qs_temp')::text", &[])
        .await
        .expect("temp")
        .and_then(|r| r.get::<_, Option<String>>(0));
    assert_eq!(temp, None, "temporary table dropped");

    // The cached statement survived (cache hit, and the server still has it).
    let before = client.statement_cache_stats();
    let row = client
        .query_one_cached("SELECT $1::int4 + 1", &[&41i32])
        .await
        .expect("cached statement still valid");
    assert_eq!(row.get::<_, i32>(0), 42);
    let after = client.statement_cache_stats();
    assert_eq!(after.hits, before.hits + 1);
    assert_eq!(after.misses, before.misses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_cache_is_a_bounded_lru_with_counts() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url).statement_cache_capacity(2), 1);
    let client = pool.acquire().await.expect("acquire");
    let q1 = "SELECT 1::int4";
    let q2 = "SELECT 2::int4";
    let q3 = "SELECT 3::int4";
    client.prepare_cached(q1).await.expect("q1"); // miss
    client.prepare_cached(q2).await.expect("q2"); // miss
    client.prepare_cached(q1).await.expect("q1"); // hit, q2 now oldest
    client.prepare_cached(q3).await.expect("q3"); // miss, evicts q2
    let s = client.statement_cache_stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.len), (1, 3, 1, 2));
    client.prepare_cached(q1).await.expect("q1"); // hit
    client.prepare_cached(q2).await.expect("q2"); // miss, evicts q3
    let s = client.statement_cache_stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.len), (2, 4, 2, 2));

    // Typed variants are cached per type list.
    use tokio_postgres::types::Type;
    client
        .prepare_typed_cached("SELECT $1", &[Type::INT4])
        .await
        .expect("typed");
    client
        .prepare_typed_cached("SELECT $1", &[Type::TEXT])
        .await
        .expect("typed");
    client
        .prepare_typed_cached("SELECT $1", &[Type::TEXT])
        .await
        .expect("typed");
    let s = client.statement_cache_stats();
    assert_eq!((s.hits, s.misses), (3, 6));
    assert_eq!(s.len, 2);

    let total = pool.manager().statement_cache_stats();
    assert_eq!((total.hits, total.misses, total.evictions), (3, 6, 4));

    // Capacity 0 disables caching.
    let pool0 = pool_with(manager(&url).statement_cache_capacity(0), 1);
    let c0 = pool0.acquire().await.expect("acquire");
    c0.prepare_cached(q1).await.expect("q1");
    c0.prepare_cached(q1).await.expect("q1");
    let s = c0.statement_cache_stats();
    assert_eq!((s.hits, s.misses, s.len), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cached_plan_is_prepared_again_and_retried_once() {
    let url = url_or_skip!();
    admin(&url)
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS qs_stale; CREATE TABLE qs_stale (a int); \
             INSERT INTO qs_stale VALUES (1)",
        )
        .await
        .expect("setup");
    let pool = pool_with(manager(&url), 1);
    let mut client = pool.acquire().await.expect("acquire");
    let rows = client
        .query_cached("SELECT * FROM qs_stale", &[])
        .await
        .expect("query");
    assert_eq!(rows[0].len(), 1);

    admin(&url)
        .await
        .batch_execute("ALTER TABLE qs_stale ADD COLUMN b int DEFAULT 7")
        .await
        .expect("alter");

    // The cached plan is now stale: the server answers 0A000, the client
    // prepares again and retries once, transparently.
    let rows = client
        .query_cached("SELECT * FROM qs_stale", &[])
        .await
        .expect("retried query");
    assert_eq!(rows[0].len(), 2);
    assert_eq!(rows[0].get::<_, i32>(1), 7);
    let s = client.statement_cache_stats();
    assert_eq!(s.invalidations, 1);
    assert_eq!(s.misses, 2);

    // The same through the other helpers.
    admin(&url)
        .await
        .batch_execute("ALTER TABLE qs_stale ADD COLUMN c int DEFAULT 8")
        .await
        .expect("alter");
    let row = client
        .query_one_cached("SELECT * FROM qs_stale", &[])
        .await
        .expect("retried query_one");
    assert_eq!(row.len(), 3);
    assert_eq!(client.statement_cache_stats().invalidations, 2);

    // Inside a transaction the error aborts it: no retry, the entry is
    // dropped, and a new transaction works.
    admin(&url)
        .await
        .batch_execute("ALTER TABLE qs_stale ADD COLUMN d int DEFAULT 9")
        .await
        .expect("alter");
    let tx = client.transaction().await.expect("begin");
    let err = tx
        .query_cached("SELECT * FROM qs_stale", &[])
        .await
        .expect_err("stale plan inside a transaction");
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    drop(tx);
    assert_eq!(client.statement_cache_stats().invalidations, 3);
    let tx = client.transaction().await.expect("begin");
    let rows = tx
        .query_cached("SELECT * FROM qs_stale", &[])
        .await
        .expect("fresh statement");
    assert_eq!(rows[0].len(), 4);
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_statement_caches_reaches_every_connection() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url), 2);
    let a = pool.acquire().await.expect("a");
    let b = pool.acquire().await.expect("b");
    a.prepare_cached("SELECT 1").await.expect("prepare");
    b.prepare_cached("SELECT 1").await.expect("prepare");
    assert_eq!(a.statement_cache_stats().len, 1);
    drop(a);

    pool.manager().clear_statement_caches();
    // Checked out while clearing: noticed on the next lookup.
    b.prepare_cached("SELECT 1").await.expect("prepare");
    assert_eq!(b.statement_cache_stats().misses, 2);
    drop(b);

    // Idle while clearing: empty on the next look. `b` cached "SELECT 1"
    // again after the clear.
    let a = pool.acquire().await.expect("a again");
    let b = pool.acquire().await.expect("b again");
    let mut lens = [a.statement_cache_stats().len, b.statement_cache_stats().len];
    lens.sort_unstable();
    assert_eq!(lens, [0, 1]);
    let misses_before = pool.manager().statement_cache_stats().misses;
    for c in [&a, &b] {
        c.prepare_cached("SELECT 2").await.expect("prepare");
    }
    assert_eq!(
        pool.manager().statement_cache_stats().misses,
        misses_before + 2
    );
    // Through the explicit per-connection call too.
    a.clear_statement_cache();
    assert_eq!(a.statement_cache_stats().len, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_connect_hooks_run_on_every_new_connection() {
    let url = url_or_skip!();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let pool = pool_with(
        manager(&url)
            .after_connect_sql("SET search_path = qs_hook_schema, public; SET work_mem = '7MB'")
            .after_connect(move |client| {
                let counter = counter.clone();
                Box::pin(async move {
                    let mem: String = client.query_one("SHOW work_mem", &[]).await?.get(0);
                    if mem != "7MB" {
                        return Err(format!("hooks out of order: work_mem = {mem}").into());
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            }),
        2,
    );
    let a = pool.acquire().await.expect("a");
    let b = pool.acquire().await.expect("b");
    for c in [&a, &b] {
        let path: String = c
            .query_one("SHOW search_path", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(path, "qs_hook_schema, public");
    }
    drop((a, b));
    let _c = pool.acquire().await.expect("reuse");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "once per new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_after_connect_hook_is_a_typed_create_error() {
    let url = url_or_skip!();
    let pool = pool_with(
        manager(&url).after_connect_sql("SELECT qs_no_such_function()"),
        2,
    );
    let started = Instant::now();
    match pool.acquire().await {
        Err(Error::Create(PgError::AfterConnect(e))) => {
            let pg = e
                .downcast_ref::<tokio_postgres::Error>()
                .expect("SQL hooks fail with a tokio_postgres::Error");
            assert_eq!(pg.code(), Some(&SqlState::UNDEFINED_FUNCTION));
            let shown = chain_text(&PgError::AfterConnect(e));
            assert!(shown.contains("qs_no_such_function"), "{shown}");
        }
        Err(e) => panic!("expected an after_connect error, got {e:?}"),
        Ok(_) => panic!("expected an after_connect error, got a connection"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let status = pool.status();
    assert_eq!(status.size, 0, "{status:?}");
    assert_eq!(status.create_errors, 1, "{status:?}");

    let pool = pool_with(
        manager(&url).after_connect(|_client| Box::pin(async { Err("refused by hook".into()) })),
        1,
    );
    match pool.acquire().await {
        Err(Error::Create(err @ PgError::AfterConnect(_))) => {
            let shown = chain_text(&err);
            assert_eq!(shown, "the after_connect hook failed: refused by hook");
        }
        Err(e) => panic!("expected an after_connect error, got {e:?}"),
        Ok(_) => panic!("expected an after_connect error, got a connection"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_promptly_with_the_servers_message() {
    let url = url_or_skip!();
    let mut config = parse_config(&url).expect("url");
    config.password("definitely-wrong");
    let pool = pool_with(PgManager::from_config(config), 2);
    let started = Instant::now();
    let err = match pool.acquire().await {
        Err(Error::Create(e)) => e,
        Err(e) => panic!("expected a create error, got {e:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let PgError::Connect(pg) = &err else {
        panic!("expected Error::Connect, got {err:?}");
    };
    assert_eq!(pg.code(), Some(&SqlState::INVALID_PASSWORD));
    let shown = chain_text(&err);
    assert!(
        shown.contains("password authentication failed"),
        "message should carry the server's text: {shown}"
    );
    let status = pool.status();
    assert_eq!((status.size, status.create_errors), (0, 1), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_or_wrong_port_fails_promptly() {
    let url = url_or_skip!();
    let config = parse_config(&url).expect("url");
    let port = dead_port();
    let mut only_dead = tokio_postgres::Config::new();
    only_dead
        .host("127.0.0.1")
        .port(port)
        .user(config.get_user().unwrap_or("quickslot"))
        .password("secret");
    let pool = pool_with(PgManager::from_config(only_dead), 2);
    let started = Instant::now();
    let err = match pool.acquire().await {
        Err(Error::Create(e)) => e,
        Err(e) => panic!("expected a create error, got {e:?}"),
        Ok(_) => panic!("connected to a dead port"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, PgError::Connect(_)), "{err:?}");
    let shown = chain_text(&err);
    let target = format!("could not connect to PostgreSQL at 127.0.0.1:{port}");
    assert!(shown.starts_with(&target), "names where it tried: {shown}");
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    // The pool's error adds its own message and shows the cause once.
    let pool_err = Error::Create(err);
    let shown = chain_text(&pool_err);
    assert!(shown.starts_with("creating a pooled resource failed: could not connect"));
    assert_eq!(shown.matches("refused").count(), 1, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_host_config_fails_over_to_a_live_host() {
    let url = url_or_skip!();
    let live = parse_config(&url).expect("url");
    let port = server_port(&url);
    let user = live.get_user().expect("user in url").to_owned();
    let password = String::from_utf8(live.get_password().expect("password in url").to_vec())
        .expect("utf-8 password");
    let db = live.get_dbname().unwrap_or(&user).to_owned();

    // URL form: dead host first.
    let multi = format!(
        "postgres://{user}:{password}@127.0.0.1:{},127.0.0.1:{port}/{db}",
        dead_port()
    );
    let pool = pool_with(manager(&multi), 2);
    let client = pool.acquire().await.expect("failover to the second host");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(one, 1);
    drop(client);

    // key=value form.
    let kv = format!(
        "host=127.0.0.1,127.0.0.1 port={},{port} user={user} password={password} dbname={db}",
        dead_port()
    );
    let pool = pool_with(manager(&kv), 2);
    let client = pool.acquire().await.expect("failover to the second host");
    assert!(!client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced_and_counts_stay_right() {
    let url = url_or_skip!();
    for method in ALL_METHODS {
        let pool = pool_with(manager(&url).recycling_method(method), 4);
        let admin = admin(&url).await;

        // Four idle connections.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire().await.expect("acquire"));
        }
        let mut pids = Vec::new();
        for c in &held {
            pids.push(backend_pid(c).await);
        }
        drop(held);
        assert_eq!(pool.status().idle, 4);

        for pid in &pids {
            let ok: bool = admin
                .query_one("SELECT pg_terminate_backend($1)", &[pid])
                .await
                .expect("terminate")
                .get(0);
            assert!(ok);
        }
        wait_until_gone(&admin, &pids).await;

        // Every next acquire gets a fresh, working connection.
        let mut held = Vec::new();
        for _ in 0..4 {
            let c = pool.acquire().await.expect("fresh connection");
            let pid = backend_pid(&c).await;
            assert!(
                !pids.contains(&pid),
                "{method:?}: got a terminated connection"
            );
            held.push(c);
        }
        let status = pool.status();
        assert_eq!(status.size, 4, "{method:?}: {status:?}");
        assert_eq!(status.in_use, 4, "{method:?}: {status:?}");
        assert_eq!(status.created, 8, "{method:?}: {status:?}");
        assert_eq!(
            status.discarded.recycle_failed + status.discarded.broken,
            4,
            "{method:?}: {status:?}"
        );

        // A connection terminated while checked out: the query fails, and
        // the connection is discarded when it comes back.
        let victim = held.pop().expect("one held");
        let pid = backend_pid(&victim).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
        wait_until_gone(&admin, &[pid]).await;
        let err = victim
            .query_one("SELECT 1", &[])
            .await
            .expect_err("query on a terminated backend");
        assert!(
            err.is_closed() || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
            "{err:?}"
        );
        let broken_before = pool.status().discarded.broken;
        drop(victim);
        let status = pool.status();
        assert_eq!(status.discarded.broken, broken_before + 1, "{status:?}");
        assert_eq!(status.size, 3, "{status:?}");
        drop(held);
        let status = pool.status();
        assert_eq!(
            (status.size, status.idle, status.in_use),
            (3, 3, 0),
            "{status:?}"
        );
    }
}

async fn wait_until_gone(admin: &tokio_postgres::Client, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if alive == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backends did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the clients' connection tasks read the EOF.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_passes_through_and_the_connection_stays_usable() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url), 1);
    let client = pool.acquire().await.expect("acquire");
    let pid = backend_pid(&client).await;
    client
        .batch_execute("SET statement_timeout = 50")
        .await
        .expect("set");
    let err = client
        .query_cached("SELECT pg_sleep(2)", &[])
        .await
        .expect_err("statement timeout");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    assert!(err
        .as_db_error()
        .expect("db error")
        .message()
        .contains("statement timeout"));
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("usable")
        .get(0);
    assert_eq!(one, 1);
    drop(client);
    let client = pool.acquire().await.expect("reacquire");
    assert_eq!(backend_pid(&client).await, pid, "kept in the pool");
    assert_eq!(pool.status().discarded.broken, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_errors_pass_through_and_the_connection_stays_usable() {
    let url = url_or_skip!();
    fresh_table(&url, "qs_unique").await;
    let pool = pool_with(manager(&url), 1);
    let client = pool.acquire().await.expect("acquire");
    let pid = backend_pid(&client).await;
    client
        .execute_cached("INSERT INTO qs_unique VALUES ($1, 'a')", &[&1i32])
        .await
        .expect("first insert");
    let err = client
        .execute_cached("INSERT INTO qs_unique VALUES ($1, 'a')", &[&1i32])
        .await
        .expect_err("duplicate key");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let db = err.as_db_error().expect("db error");
    assert_eq!(db.constraint(), Some("qs_unique_pkey"));
    assert_eq!(db.table(), Some("qs_unique"));
    client
        .execute_cached("INSERT INTO qs_unique VALUES ($1, 'a')", &[&2i32])
        .await
        .expect("usable");
    drop(client);
    let client = pool.acquire().await.expect("reacquire");
    assert_eq!(backend_pid(&client).await, pid);
    assert_eq!(count(&client, "qs_unique").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_from_pg_environment_connects() {
    let url = url_or_skip!();
    let config = parse_config(&url).expect("url");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = server_port(&url).to_string();
    let user = config.get_user().expect("user").to_owned();
    let password =
        String::from_utf8(config.get_password().expect("password").to_vec()).expect("utf-8");
    let db = config.get_dbname().unwrap_or(&user).to_owned();
    let env = std::collections::HashMap::from([
        ("PGHOST", host),
        ("PGPORT", port),
        ("PGUSER", user),
        ("PGPASSWORD", password),
        ("PGDATABASE", db),
        ("PGAPPNAME", "quickslot-env-test".to_owned()),
        ("PGCONNECT_TIMEOUT", "5".to_owned()),
        ("PGSSLMODE", "disable".to_owned()),
        ("PGOPTIONS", "-c work_mem=5MB".to_owned()),
    ]);
    let config = quickslot::postgres::config_from_env_map(|k| env.get(k).cloned()).expect("env");
    let pool = pool_with(PgManager::from_config(config), 1);
    let client: PooledClient = pool.acquire().await.expect("acquire");
    let app: String = client
        .query_one("SHOW application_name", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(app, "quickslot-env-test");
    let mem: String = client
        .query_one("SHOW work_mem", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(mem, "5MB");
}

/// Closing the pool drops its idle connections (their backends exit) and
/// later acquires report `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pool_connections_are_dropped_and_pool_close_works() {
    let url = url_or_skip!();
    let pool = pool_with(manager(&url), 2);
    let a = pool.acquire().await.expect("a");
    let pid = backend_pid(&a).await;
    drop(a);
    pool.close();
    assert!(matches!(pool.acquire().await, Err(Error::Closed)));
    let admin = admin(&url).await;
    wait_until_gone(&admin, &[pid]).await;
}

/// Every message of an error chain, joined as anyhow's `{:#}` shows them.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
