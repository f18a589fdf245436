//! The one call into the `gemm` crate: row-major `f32` matrix products for EfficientNet's CPU fast
//! path (`efficientnet::fast`). The decoder's fast path multiplies by constant matrices packed for
//! it, in [`super::packed`].

/// Products at least this large (m·n·k multiply-adds) may use every rayon thread; smaller ones run
/// on the calling thread, where splitting costs more than it saves. 2²¹ keeps the training LSTM's
/// per-step products at batch 8 × 2 captions (`[16, 128] · [128, 512]`, 2²⁰, a fraction of a
/// millisecond) on one thread: at 2²⁰ they were the smallest products handed to the rayon threads.
const PARALLEL_MIN_WORK: usize = 1 << 21;

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
    matmul_strided(
        (dst, Layout::rows(n)),
        (lhs, Layout::rows(k)),
        (rhs, Layout::rows(n)),
        (m, k, n),
        accumulate,
        parallel,
    );
}

/// Where element (row, col) of a matrix lies in its slice: at `row * row + col * col`. Row-major
/// rows with a gap between them (one time step of a `[B, T, N]` tensor) and transposed views
/// (`Layout { row: 1, col: n }`) are both a `Layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub row: usize,
    pub col: usize,
}

impl Layout {
    /// Row-major rows `stride` elements apart.
    pub(crate) fn rows(stride: usize) -> Self {
        Self {
            row: stride,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `stride` elements apart.
    pub(crate) fn transposed(stride: usize) -> Self {
        Self {
            row: 1,
            col: stride,
        }
    }

    /// Whether a `rows × cols` matrix laid out this way fits in `len` elements.
    fn fits(self, (rows, cols): (usize, usize), len: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row + (cols - 1) * self.col < len
    }
}

/// [`matmul`] over matrices laid out by [`Layout`]: `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`. The
/// destination's layout must not map two elements onto one (gemm writes them in parallel).
pub(crate) fn matmul_strided(
    (dst, dst_at): (&mut [f32], Layout),
    (lhs, lhs_at): (&[f32], Layout),
    (rhs, rhs_at): (&[f32], Layout),
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        dst_at.fits((m, n), dst.len())
            && lhs_at.fits((m, k), lhs.len())
            && rhs_at.fits((k, n), rhs.len())
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[i * dst_at.row + j * dst_at.col] = 0.0;
                }
            }
        }
        return;
    }
    let parallelism = if parallel && m * n * k >= PARALLEL_MIN_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every index the strides reach inside the three slices:
    // element (i, j) of an `r × c` matrix is at i*row + j*col ≤ (r-1)*row + (c-1)*col < len.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_at.col as isize,
            dst_at.row as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_at.col as isize,
            lhs_at.row as isize,
            rhs.as_ptr(),
            rhs_at.col as isize,
            rhs_at.row as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `init + a · b` for row-major `a` `[m, k]` and `b` `[k, n]`, by the definition: the reference
/// the product kernels' tests (here and in `packed`) compare against.
#[cfg(test)]
pub(crate) fn naive(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), init: f32) -> Vec<f32> {
    let mut want = vec![init; m * n];
    for i in 0..m {
        for j in 0..n {
            for l in 0..k {
                want[i * n + j] += a[i * k + l] * b[l * n + j];
            }
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with gaps between them (one step of a `[B, T, N]` tensor) and transposed operands.
    #[test]
    fn matmul_strided_reads_and_writes_through_the_layouts() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 * 0.5 - 0.5).collect();
        let want = naive(&a, &b, (m, k, n), 0.0);
        // aᵀ stored row-major [k, m]; b's rows 2n apart; dst rows 3n apart, first of 3 slots
        let mut at = vec![0.0f32; k * m];
        for i in 0..m {
            for l in 0..k {
                at[l * m + i] = a[i * k + l];
            }
        }
        let mut gapped = vec![9.0f32; k * 2 * n];
        for l in 0..k {
            gapped[l * 2 * n..l * 2 * n + n].copy_from_slice(&b[l * n..(l + 1) * n]);
        }
        let mut dst = vec![7.0f32; m * 3 * n];
        matmul_strided(
            (&mut dst, Layout::rows(3 * n)),
            (&at, Layout::transposed(m)),
            (&gapped, Layout::rows(2 * n)),
            (m, k, n),
            false,
            false,
        );
        for i in 0..m {
            assert_eq!(dst[i * 3 * n..i * 3 * n + n], want[i * n..(i + 1) * n]);
            assert!(
                dst[i * 3 * n + n..(i + 1) * 3 * n]
                    .iter()
                    .all(|v| *v == 7.0)
            );
        }
    }

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
