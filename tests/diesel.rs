#![cfg(feature = "diesel")]
//! Integration tests of the Diesel adapter: SQLite (bundled, on temporary
//! files) always, PostgreSQL against the server in `QUICKSLOT_PG_URL`.
//!
//! Run with `scripts/with-postgres cargo test --features diesel --test diesel`.
//! Without `QUICKSLOT_PG_URL` the PostgreSQL tests print a note and pass
//! locally, but fail when `CI` is set. `QUICKSLOT_SKIP_PG=1` skips them
//! everywhere.
//!
//! The concurrency tests share one pool between tasks or threads, with no
//! mutex anywhere in the test: the pool is what keeps them apart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::TransactionManager;
use diesel::connection::{AnsiTransactionManager, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::{PgConnection, SqliteConnection};
use quickslot::diesel::{
    ConfigError, DieselError, DieselManager, InteractError, Pool, RecyclingMethod,
};
use quickslot::Error;

diesel::table! {
    /// One row per (task, step): what the concurrency tests save and load.
    state (task, step) {
        task -> BigInt,
        step -> BigInt,
        payload -> Text,
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT count(*) AS n FROM table`.
fn count<C: Connection>(conn: &mut C, table: &str) -> i64
where
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Count>,
{
    diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .get_result::<Count>(conn)
        .expect("count")
        .n
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS state (
    task BIGINT NOT NULL,
    step BIGINT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (task, step)
)";

// ----- SQLite: temporary files -----

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "quickslot-diesel-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        Self(dir)
    }

    fn db(&self) -> String {
        self.0
            .join("test.db")
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An SQLite manager on `path` in WAL mode, waiting for locks (several
/// connections write at once).
fn sqlite_manager(path: &str) -> DieselManager<SqliteConnection> {
    DieselManager::new(path)
        .after_connect_sql("PRAGMA busy_timeout = 20000; PRAGMA journal_mode = WAL;")
}

/// A database file with the `state` table.
fn sqlite_db(dir: &TempDir) -> String {
    let path = dir.db();
    let mut conn = SqliteConnection::establish(&path).expect("open");
    conn.batch_execute("PRAGMA journal_mode = WAL")
        .expect("WAL");
    conn.batch_execute(SCHEMA).expect("schema");
    path
}

fn sqlite_pool(path: &str, max_size: usize) -> Pool<SqliteConnection> {
    sqlite_manager(path)
        .pool_builder()
        .max_size(max_size)
        .build()
        .expect("valid settings")
}

fn save_step(conn: &mut SqliteConnection, task: i64, step: i64) -> QueryResult<usize> {
    diesel::insert_into(state::table)
        .values((
            state::task.eq(task),
            state::step.eq(step),
            state::payload.eq(format!("task {task} step {step}")),
        ))
        .execute(conn)
}

fn load_steps(conn: &mut SqliteConnection, task: i64) -> QueryResult<Vec<i64>> {
    state::table
        .filter(state::task.eq(task))
        .select(state::step)
        .order(state::step)
        .load(conn)
}

/// Every (task, step) of `tasks` x `steps` is in the table, once.
fn assert_all_rows<C>(conn: &mut C, tasks: i64, steps: i64)
where
    C: Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Count>,
{
    assert_eq!(count(conn, "state"), tasks * steps, "every row saved once");
}

const TASKS: i64 = 10;
const STEPS: i64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tasks_share_one_pool_through_interact() {
    let dir = TempDir::new("tasks");
    let path = sqlite_db(&dir);
    // Fewer connections than tasks: they wait in line for one.
    let pool = sqlite_pool(&path, 4);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for step in 0..STEPS {
                    let conn = pool.acquire().await.expect("acquire");
                    let saved = conn
                        .interact(move |conn| save_step(conn, task, step))
                        .await
                        .expect("interact")
                        .expect("insert");
                    assert_eq!(saved, 1);
                    tokio::task::yield_now().await;
                }
                let conn = pool.acquire().await.expect("acquire");
                let steps = conn
                    .interact(move |conn| load_steps(conn, task))
                    .await
                    .expect("interact")
                    .expect("load");
                assert_eq!(
                    steps,
                    (0..STEPS).collect::<Vec<_>>(),
                    "task {task} reads back its state"
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let status = pool.status();
    assert!(
        status.size <= 4,
        "never more than max_size connections: {status:?}"
    );
    assert_eq!(status.discarded.broken, 0, "{status:?}");
    assert_all_rows(
        &mut SqliteConnection::establish(&path).unwrap(),
        TASKS,
        STEPS,
    );
}

#[test]
fn sqlite_threads_share_one_pool_blocking() {
    // No runtime anywhere: r2d2-style threads.
    let dir = TempDir::new("threads");
    let path = sqlite_db(&dir);
    let pool = sqlite_pool(&path, 4);
    let threads: Vec<_> = (0..TASKS)
        .map(|task| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for step in 0..STEPS {
                    if step % 2 == 0 {
                        let mut conn = pool.acquire_blocking().expect("acquire");
                        assert_eq!(save_step(&mut conn, task, step).expect("insert"), 1);
                    } else {
                        let saved = pool
                            .with_blocking(|conn| save_step(conn, task, step))
                            .expect("acquire")
                            .expect("insert");
                        assert_eq!(saved, 1);
                    }
                }
                let mut conn = pool.acquire_blocking().expect("acquire");
                assert_eq!(
                    load_steps(&mut conn, task).unwrap(),
                    (0..STEPS).collect::<Vec<_>>()
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    assert!(pool.status().size <= 4);
    assert_all_rows(&mut *pool.acquire_blocking().unwrap(), TASKS, STEPS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_spawn_blocking_pattern_beside_async_tasks() {
    // The r2d2 + tokio shape: clone the pool, check out inside
    // `spawn_blocking`; at the same time async tasks use `interact`. One
    // line for both; a ping on every checkout (window zero) runs through
    // `block_in_place` on workers and in place on blocking threads.
    let dir = TempDir::new("spawn-blocking");
    let path = sqlite_db(&dir);
    let pool = sqlite_manager(&path)
        .verify_window(Duration::ZERO)
        .pool_builder()
        .max_size(4)
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for task in 0..64_i64 {
        let pool = pool.clone();
        if task % 2 == 0 {
            handles.push(tokio::task::spawn_blocking(move || {
                let mut conn = pool.acquire_blocking().expect("acquire");
                save_step(&mut conn, task, 0).expect("insert");
            }));
        } else {
            handles.push(tokio::spawn(async move {
                pool.acquire()
                    .await
                    .expect("acquire")
                    .interact(move |conn| save_step(conn, task, 0))
                    .await
                    .expect("interact")
                    .expect("insert");
            }));
        }
    }
    for handle in handles {
        handle.await.expect("task");
    }
    let status = pool.status();
    assert!(status.size <= 4, "{status:?}");
    assert_all_rows(&mut SqliteConnection::establish(&path).unwrap(), 64, 1);
}

#[tokio::test]
async fn sqlite_open_transaction_is_not_handed_on() {
    let dir = TempDir::new("open-transaction");
    let path = sqlite_db(&dir);
    let pool = sqlite_pool(&path, 1);

    // A transaction begun and never ended: the connection is discarded on
    // return, and with it the uncommitted row.
    let mut conn = pool.acquire().await.unwrap();
    AnsiTransactionManager::begin_transaction(&mut *conn).unwrap();
    save_step(&mut conn, 1, 1).unwrap();
    drop(conn);
    let status = pool.status();
    assert_eq!((status.size, status.discarded.broken), (0, 1), "{status:?}");

    // A panic inside `transaction`: Diesel does not roll back, the guard
    // drops while the thread panics: discarded too.
    let err = pool
        .acquire()
        .await
        .unwrap()
        .interact(|conn| {
            conn.transaction::<(), diesel::result::Error, _>(|conn| {
                save_step(conn, 2, 2)?;
                panic!("half way through");
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("half way through"));
    let status = pool.status();
    assert_eq!((status.size, status.discarded.broken), (0, 2), "{status:?}");

    // A transaction that ends (here with an error, rolled back by Diesel)
    // leaves a clean connection, which is kept.
    let conn = pool.acquire().await.unwrap();
    let result = conn
        .interact(|conn| {
            conn.transaction::<(), diesel::result::Error, _>(|conn| {
                save_step(conn, 3, 3)?;
                Err(diesel::result::Error::RollbackTransaction)
            })
        })
        .await
        .unwrap();
    assert!(result.is_err());
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.discarded.broken),
        (1, 1, 2),
        "{status:?}"
    );

    // None of the three rows was committed.
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(count(&mut *conn, "state"), 0);
    drop(conn);
    assert_eq!(
        count(&mut SqliteConnection::establish(&path).unwrap(), "state"),
        0
    );
}

#[tokio::test]
async fn interact_panic_discards_the_connection() {
    let pool = DieselManager::<SqliteConnection>::new(":memory:")
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    let err = pool
        .acquire()
        .await
        .unwrap()
        .interact(|conn| -> i32 {
            conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
            panic!("boom {}", 42)
        })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("boom 42"));
    assert_eq!(err.to_string(), "the interact closure panicked: boom 42");
    let status = pool.status();
    assert_eq!((status.size, status.discarded.broken), (0, 1), "{status:?}");

    // The slot is free: a fresh connection (its own empty `:memory:`
    // database, so the table is gone).
    let exists = pool
        .acquire()
        .await
        .unwrap()
        .interact(|conn| conn.batch_execute("SELECT x FROM t").is_ok())
        .await
        .unwrap();
    assert!(!exists, "a fresh connection, not the one that panicked");
    assert_eq!(pool.status().created, 2);

    // The payload goes on.
    let err = pool
        .acquire()
        .await
        .unwrap()
        .interact(|_| std::panic::panic_any(7_u8))
        .await
        .unwrap_err();
    let payload = err.into_panic().expect("a panic");
    assert_eq!(payload.downcast_ref::<u8>(), Some(&7));
}

#[tokio::test]
async fn after_connect_runs_on_each_new_connection() {
    let dir = TempDir::new("after-connect");
    let path = sqlite_db(&dir);
    let opened = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&opened);
    let pool = sqlite_manager(&path)
        .after_connect_sql("PRAGMA foreign_keys = ON")
        .after_connect(move |conn| {
            // Hooks run in order: the pragma is already set.
            #[derive(QueryableByName)]
            struct ForeignKeys {
                #[diesel(sql_type = BigInt)]
                foreign_keys: i64,
            }
            let row: ForeignKeys = diesel::sql_query("PRAGMA foreign_keys").get_result(conn)?;
            if row.foreign_keys != 1 {
                return Err("foreign keys are off".into());
            }
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .pool_builder()
        .max_size(3)
        .build()
        .unwrap();
    let held: Vec<_> = futures::future::try_join_all((0..3).map(|_| pool.acquire()))
        .await
        .unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 3);
    drop(held);
    let _again = pool.acquire().await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 3, "not on reuse");
}

#[tokio::test]
async fn after_connect_error_fails_the_acquire_at_once() {
    let pool = DieselManager::<SqliteConnection>::new(":memory:")
        .after_connect(|_| Err("the schema is too old".into()))
        .pool_builder()
        .build()
        .unwrap();
    let started = Instant::now();
    let err = pool.acquire().await.err().expect("the acquire fails");
    assert!(started.elapsed() < Duration::from_secs(5));
    let Error::Create(DieselError::AfterConnect(hook)) = &err else {
        panic!("expected an after_connect error, got {err:?}");
    };
    assert_eq!(hook.to_string(), "the schema is too old");
    assert_eq!(pool.status().size, 0, "the slot is freed");

    // A failing SQL hook carries Diesel's error.
    let pool = DieselManager::<SqliteConnection>::new(":memory:")
        .after_connect_sql("PRAGMA no_such_thing = ; SELECT")
        .pool_builder()
        .build()
        .unwrap();
    let err = pool.acquire().await.err().expect("the acquire fails");
    let Error::Create(DieselError::AfterConnect(hook)) = &err else {
        panic!("expected an after_connect error, got {err:?}");
    };
    assert!(
        hook.downcast_ref::<diesel::result::Error>().is_some(),
        "{hook:?}"
    );
}

#[test]
fn test_transactions_are_never_committed() {
    let dir = TempDir::new("test-transaction");
    let path = sqlite_db(&dir);
    let pool = sqlite_manager(&path)
        .begin_test_transaction()
        .pool_builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .build()
        .unwrap();
    pool.with_blocking(|conn| save_step(conn, 1, 1))
        .unwrap()
        .unwrap();
    // The same connection, the same test transaction: the row is there, and
    // the connection was not taken for one returned mid-transaction.
    assert_eq!(pool.with_blocking(|conn| count(conn, "state")).unwrap(), 1);
    let status = pool.status();
    assert_eq!(
        (status.created, status.discarded.broken),
        (1, 0),
        "{status:?}"
    );
    // Nobody else sees it, and it is gone with the pool.
    assert_eq!(
        count(&mut SqliteConnection::establish(&path).unwrap(), "state"),
        0
    );
    drop(pool);
    assert_eq!(
        count(&mut SqliteConnection::establish(&path).unwrap(), "state"),
        0
    );
}

#[tokio::test]
async fn connect_error_is_returned_at_once_with_the_cause() {
    let missing = Path::new("/nonexistent-quickslot-dir/sub/app.db");
    let pool = DieselManager::<SqliteConnection>::new(missing.to_str().unwrap())
        .pool_builder()
        .build()
        .unwrap();
    let started = Instant::now();
    let err = pool.acquire().await.err().expect("the acquire fails");
    assert!(started.elapsed() < Duration::from_secs(5), "not a timeout");
    assert_eq!(err.to_string(), "creating a pooled resource failed");
    let Some(DieselError::Connect(connect)) = err.manager_error() else {
        panic!("expected a connect error, got {err:?}");
    };
    assert_eq!(connect.target(), "/nonexistent-quickslot-dir/sub/app.db");
    let diesel_error = err.manager_error().unwrap();
    assert_eq!(
        diesel_error.to_string(),
        "could not connect to /nonexistent-quickslot-dir/sub/app.db"
    );
    let cause = std::error::Error::source(diesel_error).expect("the driver's error");
    assert!(
        cause.to_string().contains("unable to open database file"),
        "{cause}"
    );
    assert!(matches!(
        connect.get_ref(),
        diesel::ConnectionError::BadConnection(_)
    ));
}

#[test]
fn create_outside_any_runtime_connects_in_place() {
    use quickslot::Manager as _;
    let manager = DieselManager::<SqliteConnection>::new(":memory:").after_connect_sql(SCHEMA);
    let mut conn = futures::executor::block_on(manager.create()).expect("connect");
    save_step(&mut conn, 1, 1).unwrap();
    assert_eq!(count(&mut conn, "state"), 1);
}

#[test]
fn from_env_var_reports_a_missing_variable() {
    let var = "QUICKSLOT_DIESEL_TEST_SURELY_UNSET_VARIABLE";
    let err = DieselManager::<SqliteConnection>::from_env_var(var).unwrap_err();
    assert_eq!(err, ConfigError::Missing { var: var.into() });
    assert_eq!(
        err.to_string(),
        format!("the environment variable {var} is not set")
    );
    // `from_env` reads DATABASE_URL the same way.
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let manager = DieselManager::<SqliteConnection>::from_env().unwrap();
            assert_eq!(manager.database_url(), url);
        }
        _ => assert!(matches!(
            DieselManager::<SqliteConnection>::from_env(),
            Err(ConfigError::Missing { var }) if var == "DATABASE_URL"
        )),
    }
}

#[test]
fn pool_builder_has_r2d2_defaults() {
    let builder = DieselManager::<SqliteConnection>::new(":memory:").pool_builder();
    let settings = format!("{builder:?}");
    for expected in [
        "max_size: 10",
        "acquire_timeout: Some(30s)",
        "idle_timeout: Some(600s)",
        "max_lifetime: Some(1800s)",
        "track_idle_time: true",
    ] {
        assert!(settings.contains(expected), "{expected} in {settings}");
    }
    let manager = DieselManager::<PgConnection>::new("postgres://app:secret@db/app");
    assert_eq!(
        manager.configured_recycling_method(),
        RecyclingMethod::Verified
    );
    assert_eq!(
        manager.configured_verify_window(),
        Duration::from_millis(500)
    );
    let debug = format!("{manager:?}");
    assert!(
        debug.contains("postgres://app:***@db/app") && !debug.contains("secret"),
        "{debug}"
    );
}

/// A manager whose connections count the `SELECT 1` checks they run.
fn counting_pings(
    method: RecyclingMethod,
    window: Duration,
) -> (Pool<SqliteConnection>, Arc<AtomicUsize>) {
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pings);
    let pool = DieselManager::<SqliteConnection>::new(":memory:")
        .recycling_method(method)
        .verify_window(window)
        .after_connect(move |conn| {
            let counter = Arc::clone(&counter);
            conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = event {
                    if query.to_string().contains("SELECT 1") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            Ok(())
        })
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    (pool, pings)
}

#[tokio::test]
async fn verified_pings_on_checkout_and_fast_does_not() {
    // A fresh connection is not checked; a reused one is, every time with a
    // zero window.
    let (pool, pings) = counting_pings(RecyclingMethod::Verified, Duration::ZERO);
    for _ in 0..4 {
        drop(pool.acquire().await.unwrap());
    }
    assert_eq!(pings.load(Ordering::SeqCst), 3);

    // Within the window, no ping; after it, one.
    let (pool, pings) = counting_pings(RecyclingMethod::Verified, Duration::from_millis(200));
    for _ in 0..4 {
        drop(pool.acquire().await.unwrap());
    }
    assert_eq!(pings.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(pool.acquire().await.unwrap());
    assert_eq!(pings.load(Ordering::SeqCst), 1);

    let (pool, pings) = counting_pings(RecyclingMethod::Fast, Duration::ZERO);
    for _ in 0..4 {
        drop(pool.acquire().await.unwrap());
    }
    assert_eq!(pings.load(Ordering::SeqCst), 0);
}

#[test]
fn verified_pings_from_plain_threads_too() {
    let (pool, pings) = counting_pings(RecyclingMethod::Verified, Duration::ZERO);
    for _ in 0..3 {
        drop(pool.acquire_blocking().unwrap());
    }
    assert_eq!(pings.load(Ordering::SeqCst), 2);
}

// ----- PostgreSQL: the server in QUICKSLOT_PG_URL -----

use quickslot_testkit::pg_url;

macro_rules! pg_url_or_skip {
    () => {
        match pg_url() {
            Some(url) => url,
            None => return,
        }
    };
}

/// `url` with `application_name` set, so a test can find its own backends.
fn with_application_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// A table of its own for each PostgreSQL test (they share one database).
struct PgTable {
    url: String,
    name: String,
}

impl PgTable {
    fn new(url: &str, test: &str) -> Self {
        let name = format!("diesel_{test}_{}", std::process::id());
        let mut conn = PgConnection::establish(url).expect("connect");
        conn.batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (task BIGINT NOT NULL, step BIGINT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (task, step))"
        ))
        .expect("create the table");
        Self {
            url: url.to_owned(),
            name,
        }
    }

    fn insert(&self, conn: &mut PgConnection, task: i64, step: i64) -> QueryResult<usize> {
        diesel::sql_query(format!(
            "INSERT INTO {} (task, step, payload) VALUES ($1, $2, $3)",
            self.name
        ))
        .bind::<BigInt, _>(task)
        .bind::<BigInt, _>(step)
        .bind::<diesel::sql_types::Text, _>(format!("task {task} step {step}"))
        .execute(conn)
    }

    fn steps(&self, conn: &mut PgConnection, task: i64) -> QueryResult<Vec<i64>> {
        #[derive(QueryableByName)]
        struct Step {
            #[diesel(sql_type = BigInt)]
            step: i64,
        }
        let rows: Vec<Step> = diesel::sql_query(format!(
            "SELECT step FROM {} WHERE task = $1 ORDER BY step",
            self.name
        ))
        .bind::<BigInt, _>(task)
        .load(conn)?;
        Ok(rows.into_iter().map(|r| r.step).collect())
    }

    fn count(&self) -> i64 {
        count(&mut PgConnection::establish(&self.url).unwrap(), &self.name)
    }
}

impl Drop for PgTable {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.url) {
            let _ = conn.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.name));
        }
    }
}

fn pg_pool(url: &str, max_size: usize) -> Pool<PgConnection> {
    DieselManager::<PgConnection>::new(url)
        .pool_builder()
        .max_size(max_size)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tasks_and_threads_share_one_pool() {
    let url = pg_url_or_skip!();
    let table = Arc::new(PgTable::new(&url, "share"));
    let pool = pg_pool(&url, 4);

    // 10 tokio tasks through `interact`...
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (pool, table) = (pool.clone(), Arc::clone(&table));
            tokio::spawn(async move {
                for step in 0..STEPS {
                    let table = Arc::clone(&table);
                    pool.acquire()
                        .await
                        .expect("acquire")
                        .interact(move |conn| table.insert(conn, task, step))
                        .await
                        .expect("interact")
                        .expect("insert");
                }
                let reader = Arc::clone(&table);
                let steps = pool
                    .acquire()
                    .await
                    .expect("acquire")
                    .interact(move |conn| reader.steps(conn, task))
                    .await
                    .expect("interact")
                    .expect("load");
                assert_eq!(steps, (0..STEPS).collect::<Vec<_>>());
            })
        })
        .collect();
    // ...and, at the same time, 10 threads through `acquire_blocking`.
    let threads: Vec<_> = (TASKS..2 * TASKS)
        .map(|task| {
            let (pool, table) = (pool.clone(), Arc::clone(&table));
            std::thread::spawn(move || {
                for step in 0..STEPS {
                    let mut conn = pool.acquire_blocking().expect("acquire");
                    table.insert(&mut conn, task, step).expect("insert");
                }
                let mut conn = pool.acquire_blocking().expect("acquire");
                assert_eq!(
                    table.steps(&mut conn, task).unwrap(),
                    (0..STEPS).collect::<Vec<_>>()
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    for thread in threads {
        thread.join().expect("thread");
    }
    let status = pool.status();
    assert!(status.size <= 4, "{status:?}");
    assert_eq!(status.discarded.broken, 0, "{status:?}");
    assert_eq!(table.count(), 2 * TASKS * STEPS, "every row present");
}

/// Terminates the backends whose `application_name` is `name`; returns how
/// many.
fn kill_backends(url: &str, name: &str) -> i64 {
    let mut admin = PgConnection::establish(url).unwrap();
    diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result::<Count>(&mut admin)
    .unwrap()
    .n
}

/// Waits until no backend named `name` is left (termination is
/// asynchronous).
fn wait_gone(url: &str, name: &str) {
    let mut admin = PgConnection::establish(url).unwrap();
    for _ in 0..200 {
        let left = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result::<Count>(&mut admin)
        .unwrap()
        .n;
        if left == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("backends {name} still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_killed_backends_are_replaced() {
    let url = pg_url_or_skip!();
    let name = format!("qs_diesel_kill_{}", std::process::id());
    let pool_url = with_application_name(&url, &name);

    // Verified, checking every checkout: nobody sees a dead connection.
    let pool = DieselManager::<PgConnection>::new(pool_url.as_str())
        .verify_window(Duration::ZERO)
        .pool_builder()
        .max_size(3)
        .build()
        .unwrap();
    let held = futures::future::try_join_all((0..3).map(|_| pool.acquire()))
        .await
        .unwrap();
    drop(held);
    assert_eq!(pool.status().idle, 3);
    assert_eq!(kill_backends(&url, &name), 3);
    wait_gone(&url, &name);
    for _ in 0..6 {
        let conn = pool.acquire().await.unwrap();
        conn.interact(|conn| conn.batch_execute("SELECT 1"))
            .await
            .unwrap()
            .expect("a live connection");
    }
    let status = pool.status();
    assert_eq!(status.discarded.recycle_failed, 3, "{status:?}");
    assert_eq!(status.created, 6, "{status:?}");

    // Fast: the first query on a dead connection fails; the connection is
    // then discarded on return, and the next checkout gets a fresh one.
    let name = format!("qs_diesel_kill_fast_{}", std::process::id());
    let pool = DieselManager::<PgConnection>::new(with_application_name(&url, &name))
        .recycling_method(RecyclingMethod::Fast)
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    let select_1 = || async {
        pool.acquire()
            .await
            .unwrap()
            .interact(|conn| conn.batch_execute("SELECT 1"))
            .await
            .unwrap()
    };
    select_1().await.unwrap();
    assert_eq!(kill_backends(&url, &name), 1);
    wait_gone(&url, &name);
    let failed = select_1().await;
    assert!(
        failed.is_err(),
        "the dead connection was handed out under Fast"
    );
    let status = pool.status();
    assert_eq!(
        (status.size, status.discarded.broken),
        (0, 1),
        "discarded on return: {status:?}"
    );
    select_1().await.unwrap();
}

#[tokio::test]
async fn pg_wrong_password_fails_at_once_with_the_servers_message() {
    let url = pg_url_or_skip!();
    let Some((before, after)) = url.split_once('@') else {
        panic!("QUICKSLOT_PG_URL has no user part: {url}");
    };
    let user = before.rsplit_once(':').map_or(before, |(user, _)| user);
    let wrong = format!("{user}:certainly-not-the-password@{after}");
    let pool = pg_pool(&wrong, 2);
    let started = Instant::now();
    let err = pool.acquire().await.err().expect("the acquire fails");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once, not after the acquire timeout"
    );
    let Some(DieselError::Connect(connect)) = err.manager_error() else {
        panic!("expected a connect error, got {err:?}");
    };
    assert!(
        connect.target().contains(":***@"),
        "password hidden: {}",
        connect.target()
    );
    assert!(!connect.to_string().contains("certainly-not"), "{connect}");
    let mut chain = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = err.manager_error().map(|e| e as _);
    while let Some(e) = next {
        chain.push_str(&e.to_string());
        chain.push_str(" / ");
        next = e.source();
    }
    assert!(chain.contains("password authentication failed"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_open_transaction_is_not_handed_on() {
    let url = pg_url_or_skip!();
    let table = Arc::new(PgTable::new(&url, "open_tx"));
    let pool = pg_pool(&url, 1);
    let writer = Arc::clone(&table);
    pool.acquire()
        .await
        .unwrap()
        .interact(move |conn| {
            AnsiTransactionManager::begin_transaction(conn).unwrap();
            writer.insert(conn, 1, 1).unwrap();
            // Returned with the transaction open.
        })
        .await
        .unwrap();
    let status = pool.status();
    assert_eq!((status.size, status.discarded.broken), (0, 1), "{status:?}");
    let reader = Arc::clone(&table);
    let steps = pool
        .acquire()
        .await
        .unwrap()
        .interact(move |conn| reader.steps(conn, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        steps.is_empty(),
        "the uncommitted row is gone with its connection"
    );
    assert_eq!(table.count(), 0);
}

#[test]
fn pg_test_transactions_are_never_committed() {
    let url = pg_url_or_skip!();
    let table = PgTable::new(&url, "test_tx");
    let pool = DieselManager::<PgConnection>::new(url.as_str())
        .begin_test_transaction()
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    pool.with_blocking(|conn| table.insert(conn, 1, 1))
        .unwrap()
        .unwrap();
    assert_eq!(
        pool.with_blocking(|conn| table.steps(conn, 1))
            .unwrap()
            .unwrap(),
        [1]
    );
    assert_eq!(table.count(), 0, "not visible outside the test transaction");
    assert_eq!(pool.status().discarded.broken, 0);
    drop(pool);
    assert_eq!(table.count(), 0);
}

#[test]
fn pg_manager_from_env_var() {
    let url = pg_url_or_skip!();
    let pool = DieselManager::<PgConnection>::from_env_var("QUICKSLOT_PG_URL")
        .unwrap()
        .pool_builder()
        .build()
        .unwrap();
    assert_eq!(pool.manager().database_url(), url);
    pool.with_blocking(|conn| conn.batch_execute("SELECT 1"))
        .unwrap()
        .unwrap();
}

/// `InteractError` is an error like any other.
#[test]
fn interact_error_is_an_error() {
    fn is_error<E: std::error::Error + Send + 'static>() {}
    is_error::<InteractError>();
    is_error::<DieselError>();
    is_error::<ConfigError>();
    is_error::<Error<DieselError>>();
}
