//! Fine-tuning the last blocks of a pretrained backbone with the captioner
//! (`[model.encoder] train_from_block = N`).
//!
//! The backbone is cut before block `N` (EfficientNet-Lite's MBConv blocks as the port numbers
//! them, `blocks.N`; ResNet's residual blocks in order, layer1's first = 0). The frozen part (stem
//! and blocks `< N`) runs once per image into the feature cache, which then holds its output map
//! `[C, H, W]` flattened instead of the pooled vector. The rest, the [`Tail`] (blocks `≥ N`, and
//! EfficientNet's head convolution), is part of the captioner (`Captioner::tail`): it is trained
//! with the decoder, saved in `model.bpk`, and turns the frozen part's map into the pooled feature
//! that `We` projects, at training and at captioning alike.
//!
//! Batch norms in the tail keep ImageNet's running statistics ([`frozen_batch_norm`]); their
//! scale and shift train with the convolutions.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

use super::efficientnet::{
    EfficientNet, EfficientNetConfig, MbConvBlock, frozen_batch_norm, relu6,
};
use super::resnet::{ResBlock, ResNet, ResNetConfig};
use crate::error::{Error, Result};

/// The networks whose last blocks can be fine-tuned, with their whole shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "network", rename_all = "kebab-case")]
pub enum TailNetwork {
    EfficientNet(EfficientNetConfig),
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
}

impl TailNetwork {
    /// Number of blocks the network can be cut before.
    pub fn block_count(&self) -> usize {
        match self {
            TailNetwork::EfficientNet(c) => c.block_count(),
            TailNetwork::ResNet(c) => c.block_count(),
        }
    }

    /// Shape `[C, H, W]` of the frozen part's output when cut before block `n`.
    pub fn map_shape(&self, n: usize) -> [usize; 3] {
        match self {
            TailNetwork::EfficientNet(c) => c.map_shape(n),
            TailNetwork::ResNet(c) => c.map_shape(n),
        }
    }

    /// Length of the pooled feature.
    pub fn feature_dim(&self) -> usize {
        match self {
            TailNetwork::EfficientNet(c) => c.feature_dim(),
            TailNetwork::ResNet(c) => c.feature_dim(),
        }
    }
}

/// Checks that a network can be cut before block `n`: `1 ≤ n ≤ blocks` (at `n = blocks` only
/// EfficientNet's head convolution trains, and a ResNet has nothing left to train).
pub fn check_split(network: &TailNetwork, n: usize) -> Result<()> {
    let blocks = network.block_count();
    let max = match network {
        TailNetwork::EfficientNet(_) => blocks,
        TailNetwork::ResNet(_) => blocks - 1,
    };
    if n == 0 || n > max {
        return Err(Error::Config {
            field: "model.encoder.train_from_block".into(),
            message: format!(
                "{n} is out of range: this network has {blocks} blocks, numbered from 0; give 1 to {max} (the last block is {})",
                blocks - 1
            ),
        });
    }
    Ok(())
}

/// What the captioner's [`Tail`] is: the network and where it is cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    pub network: TailNetwork,
    /// The first block trained.
    pub from_block: usize,
}

impl TailConfig {
    /// Shape `[C, H, W]` of the cached map the tail reads.
    pub fn input_shape(&self) -> [usize; 3] {
        self.network.map_shape(self.from_block)
    }

    /// Values per image of the cached map.
    pub fn input_dim(&self) -> usize {
        self.input_shape().iter().product()
    }

    /// A tail with random weights (training copies the backbone's in with [`Tail::copy_from`];
    /// a saved model loads its own).
    pub fn init(&self, device: &Device) -> Tail {
        let [channels, height, width] = self.input_shape();
        let net = match &self.network {
            TailNetwork::EfficientNet(c) => {
                TailNet::EfficientNet(efficientnet_tail(c.init(device), self.from_block))
            }
            TailNetwork::ResNet(c) => TailNet::ResNet(resnet_tail(c.init(device), self.from_block)),
        };
        Tail {
            net,
            channels,
            height,
            width,
        }
    }
}

/// EfficientNet-Lite's blocks `≥ N` and head convolution.
#[derive(Module, Debug)]
pub struct EfficientNetTail {
    pub blocks: Vec<MbConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
}

/// A ResNet's residual blocks `≥ N`.
#[derive(Module, Debug)]
pub struct ResNetTail {
    pub blocks: Vec<ResBlock>,
}

/// The tail's blocks, by network. (Unboxed: a captioner holds one, built once.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TailNet {
    EfficientNet(EfficientNetTail),
    ResNet(ResNetTail),
}

/// The trained last blocks of a backbone: the frozen part's map in, the pooled feature out.
#[derive(Module, Debug)]
pub struct Tail {
    pub net: TailNet,
    channels: usize,
    height: usize,
    width: usize,
}

fn efficientnet_tail(net: EfficientNet, from: usize) -> EfficientNetTail {
    EfficientNetTail {
        blocks: net.blocks.into_iter().skip(from).collect(),
        conv_head: net.conv_head,
        bn1: net.bn1,
    }
}

fn resnet_tail(net: ResNet, from: usize) -> ResNetTail {
    ResNetTail {
        blocks: net
            .layer1
            .into_iter()
            .chain(net.layer2)
            .chain(net.layer3)
            .chain(net.layer4)
            .skip(from)
            .collect(),
    }
}

impl Tail {
    /// The tail of a loaded network cut before block `from`, to copy into a captioner.
    pub fn of_efficientnet(net: &EfficientNet, from: usize) -> TailNet {
        TailNet::EfficientNet(efficientnet_tail(net.clone(), from))
    }

    /// The tail of a loaded ResNet cut before block `from`.
    pub fn of_resnet(net: &ResNet, from: usize) -> TailNet {
        TailNet::ResNet(resnet_tail(net.clone(), from))
    }

    /// Values per image it reads.
    pub fn input_dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Copies the weights of `source` (a pretrained network's tail, any device) into this tail,
    /// keeping this one's device and trainability. Every tensor must fit.
    pub fn copy_from(&mut self, source: &TailNet) -> Result<()> {
        let snapshots = source.collect(None, None, false);
        let result = self.net.apply(snapshots, None, None, false);
        if !result.errors.is_empty() || !result.missing.is_empty() {
            return Err(Error::Internal(format!(
                "the backbone's last blocks do not fit the captioner's: {} errors, {} missing",
                result.errors.len(),
                result.missing.len()
            )));
        }
        Ok(())
    }

    /// Cached maps `[B, C·H·W]` → pooled features `[B, F]`.
    pub fn forward(&self, maps: Tensor<2>) -> Tensor<2> {
        let [b, _] = maps.dims();
        let x = maps.reshape([b, self.channels, self.height, self.width]);
        let x = match &self.net {
            TailNet::EfficientNet(t) => {
                let x = t
                    .blocks
                    .iter()
                    .fold(x.cast(t.bn1.gamma.val().dtype()), |x, blk| {
                        blk.forward_with(x, frozen_batch_norm)
                    });
                relu6(frozen_batch_norm(&t.bn1, t.conv_head.forward(x)))
            }
            TailNet::ResNet(t) => {
                let dtype = t.blocks.first().map(|b| b.bn1.gamma.val().dtype());
                let x = match dtype {
                    Some(d) => x.cast(d),
                    None => x,
                };
                t.blocks
                    .iter()
                    .fold(x, |x, blk| blk.forward_with(x, frozen_batch_norm))
            }
        };
        crate::model::pooling::Pooling::Mean.pool_map(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_effnet() -> EfficientNetConfig {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/efficientnet/expected.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(v["shape"].clone()).unwrap()
    }

    /// Cut anywhere, the frozen part then the tail give the whole network's features, and the
    /// map shape is the one the frozen part outputs.
    #[test]
    fn frozen_part_then_tail_is_the_whole_network() {
        let device = Device::flex();
        let config = tiny_effnet();
        let mut net = config.init(&device);
        net.load_weights(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/efficientnet/effnet_tiny.pth"),
        )
        .unwrap();
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let want: Vec<f32> = net.forward(x.clone()).into_data().try_to_vec().unwrap();
        let network = TailNetwork::EfficientNet(config.clone());
        assert!(check_split(&network, 0).is_err());
        assert!(check_split(&network, config.block_count() + 1).is_err());
        for n in 1..=config.block_count() {
            check_split(&network, n).unwrap();
            let tail_config = TailConfig {
                network: network.clone(),
                from_block: n,
            };
            let map = net.forward_until(x.clone(), n);
            let [b, c, h, w] = map.dims();
            assert_eq!([c, h, w], tail_config.input_shape(), "cut at {n}");
            let mut tail = tail_config.init(&device);
            tail.copy_from(&Tail::of_efficientnet(&net, n)).unwrap();
            let got: Vec<f32> = tail
                .forward(map.reshape([b, c * h * w]))
                .into_data()
                .try_to_vec()
                .unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "cut at {n}: {g} vs {w}");
            }
        }
    }

    /// A training step through the captioner moves the tail's weights (gradients reach them)
    /// and leaves its batch-norm statistics as they were.
    #[test]
    fn the_tail_trains_with_the_decoder_and_keeps_its_statistics() {
        use crate::model::{CaptionerConfig, EncoderConfig};
        use burn::optim::{AdamConfig, GradientsParams};
        let device = Device::flex();
        let config = tiny_effnet();
        let mut net = config.init(&device);
        net.load_weights(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/efficientnet/effnet_tiny.pth"),
        )
        .unwrap();
        let n = config.block_count() - 1;
        let tail = TailConfig {
            network: TailNetwork::EfficientNet(config.clone()),
            from_block: n,
        };
        let ad = device.clone().autodiff();
        ad.seed(1);
        let captioner = CaptionerConfig::new(
            EncoderConfig::FineTuned {
                dim: config.feature_dim(),
                backbone: "test".into(),
                tail: tail.clone(),
            },
            6,
        )
        .with_embed_size(8)
        .with_hidden_size(8)
        .with_dropout(0.0);
        let mut model = captioner.init(&ad);
        model
            .tail
            .as_mut()
            .unwrap()
            .copy_from(&Tail::of_efficientnet(&net, n))
            .unwrap();
        assert_eq!(model.input_dim(), tail.input_dim());
        let snapshot = |m: &crate::model::Captioner| -> Vec<(String, Vec<u8>)> {
            m.tail
                .as_ref()
                .unwrap()
                .collect(None, None, false)
                .into_iter()
                .map(|t| (t.name.clone(), t.to_bytes().unwrap().to_vec()))
                .collect()
        };
        let before = snapshot(&model);
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let map = net.forward_until(x, n);
        let [b, c, h, w] = map.dims();
        let maps: Vec<f32> = map.into_data().try_to_vec().unwrap();
        let inputs = Tensor::<1>::from_floats(maps.as_slice(), &ad).reshape([b, c * h * w]);
        let ids = Tensor::<2, Int>::from_ints([[0, 2, 3], [0, 4, 5]], &ad);
        let targets = Tensor::<2, Int>::from_ints([[2, 3, 0], [4, 5, 0]], &ad);
        let mask = Tensor::<2>::ones([2, 3], &ad);
        let loss = model.loss(model.finish(inputs), ids, targets, mask);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = AdamConfig::new().init().step(0.01, model, grads);
        let after = snapshot(&model);
        let mut moved = 0;
        for ((name, a), (_, b)) in before.iter().zip(&after) {
            if name.contains("running_") {
                assert_eq!(a, b, "{name} changed");
            } else if a != b {
                moved += 1;
            }
        }
        assert!(
            moved > 0 && moved >= before.len() / 2,
            "{moved} of {} moved",
            before.len()
        );
    }

    #[test]
    fn resnet_frozen_part_then_tail_is_the_whole_network() {
        let device = Device::flex();
        let config = ResNetConfig {
            layers: [2, 1, 1, 1],
            width: 4,
            classes: 10,
            image_size: 32,
            ..ResNetConfig::resnet18()
        };
        let mut net = config.init(&device);
        net.load_weights(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/resnet/resnet18_tiny.pth"),
        )
        .unwrap();
        let x = Tensor::<4>::random(
            [2, 3, 32, 32],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let want: Vec<f32> = net.forward(x.clone()).into_data().try_to_vec().unwrap();
        let network = TailNetwork::ResNet(config.clone());
        assert!(check_split(&network, config.block_count()).is_err());
        for n in 1..config.block_count() {
            let tail_config = TailConfig {
                network: network.clone(),
                from_block: n,
            };
            let map = net.forward_until(x.clone(), n);
            let [b, c, h, w] = map.dims();
            assert_eq!([c, h, w], tail_config.input_shape(), "cut at {n}");
            let mut tail = tail_config.init(&device);
            tail.copy_from(&Tail::of_resnet(&net, n)).unwrap();
            let got: Vec<f32> = tail
                .forward(map.reshape([b, c * h * w]))
                .into_data()
                .try_to_vec()
                .unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "cut at {n}: {g} vs {w}");
            }
        }
    }
}
