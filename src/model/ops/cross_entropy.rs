//! The captioner's training loss, masked cross-entropy over the vocabulary, as one burn operation
//! with its own backward.
//!
//! Through burn's ops the loss is a log-softmax (max, subtract, exp, sum, log, subtract), a gather
//! of the targets' log-probabilities, a mask and a sum: a dozen passes over the `[B, T, V]` scores,
//! each allocating its own buffer, and as many backward (issue 15's profile: the element-wise
//! work on the rayon workers grows with the batch). Here the forward is one pass per row (max,
//! `exp` into a probability buffer, its sum, the target's negative log-likelihood), and the
//! backward turns that buffer in place into the scores' gradient,
//! `mask · g / Σ mask · (softmax − onehot(target))`.
//!
//! Implemented for Flex (f32) and for Autodiff over Flex ([`NllBackward`]); [`supports`] says
//! which path the scores take; other devices and precisions keep [`masked_nll_composed`].

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::log_softmax;
use rayon::prelude::*;

use super::{enabled, f32s, tensor};
use crate::model::fast_cell::exp_in_place;

/// Score values (rows × vocabulary) below which the loss stays on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

#[backend_extension(Flex, Autodiff)]
pub trait NllBackend: Backend {
    /// `scores` `[B, T, V]`, `targets` `[B, T]` (word ids below V), `mask` `[B, T]` →
    /// `[1]`: `−Σ mask · log_softmax(scores)[target] / max(Σ mask, 1)`.
    fn masked_nll(
        scores: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Whether [`masked_nll`] runs as the one op: f32 scores and mask on the Flex device.
pub fn supports(scores: &Tensor<3>, mask: &Tensor<2>) -> bool {
    enabled()
        && scores.device() == Device::flex()
        && scores.dtype() == DType::F32
        && mask.dtype() == DType::F32
}

/// Masked cross-entropy: the mean negative log-likelihood of `targets` `[B, T]` under the scores
/// `[B, T, V]` over the positions where `mask` `[B, T]` is 1. As one op where [`supports`]
/// allows it, else through [`masked_nll_composed`].
pub fn masked_nll(scores: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<1> {
    if !supports(&scores, &mask) {
        return masked_nll_composed(scores, targets, mask);
    }
    Tensor::from_dispatch(<Dispatch as NllBackend>::masked_nll(
        scores.into_dispatch(),
        targets.into_dispatch(),
        mask.into_dispatch(),
    ))
}

/// The same loss through burn's ops: every other device, and the reference of the tests.
pub fn masked_nll_composed(
    scores: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
) -> Tensor<1> {
    let [b, t] = targets.dims();
    let logp = log_softmax(scores, 2);
    let picked = logp.gather(2, targets.unsqueeze_dim(2)).reshape([b, t]);
    let mask = mask.cast(picked.dtype());
    let total = mask.clone().sum();
    (picked * mask).sum().neg() / total.clamp_min(1.0)
}

impl NllBackend for Flex {
    fn masked_nll(scores: FlexTensor, targets: FlexTensor, mask: FlexTensor) -> FlexTensor {
        let rows = Rows::of(&scores, &targets, &mask);
        let (loss, _) = forward(&f32s(&scores), &rows);
        tensor(vec![loss], [1])
    }
}

impl<C: CheckpointStrategy> NllBackend for Autodiff<Flex, C> {
    fn masked_nll(
        scores: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = NllBackward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful();
        let rows = Rows::of(scores.primitive(), &targets, mask.primitive());
        let (loss, probs) = forward(&f32s(scores.primitive()), &rows);
        let shape = scores.primitive().layout().shape().to_vec();
        let loss = tensor(vec![loss], [1]);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(
                BackwardState {
                    probs,
                    rows,
                    shape: [shape[0], shape[1], shape[2]],
                },
                loss,
            ),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        }
    }
}

/// The rows of one loss: the vocabulary size, each row's target and mask weight, and the sum of
/// the weights.
#[derive(Debug, Clone)]
struct Rows {
    vocab: usize,
    targets: Vec<usize>,
    mask: Vec<f32>,
    total: f32,
}

impl Rows {
    fn of(scores: &FlexTensor, targets: &FlexTensor, mask: &FlexTensor) -> Self {
        let shape = scores.layout().shape();
        let (t, m) = (targets.layout().shape(), mask.layout().shape());
        assert!(
            shape.num_dims() == 3
                && t.num_dims() == 2
                && m.num_dims() == 2
                && t[0] == shape[0]
                && t[1] == shape[1]
                && m[0] == shape[0]
                && m[1] == shape[1],
            "masked cross-entropy: scores {shape:?}, targets {t:?} and mask {m:?} don't fit"
        );
        let vocab = shape[2];
        let targets: Vec<usize> = targets
            .to_contiguous()
            .into_data()
            .iter::<i64>()
            .map(|id| {
                usize::try_from(id)
                    .ok()
                    .filter(|&id| id < vocab)
                    .unwrap_or_else(|| {
                        panic!("masked cross-entropy: target {id} outside 0..{vocab}")
                    })
            })
            .collect();
        let mask = f32s(mask).into_owned();
        let total = mask.iter().sum::<f32>().max(1.0);
        Self {
            vocab,
            targets,
            mask,
            total,
        }
    }
}

/// The loss and every row's softmax, `[rows, V]`.
fn forward(scores: &[f32], rows: &Rows) -> (f32, Vec<f32>) {
    let v = rows.vocab;
    let mut probs = scores.to_vec();
    // each row: softmax in place, and its target's negative log-likelihood times its weight
    let row = |(probs, (&target, &weight)): (&mut [f32], (&usize, &f32))| -> f64 {
        let max = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let picked = probs[target] - max;
        for p in probs.iter_mut() {
            *p -= max;
        }
        exp_in_place(probs);
        let sum: f32 = probs.iter().sum();
        let scale = 1.0 / sum;
        for p in probs.iter_mut() {
            *p *= scale;
        }
        if weight == 0.0 {
            0.0
        } else {
            f64::from(weight) * f64::from(sum.ln() - picked)
        }
    };
    let weights = rows.targets.iter().zip(&rows.mask);
    let total: f64 = if probs.len() >= PARALLEL_MIN_ELEMENTS {
        probs
            .par_chunks_mut(v)
            .zip(rows.targets.par_iter().zip(rows.mask.par_iter()))
            .map(row)
            .sum()
    } else {
        probs.chunks_mut(v).zip(weights).map(row).sum()
    };
    ((total / f64::from(rows.total)) as f32, probs)
}

/// The state [`NllBackward`] keeps: the softmax rows (turned into the gradient in place).
#[derive(Debug, Clone)]
struct BackwardState {
    probs: Vec<f32>,
    rows: Rows,
    shape: [usize; 3],
}

/// The backward step: the loss's gradient (a scalar) → that of the scores.
#[derive(Debug)]
struct NllBackward;

impl Backward<Flex, 1> for NllBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node else { return };
        let BackwardState {
            mut probs,
            rows,
            shape,
        } = ops.state;
        let g = f32s(&grad)[0] / rows.total;
        let v = rows.vocab;
        let row = |(probs, (&target, &weight)): (&mut [f32], (&usize, &f32))| {
            let coef = g * weight;
            if coef == 0.0 {
                probs.fill(0.0);
                return;
            }
            probs[target] -= 1.0;
            for p in probs.iter_mut() {
                *p *= coef;
            }
        };
        if probs.len() >= PARALLEL_MIN_ELEMENTS {
            probs
                .par_chunks_mut(v)
                .zip(rows.targets.par_iter().zip(rows.mask.par_iter()))
                .for_each(row);
        } else {
            let weights = rows.targets.iter().zip(&rows.mask);
            probs.chunks_mut(v).zip(weights).for_each(row);
        }
        grads.register::<Flex>(node.id, tensor(probs, shape));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{assert_close, assert_same_value_and_grad, values};
    use burn::tensor::Distribution;

    /// The op and burn's ops give the same loss and the same gradient of the scores, with masked
    /// rows, a fully masked batch, and rows enough for the rayon path; without autodiff too.
    #[test]
    fn op_matches_composed_ops_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        device.seed(31);
        for (b, t, v, masked_out) in [
            (3, 5, 7, 4),
            (2, 1, 95, 0),
            (4, 3, 6, 12),
            (64, 17, 95, 300),
        ] {
            let what = format!("B={b} T={t} V={v}");
            let scores = Tensor::<3>::random([b, t, v], Distribution::Normal(0.0, 3.0), &device);
            let ids: Vec<i64> = (0..b * t).map(|k| ((k * 7 + 3) % v) as i64).collect();
            let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
            let mask: Vec<f32> = (0..b * t)
                .map(|k| if k < masked_out { 0.0 } else { 1.0 })
                .collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
            let weight = Tensor::<1>::from_floats([1.7], &device);
            let loss = assert_same_value_and_grad(
                &what,
                &scores,
                &weight,
                |s| masked_nll(s, targets.clone(), mask.clone()),
                |s| masked_nll_composed(s, targets.clone(), mask.clone()),
                1e-5,
            );

            let inner = masked_nll(
                scores.clone().inner(),
                targets.clone().inner(),
                mask.clone().inner(),
            );
            assert_close(&format!("{what} no autodiff"), &values(inner), &loss, 0.0);
        }
    }
}
