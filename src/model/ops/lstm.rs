//! The recurrence of [`crate::model::lstm::FusedLstm`] as one burn operation with its own backward.
//!
//! Given the input contribution of every step, `xw = [1, x] · [b; Wx]` as `[B, T, 4H]`, and the
//! recurrent weights `Wh` `[H, 4H]`, [`recurrence`] returns every hidden state `[B, T, H]`. Through
//! burn's ops the same recurrence is a dozen small tensor ops per step forward and two dozen
//! backward, each allocating its own buffer (issue 15's profile: about a fifth of a training
//! step); here the forward is one `h · Wh` product into the step's rows of the gate buffer plus one
//! loop over the gates, and the backward one loop and one `dgates · Whᵀ` product per step, then a
//! single product for `dWh`. The gates' `σ` and `tanh` are [`crate::model::fast_cell`]'s
//! vector functions, eight values at a time, rather than libm's, one call per value.
//!
//! The operation is a burn backend extension implemented for Flex (f32) and for Autodiff over
//! Flex, whose backward step is [`LstmBackward`]. Other backends (CUDA through CubeCL, ndarray) and
//! other precisions keep burn's composed ops: [`supports`] says which path a tensor takes.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::{enabled, f32s, tensor, zeroed};
use crate::model::fast_cell::{sigmoid_in_place, tanh_in_place};
use crate::model::gemm::{Layout, matmul_strided};

/// Batch rows (times H) below which a step's gate loop stays on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 4096;

#[backend_extension(Flex, Autodiff)]
pub trait LstmBackend: Backend {
    /// `xw` `[B, T, 4H]` (gates i, f, o, g; bias included), `wh` `[H, 4H]` → hidden states
    /// `[B, T, H]`, from the zero state; `tanh_c` as in [`crate::model::lstm::FusedLstm`].
    fn lstm_recurrence(
        xw: FloatTensor<Self>,
        wh: FloatTensor<Self>,
        tanh_c: bool,
    ) -> FloatTensor<Self>;
}

/// Whether [`FusedLstm::forward`](crate::model::lstm::FusedLstm::forward) runs its recurrence
/// through [`recurrence`]: for f32 tensors on the Flex device (with or without autodiff).
/// Everything else goes through burn's composed ops.
pub fn supports(xw: &Tensor<3>, wh: &Tensor<2>) -> bool {
    enabled() && runs_on(xw, wh)
}

fn runs_on(xw: &Tensor<3>, wh: &Tensor<2>) -> bool {
    xw.device() == Device::flex() && xw.dtype() == DType::F32 && wh.dtype() == DType::F32
}

/// The LSTM recurrence as one op (see the module docs), for f32 tensors on the Flex device.
pub fn recurrence(xw: Tensor<3>, wh: Tensor<2>, tanh_c: bool) -> Tensor<3> {
    assert!(
        runs_on(&xw, &wh),
        "the fused LSTM op runs on f32 Flex tensors"
    );
    Tensor::from_dispatch(<Dispatch as LstmBackend>::lstm_recurrence(
        xw.into_dispatch(),
        wh.into_dispatch(),
        tanh_c,
    ))
}

impl LstmBackend for Flex {
    fn lstm_recurrence(xw: FlexTensor, wh: FlexTensor, tanh_c: bool) -> FlexTensor {
        let dims = Dims::of(&xw, &wh);
        let saved = forward(&f32s(&xw), &f32s(&wh), dims, tanh_c);
        saved.hidden
    }
}

impl<C: CheckpointStrategy> LstmBackend for Autodiff<Flex, C> {
    fn lstm_recurrence(
        xw: FloatTensor<Self>,
        wh: FloatTensor<Self>,
        tanh_c: bool,
    ) -> FloatTensor<Self> {
        let prep = LstmBackward
            .prepare::<C>([xw.node(), wh.node()])
            .compute_bound()
            .stateful();
        let (xw, wh) = (xw.primitive(), wh.primitive());
        let dims = Dims::of(xw, wh);
        let saved = forward(&f32s(xw), &f32s(wh), dims, tanh_c);
        match prep {
            OpsKind::Tracked(prep) => {
                let hidden = saved.hidden.clone();
                prep.finish(
                    BackwardState {
                        saved,
                        wh: wh.clone(),
                        dims,
                        tanh_c,
                    },
                    hidden,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(saved.hidden),
        }
    }
}

/// Sizes of one recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    steps: usize,
    hidden: usize,
}

impl Dims {
    fn of(xw: &FlexTensor, wh: &FlexTensor) -> Self {
        let xw = xw.layout().shape();
        let wh = wh.layout().shape();
        assert!(
            xw.num_dims() == 3 && wh.num_dims() == 2 && wh[1] == 4 * wh[0] && xw[2] == wh[1],
            "fused LSTM: xw {xw:?} must be [B, T, 4H] and Wh {wh:?} [H, 4H]"
        );
        Self {
            batch: xw[0],
            steps: xw[1],
            hidden: wh[0],
        }
    }
}

/// What the forward pass keeps for the backward, all contiguous f32.
#[derive(Debug, Clone)]
struct Saved {
    /// `[B, T, 4H]`: sigmoid(i), sigmoid(f), sigmoid(o), tanh(g).
    gates: FlexTensor,
    /// `[B, T, H]`: the cell states c.
    cells: FlexTensor,
    /// `[B, T, H]`: what the output gate multiplies, tanh(c) or c.
    outs: FlexTensor,
    /// `[B, T, H]`: the hidden states, the op's output.
    hidden: FlexTensor,
}

/// The state [`LstmBackward`] keeps from the forward pass.
#[derive(Debug, Clone)]
struct BackwardState {
    saved: Saved,
    wh: FlexTensor,
    dims: Dims,
    tanh_c: bool,
}

/// The backward step: the gradient of the hidden states → those of `xw` and `Wh`.
#[derive(Debug)]
struct LstmBackward;

impl Backward<Flex, 2> for LstmBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_xw, node_wh] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let BackwardState {
            saved,
            wh,
            dims,
            tanh_c,
        } = ops.state;
        let dgates = backward_gates(&saved, &f32s(&wh), &f32s(&grad), dims, tanh_c);
        if let Some(node) = node_wh {
            let dwh = wh_grad(&saved, &dgates, dims);
            let h = dims.hidden;
            grads.register::<Flex>(node.id, tensor(dwh, [h, 4 * h]));
        }
        if let Some(node) = node_xw {
            let Dims {
                batch: b,
                steps: t,
                hidden: h,
            } = dims;
            grads.register::<Flex>(node.id, tensor(dgates, [b, t, 4 * h]));
        }
    }
}

/// Whether a step's gate loop over `rows` batch rows of `h` values is worth spreading over the
/// rayon threads.
fn parallel(rows: usize, h: usize) -> bool {
    rows * h >= PARALLEL_MIN_ELEMENTS
}

/// One batch row's slices in a forward step: (gates, hidden), (cells, outs).
type ForwardRow<'a> = (
    (&'a mut [f32], &'a mut [f32]),
    (&'a mut [f32], &'a mut [f32]),
);

/// One batch row in a backward step: its index, (its gate gradients, the dh carried from the
/// next step), the dc carried from the next step.
type BackwardRow<'a> = (usize, ((&'a mut [f32], &'a [f32]), &'a mut [f32]));

/// The forward recurrence over contiguous `xw` `[B, T, 4H]` and `wh` `[H, 4H]`.
fn forward(xw: &[f32], wh: &[f32], dims: Dims, tanh_c: bool) -> Saved {
    let Dims {
        batch: b,
        steps: t,
        hidden: h,
    } = dims;
    let g4 = 4 * h;
    let mut gates = xw.to_vec();
    let mut cells = zeroed(b * t * h);
    let mut outs = zeroed(b * t * h);
    let mut hidden = zeroed(b * t * h);
    for s in 0..t {
        if s > 0 {
            // the step's pre-activations += h_{s-1} · Wh, rows T·4H apart in the gate buffer
            matmul_strided(
                (&mut gates[s * g4..], Layout::rows(t * g4)),
                (&hidden[(s - 1) * h..], Layout::rows(t * h)),
                (wh, Layout::rows(g4)),
                (b, h, g4),
                true,
                true,
            );
        }
        let step = |((gates, hidden), (cells, outs)): ForwardRow<'_>| {
            let gates = &mut gates[s * g4..(s + 1) * g4];
            let (before, now) = cells.split_at_mut(s * h);
            let c_prev = (s > 0).then(|| &before[(s - 1) * h..]);
            let c = &mut now[..h];
            let out = &mut outs[s * h..(s + 1) * h];
            let hid = &mut hidden[s * h..(s + 1) * h];
            sigmoid_in_place(&mut gates[..3 * h]);
            tanh_in_place(&mut gates[3 * h..]);
            let (i, rest) = gates.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (o, g) = rest.split_at(h);
            for j in 0..h {
                c[j] = i[j] * g[j] + c_prev.map_or(0.0, |p| f[j] * p[j]);
            }
            out.copy_from_slice(c);
            if tanh_c {
                tanh_in_place(out);
            }
            for j in 0..h {
                hid[j] = o[j] * out[j];
            }
        };
        let (rows, state) = ((t * g4, t * h), t * h);
        if parallel(b, h) {
            let state = cells.par_chunks_mut(state).zip(outs.par_chunks_mut(state));
            let rows = gates
                .par_chunks_mut(rows.0)
                .zip(hidden.par_chunks_mut(rows.1));
            rows.zip(state).for_each(step);
        } else {
            let state = cells.chunks_mut(state).zip(outs.chunks_mut(state));
            let rows = gates.chunks_mut(rows.0).zip(hidden.chunks_mut(rows.1));
            rows.zip(state).for_each(step);
        }
    }
    let shape = [b, t, h];
    Saved {
        gates: tensor(gates, [b, t, g4]),
        cells: tensor(cells, shape),
        outs: tensor(outs, shape),
        hidden: tensor(hidden, shape),
    }
}

/// The backward recurrence: `dhidden` `[B, T, H]` → the gradient of the pre-activations, which is
/// that of `xw`, `[B, T, 4H]`.
fn backward_gates(
    saved: &Saved,
    wh: &[f32],
    dhidden: &[f32],
    dims: Dims,
    tanh_c: bool,
) -> Vec<f32> {
    let Dims {
        batch: b,
        steps: t,
        hidden: h,
    } = dims;
    let g4 = 4 * h;
    let gates = f32s(&saved.gates);
    let cells = f32s(&saved.cells);
    let outs = f32s(&saved.outs);
    let mut dgates = zeroed(b * t * g4);
    // gradients flowing into step s from step s + 1: dh (through Wh) and dc (through f)
    let mut dh_next = vec![0.0f32; b * h];
    let mut dc_next = vec![0.0f32; b * h];
    for s in (0..t).rev() {
        let step = |(row, ((dgates, dh_next), dc_next)): BackwardRow<'_>| {
            let at = |len: usize| row * t * len + s * len..row * t * len + (s + 1) * len;
            let gates = &gates[at(g4)];
            let out = &outs[at(h)];
            let dh_out = &dhidden[at(h)];
            let c_prev = (s > 0).then(|| &cells[at(h).start - h..at(h).start]);
            let dgates = &mut dgates[s * g4..(s + 1) * g4];
            let (i, rest) = gates.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (o, g) = rest.split_at(h);
            for j in 0..h {
                let dh = dh_out[j] + dh_next[j];
                let dout = if tanh_c { 1.0 - out[j] * out[j] } else { 1.0 };
                let dc = dc_next[j] + dh * o[j] * dout;
                let (di, dg) = (dc * g[j], dc * i[j]);
                let df = c_prev.map_or(0.0, |p| dc * p[j]);
                let d_o = dh * out[j];
                dc_next[j] = dc * f[j];
                dgates[j] = di * i[j] * (1.0 - i[j]);
                dgates[h + j] = df * f[j] * (1.0 - f[j]);
                dgates[2 * h + j] = d_o * o[j] * (1.0 - o[j]);
                dgates[3 * h + j] = dg * (1.0 - g[j] * g[j]);
            }
        };
        if parallel(b, h) {
            let rows = dgates.par_chunks_mut(t * g4).zip(dh_next.par_chunks(h));
            rows.zip(dc_next.par_chunks_mut(h))
                .enumerate()
                .for_each(step);
        } else {
            let rows = dgates.chunks_mut(t * g4).zip(dh_next.chunks(h));
            rows.zip(dc_next.chunks_mut(h)).enumerate().for_each(step);
        }
        if s > 0 {
            // dh_{s-1} = dgates_s · Whᵀ
            matmul_strided(
                (&mut dh_next, Layout::rows(h)),
                (&dgates[s * g4..], Layout::rows(t * g4)),
                (wh, Layout::transposed(g4)),
                (b, g4, h),
                false,
                true,
            );
        }
    }
    dgates
}

/// `dWh = Σ over rows and steps s ≥ 1 of h_{s-1}ᵀ · dgates_s`, as one product over a copy of the
/// hidden states shifted one step later (zeros at s = 0).
fn wh_grad(saved: &Saved, dgates: &[f32], dims: Dims) -> Vec<f32> {
    let Dims {
        batch: b,
        steps: t,
        hidden: h,
    } = dims;
    let hidden = f32s(&saved.hidden);
    let mut prev = zeroed(b * t * h);
    for (dst, src) in prev.chunks_mut(t * h).zip(hidden.chunks(t * h)) {
        dst[h..].copy_from_slice(&src[..(t - 1) * h]);
    }
    let mut dwh = vec![0.0f32; h * 4 * h];
    matmul_strided(
        (&mut dwh, Layout::rows(4 * h)),
        (&prev, Layout::transposed(h)),
        (dgates, Layout::rows(4 * h)),
        (h, b * t, 4 * h),
        false,
        true,
    );
    dwh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lstm::{FusedLstm, recurrence_composed};
    use crate::model::ops::test_util::{assert_close, values};
    use crate::model::ops::with_burn_ops;
    use crate::model::{CaptionerConfig, EncoderConfig};
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::Distribution;

    /// (batch, steps, input, hidden): odd sizes, one step, one row, and a batch large enough for
    /// the gate loops to run on the rayon threads.
    const SIZES: [(usize, usize, usize, usize); 5] = [
        (3, 5, 7, 5),
        (2, 1, 3, 4),
        (1, 4, 2, 3),
        (5, 9, 6, 11),
        (40, 3, 5, 128),
    ];

    /// The op and burn's ops give the same hidden states and the same gradients with respect to
    /// `xw` and `Wh`, for both cell outputs; without autodiff too.
    #[test]
    fn op_matches_composed_ops_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(17);
        for (b, t, _, h) in SIZES {
            for tanh_c in [true, false] {
                let what = format!("B={b} T={t} H={h} tanh_c={tanh_c}");
                let xw =
                    Tensor::<3>::random([b, t, 4 * h], Distribution::Normal(0.0, 1.0), &device);
                let wh = Tensor::<2>::random([h, 4 * h], Distribution::Normal(0.0, 0.5), &device);
                let weight =
                    Tensor::<3>::random([b, t, h], Distribution::Normal(0.0, 1.0), &device);
                let run = |fused: bool| {
                    let xw = xw.clone().require_grad();
                    let wh = wh.clone().require_grad();
                    let hidden = if fused {
                        recurrence(xw.clone(), wh.clone(), tanh_c)
                    } else {
                        recurrence_composed(xw.clone(), wh.clone(), tanh_c)
                    };
                    let grads = (hidden.clone() * weight.clone()).sum().backward();
                    (
                        values(hidden),
                        values(xw.grad(&grads).unwrap()),
                        // burn's ops never touch Wh in a one-step sequence: no gradient, zero
                        wh.grad(&grads).map_or_else(|| vec![0.0; 4 * h * h], values),
                    )
                };
                let (hidden, dxw, dwh) = run(true);
                let (want_hidden, want_dxw, want_dwh) = run(false);
                assert_close(&format!("{what} hidden"), &hidden, &want_hidden, 1e-5);
                assert_close(&format!("{what} dxw"), &dxw, &want_dxw, 1e-4);
                assert_close(&format!("{what} dWh"), &dwh, &want_dwh, 1e-4);

                let inner = recurrence(xw.clone().inner(), wh.clone().inner(), tanh_c);
                assert_close(&format!("{what} no autodiff"), &values(inner), &hidden, 0.0);
            }
        }
    }

    /// Through the whole cell: the same outputs and the same gradients for the input and for
    /// `WLSTM`, whose rows hold the bias, `Wx` and `Wh`.
    #[test]
    fn cell_gives_the_same_gradients_for_input_and_all_weights() {
        let device = Device::flex().autodiff();
        device.seed(23);
        for (b, t, d, h) in SIZES {
            for tanh_c in [true, false] {
                let what = format!("B={b} T={t} D={d} H={h} tanh_c={tanh_c}");
                let cell = FusedLstm::new(d, h, tanh_c, &device);
                let x = Tensor::<3>::random([b, t, d], Distribution::Normal(0.0, 1.0), &device);
                let weight =
                    Tensor::<3>::random([b, t, h], Distribution::Normal(0.0, 1.0), &device);
                let run = || {
                    let x = x.clone().require_grad();
                    let hidden = cell.forward(x.clone());
                    let grads = (hidden.clone() * weight.clone()).sum().backward();
                    let dw = cell.wlstm.val().grad(&grads).unwrap();
                    (values(hidden), values(x.grad(&grads).unwrap()), values(dw))
                };
                let (hidden, dx, dw) = run();
                let (want_hidden, want_dx, want_dw) = with_burn_ops(run);
                assert_close(&format!("{what} hidden"), &hidden, &want_hidden, 1e-5);
                assert_close(&format!("{what} dx"), &dx, &want_dx, 1e-4);
                assert_close(&format!("{what} dWLSTM"), &dw, &want_dw, 1e-4);
            }
        }
    }

    /// A few Adam steps of the captioner give the same losses with the op as through burn's ops.
    #[test]
    fn training_steps_follow_the_same_loss_trajectory() {
        let device = Device::flex().autodiff();
        device.seed(29);
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 6,
                backbone: "test".into(),
            },
            11,
        )
        .with_embed_size(9)
        .with_hidden_size(13)
        .with_dropout(0.0);
        let model = config.init(&device);
        let features = Tensor::<2>::random([3, 6], Distribution::Normal(0.0, 1.0), &device);
        let inputs =
            Tensor::<2, Int>::from_ints([[0, 2, 3, 4], [0, 5, 6, 0], [0, 7, 0, 0]], &device);
        let targets =
            Tensor::<2, Int>::from_ints([[2, 3, 4, 0], [5, 6, 0, 0], [7, 0, 0, 0]], &device);
        let mask = Tensor::<2>::from_floats(
            [
                [1.0, 1.0, 1.0, 1.0],
                [1.0, 1.0, 1.0, 0.0],
                [1.0, 1.0, 0.0, 0.0],
            ],
            &device,
        );
        let train = || {
            let mut model = model.clone();
            let mut optim = AdamConfig::new().init();
            let mut losses = Vec::new();
            for _ in 0..6 {
                let loss = model.loss(
                    features.clone(),
                    inputs.clone(),
                    targets.clone(),
                    mask.clone(),
                );
                losses.push(loss.clone().into_scalar::<f32>());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(0.05, model, grads);
            }
            losses
        };
        let losses = train();
        let want = with_burn_ops(train);
        assert_close("losses", &losses, &want, 1e-4);
        assert!(losses[5] < losses[0], "{losses:?}");
    }
}
