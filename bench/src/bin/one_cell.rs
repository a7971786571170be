//! One pool on one cell of the comparison matrix for a fixed time, for
//! profiling (`perf record -e cpu-clock`) or A/B runs of a single change.
//!
//! ```text
//! cargo build --release -p quickslot-bench --bin one_cell
//! perf record -e cpu-clock -g target/release/one_cell quickslot 2 64 16 yield 3
//! ```
//!
//! Arguments: pool (floor, semaphore, deadpool, bb8, quickslot), workers
//! (0: one task on a current-thread runtime), tasks, pool size, hold (none
//! or yield), seconds. Runs only the throughput pass (no latency
//! recording, whose clock reads would fill a profile) and prints cycles/s.

use std::sync::Arc;
use std::time::Duration;

use quickslot_bench::{for_pool, runtime, timed_pass, BenchPool, Cell, Hold, Pass, ALL_POOLS};

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
    let kind = ALL_POOLS
        .into_iter()
        .find(|k| k.name() == args[0])
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
    let throughput = for_pool!(kind, P => throughput::<P>(&cell, dur));
    println!(
        "{} {}: {:.2} M cycles/s",
        kind.name(),
        cell.id(),
        throughput.cycles_per_sec() / 1e6
    );
}
