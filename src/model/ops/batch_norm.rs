//! A training batch norm followed by ReLU (the small CNN's `relu(norm(conv(x)))`) as one burn
//! operation with its own backward.
//!
//! burn's `batch_norm_train` on flex is its default composition: each statistic swaps the batch
//! and channel axes (a copy of the whole activation), and the output and the backward are half a
//! dozen more passes, each into a fresh buffer, then ReLU and its backward two more. Here the
//! forward is two passes over the activation (each channel's mean and variance, read in place
//! from NCHW, then the normalised, scaled, shifted and clamped output) and the backward two (each
//! channel's `Σ dz` and `Σ dz·x̂`, then `dx`), where `dz` is the output gradient where the output
//! is positive. Nothing but the output and the gradients is allocated, and the backward keeps
//! only the input (shared with the graph) and two numbers per channel.
//!
//! Implemented for Flex (f32) and for Autodiff over Flex ([`NormBackward`]); [`supports`] says
//! when a batch norm takes this path. Inference (running statistics), other backends and other
//! precisions keep burn's `BatchNorm::forward` followed by `relu`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::relu;
use rayon::prelude::*;

use super::{enabled, f32s, tensor, zeroed};

#[backend_extension(Flex, Autodiff)]
pub trait BatchNormReluBackend: Backend {
    /// `x` `[B, C, H, W]`, `gamma` and `beta` `[C]` → `relu(gamma · (x − mean) / √(var + ε) +
    /// beta)` with the batch's per-channel mean and biased variance, and those two `[C]` (not
    /// differentiated: what the running statistics are updated from).
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether `relu(norm(x))` runs as one op in [`forward_relu`]: a batch norm in training (an
/// autodiff device and the layer's training flag on, where burn's `BatchNorm::forward` takes the
/// batch's statistics) over f32 tensors on the Flex device.
pub fn supports(norm: &BatchNorm, x: &Tensor<4>) -> bool {
    let device = x.device();
    enabled()
        && device.is_autodiff()
        && norm.training.is_enabled()
        && device == Device::flex()
        && x.dtype() == DType::F32
        && norm.gamma.val().dtype() == DType::F32
        && norm.beta.val().dtype() == DType::F32
}

/// `relu(norm.forward(x))`: as one op where [`supports`] allows it (updating the running
/// statistics as burn's `BatchNorm` does), else through burn's ops.
pub fn forward_relu(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !supports(norm, &x) {
        return relu(norm.forward(x));
    }
    let (y, mean, var) = <Dispatch as BatchNormReluBackend>::batch_norm_relu_train(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    let y = Tensor::<4>::from_dispatch(y);
    let device = y.device();
    let momentum = norm.momentum;
    let running = |state: Tensor<1>, batch| {
        state
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(
                Tensor::<1>::from_dispatch(batch)
                    .detach()
                    .mul_scalar(momentum),
            )
            .detach()
    };
    norm.running_mean
        .update(running(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(running(norm.running_var.value_sync(), var));
    y
}

impl BatchNormReluBackend for Flex {
    fn batch_norm_relu_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dims = Dims::of(&x, &gamma, &beta);
        let x = f32s(&x);
        let stats = statistics(&x, dims, epsilon);
        let y = normalise_relu(&x, &stats, &f32s(&gamma), &f32s(&beta), dims);
        let (mean, var) = stats.tensors(dims);
        (tensor(y, dims.shape()), mean, var)
    }
}

impl<C: CheckpointStrategy> BatchNormReluBackend for Autodiff<Flex, C> {
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = NormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (x.primitive(), gamma.primitive(), beta.primitive());
        let dims = Dims::of(x, gamma, beta);
        let values = f32s(x);
        let stats = statistics(&values, dims, epsilon);
        let y = normalise_relu(&values, &stats, &f32s(gamma), &f32s(beta), dims);
        let y = tensor(y, dims.shape());
        let (mean, var) = stats.tensors(dims);
        let y = match prep {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    x: x.clone(),
                    gamma: gamma.clone(),
                    beta: beta.clone(),
                    stats,
                    dims,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, Self::from_inner(mean), Self::from_inner(var))
    }
}

/// Sizes of one batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    channels: usize,
    /// Values of one channel of one image (`H · W`).
    plane: usize,
    shape: [usize; 4],
}

impl Dims {
    fn of(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) -> Self {
        let x = x.layout().shape();
        let (g, b) = (gamma.layout().shape(), beta.layout().shape());
        assert!(
            x.num_dims() == 4
                && g.num_dims() == 1
                && b.num_dims() == 1
                && g[0] == x[1]
                && b[0] == x[1],
            "batch norm: input {x:?} must be [B, C, H, W] and gamma {g:?}, beta {b:?} [C]"
        );
        Self {
            batch: x[0],
            channels: x[1],
            plane: x[2] * x[3],
            shape: [x[0], x[1], x[2], x[3]],
        }
    }

    fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Values per channel over the batch.
    fn count(&self) -> usize {
        self.batch * self.plane
    }

    /// The planes of channel `c`, one per image.
    fn planes<'a>(&self, values: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (plane, stride) = (self.plane, self.channels * self.plane);
        (0..self.batch).map(move |n| &values[n * stride + c * plane..][..plane])
    }
}

/// Each channel's batch mean, biased variance and `1 / √(var + ε)`.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    var: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Stats {
    fn tensors(&self, dims: Dims) -> (FlexTensor, FlexTensor) {
        (
            tensor(self.mean.clone(), [dims.channels]),
            tensor(self.var.clone(), [dims.channels]),
        )
    }
}

/// Two passes per channel (mean, then the mean squared deviation), channels spread over the rayon
/// threads; sums in f64.
fn statistics(x: &[f32], dims: Dims, epsilon: f64) -> Stats {
    let count = dims.count().max(1) as f64;
    let per_channel: Vec<(f32, f32)> = (0..dims.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = dims
                .planes(x, c)
                .map(|p| p.iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = sum / count;
            let squares: f64 = dims
                .planes(x, c)
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean as f32, (squares / count) as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = per_channel.into_iter().unzip();
    let inv_std = var
        .iter()
        .map(|&v| 1.0 / (v + epsilon as f32).sqrt())
        .collect();
    Stats { mean, var, inv_std }
}

/// `relu(gamma · (x − mean) · inv_std + beta)`, one `[H, W]` plane at a time over the threads.
fn normalise_relu(x: &[f32], stats: &Stats, gamma: &[f32], beta: &[f32], dims: Dims) -> Vec<f32> {
    let mut y = zeroed(x.len());
    y.par_chunks_mut(dims.plane)
        .zip(x.par_chunks(dims.plane))
        .enumerate()
        .for_each(|(k, (y, x))| {
            let c = k % dims.channels;
            let scale = gamma[c] * stats.inv_std[c];
            let shift = beta[c] - stats.mean[c] * scale;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x * scale + shift).max(0.0);
            }
        });
    y
}

/// What [`NormBackward`] keeps: the input and parameters (shared with the graph) and the batch's
/// statistics.
#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Stats,
    dims: Dims,
}

/// The backward step: the output's gradient → those of the input, `gamma` and `beta`.
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let NormState {
            x,
            gamma,
            beta,
            stats,
            dims,
        } = ops.state;
        let (x, dy) = (f32s(&x), f32s(&grad));
        let (gamma, beta) = (f32s(&gamma), f32s(&beta));
        let parts = Parts {
            x: &x,
            dy: &dy,
            gamma: &gamma,
            beta: &beta,
            stats: &stats,
            dims,
        };
        let (dgamma, dbeta) = parts.parameter_grads();
        if let Some(node) = node_x {
            let dx = parts.input_grad(&dgamma, &dbeta);
            grads.register::<Flex>(node.id, tensor(dx, dims.shape()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, [dims.channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, [dims.channels]));
        }
    }
}

/// Lanes of [`plane_sums`]' partial sums.
const LANES: usize = 8;

/// One plane's `Σ dz · (x − mean)` and `Σ dz` in [`LANES`] partial sums, value `k` in lane
/// `k % 8`, where `dz = dy` if `x · scale + shift > 0`, else 0.
fn plane_sums(
    x: &[f32],
    dy: &[f32],
    affine: (f32, f32),
    mean: f32,
) -> ([f32; LANES], [f32; LANES]) {
    let n = x.len().min(dy.len());
    let (mut g, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        done = n - n % LANES;
        // SAFETY: the CPU has AVX.
        (g, b) = unsafe { x86::plane_sums(&x[..done], &dy[..done], affine, mean) };
    }
    // the rest, all of it without AVX: `done` is a multiple of 8, so value k stays in lane k % 8
    plane_sums_scalar(&x[done..n], &dy[done..n], affine, mean, (&mut g, &mut b));
    (g, b)
}

/// [`plane_sums`] without SIMD: value `k` into lane `k % 8`.
fn plane_sums_scalar(
    x: &[f32],
    dy: &[f32],
    (scale, shift): (f32, f32),
    mean: f32,
    (g, b): (&mut [f32; LANES], &mut [f32; LANES]),
) {
    for (k, (&x, &dy)) in x.iter().zip(dy).enumerate() {
        let d = if x * scale + shift > 0.0 { dy } else { 0.0 };
        b[k % LANES] += d;
        g[k % LANES] += d * (x - mean);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LANES;
    use crate::model::simd::{loadu, storeu};
    use std::arch::x86_64::{
        _CMP_GT_OQ, _mm256_add_ps, _mm256_and_ps, _mm256_cmp_ps, _mm256_mul_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_sub_ps,
    };

    /// [`super::plane_sums`] over a multiple of eight values, eight lanes in two registers (the
    /// same operations, in the same order per lane, as the scalar loop).
    ///
    /// SAFETY: the CPU has AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn plane_sums(
        x: &[f32],
        dy: &[f32],
        (scale, shift): (f32, f32),
        mean: f32,
    ) -> ([f32; LANES], [f32; LANES]) {
        let n = x.len().min(dy.len()) / LANES * LANES;
        let (scale, shift, mean) = (
            _mm256_set1_ps(scale),
            _mm256_set1_ps(shift),
            _mm256_set1_ps(mean),
        );
        let (mut g, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (xp, dyp) = (x.as_ptr(), dy.as_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 ≤ n, within both slices.
            let (x, dy) = unsafe { (loadu!(xp.add(i)), loadu!(dyp.add(i))) };
            let pre = _mm256_add_ps(_mm256_mul_ps(x, scale), shift);
            let d = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(pre, _mm256_setzero_ps()), dy);
            b = _mm256_add_ps(b, d);
            g = _mm256_add_ps(g, _mm256_mul_ps(d, _mm256_sub_ps(x, mean)));
            i += LANES;
        }
        let (mut gs, mut bs) = ([0.0f32; LANES], [0.0f32; LANES]);
        // SAFETY: each array holds eight f32.
        unsafe {
            storeu!(gs.as_mut_ptr(), g);
            storeu!(bs.as_mut_ptr(), b);
        }
        (gs, bs)
    }
}

/// The backward's inputs, all contiguous f32.
struct Parts<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    stats: &'a Stats,
    dims: Dims,
}

impl Parts<'_> {
    /// Channel `c`'s scale and shift: `y = relu(x · scale + shift)`, `x̂ = (x − mean) · inv_std`.
    fn affine(&self, c: usize) -> (f32, f32) {
        let scale = self.gamma[c] * self.stats.inv_std[c];
        (scale, self.beta[c] - self.stats.mean[c] * scale)
    }

    /// `dgamma = Σ dz · x̂` and `dbeta = Σ dz` per channel, `dz` the output gradient where the
    /// output is positive; channels spread over the threads. Each plane is summed in eight f32
    /// lanes ([`plane_sums`]; 7.6% of a batch-64 training step as a scalar f64 loop, and the
    /// compiler left the eight-lane arrays scalar too: 4.4%, an AVX loop since), the planes' sums
    /// in f64; `inv_std` multiplies the channel's sum once.
    fn parameter_grads(&self) -> (Vec<f32>, Vec<f32>) {
        let dims = self.dims;
        let per_channel: Vec<(f32, f32)> = (0..dims.channels)
            .into_par_iter()
            .map(|c| {
                let (scale, shift) = self.affine(c);
                let mean = self.stats.mean[c];
                let (mut dgamma, mut dbeta) = (0.0f64, 0.0f64);
                for (x, dy) in dims.planes(self.x, c).zip(dims.planes(self.dy, c)) {
                    let (g, b) = plane_sums(x, dy, (scale, shift), mean);
                    dgamma += g.iter().map(|&v| f64::from(v)).sum::<f64>();
                    dbeta += b.iter().map(|&v| f64::from(v)).sum::<f64>();
                }
                let inv_std = self.stats.inv_std[c];
                ((dgamma * f64::from(inv_std)) as f32, dbeta as f32)
            })
            .collect();
        per_channel.into_iter().unzip()
    }

    /// `dx = gamma · inv_std · (dz − dbeta / N − x̂ · dgamma / N)`, one plane at a time over the
    /// threads.
    fn input_grad(&self, dgamma: &[f32], dbeta: &[f32]) -> Vec<f32> {
        let dims = self.dims;
        let count = dims.count().max(1) as f32;
        let mut dx = zeroed(self.x.len());
        dx.par_chunks_mut(dims.plane)
            .zip(
                self.x
                    .par_chunks(dims.plane)
                    .zip(self.dy.par_chunks(dims.plane)),
            )
            .enumerate()
            .for_each(|(k, (dx, (x, dy)))| {
                let c = k % dims.channels;
                let (scale, shift) = self.affine(c);
                let (mean, inv_std) = (self.stats.mean[c], self.stats.inv_std[c]);
                let (mean_dz, mean_dz_xhat) = (dbeta[c] / count, dgamma[c] / count);
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let dz = if x * scale + shift > 0.0 { dy } else { 0.0 };
                    let xhat = (x - mean) * inv_std;
                    *dx = scale * (dz - mean_dz - xhat * mean_dz_xhat);
                }
            });
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{assert_close, values};
    use crate::model::ops::with_burn_ops;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::Distribution;

    /// The op and burn's `relu(BatchNorm::forward)` give the same output, the same gradients for
    /// the input, `gamma` and `beta`, and the same running statistics afterwards: odd sizes, one
    /// image, a 1×1 map, and a batch large enough to spread over the threads.
    #[test]
    fn op_matches_burn_batch_norm_and_relu() {
        let device = Device::flex().autodiff();
        device.seed(41);
        for (b, c, h, w) in [(2, 3, 5, 4), (1, 2, 3, 3), (4, 5, 1, 1), (16, 32, 16, 16)] {
            let what = format!("B={b} C={c} {h}×{w}");
            let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
            // a fresh layer per run: both start from the same running statistics
            let layer = || {
                let mut norm = BatchNormConfig::new(c).init(&device);
                norm.gamma = Param::from_tensor(gamma.clone());
                norm.beta = Param::from_tensor(beta.clone());
                norm
            };
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.5, 2.0), &device);
            let weight = Tensor::<4>::random([b, c, h, w], Distribution::Default, &device);
            assert!(supports(&layer(), &x), "{what}");
            let run = || {
                let norm = layer();
                let x = x.clone().require_grad();
                let y = forward_relu(&norm, x.clone());
                let grads = (y.clone() * weight.clone()).sum().backward();
                let grad = |p: &Param<Tensor<1>>| values(p.val().grad(&grads).unwrap());
                (
                    values(y),
                    values(x.grad(&grads).unwrap()),
                    grad(&norm.gamma),
                    grad(&norm.beta),
                    values(norm.running_mean.value()),
                    values(norm.running_var.value()),
                )
            };
            let got = run();
            let want = with_burn_ops(run);
            assert_close(&format!("{what} y"), &got.0, &want.0, 1e-5);
            assert_close(&format!("{what} dx"), &got.1, &want.1, 1e-4);
            assert_close(&format!("{what} dgamma"), &got.2, &want.2, 1e-4);
            assert_close(&format!("{what} dbeta"), &got.3, &want.3, 1e-4);
            assert_close(&format!("{what} running mean"), &got.4, &want.4, 1e-5);
            assert_close(&format!("{what} running var"), &got.5, &want.5, 1e-5);
        }
    }

    /// Inference (no autodiff, or the layer's training flag off) keeps burn's path.
    #[test]
    fn inference_keeps_burn_batch_norm() {
        let norm = BatchNormConfig::new(3).init(&Device::flex());
        let x = Tensor::<4>::zeros([1, 3, 2, 2], &Device::flex());
        assert!(!supports(&norm, &x));
        let device = Device::flex().autodiff();
        let norm = BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::zeros([1, 3, 2, 2], &device);
        assert!(supports(&norm, &x));
    }
}
