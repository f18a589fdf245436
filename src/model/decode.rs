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
use super::lstm::LstmState;
use crate::data::text::BOUNDARY;

/// NeuralTalk's step limit.
pub const MAX_STEPS: usize = 20;

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// 1 for greedy decoding.
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
            beam_size: 1,
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

/// Concept-guided decoding: at every step, each word's log-probability gets `λ · log σ(c_w)`
/// added, `c_w` being the concept head's logit of word `w` for the image: the model's own
/// estimate, from the image alone, that the image's captions use `w` (see
/// [`super::captioner::ConceptHead`]). The decoder's language model chooses the sentence; the
/// image's evidence for each word is added to it, as in shallow fusion. A kind the head is sure
/// of (`σ ≈ 1`) loses nothing, a kind it rules out loses up to `λ · log 1e-20`-ish, and a
/// category word that captions use for a fraction of their things ("an animal") loses
/// `λ · log` of that fraction. END is left alone, so the bias never keeps a caption going.
///
/// The head says which words the captions use, not how often: on its own the bias fills every
/// slot of "a X, a Y and a Z" with the one kind it is surest of. So words that the training
/// captions never say twice in a caption (`once`, see [`said_once_words`]; kind nouns, settings)
/// cannot be said twice in a guided caption either.
///
/// Ranking uses the biased scores, so a guided [`Caption::logprob`] includes the bias.
#[derive(Debug, Clone)]
pub struct ConceptBias {
    vocab: usize,
    /// `λ · log σ(c)`, `batch × V` row-major, 0 for END.
    bias: Vec<f32>,
    /// Words a caption says at most once.
    once: Vec<bool>,
}

/// Share of the training captions using a word that use it twice or more, below which the word
/// counts as said once (see [`ConceptBias`]).
pub const SAID_ONCE_SHARE: f64 = 0.01;

/// The words (ids) that fewer than [`SAID_ONCE_SHARE`] of the captions using them use twice or
/// more: the words a caption says once. Words no caption uses are left out.
pub fn said_once_words<'a>(
    vocab: usize,
    captions: impl IntoIterator<Item = &'a [usize]>,
) -> Vec<usize> {
    let (mut using, mut twice) = (vec![0usize; vocab], vec![0usize; vocab]);
    let mut seen = vec![0u8; vocab];
    for caption in captions {
        for &w in caption.iter().filter(|&&w| w < vocab) {
            seen[w] = seen[w].saturating_add(1);
        }
        for &w in caption.iter().filter(|&&w| w < vocab) {
            match seen[w] {
                0 => continue,
                1 => using[w] += 1,
                _ => {
                    using[w] += 1;
                    twice[w] += 1;
                }
            }
            seen[w] = 0;
        }
    }
    (0..vocab)
        .filter(|&w| {
            w != BOUNDARY && using[w] > 0 && (twice[w] as f64) < SAID_ONCE_SHARE * using[w] as f64
        })
        .collect()
}

/// `log σ(z)`, stable for large `|z|`.
fn log_sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        -(-z).exp().ln_1p()
    } else {
        z - z.exp().ln_1p()
    }
}

impl ConceptBias {
    /// From the concept logits of a batch of images (`batch × vocab`, row-major) and the weight
    /// λ; `None` when λ is 0 (or not a positive number), so unguided decoding runs exactly the
    /// code it ran before.
    pub fn new(weight: f32, logits: &[f32], vocab: usize, once: &[usize]) -> Option<Self> {
        if !(weight > 0.0 && weight.is_finite()) || vocab == 0 {
            return None;
        }
        let mut bias: Vec<f32> = logits.iter().map(|&z| weight * log_sigmoid(z)).collect();
        for row in bias.chunks_exact_mut(vocab) {
            row[BOUNDARY] = 0.0;
        }
        let mut said_once = vec![false; vocab];
        for &w in once.iter().filter(|&&w| w < vocab) {
            said_once[w] = true;
        }
        Some(Self {
            vocab,
            bias,
            once: said_once,
        })
    }

    /// Adds image `img`'s bias to a row of word scores `y` of a beam that has said `words`.
    fn apply(&self, img: usize, words: &[usize], y: &mut [f32]) {
        let b = &self.bias[img * self.vocab..(img + 1) * self.vocab];
        for (yw, bw) in y.iter_mut().zip(b) {
            *yw += bw;
        }
        for &w in words {
            if self.once.get(w) == Some(&true) {
                y[w] = f32::NEG_INFINITY;
            }
        }
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
    decode_guided(model, features, options, &[])
}

/// [`decode`] with the words a caption says once (for concept guidance, see [`ConceptBias`]).
pub fn decode_guided(
    model: &Captioner,
    features: Tensor<2>,
    options: DecodeOptions,
    said_once: &[usize],
) -> Vec<Caption> {
    let [batch, _] = features.dims();
    if batch == 0 {
        return Vec::new();
    }
    // t = 0: the image, from the zero state; its output is discarded.
    let x0 = model.project(features);
    let bias = match model.concept_logits_of(x0.clone()) {
        Some(logits) if options.concept_weight() > 0.0 => {
            let logits = logits.into_data().convert::<f32>().try_into_vec::<f32>();
            // a backend that cannot hand the logits back decodes unguided, as the steps would fail
            logits.ok().and_then(|l| {
                ConceptBias::new(options.concept_weight(), &l, model.vocab_size(), said_once)
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
        .map(|bs| {
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

    /// A stepper with fixed word scores: `first` at step 1, then END most likely.
    struct Fixed {
        first: Vec<f32>,
        calls: usize,
    }

    impl Stepper for Fixed {
        fn step(&mut self, rows: &[usize], _prev: &[usize]) -> Option<Vec<f32>> {
            self.calls += 1;
            let row: Vec<f32> = if self.calls == 1 {
                self.first.clone()
            } else {
                vec![-0.1, -3.0, -3.0, -3.0]
            };
            Some(rows.iter().flat_map(|_| row.clone()).collect())
        }
    }

    fn run(bias: Option<&ConceptBias>, beam_size: usize) -> Vec<Caption> {
        // words: END, "a", "frog", "animal"; the decoder alone prefers the generic "animal"
        let first = [0.02f32, 0.08, 0.3, 0.6].map(f32::ln).to_vec();
        let options = DecodeOptions {
            beam_size,
            ..DecodeOptions::default()
        };
        beam_search(&mut Fixed { first, calls: 0 }, 1, 4, options, bias)
    }

    /// The concept head's evidence changes the chosen word where it disagrees with the decoder,
    /// in greedy and beam decoding; END is never biased (here the head calls it unlikely, and
    /// the caption still ends); λ = 0 is no bias at all.
    #[test]
    fn concept_bias_picks_the_word_the_head_sees() {
        // head: "frog" likely, "animal" not, END and "a" very unlikely
        let logits = [-20.0f32, -20.0, 4.0, -3.0];
        let bias = ConceptBias::new(1.0, &logits, 4, &[]).unwrap();
        for beam_size in [1, 3] {
            assert_eq!(run(None, beam_size)[0].ids, [3], "beam {beam_size}");
            let guided = &run(Some(&bias), beam_size)[0];
            assert_eq!(guided.ids, [2], "beam {beam_size}");
            // the biased score: log 0.3 + log σ(4), then END unbiased
            let want = 0.3f64.ln() + f64::from(log_sigmoid(4.0)) - 0.1;
            assert!((guided.logprob - want).abs() < 1e-5, "{}", guided.logprob);
        }
        // a weak bias does not overturn a clear preference
        let weak = ConceptBias::new(0.1, &logits, 4, &[]).unwrap();
        assert_eq!(run(Some(&weak), 1)[0].ids, [3]);
        assert!(ConceptBias::new(0.0, &logits, 4, &[2]).is_none());
        assert!(ConceptBias::new(f32::NAN, &logits, 4, &[]).is_none());
        assert_eq!(DecodeOptions::default().concept_weight(), 0.0);
    }

    /// Repeats the same scores for two steps, then prefers END.
    struct Twice(usize);

    impl Stepper for Twice {
        fn step(&mut self, rows: &[usize], _prev: &[usize]) -> Option<Vec<f32>> {
            self.0 += 1;
            // words: END, "a", "frog", "animal", "duck"
            let row = if self.0 <= 2 {
                vec![-5.0, -3.0, -0.5, -2.0, -3.0]
            } else {
                vec![-0.1, -3.0, -3.0, -3.0, -3.0]
            };
            Some(rows.iter().flat_map(|_| row.clone()).collect())
        }
    }

    /// A word the training captions say once is not said twice in a guided caption; the next
    /// slot goes to the next word the head and decoder agree on. Unguided decoding repeats.
    #[test]
    fn guided_captions_say_once_words_once() {
        let logits = [0.0f32, 0.0, 5.0, -1.0, 2.0];
        let run = |bias: Option<&ConceptBias>| {
            beam_search(&mut Twice(0), 1, 5, DecodeOptions::default(), bias)[0]
                .ids
                .clone()
        };
        assert_eq!(run(None), [2, 2]);
        let no_rule = ConceptBias::new(1.0, &logits, 5, &[]).unwrap();
        assert_eq!(run(Some(&no_rule)), [2, 2]);
        let once = ConceptBias::new(1.0, &logits, 5, &[2, 4]).unwrap();
        assert_eq!(run(Some(&once)), [2, 4]);
    }

    #[test]
    fn said_once_words_come_from_the_captions() {
        let captions: [&[usize]; 4] = [&[1, 2, 1], &[2, 3], &[1, 3], &[0, 3]];
        // 1 is said twice in one of its two captions; END never counts; 4 is never used
        assert_eq!(said_once_words(5, captions), [2, 3]);
    }

    #[test]
    fn log_sigmoid_is_stable() {
        for z in [-100.0f32, -5.0, 0.0, 3.0, 100.0] {
            let want = -(1.0 + (-f64::from(z)).exp()).ln();
            assert!((f64::from(log_sigmoid(z)) - want).abs() < 1e-4, "{z}");
        }
        assert!(log_sigmoid(-1000.0).is_finite());
    }

    /// Decode options written before concept guidance existed still read, as unguided.
    #[test]
    fn options_without_a_concept_weight_still_load() {
        let o: DecodeOptions =
            serde_json::from_str(r#"{"beam_size": 2, "max_steps": 20}"#).unwrap();
        assert_eq!(o.concept_weight, None);
        assert_eq!(
            serde_json::to_string(&DecodeOptions::default()).unwrap(),
            r#"{"beam_size":1,"max_steps":20}"#
        );
    }

    #[test]
    fn top_k_orders_and_breaks_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.3, 0.5], 3), [1, 3, 2]);
        assert_eq!(top_k(&[0.1], 3), [0]);
    }
}
