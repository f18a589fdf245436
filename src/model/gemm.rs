//! The one call into the `gemm` crate: row-major `f32` matrix products for the CPU fast paths
//! (the decoder's [`super::fast_decode`] and EfficientNet's `efficientnet::fast`).

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

/// Row blocks of at most this many rows go through [`Weights::mul_acc`]'s streaming kernel, which
/// reads the matrix once per block: a decoding step (one image, or a beam of 5) is a few rows
/// against a matrix of megabytes, and its time is the time to read the matrix.
pub(crate) const STREAM_ROWS: usize = 8;

/// The stored precision of a [`Weights`] matrix.
#[derive(Debug, Clone)]
enum Stored {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

/// A row-major `[k, n]` weight matrix in `f32` or `f16`, multiplied from the left by `f32` rows;
/// `f16` values are widened to `f32` as they are read (the arithmetic is `f32` either way).
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    k: usize,
    n: usize,
    data: Stored,
}

impl Weights {
    /// `values` is `[k, n]` row-major; `f16` rounds them to half precision.
    pub(crate) fn new(values: Vec<f32>, (k, n): (usize, usize), f16: bool) -> Self {
        assert_eq!(values.len(), k * n, "weights of {k}×{n}");
        let data = if f16 {
            Stored::F16(values.iter().map(|&v| half::f16::from_f32(v)).collect())
        } else {
            Stored::F32(values)
        };
        Self { k, n, data }
    }

    /// Bytes the stored values take (what a product reads).
    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            Stored::F32(v) => 4 * v.len(),
            Stored::F16(v) => 2 * v.len(),
        }
    }

    /// Row `r` (`n` values) widened to `f32` into `out`.
    pub(crate) fn row_into(&self, r: usize, out: &mut [f32]) -> Option<()> {
        let range = r.checked_mul(self.n)?..(r + 1).checked_mul(self.n)?;
        match &self.data {
            Stored::F32(v) => out.copy_from_slice(v.get(range)?),
            Stored::F16(v) => {
                for (o, h) in out.iter_mut().zip(v.get(range)?) {
                    *o = h.to_f32();
                }
            }
        }
        Some(())
    }

    /// `dst[m×n] += lhs[m×k] · self`, row-major. Blocks of up to [`STREAM_ROWS`] rows stream the
    /// matrix once on the calling thread (no thread hand-off for a product that lasts a
    /// millisecond); larger `f32` products go to the `gemm` crate's blocked kernels over every
    /// rayon thread.
    pub(crate) fn mul_acc(&self, dst: &mut [f32], lhs: &[f32], m: usize) {
        let (k, n) = (self.k, self.n);
        assert!(dst.len() >= m * n && lhs.len() >= m * k);
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        if let Stored::F32(w) = &self.data
            && m > STREAM_ROWS
        {
            matmul(dst, lhs, w, (m, k, n), true, true);
            return;
        }
        for (d, x) in dst[..m * n]
            .chunks_mut(STREAM_ROWS * n)
            .zip(lhs[..m * k].chunks(STREAM_ROWS * k))
        {
            let rows = x.len() / k;
            match &self.data {
                Stored::F32(w) => stream::f32_rows(d, x, w, rows, k, n),
                Stored::F16(w) => stream::f16_rows(d, x, w, rows, k, n),
            }
        }
    }
}

/// The streaming kernel: `dst[m×n] += x[m×k] · w[k×n]` for `m ≤ STREAM_ROWS`, reading `w` once,
/// four of its rows at a time, eight columns per vector (AVX2 + FMA, and F16C for `f16`), with a
/// scalar version for other CPUs.
mod stream {
    use super::STREAM_ROWS;

    pub(super) fn f32_rows(dst: &mut [f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
        debug_assert!(m <= STREAM_ROWS && dst.len() >= m * n && x.len() >= m * k);
        assert!(w.len() >= k * n);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features are present; the asserts bound every index (see the kernel).
            unsafe { x86::rows::<false>(dst, x, w.as_ptr().cast(), m, k, n) };
            return;
        }
        scalar(dst, x, m, k, n, |i| w[i]);
    }

    pub(super) fn f16_rows(
        dst: &mut [f32],
        x: &[f32],
        w: &[half::f16],
        m: usize,
        k: usize,
        n: usize,
    ) {
        debug_assert!(m <= STREAM_ROWS && dst.len() >= m * n && x.len() >= m * k);
        assert!(w.len() >= k * n);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: as above; `half::f16` is a `u16` bit pattern (repr(transparent)).
            unsafe { x86::rows::<true>(dst, x, w.as_ptr().cast(), m, k, n) };
            return;
        }
        scalar(dst, x, m, k, n, |i| w[i].to_f32());
    }

    fn scalar(dst: &mut [f32], x: &[f32], m: usize, k: usize, n: usize, w: impl Fn(usize) -> f32) {
        for l in 0..k {
            for j in 0..n {
                let v = w(l * n + j);
                for i in 0..m {
                    dst[i * n + j] += x[i * k + l] * v;
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        //! Written for rustc's `opt-level = 1` (the dev profile this crate is benchmarked in):
        //! raw pointers stepped by constants and no arrays or iterator adaptors, so that the
        //! loop bodies stay in registers without the inliner's help.
        use std::arch::asm;
        use std::arch::x86_64::*;

        // Unaligned vector loads and stores as single instructions: the intrinsics go through
        // `copy_nonoverlapping`, whose debug-build precondition check and stack temporary cost
        // more than the load itself at `opt-level = 1`.
        macro_rules! loadu {
            ($p:expr) => {{
                let v: __m256;
                asm!("vmovups {v}, ymmword ptr [{p}]", v = out(ymm_reg) v, p = in(reg) $p,
                    options(pure, readonly, nostack, preserves_flags));
                v
            }};
        }
        macro_rules! storeu {
            ($p:expr, $v:expr) => {{
                asm!("vmovups ymmword ptr [{p}], {v}", p = in(reg) $p, v = in(ymm_reg) $v,
                    options(nostack, preserves_flags));
            }};
        }
        /// Eight values of `w` at `p` (a `*const u8`), widened from `f16` when `HALF`.
        macro_rules! load8 {
            ($half:expr, $p:expr) => {{
                let v: __m256;
                if $half {
                    asm!("vcvtph2ps {v}, xmmword ptr [{p}]", v = out(ymm_reg) v, p = in(reg) $p,
                        options(pure, readonly, nostack, preserves_flags));
                } else {
                    asm!("vmovups {v}, ymmword ptr [{p}]", v = out(ymm_reg) v, p = in(reg) $p,
                        options(pure, readonly, nostack, preserves_flags));
                }
                v
            }};
        }

        #[inline(always)]
        unsafe fn load1<const HALF: bool>(p: *const u8) -> f32 {
            // SAFETY: the caller keeps `p` inside the matrix.
            unsafe {
                if HALF {
                    half::f16::from_bits(p.cast::<u16>().read_unaligned()).to_f32()
                } else {
                    p.cast::<f32>().read_unaligned()
                }
            }
        }

        /// SAFETY: AVX2, FMA (and F16C when `HALF`) are present; `w` points at `k × n` values of
        /// its type, `dst` holds `m × n` and `x` `m × k`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn rows<const HALF: bool>(
            dst: &mut [f32],
            x: &[f32],
            w: *const u8,
            m: usize,
            k: usize,
            n: usize,
        ) {
            let es: usize = if HALF { 2 } else { 4 };
            let row_bytes = n * es;
            let n8 = n - n % 8;
            let dst = dst.as_mut_ptr();
            let x = x.as_ptr();
            let mut l = 0;
            // four rows of w at a time: each dst vector is loaded and stored once per four rows
            // SAFETY (whole loop): rows l..l+4 < k and columns j..j+8 ≤ n stay inside w; dst and
            // x are read at rows i < m, columns < n and < k.
            unsafe {
                while l + 4 <= k {
                    let w0 = w.add(l * row_bytes);
                    let (w1, w2, w3) = (
                        w0.add(row_bytes),
                        w0.add(2 * row_bytes),
                        w0.add(3 * row_bytes),
                    );
                    if m == 1 {
                        let x0 = _mm256_set1_ps(*x.add(l));
                        let x1 = _mm256_set1_ps(*x.add(l + 1));
                        let x2 = _mm256_set1_ps(*x.add(l + 2));
                        let x3 = _mm256_set1_ps(*x.add(l + 3));
                        let (mut p0, mut p1, mut p2, mut p3, mut d) = (w0, w1, w2, w3, dst);
                        let end = dst.add(n8);
                        while d < end {
                            let mut acc = loadu!(d);
                            acc = _mm256_fmadd_ps(x0, load8!(HALF, p0), acc);
                            acc = _mm256_fmadd_ps(x1, load8!(HALF, p1), acc);
                            acc = _mm256_fmadd_ps(x2, load8!(HALF, p2), acc);
                            acc = _mm256_fmadd_ps(x3, load8!(HALF, p3), acc);
                            storeu!(d, acc);
                            p0 = p0.add(8 * es);
                            p1 = p1.add(8 * es);
                            p2 = p2.add(8 * es);
                            p3 = p3.add(8 * es);
                            d = d.add(8);
                        }
                    } else {
                        let mut j = 0;
                        while j < n8 {
                            let off = j * es;
                            let v0 = load8!(HALF, w0.add(off));
                            let v1 = load8!(HALF, w1.add(off));
                            let v2 = load8!(HALF, w2.add(off));
                            let v3 = load8!(HALF, w3.add(off));
                            let mut xi = x.add(l);
                            let mut d = dst.add(j);
                            let d_end = d.add(m * n);
                            while d < d_end {
                                let mut acc = loadu!(d);
                                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xi), v0, acc);
                                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xi.add(1)), v1, acc);
                                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xi.add(2)), v2, acc);
                                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xi.add(3)), v3, acc);
                                storeu!(d, acc);
                                xi = xi.add(k);
                                d = d.add(n);
                            }
                            j += 8;
                        }
                    }
                    for j in n8..n {
                        for i in 0..m {
                            let xi = x.add(i * k + l);
                            let d = dst.add(i * n + j);
                            *d += *xi * load1::<HALF>(w0.add(j * es))
                                + *xi.add(1) * load1::<HALF>(w1.add(j * es))
                                + *xi.add(2) * load1::<HALF>(w2.add(j * es))
                                + *xi.add(3) * load1::<HALF>(w3.add(j * es));
                        }
                    }
                    l += 4;
                }
                while l < k {
                    let wl = w.add(l * row_bytes);
                    for j in 0..n {
                        let v = load1::<HALF>(wl.add(j * es));
                        for i in 0..m {
                            *dst.add(i * n + j) += *x.add(i * k + l) * v;
                        }
                    }
                    l += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), init: f32) -> Vec<f32> {
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

    /// The streaming kernel (every row count up to a block and past it, ragged k and n) and the
    /// gemm route agree with the naive product, in f32 and from f16-rounded weights.
    #[test]
    fn weights_mul_acc_matches_naive_in_f32_and_f16() {
        for (m, k, n) in [(1, 7, 19), (3, 8, 16), (5, 13, 41), (8, 4, 8), (11, 9, 23)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 11) as f32 * 0.25 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 13) as f32 * 0.125 - 0.75)
                .collect();
            // these values are exact in f16, so both precisions must match the f32 product
            let want = naive(&a, &b, (m, k, n), 0.5);
            for f16 in [false, true] {
                let w = Weights::new(b.clone(), (k, n), f16);
                assert_eq!(w.bytes(), k * n * if f16 { 2 } else { 4 });
                let mut got = vec![0.5f32; m * n];
                w.mul_acc(&mut got, &a, m);
                for (g, e) in got.iter().zip(&want) {
                    assert!((g - e).abs() < 1e-4, "{m}×{k}×{n} f16 {f16}: {g} vs {e}");
                }
                let mut row = vec![0.0; n];
                w.row_into(k - 1, &mut row).unwrap();
                assert_eq!(row, b[(k - 1) * n..]);
                assert!(w.row_into(k, &mut row).is_none());
            }
        }
    }
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
