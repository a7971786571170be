//! Uncontended cost of `acquire_blocking` + drop beside `acquire().await` +
//! drop, same process, interleaved rounds: one thread, a pool of 16 no-op
//! resources, everything idle (the fast path).
//!
//! ```text
//! cargo run --release -p quickslot-bench --bin blocking_cost
//! ```

use std::time::{Duration, Instant};

use quickslot::{Manager, Pool};

struct Noop;

impl Manager for Noop {
    type Resource = u64;
    type Error = std::convert::Infallible;

    async fn create(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }
}

const ITERS: u32 = 2_000_000;
const ROUNDS: usize = 7;

fn per_op(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(ITERS)
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::builder(Noop).max_size(16).build().unwrap();
    runtime.block_on(async {
        drop(pool.acquire().await.unwrap());
    });
    let (mut asynch, mut blocking, mut blocking_rt) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        runtime.block_on(async {
            for _ in 0..ITERS {
                let g = pool.acquire().await.unwrap();
                std::hint::black_box(&*g);
            }
        });
        asynch.push(per_op(t.elapsed()));

        // A plain thread with no runtime (quickslot's own runtime handle).
        let p = pool.clone();
        blocking.push(
            std::thread::spawn(move || {
                let t = Instant::now();
                for _ in 0..ITERS {
                    let g = p.acquire_blocking().unwrap();
                    std::hint::black_box(&*g);
                }
                per_op(t.elapsed())
            })
            .join()
            .unwrap(),
        );

        // Inside spawn_blocking (the current runtime's handle).
        let p = pool.clone();
        blocking_rt.push(runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                for _ in 0..ITERS {
                    let g = p.acquire_blocking().unwrap();
                    std::hint::black_box(&*g);
                }
                per_op(t.elapsed())
            })
            .await
            .unwrap()
        }));
    }
    let show = |name: &str, v: Vec<f64>| {
        let (m, lo, hi) = median(v);
        println!("| {name} | {m:.1} ns | {lo:.1}-{hi:.1} ns |");
    };
    println!("uncontended acquire + drop, one thread, pool of 16, {ROUNDS} interleaved rounds of {ITERS}\n");
    println!("| call | median | min-max |");
    println!("|---|---:|---:|");
    show("`acquire().await` (current-thread runtime)", asynch);
    show("`acquire_blocking()` on a plain thread", blocking);
    show("`acquire_blocking()` inside `spawn_blocking`", blocking_rt);
}
