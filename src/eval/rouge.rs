//! ROUGE-L as `pycocoevalcap`'s `Rouge` scorer computes it (`rouge.py`), on tokenised captions.
//!
//! Per image: the longest common subsequence (LCS) of the candidate with each reference gives a
//! precision `lcs / len(candidate)` and a recall `lcs / len(reference)`; the *maximum* precision and
//! the *maximum* recall over the references (possibly from different references) are combined as
//! `(1 + β²) P R / (R + β² P)` with β = 1.2, or 0 when either is 0. The corpus score is the mean
//! over images, on the 0–1 scale.
//!
//! The reference splits captions with `split(" ")`, so an empty caption is one empty token: it has
//! length 1 (no division by zero), and an empty candidate against an empty reference has LCS 1.
//! This module keeps that behaviour by treating an empty token list as `[""]`.

/// β of the F-measure; recall weighs β² = 1.44 times precision.
pub const BETA: f64 = 1.2;

/// ROUGE-L scores.
#[derive(Debug, Clone, PartialEq)]
pub struct RougeL {
    /// Mean over images (`pycocoevalcap`'s `ROUGE_L`), 0–1.
    pub corpus: f64,
    /// Per-image scores in input order.
    pub per_image: Vec<f64>,
}

/// Length of the longest common subsequence of two token lists.
pub fn lcs_len<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> usize {
    // One row of the dynamic-programming table over the shorter list.
    let (long, short): (Vec<&str>, Vec<&str>) = if a.len() >= b.len() {
        (
            a.iter().map(AsRef::as_ref).collect(),
            b.iter().map(AsRef::as_ref).collect(),
        )
    } else {
        (
            b.iter().map(AsRef::as_ref).collect(),
            a.iter().map(AsRef::as_ref).collect(),
        )
    };
    let mut prev = vec![0usize; short.len() + 1];
    let mut cur = vec![0usize; short.len() + 1];
    for x in &long {
        for (j, y) in short.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()]
}

/// Python's `"".split(" ") == [""]`.
fn as_python_split<S: AsRef<str>>(tokens: &[S]) -> Vec<&str> {
    if tokens.is_empty() {
        vec![""]
    } else {
        tokens.iter().map(AsRef::as_ref).collect()
    }
}

/// ROUGE-L of one candidate against its references (0 when there are no references).
pub fn rouge_l_image<S: AsRef<str>, R: AsRef<str>>(candidate: &[S], references: &[Vec<R>]) -> f64 {
    let cand = as_python_split(candidate);
    let mut prec_max = 0.0f64;
    let mut rec_max = 0.0f64;
    for reference in references {
        let r = as_python_split(reference);
        let lcs = lcs_len(&r, &cand) as f64;
        prec_max = prec_max.max(lcs / cand.len() as f64);
        rec_max = rec_max.max(lcs / r.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let b2 = BETA * BETA;
        ((1.0 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max)
    } else {
        0.0
    }
}

/// ROUGE-L for a corpus: per-image scores and their mean (0 for an empty corpus).
pub fn rouge_l<S: AsRef<str>, R: AsRef<str>>(
    candidates: &[Vec<S>],
    references: &[Vec<Vec<R>>],
) -> RougeL {
    let per_image: Vec<f64> = candidates
        .iter()
        .zip(references)
        .map(|(c, r)| rouge_l_image(c, r))
        .collect();
    let corpus = if per_image.is_empty() {
        0.0
    } else {
        per_image.iter().sum::<f64>() / per_image.len() as f64
    };
    RougeL { corpus, per_image }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn lcs_examples() {
        assert_eq!(lcs_len(&toks("a b c d"), &toks("a c d")), 3);
        assert_eq!(lcs_len(&toks("a c d"), &toks("a b c d")), 3);
        assert_eq!(lcs_len(&toks("x y"), &toks("a b")), 0);
        assert_eq!(lcs_len::<&str, &str>(&[], &toks("a b")), 0);
    }

    #[test]
    fn max_precision_and_recall_may_come_from_different_references() {
        // ref 1 gives precision 1 (lcs 2 / cand 2), ref 2 gives recall 1 (lcs 1 / ref 1).
        let s = rouge_l_image(&toks("a b"), &[toks("a b c d"), toks("a")]);
        let (p, r) = (1.0, 1.0);
        let expected = (1.0 + 1.44) * p * r / (r + 1.44 * p);
        assert!((s - expected).abs() < 1e-12);
    }

    #[test]
    fn empty_captions_follow_python_split() {
        assert_eq!(rouge_l_image::<&str, &str>(&[], &[toks("a b")]), 0.0);
        assert!((rouge_l_image::<&str, &str>(&[], &[vec![]]) - 1.0).abs() < 1e-12);
        assert_eq!(rouge_l_image::<&str, &str>(&toks("a"), &[]), 0.0);
    }
}
