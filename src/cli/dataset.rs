//! `capsearch dataset`: generate the procedural `shapes` dataset or the photographic `scenes`
//! dataset, and check any dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::check::summarize;
use crate::data::formats::{self, LoadOptions, SplitOptions};
use crate::data::scenes::{self, ScenesOptions, assets::AssetPaths};
use crate::data::shapes::{self, ShapesOptions};
use crate::data::text::DEFAULT_WORD_COUNT_THRESHOLD;

/// Generate and check datasets.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Draw the procedural `shapes` dataset: 1–3 coloured shapes per image, 5 true captions each,
    /// written as PNGs plus a Karpathy-style `dataset_shapes.json` with train/val/test splits.
    Shapes(ShapesArgs),
    /// Compose the `scenes` dataset: 1–3 photographed things (Tux Paint's photographic stamps)
    /// on crops of real landscape and room photos, 5 true captions each, JPEGs plus a
    /// Karpathy-style `dataset_scenes.json` with per-image labels (kind, box, size, setting).
    /// Needs the assets of `datasets/fetch-scenes.sh`.
    Scenes(ScenesArgs),
    /// Load a dataset (any supported format) and print a summary: format, images, captions per
    /// image, splits, vocabulary size, skipped images and caption lengths. Exits with status 2 when
    /// the dataset cannot be trained on.
    Check(CheckArgs),
}

/// Options of `dataset shapes`.
#[derive(Debug, Args)]
pub struct ShapesArgs {
    /// Output folder; gets `images/` and `dataset_shapes.json`.
    #[arg(long, default_value = "datasets/shapes")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 5000)]
    pub images: usize,
    /// Random seed: the same seed gives the same dataset, byte for byte.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Image side in pixels (16 to 1024).
    #[arg(long, default_value_t = shapes::DEFAULT_SIZE)]
    pub size: u32,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Options of `dataset scenes`.
#[derive(Debug, Args)]
pub struct ScenesArgs {
    /// Output folder; gets `images/` and `dataset_scenes.json`.
    #[arg(long, default_value = "datasets/generated/scenes")]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 5000)]
    pub images: usize,
    /// Random seed: the same seed and assets give the same dataset, byte for byte.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Image side in pixels (32 to 1024).
    #[arg(long, default_value_t = scenes::DEFAULT_SIZE)]
    pub size: u32,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder of the committed lists (stamps.tsv, kinds.tsv, settings.tsv).
    #[arg(long, default_value = "datasets/scenes")]
    pub lists: PathBuf,
    /// Folder `datasets/fetch-scenes.sh` unpacked the packages into (one folder per package).
    #[arg(long, default_value = "datasets/assets")]
    pub assets: PathBuf,
    /// The stamps folder (`.../usr/share/tuxpaint/stamps`), instead of the one under --assets.
    #[arg(long)]
    pub stamps: Option<PathBuf>,
    /// The folder holding `<package>/<path>` of settings.tsv, instead of --assets.
    #[arg(long)]
    pub settings: Option<PathBuf>,
}

/// Options of `dataset check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Dataset file or folder (Flickr8k.token.txt, dataset_*.json, captions_*.json,
    /// custom_dataset.json, a .csv file, or a folder of images with .txt captions).
    pub path: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Minimum word count for the vocabulary size reported.
    #[arg(long, default_value_t = DEFAULT_WORD_COUNT_THRESHOLD)]
    pub threshold: usize,
    /// Fail on the first missing or unreadable image instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only check that images exist; do not decode them.
    #[arg(long)]
    pub no_decode: bool,
    /// Seed of the split given to entries that have none.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Train, val and test shares for entries without a split, e.g. 0.8,0.1,0.1.
    #[arg(long, value_delimiter = ',', default_values_t = [0.8, 0.1, 0.1])]
    pub split_ratios: Vec<f64>,
}

/// Runs `capsearch dataset ...`.
pub fn run(args: DatasetArgs) -> anyhow::Result<()> {
    match args.command {
        DatasetCommand::Shapes(a) => run_shapes(a),
        DatasetCommand::Scenes(a) => run_scenes(a),
        DatasetCommand::Check(a) => run_check(a),
    }
}

fn run_shapes(a: ShapesArgs) -> anyhow::Result<()> {
    let mut opts = ShapesOptions::new(&a.out, a.images, a.seed);
    opts.size = a.size;
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    let start = Instant::now();
    let summary = shapes::generate(&opts)?;
    let [train, val, test] = summary.splits;
    println!(
        "wrote {} images ({}×{} PNG; train {train}, val {val}, test {test}) and {} in {:.1}s",
        summary.images,
        a.size,
        a.size,
        summary.json.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_scenes(a: ScenesArgs) -> anyhow::Result<()> {
    let mut paths = AssetPaths::fetched(&a.lists, &a.assets);
    if let Some(dir) = a.stamps {
        paths.stamps = dir;
    }
    if let Some(dir) = a.settings {
        paths.settings = dir;
    }
    let mut opts = ScenesOptions::new(&a.out, paths, a.images, a.seed);
    opts.size = a.size;
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    let start = Instant::now();
    let s = scenes::generate(&opts)?;
    let [train, val, test] = s.splits;
    println!(
        "wrote {} images ({}×{} JPEG; train {train}, val {val}, test {test}) from {} stamps of {} kinds ({} held out for test) on {} settings, and {} in {:.1}s",
        s.images,
        a.size,
        a.size,
        s.stamps,
        s.kinds,
        s.unseen_stamps,
        s.settings,
        s.json.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_check(a: CheckArgs) -> anyhow::Result<()> {
    let [train, val, test] = a.split_ratios[..] else {
        bail!("--split-ratios takes three numbers: train,val,test");
    };
    let opts = LoadOptions {
        split: SplitOptions {
            seed: a.split_seed,
            train,
            val,
            test,
        },
        strict: a.strict,
        check_images: !a.no_decode,
        ..a.read.options()
    };
    let dataset = formats::load(&a.path, &opts)?;
    let summary = summarize(&dataset, a.threshold);
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&summary).context("serialising the summary")?
        );
    } else {
        print!("{}", summary.to_text());
    }
    if !summary.trainable() {
        bail!(
            "dataset {} cannot be trained on: {}",
            a.path.display(),
            summary.problems.join("; ")
        );
    }
    Ok(())
}
