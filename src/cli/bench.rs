//! `capsearch bench`: measure training, captioning, photo features, search and the web server,
//! with baselines.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::choice::ChoiceParser;
use super::device::DeviceArg;
use crate::bench::serve::ServeBenchOptions;
use crate::bench::{BenchKind, BenchOptions, render_markdown, run_benchmarks, train_step_seconds};

/// Measure training, captioning and search throughput against PyTorch and NeuralTalk's numpy
/// code (the scripts in bench/), and `capsearch serve` under load. Writes OUT/bench.md,
/// OUT/bench.json and batch-size plots.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[arg(value_parser = ChoiceParser::<BenchKind>::new())]
    pub which: BenchKind,
    /// Print the report as JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Tiny sizes and few repetitions (seconds): checks the harness, figures mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Folder for bench.md, bench.json and the plots.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: PathBuf,
    /// Python interpreter for the baseline scripts.
    #[arg(
        long,
        value_name = "PATH",
        env = "CAPSEARCH_PYTHON",
        default_value = "python3"
    )]
    pub python: String,
    /// Documents indexed by the search benchmark (at most 2,000 with --quick).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub search_docs: u64,
    /// search/vectors: vector counts to measure, comma-separated (e.g. 100000,1000000)
    /// [default: 10000,100000; 1000,10000 with --quick]. 1M takes about an hour on 2 cores.
    #[arg(long, value_name = "N,N", value_delimiter = ',')]
    pub vectors: Option<Vec<usize>>,
    /// search/vectors: how the vector graph stores vectors, comma-separated: f16, i8
    /// [default: f16].
    #[arg(long, value_name = "f16,i8", value_delimiter = ',')]
    pub vector_storage: Vec<crate::search::embedded::vectors::VectorStorage>,
    /// Do not run the baseline scripts.
    #[arg(long)]
    pub no_baselines: bool,
    /// serve: the model the started server captions with (default: checkpoints/shapes if it
    /// exists, else an untrained model of the same size).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// serve: load this running server (e.g. http://127.0.0.1:8080) instead of starting one; its
    /// peak RSS is then not measured.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// serve: concurrent clients [default: 8, 4 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: Option<u32>,
    /// serve: seconds of load on each endpoint [default: 10, 2 with --quick].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Device for the training and captioning benchmarks (`cuda` needs a build with
    /// `--features cuda`; see bench/gpu-check.sh).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// features: EfficientNet-Lite0's weights, for capsearch and PyTorch alike [default:
    /// $CAPSEARCH_WEIGHTS_DIR/efficientnet-lite0.pth, else datasets/weights/efficientnet-lite0.pth;
    /// without the file capsearch runs random weights and PyTorch is skipped].
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// train: run only this many training steps (after 2 warm-up steps) at --batch, print the
    /// seconds per step and write no report: a fixed workload for profilers
    /// (bench/profile-train.sh).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// train: the batch size of --steps [default: the benchmark's, 32].
    #[arg(long, value_name = "N", requires = "steps")]
    pub batch: Option<usize>,
    /// Run the model through burn's composed ops instead of capsearch's custom CPU ops (the fused
    /// LSTM recurrence, the small CNN's convolutions and its training batch norms with their
    /// ReLU): measures what those ops buy.
    #[arg(long)]
    pub burn_ops: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    crate::model::ops::set_enabled(!args.burn_ops);
    let opts = BenchOptions {
        quick: args.quick,
        out: args.out,
        python: args.python,
        search_docs: args.search_docs,
        no_baselines: args.no_baselines,
        serve: ServeBenchOptions {
            model: args.model,
            url: args.url,
            clients: args.clients.map(|n| n as usize),
            seconds: args.duration,
        },
        device: match args.device {
            DeviceArg::Cpu => None,
            other => Some(other.device()?),
        },
        efficientnet_weights: args.weights,
        vector_sizes: args.vectors,
        vector_storages: args.vector_storage,
    };
    if let Some(sizes) = &opts.vector_sizes {
        anyhow::ensure!(
            sizes.iter().all(|&n| n > 0),
            "--vectors takes counts of at least 1"
        );
    }
    if let Some(steps) = args.steps {
        anyhow::ensure!(
            args.which == BenchKind::Train,
            "--steps runs training steps: use it with `bench train`"
        );
        let batch = args.batch.unwrap_or(32);
        anyhow::ensure!(
            batch > 0 && steps > 0,
            "--steps and --batch must be at least 1"
        );
        let secs = train_step_seconds(&opts, batch, steps)?;
        let mut sorted = secs.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "batch {batch}: {steps} steps, median {:.2} ms per step ({:.0} img/s), min {:.2}, max {:.2}",
            crate::bench::median(&sorted) * 1e3,
            batch as f64 / crate::bench::median(&sorted),
            sorted[0] * 1e3,
            sorted[sorted.len() - 1] * 1e3
        );
        return Ok(());
    }
    let command = format!(
        "capsearch {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let report = run_benchmarks(args.which, &opts, &command)
        .with_context(|| format!("bench {:?}", args.which))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_markdown(&report));
        eprintln!("wrote {}", opts.out.join("bench.md").display());
    }
    Ok(())
}
