//! Caption metrics that match the reference implementations, and evaluation reports.
//!
//! Every metric is a pure function over tokens, independent of burn, checked against
//! `pycocoevalcap` 1.2 and NeuralTalk's `multi-bleu.perl` by the fixtures in
//! `tests/fixtures/metrics/` (to 1e-6):
//! - [`bleu`]: corpus BLEU-1..4 in the coco-caption convention and in NeuralTalk's;
//! - [`cider`]: CIDEr-D; [`rouge`]: ROUGE-L;
//! - [`tokenize`]: the PTB-style tokenisation `pycocoevalcap` applies before scoring.
//!
//! [`score_all`] / [`evaluate`] take raw captions and do what `pycocoevalcap`'s `COCOEvalCap` does
//! (PTB tokenisation, then Bleu, ROUGE_L, CIDEr; METEOR and SPICE need Java and are not computed),
//! plus NeuralTalk's BLEU on captions tokenised as NeuralTalk's data was (Karpathy's tokenizer,
//! [`crate::data::text::tokenize`]).

pub mod bleu;
pub mod cider;
pub mod concepts;
pub mod objects;
pub mod plot;
pub mod report;
pub mod results;
pub mod retrieval;
pub mod rouge;
pub mod run;
pub mod search;
pub mod search_label_probe;
pub mod search_probes;
pub mod search_variants;
pub mod tokenize;

#[cfg(test)]
mod fixture_tests;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Corpus scores, keyed in JSON as `pycocoevalcap` names them. Every value is on the 0–1 scale
/// except CIDEr, which is on `pycocoevalcap`'s ×10 scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// coco-caption BLEU-1 (closest-reference brevity penalty), 0–1.
    #[serde(rename = "Bleu_1")]
    pub bleu_1: f64,
    #[serde(rename = "Bleu_2")]
    pub bleu_2: f64,
    #[serde(rename = "Bleu_3")]
    pub bleu_3: f64,
    #[serde(rename = "Bleu_4")]
    pub bleu_4: f64,
    /// CIDEr-D, `pycocoevalcap` scale (×10; a perfect, distinctive caption scores 10).
    #[serde(rename = "CIDEr")]
    pub cider: f64,
    /// ROUGE-L F-measure (β = 1.2), 0–1.
    #[serde(rename = "ROUGE_L")]
    pub rouge_l: f64,
    /// NeuralTalk `multi-bleu.perl` BLEU-1 (no brevity penalty), 0–1; the script prints ×100.
    #[serde(rename = "NeuralTalk_Bleu_1")]
    pub neuraltalk_bleu_1: f64,
    #[serde(rename = "NeuralTalk_Bleu_2")]
    pub neuraltalk_bleu_2: f64,
    #[serde(rename = "NeuralTalk_Bleu_3")]
    pub neuraltalk_bleu_3: f64,
    #[serde(rename = "NeuralTalk_Bleu_4")]
    pub neuraltalk_bleu_4: f64,
}

/// One line of a metric table: the JSON key, the value, and what the number means.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// The key in `eval.json` / `score --json`.
    pub key: &'static str,
    pub value: f64,
    /// The scale the value is on, e.g. `0–1`.
    pub scale: &'static str,
    /// Convention, in a few words.
    pub convention: &'static str,
}

const COCO_BLEU: &str =
    "coco-caption / pycocoevalcap: corpus BLEU, closest-reference brevity penalty, PTB tokens";
const NT_BLEU: &str = "NeuralTalk multi-bleu.perl: no brevity penalty, Karpathy tokens";

impl Scores {
    /// The metrics in table order, with scale and convention.
    pub fn rows(&self) -> Vec<MetricRow> {
        let row = |key, value, scale, convention| MetricRow {
            key,
            value,
            scale,
            convention,
        };
        vec![
            row("Bleu_1", self.bleu_1, "0–1", COCO_BLEU),
            row("Bleu_2", self.bleu_2, "0–1", COCO_BLEU),
            row("Bleu_3", self.bleu_3, "0–1", COCO_BLEU),
            row("Bleu_4", self.bleu_4, "0–1", COCO_BLEU),
            row(
                "CIDEr",
                self.cider,
                "0–10",
                "pycocoevalcap CIDEr-D (its ×10 scale): σ = 6, clipped, document frequencies from these references",
            ),
            row(
                "ROUGE_L",
                self.rouge_l,
                "0–1",
                "pycocoevalcap ROUGE-L: LCS F-measure, β = 1.2, best precision and recall over references",
            ),
            row("NeuralTalk_Bleu_1", self.neuraltalk_bleu_1, "0–1", NT_BLEU),
            row("NeuralTalk_Bleu_2", self.neuraltalk_bleu_2, "0–1", NT_BLEU),
            row("NeuralTalk_Bleu_3", self.neuraltalk_bleu_3, "0–1", NT_BLEU),
            row("NeuralTalk_Bleu_4", self.neuraltalk_bleu_4, "0–1", NT_BLEU),
        ]
    }
}

/// Per-image scores (coco-caption conventions), for ranking the best and worst captions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageScores {
    /// Per-image BLEU-1..4 as `pycocoevalcap` reports them per image.
    pub bleu: [f64; 4],
    #[serde(rename = "CIDEr")]
    pub cider: f64,
    #[serde(rename = "ROUGE_L")]
    pub rouge_l: f64,
}

/// Corpus scores and per-image scores, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub scores: Scores,
    pub per_image: Vec<ImageScores>,
}

/// Scores tokenised captions. `coco_*` are tokenised for the coco-caption metrics
/// ([`tokenize::ptb_tokenize`]), `neuraltalk_*` for NeuralTalk's BLEU ([`crate::data::text::tokenize`]).
pub fn evaluate_tokens<S: AsRef<str>, R: AsRef<str>>(
    coco_candidates: &[Vec<S>],
    coco_references: &[Vec<Vec<R>>],
    neuraltalk_candidates: &[Vec<S>],
    neuraltalk_references: &[Vec<Vec<R>>],
) -> Evaluation {
    let b = bleu::coco_bleu(coco_candidates, coco_references);
    let c = cider::cider_d(coco_candidates, coco_references);
    let r = rouge::rouge_l(coco_candidates, coco_references);
    let nt = bleu::multi_bleu(neuraltalk_candidates, neuraltalk_references);
    let scores = Scores {
        bleu_1: b.corpus[0],
        bleu_2: b.corpus[1],
        bleu_3: b.corpus[2],
        bleu_4: b.corpus[3],
        cider: c.corpus,
        rouge_l: r.corpus,
        neuraltalk_bleu_1: nt.bleu[0],
        neuraltalk_bleu_2: nt.bleu[1],
        neuraltalk_bleu_3: nt.bleu[2],
        neuraltalk_bleu_4: nt.bleu[3],
    };
    let per_image = b
        .per_image
        .iter()
        .zip(&c.per_image)
        .zip(&r.per_image)
        .map(|((bleu, &cider), &rouge_l)| ImageScores {
            bleu: *bleu,
            cider,
            rouge_l,
        })
        .collect();
    Evaluation { scores, per_image }
}

/// Scores raw captions: `candidates[i]` is the caption produced for image i, `references[i]` its
/// reference captions. Tokenises them for each convention, then computes every metric.
///
/// Fails when the two lists differ in length, when there is nothing to score, or when an image has
/// no reference.
pub fn evaluate<C: AsRef<str>, R: AsRef<str>>(
    candidates: &[C],
    references: &[Vec<R>],
) -> Result<Evaluation> {
    if candidates.len() != references.len() {
        return Err(Error::Invalid(format!(
            "{} candidate captions but {} reference sets: every image needs exactly one candidate",
            candidates.len(),
            references.len()
        )));
    }
    if candidates.is_empty() {
        return Err(Error::Invalid(
            "no captions to score: the candidate list is empty".into(),
        ));
    }
    if let Some(i) = references.iter().position(Vec::is_empty) {
        return Err(Error::Invalid(format!(
            "image {i} (0-based) has no reference caption; every scored image needs at least one"
        )));
    }
    let tok = |f: fn(&str) -> Vec<String>| {
        let c: Vec<Vec<String>> = candidates.iter().map(|c| f(c.as_ref())).collect();
        let r: Vec<Vec<Vec<String>>> = references
            .iter()
            .map(|rs| rs.iter().map(|r| f(r.as_ref())).collect())
            .collect();
        (c, r)
    };
    let (coco_c, coco_r) = tok(tokenize::ptb_tokenize);
    let (nt_c, nt_r) = tok(crate::data::text::tokenize);
    Ok(evaluate_tokens(&coco_c, &coco_r, &nt_c, &nt_r))
}

/// Corpus scores of raw captions; see [`evaluate`].
pub fn score_all<C: AsRef<str>, R: AsRef<str>>(
    candidates: &[C],
    references: &[Vec<R>],
) -> Result<Scores> {
    evaluate(candidates, references).map(|e| e.scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_pycocoevalcap_names() {
        let s = score_all(
            &["A dog runs.", "a cat"],
            &[
                vec!["A dog runs on grass."],
                vec!["A cat sleeps.", "a black cat"],
            ],
        )
        .unwrap();
        let v = serde_json::to_value(s).unwrap();
        for key in [
            "Bleu_1",
            "Bleu_2",
            "Bleu_3",
            "Bleu_4",
            "CIDEr",
            "ROUGE_L",
            "NeuralTalk_Bleu_1",
            "NeuralTalk_Bleu_4",
        ] {
            assert!(v.get(key).is_some_and(|x| x.is_f64()), "{key} in {v}");
        }
        assert_eq!(s.rows().len(), 10);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(score_all(&["a"], &[vec!["a"], vec!["b"]]).is_err());
        assert!(score_all::<&str, &str>(&[], &[]).is_err());
        assert!(score_all(&["a"], &[Vec::<&str>::new()]).is_err());
    }

    #[test]
    fn conventions_tokenise_differently() {
        // PTB splits "dog's" into "dog 's"; Karpathy's tokenizer keeps one token.
        let e = evaluate(&["the dog's ball"], &[vec!["the dog's ball"]]).unwrap();
        assert!((e.scores.neuraltalk_bleu_4 - 0.0).abs() < 1e-12); // 3 tokens: no 4-gram
        assert!((e.scores.bleu_4 - 1.0).abs() < 1e-6); // 4 PTB tokens match
    }
}
