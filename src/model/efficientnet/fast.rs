//! The CPU fast path for EfficientNet-Lite's features: the frozen network's weights copied once
//! into plain `f32` buffers with batch norm folded into the convolutions, and the forward pass run
//! channels-last (`[pixels, channels]`) on buffers reused from image to image.
//!
//! Why: through burn's ops (on `flex`) each of the network's ~130 layers is a separate pass over
//! memory with a fresh allocation — convolution, then batch norm, then ReLU6 — and the 1×1
//! convolutions multiply `[channels, pixels]` planes. Measured op by op, batch norm and ReLU6 alone
//! took a fifth to a quarter of the time. Here:
//! - batch norm is folded at load: `w' = w·γ/√(σ² + ε)` per output channel and
//!   `b' = β − μ·γ/√(σ² + ε)`, so every convolution ends in one bias;
//! - each 1×1 convolution is one `gemm` product `[pixels, in] · [in, out]` into a buffer pre-filled
//!   with the bias, then ReLU6 in place;
//! - each depthwise convolution is a direct loop over pixels and channels with bias and ReLU6 in
//!   its last step (see [`super::kernels`]);
//! - the stem is an im2col into `[pixels, 27]` and one product.
//!
//! Images of a batch are spread over rayon's threads (each with its own buffers); a single image
//! spreads its products and depthwise rows instead.
//!
//! This is inference only: training (and fine-tuning through burn's autodiff) uses
//! [`EfficientNet::forward`], which is left as it is. The tests check both give the same features.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use std::sync::Mutex;

use burn::prelude::*;
use rayon::prelude::*;

use super::EfficientNet;
use super::kernels::{DepthwiseShape, add, depthwise_relu6, fill_rows, relu6};
use crate::error::{Error, Result};
use crate::model::gemm::matmul;
use crate::model::pooling::Pooling;

/// A 1×1 convolution with batch norm folded in: `[in, out]` row-major, and a bias of `out`.
#[derive(Debug, Clone)]
struct Pointwise {
    c_in: usize,
    c_out: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Pointwise {
    /// `out[pixels, c_out] = x[pixels, c_in] · W + b`, then ReLU6 when `relu`.
    fn forward(&self, x: &[f32], pixels: usize, out: &mut [f32], relu: bool, parallel: bool) {
        let out = &mut out[..pixels * self.c_out];
        fill_rows(out, &self.bias);
        matmul(
            out,
            &x[..pixels * self.c_in],
            &self.weight,
            (pixels, self.c_in, self.c_out),
            true,
            parallel,
        );
        if relu {
            relu6(out);
        }
    }
}

/// A depthwise convolution with batch norm folded in: `[k, k, c]` weights, a bias of `c`.
#[derive(Debug, Clone)]
struct Depthwise {
    c: usize,
    k: usize,
    stride: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// TensorFlow's "SAME" padding along one side: (output size, padding before).
fn same(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + k).saturating_sub(size);
    (out, total / 2)
}

impl Depthwise {
    /// `x` `[h, w, c]` → `out` `[h', w', c]` (ReLU6 applied); returns `(h', w')`.
    fn forward(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        out: &mut [f32],
        parallel: bool,
    ) -> (usize, usize) {
        let (out_h, pad_top) = same(h, self.k, self.stride);
        let (out_w, pad_left) = same(w, self.k, self.stride);
        let shape = DepthwiseShape {
            h,
            w,
            c: self.c,
            k: self.k,
            stride: self.stride,
            pad_top,
            pad_left,
            out_w,
        };
        let row = out_w * self.c;
        let out = &mut out[..out_h * row];
        if parallel && out_h > 1 {
            let per_task = out_h.div_ceil(rayon::current_num_threads().max(1) * 2);
            out.par_chunks_mut(per_task * row)
                .enumerate()
                .for_each(|(i, chunk)| {
                    let first = i * per_task;
                    let rows = first..first + chunk.len() / row;
                    depthwise_relu6(&shape, x, &self.weight, &self.bias, rows, chunk);
                });
        } else {
            depthwise_relu6(&shape, x, &self.weight, &self.bias, 0..out_h, out);
        }
        (out_h, out_w)
    }
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    skip: bool,
}

/// EfficientNet-Lite's feature extractor, ready to run on the CPU (see the module docs).
#[derive(Debug)]
pub struct FastEfficientNet {
    /// The stem: `[3·3·3, stem]`, rows in (kh, kw, channel) order.
    stem: Pointwise,
    stem_k: usize,
    stem_stride: usize,
    blocks: Vec<Block>,
    head: Pointwise,
    /// Buffers of earlier calls, kept for the next ones: fresh ones cost page faults on every
    /// image (tens of megabytes at 224×224).
    spare: Mutex<Vec<Scratch>>,
}

impl Clone for FastEfficientNet {
    fn clone(&self) -> Self {
        Self {
            stem: self.stem.clone(),
            stem_k: self.stem_k,
            stem_stride: self.stem_stride,
            blocks: self.blocks.clone(),
            head: self.head.clone(),
            spare: Mutex::new(Vec::new()),
        }
    }
}

fn floats<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|error| Error::Backend {
            what: format!("the EfficientNet weight {name}"),
            error,
        })
}

/// A convolution's weights `[out, in/groups, k, k]` and batch norm, folded: the weights scaled
/// per output channel (same layout) and the bias.
fn fold(conv: &Conv2d, bn: &BatchNorm, name: &str) -> Result<(Vec<f32>, Vec<f32>, [usize; 4])> {
    let dims = conv.weight.dims();
    let mut weight = floats(conv.weight.val(), &format!("{name} weight"))?;
    let gamma = floats(bn.gamma.val(), &format!("{name} batch-norm gamma"))?;
    let beta = floats(bn.beta.val(), &format!("{name} batch-norm beta"))?;
    let mean = floats(bn.running_mean.value(), &format!("{name} batch-norm mean"))?;
    let var = floats(
        bn.running_var.value(),
        &format!("{name} batch-norm variance"),
    )?;
    let conv_bias = match &conv.bias {
        Some(b) => Some(floats(b.val(), &format!("{name} bias"))?),
        None => None,
    };
    let c_out = dims[0];
    if [gamma.len(), beta.len(), mean.len(), var.len()] != [c_out; 4] {
        return Err(Error::Internal(format!(
            "{name}: batch norm of {} channels after a convolution of {c_out}",
            gamma.len()
        )));
    }
    let per_out = weight.len() / c_out;
    let mut bias = Vec::with_capacity(c_out);
    for o in 0..c_out {
        // In f64, as burn computes (x − μ)/√(σ² + ε)·γ + β in f32 from the same values.
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + bn.epsilon).sqrt();
        for v in &mut weight[o * per_out..(o + 1) * per_out] {
            *v = (f64::from(*v) * scale) as f32;
        }
        let b = conv_bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
        bias.push(((b - f64::from(mean[o])) * scale + f64::from(beta[o])) as f32);
    }
    Ok((weight, bias, dims))
}

/// A 1×1 convolution's folded weights, transposed to `[in, out]`.
fn pointwise(conv: &Conv2d, bn: &BatchNorm, name: &str) -> Result<Pointwise> {
    let (weight, bias, [c_out, c_in, kh, kw]) = fold(conv, bn, name)?;
    if (kh, kw) != (1, 1) || conv.groups != 1 || conv.stride != [1, 1] {
        return Err(Error::Internal(format!("{name}: not a 1×1 convolution")));
    }
    let mut t = vec![0.0; weight.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            t[i * c_out + o] = weight[o * c_in + i];
        }
    }
    Ok(Pointwise {
        c_in,
        c_out,
        weight: t,
        bias,
    })
}

impl FastEfficientNet {
    /// Copies the network's weights (any precision; held in `f32`), batch norm folded in.
    pub fn new(net: &EfficientNet) -> Result<Self> {
        let (stem_w, stem_b, [stem, c_in, k, _]) = fold(&net.conv_stem, &net.bn0, "conv_stem")?;
        // [out, in, kh, kw] → [(kh, kw, in), out]
        let mut weight = vec![0.0; stem_w.len()];
        for o in 0..stem {
            for i in 0..c_in {
                for kh in 0..k {
                    for kw in 0..k {
                        weight[((kh * k + kw) * c_in + i) * stem + o] =
                            stem_w[((o * c_in + i) * k + kh) * k + kw];
                    }
                }
            }
        }
        let stem_conv = Pointwise {
            c_in: k * k * c_in,
            c_out: stem,
            weight,
            bias: stem_b,
        };
        let mut blocks = Vec::with_capacity(net.blocks.len());
        for (i, b) in net.blocks.iter().enumerate() {
            let name = |part: &str| format!("blocks.{i}.{part}");
            let expand = match (&b.expand_conv, &b.bn0) {
                (Some(conv), Some(bn)) => Some(pointwise(conv, bn, &name("expand_conv"))?),
                _ => None,
            };
            let (dw, dw_b, [c, _, k, _]) =
                fold(&b.depthwise_conv, &b.bn1, &name("depthwise_conv"))?;
            if b.depthwise_conv.groups != c {
                return Err(Error::Internal(format!(
                    "{}: not a depthwise convolution",
                    name("depthwise_conv")
                )));
            }
            // [c, 1, kh, kw] → [kh, kw, c]
            let mut weight = vec![0.0; dw.len()];
            for ch in 0..c {
                for t in 0..k * k {
                    weight[t * c + ch] = dw[ch * k * k + t];
                }
            }
            blocks.push(Block {
                expand,
                depthwise: Depthwise {
                    c,
                    k,
                    stride: b.depthwise_conv.stride[0],
                    weight,
                    bias: dw_b,
                },
                project: pointwise(&b.project_conv, &b.bn2, &name("project_conv"))?,
                skip: b.skip,
            });
        }
        Ok(Self {
            stem: stem_conv,
            stem_k: k,
            stem_stride: net.conv_stem.stride[0],
            blocks,
            head: pointwise(&net.conv_head, &net.bn1, "conv_head")?,
            spare: Mutex::new(Vec::new()),
        })
    }

    /// Length of a feature vector.
    pub fn feature_dim(&self) -> usize {
        self.head.c_out
    }

    /// Preprocessed images `[B, 3, H, W]` → features `[B, head]` (what [`EfficientNet::forward`]
    /// gives), on the images' device.
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        self.forward_pooled(images, Pooling::Mean)
    }

    /// Preprocessed images `[B, 3, H, W]` → the head's map pooled by `pooling`,
    /// `[B, pooling.dim(head)]`, on the images' device.
    pub fn forward_pooled(&self, images: Tensor<4>, pooling: Pooling) -> Result<Tensor<2>> {
        let [b, c, h, w] = images.dims();
        let device = images.device();
        let pixels = floats(images, "input images")?;
        let features = self.features(&pixels, [b, c, h, w], pooling)?;
        Ok(Tensor::<1>::from_floats(features.as_slice(), &device)
            .reshape([b, pooling.dim(self.feature_dim())]))
    }

    /// Preprocessed images, `[B, 3, H, W]` row-major → features pooled by `pooling`,
    /// `[B, pooling.dim(head)]` row-major.
    pub fn features(
        &self,
        images: &[f32],
        [b, c, h, w]: [usize; 4],
        pooling: Pooling,
    ) -> Result<Vec<f32>> {
        if c * self.stem_k * self.stem_k != self.stem.c_in || images.len() != b * c * h * w {
            return Err(Error::Invalid(format!(
                "EfficientNet input: {} values for [{b}, {c}, {h}, {w}] images; the network takes {} channels",
                images.len(),
                self.stem.c_in / (self.stem_k * self.stem_k)
            )));
        }
        let dim = pooling.dim(self.feature_dim());
        let mut out = vec![0.0; b * dim];
        if b == 0 {
            return Ok(out);
        }
        let image = c * h * w;
        let workers = b.min(rayon::current_num_threads().max(1));
        if workers <= 1 {
            let mut scratch = self.scratch(h, w);
            for (x, f) in images.chunks_exact(image).zip(out.chunks_exact_mut(dim)) {
                self.one(x, [c, h, w], &mut scratch, f, pooling, true);
            }
            self.give_back(scratch);
        } else {
            // Contiguous runs of images, one per worker, each with its own buffers.
            let per = b.div_ceil(workers);
            images
                .par_chunks(per * image)
                .zip(out.par_chunks_mut(per * dim))
                .for_each(|(xs, fs)| {
                    let mut scratch = self.scratch(h, w);
                    for (x, f) in xs.chunks_exact(image).zip(fs.chunks_exact_mut(dim)) {
                        self.one(x, [c, h, w], &mut scratch, f, pooling, false);
                    }
                    self.give_back(scratch);
                });
        }
        Ok(out)
    }

    /// Buffers for `h × w` images: a kept set of that size, or new ones.
    fn scratch(&self, h: usize, w: usize) -> Scratch {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        match spare.iter().position(|s| s.size == (h, w)) {
            Some(i) => spare.swap_remove(i),
            None => Scratch::new(self, h, w),
        }
    }

    /// Keeps buffers for later calls (as many sets as there are threads).
    fn give_back(&self, scratch: Scratch) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.retain(|s| s.size == scratch.size);
        if spare.len() < rayon::current_num_threads().max(1) {
            spare.push(scratch);
        }
    }

    /// One image `[c, h, w]` → its feature (`out`, `pooling.dim(head)` values).
    fn one(
        &self,
        x: &[f32],
        [c, h, w]: [usize; 3],
        s: &mut Scratch,
        out: &mut [f32],
        pooling: Pooling,
        parallel: bool,
    ) {
        // Stem: im2col of the NCHW image into [pixels, (kh, kw, c)], then one product.
        let k = self.stem_k;
        let (mut hh, pad_top) = same(h, k, self.stem_stride);
        let (mut ww, pad_left) = same(w, k, self.stem_stride);
        let cols = &mut s.cols[..hh * ww * self.stem.c_in];
        for oh in 0..hh {
            for ow in 0..ww {
                let dst = &mut cols[(oh * ww + ow) * self.stem.c_in..][..self.stem.c_in];
                for kh in 0..k {
                    let ih = (oh * self.stem_stride + kh) as isize - pad_top as isize;
                    for kw in 0..k {
                        let iw = (ow * self.stem_stride + kw) as isize - pad_left as isize;
                        let inside = (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw);
                        for ch in 0..c {
                            dst[(kh * k + kw) * c + ch] = if inside {
                                x[(ch * h + ih as usize) * w + iw as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
        self.stem.forward(cols, hh * ww, &mut s.a, true, parallel);

        for block in &self.blocks {
            let pixels = hh * ww;
            let expanded: &[f32] = match &block.expand {
                Some(e) => {
                    e.forward(&s.a, pixels, &mut s.e, true, parallel);
                    &s.e
                }
                None => &s.a,
            };
            let (oh, ow) = block
                .depthwise
                .forward(expanded, hh, ww, &mut s.d, parallel);
            block
                .project
                .forward(&s.d, oh * ow, &mut s.p, false, parallel);
            if block.skip {
                let n = oh * ow * block.project.c_out;
                add(&mut s.p[..n], &s.a[..n]);
            }
            std::mem::swap(&mut s.a, &mut s.p);
            (hh, ww) = (oh, ow);
        }

        let pixels = hh * ww;
        self.head.forward(&s.a, pixels, &mut s.e, true, parallel);
        pooling.pool_cells(&s.e[..pixels * self.head.c_out], self.head.c_out, out);
    }
}

/// The buffers one image goes through, sized for the largest layer: `a` the block input (and
/// output, swapped with `p`), `e` the expansion, `d` the depthwise output, `cols` the stem's im2col.
#[derive(Debug)]
struct Scratch {
    /// The image size they are for.
    size: (usize, usize),
    a: Vec<f32>,
    e: Vec<f32>,
    d: Vec<f32>,
    p: Vec<f32>,
    cols: Vec<f32>,
}

impl Scratch {
    fn new(net: &FastEfficientNet, h: usize, w: usize) -> Self {
        let (mut hh, _) = same(h, net.stem_k, net.stem_stride);
        let (mut ww, _) = same(w, net.stem_k, net.stem_stride);
        let cols = hh * ww * net.stem.c_in;
        let mut largest = hh * ww * net.stem.c_out;
        for b in &net.blocks {
            largest = largest.max(hh * ww * b.depthwise.c);
            (hh, _) = same(hh, b.depthwise.k, b.depthwise.stride);
            (ww, _) = same(ww, b.depthwise.k, b.depthwise.stride);
            largest = largest.max(hh * ww * b.depthwise.c.max(b.project.c_out));
        }
        largest = largest.max(hh * ww * net.head.c_out);
        Scratch {
            size: (h, w),
            a: vec![0.0; largest],
            e: vec![0.0; largest],
            d: vec![0.0; largest],
            p: vec![0.0; largest],
            cols: vec![0.0; cols],
        }
    }
}
