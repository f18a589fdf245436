//! The concept head as a kind classifier: how far concept-guided decoding can go.
//!
//! Concept-guided decoding (see [`crate::model::guide::ConceptBias`]) can only name a thing the
//! concept head sees. This module reads the head's word probabilities as a classifier of the
//! dataset's kinds and scores it with the object metrics' rules (see [`super::objects`]), so
//! `eval` can show the ceiling beside what the captions reach.
//!
//! - A kind's **score** for an image is the best of its names (singular, plural, synonyms, exemplar
//!   phrases; not category names) that the vocabulary can say, a name scoring the lowest
//!   probability of its words: "fire truck" is as likely as the less likely of "fire" and "truck".
//!   A kind none of whose names the vocabulary holds scores 0: no caption can name it.
//! - At a threshold `t`, the head **names** every kind scoring at least `t`. Recall is the share of
//!   the labelled things whose kind it names (seen and unseen exemplars apart), precision the
//!   share of the kinds it names that are in the image. Micro-averaged, as the captions' figures.
//! - `oracle count`: the head names as many kinds as the image has (its best-scoring ones), a
//!   threshold-free figure of how well it ranks kinds.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::data::labels::{LabelledObject, Lexicon};
use crate::data::text::Vocabulary;

/// The thresholds the probe reports.
pub const PROBE_THRESHOLDS: [f32; 8] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7];

/// The kinds of a lexicon, each with its names as word ids of a vocabulary.
#[derive(Debug, Clone)]
pub struct KindProbe {
    /// Kind names, sorted (the lexicon's order).
    kinds: Vec<String>,
    /// Per kind: the names the vocabulary can say, as word ids.
    names: Vec<Vec<Vec<usize>>>,
}

/// One row of the probe: the head's kind recall and precision at a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// The threshold, or `None` for the oracle-count row.
    pub threshold: Option<f32>,
    pub recall: Option<f64>,
    pub seen_recall: Option<f64>,
    pub unseen_recall: Option<f64>,
    pub precision: Option<f64>,
    /// Kinds named per image, on average.
    pub named_per_image: f64,
}

/// The probe's result: rows, and how many kinds the vocabulary cannot name at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptProbe {
    pub rows: Vec<ProbeRow>,
    /// Kinds of the lexicon with no name in the model's vocabulary.
    pub unnameable_kinds: usize,
    pub kinds: usize,
}

impl KindProbe {
    /// Names of `lexicon` as ids of `vocab`, tokenized with `tokenize`; names with a word outside
    /// the vocabulary are left out.
    pub fn new(
        lexicon: &Lexicon,
        vocab: &Vocabulary,
        tokenize: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let kinds: Vec<String> = lexicon.kinds.keys().cloned().collect();
        let names = lexicon
            .kinds
            .values()
            .map(|k| {
                k.names
                    .iter()
                    .filter_map(|name| {
                        let ids: Option<Vec<usize>> =
                            tokenize(name).iter().map(|t| vocab.id(t)).collect();
                        ids.filter(|ids| !ids.is_empty())
                    })
                    .collect()
            })
            .collect();
        Self { kinds, names }
    }

    /// Each kind's score for one image's word probabilities (see the module documentation).
    pub fn scores(&self, probs: &[f32]) -> Vec<f32> {
        self.names
            .iter()
            .map(|names| {
                names
                    .iter()
                    .map(|ids| {
                        ids.iter()
                            .map(|&w| probs.get(w).copied().unwrap_or(0.0))
                            .fold(f32::INFINITY, f32::min)
                    })
                    .fold(0.0, f32::max)
            })
            .collect()
    }

    /// The probe over images: each image's word probabilities and labelled things.
    pub fn probe<'a>(
        &self,
        images: impl IntoIterator<Item = (&'a [f32], &'a [LabelledObject])>,
    ) -> ConceptProbe {
        let images: Vec<(Vec<f32>, &[LabelledObject])> = images
            .into_iter()
            .map(|(p, o)| (self.scores(p), o))
            .collect();
        let mut rows: Vec<ProbeRow> = PROBE_THRESHOLDS
            .iter()
            .map(|&t| {
                self.row(
                    Some(t),
                    images.iter().map(|(s, o)| {
                        let named: BTreeSet<usize> = (0..s.len()).filter(|&k| s[k] >= t).collect();
                        (named, *o)
                    }),
                )
            })
            .collect();
        rows.push(self.row(
            None,
            images.iter().map(|(s, o)| {
                let present: BTreeSet<&str> = o.iter().map(|x| x.kind.as_str()).collect();
                let mut order: Vec<usize> = (0..s.len()).collect();
                order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
                (order.into_iter().take(present.len()).collect(), *o)
            }),
        ));
        ConceptProbe {
            rows,
            unnameable_kinds: self.names.iter().filter(|n| n.is_empty()).count(),
            kinds: self.kinds.len(),
        }
    }

    fn row<'a>(
        &self,
        threshold: Option<f32>,
        images: impl Iterator<Item = (BTreeSet<usize>, &'a [LabelledObject])>,
    ) -> ProbeRow {
        let (mut seen, mut seen_hit, mut unseen, mut unseen_hit) = (0usize, 0, 0usize, 0);
        let (mut named_total, mut named_right, mut count) = (0usize, 0usize, 0usize);
        for (named, objects) in images {
            count += 1;
            let present: BTreeSet<usize> = objects
                .iter()
                .filter_map(|o| self.kinds.binary_search(&o.kind).ok())
                .collect();
            named_total += named.len();
            named_right += named.intersection(&present).count();
            for o in objects {
                let hit = self
                    .kinds
                    .binary_search(&o.kind)
                    .is_ok_and(|k| named.contains(&k));
                if o.unseen {
                    unseen += 1;
                    unseen_hit += usize::from(hit);
                } else {
                    seen += 1;
                    seen_hit += usize::from(hit);
                }
            }
        }
        let share = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        ProbeRow {
            threshold,
            recall: share(seen_hit + unseen_hit, seen + unseen),
            seen_recall: share(seen_hit, seen),
            unseen_recall: share(unseen_hit, unseen),
            precision: share(named_right, named_total),
            named_per_image: named_total as f64 / count.max(1) as f64,
        }
    }
}

/// The probe as a Markdown section.
pub fn probe_table_md(probe: &ConceptProbe) -> String {
    use std::fmt::Write;
    let f = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.3}"));
    let mut s = String::from(
        "## The concept head as a kind classifier\n\nWhat concept-guided decoding can reach: \
         the kinds whose names the head scores at least the threshold (a name scores its least \
         likely word).\n\n| threshold | recall | seen recall | unseen recall | precision | kinds per image |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in &probe.rows {
        let t = r
            .threshold
            .map_or("oracle count".to_string(), |t| format!("{t}"));
        let _ = writeln!(
            s,
            "| {t} | {} | {} | {} | {} | {:.2} |",
            f(r.recall),
            f(r.seen_recall),
            f(r.unseen_recall),
            f(r.precision),
            r.named_per_image
        );
    }
    let _ = writeln!(
        s,
        "\n{} of {} kinds have no name in the model's vocabulary.\n",
        probe.unnameable_kinds, probe.kinds
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::KindNames;
    use crate::data::text::tokenize;

    fn thing(kind: &str, unseen: bool) -> LabelledObject {
        serde_json::from_value(serde_json::json!({
            "kind": kind, "stamp": "s.png", "box": [0.0, 0.0, 1.0, 1.0], "size": "small",
            "unseen": unseen
        }))
        .unwrap()
    }

    /// A kind scores its best sayable name, a name its least likely word; thresholds and the
    /// oracle count name kinds as documented, and recall splits seen from unseen things.
    #[test]
    fn the_probe_scores_names_and_counts_like_the_object_metrics() {
        let mut lexicon = Lexicon::default();
        let names = |n: &[&str]| KindNames {
            names: n.iter().map(|s| s.to_string()).collect(),
            category: vec!["animal".into()],
        };
        lexicon
            .kinds
            .insert("fire truck".into(), names(&["fire truck", "fire engine"]));
        lexicon
            .kinds
            .insert("frog".into(), names(&["frog", "toad"]));
        lexicon.kinds.insert("quokka".into(), names(&["quokka"]));
        // ids: 0 END, 1 unk, 2 fire, 3 truck, 4 frog, 5 toad, 6 animal ("engine", "quokka" rare)
        let vocab = Vocabulary::from_words(
            ["<eos>", "<unk>", "fire", "truck", "frog", "toad", "animal"]
                .map(String::from)
                .to_vec(),
            Some(1),
            5,
        );
        let probe = KindProbe::new(&lexicon, &vocab, tokenize);
        let p = [0.0f32, 0.0, 0.9, 0.3, 0.2, 0.6, 1.0];
        // fire truck: min(0.9, 0.3), "fire engine" unsayable; frog: max(0.2, 0.6); quokka: 0
        assert_eq!(probe.scores(&p), [0.3, 0.6, 0.0]);

        let (a, b) = (
            [thing("frog", false), thing("quokka", true)],
            [thing("fire truck", true)],
        );
        let q = [0.0f32, 0.0, 0.9, 0.9, 0.1, 0.1, 1.0];
        let result = probe.probe([(&p[..], &a[..]), (&q[..], &b[..])]);
        assert_eq!(result.unnameable_kinds, 1);
        assert_eq!(result.kinds, 3);
        let at = |t: f32| result.rows.iter().find(|r| r.threshold == Some(t)).unwrap();
        // t = 0.5: image a names frog (right), image b fire truck (right)
        let r = at(0.5);
        assert_eq!(r.recall, Some(2.0 / 3.0));
        assert_eq!(r.seen_recall, Some(1.0));
        assert_eq!(r.unseen_recall, Some(0.5));
        assert_eq!(r.precision, Some(1.0));
        assert_eq!(r.named_per_image, 1.0);
        // t = 0.2: image a also names fire truck (wrong)
        assert_eq!(at(0.2).precision, Some(2.0 / 3.0));
        // oracle count: a names its 2 best (frog, fire truck), b its best (fire truck)
        let oracle = result.rows.last().unwrap();
        assert_eq!(oracle.threshold, None);
        assert_eq!(oracle.precision, Some(2.0 / 3.0));
        assert_eq!(oracle.named_per_image, 1.5);
        assert!(probe_table_md(&result).contains("| oracle count | 0.667 |"));
    }
}
