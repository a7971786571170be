//! Pool-overhead benchmarks: quickslot against a bare `ArrayQueue` floor, a
//! tokio `Semaphore` + `ArrayQueue`, deadpool and bb8, all with a no-op
//! resource, in the same run.
//!
//! Groups:
//! - `uncontended/<pool>`: one task on a current-thread runtime, pool of 16;
//! - `contended/<pool>/w<workers>-t<tasks>-p<size>-<hold>`: workers (2 and all
//!   cores) x tasks (= workers, 64, 256) x pool size (16, 64) x hold (none,
//!   across one `yield_now()`).
//!
//! Throughput is measured with `iter_custom` (one iteration = one
//! acquire/release cycle, reported as elements/s). Latency percentiles come
//! from the histogram pass in `src/bin/compare.rs` (`scripts/bench`).
//!
//! The defaults keep the full matrix short; filter as usual, e.g.
//! `cargo bench -p quickslot-bench --bench pool -- 'contended/.*/w2-t64-p16'`,
//! or lengthen with `--measurement-time 5 --warm-up-time 2`.

use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};

use quickslot_bench::{
    contended_cells, contended_fixed, for_pool, one_task, runtime, BenchPool, Cell, ALL_POOLS,
};

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended");
    group.throughput(Throughput::Elements(1));
    for kind in ALL_POOLS {
        for_pool!(kind, P => bench_uncontended::<P>(&mut group));
    }
    group.finish();
}

fn bench_uncontended<P: BenchPool>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let cell = Cell::UNCONTENDED;
    // Built lazily, so that filtered-out benchmarks cost nothing.
    let mut state: Option<(tokio::runtime::Runtime, P)> = None;
    group.bench_function(P::KIND.name(), |b| {
        let (rt, pool) = state.get_or_insert_with(|| {
            let rt = runtime(&cell);
            let pool = rt.block_on(P::build(cell.size));
            (rt, pool)
        });
        b.iter_custom(|iters| rt.block_on(one_task(&*pool, iters)));
    });
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(1));
    for cell in contended_cells() {
        for kind in ALL_POOLS {
            for_pool!(kind, P => bench_contended::<P>(&mut group, cell));
        }
    }
    group.finish();
}

fn bench_contended<P: BenchPool>(group: &mut BenchmarkGroup<'_, WallTime>, cell: Cell) {
    let mut state: Option<(tokio::runtime::Runtime, Arc<P>)> = None;
    let id = BenchmarkId::new(P::KIND.name(), cell.id());
    group.bench_with_input(id, &cell, |b, cell| {
        let (rt, pool) = state.get_or_insert_with(|| {
            let rt = runtime(cell);
            let pool = Arc::new(rt.block_on(P::build(cell.size)));
            (rt, pool)
        });
        b.iter_custom(|iters| rt.block_on(contended_fixed(pool, cell.tasks, cell.hold, iters)));
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended, contended
}
criterion_main!(benches);
