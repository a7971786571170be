//! Side-by-side comparison of quickslot with its peers (bare `ArrayQueue`
//! floor, tokio `Semaphore` + `ArrayQueue`, deadpool, bb8), with a no-op
//! resource, all in this one process and run.
//!
//! For every cell of the matrix and every pool: a fresh runtime and pool, a
//! short warm-up, an uninstrumented throughput pass (cycles/s), then a pass
//! that times every acquire into a per-task HDR histogram (merged) for
//! p50/p99/p99.9/max. Pools are interleaved (rotated order) and the whole
//! matrix is repeated `--rounds` times; cycles/s is the median over rounds,
//! percentiles come from the histograms of all rounds merged.
//!
//! ```text
//! cargo run --release -p quickslot-bench --bin compare   # short run (scripts/bench)
//! cargo run --release -p quickslot-bench --bin compare -- --report --markdown BENCHMARKS.md --svg docs/bench.svg
//! options: --secs S  --rounds N  --filter SUBSTR  --machine NAME  --commit REV  --date DATE
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use quickslot_bench::{
    all_cores, contended_cells, measure_kind, new_histogram, Cell, Hold, PoolKind, ALL_POOLS,
};

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

struct Opts {
    report: bool,
    secs: f64,
    rounds: usize,
    filter: Option<String>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    machine: Option<String>,
    commit: Option<String>,
    date: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--report] [--secs S] [--rounds N] [--filter SUBSTR] \
         [--markdown FILE] [--svg FILE] [--machine NAME] [--commit REV] [--date DATE]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        report: false,
        secs: 0.0,
        rounds: 0,
        filter: None,
        markdown: None,
        svg: None,
        machine: None,
        commit: None,
        date: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--report" => o.report = true,
            "--short" => o.report = false,
            "--secs" => o.secs = val().parse().unwrap_or_else(|_| usage()),
            "--rounds" => o.rounds = val().parse().unwrap_or_else(|_| usage()),
            "--filter" => o.filter = Some(val()),
            "--markdown" => o.markdown = Some(val().into()),
            "--svg" => o.svg = Some(val().into()),
            "--machine" => o.machine = Some(val()),
            "--commit" => o.commit = Some(val()),
            "--date" => o.date = Some(val()),
            // `cargo bench`-style harness flags are harmless here.
            "--bench" => {}
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if o.secs <= 0.0 {
        o.secs = if o.report { 0.3 } else { 0.1 };
    }
    if o.rounds == 0 {
        o.rounds = if o.report { 5 } else { 3 };
    }
    o
}

// ---------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------

/// Everything measured for one pool in one cell.
struct Stats {
    cps: Vec<f64>,
    hist: Histogram<u64>,
}

impl Stats {
    fn median_cps(&self) -> f64 {
        let mut v = self.cps.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    /// Half the min..max range over rounds, relative to the median.
    fn spread(&self) -> f64 {
        let min = self.cps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.cps.iter().copied().fold(0.0, f64::max);
        (max - min) / 2.0 / self.median_cps()
    }

    fn q(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
    fn p50(&self) -> u64 {
        self.q(0.5)
    }
    fn p99(&self) -> u64 {
        self.q(0.99)
    }
    fn p999(&self) -> u64 {
        self.q(0.999)
    }
    fn max(&self) -> u64 {
        self.hist.max()
    }
}

struct Results {
    cells: Vec<Cell>,
    stats: HashMap<(Cell, PoolKind), Stats>,
}

impl Results {
    fn get(&self, cell: &Cell, kind: PoolKind) -> &Stats {
        &self.stats[&(*cell, kind)]
    }
}

fn run(o: &Opts) -> Results {
    let mut cells = vec![Cell::UNCONTENDED];
    cells.extend(contended_cells());
    if let Some(f) = &o.filter {
        cells.retain(|c| c.id().contains(f.as_str()));
    }
    let dur = Duration::from_secs_f64(o.secs);
    let mut stats: HashMap<(Cell, PoolKind), Stats> = HashMap::new();
    let started = Instant::now();
    for round in 0..o.rounds {
        for (ci, cell) in cells.iter().enumerate() {
            // Rotate the pool order so no pool always runs first or last.
            let shift = (round + ci) % ALL_POOLS.len();
            let mut line = format!("round {}/{} {:<18}", round + 1, o.rounds, cell.id());
            for i in 0..ALL_POOLS.len() {
                let kind = ALL_POOLS[(i + shift) % ALL_POOLS.len()];
                let (thr, lat) = measure_kind(kind, cell, dur);
                let s = stats.entry((*cell, kind)).or_insert_with(|| Stats {
                    cps: Vec::new(),
                    hist: new_histogram(),
                });
                s.cps.push(thr.cycles_per_sec());
                s.hist
                    .add(lat.hist.expect("latency pass records"))
                    .expect("histogram merge");
                let _ = write!(line, " {}={}", kind.name(), fmt_rate(thr.cycles_per_sec()));
            }
            eprintln!("{line}  [{:.0} s]", started.elapsed().as_secs_f64());
        }
    }
    Results { cells, stats }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

fn cell_title(c: &Cell) -> String {
    if c.is_uncontended() {
        format!(
            "uncontended: 1 task, current-thread runtime, pool of {}",
            c.size
        )
    } else {
        let hold = match c.hold {
            Hold::None => "no hold",
            Hold::Yield => "hold across one yield",
        };
        format!(
            "{} workers, {} tasks, pool of {}, {}",
            c.workers, c.tasks, c.size, hold
        )
    }
}

fn short_label(c: &Cell) -> String {
    if c.is_uncontended() {
        "1 task".to_string()
    } else {
        let h = if c.hold == Hold::Yield { "+y" } else { "" };
        format!("{}w {}/{}{}", c.workers, c.tasks, c.size, h)
    }
}

/// Cells whose ratios the short run prints: uncontended and the
/// oversubscribed 64 and 256 tasks on 16 objects, per worker count.
fn headline(c: &Cell) -> bool {
    c.is_uncontended() || (c.size == 16 && (c.tasks == 64 || c.tasks == 256))
}

fn ratio_table(r: &Results, all: bool) -> String {
    let mut s = String::new();
    s.push_str(
        "Ratios are quickslot's throughput over the peer's (above 1 = quickslot faster); \
         for the uncontended row, the peer's ns per cycle over quickslot's.\n\n",
    );
    s.push_str(
        "| cell | quickslot | vs floor | vs semaphore | vs deadpool | vs bb8 | p99 quickslot | p99 deadpool | p99 bb8 |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in r.cells.iter().filter(|c| all || headline(c)) {
        let q = r.get(c, PoolKind::Quickslot);
        let qv = if c.is_uncontended() {
            format!("{:.1} ns/cycle", 1e9 / q.median_cps())
        } else {
            format!("{} cycles/s", fmt_rate(q.median_cps()))
        };
        let _ = write!(s, "| {} | {qv}", c.id());
        for peer in [
            PoolKind::Floor,
            PoolKind::Semaphore,
            PoolKind::Deadpool,
            PoolKind::Bb8,
        ] {
            let ratio = q.median_cps() / r.get(c, peer).median_cps();
            let _ = write!(s, " | {}", fmt_ratio(ratio));
        }
        let _ = writeln!(
            s,
            " | {} | {} | {} |",
            fmt_ns(q.p99()),
            fmt_ns(r.get(c, PoolKind::Deadpool).p99()),
            fmt_ns(r.get(c, PoolKind::Bb8).p99())
        );
    }
    s
}

fn cell_tables(r: &Results) -> String {
    let mut s = String::new();
    for c in &r.cells {
        let _ = writeln!(s, "#### {} (`{}`)\n", cell_title(c), c.id());
        s.push_str("| pool | cycles/s | ± (rounds) | ns/cycle | p50 | p99 | p99.9 | max |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for kind in ALL_POOLS {
            let st = r.get(c, kind);
            let cps = st.median_cps();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} % | {:.1} | {} | {} | {} | {} |",
                kind.name(),
                fmt_rate(cps),
                st.spread() * 100.0,
                1e9 / cps,
                fmt_ns(st.p50()),
                fmt_ns(st.p99()),
                fmt_ns(st.p999()),
                fmt_ns(st.max())
            );
        }
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------------
// Targets (issue 6)
// ---------------------------------------------------------------------------

struct Target {
    what: String,
    measured: String,
    ok: bool,
}

fn targets(r: &Results) -> (Vec<Target>, Vec<String>) {
    let mut t = Vec::new();
    let mut notes = Vec::new();
    let find = |pred: &dyn Fn(&Cell) -> bool| -> Vec<Cell> {
        r.cells.iter().filter(|c| pred(c)).copied().collect()
    };

    if let Some(c) = find(&|c| c.is_uncontended()).first() {
        let q = r.get(c, PoolKind::Quickslot).median_cps();
        let floor = r.get(c, PoolKind::Floor).median_cps();
        let cost = floor / q;
        t.push(Target {
            what: "uncontended: cost <= 2x the floor".into(),
            measured: format!(
                "{:.1} ns vs {:.1} ns = {}",
                1e9 / q,
                1e9 / floor,
                fmt_ratio(cost)
            ),
            ok: cost <= 2.0,
        });
        for peer in [PoolKind::Deadpool, PoolKind::Bb8] {
            let p = r.get(c, peer).median_cps();
            let x = q / p;
            t.push(Target {
                what: format!("uncontended: >= 5x faster than {}", peer.name()),
                measured: format!("{:.1} ns vs {:.1} ns = {}", 1e9 / q, 1e9 / p, fmt_ratio(x)),
                ok: x >= 5.0,
            });
        }
    }

    let many = all_cores() >= 16;
    for c in find(&|c| !c.is_uncontended()) {
        let q = r.get(&c, PoolKind::Quickslot);
        let d = r.get(&c, PoolKind::Deadpool);
        let x = q.median_cps() / d.median_cps();
        let big = c.workers >= 16;
        if c.workers != 2 && !big {
            continue;
        }
        if c.is_oversubscribed() && c.size == 16 && (c.tasks == 64 || c.tasks == 256) {
            let (min_x, p99_factor) = if big { (10.0, 0.25) } else { (1.6, 1.0) };
            t.push(Target {
                what: format!("`{}`: >= {min_x}x deadpool cycles/s", c.id()),
                measured: fmt_ratio(x),
                ok: x >= min_x,
            });
            let (qp, dp) = (q.p99(), d.p99());
            let ok = if big {
                qp as f64 <= dp as f64 * p99_factor
            } else {
                qp < dp
            };
            t.push(Target {
                what: if big {
                    format!("`{}`: p99 <= 1/4 of deadpool's", c.id())
                } else {
                    format!("`{}`: p99 below deadpool's", c.id())
                },
                measured: format!(
                    "{} vs {} ({:.2}x)",
                    fmt_ns(qp),
                    fmt_ns(dp),
                    qp as f64 / dp as f64
                ),
                ok,
            });
        } else if c.size >= c.tasks {
            let min_x = if big { 2.5 } else { 1.7 };
            // The floor's own ratio is the ceiling any pool could reach here.
            let floor_x = r.get(&c, PoolKind::Floor).median_cps() / d.median_cps();
            t.push(Target {
                what: format!("`{}` (pool >= tasks): >= {min_x}x deadpool", c.id()),
                measured: format!("{} (floor: {})", fmt_ratio(x), fmt_ratio(floor_x)),
                ok: x >= min_x,
            });
        }
    }
    if !many {
        notes.push(format!(
            "The 16-worker targets (>= 10x deadpool with p99 <= 1/4 of deadpool's when \
             oversubscribed; >= 2.5x when the pool is at least as large as the task count) \
             were not measured: this machine has {} cores, so its \"all cores\" column is \
             the {}-worker one.",
            all_cores(),
            all_cores()
        ));
    }
    (t, notes)
}

fn target_table(r: &Results) -> String {
    let (t, notes) = targets(r);
    let mut s = String::new();
    s.push_str("| target | measured | |\n|---|---:|---|\n");
    for x in &t {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x.what,
            x.measured,
            if x.ok { "met" } else { "**MISSED**" }
        );
    }
    let missed = t.iter().filter(|x| !x.ok).count();
    let _ = writeln!(s, "\n{} of {} targets met.", t.len() - missed, t.len());
    for n in notes {
        let _ = writeln!(s, "\n{n}");
    }
    s
}

// ---------------------------------------------------------------------------
// Report and chart
// ---------------------------------------------------------------------------

fn markdown(o: &Opts, r: &Results) -> String {
    let cores = all_cores();
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str(
        "Generated by `scripts/bench-report` (`bench/src/bin/compare.rs`, harness in \
         `bench/src/lib.rs`); do not edit by hand.\n\n",
    );
    let _ = writeln!(
        s,
        "- Machine: {}\n- Cores: {cores} (the \"all cores\" worker count is {cores})\n- Date: {}\n- Commit: {}\n- Run: {} rounds x {:.2} s per pass (warm-up, throughput pass, latency pass) per pool and cell\n",
        o.machine.as_deref().unwrap_or("unknown"),
        o.date.as_deref().unwrap_or("unknown"),
        o.commit.as_deref().unwrap_or("unknown"),
        o.rounds,
        o.secs
    );
    if cores < 16 {
        let _ = writeln!(
            s,
            "**Note:** this machine has only {cores} cores, so the \"all cores\" column of \
             the matrix equals the {cores}-worker one and is not repeated. No 16-core \
             figures are given here.\n"
        );
    }
    s.push_str(
        "![cycles/s and p99 acquire latency per pool across the matrix](docs/bench.svg)\n\n",
    );
    s.push_str("## Method\n\n");
    s.push_str(
        "A no-op resource (a `u64`, created instantly), so only the pool is measured. \
         All pools run in the same process and the same run, interleaved in rotated order, \
         each on a fresh runtime and a fresh pool filled to its size before measuring. \
         \"hold: yield\" keeps the object across one `tokio::task::yield_now()`. \
         Cycles/s (one cycle = acquire + release) comes from an uninstrumented pass and is \
         the median over rounds (± is half the min..max range); acquire latency \
         (from calling acquire to holding the object) comes from a second pass that \
         records every acquire in a per-task HDR histogram, merged over tasks and rounds.\n\n",
    );
    s.push_str(
        "In \"hold: none\" cells a task whose acquire succeeds at once never yields to the \
         scheduler unless the pool consumes tokio's cooperative budget (tokio's `Semaphore`, \
         hence the semaphore peer and deadpool, does; the floor does not). A pool that does \
         not yield lets one task per worker loop back to back while the other tasks wait to \
         be polled: its cycles/s is close to its uncontended speed, and its percentiles only \
         cover acquires that started, not the time a task waited to be scheduled. The \
         \"hold: yield\" cells, where every task yields once per cycle, are the ones that \
         compare waiting and hand-off. In the \"pool >= tasks\" targets, \"floor\" gives the \
         bare queue's ratio to deadpool, the ceiling for any pool in that cell.\n\n",
    );
    s.push_str("| pool | what |\n|---|---|\n");
    for k in ALL_POOLS {
        let _ = writeln!(s, "| {} | {} |", k.name(), k.description());
    }
    s.push_str("\n## Targets\n\n");
    s.push_str(&target_table(r));
    s.push_str("\n## Ratios\n\n");
    s.push_str(&ratio_table(r, true));
    s.push_str("\n## Every cell\n\n");
    s.push_str(&cell_tables(r));
    s
}

fn pool_color(k: PoolKind) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match k {
        PoolKind::Floor => RGBColor(150, 150, 150),
        PoolKind::Semaphore => RGBColor(31, 119, 180),
        PoolKind::Deadpool => RGBColor(255, 127, 14),
        PoolKind::Bb8 => RGBColor(44, 160, 44),
        PoolKind::Quickslot => RGBColor(214, 39, 40),
    }
}

fn chart(path: &PathBuf, r: &Results) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let n = r.cells.len();
    let width = (160 + 95 * n as u32).max(900);
    let root = SVGBackend::new(path, (width, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 1));

    type Metric = fn(&Stats) -> f64;
    let metrics: [(&str, &str, Metric); 2] = [
        (
            "Throughput: acquire/release cycles per second (higher is better)",
            "cycles/s",
            |s| s.median_cps(),
        ),
        (
            "p99 acquire latency in µs (lower is better)",
            "p99 µs",
            |s| s.p99() as f64 / 1e3,
        ),
    ];
    for (panel, (title, ylabel, metric)) in panels.iter().zip(metrics) {
        let values: Vec<f64> = r.stats.values().map(metric).filter(|v| *v > 0.0).collect();
        let lo = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-3)
            / 1.5;
        let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 60.0; // headroom above the data for the legend
        let mut ch = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0..n.saturating_sub(1)).into_segmented(),
                (lo..hi).log_scale(),
            )?;
        ch.configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => short_label(&r.cells[*i]),
                _ => String::new(),
            })
            .y_desc(ylabel)
            .y_label_formatter(&|v| {
                if *v >= 1e6 {
                    format!("{:.1}M", v / 1e6)
                } else if *v >= 1e3 {
                    format!("{:.0}k", v / 1e3)
                } else if *v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
            .x_desc("cell: workers, tasks/pool size, +y = hold across one yield")
            .draw()?;
        for kind in ALL_POOLS {
            let color = pool_color(kind);
            let width = if kind == PoolKind::Quickslot { 3 } else { 2 };
            let pts: Vec<(SegmentValue<usize>, f64)> = (0..n)
                .map(|i| (SegmentValue::CenterOf(i), metric(r.get(&r.cells[i], kind))))
                .collect();
            ch.draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))?
                .label(kind.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let o = parse_opts();
    let cores = all_cores();
    eprintln!(
        "quickslot comparison: {} mode, {} rounds x {:.2} s per pass, {cores} cores{}",
        if o.report { "report" } else { "short" },
        o.rounds,
        o.secs,
        if cores < 16 {
            " (\"all cores\" = this count; the 16-worker targets need a 16-core machine)"
        } else {
            ""
        }
    );
    let r = run(&o);
    if r.cells.is_empty() {
        eprintln!("no cell matches the filter");
        std::process::exit(2);
    }

    if let Some(path) = &o.markdown {
        std::fs::write(path, markdown(&o, &r)).expect("write markdown");
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &o.svg {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        chart(path, &r).expect("write chart");
        eprintln!("wrote {}", path.display());
    }

    println!("\n## quickslot vs peers ({cores} cores)\n");
    println!("{}", ratio_table(&r, o.report));
    println!("## Targets\n");
    println!("{}", target_table(&r));
    if o.report {
        println!("## Every cell\n");
        println!("{}", cell_tables(&r));
    }
}
