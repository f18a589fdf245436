//! `eval search --probes`, the label rows: what an embedding that names the labelled things
//! reaches, measured before the index makes it.
//!
//! A label head is a logistic classifier (the guide head's fit, [`fit_guide_head`]) from an
//! image's vector to the elements of its label set (`colour kind` pairs on `shapes`, kinds on
//! `scenes`: what relevance counts), fitted on the gallery's training-split images only (the
//! queries' labels are never read). Its probabilities are then an embedding:
//! - `visual (labels E)`: cosine over the probabilities, `E` the vector the head reads
//!   (`emb`: the index's embedding; `cnn`: a small CNN's features before projection);
//! - `visual (labels E, sqrt)`: over their square roots (small probabilities count more);
//! - `visual (std + labels E)`: beside the standardised embedding, both unit length;
//! - `hybrid (labels E)`: the caption list fused with `visual (labels E)` (report weights);
//! - `oracle (true labels)`: the true label sets of query and gallery as 0/1 vectors, the
//!   ceiling any label embedding could reach.

use std::collections::BTreeMap;

use super::retrieval::label_set;
use super::search_probes::{CosineIndex, ProbeItem, Standardiser, concat};
use crate::data::{Sample, Split};
use crate::error::Result;
use crate::model::guide_head::{FittedHead, GuideFit, fit_guide_head};
use crate::search::Hit;
use crate::search::fusion::{FusionWeights, fuse};

/// Rows are searched this deep before fusion (as the other probes).
const DEPTH: usize = 200;

struct Head {
    name: &'static str,
    fitted: FittedHead,
    probs: CosineIndex,
    rooted: CosineIndex,
    joint: CosineIndex,
}

/// The label rows of one `eval search` run.
pub struct LabelProbe {
    numbers: BTreeMap<String, usize>,
    heads: Vec<Head>,
    standard: Standardiser,
    oracle: CosineIndex,
    names: Vec<String>,
}

fn sigmoid_rows(head: &FittedHead, x: &[f32]) -> Vec<f32> {
    head.logits(x)
        .into_iter()
        .map(|z| 1.0 / (1.0 + (-z).exp()))
        .collect()
}

fn indicator(numbers: &BTreeMap<String, usize>, sample: &Sample) -> Vec<f32> {
    let mut v = vec![0f32; numbers.len()];
    if let Some(labels) = &sample.labels {
        for label in label_set(labels) {
            if let Some(&i) = numbers.get(&label) {
                v[i] = 1.0;
            }
        }
    }
    v
}

/// The vector a head reads: the embedding, or a small CNN's features.
fn input(item: &ProbeItem, cnn: bool) -> Option<&[f32]> {
    if cnn {
        item.features.as_ref().map(|(f, _)| f.as_slice())
    } else {
        Some(item.embedding.as_slice())
    }
}

impl LabelProbe {
    /// Fits the heads on the gallery's training-split images (all of the gallery when it has
    /// none); `None` when no gallery image has labels.
    pub fn new(gallery: &[(&Sample, &ProbeItem)]) -> Result<Option<LabelProbe>> {
        let mut fit_on: Vec<&(&Sample, &ProbeItem)> = gallery
            .iter()
            .filter(|(s, _)| s.split == Split::Train && s.labels.is_some())
            .collect();
        if fit_on.is_empty() {
            fit_on = gallery.iter().filter(|(s, _)| s.labels.is_some()).collect();
        }
        if fit_on.is_empty() {
            return Ok(None);
        }
        let mut numbers = BTreeMap::new();
        for (s, _) in &fit_on {
            for label in s.labels.as_ref().map(label_set).unwrap_or_default() {
                numbers.insert(label, 0);
            }
        }
        for (i, v) in numbers.values_mut().enumerate() {
            *v = i;
        }
        let labels = numbers.len();
        let targets: Vec<f32> = fit_on
            .iter()
            .flat_map(|(s, _)| indicator(&numbers, s))
            .collect();
        let standard = Standardiser::fit(gallery.iter().map(|(_, g)| g.embedding.as_slice()));
        let mut heads = Vec::new();
        for (name, cnn) in [("emb", false), ("cnn", true)] {
            if gallery.iter().any(|(_, g)| input(g, cnn).is_none()) {
                continue;
            }
            let dim = input(fit_on[0].1, cnn).map_or(0, <[f32]>::len);
            let x: Vec<f32> = fit_on
                .iter()
                .flat_map(|(_, g)| input(g, cnn).unwrap_or_default().iter().copied())
                .collect();
            let fitted = fit_guide_head(
                &x,
                dim,
                &targets,
                labels,
                &GuideFit::default(),
                "eval search gallery (train)",
            )?;
            tracing::info!(head = name, loss = fitted.loss, labels, "label head fitted");
            let probs: Vec<(&str, Vec<f32>)> = gallery
                .iter()
                .map(|(s, g)| {
                    let p = sigmoid_rows(&fitted, input(g, cnn).unwrap_or_default());
                    (s.path.as_str(), p)
                })
                .collect();
            let rooted = CosineIndex::new(
                probs
                    .iter()
                    .map(|(path, p)| (*path, p.iter().map(|x| x.sqrt()).collect())),
            );
            let joint =
                CosineIndex::new(gallery.iter().zip(&probs).map(|((_, g), (path, p))| {
                    (*path, concat(&standard.apply(&g.embedding), p, 1.0))
                }));
            heads.push(Head {
                name,
                fitted,
                probs: CosineIndex::new(probs),
                rooted,
                joint,
            });
        }
        let oracle = CosineIndex::new(
            gallery
                .iter()
                .map(|(s, _)| (s.path.as_str(), indicator(&numbers, s))),
        );
        let mut names = Vec::new();
        for head in &heads {
            let n = head.name;
            names.push(format!("visual (labels {n})"));
            names.push(format!("visual (labels {n}, sqrt)"));
            names.push(format!("visual (std + labels {n})"));
            names.push(format!("hybrid (labels {n})"));
        }
        names.push("oracle (true labels)".into());
        Ok(Some(LabelProbe {
            numbers,
            heads,
            standard,
            oracle,
            names,
        }))
    }

    /// The row names, in the order of [`LabelProbe::lists`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The query's ranked paths for each row; `caption` is its caption list.
    pub fn lists(
        &self,
        sample: &Sample,
        query: &ProbeItem,
        caption: &[Hit],
        weights: FusionWeights,
        keep: usize,
    ) -> Vec<Vec<String>> {
        let top = |hits: Vec<Hit>| -> Vec<String> {
            hits.into_iter().take(keep).map(|h| h.path).collect()
        };
        let mut lists = Vec::new();
        for head in &self.heads {
            let Some(x) = input(query, head.name == "cnn") else {
                lists.extend(std::iter::repeat_n(Vec::new(), 4));
                continue;
            };
            let p = sigmoid_rows(&head.fitted, x);
            let near = head.probs.search(&p, DEPTH);
            let rooted: Vec<f32> = p.iter().map(|v| v.sqrt()).collect();
            lists.push(top(near.clone()));
            lists.push(top(head.rooted.search(&rooted, DEPTH)));
            lists.push(top(head.joint.search(
                &concat(&self.standard.apply(&query.embedding), &p, 1.0),
                DEPTH,
            )));
            lists.push(top(fuse(caption, &near, weights)));
        }
        lists.push(top(self
            .oracle
            .search(&indicator(&self.numbers, sample), DEPTH)));
        lists
    }
}
