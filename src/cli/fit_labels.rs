//! `capsearch fit-labels`: fit a model's label head (`labels.json`; see `model::label_head`), so
//! that its image embeddings for visual search name the things a dataset's labels say.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cli::choice::ChoiceParser;
use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::Split;
use crate::model::guide_head::GuideFit;
use crate::model::inference::CaptionEngine;
use crate::model::label_head::{LabelValues, MAX_SCALE};
use crate::model::pooling::Pooling;
use crate::train::label_fit::{LabelFitOptions, fit_label_head};

/// Fit `labels.json`: a classifier from the model's image features to a labelled dataset's
/// labels, whose probabilities become the model's embeddings for visual and hybrid search.
///
/// The labels are each image's labelled things (`colour kind` on `shapes`, the kind on `scenes`),
/// from the dataset's `labels` fields: only generated datasets have them. Indexes built with the
/// model before hold other vectors and refuse its queries afterwards: drop them and index again.
#[derive(Debug, Args)]
pub struct FitLabelsArgs {
    /// Model directory; `labels.json` is written into it (replacing one fitted before).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Labelled dataset whose images the head is fitted on (e.g. the model's training set).
    #[arg(long, value_name = "PATH")]
    pub dataset: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Split whose labelled images are used.
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Use only the first N labelled images of the split.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    pub limit: Option<u64>,
    /// Feature cache folder of a model on a whole frozen backbone (default: `features/` beside
    /// the dataset, as training uses): the features training cached are read, not computed.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Images per model call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_size: u64,
    /// Passes over the images.
    #[arg(long, default_value_t = GuideFit::default().epochs as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub epochs: u64,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = GuideFit::default().lr)]
    pub lr: f32,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = GuideFit::default().weight_decay)]
    pub weight_decay: f32,
    /// Share of the standardised feature values dropped at each step (0: none).
    #[arg(long, default_value_t = GuideFit::default().dropout)]
    pub dropout: f32,
    /// Read each image at this many times the model's image size (bilinear enlargement of the
    /// prepared image) for the head, here and whenever the model embeds an image: small things
    /// then cover more of the backbone's cells. A whole frozen EfficientNet-Lite or ResNet only;
    /// the backbone's work grows with the square (2: 4×). Features at another size are not in
    /// the feature cache: they are computed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SCALE)))]
    pub scale: u32,
    /// Pool the backbone's last map this way for the head, instead of as the caption's feature
    /// is (a whole frozen EfficientNet-Lite or ResNet only; computed, not from the feature
    /// cache). `gem` weighs the cells where something stands out more than the average does.
    #[arg(long, value_parser = ChoiceParser::<Pooling>::new())]
    pub pooling: Option<Pooling>,
    /// What the embedding holds per label.
    #[arg(long, default_value_t = LabelValues::SquareRoot, value_parser = ChoiceParser::<LabelValues>::new())]
    pub values: LabelValues,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: crate::cli::device::DeviceArg,
}

pub fn run(args: FitLabelsArgs) -> Result<()> {
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        anyhow::bail!("--lr {} must be a positive number", args.lr);
    }
    if !(args.weight_decay >= 0.0 && args.weight_decay.is_finite()) {
        anyhow::bail!("--weight-decay {} must be a number ≥ 0", args.weight_decay);
    }
    if !(0.0..1.0).contains(&args.dropout) {
        anyhow::bail!("--dropout {} must be in [0, 1)", args.dropout);
    }
    let engine = CaptionEngine::load(&args.model, args.device.device()?)?;
    let dataset = args.read.load(&args.dataset)?;
    let options = LabelFitOptions {
        split: args.split,
        limit: args.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        batch_size: usize::try_from(args.batch_size).unwrap_or(32),
        fit: GuideFit {
            epochs: usize::try_from(args.epochs).unwrap_or(usize::MAX),
            lr: args.lr,
            weight_decay: args.weight_decay,
            dropout: args.dropout,
            ..GuideFit::default()
        },
        cache_root: args.cache_dir.clone(),
        scale: args.scale,
        values: args.values,
        pooling: args.pooling,
    };
    let bar = crate::data::parallel::progress_bar(0, "features");
    let result = fit_label_head(&engine, &dataset, &options, Some(&bar));
    bar.finish_and_clear();
    let fit = result?;
    for (path, why) in &fit.skipped {
        tracing::warn!("skipped {}: {why}", path.display());
    }
    let written = fit.head.write(&args.model)?;
    println!(
        "Fitted a label head of {} labels on {} images of {} ({} skipped): {} (fingerprint \
         {}).\nThe model now embeds images as label probabilities; indexes built with it before \
         refuse its queries: drop them (`capsearch index --drop`) and index again.",
        fit.head.labels.len(),
        fit.head.images,
        fit.head.fitted_on,
        fit.skipped.len(),
        written.display(),
        fit.head.fingerprint()
    );
    Ok(())
}
