//! One pool on one cell of the comparison matrix for a fixed time, for
//! profiling (`perf record -e cpu-clock`) or A/B runs of a single change.
//!
//! ```text
//! cargo build --release -p quickslot-bench --bin one_cell
//! perf record -e cpu-clock -g target/release/one_cell quickslot 2 64 16 yield 3
//! ```
//!
//! Arguments: pool (floor, semaphore, deadpool, bb8, quickslot, or
//! quickslot-nodeadline: quickslot with `acquire_timeout(None)`), workers
//! (0: one task on a current-thread runtime), tasks, pool size, hold (none
//! or yield), seconds. Runs only the throughput pass (no latency
//! recording, whose clock reads would fill a profile) and prints cycles/s.

use std::sync::Arc;
use std::time::Duration;

use quickslot_bench::{
    for_pool, runtime, timed_pass, BenchPool, Cell, Hold, Noop, Pass, PoolKind, ALL_POOLS,
};

/// quickslot without a deadline on its waits, to measure what the default
/// 30 s deadline costs.
struct NoDeadline(quickslot::Pool<Noop>);

impl BenchPool for NoDeadline {
    type Guard<'a> = quickslot::Pooled<Noop>;
    const KIND: PoolKind = PoolKind::Quickslot;

    async fn build(size: usize) -> Self {
        let pool = quickslot::Pool::builder(Noop)
            .max_size(size)
            .acquire_timeout(None)
            .build()
            .expect("quickslot build");
        let held: Vec<_> = futures_fill(&pool, size).await;
        drop(held);
        NoDeadline(pool)
    }

    async fn acquire(&self) -> quickslot::Pooled<Noop> {
        match self.0.acquire().await {
            Ok(obj) => obj,
            Err(_) => panic!("quickslot acquire failed"),
        }
    }
}

async fn futures_fill(pool: &quickslot::Pool<Noop>, n: usize) -> Vec<quickslot::Pooled<Noop>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(pool.acquire().await.expect("prefill"));
    }
    held
}

fn throughput<P: BenchPool>(cell: &Cell, dur: Duration) -> Pass {
    let rt = runtime(cell);
    rt.block_on(async {
        let pool = Arc::new(P::build(cell.size).await);
        timed_pass(&pool, cell, (dur / 5).max(Duration::from_millis(10)), false).await;
        timed_pass(&pool, cell, dur, false).await
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: one_cell POOL WORKERS TASKS SIZE none|yield SECS");
        std::process::exit(2)
    };
    if args.len() != 6 {
        usage();
    }
    let no_deadline = args[0] == "quickslot-nodeadline";
    let kind = ALL_POOLS
        .into_iter()
        .find(|k| k.name() == args[0] || (no_deadline && *k == PoolKind::Quickslot))
        .unwrap_or_else(|| usage());
    let num = |i: usize| args[i].parse::<usize>().unwrap_or_else(|_| usage());
    let hold = match args[4].as_str() {
        "none" => Hold::None,
        "yield" => Hold::Yield,
        _ => usage(),
    };
    let secs: f64 = args[5].parse().unwrap_or_else(|_| usage());
    let cell = Cell {
        workers: num(1),
        tasks: num(2),
        size: num(3),
        hold,
    };
    let dur = Duration::from_secs_f64(secs);
    let throughput = if no_deadline {
        throughput::<NoDeadline>(&cell, dur)
    } else {
        for_pool!(kind, P => throughput::<P>(&cell, dur))
    };
    println!(
        "{} {}: {:.2} M cycles/s",
        args[0],
        cell.id(),
        throughput.cycles_per_sec() / 1e6
    );
}
