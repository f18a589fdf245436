//! What a backbone is, as `backbone.json` records it: the network and its shape, the preprocessing,
//! the hash of the weights it came from; and the names of the normalisation presets.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::image::{Normalization, ResizeMode};
use crate::error::{Error, Result};
use crate::model::artifact::Preprocessing;
use crate::model::captioner::EncoderConfig;
use crate::model::efficientnet::EfficientNetConfig;
use crate::model::encoder::SmallCnnConfig;
use crate::model::finetune::{TailConfig, TailNetwork};
use crate::model::pooling::Pooling;
use crate::model::resnet::ResNetConfig;
use crate::model::vgg16::Vgg16Config;

/// `backbone.json` in a model directory.
pub const BACKBONE_INFO: &str = "backbone.json";
/// `backbone.bpk` in a model directory.
pub const BACKBONE_WEIGHTS: &str = "backbone.bpk";
/// The name NeuralTalk imports give the real VGG-16's fc7 features.
pub const VGG16_FC7: &str = "vgg16-fc7";

/// Which network a backbone is, with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "network", rename_all = "kebab-case")]
pub enum BackboneNetwork {
    /// VGG-16 up to fc7 after ReLU.
    Vgg16(Vgg16Config),
    /// capsearch's small CNN, taken from a trained model.
    SmallCnn(SmallCnnConfig),
    /// EfficientNet-Lite's pooled head (1280 values).
    EfficientNet(EfficientNetConfig),
    /// torchvision's ResNet, layer4 pooled (512 or 2048 values).
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
}

impl BackboneNetwork {
    /// Length of the feature vector.
    pub fn feature_dim(&self) -> usize {
        match self {
            BackboneNetwork::Vgg16(c) => c.feature_dim(),
            BackboneNetwork::SmallCnn(c) => c.feature_dim(),
            BackboneNetwork::EfficientNet(c) => c.feature_dim(),
            BackboneNetwork::ResNet(c) => c.feature_dim(),
        }
    }

    fn short(&self) -> &'static str {
        match self {
            BackboneNetwork::Vgg16(_) => "vgg16",
            BackboneNetwork::SmallCnn(_) => "capsearch-cnn",
            BackboneNetwork::EfficientNet(_) => "efficientnet-lite",
            BackboneNetwork::ResNet(_) => "resnet",
        }
    }
}

/// What a frozen backbone is (`backbone.json`): enough to rebuild it and to key its features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneInfo {
    /// The features' name, recorded as the decoder's `backbone` in model.json: `vgg16-fc7` for the
    /// real VGG-16, otherwise the network with its source.
    pub name: String,
    pub network: BackboneNetwork,
    /// How images are prepared for it: side and normalisation...
    pub preprocessing: Preprocessing,
    /// ...and how they are brought to that square (absent in older `backbone.json`: squashed).
    #[serde(default)]
    pub resize: ResizeMode,
    /// Where the weights were read from (a weights file or a model directory), for people.
    pub source: String,
    /// SHA-256 (hex) of the weights file they were read from.
    pub weights_sha256: String,
    /// Fine-tuning (`train_from_block = N`): the backbone is cut before block N and gives the
    /// output map of its frozen part, flattened; the model's [`super::finetune::Tail`] does the
    /// rest. Absent: the whole network's pooled feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_block: Option<usize>,
    /// How a whole EfficientNet's or ResNet's last map becomes the feature (see
    /// [`super::pooling`]). Absent in `backbone.json` written before it existed, and whenever
    /// it is `mean`: the networks' own average.
    #[serde(default, skip_serializing_if = "Pooling::is_mean")]
    pub pooling: Pooling,
}

impl BackboneInfo {
    /// Values per image it gives: the pooled feature's length, or for a cut network the frozen
    /// part's map size `C·H·W`.
    pub fn feature_dim(&self) -> usize {
        match (self.until_block, self.tail_network()) {
            (Some(n), Some(network)) => network.map_shape(n).iter().product(),
            _ => self.pooling.dim(self.network.feature_dim()),
        }
    }

    /// The network as fine-tuning knows it; `None` for networks whose blocks cannot be trained.
    pub fn tail_network(&self) -> Option<TailNetwork> {
        match &self.network {
            BackboneNetwork::EfficientNet(c) => Some(TailNetwork::EfficientNet(c.clone())),
            BackboneNetwork::ResNet(c) => Some(TailNetwork::ResNet(c.clone())),
            BackboneNetwork::Vgg16(_) | BackboneNetwork::SmallCnn(_) => None,
        }
    }

    /// The feature-cache key, e.g. `vgg16-3fa2c1d07b9e4f21`: the network's kind, then 16 hex
    /// digits of a SHA-256 over the network's shape, the preprocessing and the weights' hash. Any
    /// change to those gives a new key (and so a fresh cache); `name` and `source` are left out,
    /// so moving or renaming a weights file keeps the cache.
    pub fn key(&self) -> String {
        let mut keyed = serde_json::json!({
            "format": 1,
            "network": self.network,
            "image_size": self.preprocessing.image_size,
            "normalization": self.preprocessing.normalization,
            "resize": self.resize,
            "weights_sha256": self.weights_sha256,
        });
        // only when set, so that the keys of whole networks stay what they were
        if let Some(n) = self.until_block {
            keyed["until_block"] = n.into();
        }
        if !self.pooling.is_mean() {
            keyed["pooling"] = self.pooling.name().into();
        }
        let digest = Sha256::digest(keyed.to_string().as_bytes());
        format!("{}-{}", self.network.short(), &hex::encode(digest)[..16])
    }

    /// The preprocessing's normalisation preset.
    pub fn normalization(&self) -> Result<Normalization> {
        parse_normalization(&self.preprocessing.normalization).ok_or_else(|| Error::Config {
            field: format!("backbone {} preprocessing.normalization", self.name),
            message: format!(
                "unknown normalization {:?} (expected imagenet, caffe, unit or efficientnet)",
                self.preprocessing.normalization
            ),
        })
    }

    /// The decoder's encoder config for features of this backbone.
    pub fn encoder_config(&self) -> EncoderConfig {
        match (self.until_block, self.tail_network()) {
            (Some(from_block), Some(network)) => EncoderConfig::FineTuned {
                dim: network.feature_dim(),
                backbone: self.name.clone(),
                tail: TailConfig {
                    network,
                    from_block,
                },
            },
            _ => EncoderConfig::Precomputed {
                dim: self.feature_dim(),
                backbone: self.name.clone(),
            },
        }
    }
}

/// A normalisation preset by its name in model.json.
pub fn parse_normalization(name: &str) -> Option<Normalization> {
    match name {
        "imagenet" => Some(Normalization::Imagenet),
        "caffe" => Some(Normalization::Caffe),
        "unit" => Some(Normalization::Unit),
        "efficientnet" => Some(Normalization::Efficientnet),
        _ => None,
    }
}

/// SHA-256 (hex) of a file's bytes, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The network of a loaded backbone.
/// The name model.json uses for a normalisation preset.
pub fn normalization_name(n: Normalization) -> &'static str {
    match n {
        Normalization::Imagenet => "imagenet",
        Normalization::Caffe => "caffe",
        Normalization::Unit => "unit",
        Normalization::Efficientnet => "efficientnet",
    }
}
