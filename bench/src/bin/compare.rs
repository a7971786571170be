//! Side-by-side comparison of quickslot with its peers (bare `ArrayQueue`
//! floor, tokio `Semaphore` + `ArrayQueue`, deadpool, bb8), with a no-op
//! resource, all in this one process and run.
//!
//! For every cell of the matrix and every pool: a fresh runtime and pool, a
//! short warm-up, an uninstrumented throughput pass (cycles/s), then a pass
//! that times every acquire into a per-task HDR histogram (merged over the
//! tasks) for p50/p99/p99.9/max. Pools are interleaved (rotated order) and the
//! whole matrix is repeated `--rounds` times. Every figure printed is the
//! median over the rounds with its min-max over the rounds; quickslot's ratio
//! to a peer is computed within each round (the two ran back to back) and then
//! summarised the same way.
//!
//! ```text
//! cargo run --release -p quickslot-bench --bin compare   # short run (scripts/bench)
//! cargo run --release -p quickslot-bench --bin compare -- --report --markdown BENCHMARKS.md --svg docs/bench.svg
//! options: --secs S  --rounds N  --filter SUBSTR  --targets  --machine NAME
//!          --commit REV  --date DATE  --load-before-build "L1 L5 L15"
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use quickslot_bench::{all_cores, contended_cells, measure_kind, Cell, Hold, PoolKind, ALL_POOLS};

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// Rounds `--report` runs by default, and the fewest a committed report uses.
const REPORT_ROUNDS: usize = 7;

struct Opts {
    report: bool,
    targets: bool,
    secs: f64,
    rounds: usize,
    filter: Option<String>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    machine: Option<String>,
    commit: Option<String>,
    date: Option<String>,
    load_before_build: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--report] [--targets] [--secs S] [--rounds N] [--filter SUBSTR] \
         [--markdown FILE] [--svg FILE] [--machine NAME] [--commit REV] [--date DATE] \
         [--load-before-build LOAD]\n\
         \n\
         short run (default): {} rounds x {} s per pass; --report: {REPORT_ROUNDS} rounds x {} s\n\
         --targets also checks issue 14's targets (met / missed)",
        SHORT_ROUNDS, SHORT_SECS, REPORT_SECS
    );
    std::process::exit(2)
}

const SHORT_ROUNDS: usize = 5;
const SHORT_SECS: f64 = 0.08;
const REPORT_SECS: f64 = 0.3;

fn parse_opts() -> Opts {
    let mut o = Opts {
        report: false,
        targets: false,
        secs: 0.0,
        rounds: 0,
        filter: None,
        markdown: None,
        svg: None,
        machine: None,
        commit: None,
        date: None,
        load_before_build: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--report" => o.report = true,
            "--short" => o.report = false,
            "--targets" => o.targets = true,
            "--secs" => o.secs = val().parse().unwrap_or_else(|_| usage()),
            "--rounds" => o.rounds = val().parse().unwrap_or_else(|_| usage()),
            "--filter" => o.filter = Some(val()),
            "--markdown" => o.markdown = Some(val().into()),
            "--svg" => o.svg = Some(val().into()),
            "--machine" => o.machine = Some(val()),
            "--commit" => o.commit = Some(val()),
            "--date" => o.date = Some(val()),
            "--load-before-build" => o.load_before_build = Some(val()),
            // `cargo bench`-style harness flags are harmless here.
            "--bench" => {}
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if o.secs <= 0.0 {
        o.secs = if o.report { REPORT_SECS } else { SHORT_SECS };
    }
    if o.rounds == 0 {
        o.rounds = if o.report {
            REPORT_ROUNDS
        } else {
            SHORT_ROUNDS
        };
    }
    o
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

/// CPU model (from `lscpu`, else /proc/cpuinfo, else the architecture), with
/// the hypervisor when lscpu names one.
fn detect_machine() -> String {
    let lscpu = std::process::Command::new("lscpu")
        .env("LC_ALL", "C")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        lscpu.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    let model = field("Model name").or_else(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()?
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
    });
    let mut s = model.unwrap_or_else(|| "unknown CPU".to_string());
    let _ = write!(s, ", {}", std::env::consts::ARCH);
    if let Some(h) = field("Hypervisor vendor") {
        let _ = write!(s, ", virtual machine ({h})");
    }
    s
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg has them.
fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<&str> = s.split_whitespace().take(3).collect();
    (v.len() == 3).then(|| v.join(" "))
}

/// What the header says about the machine and the run, one item a line.
struct Header {
    machine: String,
    cores: usize,
    load_start: Option<String>,
    load_before_build: Option<String>,
    date: Option<String>,
    commit: Option<String>,
}

impl Header {
    fn new(o: &Opts) -> Header {
        Header {
            machine: o.machine.clone().unwrap_or_else(detect_machine),
            cores: all_cores(),
            load_start: load_average(),
            load_before_build: o.load_before_build.clone(),
            date: o.date.clone(),
            commit: o.commit.clone(),
        }
    }

    fn load(&self) -> String {
        let at_start = self.load_start.as_deref().unwrap_or("unknown");
        let mut s = format!("{at_start} (1, 5, 15 min) when measuring started");
        if let Some(b) = &self.load_before_build {
            let _ = write!(s, "; {b} before the build");
        }
        // The ambient load: before our own build if known.
        let l1 = self
            .load_before_build
            .as_deref()
            .or(self.load_start.as_deref())
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
        if let Some(l1) = l1 {
            if l1 > 0.5 * self.cores as f64 {
                s.push_str(" — other work was running: expect lower, more scattered figures");
            }
        }
        s
    }

    /// `- key: value` lines.
    fn lines(&self, o: &Opts, cells: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "- Machine: {}", self.machine);
        let _ = writeln!(
            s,
            "- Cores: {} available to this process (`available_parallelism`)",
            self.cores
        );
        let _ = writeln!(s, "- Load average: {}", self.load());
        if let Some(d) = &self.date {
            let _ = writeln!(s, "- Date: {d}");
        }
        if let Some(c) = &self.commit {
            let _ = writeln!(s, "- Commit: {c}");
        }
        let _ = writeln!(
            s,
            "- Method: {} interleaved rounds; per round, each of {cells} cells runs every pool \
             (rotated order) on a fresh runtime and pool: warm-up, a {:.2} s throughput pass, a \
             {:.2} s latency pass. Figures are medians over the rounds with (min-max) over the \
             rounds; ratios are computed within each round, then summarised the same way.",
            o.rounds, o.secs, o.secs
        );
        s
    }
}

// ---------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------

/// Median and min-max of one figure over the rounds.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Spread {
        assert!(!v.is_empty(), "no rounds");
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// One pool in one cell: one entry per round (the same index is the same
/// round for every pool of the cell).
#[derive(Default)]
struct Stats {
    cps: Vec<f64>,
    /// Acquire latency quantiles of each round's latency pass, in ns.
    p50: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
    max: Vec<f64>,
}

impl Stats {
    fn cps(&self) -> Spread {
        Spread::of(&self.cps)
    }
    fn p99(&self) -> Spread {
        Spread::of(&self.p99)
    }
}

struct Results {
    rounds: usize,
    cells: Vec<Cell>,
    stats: HashMap<(Cell, PoolKind), Stats>,
}

impl Results {
    fn get(&self, cell: &Cell, kind: PoolKind) -> &Stats {
        &self.stats[&(*cell, kind)]
    }

    /// `f(quickslot's stats, the peer's stats, round)` for each round.
    fn per_round(
        &self,
        cell: &Cell,
        peer: PoolKind,
        f: impl Fn(&Stats, &Stats, usize) -> f64,
    ) -> Spread {
        let q = self.get(cell, PoolKind::Quickslot);
        let p = self.get(cell, peer);
        let v: Vec<f64> = (0..self.rounds).map(|i| f(q, p, i)).collect();
        Spread::of(&v)
    }

    /// quickslot's cycles/s over the peer's, within each round.
    fn ratio(&self, cell: &Cell, peer: PoolKind) -> Spread {
        self.per_round(cell, peer, |q, p, i| q.cps[i] / p.cps[i])
    }
}

fn selected_cells(o: &Opts) -> Vec<Cell> {
    let mut cells = vec![Cell::UNCONTENDED];
    cells.extend(contended_cells());
    if let Some(f) = &o.filter {
        cells.retain(|c| c.id().contains(f.as_str()));
    }
    cells
}

/// Seconds the measuring should take (the passes, plus a little per
/// runtime and pool).
fn estimate_secs(o: &Opts, cells: usize) -> f64 {
    let warm = (o.secs / 5.0).max(0.01);
    (o.rounds * cells * ALL_POOLS.len()) as f64 * (warm + 2.0 * o.secs + 0.012)
}

fn run(o: &Opts, cells: Vec<Cell>) -> Results {
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
                let hist = lat.hist.expect("latency pass records");
                let s = stats.entry((*cell, kind)).or_default();
                s.cps.push(thr.cycles_per_sec());
                s.p50.push(hist.value_at_quantile(0.5) as f64);
                s.p99.push(hist.value_at_quantile(0.99) as f64);
                s.p999.push(hist.value_at_quantile(0.999) as f64);
                s.max.push(hist.max() as f64);
                let _ = write!(line, " {}={}", kind.name(), fmt_rate(thr.cycles_per_sec()));
            }
            eprintln!("{line}  [{:.0} s]", started.elapsed().as_secs_f64());
        }
    }
    Results {
        rounds: o.rounds,
        cells,
        stats,
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// The order of pools in every table: quickslot first, then its peers.
const REPORT_ORDER: [PoolKind; 5] = [
    PoolKind::Quickslot,
    PoolKind::Deadpool,
    PoolKind::Bb8,
    PoolKind::Semaphore,
    PoolKind::Floor,
];
const PEERS: [PoolKind; 4] = [
    PoolKind::Deadpool,
    PoolKind::Bb8,
    PoolKind::Semaphore,
    PoolKind::Floor,
];

fn label(k: PoolKind) -> &'static str {
    match k {
        PoolKind::Quickslot => "quickslot",
        PoolKind::Deadpool => "deadpool",
        PoolKind::Bb8 => "bb8",
        PoolKind::Semaphore => "Semaphore+ArrayQueue",
        PoolKind::Floor => "floor (bare ArrayQueue)",
    }
}

/// Divisor, suffix and decimals for one unit.
type Unit = (f64, &'static str, usize);

/// About three significant figures.
fn rate_unit(r: f64) -> Unit {
    if r >= 1e7 {
        (1e6, " M", 1)
    } else if r >= 1e6 {
        (1e6, " M", 2)
    } else if r >= 1e5 {
        (1e3, " k", 0)
    } else if r >= 1e3 {
        (1e3, " k", 1)
    } else {
        (1.0, "", 0)
    }
}

fn ns_unit(ns: f64) -> Unit {
    if ns >= 1e9 {
        (1e9, " s", 2)
    } else if ns >= 1e6 {
        (1e6, " ms", 2)
    } else if ns >= 1e4 {
        (1e3, " µs", 0)
    } else if ns >= 1e3 {
        (1e3, " µs", 1)
    } else {
        (1.0, " ns", 0)
    }
}

fn ratio_unit(r: f64) -> Unit {
    if r >= 10.0 {
        (1.0, "x", 1)
    } else {
        (1.0, "x", 2)
    }
}

fn fmt_in(v: f64, (div, suffix, dec): Unit) -> String {
    format!("{:.*}{suffix}", dec, v / div)
}

fn fmt_rate(r: f64) -> String {
    fmt_in(r, rate_unit(r))
}

fn fmt_ns(ns: f64) -> String {
    fmt_in(ns, ns_unit(ns))
}

fn fmt_ratio(r: f64) -> String {
    fmt_in(r, ratio_unit(r))
}

/// "median (min-max)": min and max in the median's unit when they share it
/// (so "2.47 M (2.40-2.55)"), each in its own otherwise.
fn fmt_spread(s: Spread, unit: fn(f64) -> Unit) -> String {
    let u = unit(s.median);
    let median = fmt_in(s.median, u);
    let (lo, hi) = (unit(s.min), unit(s.max));
    let (dec, suffix) = (u.2, u.1);
    if lo.1 == suffix && hi.1 == suffix {
        let d = u.0;
        format!("{median} ({:.*}-{:.*})", dec, s.min / d, dec, s.max / d)
    } else {
        format!("{median} ({}-{})", fmt_in(s.min, lo), fmt_in(s.max, hi))
    }
}

/// A markdown table with its columns padded, so it reads the same in a
/// terminal and renders as a table.
struct Table {
    head: Vec<String>,
    /// Right-aligned columns.
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[(&str, bool)]) -> Table {
        Table {
            head: head.iter().map(|(h, _)| h.to_string()).collect(),
            right: head.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.head.len());
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..self.head.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(&self.head[i]), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[i] - width(c));
                if self.right[i] {
                    let _ = write!(s, " {pad}{c} |");
                } else {
                    let _ = write!(s, " {c}{pad} |");
                }
            }
            s.push('\n');
            s
        };
        let mut s = line(&self.head);
        s.push('|');
        for (i, w) in widths.iter().enumerate() {
            if self.right[i] {
                let _ = write!(s, " {}: |", "-".repeat(w - 1));
            } else {
                let _ = write!(s, " {} |", "-".repeat(*w));
            }
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

fn cell_title(c: &Cell) -> String {
    if c.is_uncontended() {
        format!(
            "1 task, current-thread runtime, pool of {} (uncontended)",
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

/// How to read the tables, said once above them.
fn legend(r: &Results, detail: bool) -> String {
    let mut s = format!(
        "Each figure is the median over {} rounds, with (min-max) over the rounds. \
         A cycle is one acquire + release. p99 is the 99th percentile of acquire latency \
         (calling acquire to holding the object) in each round's latency pass. \
         \"quickslot ÷ pool\" is quickslot's cycles/s over the pool's, computed within each \
         round (the pools ran back to back in it), so above 1x means quickslot was faster and \
         a range that straddles 1x means the run cannot tell them apart.",
        r.rounds
    );
    if detail {
        s.push_str(
            " ns/cycle, p50 and p99.9 are medians over the rounds (their ranges are left out \
             for width); max is the largest acquire latency of all rounds.",
        );
    }
    s.push('\n');
    s
}

/// One cell: a row per pool. `detail` adds ns/cycle, p50, p99.9 and max.
fn cell_table(r: &Results, c: &Cell, detail: bool) -> String {
    let mut head = vec![
        ("pool", false),
        ("cycles/s", true),
        ("p99 acquire", true),
        ("quickslot ÷ pool", true),
    ];
    if detail {
        head.splice(2..2, [("ns/cycle", true), ("p50", true)]);
        head.splice(5..5, [("p99.9", true), ("max", true)]);
    }
    let mut t = Table::new(&head);
    for kind in REPORT_ORDER {
        let st = r.get(c, kind);
        let cps = st.cps();
        let ratio = if kind == PoolKind::Quickslot {
            "—".to_string()
        } else {
            fmt_spread(r.ratio(c, kind), ratio_unit)
        };
        let mut row = vec![
            label(kind).to_string(),
            fmt_spread(cps, rate_unit),
            fmt_spread(st.p99(), ns_unit),
            ratio,
        ];
        if detail {
            let ns_per_cycle: Vec<f64> = st.cps.iter().map(|c| 1e9 / c).collect();
            let ns_per_cycle = Spread::of(&ns_per_cycle);
            row.splice(
                2..2,
                [
                    format!("{:.1}", ns_per_cycle.median),
                    fmt_ns(Spread::of(&st.p50).median),
                ],
            );
            row.splice(
                5..5,
                [
                    fmt_ns(Spread::of(&st.p999).median),
                    fmt_ns(Spread::of(&st.max).max),
                ],
            );
        }
        t.row(row);
    }
    t.render()
}

fn cell_tables(r: &Results, detail: bool, level: &str) -> String {
    let mut s = String::new();
    for c in &r.cells {
        let _ = writeln!(s, "{level} {} (`{}`)\n", cell_title(c), c.id());
        s.push_str(&cell_table(r, c, detail));
        s.push('\n');
    }
    s
}

/// One row per cell: quickslot's cycles/s and its ratio to each peer.
fn summary_table(r: &Results) -> String {
    let mut head = vec![("cell", false), ("quickslot cycles/s", true)];
    let titles: Vec<String> = PEERS.iter().map(|k| format!("÷ {}", label(*k))).collect();
    head.extend(titles.iter().map(|t| (t.as_str(), true)));
    let mut t = Table::new(&head);
    for c in &r.cells {
        let mut row = vec![
            format!("`{}`", c.id()),
            fmt_spread(r.get(c, PoolKind::Quickslot).cps(), rate_unit),
        ];
        row.extend(PEERS.iter().map(|k| fmt_spread(r.ratio(c, *k), ratio_unit)));
        t.row(row);
    }
    t.render()
}

// ---------------------------------------------------------------------------
// Targets (issue 14), only with --targets
// ---------------------------------------------------------------------------

struct Target {
    what: String,
    measured: String,
    ok: bool,
}

fn targets(r: &Results) -> (Vec<Target>, Vec<String>) {
    let mut t = Vec::new();
    let mut notes = Vec::new();
    let ratio = |c: &Cell, peer| fmt_spread(r.ratio(c, peer), ratio_unit);

    if let Some(c) = r.cells.iter().find(|c| c.is_uncontended()) {
        let q = r.get(c, PoolKind::Quickslot).cps().median;
        let floor = r.get(c, PoolKind::Floor).cps().median;
        // quickslot's ns per cycle over the floor's, per round.
        let cost = r.per_round(c, PoolKind::Floor, |q, p, i| p.cps[i] / q.cps[i]);
        t.push(Target {
            what: "1 task: acquire + release <= 2x the floor's".into(),
            measured: format!(
                "{:.1} ns vs {:.1} ns: {}",
                1e9 / q,
                1e9 / floor,
                fmt_spread(cost, ratio_unit)
            ),
            ok: cost.median <= 2.0,
        });
        let x = r.ratio(c, PoolKind::Deadpool);
        t.push(Target {
            what: "1 task: >= 5x faster than deadpool".into(),
            measured: ratio(c, PoolKind::Deadpool),
            ok: x.median >= 5.0,
        });
    }

    let mut sixteen = false;
    for c in r.cells.iter().filter(|c| c.hold == Hold::Yield) {
        let big = match c.workers {
            2 => false,
            16 => true,
            _ => continue,
        };
        sixteen |= big;
        let dp = r.ratio(c, PoolKind::Deadpool);
        if c.size == 16 && (c.tasks == 64 || c.tasks == 256) {
            let min_x = if big { 10.0 } else { 1.3 };
            t.push(Target {
                what: format!("`{}`: >= {min_x}x deadpool cycles/s", c.id()),
                measured: ratio(c, PoolKind::Deadpool),
                ok: dp.median >= min_x,
            });
            if !big {
                let sem = r.ratio(c, PoolKind::Semaphore);
                t.push(Target {
                    what: format!("`{}`: >= 1.0x Semaphore+ArrayQueue cycles/s", c.id()),
                    measured: ratio(c, PoolKind::Semaphore),
                    ok: sem.median >= 1.0,
                });
            }
            let factor = if big { 0.25 } else { 1.0 };
            let p99 = r.per_round(c, PoolKind::Deadpool, |q, p, i| q.p99[i] / p.p99[i]);
            t.push(Target {
                what: format!(
                    "`{}`: p99 <= {}deadpool's",
                    c.id(),
                    if big { "1/4 of " } else { "" }
                ),
                measured: format!(
                    "{} vs {}: {}",
                    fmt_ns(r.get(c, PoolKind::Quickslot).p99().median),
                    fmt_ns(r.get(c, PoolKind::Deadpool).p99().median),
                    fmt_spread(p99, ratio_unit)
                ),
                ok: p99.median <= factor,
            });
        } else if c.size == 64 && c.tasks == if big { 16 } else { 64 } {
            let min_x = if big { 2.5 } else { 1.7 };
            t.push(Target {
                what: format!("`{}`: >= {min_x}x deadpool cycles/s", c.id()),
                measured: format!(
                    "{} (the floor: {})",
                    ratio(c, PoolKind::Deadpool),
                    fmt_ratio(
                        r.get(c, PoolKind::Floor).cps().median
                            / r.get(c, PoolKind::Deadpool).cps().median
                    )
                ),
                ok: dp.median >= min_x,
            });
        }
    }
    if !sixteen {
        notes.push(format!(
            "The 16-worker targets (>= 10x deadpool with p99 <= 1/4 of deadpool's for 64 and \
             256 tasks on 16; >= 2.5x deadpool for 16 tasks on 64) are unmeasured: this machine \
             has {} cores.",
            all_cores()
        ));
    }
    (t, notes)
}

fn target_table(r: &Results) -> String {
    let (t, notes) = targets(r);
    let mut tab = Table::new(&[
        ("target", false),
        ("measured, median (min-max)", true),
        ("", false),
    ]);
    for x in &t {
        tab.row(vec![
            x.what.clone(),
            x.measured.clone(),
            if x.ok { "met" } else { "**missed**" }.to_string(),
        ]);
    }
    let mut s = String::from("Met or missed on the median of the per-round figure.\n\n");
    s.push_str(&tab.render());
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

fn markdown(o: &Opts, h: &Header, r: &Results) -> String {
    let cores = h.cores;
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str(
        "Generated by `scripts/bench-report` (`bench/src/bin/compare.rs`, harness in \
         `bench/src/lib.rs`); do not edit by hand.\n\n",
    );
    s.push_str(&h.lines(o, r.cells.len()));
    s.push('\n');
    if r.rounds < REPORT_ROUNDS {
        let _ = writeln!(
            s,
            "**Note:** {} rounds, fewer than the {REPORT_ROUNDS} a committed report uses: a \
             trial run, not figures to quote.\n",
            r.rounds
        );
    }
    if cores < 16 {
        let _ = writeln!(
            s,
            "**Note:** this machine has {cores} cores, so the \"all cores\" column of the \
             matrix equals the {cores}-worker one and is not repeated. No 16-core figures are \
             given here.\n"
        );
    }
    s.push_str(
        "![cycles/s, p99 acquire latency and quickslot's ratio to each peer, per cell: \
         dots are medians over the rounds, whiskers the min-max](docs/bench.svg)\n\n",
    );
    s.push_str("## Method\n\n");
    s.push_str(
        "A no-op resource (a `u64`, created instantly), so only the pool is measured. \
         All pools run in the same process and the same run, interleaved: each round \
         runs every cell, and within a cell every pool in turn (the order rotated from \
         round to round), each on a fresh runtime and a fresh pool filled to its size \
         before measuring. \"hold across one yield\" keeps the object across one \
         `tokio::task::yield_now()`. Cycles/s (one cycle = acquire + release) comes from \
         an uninstrumented pass; acquire latency (from calling acquire to holding the \
         object) from a second pass that records every acquire in a per-task HDR \
         histogram, merged over the tasks of that pass. Every figure is the median over \
         the rounds with its (min-max) over the rounds; \"max\" is the largest over all \
         rounds. A ratio is computed within each round, from two pools that ran back to \
         back, and then summarised the same way: a range such as 0.9x-1.4x means the \
         rounds disagreed and the median alone should not be quoted.\n\n",
    );
    s.push_str(
        "In \"no hold\" cells a task whose acquire succeeds at once never yields to the \
         scheduler unless the pool consumes tokio's cooperative budget (tokio's `Semaphore`, \
         hence the Semaphore+ArrayQueue peer and deadpool, does; the floor does not). A pool \
         that does not yield lets one task per worker loop back to back while the other \
         tasks wait to be polled: its cycles/s is close to its uncontended speed, and its \
         percentiles only cover acquires that started, not the time a task waited to be \
         scheduled. The \"hold across one yield\" cells, where every task yields once per \
         cycle, are the ones that compare waiting and hand-off.\n\n",
    );
    let mut pools = Table::new(&[("pool", false), ("what", false)]);
    for k in REPORT_ORDER {
        pools.row(vec![label(k).to_string(), k.description().to_string()]);
    }
    s.push_str(&pools.render());
    s.push_str("\n## quickslot ÷ each peer\n\n");
    s.push_str(
        "quickslot's cycles/s over the peer's, per round; median (min-max) over the rounds. \
         Above 1x: quickslot faster. For the 1-task row this is also the peer's ns per \
         cycle over quickslot's.\n\n",
    );
    s.push_str(&summary_table(r));
    s.push_str("\n## Every cell\n\n");
    s.push_str(&legend(r, true));
    s.push('\n');
    s.push_str(&cell_tables(r, true, "####"));
    if o.targets {
        s.push_str("## Targets (issue 14)\n\n");
        s.push_str(&target_table(r));
    }
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

/// One series of a panel: a legend label, a colour and a spread per cell.
struct Series {
    label: String,
    color: plotters::style::RGBColor,
    points: Vec<Spread>,
}

/// A panel of dots (medians) with min-max whiskers, the series of a cell
/// side by side, on a log scale. `unit_line` draws a line at 1 (ratios).
fn spread_panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    r: &Results,
    title: &str,
    ylabel: &str,
    series: &[Series],
    unit_line: bool,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;

    let n = r.cells.len();
    let lo = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.min))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(if unit_line { 1.0 } else { f64::INFINITY })
        .max(1e-3)
        / 1.5;
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.max))
        .fold(0.0, f64::max)
        .max(if unit_line { 1.0 } else { 0.0 })
        .max(lo * 10.0);
    // Headroom above the data for the legend.
    let hi = top * (top / lo).powf(0.45);
    // The primary axes carry the cell labels (one segment per cell); the
    // series are drawn on a linear secondary x over the same span, so a cell's
    // pools can sit side by side around its centre (cell i at x = i).
    let mut ch = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..n.saturating_sub(1)).into_segmented(),
            (lo..hi).log_scale(),
        )?
        .set_secondary_coord(-0.5..n as f64 - 0.5, (lo..hi).log_scale());
    ch.configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => short_label(&r.cells[*i]),
            _ => String::new(),
        })
        .y_desc(ylabel)
        .y_label_formatter(&|v| {
            if *v >= 1e9 {
                format!("{:.0}G", v / 1e9)
            } else if *v >= 1e6 {
                format!("{:.0}M", v / 1e6)
            } else if *v >= 1e3 {
                format!("{:.0}k", v / 1e3)
            } else if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}").trim_end_matches(".0").to_string()
            } else {
                format!("{v:.2}")
            }
        })
        .x_desc("cell: workers, tasks/pool size, +y = hold across one yield")
        .draw()?;
    // Cell separators.
    let grey = RGBColor(200, 200, 200);
    ch.draw_secondary_series((1..n).map(|i| {
        let x = i as f64 - 0.5;
        PathElement::new(vec![(x, lo), (x, hi)], grey.stroke_width(1))
    }))?;
    if unit_line {
        ch.draw_secondary_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(1),
        )))?;
    }
    let slot = 0.8 / series.len() as f64;
    for (g, s) in series.iter().enumerate() {
        let color = s.color;
        let off = -0.4 + slot * (g as f64 + 0.5);
        let cap = slot * 0.3;
        for (i, p) in s.points.iter().enumerate() {
            let x = i as f64 + off;
            ch.draw_secondary_series([
                PathElement::new(vec![(x, p.min), (x, p.max)], color.stroke_width(2)),
                PathElement::new(
                    vec![(x - cap, p.min), (x + cap, p.min)],
                    color.stroke_width(2),
                ),
                PathElement::new(
                    vec![(x - cap, p.max), (x + cap, p.max)],
                    color.stroke_width(2),
                ),
            ])?;
        }
        ch.draw_secondary_series(
            s.points
                .iter()
                .enumerate()
                .map(|(i, p)| Circle::new((i as f64 + off, p.median), 4, color.filled())),
        )?
        .label(s.label.clone())
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    ch.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn chart(path: &PathBuf, r: &Results) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let n = r.cells.len();
    let width = (160 + 110 * n as u32).max(900);
    let root = SVGBackend::new(path, (width, 1350)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));

    let per_pool = |f: &dyn Fn(&Cell, PoolKind) -> Spread| -> Vec<Series> {
        REPORT_ORDER
            .iter()
            .map(|&k| Series {
                label: label(k).to_string(),
                color: pool_color(k),
                points: r.cells.iter().map(|c| f(c, k)).collect(),
            })
            .collect()
    };
    let rounds = r.rounds;
    spread_panel(
        &panels[0],
        r,
        &format!(
            "Cycles (acquire + release) per second, higher is better: dot = median of {rounds} rounds, whisker = min-max"
        ),
        "cycles/s",
        &per_pool(&|c, k| r.get(c, k).cps()),
        false,
    )?;
    spread_panel(
        &panels[1],
        r,
        &format!(
            "p99 acquire latency in µs, lower is better: dot = median of {rounds} rounds, whisker = min-max"
        ),
        "p99 µs",
        &per_pool(&|c, k| {
            let s = r.get(c, k).p99();
            Spread {
                median: s.median / 1e3,
                min: s.min / 1e3,
                max: s.max / 1e3,
            }
        }),
        false,
    )?;
    let ratios: Vec<Series> = PEERS
        .iter()
        .map(|&k| Series {
            label: format!("quickslot ÷ {}", label(k)),
            color: pool_color(k),
            points: r.cells.iter().map(|c| r.ratio(c, k)).collect(),
        })
        .collect();
    spread_panel(
        &panels[2],
        r,
        &format!(
            "quickslot ÷ peer, cycles/s within each round (above 1: quickslot faster): median and min-max of {rounds}"
        ),
        "ratio",
        &ratios,
        true,
    )?;
    root.present()?;
    Ok(())
}

fn main() {
    let o = parse_opts();
    let cells = selected_cells(&o);
    if cells.is_empty() {
        eprintln!("no cell matches the filter");
        std::process::exit(2);
    }
    let header = Header::new(&o);
    println!("# quickslot vs deadpool, bb8, Semaphore+ArrayQueue and a bare ArrayQueue\n");
    print!("{}", header.lines(&o, cells.len()));
    eprintln!(
        "measuring: {} rounds x {} cells x {} pools, about {:.0} s...",
        o.rounds,
        cells.len(),
        ALL_POOLS.len(),
        estimate_secs(&o, cells.len())
    );
    let r = run(&o, cells);

    if let Some(path) = &o.markdown {
        std::fs::write(path, markdown(&o, &header, &r)).expect("write markdown");
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &o.svg {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        chart(path, &r).expect("write chart");
        eprintln!("wrote {}", path.display());
    }

    println!("\n{}", legend(&r, o.report));
    print!("{}", cell_tables(&r, o.report, "##"));
    println!(
        "## Summary: quickslot ÷ each peer, cycles/s (median (min-max) of per-round ratios)\n"
    );
    print!("{}", summary_table(&r));
    if o.targets {
        println!("\n## Targets (issue 14)\n");
        print!("{}", target_table(&r));
    }
}
