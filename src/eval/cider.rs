//! CIDEr-D as `pycocoevalcap`'s `Cider` scorer computes it (`cider_scorer.py`), on tokenised captions.
//!
//! For each image, every caption becomes four TF-IDF vectors (n-grams of order 1..4). The document
//! frequency of an n-gram is the number of images whose references contain it, taken from the
//! reference set being scored (so scores depend on the whole test set), and the IDF is
//! `log(number of images) - log(max(1, df))`. Per order, the candidate is compared with each reference
//! by a clipped cosine: `Σ min(cand, ref) · ref / (|cand| |ref|)`, times a Gaussian length penalty
//! `exp(-δ² / 2σ²)` with σ = 6. The four orders are averaged, the result averaged over the
//! references and multiplied by 10. The corpus score is the mean over images.
//!
//! Two quirks of the reference code are kept, because they change the numbers:
//! - the "length" in the penalty is the number of *bigrams* of a caption (`if n == 1: length +=
//!   term_freq` with a 0-based order), not the number of words: 0 for a one-word caption;
//! - with a single image `log(1) = 0`, every weight is 0, and CIDEr is 0.

use std::collections::HashMap;

use super::bleu::MAX_N;

/// σ of the Gaussian length penalty.
pub const SIGMA: f64 = 6.0;

/// CIDEr-D scores.
#[derive(Debug, Clone, PartialEq)]
pub struct CiderD {
    /// Mean over images (`pycocoevalcap`'s `CIDEr`), on its scale (×10, typically 0–10).
    pub corpus: f64,
    /// Per-image scores in input order.
    pub per_image: Vec<f64>,
}

/// An n-gram → weight vector for each order, with norms and the bigram "length".
struct Vector<'a> {
    weights: [HashMap<&'a [&'a str], f64>; MAX_N],
    norms: [f64; MAX_N],
    length: f64,
}

/// Token slices of one caption, kept alive while its vectors borrow them.
fn words<S: AsRef<str>>(tokens: &[S]) -> Vec<&str> {
    tokens.iter().map(AsRef::as_ref).collect()
}

fn counts<'a>(words: &'a [&'a str]) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_N {
        for gram in words.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// An n-gram count vector turned into TF-IDF weights, as `counts2vec` does.
fn to_vector<'a>(
    cnts: &HashMap<&'a [&'a str], usize>,
    document_frequency: &HashMap<&[&str], f64>,
    ref_len: f64,
) -> Vector<'a> {
    let mut weights: [HashMap<&[&str], f64>; MAX_N] = Default::default();
    let mut norms = [0.0f64; MAX_N];
    let mut length = 0.0;
    for (&gram, &tf) in cnts {
        // An n-gram absent from the references counts as seen once: log(max(1, df)).
        let df = document_frequency
            .get(gram)
            .copied()
            .unwrap_or(0.0)
            .max(1.0)
            .ln();
        let order = gram.len() - 1;
        let w = tf as f64 * (ref_len - df);
        weights[order].insert(gram, w);
        norms[order] += w * w;
        // The reference's "length": bigram count (order index 1), kept as is.
        if order == 1 {
            length += tf as f64;
        }
    }
    for n in &mut norms {
        *n = n.sqrt();
    }
    Vector {
        weights,
        norms,
        length,
    }
}

/// CIDEr-D of each candidate against its references, with document frequencies from `references`.
pub fn cider_d<S: AsRef<str>, R: AsRef<str>>(
    candidates: &[Vec<S>],
    references: &[Vec<Vec<R>>],
) -> CiderD {
    let n_images = candidates.len().min(references.len());
    if n_images == 0 {
        return CiderD {
            corpus: 0.0,
            per_image: Vec::new(),
        };
    }
    let cand_words: Vec<Vec<&str>> = candidates[..n_images].iter().map(|c| words(c)).collect();
    let ref_words: Vec<Vec<Vec<&str>>> = references[..n_images]
        .iter()
        .map(|rs| rs.iter().map(|r| words(r)).collect())
        .collect();

    let cand_counts: Vec<HashMap<&[&str], usize>> = cand_words.iter().map(|w| counts(w)).collect();
    let ref_counts: Vec<Vec<HashMap<&[&str], usize>>> = ref_words
        .iter()
        .map(|rs| rs.iter().map(|w| counts(w)).collect())
        .collect();

    // Document frequency: in how many images' reference sets each n-gram occurs.
    let mut document_frequency: HashMap<&[&str], f64> = HashMap::new();
    for refs in &ref_counts {
        let mut seen: std::collections::HashSet<&[&str]> = std::collections::HashSet::new();
        for r in refs {
            seen.extend(r.keys().copied());
        }
        for gram in seen {
            *document_frequency.entry(gram).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (n_images as f64).ln();

    let sim = |hyp: &Vector<'_>, reference: &Vector<'_>| -> [f64; MAX_N] {
        let delta = hyp.length - reference.length;
        let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
        let mut val = [0.0f64; MAX_N];
        for (n, v) in val.iter_mut().enumerate() {
            for (gram, &h) in &hyp.weights[n] {
                let r = reference.weights[n].get(gram).copied().unwrap_or(0.0);
                *v += h.min(r) * r;
            }
            if hyp.norms[n] != 0.0 && reference.norms[n] != 0.0 {
                *v /= hyp.norms[n] * reference.norms[n];
            }
            *v *= penalty;
        }
        val
    };

    let mut per_image = Vec::with_capacity(n_images);
    for (cand, refs) in cand_counts.iter().zip(&ref_counts) {
        let hyp = to_vector(cand, &document_frequency, ref_len);
        let mut score = [0.0f64; MAX_N];
        for r in refs {
            let v = sim(&hyp, &to_vector(r, &document_frequency, ref_len));
            for n in 0..MAX_N {
                score[n] += v[n];
            }
        }
        let mut avg = score.iter().sum::<f64>() / MAX_N as f64;
        // pycocoevalcap divides by len(refs); an image without references would be a ZeroDivisionError there.
        if !refs.is_empty() {
            avg /= refs.len() as f64;
        }
        per_image.push(avg * 10.0);
    }
    let corpus = per_image.iter().sum::<f64>() / per_image.len() as f64;
    CiderD { corpus, per_image }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn single_image_scores_zero() {
        let c = vec![toks("a dog runs")];
        let r = vec![vec![toks("a dog runs")]];
        let s = cider_d(&c, &r);
        assert_eq!(s.corpus, 0.0);
    }

    #[test]
    fn exact_match_scores_ten_when_ngrams_are_distinctive() {
        // Two images with disjoint vocabularies: each caption matches its only reference exactly,
        // so every clipped cosine is 1 and the score is 10.
        let c = vec![toks("a b c d e"), toks("f g h i j")];
        let r = vec![vec![toks("a b c d e")], vec![toks("f g h i j")]];
        let s = cider_d(&c, &r);
        for x in &s.per_image {
            assert!((x - 10.0).abs() < 1e-9, "{x}");
        }
    }

    #[test]
    fn length_penalty_counts_bigrams() {
        // Candidate of 1 word has length 0, reference of 8 words has 7 bigrams: δ = 7.
        let c = vec![toks("a"), toks("z")];
        let r = vec![vec![toks("a b c d e f g h")], vec![toks("y")]];
        let s = cider_d(&c, &r);
        let w = 2f64.ln();
        let unigram_cos = w * w / (w * (8.0 * w * w).sqrt());
        let expected = unigram_cos / 4.0 * (-(49.0) / 72.0f64).exp() * 10.0;
        assert!((s.per_image[0] - expected).abs() < 1e-12);
    }

    #[test]
    fn empty_candidate_and_no_input() {
        let c = vec![vec![], toks("a b")];
        let r = vec![vec![toks("a b")], vec![toks("a b")]];
        let s = cider_d::<&str, &str>(&c, &r);
        assert_eq!(s.per_image[0], 0.0);
        let none: Vec<Vec<&str>> = vec![];
        let nr: Vec<Vec<Vec<&str>>> = vec![];
        assert_eq!(cider_d(&none, &nr).corpus, 0.0);
    }
}
