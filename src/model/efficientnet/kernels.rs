//! The loops of [`super::fast`]'s forward pass, on channels-last (`[pixels, channels]`) `f32`
//! buffers: the 1×1 products go to the `gemm` crate (the kernels burn's `flex` backend uses), the
//! depthwise convolution and the element-wise passes are written here.
//!
//! The element-wise loops use AVX2 and FMA through `std::arch` where the CPU has them (checked
//! once, at run time), and plain loops elsewhere. Written out rather than left to the compiler:
//! capsearch itself is built at `opt-level = 1` in the dev profile that `cargo run` uses, where
//! LLVM does not vectorise loops, while dependencies such as `gemm` are built at 3.

/// Whether the AVX2 + FMA loops can run on this CPU.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Every row of `dst` (`[rows, bias.len()]`) set to `bias`.
pub(super) fn fill_rows(dst: &mut [f32], bias: &[f32]) {
    for row in dst.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// `x` clamped to `[0, 6]` in place (ReLU6).
pub(super) fn relu6(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { avx::relu6(x) };
        return;
    }
    for v in x {
        *v = v.clamp(0.0, 6.0);
    }
}

/// `dst += src`, element by element (the residual connection).
pub(super) fn add(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the lengths are equal.
        unsafe { avx::add(dst, src) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// A depthwise convolution's shape: input `[h, w, c]`, a `k×k` kernel per channel, stride, and
/// the padding before the first row and column (TensorFlow's "SAME": the output is
/// `ceil(h / stride) × ceil(w / stride)`).
#[derive(Debug, Clone, Copy)]
pub(super) struct DepthwiseShape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_w: usize,
}

/// Output rows `rows` of a depthwise convolution with bias and ReLU6: `input` `[h, w, c]`,
/// `weights` `[k, k, c]`, `bias` `[c]`; `out` holds exactly those rows, `[rows.len(), out_w, c]`.
/// Taps that fall in the padding are left out (zero padding).
pub(super) fn depthwise_relu6(
    s: &DepthwiseShape,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    assert!(input.len() >= s.h * s.w * s.c);
    assert!(weights.len() >= s.k * s.k * s.c && bias.len() >= s.c);
    assert!(out.len() >= rows.len() * s.out_w * s.c);
    let vector_channels = if simd() { s.c / 8 * 8 } else { 0 };
    for (r, oh) in rows.enumerate() {
        let ih0 = (oh * s.stride) as isize - s.pad_top as isize;
        let kh_lo = (-ih0).max(0) as usize;
        let kh_hi = (s.h as isize - ih0).clamp(0, s.k as isize) as usize;
        for ow in 0..s.out_w {
            let iw0 = (ow * s.stride) as isize - s.pad_left as isize;
            let kw_lo = (-iw0).max(0) as usize;
            let kw_hi = (s.w as isize - iw0).clamp(0, s.k as isize) as usize;
            let taps = Taps {
                ih0,
                iw0,
                kh: kh_lo..kh_hi,
                kw: kw_lo..kw_hi,
            };
            let dst = &mut out[(r * s.out_w + ow) * s.c..][..s.c];
            #[cfg(target_arch = "x86_64")]
            if vector_channels > 0 {
                // SAFETY: AVX2 and FMA are there (`simd()`); the taps stay inside the input
                // (clipped above), channels `< vector_channels <= c`, and the asserts above bound
                // every slice.
                unsafe {
                    avx::depthwise_pixel(s, input, weights, bias, &taps, dst, vector_channels)
                };
            }
            for ch in vector_channels..s.c {
                let mut acc = bias[ch];
                for kh in taps.kh.clone() {
                    let ih = (ih0 + kh as isize) as usize;
                    for kw in taps.kw.clone() {
                        let iw = (iw0 + kw as isize) as usize;
                        acc +=
                            weights[(kh * s.k + kw) * s.c + ch] * input[(ih * s.w + iw) * s.c + ch];
                    }
                }
                dst[ch] = acc.clamp(0.0, 6.0);
            }
        }
    }
}

/// The kernel taps of one output pixel that fall inside the input.
struct Taps {
    ih0: isize,
    iw0: isize,
    kh: std::ops::Range<usize>,
    kw: std::ops::Range<usize>,
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{DepthwiseShape, Taps};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn relu6(x: &mut [f32]) {
        let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let n = x.len() / 8 * 8;
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= x.len().
            unsafe {
                let v = _mm256_loadu_ps(p.add(i));
                _mm256_storeu_ps(p.add(i), _mm256_min_ps(_mm256_max_ps(v, zero), six));
            }
            i += 8;
        }
        for v in &mut x[n..] {
            *v = v.clamp(0.0, 6.0);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add(dst: &mut [f32], src: &[f32]) {
        let n = dst.len().min(src.len()) / 8 * 8;
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both lengths.
            unsafe {
                let v = _mm256_add_ps(_mm256_loadu_ps(d.add(i)), _mm256_loadu_ps(s.add(i)));
                _mm256_storeu_ps(d.add(i), v);
            }
            i += 8;
        }
        for (d, s) in dst[n..].iter_mut().zip(&src[n..]) {
            *d += s;
        }
    }

    /// Channels `0..vector_channels` (a multiple of 8) of one output pixel, 32 at a time where
    /// they allow (four accumulators), then 8 at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn depthwise_pixel(
        s: &DepthwiseShape,
        input: &[f32],
        weights: &[f32],
        bias: &[f32],
        taps: &Taps,
        dst: &mut [f32],
        vector_channels: usize,
    ) {
        let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let (inp, wp, bp, dp) = (
            input.as_ptr(),
            weights.as_ptr(),
            bias.as_ptr(),
            dst.as_mut_ptr(),
        );
        let c = s.c;
        let mut cb = 0;
        // SAFETY (all blocks): the caller clipped the taps to the input and vector_channels <= c,
        // so every offset is below h·w·c (input), k·k·c (weights), c (bias, dst).
        while cb + 32 <= vector_channels {
            unsafe {
                let mut a0 = _mm256_loadu_ps(bp.add(cb));
                let mut a1 = _mm256_loadu_ps(bp.add(cb + 8));
                let mut a2 = _mm256_loadu_ps(bp.add(cb + 16));
                let mut a3 = _mm256_loadu_ps(bp.add(cb + 24));
                for kh in taps.kh.clone() {
                    let row = (taps.ih0 + kh as isize) as usize * s.w;
                    for kw in taps.kw.clone() {
                        let x = inp.add((row + (taps.iw0 + kw as isize) as usize) * c + cb);
                        let w = wp.add((kh * s.k + kw) * c + cb);
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_loadu_ps(x), a0);
                        a1 = _mm256_fmadd_ps(
                            _mm256_loadu_ps(w.add(8)),
                            _mm256_loadu_ps(x.add(8)),
                            a1,
                        );
                        a2 = _mm256_fmadd_ps(
                            _mm256_loadu_ps(w.add(16)),
                            _mm256_loadu_ps(x.add(16)),
                            a2,
                        );
                        a3 = _mm256_fmadd_ps(
                            _mm256_loadu_ps(w.add(24)),
                            _mm256_loadu_ps(x.add(24)),
                            a3,
                        );
                    }
                }
                _mm256_storeu_ps(dp.add(cb), _mm256_min_ps(_mm256_max_ps(a0, zero), six));
                _mm256_storeu_ps(dp.add(cb + 8), _mm256_min_ps(_mm256_max_ps(a1, zero), six));
                _mm256_storeu_ps(dp.add(cb + 16), _mm256_min_ps(_mm256_max_ps(a2, zero), six));
                _mm256_storeu_ps(dp.add(cb + 24), _mm256_min_ps(_mm256_max_ps(a3, zero), six));
            }
            cb += 32;
        }
        while cb + 8 <= vector_channels {
            unsafe {
                let mut a = _mm256_loadu_ps(bp.add(cb));
                for kh in taps.kh.clone() {
                    let row = (taps.ih0 + kh as isize) as usize * s.w;
                    for kw in taps.kw.clone() {
                        let x = inp.add((row + (taps.iw0 + kw as isize) as usize) * c + cb);
                        let w = wp.add((kh * s.k + kw) * c + cb);
                        a = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_loadu_ps(x), a);
                    }
                }
                _mm256_storeu_ps(dp.add(cb), _mm256_min_ps(_mm256_max_ps(a, zero), six));
            }
            cb += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_passes_match_plain_loops() {
        // 21 values: two vectors of 8 and a remainder of 5.
        let x: Vec<f32> = (0..21).map(|i| i as f32 * 0.7 - 4.0).collect();
        let mut y = x.clone();
        relu6(&mut y);
        for (a, b) in x.iter().zip(&y) {
            assert_eq!(a.clamp(0.0, 6.0), *b);
        }
        let mut z = x.clone();
        add(&mut z, &y);
        for i in 0..21 {
            assert_eq!(z[i], x[i] + y[i]);
        }
    }

    /// The depthwise loop against the definition, at channel counts that use the 32-wide, the
    /// 8-wide and the scalar channel loops, with strides 1 and 2 and odd sizes ("SAME" padding
    /// uneven on the two sides).
    #[test]
    fn depthwise_matches_the_definition() {
        for (c, k, stride, h, w) in [
            (45usize, 3usize, 1usize, 7usize, 6usize),
            (13, 5, 2, 9, 8),
            (3, 3, 2, 4, 5),
        ] {
            let input: Vec<f32> = (0..h * w * c)
                .map(|i| ((i * 7919) % 23) as f32 * 0.1 - 1.0)
                .collect();
            let weights: Vec<f32> = (0..k * k * c)
                .map(|i| ((i * 104729) % 17) as f32 * 0.1 - 0.8)
                .collect();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.05 - 0.3).collect();
            let out_h = h.div_ceil(stride);
            let out_w = w.div_ceil(stride);
            let pad = |size: usize, out: usize| ((out - 1) * stride + k).saturating_sub(size) / 2;
            let s = DepthwiseShape {
                h,
                w,
                c,
                k,
                stride,
                pad_top: pad(h, out_h),
                pad_left: pad(w, out_w),
                out_w,
            };
            let mut out = vec![f32::NAN; out_h * out_w * c];
            // In two calls, as the threads split the rows.
            let split = out_h / 2;
            let (top, bottom) = out.split_at_mut(split * out_w * c);
            depthwise_relu6(&s, &input, &weights, &bias, 0..split, top);
            depthwise_relu6(&s, &input, &weights, &bias, split..out_h, bottom);
            for oh in 0..out_h {
                for ow in 0..out_w {
                    for ch in 0..c {
                        let mut want = bias[ch];
                        for kh in 0..k {
                            for kw in 0..k {
                                let ih = (oh * stride + kh) as isize - s.pad_top as isize;
                                let iw = (ow * stride + kw) as isize - s.pad_left as isize;
                                if (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw) {
                                    let (ih, iw) = (ih as usize, iw as usize);
                                    want += weights[(kh * k + kw) * c + ch]
                                        * input[(ih * w + iw) * c + ch];
                                }
                            }
                        }
                        let got = out[(oh * out_w + ow) * c + ch];
                        let want = want.clamp(0.0, 6.0);
                        assert!(
                            (got - want).abs() <= 1e-5,
                            "c {c} k {k} s {stride}: [{oh}, {ow}, {ch}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
