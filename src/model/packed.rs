//! Constant weight matrices packed for products with a few rows: the decoder's fast path
//! ([`super::fast_decode`]) multiplies `[m, k]` rows (one image, a beam, a batch of images) by the
//! same `[k, n]` matrices at every step.
//!
//! A [`Weights`] matrix is stored as column panels: panel `p` holds columns `16p..16p + 16` of
//! every row, `k × 16` values in a row, the last panel padded with zeros. One kernel serves every
//! row count: for each panel, blocks of up to six rows keep their `6 × 16` sums in registers while
//! the panel streams past once, contiguously (the hardware prefetcher's best case; the old
//! row-major layout read each panel at a stride of a whole row). One row reads each matrix once from
//! memory, so a one-image step is as fast as memory allows; six rows share every load, so a batch
//! of 32 is bounded by the multiply-adds, not the bytes. `f16` matrices (F16C widens them as they
//! are loaded) halve the bytes; the arithmetic is `f32` either way.
//!
//! Every row's sums run in the same order (`l = 0..k`, one accumulator per column) whatever the
//! number of rows, so a row's result does not depend on the batch it is in: batched decoding gives
//! the captions of one-at-a-time decoding bit for bit.
//!
//! Products of more than [`SERIAL_ROWS`] rows split their panels over rayon's threads (columns, not
//! rows: each thread reads only its share of the matrix); smaller ones run on the calling thread,
//! where a hand-off costs more than a step that lasts a millisecond.

use rayon::prelude::*;

/// Columns per panel: two 8-float AVX vectors.
const PANEL: usize = 16;

/// Rows whose sums a kernel call keeps in registers (6 × 2 accumulators + 2 weight vectors + 1
/// broadcast = 15 of AVX2's 16 registers).
const BLOCK_ROWS: usize = 6;

/// Products of at most this many rows (one image, a beam of 5) run on the calling thread.
pub(crate) const SERIAL_ROWS: usize = 8;

/// Wider products split over threads only when they are at least this large (m·k·n multiply-adds,
/// about a tenth of a millisecond on one core): the `shapes` model's products stay on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 22;

/// The stored precision of a [`Weights`] matrix, packed in panels.
#[derive(Debug, Clone)]
enum Stored {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

/// A `[k, n]` weight matrix in `f32` or `f16`, packed in column panels, multiplied from the left by
/// row-major `f32` rows.
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
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0.0f32; panels * k * PANEL];
        for (l, row) in values.chunks_exact(n.max(1)).enumerate().take(k) {
            for (j, &v) in row.iter().enumerate() {
                packed[(j / PANEL) * k * PANEL + l * PANEL + j % PANEL] = v;
            }
        }
        let data = if f16 {
            Stored::F16(packed.iter().map(|&v| half::f16::from_f32(v)).collect())
        } else {
            Stored::F32(packed)
        };
        Self { k, n, data }
    }

    /// Bytes of the matrix's `k × n` values at their stored precision (what a product reads,
    /// less the last panel's padding).
    pub(crate) fn bytes(&self) -> usize {
        let size = match &self.data {
            Stored::F32(_) => 4,
            Stored::F16(_) => 2,
        };
        size * self.k * self.n
    }

    /// Row `r` (`n` values) widened to `f32` into `out`.
    pub(crate) fn row_into(&self, r: usize, out: &mut [f32]) -> Option<()> {
        if r >= self.k || out.len() != self.n {
            return None;
        }
        for (p, o) in out.chunks_mut(PANEL).enumerate() {
            let at = p * self.k * PANEL + r * PANEL;
            match &self.data {
                Stored::F32(v) => o.copy_from_slice(v.get(at..at + o.len())?),
                Stored::F16(v) => {
                    for (o, h) in o.iter_mut().zip(v.get(at..at + PANEL)?) {
                        *o = h.to_f32();
                    }
                }
            }
        }
        Some(())
    }

    /// `dst[m×n] += lhs[m×k] · self`, `dst` and `lhs` row-major.
    pub(crate) fn mul_acc(&self, dst: &mut [f32], lhs: &[f32], m: usize) {
        self.mul_acc_on(dst, lhs, m, true);
    }

    /// [`Weights::mul_acc`] on the calling thread whatever its size: for callers that split
    /// their work over the threads themselves (by image), where a product's own split would only
    /// add hand-offs. The same sums, bit for bit.
    pub(crate) fn mul_acc_serial(&self, dst: &mut [f32], lhs: &[f32], m: usize) {
        self.mul_acc_on(dst, lhs, m, false);
    }

    fn mul_acc_on(&self, dst: &mut [f32], lhs: &[f32], m: usize, threaded: bool) {
        let (k, n) = (self.k, self.n);
        assert!(dst.len() >= m * n && lhs.len() >= m * k);
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        let panels = n.div_ceil(PANEL);
        let threads = rayon::current_num_threads().min(panels);
        let out = Dst {
            ptr: dst.as_mut_ptr(),
        };
        if !threaded || m <= SERIAL_ROWS || threads < 2 || m * k * n < PARALLEL_MIN_WORK {
            // SAFETY: `dst` holds m × n values (asserted) and is borrowed mutably here.
            unsafe { self.panels(out, lhs, m, 0..panels) };
            return;
        }
        let per = panels.div_ceil(threads);
        (0..threads).into_par_iter().for_each(|t| {
            let range = (t * per).min(panels)..((t + 1) * per).min(panels);
            // SAFETY: as above; the threads' panel ranges are disjoint, so no two write the same
            // column of `dst`, and the `&mut` borrow of `dst` outlives the parallel loop.
            unsafe { self.panels(out, lhs, m, range) };
        });
    }

    /// `dst += lhs · self` on the columns of `panels`.
    ///
    /// SAFETY: `dst` points at `m × n` writable values that nothing else reads or writes in the
    /// columns of `panels` during the call; `lhs` holds `m × k`.
    unsafe fn panels(&self, dst: Dst, lhs: &[f32], m: usize, panels: std::ops::Range<usize>) {
        let (k, n) = (self.k, self.n);
        debug_assert!(lhs.len() >= m * k);
        let blocks = m.div_ceil(BLOCK_ROWS);
        let last = panels.end;
        let mut p = panels.start;
        while p < last {
            let cols = PANEL.min(n - p * PANEL);
            let at = p * k * PANEL;
            if m == 1 && p + 1 < last {
                // one row: two panels at a time, so that four sums are in flight rather than two
                // (each column's sum is the same either way)
                let cols2 = PANEL.min(n - (p + 1) * PANEL);
                // SAFETY: row 0 and columns 16p..16p + 16 + cols2 ≤ n of `dst`.
                let d = unsafe { dst.ptr.add(p * PANEL) };
                let pair = at..at + 2 * k * PANEL;
                match &self.data {
                    Stored::F32(w) => kernel::pair_f32(d, lhs, &w[pair], cols2),
                    Stored::F16(w) => kernel::pair_f16(d, lhs, &w[pair], cols2),
                }
                p += 2;
                continue;
            }
            for b in 0..blocks {
                let i = b * BLOCK_ROWS;
                let rows = BLOCK_ROWS.min(m - i);
                let x = &lhs[i * k..(i + rows) * k];
                // The first block reads the panel from memory, the others from the cache: they
                // fetch the next panel's rows meanwhile, a share each, so that the next first
                // block finds its panel in the cache (about 10% off a batch of 32's step)
                // (block b fetches rows b - 1, b - 1 + (blocks - 1), …: one every blocks - 1
                // iterations of its loop, spread evenly rather than in a burst)
                let prefetch = if b > 0 && p + 1 < last {
                    Prefetch {
                        at: at + k * PANEL + (b - 1) * PANEL,
                        every: blocks - 1,
                        rows: k.saturating_sub(b - 1).div_ceil(blocks - 1),
                    }
                } else {
                    Prefetch::NONE
                };
                // SAFETY: rows i..i + rows < m and columns 16p..16p + cols ≤ n of `dst`.
                let d = unsafe { dst.ptr.add(i * n + p * PANEL) };
                let panel = at..at + k * PANEL;
                match &self.data {
                    Stored::F32(w) => kernel::block_f32(d, n, x, w, panel, prefetch, rows, cols),
                    Stored::F16(w) => kernel::block_f16(d, n, x, w, panel, prefetch, rows, cols),
                }
            }
            p += 1;
        }
    }
}

/// Panel rows a kernel call fetches into the cache for the next call: `rows` rows, `every` rows
/// apart, from value `at` of the matrix (one every `every` iterations of its loop).
#[derive(Clone, Copy)]
struct Prefetch {
    at: usize,
    every: usize,
    rows: usize,
}

impl Prefetch {
    const NONE: Self = Self {
        at: 0,
        every: 1,
        rows: 0,
    };

    /// The rows, checked to lie in a matrix of `len` values: (offset, every, rows).
    fn checked(self, len: usize) -> (usize, usize, usize) {
        let every = self.every.max(1);
        let end = self.at + (self.rows.saturating_sub(1) * every + 1) * PANEL;
        if self.rows == 0 || end > len {
            (0, every, 0)
        } else {
            (self.at, every, self.rows)
        }
    }
}

/// The destination of a product, shared by the threads that write its disjoint column ranges.
#[derive(Clone, Copy)]
struct Dst {
    ptr: *mut f32,
}

// SAFETY: `Weights::mul_acc` hands each thread its own columns (see there).
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// One block: `d[rows × cols] += x[rows × k] · panel[k × 16]` (first `cols` columns), `d`'s rows
/// `stride` apart; AVX-512 where present, else AVX2 + FMA (and F16C for `f16`), with a scalar
/// version for other CPUs.
mod kernel {
    use std::ops::Range;

    use super::{BLOCK_ROWS, PANEL, Prefetch};

    /// SAFETY (callers): `d` points at `rows` rows of `cols` writable values, `stride` apart.
    /// `w[panel]` is the panel (`k × 16` values); `prefetch`'s rows of `w` are fetched into the
    /// cache on the way.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_f32(
        d: *mut f32,
        stride: usize,
        x: &[f32],
        w: &[f32],
        panel: Range<usize>,
        prefetch: Prefetch,
        rows: usize,
        cols: usize,
    ) {
        let k = panel.len() / PANEL;
        let (pf_at, every, pf_rows) = prefetch.checked(w.len());
        let panel = &w[panel];
        assert!(rows <= BLOCK_ROWS && cols <= PANEL && x.len() >= rows * k);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let pf = (w[pf_at..].as_ptr().cast(), every, pf_rows);
            let w = panel.as_ptr().cast();
            // SAFETY: the feature is present; the assert bounds x and the panel.
            unsafe { x86::block_512::<false>(d, stride, x, w, k, pf, rows, cols) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let pf = (w[pf_at..].as_ptr().cast(), every, pf_rows);
            let w = panel.as_ptr().cast();
            // SAFETY: the features are present; the assert bounds x and the panel.
            unsafe { x86::block::<false>(d, stride, x, w, k, pf, rows, cols) };
            return;
        }
        scalar(d, stride, x, k, rows, cols, |i| panel[i]);
    }

    /// As [`block_f32`], from `f16` values.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_f16(
        d: *mut f32,
        stride: usize,
        x: &[f32],
        w: &[half::f16],
        panel: Range<usize>,
        prefetch: Prefetch,
        rows: usize,
        cols: usize,
    ) {
        let k = panel.len() / PANEL;
        let (pf_at, every, pf_rows) = prefetch.checked(w.len());
        let panel = &w[panel];
        assert!(rows <= BLOCK_ROWS && cols <= PANEL && x.len() >= rows * k);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let pf = (w[pf_at..].as_ptr().cast(), every, pf_rows);
            let w = panel.as_ptr().cast();
            // SAFETY: as above; `half::f16` is a `u16` bit pattern (repr(transparent)).
            unsafe { x86::block_512::<true>(d, stride, x, w, k, pf, rows, cols) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            let pf = (w[pf_at..].as_ptr().cast(), every, pf_rows);
            let w = panel.as_ptr().cast();
            // SAFETY: as above; `half::f16` is a `u16` bit pattern (repr(transparent)).
            unsafe { x86::block::<true>(d, stride, x, w, k, pf, rows, cols) };
            return;
        }
        scalar(d, stride, x, k, rows, cols, |i| panel[i].to_f32());
    }

    /// One row against two adjacent panels (`w`: `2 × k × 16` values): `d[16 + cols2] += x · w`.
    ///
    /// SAFETY (callers): `d` points at `16 + cols2` writable values.
    pub(super) fn pair_f32(d: *mut f32, x: &[f32], w: &[f32], cols2: usize) {
        let k = w.len() / (2 * PANEL);
        assert!(cols2 <= PANEL && x.len() >= k);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features are present; the assert bounds x and the panels.
            unsafe { x86::pair::<false>(d, x.as_ptr(), w.as_ptr().cast(), k, cols2) };
            return;
        }
        let (w1, w2) = w.split_at(k * PANEL);
        scalar(d, 0, x, k, 1, PANEL, |i| w1[i]);
        // SAFETY: the caller's contract on `d`.
        scalar(unsafe { d.add(PANEL) }, 0, x, k, 1, cols2, |i| w2[i]);
    }

    /// As [`pair_f32`], from `f16` values.
    pub(super) fn pair_f16(d: *mut f32, x: &[f32], w: &[half::f16], cols2: usize) {
        let k = w.len() / (2 * PANEL);
        assert!(cols2 <= PANEL && x.len() >= k);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: as above; `half::f16` is a `u16` bit pattern (repr(transparent)).
            unsafe { x86::pair::<true>(d, x.as_ptr(), w.as_ptr().cast(), k, cols2) };
            return;
        }
        let (w1, w2) = w.split_at(k * PANEL);
        scalar(d, 0, x, k, 1, PANEL, |i| w1[i].to_f32());
        // SAFETY: the caller's contract on `d`.
        scalar(unsafe { d.add(PANEL) }, 0, x, k, 1, cols2, |i| {
            w2[i].to_f32()
        });
    }

    /// The same sums in the same order (`l = 0..k` into a zeroed accumulator, then added to `d`).
    fn scalar(
        d: *mut f32,
        stride: usize,
        x: &[f32],
        k: usize,
        rows: usize,
        cols: usize,
        w: impl Fn(usize) -> f32,
    ) {
        for i in 0..rows {
            let mut acc = [0.0f32; PANEL];
            for l in 0..k {
                let xi = x[i * k + l];
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = xi.mul_add(w(l * PANEL + c), *a);
                }
            }
            for (c, a) in acc.iter().enumerate().take(cols) {
                // SAFETY: the caller's contract on `d`.
                unsafe { *d.add(i * stride + c) += a };
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod x86 {
        //! Written for rustc's `opt-level = 1` (the dev profile this crate is benchmarked in):
        //! the accumulators are named locals and the row count a const parameter, so that the
        //! loop body stays in registers without the inliner's help, and loads are single
        //! instructions.
        use std::arch::asm;
        use std::arch::x86_64::*;

        use super::PANEL;
        use crate::model::simd::{loadu, storeu};

        /// Eight values of the panel at `p` (a `*const u8`), widened from `f16` when `HALF`.
        macro_rules! load8 {
            ($half:expr, $p:expr) => {{
                let v: __m256;
                if $half {
                    asm!("vcvtph2ps {v}, xmmword ptr [{p}]", v = out(ymm_reg) v, p = in(reg) $p,
                        options(pure, readonly, nostack, preserves_flags));
                } else {
                    v = loadu!($p);
                }
                v
            }};
        }

        /// SAFETY: AVX2, FMA (and F16C when `HALF`) are present; `w` points at `k × 16` values
        /// of its type and `pf.0` at `(pf.2 - 1) × pf.1 + 1` rows of 16, `x` holds `rows × k`, `d` is as in
        /// [`super::block_f32`].
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(in crate::model::packed) unsafe fn block<const HALF: bool>(
            d: *mut f32,
            stride: usize,
            x: &[f32],
            w: *const u8,
            k: usize,
            pf: (*const u8, usize, usize),
            rows: usize,
            cols: usize,
        ) {
            let x = x.as_ptr();
            // SAFETY: forwarded.
            unsafe {
                match rows {
                    1 => rows_of::<1, HALF>(d, stride, x, w, k, pf, cols),
                    2 => rows_of::<2, HALF>(d, stride, x, w, k, pf, cols),
                    3 => rows_of::<3, HALF>(d, stride, x, w, k, pf, cols),
                    4 => rows_of::<4, HALF>(d, stride, x, w, k, pf, cols),
                    5 => rows_of::<5, HALF>(d, stride, x, w, k, pf, cols),
                    _ => rows_of::<6, HALF>(d, stride, x, w, k, pf, cols),
                }
            }
        }

        /// How far ahead of its loads [`pair`] prefetches, in bytes.
        const AHEAD: usize = 4096;

        /// One row against two adjacent panels: the sums of `rows_of::<1, _>` on each, four
        /// accumulators in flight.
        ///
        /// SAFETY: as [`block`], with `w` at `2 × k × 16` values and `d` at `16 + cols2`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn pair<const HALF: bool>(
            d: *mut f32,
            x: *const f32,
            w: *const u8,
            k: usize,
            cols2: usize,
        ) {
            let es: usize = if HALF { 2 } else { 4 };
            // SAFETY (whole body): l < k inside x and both panels; d as the caller promises.
            unsafe {
                let z = _mm256_setzero_ps();
                let (mut a0, mut b0, mut a1, mut b1) = (z, z, z, z);
                let mut p = w;
                let mut q = w.add(k * PANEL * es);
                let mut l = 0;
                while l < k {
                    // one sequential stream per panel: fetch 4 KiB ahead, so that each page is
                    // on its way before the loads reach it (the hardware prefetcher stops at page
                    // boundaries); a prefetch past the matrix's end is harmless, it cannot fault
                    let (pa, qa) = (p.wrapping_add(AHEAD), q.wrapping_add(AHEAD));
                    asm!("prefetcht0 byte ptr [{p}]", "prefetcht0 byte ptr [{q}]", p = in(reg) pa,
                        q = in(reg) qa, options(nostack, preserves_flags, readonly));
                    let v = _mm256_broadcast_ss(&*x.add(l));
                    a0 = _mm256_fmadd_ps(v, load8!(HALF, p), a0);
                    b0 = _mm256_fmadd_ps(v, load8!(HALF, p.add(8 * es)), b0);
                    a1 = _mm256_fmadd_ps(v, load8!(HALF, q), a1);
                    b1 = _mm256_fmadd_ps(v, load8!(HALF, q.add(8 * es)), b1);
                    p = p.add(PANEL * es);
                    q = q.add(PANEL * es);
                    l += 1;
                }
                storeu!(d, _mm256_add_ps(loadu!(d), a0));
                storeu!(d.add(8), _mm256_add_ps(loadu!(d.add(8)), b0));
                let d = d.add(PANEL);
                if cols2 == PANEL {
                    storeu!(d, _mm256_add_ps(loadu!(d), a1));
                    storeu!(d.add(8), _mm256_add_ps(loadu!(d.add(8)), b1));
                } else {
                    let mut buf = [0.0f32; PANEL];
                    storeu!(buf.as_mut_ptr(), a1);
                    storeu!(buf.as_mut_ptr().add(8), b1);
                    for (c, v) in buf.iter().enumerate().take(cols2) {
                        *d.add(c) += v;
                    }
                }
            }
        }

        /// A whole panel row (sixteen values) at `p` (a `*const u8`) as an `__m512`, widened
        /// from `f16` when `HALF`.
        macro_rules! load16 {
            ($half:expr, $p:expr) => {{
                let v: __m512;
                if $half {
                    asm!("vcvtph2ps {v}, ymmword ptr [{p}]", v = out(zmm_reg) v, p = in(reg) $p,
                        options(pure, readonly, nostack, preserves_flags));
                } else {
                    asm!("vmovups {v}, zmmword ptr [{p}]", v = out(zmm_reg) v, p = in(reg) $p,
                        options(pure, readonly, nostack, preserves_flags));
                }
                v
            }};
        }

        /// `d[0..16] += a`, one instruction each way.
        macro_rules! add_store16 {
            ($d:expr, $a:expr) => {{
                let old: __m512;
                asm!("vmovups {v}, zmmword ptr [{p}]", v = out(zmm_reg) old, p = in(reg) $d,
                    options(pure, readonly, nostack, preserves_flags));
                let sum = _mm512_add_ps(old, $a);
                asm!("vmovups zmmword ptr [{p}], {v}", p = in(reg) $d, v = in(zmm_reg) sum,
                    options(nostack, preserves_flags));
            }};
        }

        /// [`block`] with AVX-512: a panel row is one register, so a row of the block takes one
        /// FMA per value of `x` where AVX2 takes two. Each column's sum is the same sequence of
        /// FMAs as in [`rows_of`], so the results are the same bit for bit.
        ///
        /// SAFETY: AVX-512F is present; otherwise as [`block`].
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx512f")]
        pub(in crate::model::packed) unsafe fn block_512<const HALF: bool>(
            d: *mut f32,
            stride: usize,
            x: &[f32],
            w: *const u8,
            k: usize,
            pf: (*const u8, usize, usize),
            rows: usize,
            cols: usize,
        ) {
            let x = x.as_ptr();
            // SAFETY: forwarded.
            unsafe {
                match rows {
                    1 => rows_of_512::<1, HALF>(d, stride, x, w, k, pf, cols),
                    2 => rows_of_512::<2, HALF>(d, stride, x, w, k, pf, cols),
                    3 => rows_of_512::<3, HALF>(d, stride, x, w, k, pf, cols),
                    4 => rows_of_512::<4, HALF>(d, stride, x, w, k, pf, cols),
                    5 => rows_of_512::<5, HALF>(d, stride, x, w, k, pf, cols),
                    _ => rows_of_512::<6, HALF>(d, stride, x, w, k, pf, cols),
                }
            }
        }

        /// [`rows_of`] with AVX-512 (see [`block_512`]).
        #[target_feature(enable = "avx512f")]
        unsafe fn rows_of_512<const R: usize, const HALF: bool>(
            d: *mut f32,
            stride: usize,
            x: *const f32,
            w: *const u8,
            k: usize,
            (pf, every, pf_rows): (*const u8, usize, usize),
            cols: usize,
        ) {
            let es: usize = if HALF { 2 } else { 4 };
            // SAFETY (whole body): as in `rows_of`.
            unsafe {
                let row = |i: usize| if R > i { x.add(i * k) } else { x };
                let (x0, x1, x2, x3, x4, x5) = (row(0), row(1), row(2), row(3), row(4), row(5));
                let z = _mm512_setzero_ps();
                let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
                let mut p = w;
                let mut l = 0;
                let mut fetch = Fetch::new((pf, every, pf_rows), es);
                while l < k {
                    fetch.tick();
                    let w0 = load16!(HALF, p);
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(*x0.add(l)), w0, a0);
                    if R > 1 {
                        a1 = _mm512_fmadd_ps(_mm512_set1_ps(*x1.add(l)), w0, a1);
                    }
                    if R > 2 {
                        a2 = _mm512_fmadd_ps(_mm512_set1_ps(*x2.add(l)), w0, a2);
                    }
                    if R > 3 {
                        a3 = _mm512_fmadd_ps(_mm512_set1_ps(*x3.add(l)), w0, a3);
                    }
                    if R > 4 {
                        a4 = _mm512_fmadd_ps(_mm512_set1_ps(*x4.add(l)), w0, a4);
                    }
                    if R > 5 {
                        a5 = _mm512_fmadd_ps(_mm512_set1_ps(*x5.add(l)), w0, a5);
                    }
                    p = p.add(PANEL * es);
                    l += 1;
                }
                let sums = [a0, a1, a2, a3, a4, a5];
                for (i, &a) in sums.iter().enumerate().take(R) {
                    let di = d.add(i * stride);
                    if cols == PANEL {
                        add_store16!(di, a);
                    } else {
                        let mut buf = [0.0f32; PANEL];
                        asm!("vmovups zmmword ptr [{p}], {v}", p = in(reg) buf.as_mut_ptr(),
                            v = in(zmm_reg) a, options(nostack, preserves_flags));
                        for (c, v) in buf.iter().enumerate().take(cols) {
                            *di.add(c) += v;
                        }
                    }
                }
            }
        }

        /// The prefetch schedule of a block's loop: from `q`, one panel row every `every`
        /// iterations, `left` rows in all ([`super::Prefetch`]).
        struct Fetch {
            q: *const u8,
            left: usize,
            due: usize,
            every: usize,
            step: usize,
        }

        impl Fetch {
            /// `(pf, every, rows)` as the block kernels take it; `es` bytes a value.
            #[inline(always)]
            fn new((q, every, left): (*const u8, usize, usize), es: usize) -> Self {
                let step = every * PANEL * es;
                Self {
                    q,
                    left,
                    due: 0,
                    every,
                    step,
                }
            }

            /// One iteration: fetches the next row when it is due.
            ///
            /// SAFETY (callers): the rows lie in the matrix (`Prefetch::checked`); a prefetch
            /// cannot fault in any case.
            #[inline(always)]
            unsafe fn tick(&mut self) {
                if self.left == 0 {
                    return;
                }
                if self.due == 0 {
                    // SAFETY: a prefetch reads nothing the program sees.
                    unsafe {
                        asm!("prefetcht0 byte ptr [{q}]", q = in(reg) self.q,
                            options(nostack, preserves_flags, readonly));
                    }
                    self.left -= 1;
                    if self.left > 0 {
                        self.q = self.q.wrapping_add(self.step);
                    }
                    self.due = self.every;
                }
                self.due -= 1;
            }
        }

        /// `R` rows (1 ≤ R ≤ 6) against one panel.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn rows_of<const R: usize, const HALF: bool>(
            d: *mut f32,
            stride: usize,
            x: *const f32,
            w: *const u8,
            k: usize,
            (pf, every, pf_rows): (*const u8, usize, usize),
            cols: usize,
        ) {
            let es: usize = if HALF { 2 } else { 4 };
            // SAFETY (whole body): row i < R of x is x[i*k..(i+1)*k]; the panel has k rows of
            // 16 values; d's rows i < R hold `cols` values (16 when the stores are whole).
            unsafe {
                let row = |i: usize| if R > i { x.add(i * k) } else { x };
                let (x0, x1, x2, x3, x4, x5) = (row(0), row(1), row(2), row(3), row(4), row(5));
                let z = _mm256_setzero_ps();
                let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
                let (mut b0, mut b1, mut b2, mut b3, mut b4, mut b5) = (z, z, z, z, z, z);
                let mut p = w;
                let mut l = 0;
                let mut fetch = Fetch::new((pf, every, pf_rows), es);
                while l < k {
                    fetch.tick();
                    let w0 = load8!(HALF, p);
                    let w1 = load8!(HALF, p.add(8 * es));
                    let v = _mm256_broadcast_ss(&*x0.add(l));
                    a0 = _mm256_fmadd_ps(v, w0, a0);
                    b0 = _mm256_fmadd_ps(v, w1, b0);
                    if R > 1 {
                        let v = _mm256_broadcast_ss(&*x1.add(l));
                        a1 = _mm256_fmadd_ps(v, w0, a1);
                        b1 = _mm256_fmadd_ps(v, w1, b1);
                    }
                    if R > 2 {
                        let v = _mm256_broadcast_ss(&*x2.add(l));
                        a2 = _mm256_fmadd_ps(v, w0, a2);
                        b2 = _mm256_fmadd_ps(v, w1, b2);
                    }
                    if R > 3 {
                        let v = _mm256_broadcast_ss(&*x3.add(l));
                        a3 = _mm256_fmadd_ps(v, w0, a3);
                        b3 = _mm256_fmadd_ps(v, w1, b3);
                    }
                    if R > 4 {
                        let v = _mm256_broadcast_ss(&*x4.add(l));
                        a4 = _mm256_fmadd_ps(v, w0, a4);
                        b4 = _mm256_fmadd_ps(v, w1, b4);
                    }
                    if R > 5 {
                        let v = _mm256_broadcast_ss(&*x5.add(l));
                        a5 = _mm256_fmadd_ps(v, w0, a5);
                        b5 = _mm256_fmadd_ps(v, w1, b5);
                    }
                    p = p.add(PANEL * es);
                    l += 1;
                }
                let sums = [(a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5)];
                for (i, &(a, b)) in sums.iter().enumerate().take(R) {
                    let di = d.add(i * stride);
                    if cols == PANEL {
                        storeu!(di, _mm256_add_ps(loadu!(di), a));
                        storeu!(di.add(8), _mm256_add_ps(loadu!(di.add(8)), b));
                    } else {
                        let mut buf = [0.0f32; PANEL];
                        storeu!(buf.as_mut_ptr(), a);
                        storeu!(buf.as_mut_ptr().add(8), b);
                        for (c, v) in buf.iter().enumerate().take(cols) {
                            *di.add(c) += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gemm::naive;

    /// The AVX-512 and AVX2 block kernels give the same sums bit for bit, for every row count,
    /// whole and ragged panels, f32 and f16 (on a CPU with both; `mul_acc` takes AVX-512 there,
    /// so this is what keeps the AVX2 kernel tested).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_and_avx2_blocks_agree_bit_for_bit() {
        let has = |f: &str| match f {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            _ => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
        };
        if !has("avx512f") || !has("avx2") {
            return;
        }
        let k = 37;
        let x: Vec<f32> = (0..BLOCK_ROWS * k)
            .map(|i| ((i as f32) * 0.37).sin())
            .collect();
        let w32: Vec<f32> = (0..k * PANEL).map(|i| ((i as f32) * 0.11).cos()).collect();
        let w16: Vec<half::f16> = w32.iter().map(|&v| half::f16::from_f32(v)).collect();
        let none = (std::ptr::null::<u8>(), 1, 0);
        for rows in 1..=BLOCK_ROWS {
            for cols in [PANEL, 11] {
                let run = |wide: bool, half: bool| {
                    let mut d = vec![0.25f32; rows * PANEL];
                    let w: *const u8 = if half {
                        w16.as_ptr().cast()
                    } else {
                        w32.as_ptr().cast()
                    };
                    let (dp, x) = (d.as_mut_ptr(), &x[..rows * k]);
                    // SAFETY: the features are present (checked above); d holds rows × 16,
                    // x rows × k, the panel k × 16; nothing is prefetched.
                    unsafe {
                        match (wide, half) {
                            (true, false) => kernel::x86::block_512::<false>(
                                dp, PANEL, x, w, k, none, rows, cols,
                            ),
                            (true, true) => {
                                kernel::x86::block_512::<true>(dp, PANEL, x, w, k, none, rows, cols)
                            }
                            (false, false) => {
                                kernel::x86::block::<false>(dp, PANEL, x, w, k, none, rows, cols)
                            }
                            (false, true) => {
                                kernel::x86::block::<true>(dp, PANEL, x, w, k, none, rows, cols)
                            }
                        }
                    }
                    d
                };
                for half in [false, true] {
                    assert_eq!(
                        run(true, half),
                        run(false, half),
                        "{rows} rows, {cols} cols, f16 {half}"
                    );
                }
            }
        }
    }

    /// Every row count (one block, several, a ragged last block, enough work for the threads),
    /// ragged k and n (n not a multiple of the panel): the naive product, in f32 and from
    /// f16-rounded weights.
    #[test]
    fn weights_mul_acc_matches_naive_in_f32_and_f16() {
        let sizes = [
            (1, 7, 19),
            (1, 9, 40),
            (3, 8, 16),
            (5, 13, 41),
            (8, 4, 8),
            (9, 37, 45),
            (11, 9, 23),
            (13, 101, 33),
            (32, 67, 95),
            (33, 300, 131),
            (40, 515, 210),
        ];
        for (m, k, n) in sizes {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 11) as f32 * 0.25 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 13) as f32 * 0.125 - 0.75)
                .collect();
            // these values are exact in f16, and every partial sum is a multiple of 1/32 below
            // 2^19, exact in f32: both precisions must give the naive product exactly
            let want = naive(&a, &b, (m, k, n), 0.5);
            for f16 in [false, true] {
                let w = Weights::new(b.clone(), (k, n), f16);
                assert_eq!(w.bytes(), k * n * if f16 { 2 } else { 4 });
                let mut got = vec![0.5f32; m * n];
                w.mul_acc(&mut got, &a, m);
                assert_eq!(got, want, "{m}×{k}×{n} f16 {f16}");
                let mut row = vec![0.0; n];
                w.row_into(k - 1, &mut row).unwrap();
                assert_eq!(row, b[(k - 1) * n..]);
                assert!(w.row_into(k, &mut row).is_none());
            }
        }
    }

    /// A row's result does not depend on the rows beside it: a batch's rows equal the same rows
    /// multiplied one at a time, bit for bit (general values, f32 and f16).
    #[test]
    fn rows_are_independent_of_the_batch() {
        let (m, k, n) = (33, 520, 250); // enough work for the threads
        let a: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i as f32) * 0.11).cos() * 0.3)
            .collect();
        for f16 in [false, true] {
            let w = Weights::new(b.clone(), (k, n), f16);
            let mut all = vec![0.0f32; m * n];
            w.mul_acc(&mut all, &a, m);
            for i in 0..m {
                let mut one = vec![0.0f32; n];
                w.mul_acc(&mut one, &a[i * k..(i + 1) * k], 1);
                assert_eq!(one, all[i * n..(i + 1) * n], "row {i}, f16 {f16}");
            }
            // and close to the naive product (another summation order)
            let want = naive(&a, &b, (m, k, n), 0.0);
            let want = if f16 {
                let rounded: Vec<f32> =
                    b.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                naive(&a, &rounded, (m, k, n), 0.0)
            } else {
                want
            };
            for (g, e) in all.iter().zip(&want) {
                assert!((g - e).abs() < 1e-4, "{g} vs {e}");
            }
        }
    }
}
