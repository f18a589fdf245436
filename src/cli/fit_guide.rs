//! `capsearch fit-guide`: fit a model's guide head (a word classifier on the standardised
//! features that concept-guided decoding reads; see `model::guide_head`) on a dataset's cached
//! features, for a model trained before training fitted one.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::Split;
use crate::model::guide_head::{GuideFit, KindTargets};

/// `--kind-targets` (see [`KindTargets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindTargetsArg {
    Presence,
    Shares,
}
use crate::train::guide_fit::add_guide_head;

/// Fit a model's guide head on a dataset split's cached backbone features.
#[derive(Debug, Args)]
pub struct FitGuideArgs {
    /// Model directory (trained on a frozen backbone); its `model.bpk` and `model.json` get the
    /// head, replacing one fitted before.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Dataset with captions whose images the head is fitted on (the model's training set).
    #[arg(long, value_name = "PATH")]
    pub dataset: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Split whose images and captions are used.
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Feature cache folder (default: `features/` beside the dataset, as training uses).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Passes over the images.
    #[arg(long, default_value_t = GuideFit::default().epochs)]
    pub epochs: usize,
    /// Images per AdamW step.
    #[arg(long, default_value_t = GuideFit::default().batch_size as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = GuideFit::default().lr)]
    pub lr: f32,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = GuideFit::default().weight_decay)]
    pub weight_decay: f32,
    /// Seed of the images' order and the dropout masks.
    #[arg(long, default_value_t = GuideFit::default().seed)]
    pub seed: u64,
    /// Share of the standardised feature values dropped at each step (0: none).
    #[arg(long, default_value_t = GuideFit::default().dropout)]
    pub dropout: f32,
    /// What the head learns for the words of kind names: `presence` (1 for every word of the
    /// names of a kind that is in the image, from the dataset's labels) or `shares` (the share
    /// of the image's captions that say the word, as for the other words).
    #[arg(long, value_enum, default_value_t = KindTargetsArg::Presence)]
    pub kind_targets: KindTargetsArg,
    /// Compute device (for features missing from the cache).
    #[arg(long, value_enum, default_value_t)]
    pub device: crate::cli::device::DeviceArg,
}

pub fn run(args: FitGuideArgs) -> Result<()> {
    let dataset = args.read.load(&args.dataset)?;
    let fit = GuideFit {
        epochs: args.epochs,
        batch_size: usize::try_from(args.batch_size).unwrap_or(usize::MAX),
        lr: args.lr,
        weight_decay: args.weight_decay,
        seed: args.seed,
        dropout: args.dropout,
        kind_targets: match args.kind_targets {
            KindTargetsArg::Presence => KindTargets::Presence,
            KindTargetsArg::Shares => KindTargets::Shares,
        },
    };
    let added = add_guide_head(
        &args.model,
        &dataset,
        args.split,
        args.cache_dir.as_deref(),
        &fit,
        &args.device.device()?,
    )?;
    println!(
        "Fitted the guide head of {} on {} images of {} in {:.1} s (features from {}; last \
         epoch's loss {:.3}); concept-guided decoding now reads it.",
        args.model.display(),
        added.info.images,
        added.info.fitted_on,
        added.seconds,
        added.cache.display(),
        added.loss
    );
    Ok(())
}
