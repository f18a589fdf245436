//! The CPU fast path of the small CNN's inference forward pass ([`super::encoder::SmallCnn`]):
//! every block's convolution as im2col rows times a packed matrix ([`super::packed::Weights`])
//! with the batch norm (running statistics) folded into its weights and shift, then ReLU and the
//! 2×2 max-pool in one pass, and the adaptive average pool to the `grid × grid` feature, on
//! channels-last `f32` buffers that each thread reuses from image to image.
//!
//! Why: through burn's ops a batch of 32 `shapes` images took most of a greedy captioning batch
//! (each op a pass over the whole batch's activations, with fresh allocations: about 70% of the
//! time of `bench train`'s greedy row on a loaded machine, the decoder the rest). Here an image's
//! activations stay in the core's cache from the first convolution to its feature, and the batch
//! is split over rayon's threads by image (no hand-off inside a forward pass).
//!
//! The features match burn's forward to rounding (the products sum in another order, and the
//! folded batch norm rounds once where burn's rounds twice): the tests check both agree.

use burn::nn::PaddingConfig2d;
use burn::tensor::DType;
use rayon::prelude::*;

use super::encoder::{ConvBlock, SmallCnn};
use super::fast_decode::floats;
use super::packed::Weights;
use crate::error::{Error, Result};

/// One block: 3×3 convolution (padding 1) with the batch norm folded in, ReLU, 2×2 max-pool.
#[derive(Debug, Clone)]
struct Block {
    c_in: usize,
    c_out: usize,
    /// `[9 c_in, c_out]`: row `(dy · 3 + dx) · c_in + c` is the weight of input channel `c` at
    /// offset `(dy − 1, dx − 1)`, times the batch norm's scale `γ / √(var + ε)`.
    w: Weights,
    /// `[c_out]`: `β − mean · scale`.
    shift: Vec<f32>,
}

/// The small CNN's inference forward pass on the CPU.
#[derive(Debug, Clone)]
pub struct FastCnn {
    blocks: Vec<Block>,
    grid: usize,
}

/// Per-thread buffers, grown as needed and reused from image to image.
#[derive(Default)]
struct Scratch {
    /// the current map, channels-last `[h · w, c]`
    x: Vec<f32>,
    /// im2col rows `[h · w, 9 c]`
    cols: Vec<f32>,
    /// a convolution's output `[h · w, c_out]`
    y: Vec<f32>,
}

impl FastCnn {
    /// The fast path for `cnn`, or `None` when its layers are not the ones the small CNN builds
    /// (3×3 convolutions at stride 1 with padding 1 and no bias, 2×2 max-pools, `f32` weights):
    /// such a model keeps burn's forward.
    pub fn new(cnn: &SmallCnn) -> Result<Option<Self>> {
        let mut blocks = Vec::with_capacity(cnn.blocks.len());
        let mut c_in = 3;
        for block in &cnn.blocks {
            let Some(b) = fold(block, c_in)? else {
                return Ok(None);
            };
            c_in = b.c_out;
            blocks.push(b);
        }
        let [gh, gw] = cnn.pool.output_size;
        if gh != gw || gh == 0 {
            return Ok(None);
        }
        Ok(Some(Self { blocks, grid: gh }))
    }

    /// Length of a feature: the last block's channels × grid².
    pub fn feature_dim(&self) -> usize {
        self.blocks.last().map_or(3, |b| b.c_out) * self.grid * self.grid
    }

    /// Features `[B, F]` (row-major) of `images` `[B, 3, h, w]` (row-major, as the model's input
    /// tensor holds them), the batch split over rayon's threads by image.
    pub fn forward(&self, images: &[f32], h: usize, w: usize) -> Result<Vec<f32>> {
        let per = 3 * h * w;
        if per == 0 || !images.len().is_multiple_of(per) {
            return Err(Error::Invalid(format!(
                "{} image values are not a whole number of 3×{h}×{w} images",
                images.len()
            )));
        }
        let (mut mh, mut mw) = (h, w);
        for _ in &self.blocks {
            (mh, mw) = (mh / 2, mw / 2);
        }
        if mh == 0 || mw == 0 {
            return Err(Error::Invalid(format!(
                "{h}×{w} images are too small for {} pooling blocks",
                self.blocks.len()
            )));
        }
        let batch = images.len() / per;
        let f = self.feature_dim();
        let mut out = vec![0.0f32; batch * f];
        let threads = rayon::current_num_threads().clamp(1, batch.max(1));
        let chunk = batch.div_ceil(threads);
        let run = |(out, images): (&mut [f32], &[f32])| {
            let mut s = Scratch::default();
            for (o, px) in out.chunks_exact_mut(f).zip(images.chunks_exact(per)) {
                self.image(px, h, w, o, &mut s);
            }
        };
        if threads < 2 {
            run((&mut out, images));
        } else {
            out.par_chunks_mut(chunk * f)
                .zip(images.par_chunks(chunk * per))
                .for_each(run);
        }
        Ok(out)
    }

    /// One image `[3, h, w]` → its feature (`out`, channel-major as burn's flatten).
    fn image(&self, px: &[f32], h: usize, w: usize, out: &mut [f32], s: &mut Scratch) {
        let hw = h * w;
        s.x.resize(hw * 3, 0.0);
        for (p, x) in s.x.chunks_exact_mut(3).enumerate() {
            for (c, x) in x.iter_mut().enumerate() {
                *x = px[c * hw + p];
            }
        }
        let (mut h, mut w) = (h, w);
        for b in &self.blocks {
            im2col(&s.x, h, w, b.c_in, &mut s.cols);
            s.y.resize(h * w * b.c_out, 0.0);
            for y in s.y.chunks_exact_mut(b.c_out) {
                y.copy_from_slice(&b.shift);
            }
            b.w.mul_acc_serial(&mut s.y, &s.cols, h * w);
            relu_max_pool(&s.y, h, w, b.c_out, &mut s.x);
            (h, w) = (h / 2, w / 2);
        }
        let c = self.blocks.last().map_or(3, |b| b.c_out);
        adaptive_avg_pool(&s.x, h, w, c, self.grid, out);
    }
}

/// The fast block of `block` (whose input has `c_in` channels), or `None` when it is not a
/// 3×3 / padding 1 / stride 1 convolution without bias and a 2×2 max-pool on `f32` weights.
fn fold(block: &ConvBlock, c_in: usize) -> Result<Option<Block>> {
    let conv = &block.conv;
    let pool = &block.pool;
    let norm = &block.norm;
    let padded = matches!(conv.padding, PaddingConfig2d::Same)
        || matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1));
    let plain = conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.bias.is_none()
        && padded
        && pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(pool.padding, PaddingConfig2d::Valid)
        && conv.weight.val().dtype() == DType::F32
        && norm.gamma.val().dtype() == DType::F32;
    let [c_out, wc, _, _] = conv.weight.dims();
    if !plain || wc != c_in {
        return Ok(None);
    }
    let weight = floats(conv.weight.val(), "conv.weight")?;
    let gamma = floats(norm.gamma.val(), "norm.gamma")?;
    let beta = floats(norm.beta.val(), "norm.beta")?;
    let mean = floats(norm.running_mean.value(), "norm.running_mean")?;
    let var = floats(norm.running_var.value(), "norm.running_var")?;
    if [&gamma, &beta, &mean, &var]
        .iter()
        .any(|v| v.len() != c_out)
    {
        return Err(Error::Internal(format!(
            "a batch norm of a {c_out}-channel convolution has statistics of another length"
        )));
    }
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + norm.epsilon as f32).sqrt())
        .collect();
    let shift = (0..c_out).map(|o| beta[o] - mean[o] * scale[o]).collect();
    // [O, C, 3, 3] → [(dy · 3 + dx) · C + c, O]
    let mut packed = vec![0.0f32; 9 * c_in * c_out];
    for o in 0..c_out {
        for c in 0..c_in {
            for t in 0..9 {
                packed[(t * c_in + c) * c_out + o] = weight[(o * c_in + c) * 9 + t] * scale[o];
            }
        }
    }
    Ok(Some(Block {
        c_in,
        c_out,
        w: Weights::new(packed, (9 * c_in, c_out), false),
        shift,
    }))
}

/// `cols[p, (dy · 3 + dx) · c + ch] = x[p + (dy − 1, dx − 1), ch]`, zero outside the map.
fn im2col(x: &[f32], h: usize, w: usize, c: usize, cols: &mut Vec<f32>) {
    let row = 9 * c;
    cols.clear();
    cols.resize(h * w * row, 0.0);
    for (p, dst) in cols.chunks_exact_mut(row).enumerate() {
        let (py, px) = (p / w, p % w);
        for dy in 0..3 {
            let Some(y) = (py + dy).checked_sub(1).filter(|&y| y < h) else {
                continue;
            };
            for dx in 0..3 {
                let Some(xx) = (px + dx).checked_sub(1).filter(|&xx| xx < w) else {
                    continue;
                };
                let src = (y * w + xx) * c;
                let at = (dy * 3 + dx) * c;
                dst[at..at + c].copy_from_slice(&x[src..src + c]);
            }
        }
    }
}

/// `out[(h/2) · (w/2), c]` = the 2×2 maxima (floor: a last odd row or column is dropped) of
/// `max(y, 0)`.
fn relu_max_pool(y: &[f32], h: usize, w: usize, c: usize, out: &mut Vec<f32>) {
    let (oh, ow) = (h / 2, w / 2);
    out.clear();
    out.resize(oh * ow * c, 0.0);
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out[(oy * ow + ox) * c..(oy * ow + ox + 1) * c];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let at = ((2 * oy + dy) * w + 2 * ox + dx) * c;
                for (o, &v) in o.iter_mut().zip(&y[at..at + c]) {
                    // `out` starts at 0: ReLU and the max in one
                    *o = o.max(v);
                }
            }
        }
    }
}

/// burn's adaptive average pool of `x` `[h · w, c]` to `g × g` cells (cell `i` spans
/// `⌊i·h/g⌋..⌈(i+1)·h/g⌉`), written channel-major into `out` `[c · g · g]`.
fn adaptive_avg_pool(x: &[f32], h: usize, w: usize, c: usize, g: usize, out: &mut [f32]) {
    for gy in 0..g {
        let (y0, y1) = (gy * h / g, ((gy + 1) * h).div_ceil(g));
        for gx in 0..g {
            let (x0, x1) = (gx * w / g, ((gx + 1) * w).div_ceil(g));
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            for ch in 0..c {
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    for xx in x0..x1 {
                        sum += x[(y * w + xx) * c + ch];
                    }
                }
                out[ch * g * g + gy * g + gx] = sum / n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::encoder::SmallCnnConfig;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// The fast forward gives burn's inference features (trained-looking batch norm statistics,
    /// odd map sizes, several batch sizes), to rounding, and a batch's features are its images'.
    #[test]
    fn features_match_burns_forward() {
        let device = Device::flex();
        device.seed(5);
        for (config, side) in [
            (
                SmallCnnConfig::new()
                    .with_width(4)
                    .with_depth(3)
                    .with_grid(2),
                20,
            ),
            (
                SmallCnnConfig::new()
                    .with_width(8)
                    .with_depth(2)
                    .with_grid(3),
                23,
            ),
        ] {
            let mut cnn = config.init(&device);
            for block in &mut cnn.blocks {
                let c = block.norm.gamma.dims()[0];
                let r = |lo, hi| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device);
                block.norm.running_mean = burn::module::RunningState::new(r(-0.5, 0.5));
                block.norm.running_var = burn::module::RunningState::new(r(0.5, 2.0));
                block.norm.gamma = burn::module::Param::from_tensor(r(0.5, 1.5));
                block.norm.beta = burn::module::Param::from_tensor(r(-0.3, 0.3));
            }
            let fast = FastCnn::new(&cnn)
                .unwrap()
                .expect("the small CNN has a fast path");
            assert_eq!(fast.feature_dim(), config.feature_dim());
            let images =
                Tensor::<4>::random([5, 3, side, side], Distribution::Normal(0.0, 1.0), &device);
            let want = cnn
                .forward(images.clone())
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let px = images.into_data().try_into_vec::<f32>().unwrap();
            let got = fast.forward(&px, side, side).unwrap();
            assert_eq!(got.len(), want.len());
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "[{k}] {g} vs {w}");
            }
            let per = 3 * side * side;
            let f = fast.feature_dim();
            for i in [0, 4] {
                let one = fast
                    .forward(&px[i * per..(i + 1) * per], side, side)
                    .unwrap();
                assert_eq!(one, got[i * f..(i + 1) * f], "image {i}");
            }
            assert!(fast.forward(&px[..per - 1], side, side).is_err());
            assert!(fast.forward(&px[..12], 2, 2).is_err(), "too small to pool");
        }
    }
}
