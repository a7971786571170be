//! Many tasks sharing a small pool of PostgreSQL connections.
//!
//! ```text
//! scripts/with-postgres cargo run --features postgres --example postgres
//! # or against your own server:
//! QUICKSLOT_PG_URL=postgres://user:password@localhost/db cargo run --features postgres --example postgres
//! # or with the standard PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE variables.
//! ```
//!
//! Options: `--tasks N` (default 64), `--pool N` (default 8), `--rounds N`
//! (queries per task, default 50), `--method fast|verified|clean`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quickslot::postgres::{PgManager, RecyclingMethod};

struct Options {
    tasks: usize,
    pool: usize,
    rounds: usize,
    method: RecyclingMethod,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        tasks: 64,
        pool: 8,
        rounds: 50,
        method: RecyclingMethod::Fast,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{v:?} is not a positive number"))
        };
        match arg.as_str() {
            "--tasks" => options.tasks = number(value()?)?,
            "--pool" => options.pool = number(value()?)?,
            "--rounds" => options.rounds = number(value()?)?,
            "--method" => {
                options.method = match value()?.as_str() {
                    "fast" => RecyclingMethod::Fast,
                    "verified" => RecyclingMethod::Verified,
                    "clean" => RecyclingMethod::Clean,
                    other => return Err(format!("unknown method {other:?}")),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let options = parse_args()?;
    let manager = match std::env::var("QUICKSLOT_PG_URL") {
        Ok(url) => PgManager::from_url(&url)?,
        Err(_) => PgManager::from_env()?,
    }
    .recycling_method(options.method)
    .after_connect_sql("SET application_name = 'quickslot-example'");

    let pool = manager
        .pool_builder()
        .max_size(options.pool)
        .acquire_timeout(Duration::from_secs(10))
        .build()?;

    {
        let client = pool.acquire().await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS quickslot_example (task int, round int, at timestamptz DEFAULT now()); \
                 TRUNCATE quickslot_example",
            )
            .await?;
    }

    println!(
        "{} tasks x {} rounds on a pool of {} ({:?})",
        options.tasks, options.rounds, options.pool, options.method
    );
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let reporter = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let s = pool.status();
                println!(
                    "[{:>6.2}s] ops {:>6}  size {:>2} idle {:>2} in_use {:>2} waiting {:>3}  created {} errors {}",
                    started.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed),
                    s.size,
                    s.idle,
                    s.in_use,
                    s.waiting,
                    s.created,
                    s.create_errors,
                );
            }
        })
    };

    let mut tasks = Vec::with_capacity(options.tasks);
    for task in 0..options.tasks {
        let pool = pool.clone();
        let done = done.clone();
        let rounds = options.rounds;
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let mut client = pool.acquire().await?;
                if round % 10 == 0 {
                    // A transaction every tenth round.
                    let tx = client.transaction().await?;
                    tx.execute_cached(
                        "INSERT INTO quickslot_example (task, round) VALUES ($1, $2)",
                        &[&(task as i32), &(round as i32)],
                    )
                    .await?;
                    tx.commit().await?;
                } else {
                    let row = client
                        .query_one_cached(
                            "SELECT $1::int4 + $2::int4",
                            &[&(task as i32), &(round as i32)],
                        )
                        .await?;
                    let sum: i32 = row.get(0);
                    if sum != (task + round) as i32 {
                        return Err(format!("wrong answer {sum}").into());
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    reporter.abort();

    let elapsed = started.elapsed();
    let ops = done.load(Ordering::Relaxed);
    let inserted: i64 = pool
        .acquire()
        .await?
        .query_one("SELECT count(*) FROM quickslot_example", &[])
        .await?
        .get(0);
    let status = pool.status();
    let cache = pool.manager().statement_cache_stats();
    println!(
        "done: {ops} operations in {:.2}s ({:.0}/s), {inserted} rows inserted",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64()
    );
    println!(
        "pool: {} connections created, {} acquired at once, {} after waiting (total wait {:?})",
        status.created, status.acquired_immediately, status.acquired_after_wait, status.total_wait
    );
    println!(
        "statement cache: {} hits, {} misses",
        cache.hits, cache.misses
    );
    pool.acquire()
        .await?
        .batch_execute("DROP TABLE quickslot_example")
        .await?;
    pool.close();
    Ok(())
}
