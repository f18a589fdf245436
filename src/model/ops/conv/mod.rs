//! The small CNN's convolution (stride 1, symmetric zero padding, no bias, one group) as one burn
//! operation with its own backward, on im2col and the `gemm` kernels.
//!
//! burn-flex's backward of a convolution is burn's default: a transposed convolution for the
//! input gradient and a convolution over the batch for the weight gradient, whose parallel split
//! is over the few input channels; issue 15's profile put the two at 19–22% of a training step of
//! the `shapes` model. Here the forward is, per image, `Y = W · cols` (the image's columns
//! `cols = im2col(x)`), and the backward is products: per image, `dcols = Wᵀ · dY` added back onto
//! the input (col2im), and `dW = dY · colsᵀ` (the columns built again) summed over each rayon
//! thread's share of the batch as dot products of rows
//! ([`dots`]: a product with only 16–64 rows and 27–288 columns but a long inner dimension, where
//! `gemm`'s packing cost more than its arithmetic).
//!
//! Implemented for Flex (f32) and for Autodiff over Flex ([`ConvBackward`]); [`supports`] says
//! when a convolution takes this path, everything else (CUDA, other precisions, strides, ...)
//! keeps burn's `conv2d`.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

mod dots;

use super::{enabled, f32s, tensor, zeroed};
use crate::model::gemm::{Layout, matmul_strided};

#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// `x` `[B, C, H, W]`, `weight` `[O, C, KH, KW]`, zero padding `[ph, pw]` on both sides of
    /// each axis, stride 1 → `[B, O, H + 2ph - KH + 1, W + 2pw - KW + 1]`.
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// The symmetric padding of `conv` on an input `[.., h, w]` when its convolution can run as
/// [`conv2d`]: f32 on the Flex device, stride 1, no dilation, one group, no bias, and as much
/// padding before as after each axis. `None` sends it through burn's `conv2d`.
pub fn supports(conv: &Conv2d, x: &Tensor<4>) -> Option<[usize; 2]> {
    let [_, _, h, w] = x.dims();
    let [kh, kw] = conv.kernel_size;
    // burn's "same" padding at stride 1: k - 1 in all, the odd one after
    let same = |k: usize| {
        let total = k.saturating_sub(1);
        (total / 2, total - total / 2)
    };
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(kh), same(kw)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    };
    let plain = conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.bias.is_none()
        && top == bottom
        && left == right
        && h + 2 * top >= kh
        && w + 2 * left >= kw;
    let weight = conv.weight.val();
    let flex_f32 =
        x.device() == Device::flex() && x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    (enabled() && plain && flex_f32).then_some([top, left])
}

/// `conv`'s forward: through [`ConvBackend`] where [`supports`] allows it, else burn's.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match supports(conv, &x) {
        Some(padding) => conv2d(x, conv.weight.val(), padding),
        None => conv.forward(x),
    }
}

/// The convolution as one op (see the module docs); only for what [`supports`] accepts.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as ConvBackend>::conv2d_im2col(
        x.into_dispatch(),
        weight.into_dispatch(),
        padding,
    ))
}

impl ConvBackend for Flex {
    fn conv2d_im2col(x: FlexTensor, weight: FlexTensor, padding: [usize; 2]) -> FlexTensor {
        let dims = Dims::of(&x, &weight, padding);
        output(dims, conv_forward(&f32s(&x), &f32s(&weight), dims))
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let prep = ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (x, weight) = (x.primitive(), weight.primitive());
        let dims = Dims::of(x, weight, padding);
        let out = output(dims, conv_forward(&f32s(x), &f32s(weight), dims));
        match prep {
            OpsKind::Tracked(prep) => {
                let state = BackwardState {
                    x: x.clone(),
                    weight: weight.clone(),
                    dims,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel: [usize; 2],
    padding: [usize; 2],
}

impl Dims {
    fn of(x: &FlexTensor, weight: &FlexTensor, padding: [usize; 2]) -> Self {
        let x = x.layout().shape();
        let w = weight.layout().shape();
        assert!(
            x.num_dims() == 4
                && w.num_dims() == 4
                && w[1] == x[1]
                && x[2] + 2 * padding[0] >= w[2]
                && x[3] + 2 * padding[1] >= w[3],
            "im2col convolution: input {x:?} and weight {w:?} with padding {padding:?} don't fit"
        );
        Self {
            batch: x[0],
            channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: w[0],
            kernel: [w[2], w[3]],
            padding,
        }
    }

    /// Output height and width.
    fn out(&self) -> [usize; 2] {
        [
            self.height + 2 * self.padding[0] + 1 - self.kernel[0],
            self.width + 2 * self.padding[1] + 1 - self.kernel[1],
        ]
    }

    /// Rows of an image's columns: `C · KH · KW`.
    fn taps(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels of one image.
    fn pixels(&self) -> usize {
        let [oh, ow] = self.out();
        oh * ow
    }

    /// Values of one input image.
    fn image(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// What [`ConvBackward`] keeps from the forward pass: the input and the weights (shared with the
/// graph, not copied). The backward builds each image's columns again, next to its use: keeping
/// the whole batch's columns from the forward (7 MiB for the first `shapes` layer at batch 64)
/// cost more in zeroing, writing and reading them back from far caches than im2col costs.
#[derive(Debug, Clone)]
struct BackwardState {
    x: FlexTensor,
    weight: FlexTensor,
    dims: Dims,
}

/// The backward step: the output's gradient → those of the input and the weights.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let BackwardState { x, weight, dims } = ops.state;
        let grad = f32s(&grad);
        if let Some(node) = node_w {
            let dw = weight_grad(&f32s(&x), &grad, dims);
            let [kh, kw] = dims.kernel;
            let shape = [dims.out_channels, dims.channels, kh, kw];
            grads.register::<Flex>(node.id, tensor(dw, shape));
        }
        if let Some(node) = node_x {
            let dx = input_grad(&f32s(&weight), &grad, dims);
            let shape = [dims.batch, dims.channels, dims.height, dims.width];
            grads.register::<Flex>(node.id, tensor(dx, shape));
        }
    }
}

fn output(dims: Dims, values: Vec<f32>) -> FlexTensor {
    let [oh, ow] = dims.out();
    tensor(values, [dims.batch, dims.out_channels, oh, ow])
}

/// The output pixels `ox` of row `oy` whose tap `(ky, kx)` lands inside the input, and the input
/// row and first column they read: `None` when the row falls in the padding.
fn tap_span(dims: &Dims, oy: usize, ky: usize, kx: usize) -> Option<(usize, usize, usize, usize)> {
    let [_, ow] = dims.out();
    let [ph, pw] = dims.padding;
    let iy = (oy + ky).checked_sub(ph).filter(|&iy| iy < dims.height)?;
    let first = pw.saturating_sub(kx);
    let end = (dims.width + pw).saturating_sub(kx).min(ow);
    (first < end).then(|| (iy, first, end, first + kx - pw))
}

/// One image's columns: `x` `[C, H, W]` → `cols` `[C·KH·KW, OH·OW]` (zeros where a tap falls in
/// the padding).
fn im2col(dims: &Dims, x: &[f32], cols: &mut [f32]) {
    for (r, row) in cols.chunks_mut(dims.pixels()).enumerate() {
        im2col_row(dims, x, r, row);
    }
}

/// Row `r` (channel c, tap (ky, kx)) of one image's columns: `x` `[C, H, W]` → `out` `[OH·OW]`.
fn im2col_row(dims: &Dims, x: &[f32], r: usize, out: &mut [f32]) {
    let [kh, kw] = dims.kernel;
    let [oh, ow] = dims.out();
    let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
    let plane = dims.height * dims.width;
    let x = &x[c * plane..(c + 1) * plane];
    for oy in 0..oh {
        let out = &mut out[oy * ow..(oy + 1) * ow];
        match tap_span(dims, oy, ky, kx) {
            Some((iy, first, end, ix)) => {
                out[..first].fill(0.0);
                let src = &x[iy * dims.width + ix..];
                out[first..end].copy_from_slice(&src[..end - first]);
                out[end..].fill(0.0);
            }
            None => out.fill(0.0),
        }
    }
}

/// The inverse scatter of [`im2col`]: adds each column value back onto the input pixel it was
/// read from. `dx` `[C, H, W]` starts at zero. The spans of a tap are the same in every channel,
/// so they are found once per tap and output row; the adds run eight lanes at a time where AVX is
/// present (at the dev profile's opt-level 1 the scalar loop stays scalar: issue 15's profile put
/// it at 6–7% of a training step at batch 32).
fn col2im(dims: &Dims, cols: &[f32], dx: &mut [f32]) {
    let [kh, kw] = dims.kernel;
    let [oh, ow] = dims.out();
    let (plane, pixels) = (dims.height * dims.width, oh * ow);
    #[cfg(target_arch = "x86_64")]
    let avx = std::arch::is_x86_feature_detected!("avx");
    for ky in 0..kh {
        for kx in 0..kw {
            for oy in 0..oh {
                let Some((iy, first, end, ix)) = tap_span(dims, oy, ky, kx) else {
                    continue;
                };
                let n = end - first;
                for c in 0..dims.channels {
                    let r = (c * kh + ky) * kw + kx;
                    let src = &cols[r * pixels + oy * ow + first..][..n];
                    let dst = &mut dx[c * plane + iy * dims.width + ix..][..n];
                    #[cfg(target_arch = "x86_64")]
                    if avx {
                        // SAFETY: AVX is present.
                        unsafe { add_avx(dst, src) };
                        continue;
                    }
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// `dst += src` over their common length, eight values at a time.
///
/// SAFETY: the CPU has AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn add_avx(dst: &mut [f32], src: &[f32]) {
    use crate::model::simd::{loadu, storeu};
    use std::arch::x86_64::_mm256_add_ps;
    let n = dst.len().min(src.len());
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n, within both slices.
        unsafe {
            let sum = _mm256_add_ps(loadu!(d.add(i)), loadu!(s.add(i)));
            storeu!(d.add(i), sum);
        }
        i += 8;
    }
    for (d, s) in dst[i..n].iter_mut().zip(&src[i..n]) {
        *d += s;
    }
}

/// The forward, per image (spread over the rayon threads, each reusing one image's columns):
/// `out = W · im2col(x)`.
fn conv_forward(x: &[f32], weight: &[f32], dims: Dims) -> Vec<f32> {
    let (taps, pixels, o) = (dims.taps(), dims.pixels(), dims.out_channels);
    let mut out = zeroed(dims.batch * o * pixels);
    out.par_chunks_mut(o * pixels)
        .zip(x.par_chunks(dims.image()))
        .for_each_init(
            || vec![0.0f32; taps * pixels],
            |cols, (out, x)| {
                im2col(&dims, x, cols);
                matmul_strided(
                    (out, Layout::rows(pixels)),
                    (weight, Layout::rows(taps)),
                    (cols, Layout::rows(pixels)),
                    (o, taps, pixels),
                    false,
                    false,
                );
            },
        );
    out
}

/// `dW = Σ_images dY · colsᵀ`: the images in one fixed share per rayon thread, each image's
/// columns built again into the thread's buffer and dotted row by row with its output-gradient
/// rows (`[O, OH·OW]`, as the gradient lies; [`dots`]), each share's sums in its own buffer, the
/// shares added in order (the same sum whatever thread ran which share).
fn weight_grad(x: &[f32], grad: &[f32], dims: Dims) -> Vec<f32> {
    let (taps, pixels, o, b) = (dims.taps(), dims.pixels(), dims.out_channels, dims.batch);
    let share = b.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let partial = |first: usize| {
        let mut dw = vec![0.0f32; o * taps];
        let mut cols = vec![0.0f32; taps * pixels];
        for n in first..(first + share).min(b) {
            im2col(&dims, &x[n * dims.image()..][..dims.image()], &mut cols);
            dots::add_row_dots(
                &mut dw,
                taps,
                (&grad[n * o * pixels..][..o * pixels], pixels, o),
                (&cols, pixels, taps),
                pixels,
            );
        }
        dw
    };
    let shares: Vec<Vec<f32>> = (0..b)
        .step_by(share)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(partial)
        .collect();
    let mut shares = shares.into_iter();
    let mut dw = shares.next().unwrap_or_else(|| vec![0.0f32; o * taps]);
    for part in shares {
        for (d, p) in dw.iter_mut().zip(&part) {
            *d += p;
        }
    }
    dw
}

/// `dx`: per image (spread over the rayon threads), `col2im(Wᵀ · dY)`.
fn input_grad(weight: &[f32], grad: &[f32], dims: Dims) -> Vec<f32> {
    let (taps, pixels, o) = (dims.taps(), dims.pixels(), dims.out_channels);
    let mut dx = zeroed(dims.batch * dims.image());
    dx.par_chunks_mut(dims.image())
        .zip(grad.par_chunks(o * pixels))
        .for_each_init(
            || vec![0.0f32; taps * pixels],
            |dcols, (dx, dy)| {
                matmul_strided(
                    (dcols, Layout::rows(pixels)),
                    (weight, Layout::transposed(taps)),
                    (dy, Layout::rows(pixels)),
                    (taps, o, pixels),
                    false,
                    false,
                );
                col2im(&dims, dcols, dx);
            },
        );
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{assert_close, values};
    use crate::model::ops::with_burn_ops;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// The convolution, its input gradient and its weight gradient by their definitions, in f64:
    /// `y[n,o,p,q] = Σ x[n,c,p+i−ph,q+j−pw] · w[o,c,i,j]`.
    fn naive(
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        [b, c, h, wd, o]: [usize; 5],
        [kh, kw]: [usize; 2],
        [ph, pw]: [usize; 2],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (oh, ow) = (h + 2 * ph + 1 - kh, wd + 2 * pw + 1 - kw);
        let mut y = vec![0.0f64; b * o * oh * ow];
        let mut dx = vec![0.0f64; b * c * h * wd];
        let mut dw = vec![0.0f64; o * c * kh * kw];
        for n in 0..b {
            for oc in 0..o {
                for p in 0..oh {
                    for q in 0..ow {
                        let out = ((n * o + oc) * oh + p) * ow + q;
                        for ic in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let (iy, ix) = (p + i, q + j);
                                    if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                        continue;
                                    }
                                    let at = ((n * c + ic) * h + iy - ph) * wd + ix - pw;
                                    let k = ((oc * c + ic) * kh + i) * kw + j;
                                    y[out] += x[at] as f64 * w[k] as f64;
                                    dx[at] += dy[out] as f64 * w[k] as f64;
                                    dw[k] += dy[out] as f64 * x[at] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        (f(y), f(dx), f(dw))
    }

    /// The op and burn's `conv2d` give the same output and the same gradients for the input and
    /// the weights: odd sizes, one image, kernels 1, 3 and 5 (with and without padding, and a
    /// non-square one), and a batch large enough to spread over the threads.
    #[test]
    fn op_matches_burn_conv_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(31);
        let cases = [
            // (batch, c_in, c_out, h, w, kernel, padding)
            (2, 3, 4, 7, 5, [3, 3], PaddingConfig2d::Same),
            (1, 1, 1, 1, 1, [1, 1], PaddingConfig2d::Valid),
            (3, 2, 5, 6, 9, [5, 5], PaddingConfig2d::Same),
            (2, 3, 2, 6, 6, [3, 3], PaddingConfig2d::Valid),
            (1, 2, 3, 5, 7, [3, 1], PaddingConfig2d::Same),
            (16, 16, 32, 16, 16, [3, 3], PaddingConfig2d::Same),
        ];
        for (b, c, o, h, w, kernel, padding) in cases {
            let what = format!("B={b} C={c} O={o} {h}×{w} kernel {kernel:?} {padding:?}");
            let conv = Conv2dConfig::new([c, o], kernel)
                .with_padding(padding)
                .with_bias(false)
                .init(&device);
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let padding = supports(&conv, &x).unwrap_or_else(|| panic!("{what}"));
            let out = Dims {
                batch: b,
                channels: c,
                height: h,
                width: w,
                out_channels: o,
                kernel,
                padding,
            }
            .out();
            let dy = Tensor::<4>::random([b, o, out[0], out[1]], Distribution::Default, &device);
            let run = || {
                let x = x.clone().require_grad();
                let y = forward(&conv, x.clone());
                let grads = (y.clone() * dy.clone()).sum().backward();
                (
                    values(y),
                    values(x.grad(&grads).unwrap()),
                    values(conv.weight.val().grad(&grads).unwrap()),
                )
            };
            let (y, dx, dw) = run();
            let (want_y, want_dx, want_dw) = naive(
                &values(x.clone()),
                &values(conv.weight.val()),
                &values(dy.clone()),
                [b, c, h, w, o],
                kernel,
                padding,
            );
            assert_close(&format!("{what} y vs naive"), &y, &want_y, 1e-5);
            assert_close(&format!("{what} dx vs naive"), &dx, &want_dx, 1e-4);
            assert_close(&format!("{what} dW vs naive"), &dw, &want_dw, 1e-4);
            let (burn_y, burn_dx, burn_dw) = with_burn_ops(run);
            assert_close(&format!("{what} y vs burn"), &y, &burn_y, 1e-5);
            assert_close(&format!("{what} dx vs burn"), &dx, &burn_dx, 1e-4);
            assert_close(&format!("{what} dW vs burn"), &dw, &burn_dw, 1e-4);

            let inner = forward(&conv.valid(), x.clone().inner());
            assert_close(&format!("{what} no autodiff"), &values(inner), &y, 1e-6);
        }
    }

    /// Strides, dilations, groups, a bias and uneven padding keep burn's `conv2d`.
    #[test]
    fn other_convolutions_keep_burn_conv() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 4, 6, 6], &device);
        let base = || Conv2dConfig::new([4, 4], [3, 3]).with_bias(false);
        assert!(supports(&base().init(&device), &x).is_some());
        assert!(supports(&base().with_stride([2, 2]).init(&device), &x).is_none());
        assert!(supports(&base().with_dilation([2, 2]).init(&device), &x).is_none());
        assert!(supports(&base().with_groups(2).init(&device), &x).is_none());
        assert!(supports(&base().with_bias(true).init(&device), &x).is_none());
        let even = Conv2dConfig::new([4, 4], [2, 2])
            .with_bias(false)
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        assert!(supports(&even, &x).is_none());
    }
}
