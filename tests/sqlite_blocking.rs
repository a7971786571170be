//! Blocking use of the SQLite adapter, r2d2-style: `acquire_blocking` and
//! `DerefMut` to `rusqlite::Connection` from plain threads and from
//! `spawn_blocking`.

use std::time::{Duration, Instant};

use quickslot::sqlite::{self, rusqlite, PoolError};

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("quickslot-sqlite-blocking-")
        .tempdir()
        .expect("a temporary directory")
}

/// A manager for a new database file with one table (created once, before
/// the pool).
fn table_manager(path: &std::path::Path) -> sqlite::Manager {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch("CREATE TABLE t (thread INTEGER, i INTEGER)")
        .unwrap();
    sqlite::Manager::file(path)
}

/// No runtime anywhere: the pool (with the adapter's defaults, `min_idle`
/// 1 included) is built and used from plain threads.
#[test]
fn plain_threads_without_a_runtime() {
    let dir = temp_dir();
    let pool = table_manager(&dir.path().join("threads.db"))
        .pool_builder()
        .max_size(3)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..8_i64)
        .map(|thread| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..25_i64 {
                    let mut conn = pool.acquire_blocking().unwrap();
                    let tx = conn.transaction().unwrap();
                    tx.execute("INSERT INTO t VALUES (?1, ?2)", [thread, i])
                        .unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let conn = pool.acquire_blocking().unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 200);
    assert!(pool.status().created <= 3);
}

/// From `spawn_blocking`, beside async users of `interact` on the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_blocking_beside_interact() {
    let dir = temp_dir();
    let pool = table_manager(&dir.path().join("mixed.db"))
        .pool_builder()
        .max_size(4)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for thread in 0..16_i64 {
        let pool = pool.clone();
        if thread % 2 == 0 {
            tasks.push(tokio::task::spawn_blocking(move || {
                for i in 0..20_i64 {
                    let conn = pool.acquire_blocking().unwrap();
                    conn.execute("INSERT INTO t VALUES (?1, ?2)", [thread, i])
                        .unwrap();
                }
            }));
        } else {
            tasks.push(tokio::spawn(async move {
                for i in 0..20_i64 {
                    let mut conn = pool.acquire().await.unwrap();
                    conn.interact(move |c| c.execute("INSERT INTO t VALUES (?1, ?2)", [thread, i]))
                        .await
                        .unwrap()
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let n: i64 = pool
        .acquire()
        .await
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 16 * 20);
    assert!(pool.status().created <= 4);
}

#[test]
fn acquire_blocking_timeout_on_an_exhausted_pool() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("timeout.db"))
        .pool_builder()
        .min_idle(0)
        .max_size(1)
        .build()
        .unwrap();
    let held = pool.acquire_blocking().unwrap();
    let started = Instant::now();
    let e = pool
        .acquire_blocking_timeout(Duration::from_millis(100))
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(90));
    drop(held);
    drop(
        pool.acquire_blocking_timeout(Duration::from_secs(5))
            .unwrap(),
    );
}

#[test]
fn a_create_error_comes_back_from_acquire_blocking() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("no-such-dir").join("x.db"))
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    match pool.acquire_blocking() {
        Err(PoolError::Create(e)) => {
            assert_eq!(e.kind(), sqlite::ErrorKind::MissingDirectory)
        }
        other => panic!("expected a create error, got {other:?}"),
    }
}

#[test]
fn with_blocking_runs_a_closure_on_a_connection() {
    let dir = temp_dir();
    let pool = table_manager(&dir.path().join("with.db"))
        .pool_builder()
        .min_idle(0)
        .max_size(2)
        .build()
        .unwrap();
    let inserted = pool
        .with_blocking(|conn| conn.execute("INSERT INTO t VALUES (1, 1)", []))
        .unwrap()
        .unwrap();
    assert_eq!(inserted, 1);
    // A transaction left open by the closure is rolled back on return.
    pool.with_blocking(|conn| conn.execute_batch("BEGIN; INSERT INTO t VALUES (2, 2);"))
        .unwrap()
        .unwrap();
    let n: i64 = pool
        .with_blocking(|conn| conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)))
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
}
