//! torchvision's ResNet-18 and ResNet-50 (He et al., 2016; torchvision's "v1.5", whose bottleneck
//! strides on its 3×3 convolution) as frozen image encoders: layer4's map averaged over the
//! image, the 512 (ResNet-18) or 2048 (ResNet-50) values `fc` reads.
//!
//! The module mirrors torchvision's state dict, so weights load by name with no remapping:
//! `conv1`, `bn1`, `layer{1..4}.{i}.conv1/bn1/conv2/bn2[/conv3/bn3]`,
//! `layer{1..4}.0.downsample.0` (1×1 convolution) and `.downsample.1` (batch norm), and `fc`
//! (the ImageNet classifier, kept so the port can be checked on classification). The two
//! entries of `downsample` are variants of [`DownsampleLayer`]; the stores skip enum variant
//! names, so the paths are torchvision's.
//!
//! Weights come from torchvision's `resnet18-*.pth` / `resnet50-*.pth` (PyTorch ZIP checkpoints)
//! or a safetensors file with the same names and layouts, through burn-store's
//! [`PytorchStore`] and [`SafetensorsStore`]. Images go in as torchvision's ImageNet evaluation
//! transform prepares them: [`RESIZE`] (shorter side to 256, centre 224×224 crop) and
//! [`NORMALIZATION`] (RGB in [0, 1], ImageNet's mean and std).

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::efficientnet::list_some;
use super::vgg16::detect_format;
use crate::data::image::{Normalization, ResizeMode};
use crate::error::{Error, Result};

/// torchvision's ImageNet normalisation.
pub const NORMALIZATION: Normalization = Normalization::Imagenet;
/// torchvision's evaluation resize: `Resize(256)` then `CenterCrop(224)`.
pub const RESIZE: ResizeMode = ResizeMode::TorchvisionCenterCrop;

/// Tensors of a checkpoint the module does not hold and that are expected there.
const EXPECTED_UNUSED_SUFFIX: &str = ".num_batches_tracked";

/// The residual block a ResNet is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1, 3×3, 1×1 with four times the channels out (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    /// Output channels per "plane".
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A ResNet's shape. [`ResNetConfig::resnet18`] and [`ResNetConfig::resnet50`] are torchvision's;
/// tests build tiny ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    pub block: BlockKind,
    /// Blocks in layer1..layer4.
    pub layers: [usize; 4],
    /// Channels of the stem and of layer1's planes (64); layer `i` has `width · 2^i` planes.
    pub width: usize,
    /// Classes of `fc` (1000, ImageNet's).
    pub classes: usize,
    /// Side of the square input (224).
    pub image_size: usize,
}

impl ResNetConfig {
    /// torchvision's `resnet18()`.
    pub fn resnet18() -> Self {
        Self {
            block: BlockKind::Basic,
            layers: [2, 2, 2, 2],
            width: 64,
            classes: 1000,
            image_size: 224,
        }
    }

    /// torchvision's `resnet50()`.
    pub fn resnet50() -> Self {
        Self {
            block: BlockKind::Bottleneck,
            layers: [3, 4, 6, 3],
            width: 64,
            classes: 1000,
            image_size: 224,
        }
    }

    /// Length of the feature vector (layer4's channels).
    pub fn feature_dim(&self) -> usize {
        self.width * 8 * self.block.expansion()
    }

    /// Number of residual blocks, all layers together.
    pub fn block_count(&self) -> usize {
        self.layers.iter().sum()
    }

    /// Shape `[C, H, W]` of the output of the stem and blocks `0..n` for a square input of
    /// `image_size` (the stem, the max-pool and each layer's first block past layer1 halve a
    /// side, rounding up).
    pub fn map_shape(&self, n: usize) -> [usize; 3] {
        let mut side = self.image_size.div_ceil(2).div_ceil(2);
        let mut channels = self.width;
        let mut k = 0;
        for (li, &count) in self.layers.iter().enumerate() {
            for bi in 0..count {
                if k == n {
                    return [channels, side, side];
                }
                if li > 0 && bi == 0 {
                    side = side.div_ceil(2);
                }
                channels = (self.width << li) * self.block.expansion();
                k += 1;
            }
        }
        [channels, side, side]
    }

    /// Checks the shape makes a network.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.classes == 0 || self.image_size == 0 {
            return Err(Error::Invalid(
                "ResNet shape: width, classes and image_size must be positive".into(),
            ));
        }
        if self.layers.contains(&0) {
            return Err(Error::Invalid(
                "ResNet shape: every layer needs at least one block".into(),
            ));
        }
        Ok(())
    }

    /// A ResNet with random weights (load real ones with [`ResNet::load_weights`]).
    pub fn init(&self, device: &Device) -> ResNet {
        let conv = |c_in: usize, c_out: usize, k: usize, stride: usize| {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_bias(false)
                .init(device)
        };
        let bn = |c: usize| BatchNormConfig::new(c).with_epsilon(1e-5).init(device);
        let expansion = self.block.expansion();
        let mut c_in = self.width;
        let mut layers: Vec<Vec<ResBlock>> = Vec::new();
        for (li, &n) in self.layers.iter().enumerate() {
            let planes = self.width << li;
            let mut layer = Vec::new();
            for bi in 0..n {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let c_out = planes * expansion;
                let downsample = if bi == 0 && (stride != 1 || c_in != c_out) {
                    vec![
                        DownsampleLayer::Conv(conv(c_in, c_out, 1, stride)),
                        DownsampleLayer::Norm(bn(c_out)),
                    ]
                } else {
                    Vec::new()
                };
                layer.push(match self.block {
                    BlockKind::Basic => ResBlock {
                        conv1: conv(c_in, planes, 3, stride),
                        bn1: bn(planes),
                        conv2: conv(planes, planes, 3, 1),
                        bn2: bn(planes),
                        conv3: None,
                        bn3: None,
                        downsample,
                    },
                    BlockKind::Bottleneck => ResBlock {
                        conv1: conv(c_in, planes, 1, 1),
                        bn1: bn(planes),
                        conv2: conv(planes, planes, 3, stride),
                        bn2: bn(planes),
                        conv3: Some(conv(planes, c_out, 1, 1)),
                        bn3: Some(bn(c_out)),
                        downsample,
                    },
                });
                c_in = c_out;
            }
            layers.push(layer);
        }
        let mut layers = layers.into_iter();
        let mut next = || layers.next().unwrap_or_default();
        ResNet {
            conv1: conv(3, self.width, 7, 2),
            bn1: bn(self.width),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: LinearConfig::new(c_in, self.classes).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
        }
    }
}

/// An entry of torchvision's `downsample` Sequential: the 1×1 convolution (`.0`), then the batch
/// norm (`.1`).
#[derive(Module, Debug)]
pub enum DownsampleLayer {
    Conv(Conv2d),
    Norm(BatchNorm),
}

/// A BasicBlock (`conv3`/`bn3` absent) or a Bottleneck, with its shortcut projection when the
/// shape changes.
#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    /// Empty, or the projection of the input: `[Conv, Norm]`.
    pub downsample: Vec<DownsampleLayer>,
}

impl ResBlock {
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_with(input, |bn, x| bn.forward(x))
    }

    /// The block with `norm` as its batch norm (fine-tuning passes
    /// [`super::efficientnet::frozen_batch_norm`]).
    pub fn forward_with(
        &self,
        input: Tensor<4>,
        norm: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let mut x = norm(
            &self.bn2,
            self.conv2
                .forward(relu(norm(&self.bn1, self.conv1.forward(input.clone())))),
        );
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            x = norm(bn3, conv3.forward(relu(x)));
        }
        let mut identity = input;
        for layer in &self.downsample {
            identity = match layer {
                DownsampleLayer::Conv(c) => c.forward(identity),
                DownsampleLayer::Norm(n) => norm(n, identity),
            };
        }
        relu(x + identity)
    }
}

/// torchvision's ResNet, with its parameter names.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<ResBlock>,
    pub layer2: Vec<ResBlock>,
    pub layer3: Vec<ResBlock>,
    pub layer4: Vec<ResBlock>,
    /// The ImageNet classifier: not part of the feature.
    pub fc: Linear,
    maxpool: MaxPool2d,
}

/// What [`ResNet::load_weights`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReport {
    /// `"pytorch"` or `"safetensors"`.
    pub format: &'static str,
    /// Tensors loaded into the model.
    pub loaded: usize,
    /// Tensors of the file the model has no place for (batch-norm step counters only).
    pub ignored: Vec<String>,
}

impl ResNet {
    /// The stem: 7×7 stride-2 convolution, batch norm, ReLU, 3×3 stride-2 max-pool.
    pub fn forward_stem(&self, images: Tensor<4>) -> Tensor<4> {
        self.maxpool
            .forward(relu(self.bn1.forward(self.conv1.forward(images))))
    }

    /// The residual blocks in order, layer1's first to layer4's last.
    pub fn blocks(&self) -> impl Iterator<Item = &ResBlock> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }

    /// Preprocessed images → the output of the stem and blocks `0..n` ([`ResNet::blocks`]'s
    /// order), `[B, C, H', W']`.
    pub fn forward_until(&self, images: Tensor<4>, n: usize) -> Tensor<4> {
        self.blocks()
            .take(n)
            .fold(self.forward_stem(images), |x, b| b.forward(x))
    }

    /// Preprocessed images `[B, 3, H, W]` → layer4's map `[B, C, H/32, W/32]`.
    pub fn forward_map(&self, images: Tensor<4>) -> Tensor<4> {
        self.blocks()
            .fold(self.forward_stem(images), |x, b| b.forward(x))
    }

    /// Preprocessed images → features `[B, C]`: layer4's map averaged over the image.
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
        self.conv1.weight.val().dtype()
    }

    /// Loads weights by torchvision's names from a PyTorch checkpoint (`resnet50-*.pth`) or a
    /// safetensors file, detected from the file's first bytes. Every parameter of the model must
    /// be in the file with the right shape, and the file may hold nothing else but batch-norm
    /// step counters; the error names the missing, unexpected and mis-shaped tensors.
    pub fn load_weights(&mut self, path: &Path) -> Result<WeightsReport> {
        let import = |message: String| Error::Import {
            path: path.to_path_buf(),
            message,
        };
        let format = detect_format(path)?;
        let result = match format {
            "pytorch" => {
                let mut store = PytorchStore::from_file(path)
                    .map_indices_contiguous(false)
                    .validate(false)
                    .allow_partial(true);
                self.load_from(&mut store)
                    .map_err(|e| import(format!("cannot read ResNet weights: {e}")))?
            }
            _ => {
                let mut store = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .skip_enum_variants(true)
                    .validate(false)
                    .allow_partial(true);
                self.load_from(&mut store)
                    .map_err(|e| import(format!("cannot read ResNet weights: {e}")))?
            }
        };
        let mut unexpected: Vec<&str> = result
            .unused
            .iter()
            .map(String::as_str)
            .filter(|k| !k.ends_with(EXPECTED_UNUSED_SUFFIX))
            .collect();
        unexpected.sort_unstable();
        // named as torchvision names them (burn's batch norm says gamma and beta)
        let torch_name = |p: &str| {
            p.strip_suffix(".gamma")
                .map(|s| format!("{s}.weight"))
                .or_else(|| p.strip_suffix(".beta").map(|s| format!("{s}.bias")))
                .unwrap_or_else(|| p.to_string())
        };
        let mut missing: Vec<String> = result.missing.iter().map(|(p, _)| torch_name(p)).collect();
        missing.sort_unstable();
        let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
        let errors: Vec<String> = result
            .errors
            .iter()
            .map(|e| {
                e.to_string()
                    .replace(".gamma'", ".weight'")
                    .replace(".beta'", ".bias'")
            })
            .collect();
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
                "not the weights of this ResNet (torchvision's names; is this the right depth, \
                 resnet18 or resnet50?): {}",
                parts.join("; ")
            )));
        }
        Ok(WeightsReport {
            format,
            loaded: result.applied.len(),
            ignored: result.unused,
        })
    }
}

#[cfg(test)]
mod tests;
