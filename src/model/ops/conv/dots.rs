//! Every row of one matrix dotted with every row of another: the convolution's weight gradient
//! `dW = dY · colsᵀ`, whose rows of `dY` (an image's output channels) and of `cols` (its taps)
//! both lie along the pixels.
//!
//! Through `gemm` that product is a short, wide output (16–64 × 27–288) with a long inner
//! dimension read across both operands' rows, which `gemm` packs value by value into its panels;
//! at batch 64 it was the largest share of the convolution's time. Here four rows of one against
//! three of the other stay in twelve AVX registers along the pixels, reading each row straight
//! from memory.

/// `out[i · out_stride + j] += Σ_k a[i · a_stride + k] · b[j · b_stride + k]` for `i < a_rows`,
/// `j < b_rows`, `k < len`.
pub(super) fn add_row_dots(
    out: &mut [f32],
    out_stride: usize,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    len: usize,
) {
    let ((a, a_stride, a_rows), (b, b_stride, b_rows)) = (a, b);
    if a_rows == 0 || b_rows == 0 || len == 0 {
        return;
    }
    assert!(
        (a_rows - 1) * a_stride + len <= a.len()
            && (b_rows - 1) * b_stride + len <= b.len()
            && (a_rows - 1) * out_stride + b_rows <= out.len()
            && b_rows <= out_stride,
        "row dots: operands too short for {a_rows} × {b_rows} rows of {len}"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        let rows = Rows {
            a: a.as_ptr(),
            a_stride,
            b: b.as_ptr(),
            b_stride,
            len,
        };
        let out_ptr = out.as_mut_ptr();
        // SAFETY: the features are present; the assert bounds every row read and written.
        unsafe { x86::all_tiles(out_ptr, out_stride, rows, a_rows, b_rows) };
        return;
    }
    for i in 0..a_rows {
        let a = &a[i * a_stride..][..len];
        for j in 0..b_rows {
            let b = &b[j * b_stride..][..len];
            out[i * out_stride + j] += a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        }
    }
}

/// The operands' first rows and their layout, for the x86 kernels.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Rows {
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    len: usize,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Rows;
    use crate::model::simd::loadu;
    use std::arch::x86_64::*;

    /// Tiles of 4 × 3 rows, then the last rows of either one pair at a time.
    ///
    /// SAFETY: AVX2 and FMA are present; `rows` holds `a_rows` and `b_rows` rows of `len` at its
    /// strides, and `out` `a_rows` rows of `b_rows` values `out_stride` apart.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn all_tiles(
        out: *mut f32,
        out_stride: usize,
        rows: Rows,
        a_rows: usize,
        b_rows: usize,
    ) {
        let a = |i: usize| rows.a.wrapping_add(i * rows.a_stride);
        let b = |j: usize| rows.b.wrapping_add(j * rows.b_stride);
        let (i4, j3) = (a_rows / 4 * 4, b_rows / 3 * 3);
        // SAFETY: every tile and pair stays inside the rows and `out` (see the caller's bounds).
        unsafe {
            for i in (0..i4).step_by(4) {
                for j in (0..j3).step_by(3) {
                    let sums = tile_4x3(
                        [a(i), a(i + 1), a(i + 2), a(i + 3)],
                        [b(j), b(j + 1), b(j + 2)],
                        rows.len,
                    );
                    for (di, row) in sums.iter().enumerate() {
                        for (dj, sum) in row.iter().enumerate() {
                            *out.wrapping_add((i + di) * out_stride + j + dj) += sum;
                        }
                    }
                }
            }
            for i in 0..a_rows {
                let first = if i < i4 { j3 } else { 0 };
                for j in first..b_rows {
                    *out.wrapping_add(i * out_stride + j) += dot(a(i), b(j), rows.len);
                }
            }
        }
    }

    /// Four rows of `a` against three of `b` along `len`: twelve accumulators of eight lanes,
    /// the last `len % 8` values one by one. Named variables, not arrays: with the dev profile's
    /// checks on, arrays of accumulators were kept on the stack.
    ///
    /// SAFETY: AVX2 and FMA are present; each pointer starts `len` readable values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_4x3(a: [*const f32; 4], b: [*const f32; 3], len: usize) -> [[f32; 3]; 4] {
        let [a0, a1, a2, a3] = a;
        let [b0, b1, b2] = b;
        let z = _mm256_setzero_ps();
        let (mut s00, mut s01, mut s02, mut s10, mut s11, mut s12) = (z, z, z, z, z, z);
        let (mut s20, mut s21, mut s22, mut s30, mut s31, mut s32) = (z, z, z, z, z, z);
        let full = len / 8 * 8;
        let mut k = 0;
        // SAFETY: k + 8 ≤ full ≤ len, inside every row.
        unsafe {
            while k < full {
                let (v0, v1, v2) = (
                    loadu!(b0.wrapping_add(k)),
                    loadu!(b1.wrapping_add(k)),
                    loadu!(b2.wrapping_add(k)),
                );
                let u = loadu!(a0.wrapping_add(k));
                s00 = _mm256_fmadd_ps(u, v0, s00);
                s01 = _mm256_fmadd_ps(u, v1, s01);
                s02 = _mm256_fmadd_ps(u, v2, s02);
                let u = loadu!(a1.wrapping_add(k));
                s10 = _mm256_fmadd_ps(u, v0, s10);
                s11 = _mm256_fmadd_ps(u, v1, s11);
                s12 = _mm256_fmadd_ps(u, v2, s12);
                let u = loadu!(a2.wrapping_add(k));
                s20 = _mm256_fmadd_ps(u, v0, s20);
                s21 = _mm256_fmadd_ps(u, v1, s21);
                s22 = _mm256_fmadd_ps(u, v2, s22);
                let u = loadu!(a3.wrapping_add(k));
                s30 = _mm256_fmadd_ps(u, v0, s30);
                s31 = _mm256_fmadd_ps(u, v1, s31);
                s32 = _mm256_fmadd_ps(u, v2, s32);
                k += 8;
            }
        }
        let mut sums = [
            [
                horizontal_sum(s00),
                horizontal_sum(s01),
                horizontal_sum(s02),
            ],
            [
                horizontal_sum(s10),
                horizontal_sum(s11),
                horizontal_sum(s12),
            ],
            [
                horizontal_sum(s20),
                horizontal_sum(s21),
                horizontal_sum(s22),
            ],
            [
                horizontal_sum(s30),
                horizontal_sum(s31),
                horizontal_sum(s32),
            ],
        ];
        for (row, a) in sums.iter_mut().zip(a) {
            for (sum, b) in row.iter_mut().zip(b) {
                for k in full..len {
                    // SAFETY: k < len.
                    *sum += unsafe { *a.wrapping_add(k) * *b.wrapping_add(k) };
                }
            }
        }
        sums
    }

    /// One row of `a` against one of `b` along `len`.
    ///
    /// SAFETY: AVX2 and FMA are present; each pointer starts `len` readable values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(a: *const f32, b: *const f32, len: usize) -> f32 {
        let full = len / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        let mut k = 0;
        // SAFETY: inside both rows, as above.
        unsafe {
            while k < full {
                acc = _mm256_fmadd_ps(loadu!(a.wrapping_add(k)), loadu!(b.wrapping_add(k)), acc);
                k += 8;
            }
            let mut sum = horizontal_sum(acc);
            for k in full..len {
                sum += *a.wrapping_add(k) * *b.wrapping_add(k);
            }
            sum
        }
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain f64 sum, over sizes that leave every kind of edge: rows not a multiple of
    /// 4 or 3, lengths not a multiple of 8, strides wider than the rows, and an output that
    /// already holds values.
    #[test]
    fn row_dots_match_a_plain_sum() {
        for (a_rows, b_rows, len) in [(4, 3, 8), (16, 27, 1024), (5, 7, 13), (1, 1, 3), (9, 4, 70)]
        {
            let (a_stride, b_stride, out_stride) = (len + 5, len * 2 + 1, b_rows + 2);
            let value = |k: usize| ((k * 37 % 101) as f32 - 50.0) / 25.0;
            let a: Vec<f32> = (0..a_rows * a_stride).map(value).collect();
            let b: Vec<f32> = (0..b_rows * b_stride).map(|k| value(k + 7)).collect();
            let mut out = vec![1.5f32; a_rows * out_stride];
            add_row_dots(
                &mut out,
                out_stride,
                (&a, a_stride, a_rows),
                (&b, b_stride, b_rows),
                len,
            );
            for i in 0..a_rows {
                for j in 0..out_stride {
                    let got = out[i * out_stride + j];
                    let want = if j < b_rows {
                        1.5 + (0..len)
                            .map(|k| {
                                f64::from(a[i * a_stride + k]) * f64::from(b[j * b_stride + k])
                            })
                            .sum::<f64>()
                    } else {
                        1.5
                    };
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{a_rows}×{b_rows}×{len} [{i}, {j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
