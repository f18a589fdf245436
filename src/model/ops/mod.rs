//! burn operations with their own backward, for the CPU (Flex, f32): each replaces a chain of
//! small tensor ops whose allocations and passes over memory dominated a training step (issue 15).
//!
//! Each op is a burn backend extension implemented for `Flex` and for `Autodiff<Flex>`, with a
//! `supports` test; every other backend (CUDA through CubeCL, ndarray) and precision keeps the
//! composed burn ops, which stay in the model code as the reference the tests compare against.
//!
//! - [`lstm`]: the LSTM recurrence over a whole sequence.
//! - [`conv`]: the small CNN's convolution (im2col and `gemm` products, forward and backward).
//! - [`batch_norm`]: a training batch norm and the ReLU after it.
//! - [`max_pool`]: the small CNN's 2×2 max-pool.
//! - [`cross_entropy`]: the captioner's masked cross-entropy loss over the vocabulary.
//! - [`dropout`]: training dropout, its mask hashed from a seed rather than drawn per value.

pub mod batch_norm;
pub mod conv;
pub mod cross_entropy;
pub mod dropout;
pub mod lstm;
pub mod max_pool;

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the model code may take the custom ops (see [`set_enabled`]).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the custom ops on (the default) or off for the whole process: off, the model runs
/// through burn's composed ops everywhere, e.g. to measure what the custom ops buy
/// (`capsearch bench train --burn-ops`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// A Flex tensor's f32 values in row-major order, borrowed when it already lies that way.
fn f32s(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .try_into_vec::<f32>()
                .expect("the custom ops run on f32 tensors"),
        ),
    }
}

/// Values below which [`zeroed`] leaves the zeroing to the calling thread.
const PARALLEL_ZEROING_MIN: usize = 1 << 16;

/// `vec![0; len]`, zeroed over the rayon threads in 64 KiB pieces. The ops' output and gradient
/// buffers are allocated on burn's calling thread while the workers wait, and with freed memory
/// kept in malloc's heap ([`crate::train::memory`]) their zeroing is a `memset`; spread over the
/// threads it took 7% off a batch-64 training step on 2 cores (issue 15, fifth round).
fn zeroed<T: Copy + Default + Send + Sync>(len: usize) -> Vec<T> {
    if len < PARALLEL_ZEROING_MIN {
        return vec![T::default(); len];
    }
    let piece = (64 << 10) / std::mem::size_of::<T>().max(1);
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(piece)
        .for_each(|piece| piece.fill(MaybeUninit::new(T::default())));
    // SAFETY: the loop above wrote each of the first `len` values, within the capacity.
    unsafe { out.set_len(len) };
    out
}

/// A contiguous Flex tensor over `values`.
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
thread_local! {
    static BURN_OPS_FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the custom ops may run on this thread: unless [`set_enabled`] switched them off (or,
/// in tests, inside [`with_burn_ops`]).
pub(crate) fn enabled() -> bool {
    #[cfg(test)]
    if BURN_OPS_FORCED.with(|forced| forced.get()) {
        return false;
    }
    ENABLED.load(Ordering::Relaxed)
}

/// Runs `f` with the model code on this thread taking burn's composed ops instead of the custom
/// ones: the reference the custom ops are tested against.
#[cfg(test)]
pub(crate) fn with_burn_ops<R>(f: impl FnOnce() -> R) -> R {
    BURN_OPS_FORCED.with(|forced| forced.set(true));
    let result = f();
    BURN_OPS_FORCED.with(|forced| forced.set(false));
    result
}

/// What the tests of the custom ops share: reading a tensor's values, and comparing them with a
/// reference within a relative tolerance.
#[cfg(test)]
pub(crate) mod test_util {
    use burn::prelude::*;

    pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Runs `op` and `reference` on `x` and asserts that they give the same values and the same
    /// gradient of `(y · weight).sum()` with respect to `x`, within `tol`; returns the op's values.
    pub(crate) fn assert_same_value_and_grad<const D: usize, const E: usize>(
        what: &str,
        x: &Tensor<D>,
        weight: &Tensor<E>,
        op: impl Fn(Tensor<D>) -> Tensor<E>,
        reference: impl Fn(Tensor<D>) -> Tensor<E>,
        tol: f32,
    ) -> Vec<f32> {
        let run = |f: &dyn Fn(Tensor<D>) -> Tensor<E>| {
            let x = x.clone().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * weight.clone()).sum().backward();
            (values(y), values(x.grad(&grads).unwrap()))
        };
        let (y, dx) = run(&op);
        let (want_y, want_dx) = run(&reference);
        assert_close(&format!("{what} value"), &y, &want_y, tol);
        assert_close(&format!("{what} gradient"), &dx, &want_dx, tol);
        y
    }

    pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{k}]: {g} vs {w}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_at_every_size() {
        for len in [0, 1, PARALLEL_ZEROING_MIN - 1, 3 * PARALLEL_ZEROING_MIN + 5] {
            // a freed buffer of ones first, so that a reused allocation would show
            drop(vec![1.0f32; len]);
            let v: Vec<f32> = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
            let w: Vec<u8> = zeroed(len);
            assert!(w.len() == len && w.iter().all(|&x| x == 0));
        }
    }
}
