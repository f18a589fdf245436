//! Training dropout as one burn operation with its own backward.
//!
//! burn's `Dropout` draws a Bernoulli tensor from the device's random generator (one ChaCha
//! sample per value, through a generic sampler), multiplies, and scales: about 4% of a training
//! step of the `shapes` model at batch 32 went to the draws alone. Here the mask is a hash of a
//! seed and each value's index (SplitMix64's finaliser, [`kept`]), so the forward is one pass
//! that draws, masks and scales, and the backward recomputes the same mask from the seed instead
//! of keeping it. The seed is drawn from the device's generator once per call, so a run seeded
//! with `Device::seed` draws the same masks again.
//!
//! Implemented for Flex (f32) and for Autodiff over Flex ([`DropoutBackward`]); [`forward`] keeps
//! burn's `Dropout::forward` for every other device and precision, and when the layer is not
//! training.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use rayon::prelude::*;

use super::{enabled, f32s};

/// Values per rayon task.
const CHUNK: usize = 1 << 14;

#[backend_extension(Flex, Autodiff)]
pub trait DropoutBackend: Backend {
    /// `x · mask / keep`, where `mask[i]` is [`kept`]`(seed, i, keep)`.
    fn dropout_hashed(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self>;
}

/// `dropout`'s forward: as one op for f32 tensors on the Flex device while the layer trains
/// (see the module docs), else burn's `Dropout::forward`.
pub fn forward<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let active = dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0;
    if !(active && enabled() && device == Device::flex() && x.dtype() == DType::F32) {
        return dropout.forward(x);
    }
    let seed = draw_seed(&device);
    hashed(x, 1.0 - dropout.prob, seed)
}

/// Dropout with the mask of `seed` (see [`kept`]); f32 tensors on the Flex device only.
pub fn hashed<const D: usize>(x: Tensor<D>, keep: f64, seed: u64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as DropoutBackend>::dropout_hashed(
        x.into_dispatch(),
        keep,
        seed,
    ))
}

/// A 60-bit seed from the device's random generator (two 30-bit draws: the default int type may
/// be 32 bits).
fn draw_seed(device: &Device) -> u64 {
    let halves = Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, 1_073_741_824.0), device)
        .into_data()
        .iter::<i64>()
        .map(|h| h as u64 & 0x3fff_ffff)
        .collect::<Vec<_>>();
    (halves[0] << 30) | halves[1]
}

/// Whether value `index` survives under `seed`: SplitMix64's finaliser of `seed + index · γ`,
/// its top 24 bits below `keep · 2²⁴` (probability `keep` to within 2⁻²⁴).
#[inline]
pub fn kept(seed: u64, index: u64, keep: f64) -> bool {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 40) as f64) < keep * (1u64 << 24) as f64
}

/// `values · mask / keep` for the mask of `seed`, spread over the rayon threads.
fn apply(values: &[f32], keep: f64, seed: u64) -> Vec<f32> {
    let scale = (1.0 / keep) as f32;
    let mut out = values.to_vec();
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(n, chunk)| {
            let first = (n * CHUNK) as u64;
            for (i, v) in chunk.iter_mut().enumerate() {
                *v = if kept(seed, first + i as u64, keep) {
                    *v * scale
                } else {
                    0.0
                };
            }
        });
    out
}

impl DropoutBackend for Flex {
    fn dropout_hashed(x: FlexTensor, keep: f64, seed: u64) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        tensor_of(apply(&f32s(&x), keep, seed), shape)
    }
}

impl<C: CheckpointStrategy> DropoutBackend for Autodiff<Flex, C> {
    fn dropout_hashed(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self> {
        let prep = DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.primitive();
        let shape = x.layout().shape().to_vec();
        let out = tensor_of(apply(&f32s(x), keep, seed), shape);
        match prep {
            OpsKind::Tracked(prep) => prep.finish((keep, seed), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// A contiguous tensor of any rank over `values`.
fn tensor_of(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The backward step: the output's gradient times the same mask and scale.
#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    /// `keep` and the seed.
    type State = (f64, u64);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node else { return };
        let (keep, seed) = ops.state;
        let shape = grad.layout().shape().to_vec();
        let dx = apply(&f32s(&grad), keep, seed);
        grads.register::<Flex>(node.id, tensor_of(dx, shape));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{assert_close, assert_same_value_and_grad, values};
    use burn::nn::DropoutConfig;

    /// The op gives what burn's ops give for its mask, `x · mask · (1 / keep)`, and the same
    /// gradient; the mask keeps about `keep` of the values, depends on the seed, and a seeded
    /// device draws the same masks again.
    #[test]
    fn op_matches_composed_ops_for_its_mask() {
        let device = Device::flex().autodiff();
        device.seed(37);
        let (rows, cols, keep) = (300, 170, 0.8);
        let x = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &device);
        let seed = 0x1234_5678_9abc_def0;
        let mask: Vec<f32> = (0..(rows * cols) as u64)
            .map(|i| if kept(seed, i, keep) { 1.0 } else { 0.0 })
            .collect();
        let share = mask.iter().sum::<f32>() / mask.len() as f32;
        assert!((share - 0.8).abs() < 0.01, "kept {share}");
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, cols]), &device);

        let y = assert_same_value_and_grad(
            "dropout",
            &x,
            &weight,
            |x| hashed(x, keep, seed),
            |x| x * mask.clone() * (1.0 / keep),
            1e-6,
        );
        let inner = hashed(x.clone().inner(), keep, seed);
        assert_close("no autodiff", &values(inner), &y, 0.0);
        let other = values(hashed(x.clone().inner(), keep, seed + 1));
        assert_ne!(other, y, "another seed, another mask");

        let dropout = DropoutConfig::new(1.0 - keep).init();
        device.seed(41);
        let first = values(forward(&dropout, x.clone()));
        device.seed(41);
        assert_eq!(values(forward(&dropout, x.clone())), first);
        let dropped = first.iter().filter(|v| **v == 0.0).count() as f32;
        assert!((dropped / first.len() as f32 - 0.2).abs() < 0.01);
    }

    /// Outside training (no autodiff) dropout is the identity, as burn's.
    #[test]
    fn inference_is_the_identity() {
        let device = Device::flex();
        let x = Tensor::<2>::random([4, 5], Distribution::Normal(0.0, 1.0), &device);
        let dropout = DropoutConfig::new(0.5).init();
        assert_eq!(values(forward(&dropout, x.clone())), values(x));
    }
}
