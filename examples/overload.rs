//! Overload: requests arrive at four times what the pool can serve. Without
//! admission control the line grows until requests time out after waiting
//! their whole deadline; with `max_waiters` or `fail_fast_when_late` the
//! excess is refused at once and the rest are served in time.
//!
//! ```text
//! cargo run --release --example overload
//! ```
//!
//! A pool of 16 resources, each use holds one for 2 ms (capacity 8,000 uses
//! per second); requests arrive at 32,000 per second for 3 s, each with a
//! 50 ms deadline for its acquire. Printed per configuration: the share of
//! requests served within their deadline, refused at once, and timed out,
//! and the p99 time a served request waited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickslot::{Error, Manager, Pool};

struct Unit;

impl Manager for Unit {
    type Resource = ();
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

const POOL: usize = 16;
const HOLD: Duration = Duration::from_millis(2);
const DEADLINE: Duration = Duration::from_millis(50);
const RUN: Duration = Duration::from_secs(3);
const ARRIVALS_PER_MS: u32 = 32;

#[derive(Default)]
struct Tally {
    served: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    waits: Mutex<Vec<Duration>>,
}

async fn run(name: &str, pool: Pool<Unit>) {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let mut tasks = Vec::new();
    while started.elapsed() < RUN {
        ticker.tick().await;
        for _ in 0..ARRIVALS_PER_MS {
            let (pool, tally) = (pool.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let asked = Instant::now();
                match pool.acquire_timeout(DEADLINE).await {
                    Ok(guard) => {
                        tally.waits.lock().unwrap().push(asked.elapsed());
                        tally.served.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(HOLD).await;
                        drop(guard);
                    }
                    Err(Error::Overloaded { .. }) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Timeout { .. }) => {
                        tally.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (served, refused, timed_out) = (
        tally.served.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.timed_out.load(Ordering::Relaxed),
    );
    let total = (served + refused + timed_out) as f64;
    let mut waits = tally.waits.lock().unwrap().clone();
    waits.sort();
    let p99 = waits
        .get(waits.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    println!(
        "| {name} | {:.1} % | {:.1} % | {:.1} % | {p99:.1?} |",
        100.0 * served as f64 / total,
        100.0 * refused as f64 / total,
        100.0 * timed_out as f64 / total,
    );
}

#[tokio::main]
async fn main() {
    println!(
        "pool of {POOL}, each use holds {HOLD:?}; {} arrivals/s (4x capacity) for {RUN:?}; \
         deadline {DEADLINE:?}\n",
        ARRIVALS_PER_MS * 1000
    );
    println!(
        "| configuration | served in time | refused at once | timed out | p99 wait (served) |"
    );
    println!("|---|---:|---:|---:|---:|");
    let builder = || Pool::builder(Unit).max_size(POOL);
    run("no admission control", builder().build().unwrap()).await;
    // The line a 50 ms deadline can be served from: 50 ms / 2 ms x 16.
    run(
        "max_waiters(400)",
        builder().max_waiters(400).build().unwrap(),
    )
    .await;
    run(
        "fail_fast_when_late",
        builder().fail_fast_when_late(true).build().unwrap(),
    )
    .await;
}
