//! The SQLite adapter: a pool on a WAL file in a temporary directory, writers
//! and readers from many tasks through `interact`, a transaction, the pool's
//! figures and a health check. No server needed:
//!
//! ```sh
//! cargo run --example sqlite --features sqlite
//! ```

use std::time::{Duration, Instant};

use quickslot::sqlite::{rusqlite, Manager, PoolExt, Synchronous};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("quickslot-sqlite-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("app.db");

    // WAL is the default for files; NORMAL is the usual companion. The hook
    // runs on every new connection.
    let pool = Manager::file(&path)
        .synchronous(Synchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .after_connect(|conn| {
            conn.set_prepared_statement_cache_capacity(32);
            Ok(())
        })
        .pool_builder()
        .max_size(4)
        .build()?;
    println!("database: {}", path.display());

    // The schema and two accounts, once.
    pool.acquire()
        .await?
        .interact(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS accounts (
                     id INTEGER PRIMARY KEY,
                     owner TEXT NOT NULL,
                     balance INTEGER NOT NULL CHECK (balance >= 0)
                 );
                 CREATE TABLE IF NOT EXISTS transfers (
                     id INTEGER PRIMARY KEY,
                     from_id INTEGER NOT NULL REFERENCES accounts (id),
                     to_id INTEGER NOT NULL REFERENCES accounts (id),
                     amount INTEGER NOT NULL
                 );
                 INSERT OR IGNORE INTO accounts (id, owner, balance) VALUES
                     (1, 'alice', 1000), (2, 'bob', 1000);",
            )
        })
        .await??;

    // 32 tasks move money back and forth, each transfer one transaction.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..32_i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25_i64 {
                let (from, to) = if (task + i) % 2 == 0 { (1, 2) } else { (2, 1) };
                let mut conn = pool.acquire().await?;
                conn.interact(move |conn| transfer(conn, from, to, 1))
                    .await??;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();

    let (transfers, total): (i64, i64) = pool
        .acquire()
        .await?
        .interact(|conn| {
            conn.query_row(
                "SELECT (SELECT count(*) FROM transfers), (SELECT sum(balance) FROM accounts)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await??;
    println!("{transfers} transfers in {elapsed:.2?}; money is conserved: {total} == 2000");
    assert_eq!(total, 2000);

    // A foreign key violation is an error (foreign_keys is on by default).
    let violation = pool
        .acquire()
        .await?
        .interact(|conn| {
            conn.execute(
                "INSERT INTO transfers (from_id, to_id, amount) VALUES (1, 99, 5)",
                [],
            )
        })
        .await?;
    println!(
        "transfer to a missing account: {}",
        violation.expect_err("foreign keys are enforced")
    );

    pool.health_check().await?;
    println!(
        "health check passed; utilisation {:.2}; {:?}",
        pool.utilisation(),
        pool.status()
    );

    drop(pool);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn transfer(
    conn: &mut rusqlite::Connection,
    from: i64,
    to: i64,
    amount: i64,
) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock up front, so the busy timeout applies
    // to it instead of a deferred upgrade failing with SQLITE_BUSY.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.prepare_cached("UPDATE accounts SET balance = balance - ?1 WHERE id = ?2")?
        .execute([amount, from])?;
    tx.prepare_cached("UPDATE accounts SET balance = balance + ?1 WHERE id = ?2")?
        .execute([amount, to])?;
    tx.prepare_cached("INSERT INTO transfers (from_id, to_id, amount) VALUES (?1, ?2, ?3)")?
        .execute([from, to, amount])?;
    tx.commit()
}
