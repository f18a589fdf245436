//! Corpus BLEU-1..4 with several references per image, in two conventions that give different
//! numbers for the same captions. Both take already tokenised captions.
//!
//! - [`coco_bleu`]: the coco-caption / `pycocoevalcap` `Bleu` scorer (`bleu_scorer.py`, option
//!   `closest`), the convention of captioning papers. n-gram counts are clipped by the largest count
//!   in any one reference and summed over the corpus. The brevity penalty uses, per image, the
//!   reference length closest to the candidate's (ties go to the shorter reference), summed over the
//!   corpus. Each precision is `(correct + 1e-15) / (guessed + 1e-9)`, so an order with no match
//!   gives a tiny non-zero BLEU instead of 0, and BLEU-n is the n-th root of the running product of
//!   precisions 1..n. The per-image scores are the same formula on one image.
//! - [`multi_bleu`]: NeuralTalk's `eval/multi-bleu.perl` as shipped (karpathy/neuraltalk at commit
//!   `8336615`), the script behind NeuralTalk's published Flickr8k figures. Its brevity penalty is
//!   commented out (always 1), an order with no n-gram or no match has precision 0 and makes that
//!   BLEU-n exactly 0 (`my_log(0)` is `-9999999999`), and it prints on a 0–100 scale with one
//!   decimal. It splits lines on ASCII whitespace and is case-sensitive (NeuralTalk did not pass
//!   `-lc`); [`multi_bleu_lines`] reproduces that text handling. Two things of NeuralTalk's driver
//!   (`eval_sentence_predictions.py`) are not reproduced: it kept only the first 5 references of an
//!   image, and it wrote its files without a final newline, so Perl's `chop` cut the last character of
//!   the last caption in each file.
//!
//! The crate `bleuscore` (0.2.0) was evaluated and is not exact for the coco convention: it always
//! re-tokenises with the mteval-13a tokenizer, returns 0 when any precision is 0 where
//! `pycocoevalcap` returns a small positive number (off by more than 1e-6), has no per-image scores,
//! and panics on an empty corpus.

use std::collections::HashMap;

/// Highest n-gram order: BLEU-1..4.
pub const MAX_N: usize = 4;

/// `pycocoevalcap`'s guard added to matched counts ("so that if guess is 0 still return 0").
const TINY: f64 = 1e-15;
/// `pycocoevalcap`'s guard added to guessed counts and the reference length.
const SMALL: f64 = 1e-9;

/// Counts of every n-gram of order 1..=`max_n` in `tokens`.
fn ngram_counts<S: AsRef<str>>(tokens: &[S], max_n: usize) -> HashMap<Vec<&str>, usize> {
    let words: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
    let mut counts = HashMap::new();
    for n in 1..=max_n {
        for gram in words.windows(n) {
            *counts.entry(gram.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

/// Per-image sufficient statistics shared by both conventions.
#[derive(Debug, Clone, PartialEq)]
struct Cooked {
    test_len: usize,
    /// Length of the reference closest to the candidate (ties: the shorter).
    closest_ref_len: usize,
    /// Candidate n-grams of each order.
    guess: [usize; MAX_N],
    /// Candidate n-grams of each order matched, each n-gram clipped by its largest count in any one reference.
    correct: [usize; MAX_N],
}

fn cook<S: AsRef<str>, R: AsRef<str>>(candidate: &[S], references: &[Vec<R>]) -> Cooked {
    let mut max_ref_counts: HashMap<Vec<&str>, usize> = HashMap::new();
    for reference in references {
        for (gram, count) in ngram_counts(reference, MAX_N) {
            let slot = max_ref_counts.entry(gram).or_insert(0);
            *slot = (*slot).max(count);
        }
    }
    let test_len = candidate.len();
    // Python: min((abs(l - testlen), l) for l in reflen)[1]; Perl: the same rule written as a loop.
    let closest_ref_len = references
        .iter()
        .map(|r| (r.len().abs_diff(test_len), r.len()))
        .min()
        .map_or(0, |(_, len)| len);
    let mut guess = [0; MAX_N];
    for (k, g) in guess.iter_mut().enumerate() {
        *g = test_len.saturating_sub(k);
    }
    let mut correct = [0; MAX_N];
    for (gram, count) in ngram_counts(candidate, MAX_N) {
        let matched = max_ref_counts.get(&gram).copied().unwrap_or(0);
        correct[gram.len() - 1] += count.min(matched);
    }
    Cooked {
        test_len,
        closest_ref_len,
        guess,
        correct,
    }
}

/// `pycocoevalcap`'s combination of counts into BLEU-1..4 with its brevity penalty.
fn coco_combine(
    correct: &[usize; MAX_N],
    guess: &[usize; MAX_N],
    test_len: usize,
    ref_len: usize,
) -> [f64; MAX_N] {
    let mut bleus = [0.0; MAX_N];
    let mut product = 1.0f64;
    for k in 0..MAX_N {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        bleus[k] = product.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        let penalty = (1.0 - 1.0 / ratio).exp();
        for b in &mut bleus {
            *b *= penalty;
        }
    }
    bleus
}

/// BLEU in the coco-caption convention: corpus scores and per-image scores.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoBleu {
    /// Corpus BLEU-1..4 on the 0–1 scale (`pycocoevalcap`'s `Bleu_1`..`Bleu_4`).
    pub corpus: [f64; MAX_N],
    /// Per-image BLEU-1..4, in input order (`pycocoevalcap`'s second return value, transposed).
    pub per_image: Vec<[f64; MAX_N]>,
    /// Total candidate length in tokens.
    pub test_len: usize,
    /// Total of the closest reference lengths.
    pub ref_len: usize,
}

/// Corpus BLEU-1..4 as `pycocoevalcap`'s `Bleu(4).compute_score` computes it (option `closest`).
///
/// `candidates[i]` is image i's tokenised caption, `references[i]` its tokenised references.
/// An empty corpus scores 0. The two slices are zipped: extra entries of the longer one are ignored
/// (callers check lengths).
pub fn coco_bleu<S: AsRef<str>, R: AsRef<str>>(
    candidates: &[Vec<S>],
    references: &[Vec<Vec<R>>],
) -> CocoBleu {
    let mut total_correct = [0usize; MAX_N];
    let mut total_guess = [0usize; MAX_N];
    let (mut test_len, mut ref_len) = (0usize, 0usize);
    let mut per_image = Vec::with_capacity(candidates.len());
    for (candidate, refs) in candidates.iter().zip(references) {
        let c = cook(candidate, refs);
        per_image.push(coco_combine(
            &c.correct,
            &c.guess,
            c.test_len,
            c.closest_ref_len,
        ));
        for k in 0..MAX_N {
            total_correct[k] += c.correct[k];
            total_guess[k] += c.guess[k];
        }
        test_len += c.test_len;
        ref_len += c.closest_ref_len;
    }
    let corpus = if per_image.is_empty() {
        [0.0; MAX_N]
    } else {
        coco_combine(&total_correct, &total_guess, test_len, ref_len)
    };
    CocoBleu {
        corpus,
        per_image,
        test_len,
        ref_len,
    }
}

/// BLEU as NeuralTalk's `multi-bleu.perl` computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiBleu {
    /// BLEU-1..4 on the 0–1 scale (the script prints 100 times these, with one decimal).
    pub bleu: [f64; MAX_N],
    /// Modified n-gram precisions 1..4 (0 when the order has no n-gram).
    pub precisions: [f64; MAX_N],
    /// The brevity penalty the script reports: always 1, as its computation is commented out.
    pub brevity_penalty: f64,
    /// `hyp_len` in the script's output: total candidate tokens.
    pub hyp_len: usize,
    /// `ref_len` in the script's output: total of the closest reference lengths.
    pub ref_len: usize,
}

impl MultiBleu {
    /// The script's own output line, e.g. `BLEU = 57.2/38.6/25.4/16.8 (BP=1.000, ratio=0.950, hyp_len=.., ref_len=..)`.
    pub fn perl_line(&self) -> String {
        if self.ref_len == 0 {
            return "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)".to_string();
        }
        format!(
            "BLEU = {:.1}/{:.1}/{:.1}/{:.1} (BP={:.3}, ratio={:.3}, hyp_len={}, ref_len={})",
            100.0 * self.bleu[0],
            100.0 * self.bleu[1],
            100.0 * self.bleu[2],
            100.0 * self.bleu[3],
            self.brevity_penalty,
            self.hyp_len as f64 / self.ref_len as f64,
            self.hyp_len,
            self.ref_len
        )
    }
}

/// The script's `my_log`: a huge negative number stands for log(0).
fn perl_my_log(x: f64) -> f64 {
    if x == 0.0 { -9_999_999_999.0 } else { x.ln() }
}

/// BLEU-1..4 as NeuralTalk's `multi-bleu.perl` computes it, on tokenised captions.
///
/// When every closest reference length is 0 (the script prints `BLEU = 0` and exits 1), all scores are 0.
pub fn multi_bleu<S: AsRef<str>, R: AsRef<str>>(
    candidates: &[Vec<S>],
    references: &[Vec<Vec<R>>],
) -> MultiBleu {
    let mut correct = [0usize; MAX_N];
    let mut total = [0usize; MAX_N];
    let (mut hyp_len, mut ref_len) = (0usize, 0usize);
    for (candidate, refs) in candidates.iter().zip(references) {
        let c = cook(candidate, refs);
        hyp_len += c.test_len;
        // The script starts from (9999, 9999) and adds 9999 for an image without references.
        ref_len += if refs.is_empty() {
            9999
        } else {
            c.closest_ref_len
        };
        for k in 0..MAX_N {
            correct[k] += c.correct[k];
            total[k] += c.guess[k];
        }
    }
    let mut precisions = [0.0; MAX_N];
    for k in 0..MAX_N {
        if total[k] > 0 {
            precisions[k] = correct[k] as f64 / total[k] as f64;
        }
    }
    let mut bleu = [0.0; MAX_N];
    if ref_len > 0 {
        let mut log_sum = 0.0;
        for k in 0..MAX_N {
            log_sum += perl_my_log(precisions[k]);
            bleu[k] = (log_sum / (k as f64 + 1.0)).exp();
        }
    }
    MultiBleu {
        bleu,
        precisions,
        brevity_penalty: 1.0,
        hyp_len,
        ref_len,
    }
}

/// Perl's `split` with no pattern: split on runs of ASCII whitespace, ignoring leading whitespace.
/// Perl reads the files as bytes, so non-ASCII spaces are part of words.
pub fn perl_split(line: &str) -> Vec<&str> {
    line.split([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .filter(|w| !w.is_empty())
        .collect()
}

/// NeuralTalk's `multi-bleu.perl` on text lines, as the script reads them from its files: each
/// candidate line and reference line is split with Perl's `split`, and with `lowercase` (the
/// script's `-lc`, which NeuralTalk did not pass) ASCII letters are lowercased as Perl's `lc` does
/// on bytes.
pub fn multi_bleu_lines<S: AsRef<str>, R: AsRef<str>>(
    candidates: &[S],
    references: &[Vec<R>],
    lowercase: bool,
) -> MultiBleu {
    let prepare = |line: &str| -> String {
        if lowercase {
            line.to_ascii_lowercase()
        } else {
            line.to_string()
        }
    };
    let cands: Vec<String> = candidates.iter().map(|c| prepare(c.as_ref())).collect();
    let refs: Vec<Vec<String>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| prepare(r.as_ref())).collect())
        .collect();
    let cand_tokens: Vec<Vec<&str>> = cands.iter().map(|c| perl_split(c)).collect();
    let ref_tokens: Vec<Vec<Vec<&str>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| perl_split(r)).collect())
        .collect();
    multi_bleu(&cand_tokens, &ref_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn identical_caption_scores_one() {
        let c = vec![toks("a dog runs on the grass")];
        let r = vec![vec![toks("a dog runs on the grass"), toks("a cat")]];
        let coco = coco_bleu(&c, &r);
        for b in coco.corpus {
            assert!((b - 1.0).abs() < 1e-9, "{b}");
        }
        let nt = multi_bleu(&c, &r);
        for b in nt.bleu {
            assert!((b - 1.0).abs() < 1e-12, "{b}");
        }
    }

    #[test]
    fn closest_reference_length_prefers_shorter_on_ties() {
        let c = cook(&toks("a b c d e"), &[toks("a b c d"), toks("a b c d e f")]);
        assert_eq!(c.closest_ref_len, 4);
        let c = cook(&toks("a b c d e"), &[toks("x y z w v u"), toks("a b c d")]);
        assert_eq!(c.closest_ref_len, 4);
    }

    #[test]
    fn clipping_uses_the_largest_count_in_one_reference() {
        let c = cook(
            &toks("the the the the"),
            &[toks("the cat"), toks("the the mat")],
        );
        assert_eq!(c.correct[0], 2);
        assert_eq!(c.guess, [4, 3, 2, 1]);
        assert_eq!(c.correct[1], 1);
    }

    #[test]
    fn zero_matches_differ_between_conventions() {
        // No 4-gram can match: coco gives a tiny positive BLEU-4, the Perl script exactly 0.
        let c = vec![toks("a dog runs fast today")];
        let r = vec![vec![toks("a dog runs slowly home")]];
        let coco = coco_bleu(&c, &r);
        assert!(coco.corpus[3] > 0.0 && coco.corpus[3] < 1e-3);
        let nt = multi_bleu(&c, &r);
        assert_eq!(nt.bleu[3], 0.0);
        assert!((nt.bleu[0] - 0.6).abs() < 1e-12);
    }

    #[test]
    fn brevity_penalty_only_in_coco_convention() {
        let c = vec![toks("a dog")];
        let r = vec![vec![toks("a dog runs on the grass")]];
        let coco = coco_bleu(&c, &r);
        let expected = (1.0f64 - 6.0 / 2.0).exp();
        assert!((coco.corpus[0] - expected).abs() < 1e-9);
        let nt = multi_bleu(&c, &r);
        assert!((nt.bleu[0] - 1.0).abs() < 1e-12);
        assert_eq!(nt.brevity_penalty, 1.0);
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let none: Vec<Vec<&str>> = vec![];
        let none_refs: Vec<Vec<Vec<&str>>> = vec![];
        assert_eq!(coco_bleu(&none, &none_refs).corpus, [0.0; 4]);
        assert_eq!(multi_bleu(&none, &none_refs).bleu, [0.0; 4]);
        let c = vec![vec![]];
        let r = vec![vec![Vec::<&str>::new()]];
        let nt = multi_bleu::<&str, &str>(&c, &r);
        assert_eq!(nt.bleu, [0.0; 4]);
        assert!(nt.perl_line().starts_with("BLEU = 0, 0/0/0/0"));
        let coco = coco_bleu::<&str, &str>(&c, &r);
        assert!(coco.corpus.iter().all(|b| b.is_finite()));
    }

    #[test]
    fn perl_split_is_ascii_only_and_lc_is_ascii_only() {
        assert_eq!(perl_split("  a\tb\x0bc  "), ["a", "b", "c"]);
        assert_eq!(perl_split("a\u{a0}b"), ["a\u{a0}b"]);
        let nt = multi_bleu_lines(&["A Dog"], &[vec!["a dog"]], false);
        assert_eq!(nt.bleu[0], 0.0);
        let nt = multi_bleu_lines(&["A Dog"], &[vec!["a dog"]], true);
        assert!((nt.bleu[0] - 1.0).abs() < 1e-12);
        let nt = multi_bleu_lines(&["É"], &[vec!["é"]], true);
        assert_eq!(nt.bleu[0], 0.0);
    }

    #[test]
    fn perl_line_formats_like_the_script() {
        let c = vec![toks("a dog runs")];
        let r = vec![vec![toks("a dog runs"), toks("a dog")]];
        let line = multi_bleu(&c, &r).perl_line();
        assert_eq!(
            line,
            "BLEU = 100.0/100.0/100.0/0.0 (BP=1.000, ratio=1.000, hyp_len=3, ref_len=3)"
        );
    }
}
