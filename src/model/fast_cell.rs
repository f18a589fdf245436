//! The LSTM cell's nonlinearities for the CPU decoding fast path ([`super::fast_decode`]), eight
//! units at a time: from the gates `[i | f | o | g]` of one row, `c = σ(i)·tanh(g) + σ(f)·c_prev`
//! and `h = σ(o)·tanh(c)` (or `σ(o)·c` in the cell version without the second tanh); and the
//! same `σ` and `tanh` over a slice in place, for the training op's gates (`super::ops::lstm`).
//!
//! Why: through libm's `expf` and `tanhf`, one call per value, the cell took about as long as the
//! products of a batched step on the `shapes` model. Here `σ` and `tanh` come from one vector
//! `exp` (Cephes' polynomial, within 2 ulp of `expf` over the range a gate reaches), so the cell
//! is a few vector instructions per unit; the results stay within `2e-7` of libm's.

/// `c`, `h` (each `hs` values) from `gates` (`4 hs`: i, f, o, g) and `c_prev` (`None`: zero).
pub(crate) fn cell_row(
    gates: &[f32],
    c_prev: Option<&[f32]>,
    c: &mut [f32],
    h: &mut [f32],
    tanh_c: bool,
) {
    let hs = c.len();
    assert!(gates.len() == 4 * hs && h.len() == hs && c_prev.is_none_or(|p| p.len() == hs));
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        let whole = hs - hs % 8;
        // SAFETY: the features are present; the assert bounds every slice at `whole` ≤ hs.
        unsafe { x86::cell(gates, c_prev, c, h, whole, tanh_c) };
        j = whole;
    }
    for j in j..hs {
        let (i, f, o, g) = (
            gates[j],
            gates[hs + j],
            gates[2 * hs + j],
            gates[3 * hs + j],
        );
        let mut cj = sigmoid(i) * tanh(g);
        if let Some(p) = c_prev {
            cj += sigmoid(f) * p[j];
        }
        c[j] = cj;
        h[j] = sigmoid(o) * if tanh_c { tanh(cj) } else { cj };
    }
}

/// `σ` of every value, in place, eight at a time where AVX2 and FMA are present (the same values
/// as [`cell_row`]'s): the training op's gates (`super::ops::lstm`).
pub(crate) fn sigmoid_in_place(values: &mut [f32]) {
    map_in_place(values, Activation::Sigmoid);
}

/// `tanh` of every value, in place, as [`sigmoid_in_place`].
pub(crate) fn tanh_in_place(values: &mut [f32]) {
    map_in_place(values, Activation::Tanh);
}

/// `exp` of every value, in place, as [`sigmoid_in_place`] (Cephes' `expf`, inputs clamped to
/// `[-87.3, 88.3]`): the decoder fast path's softmax sums (`super::fast_decode`) and the training
/// loss's softmax (`super::ops::cross_entropy`).
pub(crate) fn exp_in_place(values: &mut [f32]) {
    map_in_place(values, Activation::Exp);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    Sigmoid,
    Tanh,
    Exp,
}

fn map_in_place(values: &mut [f32], f: Activation) {
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        j = values.len() - values.len() % 8;
        // SAFETY: the features are present; `j` ≤ the slice's length.
        unsafe { x86::map(values, j, f) };
    }
    for v in &mut values[j..] {
        *v = match f {
            Activation::Sigmoid => sigmoid(*v),
            Activation::Tanh => tanh(*v),
            Activation::Exp => exp(*v),
        };
    }
}

/// `exp(x)`, Cephes' `expf`: `2^n · p(r)` with `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`; `x` clamped to
/// the range where `2^n` is a normal float.
fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 − 2 / (1 + e^{2x})`.
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

const EXP_LO: f32 = -87.3;
const EXP_HI: f32 = 88.3;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial, highest degree first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The same formulas as the scalar ones, eight lanes at a time (and the same roundings: each
    //! `mul_add` is one FMA), so a unit's value does not depend on where it falls.
    use std::arch::x86_64::*;

    use super::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, P};

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(EXP_LO)),
            _mm256_set1_ps(EXP_HI),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(P[0]);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[1]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[2]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[3]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[4]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[5]));
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(bits))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        _mm256_div_ps(
            one,
            _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), x))),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn tanh(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let two = _mm256_set1_ps(2.0);
        let e = exp(_mm256_mul_ps(two, x));
        _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, e)))
    }

    /// Values `0..whole` (a multiple of 8) of [`super::map_in_place`].
    ///
    /// SAFETY: AVX2 and FMA are present; `whole` ≤ `values.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn map(values: &mut [f32], whole: usize, f: super::Activation) {
        let p = values.as_mut_ptr();
        let mut j = 0;
        // SAFETY (whole loop): j + 8 ≤ whole ≤ values.len().
        unsafe {
            while j < whole {
                let x = _mm256_loadu_ps(p.add(j));
                let y = match f {
                    super::Activation::Sigmoid => sigmoid(x),
                    super::Activation::Tanh => tanh(x),
                    super::Activation::Exp => exp(x),
                };
                _mm256_storeu_ps(p.add(j), y);
                j += 8;
            }
        }
    }

    /// Units `0..whole` (a multiple of 8) of [`super::cell_row`].
    ///
    /// SAFETY: AVX2 and FMA are present; the slices are as `cell_row` asserts and `whole` ≤ hs.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn cell(
        gates: &[f32],
        c_prev: Option<&[f32]>,
        c: &mut [f32],
        h: &mut [f32],
        whole: usize,
        tanh_c: bool,
    ) {
        let hs = c.len();
        let g = gates.as_ptr();
        let mut j = 0;
        // SAFETY (whole loop): j + 8 ≤ whole ≤ hs, inside every slice.
        unsafe {
            while j < whole {
                let i = _mm256_loadu_ps(g.add(j));
                let f = _mm256_loadu_ps(g.add(hs + j));
                let o = _mm256_loadu_ps(g.add(2 * hs + j));
                let gg = _mm256_loadu_ps(g.add(3 * hs + j));
                let mut cj = _mm256_mul_ps(sigmoid(i), tanh(gg));
                if let Some(p) = c_prev {
                    cj = _mm256_add_ps(
                        cj,
                        _mm256_mul_ps(sigmoid(f), _mm256_loadu_ps(p.as_ptr().add(j))),
                    );
                }
                _mm256_storeu_ps(c.as_mut_ptr().add(j), cj);
                let out = if tanh_c { tanh(cj) } else { cj };
                _mm256_storeu_ps(h.as_mut_ptr().add(j), _mm256_mul_ps(sigmoid(o), out));
                j += 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libm_cell(gates: &[f32], c_prev: Option<&[f32]>, tanh_c: bool) -> (Vec<f32>, Vec<f32>) {
        let hs = gates.len() / 4;
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let mut c = vec![0.0; hs];
        let mut h = vec![0.0; hs];
        for j in 0..hs {
            let mut cj = s(gates[j]) * gates[3 * hs + j].tanh();
            if let Some(p) = c_prev {
                cj += s(gates[hs + j]) * p[j];
            }
            c[j] = cj;
            h[j] = s(gates[2 * hs + j]) * if tanh_c { cj.tanh() } else { cj };
        }
        (c, h)
    }

    /// The in-place maps agree with libm to 1e-6 (`exp` relatively), vector lanes and scalar tail alike, and give
    /// [`cell_row`]'s formulas' values bit for bit.
    #[test]
    fn in_place_maps_match_libm_and_the_cell() {
        let xs: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 0.37).collect();
        let (mut s, mut t, mut e) = (xs.clone(), xs.clone(), xs.clone());
        sigmoid_in_place(&mut s);
        tanh_in_place(&mut t);
        exp_in_place(&mut e);
        for (k, &x) in xs.iter().enumerate() {
            assert!(
                (e[k] - x.exp()).abs() <= 3.0 * f32::EPSILON * x.exp(),
                "exp({x}) = {}",
                e[k]
            );
            assert_eq!(e[k].to_bits(), exp(x).to_bits(), "exp({x})");
            assert!(
                (s[k] - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "σ({x}) = {}",
                s[k]
            );
            assert!((t[k] - x.tanh()).abs() < 1e-6, "tanh({x}) = {}", t[k]);
            assert_eq!(s[k].to_bits(), sigmoid(x).to_bits(), "σ({x})");
            assert_eq!(t[k].to_bits(), tanh(x).to_bits(), "tanh({x})");
            let want = x.exp();
            assert!((e[k] - want).abs() <= 1e-6 * want, "exp({x}) = {}", e[k]);
            assert_eq!(e[k].to_bits(), exp(x).to_bits(), "exp({x})");
        }
    }

    /// The vector and scalar units agree with libm's `σ` and `tanh` to 1e-6 over gates from
    /// −100 to 100 (saturated, ordinary and near zero), with and without the previous cell, and a
    /// unit's value does not depend on whether the vector or the scalar code computed it.
    #[test]
    fn cell_matches_libm() {
        let hs = 203; // 25 vectors and a scalar tail of 3
        let gates: Vec<f32> = (0..4 * hs)
            .map(|i| {
                let t = i as f32 / (4 * hs) as f32;
                match i % 4 {
                    0 => (t - 0.5) * 200.0,
                    1 => (t - 0.5) * 12.0,
                    2 => (t - 0.5) * 1e-3,
                    _ => ((i * 37) as f32).sin() * 5.0,
                }
            })
            .collect();
        let prev: Vec<f32> = (0..hs).map(|j| (j as f32 * 0.3).cos() * 3.0).collect();
        for tanh_c in [true, false] {
            for c_prev in [None, Some(prev.as_slice())] {
                let (want_c, want_h) = libm_cell(&gates, c_prev, tanh_c);
                let (mut c, mut h) = (vec![0.0; hs], vec![0.0; hs]);
                cell_row(&gates, c_prev, &mut c, &mut h, tanh_c);
                for j in 0..hs {
                    assert!(
                        (c[j] - want_c[j]).abs() < 1e-6,
                        "c[{j}] {} vs {}",
                        c[j],
                        want_c[j]
                    );
                    assert!(
                        (h[j] - want_h[j]).abs() < 1e-6,
                        "h[{j}] {} vs {}",
                        h[j],
                        want_h[j]
                    );
                }
                // the scalar formulas give the vector lanes' values bit for bit
                for j in 0..hs {
                    let (i, f, o, g) = (
                        gates[j],
                        gates[hs + j],
                        gates[2 * hs + j],
                        gates[3 * hs + j],
                    );
                    let mut cj = sigmoid(i) * tanh(g);
                    if let Some(p) = c_prev {
                        cj += sigmoid(f) * p[j];
                    }
                    let hj = sigmoid(o) * if tanh_c { tanh(cj) } else { cj };
                    assert_eq!(
                        (cj.to_bits(), hj.to_bits()),
                        (c[j].to_bits(), h[j].to_bits()),
                        "unit {j}"
                    );
                }
            }
        }
        for x in [
            -100.0f32, -87.0, -10.0, -1.0, -1e-4, 0.0, 1e-4, 0.5, 1.0, 10.0, 88.0, 100.0,
        ] {
            let want = x.exp();
            let got = exp(x);
            if x.abs() < 87.0 {
                assert!(
                    (got - want).abs() <= 3.0 * f32::EPSILON * want,
                    "exp({x}) {got} vs {want}"
                );
            }
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 2e-7,
                "σ({x})"
            );
            assert!((tanh(x) - x.tanh()).abs() < 2e-7, "tanh({x})");
        }
    }
}
