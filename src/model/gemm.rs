//! The one call into the `gemm` crate: row-major `f32` matrix products for EfficientNet's CPU fast
//! path (`efficientnet::fast`). The decoder's fast path multiplies by constant matrices packed for
//! it, in [`super::packed`].

/// Products at least this large (m·n·k multiply-adds) may use every rayon thread; smaller ones run
/// on the calling thread, where splitting costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, all row-major: with `accumulate` the product is added to
/// `dst`, otherwise it replaces it. `parallel` lets large products use every rayon thread (callers
/// that already spread work over the threads pass `false`).
pub(crate) fn matmul(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let parallelism = if parallel && m * n * k >= PARALLEL_MIN_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every index the strides reach inside the three slices:
    // dst row i col j at i*n + j < m*n, lhs at i*k + l < m*k, rhs at l*n + j < k*n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_and_accumulates() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 2.0).collect();
        let mut want = vec![1.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    want[i * n + j] += a[i * k + l] * b[l * n + j];
                }
            }
        }
        let mut got = vec![1.0f32; m * n];
        matmul(&mut got, &a, &b, (m, k, n), true, false);
        assert_eq!(got, want);
        let mut fresh = vec![f32::NAN; m * n];
        matmul(&mut fresh, &a, &b, (m, k, n), false, false);
        let want0: Vec<f32> = want.iter().map(|x| x - 1.0).collect();
        assert_eq!(fresh, want0);
    }
}
