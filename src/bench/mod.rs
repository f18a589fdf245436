//! `capsearch bench`: training, captioning and search measured side by side with their baselines,
//! and the web server under load ([`serve`]).
//!
//! Every benchmark warms up, then repeats its measurement and reports the median with a spread
//! (min–max, or the percentiles named in the row). Where a baseline applies (NeuralTalk's numpy
//! `predict()`, the same model in PyTorch), the baseline script runs in the same process tree,
//! right after capsearch's measurement, and the row carries the ratio. A baseline whose Python,
//! numpy or torch is missing is reported as skipped, with the reason.
//!
//! The baseline scripts live in `bench/` and are compiled into the binary ([`NEURALTALK_SCRIPT`],
//! [`PYTORCH_SCRIPT`], [`FEATURES_SCRIPT`], and the NeuralTalk port they share with the test fixtures,
//! [`NEURALTALK_REFERENCE`]), so `capsearch bench` runs them from any directory.

pub mod baseline;
mod caption;
mod common;
pub mod features;
pub mod plot;
pub mod search;
pub mod search_vectors;
pub mod serve;
mod train;

pub use train::train_step_seconds;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::util::percentile;

/// `bench/neuraltalk_bench.py`: NeuralTalk's numpy `predict()` timed with random weights.
pub const NEURALTALK_SCRIPT: &str = include_str!("../../bench/neuraltalk_bench.py");
/// The numpy port of NeuralTalk's `predict()` (the one that produced the test fixtures), which
/// [`NEURALTALK_SCRIPT`] imports: written beside it when it runs.
pub const NEURALTALK_REFERENCE: &str =
    include_str!("../../tests/fixtures/neuraltalk/neuraltalk_reference.py");
/// `bench/pytorch_reference.py`: the `shapes` model in PyTorch on CPU.
pub const PYTORCH_SCRIPT: &str = include_str!("../../bench/pytorch_reference.py");
/// `bench/pytorch_features.py`: EfficientNet-Lite0's features in PyTorch on CPU.
pub const FEATURES_SCRIPT: &str = include_str!("../../bench/pytorch_features.py");

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Small sizes and few repetitions (seconds, for tests); figures are not representative.
    pub quick: bool,
    /// Folder for `bench.md`, `bench.json` and the plots.
    pub out: PathBuf,
    /// Python interpreter for the baselines.
    pub python: String,
    /// Documents indexed by the search benchmark (quick: 2,000).
    pub search_docs: u64,
    /// Skip the baseline scripts.
    pub no_baselines: bool,
    /// Settings of `bench serve`.
    pub serve: serve::ServeBenchOptions,
    /// Device for the training and captioning benchmarks (`None`: burn's flex CPU backend).
    pub device: Option<burn::prelude::Device>,
    /// EfficientNet-Lite0's `.pth` for `bench features` (`None`: [`features::default_weights`]).
    pub efficientnet_weights: Option<PathBuf>,
    /// Vector counts of the vector benchmark (`None`: [`search_vectors::vector_sizes`]'s
    /// defaults).
    pub vector_sizes: Option<Vec<usize>>,
    /// Graph storages the vector benchmark measures at each size (empty: the default, f16).
    pub vector_storages: Vec<crate::search::embedded::vectors::VectorStorage>,
}

impl BenchOptions {
    /// The device the model benchmarks run on.
    pub fn device(&self) -> burn::prelude::Device {
        self.device
            .clone()
            .unwrap_or_else(burn::prelude::Device::flex)
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// `std::thread::available_parallelism`.
    pub cores: usize,
    pub backend: String,
    pub os: String,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and when it ended: other work on the
    /// machine slows every figure.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
}

impl Machine {
    pub fn detect() -> Self {
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            backend: "burn flex (CPU)".into(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            load_before: load_average(),
            load_after: None,
        }
    }
}

/// `/proc/loadavg`'s three averages (Linux only).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// A baseline's figure for one row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineCell {
    /// `numpy NeuralTalk` or `PyTorch`.
    pub name: String,
    /// The baseline's median, in the row's unit; `None` when skipped.
    pub median: Option<f64>,
    /// capsearch's median / the baseline's median.
    pub ratio: Option<f64>,
    /// How many times faster capsearch is (> 1: capsearch wins), whatever the unit's direction.
    pub speedup: Option<f64>,
    /// Why the baseline did not run.
    pub skipped: Option<String>,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub name: String,
    pub unit: String,
    /// Whether more is better (throughput) or less (latency, bytes).
    pub higher_is_better: bool,
    pub median: f64,
    /// The spread: `low`..`high`, the statistics named by `spread`.
    pub low: f64,
    pub high: f64,
    /// `min–max`, `p10–p90`, `p50–p99`, or `single run`.
    pub spread: String,
    /// Measured repetitions (after the warm-up).
    pub runs: usize,
    pub baseline: Option<BaselineCell>,
}

impl Row {
    /// A row from repeated samples (already in the row's unit): median and min–max.
    pub fn from_samples(name: &str, unit: &str, higher_is_better: bool, samples: &[f64]) -> Row {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let (low, high) = (
            s.first().copied().unwrap_or(0.0),
            s.last().copied().unwrap_or(0.0),
        );
        let spread = if s.len() >= 20 {
            "p10–p90"
        } else {
            "min–max"
        };
        let (low, high) = if s.len() >= 20 {
            (percentile(&s, 10.0), percentile(&s, 90.0))
        } else {
            (low, high)
        };
        Row {
            name: name.into(),
            unit: unit.into(),
            higher_is_better,
            median: median(&s),
            low,
            high,
            spread: spread.into(),
            runs: s.len(),
            baseline: None,
        }
    }

    /// Attaches a baseline's samples (same unit), or the reason it was skipped.
    pub fn with_baseline(mut self, name: &str, samples: std::result::Result<&[f64], &str>) -> Row {
        self.baseline = Some(match samples {
            Ok(s) if !s.is_empty() => {
                let mut s = s.to_vec();
                s.sort_by(f64::total_cmp);
                let b = median(&s);
                let ratio = self.median / b;
                BaselineCell {
                    name: name.into(),
                    median: Some(b),
                    ratio: Some(ratio),
                    speedup: Some(if self.higher_is_better {
                        ratio
                    } else {
                        1.0 / ratio
                    }),
                    skipped: None,
                }
            }
            Ok(_) => skipped_cell(name, "the baseline returned no samples"),
            Err(why) => skipped_cell(name, why),
        });
        self
    }
}

fn skipped_cell(name: &str, why: &str) -> BaselineCell {
    BaselineCell {
        name: name.into(),
        median: None,
        ratio: None,
        speedup: None,
        skipped: Some(why.into()),
    }
}

/// A count that goes with a table (e.g. errors under load); zero is a valid value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Count {
    pub name: String,
    pub value: u64,
}

/// One benchmark's table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// `train`, `caption`, `features`, `search` or `serve`.
    pub name: String,
    pub title: String,
    /// Sizes and settings the figures were measured with.
    pub setup: Vec<String>,
    pub rows: Vec<Row>,
    /// Counts measured with the rows (requests answered, errors), when the benchmark has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
    /// Peak resident memory during this benchmark (`VmHWM`, reset before it): of this process,
    /// or of the server it started for `serve`.
    pub peak_rss_bytes: Option<u64>,
    /// PNG plots written next to `bench.md` (file names).
    pub plots: Vec<String>,
    pub notes: Vec<String>,
}

/// Everything one `capsearch bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchReport {
    pub machine: Machine,
    pub quick: bool,
    pub command: String,
    pub tables: Vec<Table>,
    pub elapsed_s: f64,
}

/// Runs `f` `warmup` times unmeasured, then `runs` times, and returns each run's seconds.
pub fn time_runs(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// Median of sorted values (0 when empty).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, so that the next reading is the
/// peak of what follows (Linux ≥ 4.0, `/proc/self/clear_refs` = 5). Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Which benchmark `capsearch bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchKind {
    /// Training images/s on the `shapes` model, and a batch-size sweep.
    Train,
    /// NeuralTalk-sized caption latency and throughput, and VGG-16's forward pass.
    Caption,
    /// EfficientNet-Lite0 photo features (images/s at 224×224, batch 1 and 16) against PyTorch
    /// on the same weights.
    Features,
    /// Embedded search: indexing docs/s, query latency, index size; then [`BenchKind::Vectors`].
    Search,
    /// Embedded visual and hybrid search over 1280-d vectors: build time, peak RSS, latency,
    /// recall@10 (`search_vectors`).
    Vectors,
    /// `capsearch serve` under load: requests/s, p50/p99 latency, errors and the server's peak RSS
    /// on `POST /api/search` (images) and `GET /api/query`.
    Serve,
    /// All of the above.
    All,
}

/// Runs the chosen benchmarks, writes `bench.md`, `bench.json` and the plots into `opts.out`, and
/// returns the report.
pub fn run_benchmarks(kind: BenchKind, opts: &BenchOptions, command: &str) -> Result<BenchReport> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let started = Instant::now();
    let mut machine = Machine::detect();
    if opts.device.is_some() {
        machine.backend = format!("burn {:?}", opts.device());
    }
    let mut tables = Vec::new();
    if matches!(kind, BenchKind::Train | BenchKind::All) {
        tables.push(train::bench_train(opts, machine.cores)?);
    }
    if matches!(kind, BenchKind::Caption | BenchKind::All) {
        tables.push(caption::bench_caption(opts)?);
    }
    if matches!(kind, BenchKind::Features | BenchKind::All) {
        tables.push(features::bench_features(opts, machine.cores)?);
    }
    if matches!(kind, BenchKind::Search | BenchKind::All) {
        tables.push(search::bench_search(opts)?);
    }
    if matches!(
        kind,
        BenchKind::Search | BenchKind::Vectors | BenchKind::All
    ) {
        tables.push(search_vectors::bench_vectors(opts)?);
    }
    if matches!(kind, BenchKind::Serve | BenchKind::All) {
        tables.push(serve::bench_serve(opts)?);
    }
    machine.load_after = load_average();
    let report = BenchReport {
        machine,
        quick: opts.quick,
        command: command.to_string(),
        tables,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let md_path = opts.out.join("bench.md");
    std::fs::write(&md_path, render_markdown(&report)).map_err(|e| Error::io(&md_path, e))?;
    let json_path = opts.out.join("bench.json");
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::Invalid(format!("cannot serialise the bench report: {e}")))?;
    std::fs::write(&json_path, json).map_err(|e| Error::io(&json_path, e))?;
    Ok(report)
}

/// Renders the report as Markdown (what `bench.md` holds and what is printed without `--json`).
pub fn render_markdown(report: &BenchReport) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(md, "# capsearch bench\n");
    let _ = writeln!(md, "Command: `{}`  ", report.command);
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, {}{}  ",
        m.cores,
        m.backend,
        m.os,
        if report.quick {
            " — **--quick: tiny sizes, not representative**"
        } else {
            ""
        }
    );
    let load = |l: &Option<[f64; 3]>| {
        l.map(|l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]))
            .unwrap_or_else(|| "unknown".into())
    };
    let _ = writeln!(
        md,
        "Load average (1/5/15 min): {} before, {} after; total {:.0} s\n",
        load(&m.load_before),
        load(&m.load_after),
        report.elapsed_s
    );
    for t in &report.tables {
        let _ = writeln!(md, "## {} — {}\n", t.name, t.title);
        for s in &t.setup {
            let _ = writeln!(md, "- {s}");
        }
        for c in &t.counts {
            let _ = writeln!(md, "- {}: {}", c.name, c.value);
        }
        if let Some(rss) = t.peak_rss_bytes {
            let _ = writeln!(
                md,
                "- peak RSS during this benchmark: {:.1} MiB",
                rss as f64 / 1048576.0
            );
        }
        let _ = writeln!(
            md,
            "\n| figure | median | spread | runs | baseline | baseline median | capsearch / baseline | speed-up |"
        );
        let _ = writeln!(md, "|---|---:|---|---:|---|---:|---:|---:|");
        let mut skips: Vec<(&str, &str)> = Vec::new();
        for r in &t.rows {
            let (bname, bmed, ratio, speed) = match &r.baseline {
                None => ("—".to_string(), "—".into(), "—".into(), "—".into()),
                Some(b) => match (&b.skipped, b.median, b.ratio, b.speedup) {
                    (Some(why), ..) => (
                        {
                            if !skips.contains(&(b.name.as_str(), why.as_str())) {
                                skips.push((b.name.as_str(), why.as_str()));
                            }
                            format!("{} (skipped)", b.name)
                        },
                        "—".into(),
                        "—".into(),
                        "—".into(),
                    ),
                    (None, Some(med), Some(ratio), Some(s)) => (
                        b.name.clone(),
                        format!("{} {}", fmt_num(med), r.unit),
                        format!("{ratio:.3}"),
                        format!("{s:.2}×"),
                    ),
                    _ => (b.name.clone(), "—".into(), "—".into(), "—".into()),
                },
            };
            let _ = writeln!(
                md,
                "| {} | {} {} | {}–{} ({}) | {} | {} | {} | {} | {} |",
                r.name,
                fmt_num(r.median),
                r.unit,
                fmt_num(r.low),
                fmt_num(r.high),
                r.spread,
                r.runs,
                bname,
                bmed,
                ratio,
                speed
            );
        }
        for (name, why) in &skips {
            let _ = writeln!(md, "\n{name} baseline skipped: {why}");
        }
        for p in &t.plots {
            let _ = writeln!(md, "\n![{p}]({p})");
        }
        for n in &t.notes {
            let _ = writeln!(md, "\n{n}");
        }
        let _ = writeln!(md);
    }
    md
}

/// Three significant digits, without exponent for ordinary magnitudes.
fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_take_median_and_spread() {
        let r = Row::from_samples("x", "ms", false, &[3.0, 1.0, 2.0, 10.0]);
        assert_eq!(r.median, 2.5);
        assert_eq!((r.low, r.high), (1.0, 10.0));
        assert_eq!(r.spread, "min–max");
        let many: Vec<f64> = (1..=100).map(f64::from).collect();
        let r = Row::from_samples("y", "ms", false, &many);
        assert_eq!((r.low, r.high), (10.0, 90.0));
        assert_eq!(r.spread, "p10–p90");
    }

    #[test]
    fn speedup_follows_the_units_direction() {
        let latency = Row::from_samples("lat", "ms", false, &[2.0]).with_baseline("b", Ok(&[8.0]));
        let b = latency.baseline.unwrap();
        assert_eq!(b.ratio, Some(0.25));
        assert_eq!(b.speedup, Some(4.0));
        let tput = Row::from_samples("tp", "img/s", true, &[30.0]).with_baseline("b", Ok(&[10.0]));
        assert_eq!(tput.baseline.unwrap().speedup, Some(3.0));
        let skipped = Row::from_samples("s", "ms", false, &[1.0]).with_baseline("b", Err("no"));
        assert_eq!(skipped.baseline.unwrap().skipped.as_deref(), Some("no"));
    }

    #[test]
    fn markdown_has_a_table_per_benchmark() {
        let report = BenchReport {
            machine: Machine::detect(),
            quick: true,
            command: "capsearch bench all".into(),
            tables: vec![Table {
                name: "train".into(),
                title: "t".into(),
                setup: vec![],
                rows: vec![Row::from_samples("a", "img/s", true, &[1.0, 2.0])],
                counts: vec![Count {
                    name: "errors".into(),
                    value: 0,
                }],
                peak_rss_bytes: Some(1 << 20),
                plots: vec!["p.png".into()],
                notes: vec![],
            }],
            elapsed_s: 1.0,
        };
        let md = render_markdown(&report);
        assert!(md.contains("## train — t"));
        assert!(md.contains("| a | 1.50 img/s | 1.00–2.00 (min–max) | 2 |"));
        assert!(md.contains("![p.png](p.png)"));
        assert!(md.contains("- errors: 0"));
    }
}
