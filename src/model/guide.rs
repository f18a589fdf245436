//! Concept-guided decoding: the concept head's evidence added to the decoder's word scores, and
//! the rules that keep guided captions well formed. Shared by burn's path
//! ([`super::decode::decode_guided`]) and the CPU fast path ([`super::fast_decode`]) through
//! [`super::decode::beam_search`], so both give the same captions.
//!
//! What a model carries for it (model.json, `captioner`): `concept_weight` (λ), `said_once` (see
//! [`said_once_words`]) and `guide` ([`ConceptGuide`]: the dataset's kind names, each word's base
//! rate, and the weights that use them). Models without `guide` decode exactly as before it
//! existed.

use serde::{Deserialize, Serialize};

use crate::data::labels::Lexicon;
use crate::data::text::{BOUNDARY, Vocabulary};

/// Concept guidance's settings beyond λ, and the word lists they need, saved with the model
/// (`guide` in model.json). Every field is optional; an absent one changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConceptGuide {
    /// The dataset's kind names (singular, plural, synonyms; not category names) as word ids,
    /// those the vocabulary can say (see [`kind_names`]). Their last words are the *kind words*
    /// that `kind_weight` and `kind_floor` apply to, and a guided caption does not say one name
    /// twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kind_names: Vec<Vec<usize>>,
    /// Each word's base rate as a log: the log of the mean, over the training images, of the
    /// share of an image's captions that use the word (what the head predicts; see
    /// [`concept_prior`]). Read by `relative_weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior: Vec<f32>,
    /// λ of the kind words (absent: `concept_weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind_weight: Option<f32>,
    /// Kind words whose head probability is below this are not said (absent or 0: no floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind_floor: Option<f32>,
    /// μ of the relative bias: each word also gets `μ · (log σ(c_w) − prior_w)`, a push for the
    /// words the head rates above their base rate (absent or 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_weight: Option<f32>,
    /// α of beam reranking (beam search only): the finished beam kept is the one with the best
    /// `log-probability + α · Σ (σ(c_w) − ½)` over the distinct kind words `w` it says, so a
    /// beam that names more of what the head sees, and less of what it doubts, can win over a
    /// slightly likelier one (absent or 0: the likeliest beam, as NeuralTalk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<f32>,
}

/// What a decoder reads from the model for guidance besides the head.
#[derive(Debug, Clone, Copy, Default)]
pub struct Guidance<'a> {
    /// Words a caption says at most once (`said_once`).
    pub said_once: &'a [usize],
    pub guide: Option<&'a ConceptGuide>,
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
/// captions never say twice in a caption (`once`, see [`said_once_words`]; settings, "picture")
/// cannot be said twice in a guided caption either, nor can a kind name of the model's
/// [`ConceptGuide`] ("a mug a mug"). The guide can also weigh kind words apart, rule out the
/// kind words the head gives little chance, and push words the head rates above their base rate.
///
/// Ranking uses the biased scores, so a guided [`super::decode::Caption::logprob`] includes the
/// bias.
#[derive(Debug, Clone)]
pub struct ConceptBias {
    vocab: usize,
    /// The bias, `batch × V` row-major, 0 for END, −∞ for the one-word kind names below the
    /// floor.
    bias: Vec<f32>,
    /// The last words of multi-word kind names below the floor, `batch × V`: their bias is
    /// finite (a caption that has said "tennis" may still say "ball"), and [`ConceptBias::apply`]
    /// rules them out unless the caption ends with the rest of such a name.
    floored: Vec<bool>,
    /// Words a caption says at most once.
    once: Vec<bool>,
    /// Kind names (word ids) that a caption says at most once.
    names: Vec<Vec<usize>>,
    /// Kind words.
    kind: Vec<bool>,
    /// Reranking's α and the head's probabilities (`batch × V`), when the guide reranks.
    rerank: Option<(f32, Vec<f32>)>,
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

/// The kind names of `lexicon` (each kind's `names`, not its category names) as word ids of
/// `vocab`, tokenized with `tokenize`, each once, sorted; names with a word the vocabulary lacks
/// are left out (no caption can say them).
pub fn kind_names(
    lexicon: &Lexicon,
    vocab: &Vocabulary,
    tokenize: impl Fn(&str) -> Vec<String>,
) -> Vec<Vec<usize>> {
    let mut names: Vec<Vec<usize>> = lexicon
        .kinds
        .values()
        .flat_map(|k| &k.names)
        .filter_map(|name| {
            let ids: Option<Vec<usize>> = tokenize(name).iter().map(|t| vocab.id(t)).collect();
            ids.filter(|ids| !ids.is_empty() && !ids.contains(&BOUNDARY))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Smallest base rate [`concept_prior`] gives a word, so that a word no training caption uses has
/// a finite log.
pub const PRIOR_FLOOR: f64 = 1e-4;

/// Each word's log base rate (see [`ConceptGuide::prior`]) from the training images' captions
/// (word ids, one list per image), at least `log PRIOR_FLOOR`.
pub fn concept_prior<'a>(
    vocab: usize,
    images: impl IntoIterator<Item = &'a [Vec<usize>]>,
) -> Vec<f32> {
    let mut sum = vec![0f64; vocab];
    let mut count = 0usize;
    let mut uses = vec![0usize; vocab];
    for captions in images {
        if captions.is_empty() {
            continue;
        }
        count += 1;
        uses.fill(0);
        for caption in captions {
            let mut words: Vec<usize> = caption.iter().copied().filter(|&w| w < vocab).collect();
            words.sort_unstable();
            words.dedup();
            for w in words {
                uses[w] += 1;
            }
        }
        for (s, &u) in sum.iter_mut().zip(&uses) {
            *s += u as f64 / captions.len() as f64;
        }
    }
    sum.iter()
        .map(|&s| (s / count.max(1) as f64).max(PRIOR_FLOOR).ln() as f32)
        .collect()
}

/// `log σ(z)`, stable for large `|z|`.
pub(crate) fn log_sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        -(-z).exp().ln_1p()
    } else {
        z - z.exp().ln_1p()
    }
}

impl ConceptBias {
    /// From the concept logits of a batch of images (`batch × vocab`, row-major), the weight λ
    /// and the model's guidance; `None` when λ is 0 (or not a positive number), so unguided
    /// decoding runs exactly the code it ran before.
    pub fn new(weight: f32, logits: &[f32], vocab: usize, guidance: Guidance<'_>) -> Option<Self> {
        if !(weight > 0.0 && weight.is_finite()) || vocab == 0 {
            return None;
        }
        let default = ConceptGuide::default();
        let guide = guidance.guide.unwrap_or(&default);
        let mut kind = vec![false; vocab];
        let names: Vec<Vec<usize>> = guide
            .kind_names
            .iter()
            .filter(|n| !n.is_empty() && n.iter().all(|&w| w < vocab))
            .cloned()
            .collect();
        for name in &names {
            kind[name[name.len() - 1]] = true;
        }
        let kind_weight = guide
            .kind_weight
            .filter(|w| w.is_finite())
            .unwrap_or(weight);
        let floor = guide
            .kind_floor
            .filter(|&f| f > 0.0 && f.is_finite())
            .map(f32::ln);
        let relative = guide
            .relative_weight
            .filter(|&m| m > 0.0 && m.is_finite() && guide.prior.len() == vocab);
        // The floor rules out a kind's last word, except where it finishes a name of several
        // words that the caption has started: cutting "tennis ball" or "pair of binoculars"
        // after its first words gave "a little tennis" and "a pair of on a lawn". (Ruling out
        // the first words instead would also rule out "little", "small", "two", "sea", which
        // start kind names too and are said far more often on their own.)
        let mut bias: Vec<f32> = Vec::with_capacity(logits.len());
        let mut floored = vec![false; logits.len()];
        for (r, row) in logits.chunks_exact(vocab).enumerate() {
            let below = |w: usize| floor.is_some_and(|f| log_sigmoid(row[w]) < f);
            for (w, &z) in row.iter().enumerate() {
                let ls = log_sigmoid(z);
                let mut b = if kind[w] { kind_weight } else { weight } * ls;
                if let Some(mu) = relative {
                    b += mu * (ls - guide.prior[w]);
                }
                if kind[w] && below(w) {
                    if names.iter().any(|n| n.len() > 1 && n[n.len() - 1] == w) {
                        floored[r * vocab + w] = true;
                    } else {
                        b = f32::NEG_INFINITY;
                    }
                }
                bias.push(b);
            }
        }
        for row in bias.chunks_exact_mut(vocab) {
            row[BOUNDARY] = 0.0;
        }
        let mut said_once = vec![false; vocab];
        for &w in guidance.said_once.iter().filter(|&&w| w < vocab) {
            said_once[w] = true;
        }
        let rerank = guide
            .rerank
            .filter(|&a| a > 0.0 && a.is_finite() && !names.is_empty())
            .map(|a| (a, logits.iter().map(|&z| log_sigmoid(z).exp()).collect()));
        Some(Self {
            vocab,
            bias,
            floored,
            once: said_once,
            names,
            kind,
            rerank,
        })
    }

    /// Whether finished beams are reranked (see [`ConceptGuide::rerank`]).
    pub(crate) fn reranks(&self) -> bool {
        self.rerank.is_some()
    }

    /// A finished beam's reranking score: its (biased) log-probability plus α times the
    /// head's probability less ½ of each distinct kind word it says.
    pub(crate) fn rerank_score(&self, img: usize, words: &[usize], logprob: f64) -> f64 {
        let Some((alpha, probs)) = &self.rerank else {
            return logprob;
        };
        let p = &probs[img * self.vocab..(img + 1) * self.vocab];
        let mut said: Vec<usize> = words
            .iter()
            .copied()
            .filter(|&w| self.kind.get(w) == Some(&true))
            .collect();
        said.sort_unstable();
        said.dedup();
        let coverage: f64 = said.iter().map(|&w| f64::from(p[w]) - 0.5).sum();
        logprob + f64::from(*alpha) * coverage
    }

    /// Adds image `img`'s bias to a row of word scores `y` of a beam that has said `words`.
    pub(crate) fn apply(&self, img: usize, words: &[usize], y: &mut [f32]) {
        let b = &self.bias[img * self.vocab..(img + 1) * self.vocab];
        for (yw, bw) in y.iter_mut().zip(b) {
            *yw += bw;
        }
        let floored = &self.floored[img * self.vocab..(img + 1) * self.vocab];
        if floored.iter().any(|&f| f) {
            for (w, _) in floored.iter().enumerate().filter(|(_, f)| **f) {
                let started = self.names.iter().any(|n| {
                    n.len() > 1 && n[n.len() - 1] == w && words.ends_with(&n[..n.len() - 1])
                });
                if !started {
                    y[w] = f32::NEG_INFINITY;
                }
            }
        }
        for &w in words {
            if self.once.get(w) == Some(&true) {
                y[w] = f32::NEG_INFINITY;
            }
        }
        // With a guide (models trained since it was added; older ones decode as they did): no
        // word follows itself. No training caption says "a a" or "small small", but blocking a
        // kind name pushed the decoder into them ("a small lark a small small small …").
        if !self.names.is_empty()
            && let Some(&last) = words.last()
            && let Some(y_last) = y.get_mut(last)
        {
            *y_last = f32::NEG_INFINITY;
        }
        // a kind name already said is not completed again
        for name in &self.names {
            let (head, last) = name.split_at(name.len() - 1);
            if words.ends_with(head) && words.windows(name.len()).any(|w| w == name.as_slice()) {
                y[last[0]] = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::KindNames;
    use crate::model::decode::{DecodeOptions, Stepper, beam_search};

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

    fn run(bias: Option<&ConceptBias>, beam_size: usize) -> Vec<crate::model::decode::Caption> {
        // words: END, "a", "frog", "animal"; the decoder alone prefers the generic "animal"
        let first = [0.02f32, 0.08, 0.3, 0.6].map(f32::ln).to_vec();
        let options = DecodeOptions {
            beam_size,
            ..DecodeOptions::default()
        };
        beam_search(&mut Fixed { first, calls: 0 }, 1, 4, options, bias)
    }

    fn plain() -> Guidance<'static> {
        Guidance::default()
    }

    /// The concept head's evidence changes the chosen word where it disagrees with the decoder,
    /// in greedy and beam decoding; END is never biased (here the head calls it unlikely, and
    /// the caption still ends); λ = 0 is no bias at all.
    #[test]
    fn concept_bias_picks_the_word_the_head_sees() {
        // head: "frog" likely, "animal" not, END and "a" very unlikely
        let logits = [-20.0f32, -20.0, 4.0, -3.0];
        let bias = ConceptBias::new(1.0, &logits, 4, plain()).unwrap();
        for beam_size in [1, 3] {
            assert_eq!(run(None, beam_size)[0].ids, [3], "beam {beam_size}");
            let guided = &run(Some(&bias), beam_size)[0];
            assert_eq!(guided.ids, [2], "beam {beam_size}");
            // the biased score: log 0.3 + log σ(4), then END unbiased
            let want = 0.3f64.ln() + f64::from(log_sigmoid(4.0)) - 0.1;
            assert!((guided.logprob - want).abs() < 1e-5, "{}", guided.logprob);
        }
        // a weak bias does not overturn a clear preference
        let weak = ConceptBias::new(0.1, &logits, 4, plain()).unwrap();
        assert_eq!(run(Some(&weak), 1)[0].ids, [3]);
        let once = Guidance {
            said_once: &[2],
            guide: None,
        };
        assert!(ConceptBias::new(0.0, &logits, 4, once).is_none());
        assert!(ConceptBias::new(f32::NAN, &logits, 4, plain()).is_none());
        assert_eq!(DecodeOptions::default().concept_weight(), 0.0);
    }

    /// Kind words get their own weight and floor; the relative bias pushes a word the head
    /// rates above its base rate; other words keep λ.
    #[test]
    fn kind_weight_floor_and_relative_bias() {
        // words: END, "a", "frog", "animal"; "frog" is the kind word
        let logits = [0.0f32, 0.0, -1.0, -3.0];
        let guide = |kind_weight, kind_floor, relative_weight| ConceptGuide {
            kind_names: vec![vec![2]],
            prior: vec![0.0, 0.0, -4.0, -1.0],
            kind_weight,
            kind_floor,
            relative_weight,
            rerank: None,
        };
        let row = |g: &ConceptGuide| {
            let bias = ConceptBias::new(
                1.0,
                &logits,
                4,
                Guidance {
                    said_once: &[],
                    guide: Some(g),
                },
            )
            .unwrap();
            let mut y = vec![0.0; 4];
            bias.apply(0, &[], &mut y);
            y
        };
        let ls = |z: f32| log_sigmoid(z);
        assert_eq!(
            row(&guide(None, None, None)),
            [0.0, ls(0.0), ls(-1.0), ls(-3.0)]
        );
        assert_eq!(
            row(&guide(Some(2.0), None, None)),
            [0.0, ls(0.0), 2.0 * ls(-1.0), ls(-3.0)]
        );
        // σ(-1) ≈ 0.27: ruled out at a floor of 0.3, kept at 0.2; "animal" is no kind word
        assert_eq!(row(&guide(None, Some(0.3), None))[2], f32::NEG_INFINITY);
        assert_eq!(row(&guide(None, Some(0.2), None))[2], ls(-1.0));
        let r = row(&guide(None, None, Some(0.5)));
        assert!((r[2] - (ls(-1.0) + 0.5 * (ls(-1.0) + 4.0))).abs() < 1e-6);
        assert!((r[3] - (ls(-3.0) + 0.5 * (ls(-3.0) + 1.0))).abs() < 1e-6);
        // a prior of the wrong length is not read
        let mut short = guide(None, None, Some(0.5));
        short.prior.pop();
        assert_eq!(row(&short), row(&guide(None, None, None)));
    }

    /// Under the floor, a one-word kind is never said, and the last word of a longer name is
    /// ruled out unless the caption has said the rest of that name ("tennis" → "ball").
    #[test]
    fn the_floor_does_not_cut_a_started_name() {
        // words: END, "a", "tennis", "ball", "pair", "of", "shoes", "socks", "frog"
        // names: "tennis ball", "pair of shoes", "pair of socks", "frog"
        let names = vec![vec![2, 3], vec![4, 5, 6], vec![4, 5, 7], vec![8]];
        let guide = ConceptGuide {
            kind_names: names,
            kind_floor: Some(0.3),
            ..ConceptGuide::default()
        };
        // "ball", "shoes", "socks" and "frog" all below the floor
        let logits = [0.0f32, 0.0, 0.0, -3.0, 0.0, 0.0, -3.0, -3.0, -3.0];
        let bias = ConceptBias::new(
            1.0,
            &logits,
            9,
            Guidance {
                said_once: &[],
                guide: Some(&guide),
            },
        )
        .unwrap();
        let apply = |words: &[usize]| {
            let mut y = vec![0.0; 9];
            bias.apply(0, words, &mut y);
            y
        };
        let inf = f32::NEG_INFINITY;
        let y = apply(&[1]);
        assert_eq!((y[3], y[6], y[7], y[8]), (inf, inf, inf, inf));
        assert!(y[2].is_finite() && y[4].is_finite());
        let y = apply(&[1, 2]);
        assert!((y[3] - log_sigmoid(-3.0)).abs() < 1e-6 && y[6] == inf && y[8] == inf);
        let y = apply(&[1, 4, 5]);
        assert!(y[6].is_finite() && y[7].is_finite() && y[3] == inf);
    }

    /// Reranking keeps the beam that names a kind the head is sure of over a likelier one that
    /// names none; greedy decoding has one beam and is not reranked.
    #[test]
    fn reranking_prefers_the_beam_naming_what_the_head_sees() {
        // "frog" (2) is the kind word; the head is as sure of "animal" (3), so the bias alone
        // leaves the decoder's "animal" first
        let logits = [0.0f32, 0.0, 4.0, 4.0];
        let guide = |rerank| ConceptGuide {
            kind_names: vec![vec![2]],
            rerank,
            ..ConceptGuide::default()
        };
        let (plain, reranked) = (guide(None), guide(Some(2.0)));
        let bias = |g| {
            let guidance = Guidance {
                said_once: &[],
                guide: Some(g),
            };
            ConceptBias::new(1.0, &logits, 4, guidance).unwrap()
        };
        assert_eq!(run(Some(&bias(&plain)), 2)[0].ids, [3]);
        let chosen = &run(Some(&bias(&reranked)), 2)[0];
        assert_eq!(chosen.ids, [2]);
        // the caption keeps its own log-probability, not the reranking score
        let want = 0.3f64.ln() + f64::from(log_sigmoid(4.0)) - 0.1;
        assert!((chosen.logprob - want).abs() < 1e-5);
        assert_eq!(run(Some(&bias(&reranked)), 1)[0].ids, [3]);
    }

    /// Repeats the same scores for `steps` steps, then prefers END.
    struct Repeating {
        calls: usize,
        steps: usize,
        row: Vec<f32>,
    }

    impl Stepper for Repeating {
        fn step(&mut self, rows: &[usize], _prev: &[usize]) -> Option<Vec<f32>> {
            self.calls += 1;
            let mut row = self.row.clone();
            if self.calls > self.steps {
                row.iter_mut().for_each(|x| *x = -3.0);
                row[0] = -0.1;
            }
            Some(rows.iter().flat_map(|_| row.clone()).collect())
        }
    }

    /// A word the training captions say once is not said twice in a guided caption; the next
    /// slot goes to the next word the head and decoder agree on. Unguided decoding repeats.
    #[test]
    fn guided_captions_say_once_words_once() {
        // words: END, "a", "frog", "animal", "duck"
        let logits = [0.0f32, 0.0, 5.0, -1.0, 2.0];
        let run = |bias: Option<&ConceptBias>| {
            let mut s = Repeating {
                calls: 0,
                steps: 2,
                row: vec![-5.0, -3.0, -0.5, -2.0, -3.0],
            };
            beam_search(&mut s, 1, 5, DecodeOptions::default(), bias)[0]
                .ids
                .clone()
        };
        assert_eq!(run(None), [2, 2]);
        let no_rule = ConceptBias::new(1.0, &logits, 5, plain()).unwrap();
        assert_eq!(run(Some(&no_rule)), [2, 2]);
        let guidance = Guidance {
            said_once: &[2, 4],
            guide: None,
        };
        let once = ConceptBias::new(1.0, &logits, 5, guidance).unwrap();
        assert_eq!(run(Some(&once)), [2, 4]);
    }

    /// "a mug a mug": a kind name is not completed twice (the slot goes to the decoder's next
    /// choice); unguided decoding repeats it.
    #[test]
    fn a_kind_name_is_not_said_twice() {
        // words: END, "a", "mug", "fire", "truck", "and"
        // the decoder, step after step, prefers "a", then "mug", then "a", ... (by position)
        struct Script(usize);
        impl Stepper for Script {
            fn step(&mut self, rows: &[usize], _prev: &[usize]) -> Option<Vec<f32>> {
                let want = [1, 2, 1, 2, 1, 3, 4, 5, 1, 3, 4, 0];
                let w = want.get(self.0).copied().unwrap_or(0);
                self.0 += 1;
                let mut row = vec![-6.0f32; 6];
                row[w] = -0.1;
                // second choices: "fire" then "and" then END
                row[3] = row[3].max(-4.0);
                row[0] = row[0].max(-5.0);
                Some(rows.iter().flat_map(|_| row.clone()).collect())
            }
        }
        let logits = [0.0f32, 9.0, 9.0, 9.0, 9.0, 9.0];
        let guide = ConceptGuide {
            kind_names: vec![vec![2], vec![3, 4]],
            ..ConceptGuide::default()
        };
        let guidance = Guidance {
            said_once: &[],
            guide: Some(&guide),
        };
        let bias = ConceptBias::new(1.0, &logits, 6, guidance).unwrap();
        let unguided = beam_search(&mut Script(0), 1, 6, DecodeOptions::default(), None);
        assert_eq!(unguided[0].ids, [1, 2, 1, 2, 1, 3, 4, 5, 1, 3, 4]);
        let guided = beam_search(&mut Script(0), 1, 6, DecodeOptions::default(), Some(&bias));
        // "a mug a" then not "mug" again but "fire" (the second choice); the second "fire"
        // cannot be followed by "truck"
        let ids = &guided[0].ids;
        assert_eq!(&ids[..4], [1, 2, 1, 3]);
        let text: Vec<usize> = ids.clone();
        let mugs = text.iter().filter(|&&w| w == 2).count();
        assert_eq!(mugs, 1, "{ids:?}");
        let trucks = text.windows(2).filter(|w| w == &[3, 4]).count();
        assert!(trucks <= 1, "{ids:?}");
    }

    /// "a small lark a small small small …": with a guide no word follows itself (the slot goes
    /// to the decoder's next choice); without one (older models) decoding is as it was.
    #[test]
    fn with_a_guide_no_word_follows_itself() {
        // words: END, "a", "small", "lark"; the decoder wants "small" at every step after "a"
        let run = |bias: Option<&ConceptBias>| {
            let mut s = Repeating {
                calls: 0,
                steps: 3,
                row: vec![-5.0, -3.0, -0.5, -2.0],
            };
            beam_search(&mut s, 1, 4, DecodeOptions::default(), bias)[0]
                .ids
                .clone()
        };
        let logits = [0.0f32, 0.0, 0.0, 0.0];
        let guide = ConceptGuide {
            kind_names: vec![vec![3]],
            ..ConceptGuide::default()
        };
        let guided = Guidance {
            said_once: &[],
            guide: Some(&guide),
        };
        let with_guide = ConceptBias::new(1.0, &logits, 4, guided).unwrap();
        let ids = run(Some(&with_guide));
        assert!(ids.windows(2).all(|w| w[0] != w[1]), "{ids:?}");
        assert_eq!(ids[..2], [2, 3]);
        let without = ConceptBias::new(1.0, &logits, 4, plain()).unwrap();
        assert_eq!(run(Some(&without)), [2, 2, 2]);
    }

    #[test]
    fn said_once_words_come_from_the_captions() {
        let captions: [&[usize]; 4] = [&[1, 2, 1], &[2, 3], &[1, 3], &[0, 3]];
        // 1 is said twice in one of its two captions; END never counts; 4 is never used
        assert_eq!(said_once_words(5, captions), [2, 3]);
    }

    #[test]
    fn kind_names_and_prior_come_from_the_dataset() {
        let mut lexicon = Lexicon::default();
        lexicon.kinds.insert(
            "fire truck".into(),
            KindNames {
                names: vec![
                    "fire truck".into(),
                    "fire trucks".into(),
                    "fire engine".into(),
                ],
                category: vec!["vehicle".into()],
            },
        );
        lexicon.kinds.insert(
            "mug".into(),
            KindNames {
                names: vec!["mug".into()],
                category: vec![],
            },
        );
        let vocab = Vocabulary::from_words(
            [
                "<eos>", "<unk>", "fire", "truck", "trucks", "mug", "vehicle",
            ]
            .map(String::from)
            .to_vec(),
            Some(1),
            5,
        );
        let names = kind_names(&lexicon, &vocab, crate::data::text::tokenize);
        // "fire engine" has a word the vocabulary lacks; categories are no kind names
        assert_eq!(names, [vec![2, 3], vec![2, 4], vec![5]]);

        // image 1: word 2 in 1 of 2 captions; image 2: in both; word 3 never
        let images = [vec![vec![2, 2, 1], vec![1]], vec![vec![2], vec![2, 1]]];
        let prior = concept_prior(4, images.iter().map(Vec::as_slice));
        assert!((prior[2] - 0.75f32.ln()).abs() < 1e-6);
        assert!((prior[1] - 0.75f32.ln()).abs() < 1e-6);
        assert!((prior[3] - (PRIOR_FLOOR as f32).ln()).abs() < 1e-4);
    }

    #[test]
    fn log_sigmoid_is_stable() {
        for z in [-100.0f32, -5.0, 0.0, 3.0, 100.0] {
            let want = -(1.0 + (-f64::from(z)).exp()).ln();
            assert!((f64::from(log_sigmoid(z)) - want).abs() < 1e-4, "{z}");
        }
        assert!(log_sigmoid(-1000.0).is_finite());
    }

    /// model.json's `guide` reads without any field, and writes only what is set.
    #[test]
    fn guide_json_is_sparse() {
        let g: ConceptGuide = serde_json::from_str("{}").unwrap();
        assert_eq!(g, ConceptGuide::default());
        assert_eq!(serde_json::to_string(&g).unwrap(), "{}");
        let g = ConceptGuide {
            kind_floor: Some(0.1),
            ..ConceptGuide::default()
        };
        assert_eq!(serde_json::to_string(&g).unwrap(), r#"{"kind_floor":0.1}"#);
    }
}
