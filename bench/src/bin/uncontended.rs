//! The uncontended acquire+release cycle, for instruction counts: one task
//! on a current-thread runtime, a pool of one no-op resource that is idle
//! (the fast path), default settings (30 s `acquire_timeout`).
//!
//! ```text
//! uncontended <quickslot|quickslot-outline|quickslot-wait|floor|deadpool> <cycles>
//! ```
//!
//! Run it under callgrind with two cycle counts and take the difference:
//! that removes the set-up (runtime, pool, first create) and leaves the
//! instructions of the extra cycles alone.
//!
//! ```text
//! cargo build --profile profiling -p quickslot-bench --bin uncontended
//! valgrind --tool=callgrind target/profiling/uncontended quickslot 100000
//! valgrind --tool=callgrind target/profiling/uncontended quickslot 200000
//! ```
//!
//! `floor` is a bare `crossbeam_queue::ArrayQueue` pop + push of a
//! pointer-sized item (quickslot's idle store holds boxed entries), in the
//! same async loop; `deadpool` is deadpool 0.13 `managed::Pool` with its
//! defaults. `quickslot-outline` polls each acquire in a function of its
//! own (never inlined), as code whose poll is not inlined would.
//! `quickslot-wait` is not uncontended: two tasks share a pool of one and
//! each acquire waits in line (a check on the slow path).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use crossbeam_queue::ArrayQueue;

/// The warm-up cycles before the measured ones.
const WARM: u64 = 1_000;

struct Noop;

impl quickslot::Manager for Noop {
    type Resource = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
}

// deadpool-begin
struct DeadNoop;

impl deadpool::managed::Manager for DeadNoop {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _obj: &mut u64,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

#[inline(never)]
async fn deadpool_cycles(pool: &deadpool::managed::Pool<DeadNoop>, n: u64) {
    for _ in 0..n {
        let g = pool.get().await.expect("deadpool get");
        black_box(&*g);
    }
}

fn deadpool(rt: &tokio::runtime::Runtime, n: u64) {
    let pool = deadpool::managed::Pool::builder(DeadNoop)
        .max_size(1)
        .build()
        .expect("deadpool build");
    rt.block_on(async {
        deadpool_cycles(&pool, WARM).await;
        deadpool_cycles(&pool, n).await;
    });
}
// deadpool-end

#[inline(never)]
async fn quickslot_cycles(pool: &quickslot::Pool<Noop>, n: u64) {
    for _ in 0..n {
        let g = match pool.acquire().await {
            Ok(g) => g,
            Err(_) => panic!("quickslot acquire failed"),
        };
        black_box(&*g);
    }
}

/// Polls out of line: the acquire future's state is written here and read
/// by its first poll in another function, as in code where the poll is not
/// inlined into the caller (to check the argument copy for loads over
/// narrower stores in the annotated assembly).
#[inline(never)]
fn poll_outline<F: Future>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    fut.poll(cx)
}

#[inline(never)]
async fn quickslot_outline_cycles(pool: &quickslot::Pool<Noop>, n: u64) {
    for _ in 0..n {
        let mut fut = pin!(pool.acquire());
        let g = match poll_fn(|cx| poll_outline(fut.as_mut(), cx)).await {
            Ok(g) => g,
            Err(_) => panic!("quickslot acquire failed"),
        };
        black_box(&*g);
    }
}

fn quickslot_outline(rt: &tokio::runtime::Runtime, n: u64) {
    let pool = quickslot::Pool::builder(Noop)
        .max_size(1)
        .build()
        .expect("quickslot build");
    rt.block_on(async {
        quickslot_outline_cycles(&pool, WARM).await;
        quickslot_outline_cycles(&pool, n).await;
    });
}

/// Two tasks on a pool of one, each holding across a yield: every acquire
/// waits in line and is handed the resource (the slow path), for a check
/// that the fast path's gains cost the wait nothing. `n` acquires in all.
fn quickslot_wait(rt: &tokio::runtime::Runtime, n: u64) {
    let pool = quickslot::Pool::builder(Noop)
        .max_size(1)
        .build()
        .expect("quickslot build");
    let run = |n: u64| {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                rt.spawn(async move {
                    for _ in 0..n / 2 {
                        let g = match pool.acquire().await {
                            Ok(g) => g,
                            Err(_) => panic!("quickslot acquire failed"),
                        };
                        tokio::task::yield_now().await;
                        black_box(&*g);
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for t in tasks {
                t.await.expect("task");
            }
        });
    };
    run(WARM);
    run(n);
}

fn quickslot(rt: &tokio::runtime::Runtime, n: u64) {
    let pool = quickslot::Pool::builder(Noop)
        .max_size(1)
        .build()
        .expect("quickslot build");
    rt.block_on(async {
        quickslot_cycles(&pool, WARM).await;
        quickslot_cycles(&pool, n).await;
    });
}

#[inline(never)]
async fn floor_cycles(q: &ArrayQueue<Box<u64>>, n: u64) {
    for _ in 0..n {
        let v = q.pop().expect("one item");
        black_box(&*v);
        let _ = q.push(black_box(v));
    }
}

fn floor(rt: &tokio::runtime::Runtime, n: u64) {
    let q = ArrayQueue::new(1);
    let _ = q.push(Box::new(0u64));
    rt.block_on(async {
        floor_cycles(&q, WARM).await;
        floor_cycles(&q, n).await;
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "quickslot".into());
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("cycles: a number"))
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match kind.as_str() {
        "quickslot" => quickslot(&rt, n),
        "quickslot-outline" => quickslot_outline(&rt, n),
        "quickslot-wait" => quickslot_wait(&rt, n),
        "floor" => floor(&rt, n),
        // deadpool-begin
        "deadpool" => deadpool(&rt, n),
        // deadpool-end
        other => panic!("unknown kind {other}: quickslot, floor or deadpool"),
    }
}
