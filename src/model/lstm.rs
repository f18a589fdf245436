//! NeuralTalk's fused LSTM cell.
//!
//! One weight matrix `WLSTM` of shape `[1 + D + H, 4H]` holds everything: row 0 is the bias, rows
//! `1..1+D` take the input, rows `1+D..` take the previous hidden state. Column blocks are the gates
//! in the order i, f, o, g. A step is one matrix product, `[1, x, h] · WLSTM`:
//!
//! ```text
//! i, f, o = sigmoid(gates[.., 0..3H]);  g = tanh(gates[.., 3H..4H])
//! c = i * g + f * c_prev
//! h = o * tanh(c)        (tanhC_version = 1)
//! h = o * c              (tanhC_version = 0)
//! ```
//!
//! burn's `Lstm` keeps eight separate `Linear`s (two per gate, two biases each), which neither maps
//! one-to-one onto `WLSTM` nor runs as one product per step; hence this cell.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::sigmoid;

use super::ops::lstm as lstm_op;

/// The fused LSTM cell.
#[derive(Module, Debug)]
pub struct FusedLstm {
    /// `[1 + input_size + hidden_size, 4 * hidden_size]`, NeuralTalk's `WLSTM`.
    pub wlstm: Param<Tensor<2>>,
    pub input_size: usize,
    pub hidden_size: usize,
    /// NeuralTalk's `tanhC_version`: `h = o * tanh(c)` when true, `h = o * c` when false.
    pub tanh_c: bool,
}

/// Hidden and cell state, `[B, H]` each.
#[derive(Debug, Clone)]
pub struct LstmState {
    pub h: Tensor<2>,
    pub c: Tensor<2>,
}

impl FusedLstm {
    /// A new cell with weights uniform in ±1/sqrt(H) and the forget-gate bias at 1.
    pub fn new(input_size: usize, hidden_size: usize, tanh_c: bool, device: &Device) -> Self {
        let rows = 1 + input_size + hidden_size;
        let bound = 1.0 / (hidden_size as f64).sqrt();
        let w = Tensor::<2>::random(
            [rows, 4 * hidden_size],
            Distribution::Uniform(-bound, bound),
            device,
        );
        // bias row: zeros, except the forget gate at 1 (helps early training).
        let mut bias = vec![0.0f32; 4 * hidden_size];
        bias[hidden_size..2 * hidden_size].fill(1.0);
        let bias = Tensor::<1>::from_floats(bias.as_slice(), device).reshape([1, 4 * hidden_size]);
        let w = w.slice_assign([0..1, 0..4 * hidden_size], bias);
        Self::from_weights(w, tanh_c)
    }

    /// A cell from an existing `WLSTM` matrix.
    pub fn from_weights(wlstm: Tensor<2>, tanh_c: bool) -> Self {
        let [rows, cols] = wlstm.dims();
        let hidden_size = cols / 4;
        Self {
            wlstm: Param::from_tensor(wlstm),
            input_size: rows - 1 - hidden_size,
            hidden_size,
            tanh_c,
        }
    }

    /// The zero state for a batch.
    pub fn zero_state(&self, batch: usize, device: &Device) -> LstmState {
        LstmState {
            h: Tensor::zeros([batch, self.hidden_size], device),
            c: Tensor::zeros([batch, self.hidden_size], device),
        }
    }

    fn split_weights(&self) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let w = self.wlstm.val();
        let (d, h) = (self.input_size, self.hidden_size);
        let bias = w.clone().narrow(0, 0, 1);
        let wx = w.clone().narrow(0, 1, d);
        let wh = w.narrow(0, 1 + d, h);
        (bias, wx, wh)
    }

    /// One step: `x` is `[B, D]`. With `state = None` the previous h and c are zero (NeuralTalk's t = 0).
    pub fn step(&self, x: Tensor<2>, state: Option<LstmState>) -> LstmState {
        let w = self.wlstm.val();
        let batch = x.dims()[0];
        let device = x.device();
        let (h_prev, c_prev) = match state {
            Some(s) => (s.h, Some(s.c)),
            None => (Tensor::zeros([batch, self.hidden_size], &device), None),
        };
        let ones = Tensor::<2>::ones([batch, 1], &device);
        let hin = Tensor::cat(vec![ones, x, h_prev], 1);
        gates_to_state(hin.matmul(w), c_prev, self.tanh_c)
    }

    /// Runs a whole sequence `[B, T, D]` from the zero state and returns every hidden state `[B, T, H]`.
    ///
    /// The input contribution of all steps is computed in one product up front; the recurrence
    /// then runs as one op with its own backward ([`super::ops::lstm`]) where the backend has it
    /// (f32 on Flex), else through burn's ops ([`recurrence_composed`]).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (xw, wh) = self.input_projection(x);
        if lstm_op::supports(&xw, &wh) {
            lstm_op::recurrence(xw, wh, self.tanh_c)
        } else {
            recurrence_composed(xw, wh, self.tanh_c)
        }
    }

    /// `x` `[B, T, D]` → `x · Wx + b` `[B, T, 4H]`, and `Wh`.
    fn input_projection(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<2>) {
        let [b, t, d] = x.dims();
        let (bias, wx, wh) = self.split_weights();
        let xw = x.reshape([b * t, d]).matmul(wx) + bias;
        (xw.reshape([b, t, 4 * self.hidden_size]), wh)
    }
}

/// The gate maths of one step: pre-activations `[B, 4H]` (and the previous cell, `None` for zero)
/// → the new state.
fn gates_to_state(gates: Tensor<2>, c_prev: Option<Tensor<2>>, tanh_c: bool) -> LstmState {
    let h = gates.dims()[1] / 4;
    let ifo = sigmoid(gates.clone().narrow(1, 0, 3 * h));
    let g = gates.narrow(1, 3 * h, h).tanh();
    let i = ifo.clone().narrow(1, 0, h);
    let o = ifo.clone().narrow(1, 2 * h, h);
    let mut c = i * g;
    if let Some(c_prev) = c_prev {
        let f = ifo.narrow(1, h, h);
        c = c + f * c_prev;
    }
    let h = if tanh_c {
        o * c.clone().tanh()
    } else {
        o * c.clone()
    };
    LstmState { h, c }
}

/// The recurrence through burn's ops, step by step: `xw` `[B, T, 4H]` (input contribution and
/// bias of every step), `wh` `[H, 4H]` → every hidden state `[B, T, H]`, from the zero state.
/// The path for backends without [`super::ops::lstm`], and its reference in tests.
pub fn recurrence_composed(xw: Tensor<3>, wh: Tensor<2>, tanh_c: bool) -> Tensor<3> {
    let [b, t, g4] = xw.dims();
    let mut outputs = Vec::with_capacity(t);
    let mut state: Option<LstmState> = None;
    for step in 0..t {
        let xt = xw.clone().narrow(1, step, 1).reshape([b, g4]);
        let (gates, c_prev) = match state {
            Some(s) => (xt + s.h.matmul(wh.clone()), Some(s.c)),
            None => (xt, None),
        };
        let next = gates_to_state(gates, c_prev, tanh_c);
        outputs.push(next.h.clone());
        state = Some(next);
    }
    Tensor::stack(outputs, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence form and the step form compute the same thing.
    #[test]
    fn forward_matches_steps() {
        let device = Device::flex();
        device.seed(7);
        for tanh_c in [true, false] {
            let cell = FusedLstm::new(3, 4, tanh_c, &device);
            let x = Tensor::<3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &device);
            let seq = cell.forward(x.clone());
            let mut state = None;
            for t in 0..5 {
                let xt = x.clone().narrow(1, t, 1).reshape([2, 3]);
                let s = cell.step(xt, state);
                let expected = seq.clone().narrow(1, t, 1).reshape([2, 4]);
                let diff = (s.h.clone() - expected).abs().max().into_scalar::<f32>();
                assert!(diff < 1e-5, "t={t} tanh_c={tanh_c} diff={diff}");
                state = Some(s);
            }
        }
    }

    /// A hand-computed step with known weights.
    #[test]
    fn step_matches_hand_computation() {
        let device = Device::flex();
        // D = 1, H = 1: rows [bias, x, h], columns [i, f, o, g]
        let w = Tensor::<2>::from_floats(
            [
                [0.1, 0.2, 0.3, 0.4],
                [0.5, -0.5, 1.0, 2.0],
                [0.0, 0.0, 0.0, 0.0],
            ],
            &device,
        );
        let cell = FusedLstm::from_weights(w, true);
        let s = cell.step(Tensor::from_floats([[1.0]], &device), None);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let c = sig(0.6) * (2.4f32).tanh();
        let h = sig(1.3) * c.tanh();
        assert!((s.c.into_scalar::<f32>() - c).abs() < 1e-6);
        assert!((s.h.into_scalar::<f32>() - h).abs() < 1e-6);
    }
}
