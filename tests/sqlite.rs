//! The SQLite adapter against real database files in temporary directories.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickslot::sqlite::rusqlite::{self, OpenFlags};
use quickslot::sqlite::{
    self, ErrorKind, InteractError, JournalMode, PoolError, PoolExt, RecyclingMethod, Synchronous,
};

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("quickslot-sqlite-")
        .tempdir()
        .expect("a temporary directory")
}

/// Reads back a pragma as a string.
fn pragma(conn: &rusqlite::Connection, name: &str) -> String {
    conn.query_row(&format!("PRAGMA {name}"), [], |row| {
        row.get::<_, rusqlite::types::Value>(0)
    })
    .map(|v| match v {
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Text(t) => t,
        other => format!("{other:?}"),
    })
    .unwrap()
}

/// Creates the schema once, before any pool: an `after_connect` hook doing
/// it on every new connection races itself (in WAL mode, a connection whose
/// read snapshot is stale gets `SQLITE_BUSY_SNAPSHOT` at once).
fn schema(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// The manager error of a failed acquire.
async fn create_error(pool: &sqlite::Pool) -> sqlite::SqliteError {
    match pool.acquire().await {
        Err(PoolError::Create(e)) => e,
        Err(other) => panic!("expected a create error, got {other:?}"),
        Ok(conn) => panic!("expected a create error, got {conn:?}"),
    }
}

#[tokio::test]
async fn defaults_are_applied_to_a_file() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("app.db"))
        .pool_builder()
        .build()
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(pragma(&conn, "journal_mode"), "wal");
    assert_eq!(pragma(&conn, "synchronous"), "2");
    assert_eq!(pragma(&conn, "busy_timeout"), "5000");
    assert_eq!(pragma(&conn, "foreign_keys"), "1");
    let status = pool.status();
    assert_eq!(status.max_size, 10);
}

#[tokio::test]
async fn every_option_takes_effect_on_every_connection() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("app.db"))
        .journal_mode(JournalMode::Truncate)
        .synchronous(Synchronous::Normal)
        .busy_timeout(Duration::from_millis(1234))
        .foreign_keys(true)
        .pragma("cache_size", -3000)
        .pragma("main.user_version", 7)
        .pool_builder()
        .min_idle(0)
        .max_size(4)
        .build()
        .unwrap();
    // Four at once: four different connections.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.acquire().await.unwrap());
    }
    assert_eq!(pool.status().created, 4);
    for conn in &conns {
        assert_eq!(pragma(conn, "journal_mode"), "truncate");
        assert_eq!(pragma(conn, "synchronous"), "1");
        assert_eq!(pragma(conn, "busy_timeout"), "1234");
        assert_eq!(pragma(conn, "foreign_keys"), "1");
        assert_eq!(pragma(conn, "cache_size"), "-3000");
        assert_eq!(pragma(conn, "user_version"), "7");
    }

    // Foreign keys are enforced.
    conns[0]
        .execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER NOT NULL REFERENCES parent (id));
             INSERT INTO parent VALUES (1);
             INSERT INTO child VALUES (1);",
        )
        .unwrap();
    for conn in &conns {
        let e = conn
            .execute("INSERT INTO child VALUES (2)", [])
            .unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{e}"
        );
    }
}

#[tokio::test]
async fn options_can_be_turned_off() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("app.db"))
        .journal_mode(JournalMode::Delete)
        .synchronous(Synchronous::Off)
        .busy_timeout(Duration::ZERO)
        .foreign_keys(false)
        .pool_builder()
        .min_idle(0)
        .max_size(2)
        .build()
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    for conn in [&a, &b] {
        assert_eq!(pragma(conn, "journal_mode"), "delete");
        assert_eq!(pragma(conn, "synchronous"), "0");
        assert_eq!(pragma(conn, "busy_timeout"), "0");
        assert_eq!(pragma(conn, "foreign_keys"), "0");
    }
    a.execute_batch(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);
         CREATE TABLE child (parent INTEGER REFERENCES parent (id));
         INSERT INTO child VALUES (2);",
    )
    .unwrap();
}

#[tokio::test]
async fn from_url_applies_its_parameters() {
    let dir = temp_dir();
    let path = dir.path().join("url test.db");
    let url = format!(
        "sqlite://{}?mode=rwc&synchronous=normal&busy_timeout=750&journal_mode=wal",
        path.display().to_string().replace(' ', "%20")
    );
    let pool = sqlite::Manager::from_url(&url)
        .unwrap()
        .pool_builder()
        .build()
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(pragma(&conn, "synchronous"), "1");
    assert_eq!(pragma(&conn, "busy_timeout"), "750");
    assert_eq!(pragma(&conn, "journal_mode"), "wal");
    assert!(path.exists());

    let missing = dir.path().join("missing.db");
    let pool = sqlite::Manager::from_url(&format!("sqlite://{}?mode=rw", missing.display()))
        .unwrap()
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!missing.exists());
}

#[tokio::test]
async fn an_unknown_pragma_is_an_error() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("app.db"))
        .pragma("jornal_mode", "wal")
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::Setting);
    assert_eq!(e.setting(), Some("jornal_mode"));
    assert!(e.to_string().contains("`jornal_mode`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_writers_and_readers_see_no_busy_errors() {
    let dir = temp_dir();
    let path = dir.path().join("wal.db");
    schema(
        &path,
        "CREATE TABLE rows (writer INTEGER, n INTEGER, PRIMARY KEY (writer, n))",
    );
    let pool = sqlite::Manager::file(&path)
        .synchronous(Synchronous::Normal)
        .pool_builder()
        .max_size(12)
        .build()
        .unwrap();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = 0_u64;
            let mut last = 0_i64;
            while !done.load(Ordering::Relaxed) {
                let mut conn = pool.acquire().await.unwrap();
                let n = conn
                    .interact(|conn| {
                        conn.query_row("SELECT count(*) FROM rows", [], |row| row.get::<_, i64>(0))
                    })
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n >= last, "a reader went back in time");
                last = n;
                reads += 1;
            }
            reads
        }));
    }
    let mut writers = Vec::new();
    for writer in 0..8_i64 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..500_i64 {
                let mut conn = pool.acquire().await.unwrap();
                conn.interact(move |conn| {
                    conn.execute("INSERT INTO rows VALUES (?1, ?2)", [writer, n])
                })
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("writer {writer}, row {n}: {e}"));
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads > 0);

    let conn = pool.acquire().await.unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM rows", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 8 * 500);
    let per_writer: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT writer FROM rows GROUP BY writer HAVING count(*) = 500)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(per_writer, 8);
}

/// The first connections of a pool on a new file all ask for WAL at once;
/// SQLite refuses all but one switch with an immediate `SQLITE_BUSY`, which
/// the manager retries within the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connections_all_get_wal() {
    let dir = temp_dir();
    for round in 0..50 {
        let pool = sqlite::Manager::file(dir.path().join(format!("fresh-{round}.db")))
            .pool_builder()
            .min_idle(0)
            .max_size(8)
            .build()
            .unwrap();
        let acquires: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.acquire().await })
            })
            .collect();
        let mut conns = Vec::new();
        for acquire in acquires {
            let conn = acquire
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            assert_eq!(pragma(&conn, "journal_mode"), "wal");
            conns.push(conn);
        }
    }
}

#[tokio::test]
async fn memory_is_shared_and_gone_with_the_pool() {
    let pool = sqlite::Manager::memory()
        .pool_builder()
        .min_idle(0)
        .max_size(2)
        .build()
        .unwrap();
    let location = pool.manager().location().to_owned();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_eq!(pool.status().created, 2);
    assert_eq!(pragma(&a, "journal_mode"), "memory");
    a.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (42);")
        .unwrap();
    let x: i64 = b
        .query_row("SELECT x FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(x, 42);

    // Still there with every pooled connection closed: the manager keeps it.
    drop((a, b));
    pool.retain(|_, _| false);
    assert_eq!(pool.status().size, 0);
    let c = pool.acquire().await.unwrap();
    let x: i64 = c
        .query_row("SELECT x FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(x, 42);

    // Another manager has a database of its own.
    let other = sqlite::Manager::memory().pool_builder().build().unwrap();
    let e = other
        .acquire()
        .await
        .unwrap()
        .query_row("SELECT x FROM t", [], |row| row.get::<_, i64>(0))
        .unwrap_err();
    assert!(e.to_string().contains("no such table"), "{e}");

    // Gone after the pool is dropped.
    drop(c);
    drop(pool);
    let raw = rusqlite::Connection::open_with_flags(
        &location,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let e = raw
        .query_row("SELECT x FROM t", [], |row| row.get::<_, i64>(0))
        .unwrap_err();
    assert!(e.to_string().contains("no such table"), "{e}");
}

#[tokio::test]
async fn memory_with_one_connection_serves_every_task() {
    let pool = sqlite::Manager::memory()
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16_i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            conn.interact(move |c| c.execute("INSERT INTO t VALUES (?1)", [i]))
                .await
                .unwrap()
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let n: i64 = pool
        .acquire()
        .await
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 16);
    assert_eq!(pool.status().created, 1);
}

#[tokio::test]
async fn a_transaction_left_open_is_not_seen_by_the_next_user() {
    let dir = temp_dir();
    let path = dir.path().join("tx.db");
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    pool.acquire()
        .await
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();

    // A raw BEGIN, left open.
    let conn = pool.acquire().await.unwrap();
    conn.execute_batch("BEGIN; INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(!conn.is_autocommit());
    drop(conn);

    // A rusqlite transaction leaked inside an interact closure.
    let mut conn = pool.acquire().await.unwrap();
    assert!(conn.is_autocommit());
    conn.interact(|c| {
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        std::mem::forget(tx);
    })
    .await
    .unwrap();
    assert!(!conn.is_autocommit());
    drop(conn);

    let conn = pool.acquire().await.unwrap();
    assert!(conn.is_autocommit());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 0);
    // Rolled back, not discarded: still the first connection.
    assert_eq!(pool.status().created, 1);
    drop(conn);

    // And nothing holds the write lock.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(Duration::ZERO).unwrap();
    raw.execute("INSERT INTO t VALUES (3)", []).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interact_from_64_tasks_on_a_pool_of_4() {
    let dir = temp_dir();
    let path = dir.path().join("tasks.db");
    schema(&path, "CREATE TABLE t (task INTEGER, i INTEGER)");
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .max_size(4)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..64_i64 {
        let pool = pool.clone();
        let running = running.clone();
        let most = most.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_i64 {
                let mut conn = pool.acquire().await.unwrap();
                let (running, most) = (running.clone(), most.clone());
                conn.interact(move |c| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let out = c.execute("INSERT INTO t VALUES (?1, ?2)", [task, i]);
                    running.fetch_sub(1, Ordering::SeqCst);
                    out
                })
                .await
                .unwrap()
                .unwrap();
            }
        }));
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
    assert_eq!(n, 640);
    assert!(most.load(Ordering::SeqCst) <= 4);
    let status = pool.status();
    assert!(status.created <= 4, "{status:?}");
    assert_eq!(status.discarded.broken, 0);
}

#[tokio::test]
async fn pool_with_and_interact() {
    let pool = sqlite::Manager::memory()
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    let n = pool
        .with(async |conn: &mut sqlite::Connection| {
            conn.interact(|c| {
                c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")?;
                c.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
            })
            .await
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(pool.status().idle, 1);
}

/// Tags a connection (temporary tables are per connection).
fn tag(conn: &rusqlite::Connection, tag: i64) {
    conn.execute_batch(&format!("CREATE TEMP TABLE tag AS SELECT {tag} AS v"))
        .unwrap();
}

fn read_tag(conn: &rusqlite::Connection) -> Option<i64> {
    conn.query_row("SELECT v FROM temp.tag", [], |row| row.get(0))
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_closure_discards_only_its_connection() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("panic.db"))
        .pool_builder()
        .min_idle(0)
        .max_size(4)
        .build()
        .unwrap();
    let mut conns = Vec::new();
    for i in 0..4 {
        let conn = pool.acquire().await.unwrap();
        tag(&conn, i);
        conns.push(conn);
    }

    let mut victim = conns.remove(2);
    let e = victim
        .interact(|_| -> () { panic!("closure failed on purpose") })
        .await
        .unwrap_err();
    match &e {
        InteractError::Panic(payload) => {
            assert_eq!(payload.message(), Some("closure failed on purpose"))
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "the interact closure panicked: closure failed on purpose"
    );
    // The guard has no connection left.
    assert!(matches!(
        victim.interact(|_| ()).await,
        Err(InteractError::Lost)
    ));
    assert_eq!(
        pool.status().size,
        4,
        "the slot is held until the guard drops"
    );
    drop(victim);
    let status = pool.status();
    assert_eq!(status.size, 3);
    assert_eq!(status.discarded.broken, 1);

    // The other three are intact, and one fresh connection fills the slot.
    drop(conns);
    let mut tags = Vec::new();
    let mut again = Vec::new();
    for _ in 0..4 {
        let conn = pool.acquire().await.unwrap();
        tags.push(read_tag(&conn));
        again.push(conn);
    }
    tags.sort();
    assert_eq!(tags, vec![None, Some(0), Some(1), Some(3)]);
    assert_eq!(pool.status().created, 5);

    // A panic is safe to propagate with the payload.
    let payload = match e {
        InteractError::Panic(payload) => payload.into_inner(),
        _ => unreachable!(),
    };
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"closure failed on purpose")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_interact_keeps_its_slot_and_its_connection() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("cancel.db"))
        .pool_builder()
        .max_size(1)
        .build()
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    tag(&conn, 7);

    // Cancelled while the closure sleeps; the guard is then returned.
    let slow = conn.interact(|c| {
        std::thread::sleep(Duration::from_millis(300));
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    });
    assert!(tokio::time::timeout(Duration::from_millis(30), slow)
        .await
        .is_err());
    drop(conn);
    assert_eq!(pool.status().size, 1, "the slot stays held");

    // The next checkout waits for the closure, then gets the same
    // connection back.
    let started = Instant::now();
    let conn = pool.acquire().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(read_tag(&conn), Some(7));
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let status = pool.status();
    assert_eq!((status.created, status.discarded.broken), (1, 0));

    // Cancelled, then the same guard is used again: it waits too.
    let mut conn = conn;
    let slow = conn.interact(|c| {
        std::thread::sleep(Duration::from_millis(200));
        c.execute("INSERT INTO t VALUES (2)", []).unwrap();
    });
    assert!(tokio::time::timeout(Duration::from_millis(20), slow)
        .await
        .is_err());
    let n = conn
        .interact(|c| c.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
    // And through `Deref` (blocking the thread until the closure ends).
    let slow = conn.interact(|c| {
        std::thread::sleep(Duration::from_millis(200));
        c.execute("INSERT INTO t VALUES (3)", []).unwrap();
    });
    assert!(tokio::time::timeout(Duration::from_millis(20), slow)
        .await
        .is_err());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(read_tag(&conn), Some(7));
}

#[tokio::test]
async fn connections_open_on_the_blocking_pool() {
    let dir = temp_dir();
    let test_thread = std::thread::current().id();
    let pool = sqlite::Manager::file(dir.path().join("threads.db"))
        .after_connect(move |_| {
            assert_ne!(std::thread::current().id(), test_thread);
            Ok(())
        })
        .pool_builder()
        .build()
        .unwrap();
    drop(pool.acquire().await.unwrap());
}

#[tokio::test]
async fn a_failing_after_connect_hook_fails_the_create() {
    let dir = temp_dir();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let pool = sqlite::Manager::file(dir.path().join("hook.db"))
        .after_connect(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .after_connect(|conn| {
            conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x)")?;
            Err("the schema is too new".into())
        })
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::AfterConnect);
    assert_eq!(
        std::error::Error::source(&e).unwrap().to_string(),
        "the schema is too new"
    );
    assert!(e.to_string().contains("hook.db"), "{e}");
    assert!(
        !e.to_string().contains("too new"),
        "the cause is not repeated: {e}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_missing_directory_is_named() {
    let dir = temp_dir();
    let path = dir.path().join("no-such-dir").join("app.db");
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = create_error(&pool).await;
    assert!(started.elapsed() < Duration::from_secs(2), "not a timeout");
    assert_eq!(e.kind(), ErrorKind::MissingDirectory);
    assert_eq!(e.location(), path.display().to_string());
    assert_eq!(
        e.to_string(),
        format!(
            "cannot open SQLite database `{}`: the directory `{}` does not exist",
            path.display(),
            path.parent().unwrap().display()
        )
    );
    let source = std::error::Error::source(&e).unwrap();
    assert!(source.downcast_ref::<rusqlite::Error>().is_some());
    assert_eq!(e.sqlite_code(), Some(rusqlite::ErrorCode::CannotOpen));
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_named() {
    let dir = temp_dir();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are notes, not an SQLite database\n".repeat(64),
    )
    .unwrap();
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::NotADatabase);
    assert_eq!(
        e.to_string(),
        format!("`{}` is not an SQLite database", path.display())
    );
    assert_eq!(e.sqlite_code(), Some(rusqlite::ErrorCode::NotADatabase));
}

/// A database file in rollback-journal mode with one table.
fn delete_mode_database(path: &std::path::Path) {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t (x INTEGER);")
        .unwrap();
}

#[tokio::test]
async fn wal_asked_of_a_read_only_connection_is_an_error() {
    let dir = temp_dir();
    let path = dir.path().join("ro.db");
    delete_mode_database(&path);
    let pool = sqlite::Manager::file(&path)
        .read_only(true)
        .journal_mode(JournalMode::Wal)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::Setting);
    assert_eq!(e.setting(), Some("journal_mode"));
    assert_eq!(e.requested(), Some("wal"));
    // SQLite refuses the statement (SQLITE_READONLY) rather than reporting
    // another mode.
    assert_eq!(
        e.sqlite_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "cannot set journal_mode = wal on SQLite database `{}` \
             (the connection is read-only)",
            path.display()
        )
    );

    // Read-only without asking for a mode keeps the file's, and cannot write.
    let pool = sqlite::Manager::file(&path)
        .read_only(true)
        .pool_builder()
        .build()
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(pragma(&conn, "journal_mode"), "delete");
    let e = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::ReadOnly));
}

/// Whether this process can write a file whose permissions forbid it (it
/// runs as root).
fn permissions_are_bypassed(path: &std::path::Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_only_file_with_wal_asked_is_an_error() {
    use std::os::unix::fs::PermissionsExt;

    let dir = temp_dir();
    let path = dir.path().join("readonly.db");
    delete_mode_database(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    if permissions_are_bypassed(&path) {
        eprintln!("skipped: file permissions do not apply to this user");
        return;
    }
    // No `read_only`: SQLite opens the file read-only by itself, and the
    // default WAL is refused rather than silently dropped.
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::Setting, "{e:?}");
    assert_eq!(e.setting(), Some("journal_mode"));
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[cfg(unix)]
#[tokio::test]
async fn permission_denied_is_named() {
    use std::os::unix::fs::PermissionsExt;

    let dir = temp_dir();
    let path = dir.path().join("secret.db");
    delete_mode_database(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if permissions_are_bypassed(&path) {
        eprintln!("skipped: file permissions do not apply to this user");
        return;
    }
    let pool = sqlite::Manager::file(&path)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "permission denied opening SQLite database `{}`",
            path.display()
        )
    );
}

#[tokio::test]
async fn a_missing_file_without_create_is_named() {
    let dir = temp_dir();
    let path = dir.path().join("missing.db");
    let pool = sqlite::Manager::file(&path)
        .create_if_missing(false)
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = create_error(&pool).await;
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!(
            "SQLite database `{}` does not exist and create_if_missing is off",
            path.display()
        )
    );
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_past_the_busy_timeout_is_an_error_not_a_timeout() {
    let dir = temp_dir();
    let path = dir.path().join("busy.db");
    delete_mode_database(&path);
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let pool = sqlite::Manager::file(&path)
        .journal_mode(JournalMode::Delete)
        .busy_timeout(Duration::from_millis(200))
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = create_error(&pool).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e:?}");
    assert_eq!(e.sqlite_code(), Some(rusqlite::ErrorCode::DatabaseBusy));
    assert_eq!(
        e.to_string(),
        format!(
            "SQLite database `{}` stayed locked past the busy timeout of 200 ms \
             while reading the schema",
            path.display()
        )
    );
    locker.execute_batch("COMMIT").unwrap();

    // A query on a pooled connection, past the busy timeout.
    let mut conn = pool.acquire().await.unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = conn
        .interact(|c| {
            c.execute("INSERT INTO t VALUES (1)", [])
                .map_err(|e| sqlite::SqliteError::query(c, e))
        })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy);
    assert_eq!(
        e.to_string(),
        format!(
            "SQLite database `{}` stayed locked past the busy timeout of 200 ms \
             while running a query",
            path.display()
        )
    );
    locker.execute_batch("COMMIT").unwrap();
}

#[tokio::test]
async fn verified_recycling_checks_each_checkout() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("verified.db"))
        .recycling_method(RecyclingMethod::Verified)
        .pool_builder()
        .max_size(2)
        .build()
        .unwrap();
    for i in 0..20_i64 {
        let conn = pool.acquire().await.unwrap();
        let v: i64 = conn.query_row("SELECT ?1", [i], |row| row.get(0)).unwrap();
        assert_eq!(v, i);
    }
    let status = pool.status();
    assert_eq!(status.recycle_failures, 0);
    assert!(status.created <= 2);
}

#[tokio::test]
async fn utilisation_and_health_check() {
    let dir = temp_dir();
    let pool = sqlite::Manager::file(dir.path().join("health.db"))
        .pool_builder()
        .min_idle(0)
        .max_size(4)
        .build()
        .unwrap();
    assert_eq!(pool.utilisation(), 0.0);
    pool.health_check().await.unwrap();
    assert_eq!(pool.utilisation(), 0.0);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_eq!(pool.utilisation(), 0.5);
    drop((a, b));
    assert_eq!(pool.utilisation(), 0.0);

    let broken = sqlite::Manager::file(dir.path().join("missing").join("x.db"))
        .pool_builder()
        .min_idle(0)
        .build()
        .unwrap();
    let e = broken.health_check().await.unwrap_err();
    assert!(matches!(e, sqlite::HealthCheckError::Acquire(_)), "{e:?}");
}

/// Blocking use from plain threads through `Deref`, with the async acquire
/// driven by a runtime handle (`Pool::acquire_blocking` has its tests in
/// `sqlite_blocking.rs`).
#[test]
fn blocking_use_from_plain_threads() {
    let dir = temp_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let path = dir.path().join("threads.db");
    schema(&path, "CREATE TABLE t (thread INTEGER, i INTEGER)");
    let pool = runtime.block_on(async {
        sqlite::Manager::file(&path)
            .pool_builder()
            .max_size(3)
            .build()
            .unwrap()
    });
    let threads: Vec<_> = (0..8_i64)
        .map(|thread| {
            let pool = pool.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                for i in 0..25_i64 {
                    let mut conn = handle.block_on(pool.acquire()).unwrap();
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
    let conn = runtime.block_on(pool.acquire()).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 200);
    assert!(pool.status().created <= 3);
}
