//! Greedy and beam-search decoding with NeuralTalk's semantics, batched over images.
//!
//! - The image vector is fed first with h = c = 0 and its output is discarded; then START (index 0).
//! - Each step scores words with `log(1e-20 + softmax(y))`, exactly as NeuralTalk's `predict()`.
//! - Beam search runs at most `max_steps` iterations (NeuralTalk: exactly 20), carries finished
//!   beams unchanged, and ranks beams by summed log-probability with no length normalisation.
//!   Greedy decoding is beam search with one beam.
//! - A caption's log-probability includes the END word's when the caption ended.
//!
//! The LSTM steps of every unfinished beam of every image run as one batch. The beam bookkeeping
//! is shared by burn's path ([`decode`]) and the CPU fast path ([`super::fast_decode`]).

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::captioner::Captioner;
use super::guide::{ConceptBias, Guidance};
use super::lstm::LstmState;
use crate::data::text::BOUNDARY;

/// NeuralTalk's step limit.
pub const MAX_STEPS: usize = 20;

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// 1 for greedy decoding; 0 for the model's own setting (`beam_size` in model.json, else 1),
    /// which [`super::inference::CaptionEngine`] resolves (unresolved, 0 decodes greedily).
    pub beam_size: usize,
    /// Maximum number of words generated, END included.
    pub max_steps: usize,
    /// Weight λ of concept-guided decoding (see [`ConceptBias`]); `None` takes the model's own
    /// setting (`concept_weight` in model.json, see [`super::inference::CaptionEngine`]), and a
    /// model without a concept head ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concept_weight: Option<f32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            beam_size: 0,
            max_steps: MAX_STEPS,
            concept_weight: None,
        }
    }
}

impl DecodeOptions {
    /// λ, with `None` read as 0 (no guidance).
    pub fn concept_weight(&self) -> f32 {
        self.concept_weight.unwrap_or(0.0)
    }
}

/// A decoded caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// Word ids, without the final END.
    pub ids: Vec<usize>,
    /// Summed `log(1e-20 + p)` of every generated word, END included when it was generated.
    pub logprob: f64,
}

#[derive(Debug, Clone)]
struct Beam {
    logprob: f64,
    words: Vec<usize>,
    /// Row of this beam's state in the current state tensors (unfinished beams only).
    row: usize,
}

impl Beam {
    fn finished(&self) -> bool {
        self.words.last() == Some(&BOUNDARY)
    }
}

/// One decoding step for a batch of beams: what differs between the burn path and the fast path.
///
/// Beam bookkeeping ([`beam_search`]) is shared, so both paths have NeuralTalk's semantics by
/// construction; a stepper only runs the LSTM and scores words.
pub trait Stepper {
    /// Advances the beams whose current state is in rows `rows` (rows of the state after the
    /// previous call, or image rows after the image step), each fed its previous word `prev`.
    /// The new state has one row per entry of `rows`, in that order. Returns `log(1e-20 +
    /// softmax(scores))`, `rows.len() × V` row-major, or `None` if the backend failed.
    fn step(&mut self, rows: &[usize], prev: &[usize]) -> Option<Vec<f32>>;

    /// Greedy decoding's step: as [`Stepper::step`], but returns only each row's best word (the
    /// one [`top_k`] ranks first: ties go to the lower index) and its log-probability. A stepper
    /// may find it without writing the row of log-probabilities out.
    fn step_best(&mut self, rows: &[usize], prev: &[usize]) -> Option<Vec<(usize, f32)>> {
        let logp = self.step(rows, prev)?;
        let vocab = logp.len() / rows.len().max(1);
        Some(
            logp.chunks_exact(vocab.max(1))
                .map(|y| {
                    let w = top_k(y, 1).first().copied().unwrap_or(0);
                    (w, y.get(w).copied().unwrap_or(f32::NEG_INFINITY))
                })
                .collect(),
        )
    }
}

/// The burn path: the model's own layers, on any device.
struct BurnStepper<'a> {
    model: &'a Captioner,
    state: LstmState,
}

impl Stepper for BurnStepper<'_> {
    fn step(&mut self, rows: &[usize], prev: &[usize]) -> Option<Vec<f32>> {
        let device = self.state.h.device();
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let prev: Vec<i64> = prev.iter().map(|&w| w as i64).collect();
        let rows = Tensor::<1, Int>::from_ints(rows.as_slice(), &device);
        let prev = Tensor::<1, Int>::from_ints(prev.as_slice(), &device);
        let x = self.model.ws.val().select(0, prev);
        let selected = LstmState {
            h: self.state.h.clone().select(0, rows.clone()),
            c: self.state.c.clone().select(0, rows),
        };
        let next = self.model.lstm.step(x, Some(selected));
        let probs = softmax(self.model.scores(next.h.clone()), 1);
        let logp = (probs + 1e-20)
            .log()
            .into_data()
            .try_into_vec::<f32>()
            .ok()?;
        self.state = next;
        Some(logp)
    }
}

/// Decodes a batch of feature vectors `[B, F]` into one caption each, with burn's ops.
///
/// For inference on the CPU, [`super::fast_decode::FastDecoder`] gives the same captions faster.
pub fn decode(model: &Captioner, features: Tensor<2>, options: DecodeOptions) -> Vec<Caption> {
    decode_guided(model, features, options, Guidance::default())
}

/// [`decode`] with what the model says about its words for concept guidance (see
/// [`ConceptBias`]).
pub fn decode_guided(
    model: &Captioner,
    features: Tensor<2>,
    options: DecodeOptions,
    guidance: Guidance<'_>,
) -> Vec<Caption> {
    let [batch, _] = features.dims();
    if batch == 0 {
        return Vec::new();
    }
    // t = 0: the image, from the zero state; its output is discarded.
    let x0 = model.project(features.clone());
    let bias = match model.guide_logits(features, x0.clone()) {
        Some(logits) if options.concept_weight() > 0.0 => {
            let logits = logits.into_data().convert::<f32>().try_into_vec::<f32>();
            // a backend that cannot hand the logits back decodes unguided, as the steps would fail
            logits.ok().and_then(|l| {
                ConceptBias::new(options.concept_weight(), &l, model.vocab_size(), guidance)
            })
        }
        _ => None,
    };
    let state = model.lstm.step(x0, None);
    let mut stepper = BurnStepper { model, state };
    beam_search(
        &mut stepper,
        batch,
        model.vocab_size(),
        options,
        bias.as_ref(),
    )
}

/// NeuralTalk's beam search over `batch` images whose image step has been run (state row `i` is
/// image `i`). Greedy decoding is `beam_size = 1`.
pub fn beam_search(
    stepper: &mut dyn Stepper,
    batch: usize,
    vocab: usize,
    options: DecodeOptions,
    bias: Option<&ConceptBias>,
) -> Vec<Caption> {
    let beam_size = options.beam_size.max(1);
    let mut beams: Vec<Vec<Beam>> = (0..batch)
        .map(|i| {
            vec![Beam {
                logprob: 0.0,
                words: Vec::new(),
                row: i,
            }]
        })
        .collect();

    for _ in 0..options.max_steps {
        // every unfinished beam, in image order
        let active: Vec<(usize, usize)> = beams
            .iter()
            .enumerate()
            .flat_map(|(img, bs)| {
                bs.iter()
                    .enumerate()
                    .filter(|(_, b)| !b.finished())
                    .map(move |(k, _)| (img, k))
            })
            .collect();
        if active.is_empty() {
            break;
        }
        let rows: Vec<usize> = active.iter().map(|&(i, k)| beams[i][k].row).collect();
        let prev: Vec<usize> = active
            .iter()
            .map(|&(i, k)| beams[i][k].words.last().copied().unwrap_or(BOUNDARY))
            .collect();
        // each active beam's best `beam_size` words: (active index, word, log-probability)
        // (guided decoding needs each row's whole score vector, so it takes the general path)
        let picks: Vec<(usize, usize, f32)> = if beam_size == 1 && bias.is_none() {
            match stepper.step_best(&rows, &prev) {
                Some(best) if best.len() == active.len() => best
                    .into_iter()
                    .enumerate()
                    .map(|(a, (w, lp))| (a, w, lp))
                    .collect(),
                _ => break,
            }
        } else {
            let logp = match stepper.step(&rows, &prev) {
                Some(l) if l.len() == active.len() * vocab => l,
                _ => break,
            };
            let mut picks = Vec::with_capacity(active.len() * beam_size);
            let mut biased = Vec::new();
            for (a, y) in logp.chunks_exact(vocab.max(1)).enumerate() {
                let mut y = y;
                if let Some(bias) = bias {
                    let (img, k) = active[a];
                    biased.clear();
                    biased.extend_from_slice(y);
                    bias.apply(img, &beams[img][k].words, &mut biased);
                    y = &biased;
                }
                picks.extend(top_k(y, beam_size).into_iter().map(|w| (a, w, y[w])));
            }
            picks
        };

        // expand each image's beams
        let mut expansions: Vec<Vec<Beam>> = vec![Vec::new(); batch];
        for (a, w, lp) in picks {
            let (img, k) = active[a];
            let beam = &beams[img][k];
            let mut words = beam.words.clone();
            words.push(w);
            expansions[img].push(Beam {
                logprob: beam.logprob + lp as f64,
                words,
                row: a,
            });
        }
        for (img, expanded) in expansions.into_iter().enumerate() {
            let mut candidates: Vec<Beam> = beams[img]
                .iter()
                .filter(|b| b.finished())
                .cloned()
                .collect();
            candidates.extend(expanded);
            // stable sort, highest first
            candidates.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            candidates.truncate(beam_size);
            beams[img] = candidates;
        }
    }

    beams
        .into_iter()
        .enumerate()
        .map(|(img, mut bs)| {
            // a reranking guide may keep another beam than the likeliest (ties: the likelier)
            if let Some(bias) = bias.filter(|b| b.reranks() && bs.len() > 1) {
                let score = |b: &Beam| bias.rerank_score(img, &b.words, b.logprob);
                let pick = (0..bs.len())
                    .max_by(|&i, &j| score(&bs[i]).total_cmp(&score(&bs[j])).then(j.cmp(&i)))
                    .unwrap_or(0);
                bs.swap(0, pick);
            }
            let best = bs.into_iter().next().unwrap_or(Beam {
                logprob: 0.0,
                words: Vec::new(),
                row: 0,
            });
            let mut ids = best.words;
            if ids.last() == Some(&BOUNDARY) {
                ids.pop();
            }
            Caption {
                ids,
                logprob: best.logprob,
            }
        })
        .collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    if k == 0 {
        return idx;
    }
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode options written before concept guidance existed still read, as unguided.
    #[test]
    fn options_without_a_concept_weight_still_load() {
        let o: DecodeOptions =
            serde_json::from_str(r#"{"beam_size": 2, "max_steps": 20}"#).unwrap();
        assert_eq!(o.concept_weight, None);
        assert_eq!(
            serde_json::to_string(&DecodeOptions::default()).unwrap(),
            r#"{"beam_size":0,"max_steps":20}"#
        );
    }

    #[test]
    fn top_k_orders_and_breaks_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.3, 0.5], 3), [1, 3, 2]);
        assert_eq!(top_k(&[0.1], 3), [0]);
    }
}
