//! `capsearch fit-embedding`: fit the statistics that standardise a model's image embeddings
//! for visual search (`embedding.json` in the model folder; see `model::embedding_stats`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::Split;
use crate::model::embedding_stats::fit_on_images;
use crate::model::inference::CaptionEngine;

/// Fit `embedding.json`: per-dimension statistics that standardise a model's image embeddings.
#[derive(Debug, Args)]
pub struct FitEmbeddingArgs {
    /// Model directory; `embedding.json` is written into it (replacing one fitted before).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Dataset whose images the statistics are fitted on (any format capsearch loads): images
    /// like the ones that will be indexed, e.g. the model's training set.
    #[arg(long, value_name = "PATH")]
    pub dataset: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Split whose images are used.
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Use only the first N images of the split.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    pub limit: Option<u64>,
    /// Images per model call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_size: u64,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: crate::cli::device::DeviceArg,
}

pub fn run(args: FitEmbeddingArgs) -> Result<()> {
    let engine = CaptionEngine::load(&args.model, args.device.device()?)?;
    if !engine.takes_images() {
        bail!(
            "{} takes precomputed features, not images, so it cannot embed images",
            args.model.display()
        );
    }
    let dataset = args.read.load(&args.dataset)?;
    let limit = args
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let paths: Vec<PathBuf> = dataset
        .samples
        .iter()
        .filter(|s| s.split == args.split)
        .take(limit)
        .map(|s| dataset.image_path(s))
        .collect();
    if paths.len() < 2 {
        bail!(
            "the {} split of {} has {} images; fitting needs at least 2: pick another --split",
            args.split,
            args.dataset.display(),
            paths.len()
        );
    }
    let fitted_on = format!("{} ({} split)", args.dataset.display(), args.split);
    let bar = crate::data::parallel::progress_bar(paths.len() as u64, "embedding");
    let result = fit_on_images(
        &engine,
        &paths,
        usize::try_from(args.batch_size).unwrap_or(32),
        &fitted_on,
        Some(&bar),
    );
    bar.finish_and_clear();
    let (stats, skipped) = result?;
    for (path, why) in &skipped {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    let written = stats.write(&args.model)?;
    println!(
        "Fitted the standardisation of {}-d embeddings on {} images of {fitted_on} ({} skipped): \
         {} (fingerprint {}).\nIndexes built with this model before hold unstandardised vectors \
         and now refuse its queries: drop them (`capsearch index --drop`) and index again.",
        stats.dims(),
        stats.images,
        skipped.len(),
        written.display(),
        stats.fingerprint()
    );
    Ok(())
}
