//! The CPU fast path for decoding: the decoder's weights copied once into packed buffers (`f32`,
//! or `f16` at [`Precision::F16`], which halves the bytes a step reads; see [`super::packed`]),
//! and every step run on buffers that are reused from step to step. Every product streams each
//! matrix once for all its rows: a one-image step takes the time to read the weights, a batch's
//! step the time of its multiply-adds (on every core when the batch is wider than a beam).
//!
//! Why: a decoding step is a handful of small products (`[n, 1 + D + H] · WLSTM`, `[n, H] · Wd`).
//! Through burn each op pays for dispatch, shape checks, fresh allocations and a copy out of the
//! tensor to rank the words; with NeuralTalk's sizes that overhead was most of the step. Here a
//! step is two accumulating products into a preallocated gates buffer, the gate nonlinearities in
//! one pass, one product for the scores, and then either a log-softmax in place (beam search) or,
//! for greedy decoding, each row's best word and its log-probability from two passes over its
//! scores ([`Stepper::step_best`]: no logarithm per word, no ranking).
//!
//! Semantics are the burn path's by construction: the beam bookkeeping is
//! [`super::decode::beam_search`], shared with [`super::decode::decode`]; only the step differs,
//! and the tests check that both give the same captions and log-probabilities.

use burn::prelude::*;

use super::captioner::Captioner;
use super::decode::{Caption, DecodeOptions, Stepper, beam_search};
use super::fast_cell::{cell_row, exp_in_place};
use super::guide::{ConceptBias, Guidance};
use super::packed::{SERIAL_ROWS, Weights};
use super::precision::Precision;
use crate::error::{Error, Result};
use crate::util::on_pool;

/// The decoder's weights as plain buffers, ready to decode on the CPU.
#[derive(Debug, Clone)]
pub struct FastDecoder {
    f: usize,
    d: usize,
    h: usize,
    v: usize,
    tanh_c: bool,
    precision: Precision,
    /// `[F, D]`
    we: Weights,
    /// `[D]`
    be: Vec<f32>,
    /// `[V, D]`: the word embeddings, one row read per step
    ws: Weights,
    /// `[4H]`: row 0 of WLSTM
    bias: Vec<f32>,
    /// `[D, 4H]`: the input rows of WLSTM
    wx: Weights,
    /// `[H, 4H]`: the hidden rows of WLSTM
    wh: Weights,
    /// `[H, V]`
    wd: Weights,
    /// `[V]`
    bd: Vec<f32>,
    /// The head concept-guided decoding reads, `[D, V]` (`[F, V]` when it reads the feature: the
    /// flag) and `[V]`: the guide head (on the feature) when the model has one, else the concept
    /// head, when it has one.
    concept: Option<(Weights, Vec<f32>, bool)>,
}

pub(crate) fn floats<const D: usize>(t: Tensor<D>, name: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|error| Error::Backend {
            what: format!("the decoder weight {name}"),
            error,
        })
}

impl FastDecoder {
    /// Copies the decoder's weights out of a model (the CNN, if any, stays with the model), in `f32`.
    pub fn new(model: &Captioner) -> Result<Self> {
        Self::with_precision(model, Precision::F32)
    }

    /// Copies the decoder's weights out of a model and holds its matrices in `precision` (biases
    /// stay `f32`; the arithmetic is `f32` either way). A model already cast to `f16` decodes the
    /// same at either precision.
    pub fn with_precision(model: &Captioner, precision: Precision) -> Result<Self> {
        let [f, d] = model.we.dims();
        let [v, _] = model.ws.dims();
        let h = model.lstm.hidden_size;
        let wlstm = floats(model.lstm.wlstm.val(), "lstm.wlstm")?;
        let row = 4 * h;
        if wlstm.len() != (1 + d + h) * row || model.lstm.input_size != d {
            return Err(Error::Internal(format!(
                "lstm.wlstm has {} values, expected (1 + {d} + {h}) × {row}",
                wlstm.len()
            )));
        }
        let half = precision == Precision::F16;
        let weights = |values: Vec<f32>, dims| Weights::new(values, dims, half);
        Ok(Self {
            f,
            d,
            h,
            v,
            tanh_c: model.lstm.tanh_c,
            precision,
            we: weights(floats(model.we.val(), "we")?, (f, d)),
            be: floats(model.be.val(), "be")?,
            ws: weights(floats(model.ws.val(), "ws")?, (v, d)),
            bias: wlstm[..row].to_vec(),
            wx: weights(wlstm[row..(1 + d) * row].to_vec(), (d, row)),
            wh: weights(wlstm[(1 + d) * row..].to_vec(), (h, row)),
            wd: weights(floats(model.wd.val(), "wd")?, (h, v)),
            bd: floats(model.bd.val(), "bd")?,
            concept: match (&model.guide_head, &model.concept) {
                (Some(head), _) => Some((
                    weights(floats(head.weight.val(), "guide_head.weight")?, (f, v)),
                    floats(head.bias.val(), "guide_head.bias")?,
                    true,
                )),
                (None, Some(head)) => Some((
                    weights(
                        floats(head.wc.val(), "concept.wc")?,
                        (if head.on_feature { f } else { d }, v),
                    ),
                    floats(head.bc.val(), "concept.bc")?,
                    head.on_feature,
                )),
                (None, None) => None,
            },
        })
    }

    /// The precision the matrices are held in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Bytes of the matrices every decoding step reads (WLSTM's input and hidden rows and `Wd`):
    /// a one-image step cannot take less time than reading these from memory.
    pub fn step_bytes(&self) -> usize {
        self.wx.bytes() + self.wh.bytes() + self.wd.bytes()
    }

    /// Bytes the first step (the projected image) reads: `We` and WLSTM's input rows.
    pub fn start_bytes(&self) -> usize {
        self.we.bytes() + self.wx.bytes()
    }

    /// Feature length F.
    pub fn feature_dim(&self) -> usize {
        self.f
    }

    /// Bytes held by the weights.
    pub fn weight_bytes(&self) -> usize {
        [&self.we, &self.ws, &self.wx, &self.wh, &self.wd]
            .iter()
            .map(|w| w.bytes())
            .sum::<usize>()
            + 4 * (self.be.len() + self.bias.len() + self.bd.len())
    }

    /// Decodes `rows` feature vectors (`features` is `rows × F`, row-major) into one caption each,
    /// with the same semantics as [`super::decode::decode`].
    pub fn decode(&self, features: &[f32], options: DecodeOptions) -> Result<Vec<Caption>> {
        self.decode_guided(features, options, Guidance::default())
    }

    /// [`FastDecoder::decode`] with what the model says about its words for concept guidance
    /// (see [`ConceptBias`]).
    pub fn decode_guided(
        &self,
        features: &[f32],
        options: DecodeOptions,
        guidance: Guidance<'_>,
    ) -> Result<Vec<Caption>> {
        on_pool(|| self.decode_on_pool(features, options, guidance))
    }

    /// [`FastDecoder::decode_guided`], on a rayon worker.
    fn decode_on_pool(
        &self,
        features: &[f32],
        options: DecodeOptions,
        guidance: Guidance<'_>,
    ) -> Result<Vec<Caption>> {
        if !features.len().is_multiple_of(self.f.max(1)) {
            return Err(Error::Invalid(format!(
                "features have {} values, not a multiple of the model's feature length {}",
                features.len(),
                self.f
            )));
        }
        let batch = features.len() / self.f.max(1);
        if batch == 0 {
            return Ok(Vec::new());
        }
        let guided = self.concept.is_some() && options.concept_weight() > 0.0;
        let threads = rayon::current_num_threads().min(batch);
        if !guided
            && options.beam_size <= 1
            && batch >= SPLIT_ROWS
            && threads > 1
            && self.step_bytes() <= SPLIT_MAX_BYTES
        {
            return Ok(self.greedy_split(features, options, threads));
        }
        let mut stepper = FastStepper::new(self, batch, true);
        stepper.start(features);
        let bias = match &self.concept {
            Some((wc, bc, on_feature)) if options.concept_weight() > 0.0 => {
                // the concept logits of the features, or of the projected images `x0`, which
                // `start` left in `x`
                let mut logits = bc.repeat(batch);
                wc.mul_acc(
                    &mut logits,
                    if *on_feature { features } else { &stepper.x },
                    batch,
                );
                ConceptBias::new(options.concept_weight(), &logits, self.v, guidance)
            }
            _ => None,
        };
        Ok(beam_search(
            &mut stepper,
            batch,
            self.v,
            options,
            bias.as_ref(),
        ))
    }
}

/// Unguided greedy batches of at least this many images are split over the threads by image
/// ([`FastDecoder::greedy_split`]) when a step's matrices take at most [`SPLIT_MAX_BYTES`].
const SPLIT_ROWS: usize = 4;

/// A step's matrices small enough to stay in a core's own cache (the `shapes` model's take
/// 0.45 MB): each thread reading all of them costs nothing. Larger ones (NeuralTalk's 13.6 MB)
/// come from memory or the shared cache, and the products split their columns instead, so that
/// each thread reads only its share (under load, a split by image was slower there).
const SPLIT_MAX_BYTES: usize = 1 << 20;

impl FastDecoder {
    /// Unguided greedy decoding of a batch split by image into `parts` runs, one per rayon
    /// thread, each on its own stepper with its products on its own thread.
    ///
    /// Greedy captions are independent from image to image, and a row's products do not depend
    /// on the rows beside it ([`super::packed`]), so the captions are the one-stepper batch's bit
    /// for bit; but the threads meet once per batch rather than at every product of every step
    /// (three a step when the products split their columns), and the per-row work between the
    /// products (the embedding rows, the cell, each row's best word) is split as well.
    fn greedy_split(&self, features: &[f32], options: DecodeOptions, parts: usize) -> Vec<Caption> {
        use rayon::prelude::*;
        let batch = features.len() / self.f.max(1);
        let chunk = batch.div_ceil(parts.max(1));
        let captions: Vec<Vec<Caption>> = features
            .par_chunks(chunk * self.f)
            .map(|part| {
                let n = part.len() / self.f.max(1);
                let mut stepper = FastStepper::new(self, n, false);
                stepper.start(part);
                beam_search(&mut stepper, n, self.v, options, None)
            })
            .collect();
        captions.into_iter().flatten().collect()
    }
}

/// Decodes `features` `[B, F]` with the fast path when there is one, else with burn's ops;
/// `guidance` as in [`super::decode::decode_guided`].
pub fn decode_with(
    fast: Option<&FastDecoder>,
    model: &Captioner,
    features: Tensor<2>,
    options: DecodeOptions,
    guidance: Guidance<'_>,
) -> Result<Vec<Caption>> {
    match fast {
        Some(fast) => {
            let data = features
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|error| Error::Backend {
                    what: "the image features".into(),
                    error,
                })?;
            fast.decode_guided(&data, options, guidance)
        }
        None => Ok(super::decode::decode_guided(
            model, features, options, guidance,
        )),
    }
}

/// The state of one decoding run, with buffers reused across steps.
struct FastStepper<'a> {
    w: &'a FastDecoder,
    /// Whether a product may split its columns over the threads (else the caller splits the
    /// batch: [`FastDecoder::greedy_split`]).
    threaded: bool,
    /// `[rows, H]` hidden and cell state of the current rows.
    h: Vec<f32>,
    c: Vec<f32>,
    // scratch, grown as needed
    x: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    gates: Vec<f32>,
    /// `[rows, V]` word scores of the last step
    scores: Vec<f32>,
}

impl<'a> FastStepper<'a> {
    fn new(w: &'a FastDecoder, batch: usize, threaded: bool) -> Self {
        Self {
            w,
            threaded,
            h: Vec::with_capacity(batch * w.h),
            c: Vec::with_capacity(batch * w.h),
            x: Vec::new(),
            h_prev: Vec::new(),
            c_prev: Vec::new(),
            gates: Vec::new(),
            scores: Vec::new(),
        }
    }

    /// t = 0: the projected image from the zero state.
    fn start(&mut self, features: &[f32]) {
        let w = self.w;
        let n = features.len() / w.f;
        self.x.resize(n * w.d, 0.0);
        for row in self.x.chunks_exact_mut(w.d) {
            row.copy_from_slice(&w.be);
        }
        mul(&w.we, self.threaded, &mut self.x, features, n);
        // h_prev = 0: gates = bias + x · Wx; c_prev = 0
        self.gates_from_x(n);
        self.cell(n, false);
    }

    /// `gates = bias + x · Wx` for `n` rows of `x`.
    fn gates_from_x(&mut self, n: usize) {
        let w = self.w;
        let row = 4 * w.h;
        self.gates.resize(n * row, 0.0);
        for g in self.gates.chunks_exact_mut(row) {
            g.copy_from_slice(&w.bias);
        }
        mul(&w.wx, self.threaded, &mut self.gates, &self.x, n);
    }

    /// Gates → new `h`, `c` (`with_prev`: add `f * c_prev`).
    fn cell(&mut self, n: usize, with_prev: bool) {
        let hs = self.w.h;
        self.h.resize(n * hs, 0.0);
        self.c.resize(n * hs, 0.0);
        let rows = self
            .gates
            .chunks_exact(4 * hs)
            .zip(self.c.chunks_exact_mut(hs).zip(self.h.chunks_exact_mut(hs)));
        for (r, (g, (c, h))) in rows.enumerate().take(n) {
            let prev = with_prev.then(|| &self.c_prev[r * hs..(r + 1) * hs]);
            cell_row(g, prev, c, h, self.w.tanh_c);
        }
    }
}

impl FastStepper<'_> {
    /// Runs the LSTM on the selected rows and leaves their word scores in `self.scores`; returns
    /// the number of rows, or `None` for a row or word out of range.
    fn advance(&mut self, rows: &[usize], prev: &[usize]) -> Option<usize> {
        let w = self.w;
        let (n, d, hs, v) = (rows.len(), w.d, w.h, w.v);
        // gather inputs and the selected rows' state
        self.x.resize(n * d, 0.0);
        self.h_prev.resize(n * hs, 0.0);
        self.c_prev.resize(n * hs, 0.0);
        for (a, (&r, &word)) in rows.iter().zip(prev).enumerate() {
            w.ws.row_into(word, &mut self.x[a * d..(a + 1) * d])?;
            self.h_prev[a * hs..(a + 1) * hs].copy_from_slice(self.h.get(r * hs..(r + 1) * hs)?);
            self.c_prev[a * hs..(a + 1) * hs].copy_from_slice(self.c.get(r * hs..(r + 1) * hs)?);
        }
        self.gates_from_x(n);
        mul(&w.wh, self.threaded, &mut self.gates, &self.h_prev, n);
        self.cell(n, true);

        self.scores.resize(n * v, 0.0);
        for row in self.scores.chunks_exact_mut(v) {
            row.copy_from_slice(&w.bd);
        }
        mul(&w.wd, self.threaded, &mut self.scores, &self.h, n);
        Some(n)
    }
}

/// `dst += lhs · w` for `n` rows, its columns split over the threads when `threaded` allows.
fn mul(w: &Weights, threaded: bool, dst: &mut [f32], lhs: &[f32], n: usize) {
    if threaded {
        w.mul_acc(dst, lhs, n);
    } else {
        w.mul_acc_serial(dst, lhs, n);
    }
}

/// `y ← log(1e-20 + softmax(y))`, NeuralTalk's word scores.
fn log_softmax(y: &mut [f32]) {
    let max = y.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = if y.iter().all(|v| v.is_finite()) {
        exp_shifted_sum(y, max)
    } else {
        // NaN or infinite scores: libm's `exp`, whose NaNs the vector one clamps away
        let mut sum = 0.0f32;
        for y in y.iter_mut() {
            *y = (*y - max).exp();
            sum += *y;
        }
        sum
    };
    for y in y.iter_mut() {
        *y = (*y / sum + 1e-20).ln();
    }
}

/// `e ← exp(e − max)` eight values at a time ([`exp_in_place`]), and the softmax's sum: eight
/// running sums (value `j` into sum `j mod 8`) added in order at the end. [`log_softmax`] and
/// [`best_word`] both sum here, so their log-probabilities agree bit for bit.
fn exp_shifted_sum(e: &mut [f32], max: f32) -> f32 {
    for v in e.iter_mut() {
        *v -= max;
    }
    exp_in_place(e);
    let mut lanes = [0.0f32; 8];
    for chunk in e.chunks(8) {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

/// The word [`log_softmax`] ranks first (ties: the lower index) and its value, from one pass over
/// the scores for the maximum and one for the softmax's sum (its exponentials into `e`, a
/// scratch row): no row of logarithms, no ranking.
fn best_word(y: &[f32], e: &mut Vec<f32>) -> (usize, f32) {
    let (mut arg, mut max, mut finite) = (0, f32::NEG_INFINITY, true);
    for (j, &s) in y.iter().enumerate() {
        finite &= s.is_finite();
        if s > max {
            (arg, max) = (j, s);
        }
    }
    if !finite || y.is_empty() {
        // NaN or infinite scores: rank what `log_softmax` gives
        let mut logp = y.to_vec();
        log_softmax(&mut logp);
        let w = (0..y.len())
            .max_by(|&a, &b| logp[a].total_cmp(&logp[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        return (w, logp.get(w).copied().unwrap_or(f32::NEG_INFINITY));
    }
    // the sum `log_softmax` takes, so that the log-probability is the same (exp(0) = 1 exactly)
    e.clear();
    e.extend_from_slice(y);
    let sum = exp_shifted_sum(e, max);
    let lp = (1.0 / sum + 1e-20).ln();
    // a lower-index word whose score is a hair below the maximum may round to the same
    // log-probability, and then wins the tie
    let tie = (0..arg).find(|&j| y[j] - max > -1e-3 && (e[j] / sum + 1e-20).ln() == lp);
    (tie.unwrap_or(arg), lp)
}

impl Stepper for FastStepper<'_> {
    fn step(&mut self, rows: &[usize], prev: &[usize]) -> Option<Vec<f32>> {
        self.advance(rows, prev)?;
        let mut logp = self.scores.clone();
        for row in logp.chunks_exact_mut(self.w.v.max(1)) {
            log_softmax(row);
        }
        Some(logp)
    }

    fn step_best(&mut self, rows: &[usize], prev: &[usize]) -> Option<Vec<(usize, f32)>> {
        let n = self.advance(rows, prev)?;
        let v = self.w.v.max(1);
        if self.threaded && n > SERIAL_ROWS {
            use rayon::prelude::*;
            return Some(
                self.scores
                    .par_chunks_exact(v)
                    .map_init(Vec::new, |e, y| best_word(y, e))
                    .collect(),
            );
        }
        let mut e = Vec::with_capacity(v);
        Some(
            self.scores
                .chunks_exact(v)
                .map(|y| best_word(y, &mut e))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::captioner::{CaptionerConfig, EncoderConfig};
    use crate::model::decode::{decode, decode_guided};
    use crate::model::guide::ConceptGuide;
    use burn::tensor::Distribution;

    fn model(tanh_c: u8) -> Captioner {
        let device = Device::flex();
        device.seed(11);
        CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 24,
                backbone: "test".into(),
            },
            40,
        )
        .with_embed_size(16)
        .with_hidden_size(20)
        .with_tanh_c_version(tanh_c)
        .init(&device)
    }

    /// The fast path gives the burn path's captions and log-probabilities, greedy and beam,
    /// for both cell versions.
    #[test]
    fn same_captions_as_the_burn_path() {
        for tanh_c in [1, 0] {
            let model = model(tanh_c);
            let device = Device::flex();
            let features = Tensor::<2>::random([5, 24], Distribution::Normal(0.0, 2.0), &device);
            let flat = features.clone().into_data().try_into_vec::<f32>().unwrap();
            let fast = FastDecoder::new(&model).unwrap();
            for beam_size in [1, 3] {
                let options = DecodeOptions {
                    beam_size,
                    max_steps: 20,
                    concept_weight: None,
                };
                let want = decode(&model, features.clone(), options);
                let got = fast.decode(&flat, options).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.ids, w.ids, "tanh_c {tanh_c}, beam {beam_size}");
                    assert!(
                        (g.logprob - w.logprob).abs() < 1e-3,
                        "{} vs {}",
                        g.logprob,
                        w.logprob
                    );
                }
            }
        }
    }

    /// Concept-guided decoding gives the same captions on both paths, greedy and beam; λ = 0
    /// (given, or the default) reproduces unguided decoding exactly; a strong λ changes captions.
    #[test]
    fn concept_guidance_is_the_same_on_both_paths() {
        for on_feature in [None, Some(true)] {
            guided_paths_agree(on_feature, false);
        }
        guided_paths_agree(None, true);
    }

    fn guided_paths_agree(on_feature: Option<bool>, guide_head: bool) {
        let device = Device::flex();
        device.seed(7);
        let model = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 24,
                backbone: "test".into(),
            },
            40,
        )
        .with_embed_size(16)
        .with_hidden_size(20)
        .with_concept_head(Some(true))
        .with_concept_on_feature(on_feature)
        .init(&device);
        // a guide head (on the feature), which guidance then reads instead of the concept head
        let concept_only = model.clone();
        let mut model = model;
        if guide_head {
            let mut head = crate::model::guide_head::GuideHead::zeros(24, 40, &device);
            head.weight = burn::module::Param::from_tensor(Tensor::random(
                [24, 40],
                Distribution::Normal(0.0, 1.0),
                &device,
            ));
            model.guide_head = Some(head);
        }
        let features = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 2.0), &device);
        let flat = features.clone().into_data().try_into_vec::<f32>().unwrap();
        let fast = FastDecoder::new(&model).unwrap();
        if guide_head {
            let options = DecodeOptions {
                beam_size: 1,
                max_steps: 20,
                concept_weight: Some(3.0),
            };
            let ids = |c: Vec<Caption>| c.into_iter().map(|c| c.ids).collect::<Vec<_>>();
            let by_concept = ids(decode(&concept_only, features.clone(), options));
            let by_concept_fast = ids(FastDecoder::new(&concept_only)
                .unwrap()
                .decode(&flat, options)
                .unwrap());
            assert_eq!(by_concept, by_concept_fast);
            assert_ne!(
                ids(decode(&model, features.clone(), options)),
                by_concept,
                "burn's path reads the guide head"
            );
            assert_ne!(
                ids(fast.decode(&flat, options).unwrap()),
                by_concept_fast,
                "the fast path reads the guide head"
            );
        }
        for beam_size in [1, 3] {
            let options = |w| DecodeOptions {
                beam_size,
                max_steps: 20,
                concept_weight: w,
            };
            let plain = fast.decode(&flat, options(None)).unwrap();
            let zero = fast.decode(&flat, options(Some(0.0))).unwrap();
            assert_eq!(plain, zero, "λ = 0 is unguided");
            let burn_plain = decode(&model, features.clone(), options(Some(0.0)));
            assert_eq!(
                plain.iter().map(|c| &c.ids).collect::<Vec<_>>(),
                burn_plain.iter().map(|c| &c.ids).collect::<Vec<_>>()
            );
            let want = decode(&model, features.clone(), options(Some(3.0)));
            let got = fast.decode(&flat, options(Some(3.0))).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.ids, w.ids, "beam {beam_size}");
                assert!((g.logprob - w.logprob).abs() < 1e-3);
            }
            assert_ne!(
                got.iter().map(|c| &c.ids).collect::<Vec<_>>(),
                plain.iter().map(|c| &c.ids).collect::<Vec<_>>(),
                "guidance changes some caption"
            );
            // the model's guide (kind names, their weight and floor, the relative bias) too
            let guide = ConceptGuide {
                kind_names: (2..40)
                    .step_by(3)
                    .map(|w| vec![w])
                    .chain([vec![5, 6]])
                    .collect(),
                prior: (0..40).map(|w| -(w as f32) / 10.0).collect(),
                kind_weight: Some(2.0),
                kind_floor: Some(0.3),
                relative_weight: Some(0.5),
                rerank: Some(2.0),
            };
            let guidance = Guidance {
                said_once: &[7, 8],
                guide: Some(&guide),
            };
            let want = decode_guided(&model, features.clone(), options(Some(1.0)), guidance);
            let got = fast
                .decode_guided(&flat, options(Some(1.0)), guidance)
                .unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.ids, w.ids, "beam {beam_size}");
                assert!((g.logprob - w.logprob).abs() < 1e-3);
            }
            let unguided = fast.decode(&flat, options(Some(1.0))).unwrap();
            assert_ne!(
                got.iter().map(|c| &c.ids).collect::<Vec<_>>(),
                unguided.iter().map(|c| &c.ids).collect::<Vec<_>>(),
                "the guide changes some caption"
            );
        }
    }

    /// f16 matrices: a model already cast to f16 decodes exactly as at f32; an f32 model's
    /// step log-probabilities move by the weights' rounding only, and its captions stay the same.
    #[test]
    fn f16_weights_decode_like_f32() {
        let device = Device::flex();
        let features = Tensor::<2>::random([6, 24], Distribution::Normal(0.0, 2.0), &device);
        let flat = features.into_data().try_into_vec::<f32>().unwrap();
        let options = |beam_size| DecodeOptions {
            beam_size,
            max_steps: 20,
            concept_weight: None,
        };

        let rounded = Precision::F16.apply(model(1));
        let a = FastDecoder::new(&rounded).unwrap();
        let b = FastDecoder::with_precision(&rounded, Precision::F16).unwrap();
        assert_eq!(b.precision(), Precision::F16);
        assert_eq!(2 * b.step_bytes(), a.step_bytes());
        for beam in [1, 3] {
            let (x, y) = (
                a.decode(&flat, options(beam)),
                b.decode(&flat, options(beam)),
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            for (x, y) in x.iter().zip(&y) {
                assert_eq!(x.ids, y.ids);
                // the same f32 values, summed in the same order
                assert_eq!(x.logprob, y.logprob);
            }
        }

        let m = model(1);
        let (a, b) = (
            FastDecoder::new(&m).unwrap(),
            FastDecoder::with_precision(&m, Precision::F16).unwrap(),
        );
        let (mut sa, mut sb) = (FastStepper::new(&a, 6, true), FastStepper::new(&b, 6, true));
        sa.start(&flat);
        sb.start(&flat);
        let rows: Vec<usize> = (0..6).collect();
        let mut prev = vec![0; 6];
        let mut worst = 0.0f32;
        for _ in 0..5 {
            let (la, lb) = (
                sa.step(&rows, &prev).unwrap(),
                sb.step(&rows, &prev).unwrap(),
            );
            worst = la
                .iter()
                .zip(&lb)
                .map(|(x, y)| (x - y).abs())
                .fold(worst, f32::max);
            prev = la
                .chunks(a.v)
                .map(|r| (0..a.v).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap_or(0))
                .collect();
        }
        assert!(worst < 2e-2, "f16 moved a log-probability by {worst}");
        for beam in [1, 3] {
            let (x, y) = (
                a.decode(&flat, options(beam)),
                b.decode(&flat, options(beam)),
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            for (x, y) in x.iter().zip(&y) {
                assert_eq!(x.ids, y.ids, "beam {beam}");
                assert!((x.logprob - y.logprob).abs() < 0.05);
            }
        }
    }

    /// Greedy decoding of a batch (several row blocks, words ending at different steps, so the
    /// batch shrinks; split by image over the threads, and on one stepper) gives each image the
    /// caption it gets alone, bit for bit, in f32 and f16.
    #[test]
    fn batched_greedy_equals_one_image_at_a_time() {
        let device = Device::flex();
        let m = model(1);
        let features = Tensor::<2>::random([33, 24], Distribution::Normal(0.0, 2.0), &device);
        let flat = features.into_data().try_into_vec::<f32>().unwrap();
        for precision in [Precision::F32, Precision::F16] {
            let fast = FastDecoder::with_precision(&m, precision).unwrap();
            let all = fast.decode(&flat, DecodeOptions::default()).unwrap();
            assert_eq!(all.len(), 33);
            // split by image over the threads, or one stepper for the whole batch: the same
            let mut whole = FastStepper::new(&fast, 33, true);
            whole.start(&flat);
            let one_stepper = beam_search(&mut whole, 33, fast.v, DecodeOptions::default(), None);
            assert_eq!(one_stepper, all, "{precision:?}");
            let lengths: std::collections::BTreeSet<usize> =
                all.iter().map(|c| c.ids.len()).collect();
            assert!(lengths.len() > 1, "every caption has the same length");
            for (i, caption) in all.iter().enumerate() {
                let one = fast
                    .decode(&flat[i * 24..(i + 1) * 24], DecodeOptions::default())
                    .unwrap();
                assert_eq!(one[0], *caption, "image {i}, {precision:?}");
            }
        }
    }

    /// The fused greedy step picks the word the ranked log-probabilities put first, with the same
    /// value: distinct scores, exact ties, near-ties that round to one log-probability, and
    /// non-finite scores.
    #[test]
    fn best_word_is_the_top_of_log_softmax() {
        let mut rows: Vec<Vec<f32>> = vec![
            vec![0.5, 2.0, -1.0, 2.0],
            vec![3.0],
            vec![f32::NAN, 1.0, 2.0],
            vec![1.0, f32::INFINITY, 0.0],
            vec![f32::NEG_INFINITY, -1.0],
        ];
        for gap in [6e-8f32, 1.2e-7, 2e-7, 5e-7, 1e-6, 1e-5] {
            // many words just below the top (a log-probability near -8.5, where f32's steps are
            // 1e-6), then two at the top, the lower index a hair below
            let mut y = vec![0.9f32; 5000];
            y[10] = 1.0 - gap;
            y[20] = 1.0;
            rows.push(y);
        }
        for r in 0..50 {
            rows.push(
                (0..97)
                    .map(|j| ((j * 31 + r * 17) as f32 * 0.77).sin() * 4.0)
                    .collect(),
            );
        }
        let mut collided = false;
        for y in &rows {
            let mut logp = y.clone();
            log_softmax(&mut logp);
            let want = (0..y.len())
                .max_by(|&a, &b| logp[a].total_cmp(&logp[b]).then(b.cmp(&a)))
                .unwrap();
            let (w, lp) = best_word(y, &mut Vec::new());
            assert_eq!(w, want, "{:?}", &y[..y.len().min(4)]);
            assert_eq!(lp.to_bits(), logp[want].to_bits());
            collided |= y.len() == 5000 && w == 10;
        }
        assert!(collided, "no near-tie rounded to one log-probability");
    }

    #[test]
    fn refuses_features_of_the_wrong_length() {
        let fast = FastDecoder::new(&model(1)).unwrap();
        assert_eq!(fast.feature_dim(), 24);
        let err = fast
            .decode(&[0.0; 25], DecodeOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("feature length 24"), "{err}");
        assert!(
            fast.decode(&[], DecodeOptions::default())
                .unwrap()
                .is_empty()
        );
    }
}
