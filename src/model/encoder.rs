//! Image encoders: they turn a batch of images `[B, 3, H, W]` into feature vectors `[B, F]`.
//!
//! The decoder only sees `F`, so any backbone that produces a vector fits without touching it:
//! the small CNN below (trained with the decoder), or a frozen pretrained backbone whose features
//! are computed once and cached (VGG-16 fc7 for NeuralTalk models).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;

use super::ops::{batch_norm, conv, max_pool};

/// A small CNN trained from scratch: `depth` blocks of conv 3×3 → batch norm → ReLU → max-pool 2×2,
/// then an average pool to a `grid`×`grid` map that is flattened, so the feature keeps where things are.
#[derive(Config, Debug, PartialEq)]
pub struct SmallCnnConfig {
    /// Channels of the first block; blocks 2 and 3 double it once each.
    #[config(default = 16)]
    pub width: usize,
    /// Number of conv blocks.
    #[config(default = 4)]
    pub depth: usize,
    /// Side of the pooled spatial map that is flattened into the feature vector.
    #[config(default = 4)]
    pub grid: usize,
}

impl SmallCnnConfig {
    /// Channels of block `i`.
    fn channels(&self, i: usize) -> usize {
        self.width << i.min(2)
    }

    /// Length of the feature vector this encoder produces.
    pub fn feature_dim(&self) -> usize {
        self.channels(self.depth.saturating_sub(1)) * self.grid * self.grid
    }

    pub fn init(&self, device: &Device) -> SmallCnn {
        let blocks = (0..self.depth)
            .map(|i| {
                let c_in = if i == 0 { 3 } else { self.channels(i - 1) };
                let c_out = self.channels(i);
                ConvBlock {
                    conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                        .with_padding(PaddingConfig2d::Same)
                        .with_bias(false)
                        .init(device),
                    norm: BatchNormConfig::new(c_out).init(device),
                    pool: MaxPool2dConfig::new([2, 2]).init(),
                }
            })
            .collect();
        SmallCnn {
            blocks,
            pool: AdaptiveAvgPool2dConfig::new([self.grid, self.grid]).init(),
        }
    }
}

/// One conv → batch norm → ReLU → max-pool block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub norm: BatchNorm,
    pub pool: MaxPool2d,
}

/// The small CNN encoder.
#[derive(Module, Debug)]
pub struct SmallCnn {
    pub blocks: Vec<ConvBlock>,
    pub pool: AdaptiveAvgPool2d,
}

impl SmallCnn {
    /// `[B, 3, H, W]` → `[B, F]`. On flex the convolutions, the max-pools, and in training each
    /// batch norm with its ReLU, run as capsearch's own ops ([`super::ops`]); elsewhere through
    /// burn's.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            let y = batch_norm::forward_relu(&block.norm, conv::forward(&block.conv, x));
            x = max_pool::forward(&block.pool, y);
        }
        // a map already of the grid's size (the default `shapes` model: 32 px, 3 blocks, grid 4)
        // pools to itself: skipping it saves burn's adaptive pool and its backward, exactly
        let [_, _, h, w] = x.dims();
        if [h, w] != self.pool.output_size {
            x = self.pool.forward(x);
        }
        let [b, c, h, w] = x.dims();
        x.reshape([b, c * h * w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_dim_matches_forward() {
        let device = Device::flex();
        let config = SmallCnnConfig::new()
            .with_width(4)
            .with_depth(3)
            .with_grid(2);
        let cnn = config.init(&device);
        let out = cnn.forward(Tensor::zeros([2, 3, 32, 32], &device));
        assert_eq!(out.dims(), [2, config.feature_dim()]);
        assert_eq!(config.feature_dim(), 16 * 4);
    }

    /// A training forward and backward of the whole CNN through the custom ops (convolution,
    /// batch norm + ReLU) gives the features and gradients that burn's ops give.
    #[test]
    fn custom_ops_match_burn_ops_through_the_cnn() {
        use crate::model::ops::with_burn_ops;
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        device.seed(43);
        let cnn = SmallCnnConfig::new()
            .with_width(4)
            .with_depth(3)
            .with_grid(2)
            .init(&device);
        let images = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([3, 16 * 4], Distribution::Default, &device);
        let run = || {
            let cnn = cnn.clone();
            let features = cnn.forward(images.clone());
            let grads = (features.clone() * weight.clone()).sum().backward();
            let values = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
            let first = values(cnn.blocks[0].conv.weight.val().grad(&grads).unwrap());
            let last = values(cnn.blocks[2].conv.weight.val().grad(&grads).unwrap());
            let features = features.into_data().try_into_vec::<f32>().unwrap();
            (features, first, last)
        };
        let got = run();
        let want = with_burn_ops(run);
        for (what, got, want) in [
            ("features", &got.0, &want.0),
            ("first conv's dW", &got.1, &want.1),
            ("last conv's dW", &got.2, &want.2),
        ] {
            for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                    "{what}[{k}]: {g} vs {w}"
                );
            }
        }
    }
}
