//! `capsearch eval`: decode a dataset split with a model and write the report, or compare two
//! reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::device::DeviceArg;
use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::Split;
use crate::eval::report::{ReportOptions, compare, metric_table_text, write_report};
use crate::eval::run::{EvalOptions, evaluate_model};
use crate::model::decode::{DecodeOptions, MAX_STEPS};
use crate::model::inference::CaptionEngine;
use crate::model::precision::Precision;

/// Evaluate a model on a dataset split and write a report, or compare two reports.
///
/// Decodes every image of the split, scores the captions against the references (BLEU-1..4,
/// CIDEr-D, ROUGE-L as pycocoevalcap computes them, and BLEU as NeuralTalk's multi-bleu.perl does),
/// measures the teacher-forced perplexity of the references, and writes reports/NAME/: eval.json,
/// eval.md, results.json (COCO results format), training curves (PNG, from the model's
/// metrics.csv) and index.html (one self-contained page with the images).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Model directory (from `capsearch train` or `capsearch import-neuraltalk`).
    #[arg(long, required_unless_present = "compare")]
    pub model: Option<PathBuf>,
    /// Dataset whose split is evaluated, in any format capsearch loads.
    #[arg(long, required_unless_present = "compare")]
    pub dataset: Option<PathBuf>,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Split to evaluate: train, val or test.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Beam size (1 = greedy) [default: the model's own `beam_size` from model.json, else 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: Option<u16>,
    /// Weight λ of concept-guided decoding (each word's score gets λ · log σ of the concept
    /// head's logit): overrides the model's own `concept_weight` from model.json; 0 turns it off.
    /// Models without a concept head ignore it.
    #[arg(long, value_name = "LAMBDA", value_parser = parse_concept_weight)]
    pub concept_weight: Option<f32>,
    /// Report folder [default: reports/NAME, NAME being the model folder's name].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluate only the first N images of the split.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Images per model call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_size: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Precision of the weights in memory: `f16` halves the memory the model holds, at a small
    /// cost in caption quality (measure it with `capsearch eval --precision f16`). CPU only.
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<crate::model::precision::Precision>::new(), default_value_t)]
    pub precision: Precision,
    /// Print the metrics of two reports (folders or eval.json files) side by side, with B - A.
    #[arg(
        long,
        num_args = 2,
        value_names = ["A", "B"],
        conflicts_with_all = ["model", "dataset", "format", "images", "out", "limit"]
    )]
    pub compare: Option<Vec<PathBuf>>,
}

/// `capsearch eval` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Measure image → image search: index the gallery splits, search with each query image (its
    /// own image excluded), and score every mode (caption, visual, hybrid, and references: the
    /// gallery indexed by its reference captions) against the random baseline. Relevance comes
    /// from the dataset's object labels (Jaccard overlap ≥ 0.5) or --relevance FILE. Writes
    /// eval_search.md and eval_search.json into the report folder.
    Search(EvalSearchArgs),
}

/// `capsearch eval search`.
#[derive(Debug, Args)]
pub struct EvalSearchArgs {
    /// Model directory that captions and embeds the images.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset, in any format capsearch loads.
    #[arg(long)]
    pub dataset: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Splits indexed as the gallery.
    #[arg(long, value_delimiter = ',', default_value = "train,val")]
    pub gallery: Vec<Split>,
    /// Split whose images are the queries.
    #[arg(long, default_value = "test")]
    pub queries: Split,
    /// Search with only the first N query images.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Relevance judgements (`query<TAB>gallery<TAB>gain` per line) instead of the labels.
    #[arg(long, value_name = "FILE")]
    pub relevance: Option<PathBuf>,
    /// Beam size (1 = greedy) [default: the model's own `beam_size` from model.json, else 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: Option<u16>,
    /// Weight λ of concept-guided decoding for the gallery's and the queries' captions: overrides
    /// the model's own `concept_weight` from model.json; 0 turns it off.
    #[arg(long, value_name = "LAMBDA", value_parser = parse_concept_weight)]
    pub concept_weight: Option<f32>,
    /// Images per model call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_size: u64,
    /// Report folder [default: reports/NAME, NAME being the model folder's name].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub fusion: crate::cli::search::FusionArgs,
    /// Also report these fusions, one row each, as METHOD:CAPTION_WEIGHT (visual weight 1), e.g.
    /// `rrf:0.5,combsum-z:0.3` (methods: see --fusion). The lists are fetched once per query.
    #[arg(long, value_delimiter = ',', value_name = "METHOD:W")]
    pub compare_fusion: Vec<String>,
    /// Also report diagnostic rows: the query's reference captions as its text query
    /// (`caption (query refs)`, and fused: `hybrid (query refs)`), and, for a model with a concept
    /// head, its word probabilities as the embedding (`visual (concept)`, `hybrid (concept)`).
    #[arg(long)]
    pub diagnostics: bool,
    /// Also report probe rows: other embeddings (standardised, power-normalised, a small CNN's
    /// features, the concept probabilities beside the embedding, pseudo-relevance feedback) and
    /// caption matching with word pairs, each searched exactly in memory over the same gallery.
    #[arg(long)]
    pub probes: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
}

/// The report folder: `--out`, or `reports/<model folder name>`; refused when it is a file.
fn report_dir(out: Option<&Path>, model: &Path) -> anyhow::Result<PathBuf> {
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => Path::new("reports").join(
            model
                .file_name()
                .context("--model has no folder name to name the report after; pass --out DIR")?,
        ),
    };
    if out.exists() && !out.is_dir() {
        anyhow::bail!(
            "the report folder {} is a file; remove it or pass another --out",
            out.display()
        );
    }
    Ok(out)
}

fn run_search(args: EvalSearchArgs) -> anyhow::Result<()> {
    use crate::eval::search::{
        SearchEvalOptions, evaluate_search, search_table, write_search_report,
    };
    let weights = args.fusion.weights(&args.model)?;
    let out = report_dir(args.out.as_deref(), &args.model)?;
    let relevance = args
        .relevance
        .as_deref()
        .map(crate::eval::retrieval::Judgements::read)
        .transpose()?;
    let engine = CaptionEngine::load(&args.model, args.device.device()?)?;
    if !engine.takes_images() {
        anyhow::bail!(
            "{} takes precomputed features, not images, so it cannot embed query images",
            args.model.display()
        );
    }
    let dataset = args.read.load(&args.dataset)?;
    let bar = crate::data::parallel::progress_bar(0, "captioning and embedding");
    let options = SearchEvalOptions {
        gallery: args.gallery.clone(),
        queries: args.queries,
        limit: args.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        decode: DecodeOptions {
            beam_size: args.beam_size.map_or(0, usize::from),
            max_steps: MAX_STEPS,
            concept_weight: args.concept_weight,
        },
        batch_size: usize::try_from(args.batch_size).unwrap_or(32),
        weights,
        relevance,
        progress: Some(bar.clone()),
        compare: args
            .compare_fusion
            .iter()
            .map(|spec| crate::eval::search_variants::parse_fusion(spec))
            .collect::<crate::error::Result<_>>()?,
        diagnostics: args.diagnostics,
        probes: args.probes,
    };
    let result = evaluate_search(&engine, &dataset, &args.dataset, &options);
    bar.finish_and_clear();
    let report = result?;
    let written = write_search_report(&report, &out)?;
    println!(
        "Searched {} {} images against a gallery of {} ({}) with {}; relevance: {}.\n",
        report.queries,
        report.query_split,
        report.gallery,
        report.gallery_splits.join(" + "),
        report.model,
        report.relevance
    );
    print!("{}", search_table(&report));
    if !report.skipped.is_empty() {
        println!(
            "\nSkipped {} images (listed in the report).",
            report.skipped.len()
        );
    }
    println!(
        "\nReport written to {}",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Runs `capsearch eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(EvalCommand::Search(search)) = args.command {
        return run_search(search);
    }
    if let Some(reports) = &args.compare {
        let [a, b] = reports.as_slice() else {
            anyhow::bail!("--compare takes two report folders");
        };
        print!("{}", compare(a, b)?);
        return Ok(());
    }
    let (Some(model), Some(dataset_path)) = (&args.model, &args.dataset) else {
        anyhow::bail!("give --model DIR and --dataset PATH, or --compare A B");
    };
    // Refuse what would fail late, before the slow part.
    let out = report_dir(args.out.as_deref(), model)?;
    let engine = CaptionEngine::load_with(model, args.device.device()?, args.precision)?;
    let dataset = args.read.load(dataset_path)?;

    let total = dataset.count(args.split);
    let count = args.limit.map_or(total, |l| {
        total.min(usize::try_from(l).unwrap_or(usize::MAX))
    });
    let bar = crate::data::parallel::progress_bar(count as u64, "captioning");
    let options = EvalOptions {
        decode: DecodeOptions {
            beam_size: args.beam_size.map_or(0, usize::from),
            max_steps: MAX_STEPS,
            concept_weight: args.concept_weight,
        },
        batch_size: usize::try_from(args.batch_size).unwrap_or(32),
        limit: args.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        progress: Some(bar.clone()),
    };
    let result = evaluate_model(&engine, &dataset, args.split, &options);
    bar.finish_and_clear();
    let run = result?;

    let metrics_csv = crate::model::run_dir::RunDir::new(model).metrics();
    let written = write_report(
        &run,
        &out,
        &ReportOptions {
            metrics_csv: metrics_csv.is_file().then_some(metrics_csv),
            ..Default::default()
        },
    )?;

    println!(
        "Evaluated {} on {} images of the {} split of {} ({}).\n",
        model.display(),
        run.dataset.images,
        run.dataset.split,
        dataset.source.display(),
        if run.decode.beam_size <= 1 {
            "greedy decoding".to_string()
        } else {
            format!("beam size {}", run.decode.beam_size)
        }
    );
    print!("{}", metric_table_text(&run.metrics, run.perplexity));
    if let (None, Some(note)) = (run.perplexity, &run.perplexity_note) {
        println!("perplexity {note}");
    }
    if let Some(b) = &run.baseline {
        println!("\n{}", b.summary(&run.metrics));
    }
    if !run.skipped.is_empty() {
        println!(
            "\nSkipped {} unreadable images (listed in eval.md):",
            run.skipped.len()
        );
        for k in run.skipped.iter().take(10) {
            println!("  {}: {}", k.entry, k.reason);
        }
        if run.skipped.len() > 10 {
            println!("  ... and {} more", run.skipped.len() - 10);
        }
    }
    let names: Vec<String> = written
        .files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    println!(
        "\nReport written to {} ({}); open {} in a browser.",
        written.dir.display(),
        names.join(", "),
        written.dir.join("index.html").display()
    );
    Ok(())
}

/// `--concept-weight`: a finite number ≥ 0.
pub(crate) fn parse_concept_weight(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(w) if w >= 0.0 && w.is_finite() => Ok(w),
        _ => Err(format!(
            "expected a weight ≥ 0 such as 1 (0 turns concept guidance off), got {s:?}"
        )),
    }
}
