//! Unaligned AVX loads and stores of eight `f32` as single instructions, for the hand-written
//! kernels (`packed`, `ops::conv::dots`). Not `_mm256_loadu_ps`/`_mm256_storeu_ps`: they go
//! through `copy_nonoverlapping`, whose precondition check and stack temporary (kept by the dev
//! profile's debug assertions, which capsearch's own code builds with) cost more than the load
//! or store itself. Both are used inside `unsafe` blocks of functions with AVX enabled, on
//! pointers with eight values to read or write.

/// `loadu!(p)`: the eight `f32` at `p` as an `__m256`.
#[cfg(target_arch = "x86_64")]
macro_rules! loadu {
    ($p:expr) => {{
        let v: ::std::arch::x86_64::__m256;
        ::std::arch::asm!("vmovups {v}, ymmword ptr [{p}]", v = out(ymm_reg) v, p = in(reg) $p,
            options(pure, readonly, nostack, preserves_flags));
        v
    }};
}

/// `storeu!(p, v)`: the `__m256` `v` written to the eight `f32` at `p`.
#[cfg(target_arch = "x86_64")]
macro_rules! storeu {
    ($p:expr, $v:expr) => {{
        ::std::arch::asm!("vmovups ymmword ptr [{p}], {v}", p = in(reg) $p, v = in(ymm_reg) $v,
            options(nostack, preserves_flags));
    }};
}

#[cfg(target_arch = "x86_64")]
pub(crate) use {loadu, storeu};
