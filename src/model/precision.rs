//! Weight precision for inference: the lower-memory option.
//!
//! `f16` casts every float parameter of a loaded model (CNN, VGG-16, decoder) to half precision,
//! which halves the memory the weights hold; images are cast on the way in and features back to
//! `f32` on the way out. The decoder's CPU fast path still computes in `f32` from the rounded
//! weights, so what `f16` costs in caption quality is the rounding of the weights (and, for the
//! encoder, of its activations). `capsearch eval --precision f16` measures that cost in BLEU.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;

/// Precision of the weights held in memory while captioning.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
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

    /// Casts a module's float parameters to this precision.
    pub fn apply<M: Module>(self, module: M) -> M {
        match self {
            Precision::F32 => module,
            Precision::F16 => module.map(&mut CastParams(self.dtype())),
        }
    }

    /// Casts an input tensor to this precision.
    pub fn input<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::F32 => tensor,
            Precision::F16 => tensor.cast(self.dtype()),
        }
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
            .forward(Precision::F16.input(images))
            .cast(FloatDType::F32);
        let diff = (got - want.clone()).abs().max().into_scalar::<f32>();
        let scale = want.abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-2 * scale.max(1.0), "diff {diff}, scale {scale}");
    }
}
