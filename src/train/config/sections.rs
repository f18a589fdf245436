//! The sections of a training config: `[model]`, `[data]`, `[optim]`, `[loop]`, with their defaults.

use serde::{Deserialize, Serialize};

use crate::model::encoder::SmallCnnConfig;

use super::encoder::TrainEncoder;

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
    /// With a whole frozen backbone and `concept_weight > 0`: fit a guide head before the first
    /// epoch (a logistic word classifier on the train split's standardised cached features; see
    /// `model::guide_head`), which concept-guided decoding then reads instead of the concept
    /// head, and write the same statistics as the model's `embedding.json`. Default on.
    #[serde(default = "d_true")]
    pub guide_head: bool,
    /// Beam size that caption, eval, index, search and serve decode with unless told otherwise
    /// (1, the default: greedy). Saved in model.json; validation BLEU-4 during training stays
    /// greedy.
    #[serde(default = "d_one_usize")]
    pub beam_size: usize,
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
    /// Training time, e.g. "10m", "90s", "1h": an epoch that would end past it (taking as long as
    /// the last one) is not started, and a run still over it at an epoch end stops there.
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
fn default_encoder() -> TrainEncoder {
    TrainEncoder::SmallCnn(SmallCnnConfig::new())
}
fn d256() -> usize {
    256
}
fn d_concept_loss() -> f64 {
    0.5
}
fn d_true() -> bool {
    true
}
fn d_dropout() -> f64 {
    0.2
}
fn d_one() -> u8 {
    1
}

fn d_one_usize() -> usize {
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
pub(super) fn default_model() -> ModelSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every model field has a default"))
}
pub(super) fn default_data() -> DataSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every data field has a default"))
}
pub(super) fn default_optim() -> OptimSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every optim field has a default"))
}
pub(super) fn default_loop() -> LoopSection {
    toml::from_str("").unwrap_or_else(|_| unreachable!("every loop field has a default"))
}
