//! The small CNN's 2×2 max-pool (stride 2, no padding) as one burn operation with its own backward.
//!
//! burn-flex runs every 2-D max-pool through its general 3-D kernel: per output value it works out
//! the window's valid ranges, divides for the batch and channel, and writes an `i64` index; its
//! backward allocates a zeroed input-sized gradient and scatters into it. At batch 64 the two were
//! the largest unnamed share of a `shapes` training step (about 13% of the CPU samples, one
//! rayon thread). Here the forward reads each pair of input rows once and keeps the winner of each
//! window as a byte (0–3, row-major in the window), and the backward writes every input gradient
//! value once: the output's gradient at the winner, zero elsewhere (the windows do not overlap).
//!
//! The winner is the first largest value in row-major order, a NaN winning as in burn (which
//! keeps the last NaN); a last odd row or column is dropped (floor), as burn's default.
//!
//! Implemented for Flex (f32) and for Autodiff over Flex ([`PoolBackward`]); [`supports`] says when
//! a max-pool takes this path. Other shapes of pooling, other backends and other precisions keep
//! burn's `MaxPool2d::forward`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::{enabled, f32s, tensor, zeroed};

#[backend_extension(Flex, Autodiff)]
pub trait MaxPool2x2Backend: Backend {
    /// `x` `[B, C, H, W]` → the maxima of its 2×2 windows, `[B, C, H/2, W/2]` (floor).
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether `pool.forward(x)` runs as one op in [`forward`]: a 2×2 window with stride 2, no
/// padding and no dilation, floor mode, over an f32 tensor on the Flex device.
pub fn supports(pool: &MaxPool2d, x: &Tensor<4>) -> bool {
    enabled()
        && pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, PaddingConfig2d::Valid)
        && x.device() == Device::flex()
        && x.dtype() == DType::F32
}

/// `pool.forward(x)`: as one op where [`supports`] allows it, else through burn's ops.
pub fn forward(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    if !supports(pool, &x) {
        return pool.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as MaxPool2x2Backend>::max_pool_2x2(
        x.into_dispatch(),
    ))
}

impl MaxPool2x2Backend for Flex {
    fn max_pool_2x2(x: FlexTensor) -> FlexTensor {
        let dims = Dims::of(&x);
        let (y, _) = pool(&f32s(&x), dims, false);
        tensor(y, dims.out_shape())
    }
}

impl<C: CheckpointStrategy> MaxPool2x2Backend for Autodiff<Flex, C> {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = PoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.primitive();
        let dims = Dims::of(x);
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, winners) = pool(&f32s(x), dims, true);
                prep.finish(PoolState { winners, dims }, tensor(y, dims.out_shape()))
            }
            OpsKind::UnTracked(prep) => {
                let (y, _) = pool(&f32s(x), dims, false);
                prep.finish(tensor(y, dims.out_shape()))
            }
        }
    }
}

/// Sizes of one pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl Dims {
    fn of(x: &FlexTensor) -> Self {
        let shape = x.layout().shape();
        assert!(
            shape.num_dims() == 4,
            "2×2 max-pool: input {shape:?} must be [B, C, H, W]"
        );
        Self {
            batch: shape[0],
            channels: shape[1],
            height: shape[2],
            width: shape[3],
        }
    }

    /// Images times channels: the planes pooled one by one.
    fn planes(&self) -> usize {
        self.batch * self.channels
    }

    fn out(&self) -> [usize; 2] {
        [self.height / 2, self.width / 2]
    }

    fn out_shape(&self) -> [usize; 4] {
        let [oh, ow] = self.out();
        [self.batch, self.channels, oh, ow]
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        let [oh, ow] = self.out();
        oh * ow
    }
}

/// The maxima of every plane's windows and, with `keep`, each window's winner (0–3: top left, top
/// right, bottom left, bottom right); planes spread over the rayon threads.
fn pool(x: &[f32], dims: Dims, keep: bool) -> (Vec<f32>, Vec<u8>) {
    let [oh, ow] = dims.out();
    let (in_plane, out_plane, w) = (dims.in_plane(), dims.out_plane(), dims.width);
    let mut y = zeroed(dims.planes() * out_plane);
    let mut winners = zeroed(if keep { y.len() } else { 0 });
    if out_plane == 0 {
        return (y, winners);
    }
    let run = |(p, (y, winners)): (usize, (&mut [f32], &mut [u8]))| {
        let x = &x[p * in_plane..][..in_plane];
        for oy in 0..oh {
            let (top, bottom) = (&x[2 * oy * w..][..2 * ow], &x[(2 * oy + 1) * w..][..2 * ow]);
            let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
            let y = &mut y[oy * ow..][..ow];
            if winners.is_empty() {
                for (y, (t, b)) in y.iter_mut().zip(windows) {
                    *y = window_max(t, b).0;
                }
            } else {
                let winners = &mut winners[oy * ow..][..ow];
                for ((y, winner), (t, b)) in y.iter_mut().zip(winners.iter_mut()).zip(windows) {
                    (*y, *winner) = window_max(t, b);
                }
            }
        }
    };
    if keep {
        y.par_chunks_mut(out_plane)
            .zip(winners.par_chunks_mut(out_plane))
            .enumerate()
            .for_each(run);
    } else {
        y.par_chunks_mut(out_plane)
            .enumerate()
            .for_each(|(p, y)| run((p, (y, &mut []))));
    }
    (y, winners)
}

/// A 2×2 window's maximum (top row `t`, bottom row `b`) and its winner, 0–3 in reading order:
/// the first maximum, a NaN winning over numbers. Branch-free selects, so the loop over a row's
/// windows runs without mispredicted branches.
#[inline(always)]
fn window_max(t: &[f32], b: &[f32]) -> (f32, u8) {
    let (mut best, mut winner) = (t[0], 0u8);
    for (k, v) in [(1u8, t[1]), (2, b[0]), (3, b[1])] {
        let take = v > best || (v.is_nan() & !best.is_nan());
        best = if take { v } else { best };
        winner = if take { k } else { winner };
    }
    (best, winner)
}

/// What [`PoolBackward`] keeps: each window's winner.
#[derive(Debug, Clone)]
struct PoolState {
    winners: Vec<u8>,
    dims: Dims,
}

/// The backward step: each window's output gradient goes to its winner.
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = PoolState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node else { return };
        let PoolState { winners, dims } = ops.state;
        let dx = unpool(&f32s(&grad), &winners, dims);
        let shape = [dims.batch, dims.channels, dims.height, dims.width];
        grads.register::<Flex>(node.id, tensor(dx, shape));
    }
}

/// The input's gradient: `dy` at each window's winner, zero at the rest of the window and in a
/// dropped last row or column; planes spread over the rayon threads.
fn unpool(dy: &[f32], winners: &[u8], dims: Dims) -> Vec<f32> {
    let [oh, ow] = dims.out();
    let (in_plane, out_plane, w) = (dims.in_plane(), dims.out_plane(), dims.width);
    let mut dx = zeroed(dims.planes() * in_plane);
    if out_plane == 0 {
        return dx;
    }
    dx.par_chunks_mut(in_plane)
        .zip(dy.par_chunks(out_plane).zip(winners.par_chunks(out_plane)))
        .for_each(|(dx, (dy, winners))| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let k = usize::from(winners[oy * ow + ox]);
                    dx[(2 * oy + k / 2) * w + 2 * ox + k % 2] = dy[oy * ow + ox];
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{assert_close, assert_same_value_and_grad, values};
    use crate::model::ops::with_burn_ops;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::Distribution;

    /// The op and burn's `MaxPool2d` give the same values and gradients: odd sides (a dropped
    /// row and column), one image, a 1×1 output, a 1-pixel-high input (no output), and a batch
    /// large enough to spread over the threads; with and without autodiff.
    #[test]
    fn op_matches_burn_max_pool() {
        let device = Device::flex().autodiff();
        device.seed(43);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        for (b, c, h, w) in [(2, 3, 5, 7), (1, 1, 2, 2), (3, 2, 4, 6), (64, 16, 32, 32)] {
            let what = format!("B={b} C={c} {h}×{w}");
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<4>::random(
                [b, c, h / 2, w / 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            assert!(supports(&pool, &x), "{what}");
            let y = assert_same_value_and_grad(
                &what,
                &x,
                &weight,
                |x| forward(&pool, x),
                |x| with_burn_ops(|| forward(&pool, x)),
                0.0,
            );
            let inner = values(forward(&pool, x.clone().inner()));
            assert_close(&format!("{what} without autodiff"), &inner, &y, 0.0);
        }
    }

    /// Ties go to the first value in the window, a NaN wins; other pool shapes keep burn's op.
    #[test]
    fn ties_nan_and_other_shapes() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 3.0, 3.0, 0.0, 0.0, 0.0, f32::NAN, 2.0],
                [1, 1, 2, 4],
            ),
            &device,
        )
        .require_grad();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let y = forward(&pool, x.clone());
        let got = values(y.clone());
        assert_eq!(got[0], 3.0);
        assert!(got[1].is_nan());
        let grads = (y * Tensor::<4>::ones([1, 1, 1, 2], &device))
            .sum()
            .backward();
        let dx = values(x.grad(&grads).unwrap());
        assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

        let x = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        assert!(!supports(&MaxPool2dConfig::new([3, 3]).init(), &x));
        let strided = MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).init();
        assert!(!supports(&strided, &x));
    }
}
