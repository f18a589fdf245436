//! Weight precision for inference: the lower-memory option.
//!
//! `f16` casts every float parameter of a loaded model (CNN, VGG-16, decoder) to half precision,
//! which halves the memory the weights hold; the model's encoders and projection cast what they
//! are given to their weights' precision. The decoder's CPU fast path holds its matrices in `f16`
//! too (half the bytes each step reads) and computes in `f32` from the rounded weights, so what
//! `f16` costs in caption quality is the rounding of the weights (and, for the encoder, of its
//! activations). `capsearch eval --precision f16` measures that cost in BLEU.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// Precision of the weights held in memory while captioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats, as trained.
    #[default]
    F32,
    /// 16-bit floats: half the memory for the weights, at a small cost in accuracy.
    F16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Casts a module's float parameters to this precision (parameters already in it are kept).
    pub fn apply<M: Module>(self, module: M) -> M {
        module.map(&mut CastParams(self.dtype()))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

/// A mapper that casts every float parameter.
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::encoder::SmallCnnConfig;
    use burn::tensor::{DType, Distribution};

    #[test]
    fn f16_halves_the_weights_and_keeps_the_output_close() {
        let device = Device::flex();
        device.seed(4);
        let cnn = SmallCnnConfig::new()
            .with_width(4)
            .with_depth(2)
            .with_grid(2)
            .init(&device);
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let want = cnn.forward(images.clone());
        let half = Precision::F16.apply(cnn);
        assert_eq!(half.blocks[0].conv.weight.val().dtype(), DType::F16);
        let got = half
            .forward(images.cast(FloatDType::F16))
            .cast(FloatDType::F32);
        let diff = (got - want.clone()).abs().max().into_scalar::<f32>();
        let scale = want.abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-2 * scale.max(1.0), "diff {diff}, scale {scale}");
    }

    /// f16 loading writes the half copy once, then loads it (in f16); a newer f32 file replaces it.
    #[test]
    fn half_copy_is_written_then_used() {
        use crate::model::artifact::{half_copy_path, load_weights_as, save_weights};
        let device = Device::flex();
        let config = SmallCnnConfig::new()
            .with_width(2)
            .with_depth(1)
            .with_grid(1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        save_weights(config.init(&device), &path).unwrap();
        let half = half_copy_path(&path);
        assert!(!half.exists());
        let dtype = |m: &crate::model::encoder::SmallCnn| m.blocks[0].conv.weight.val().dtype();
        let first = load_weights_as(config.init(&device), &path, Precision::F16).unwrap();
        assert_eq!(dtype(&first), DType::F16);
        assert!(half.exists(), "the half-precision copy is written");
        let second = load_weights_as(config.init(&device), &path, Precision::F16).unwrap();
        assert_eq!(dtype(&second), DType::F16);
        let full = load_weights_as(config.init(&device), &path, Precision::F32).unwrap();
        assert_eq!(dtype(&full), DType::F32);
        // retrain: a newer f32 file makes the copy stale, and it is rewritten from the new weights
        std::thread::sleep(std::time::Duration::from_millis(20));
        let retrained = config.init(&device);
        let want = retrained.blocks[0].conv.weight.val().cast(FloatDType::F16);
        save_weights(retrained, &path).unwrap();
        let third = load_weights_as(config.init(&device), &path, Precision::F16).unwrap();
        let diff = (third.blocks[0].conv.weight.val() - want)
            .abs()
            .max()
            .cast(FloatDType::F32)
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }

    /// A captioner in f16 takes f32 images and masks (eval's perplexity and captioning paths).
    #[test]
    fn f16_captioner_takes_f32_inputs() {
        use crate::model::captioner::{CaptionerConfig, EncoderConfig};
        let device = Device::flex();
        let cnn = SmallCnnConfig::new()
            .with_width(2)
            .with_depth(1)
            .with_grid(1);
        let model = Precision::F16.apply(
            CaptionerConfig::new(EncoderConfig::SmallCnn(cnn), 6)
                .with_embed_size(4)
                .with_hidden_size(4)
                .init(&device),
        );
        let images = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let features = model.encode(images).unwrap();
        let inputs = Tensor::<2, Int>::from_ints([[0, 2], [0, 3]], &device);
        let targets = Tensor::<2, Int>::from_ints([[2, 0], [3, 0]], &device);
        let mask = Tensor::<2>::ones([2, 2], &device);
        let loss = model
            .loss(features, inputs, targets, mask)
            .cast(FloatDType::F32)
            .into_scalar::<f32>();
        assert!(loss.is_finite() && loss > 0.0, "{loss}");
    }
}
