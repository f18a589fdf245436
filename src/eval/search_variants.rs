//! The extra rows of `capsearch eval search`, for choosing how hybrid search works: other fusion
//! methods and weights (`--compare-fusion`), and diagnostics (`--diagnostics`):
//! - `caption (query refs)`: the query image's reference captions, as one text query, against the
//!   generated gallery captions: what a perfect caption of the query would reach;
//! - `hybrid (query refs)`: that list fused with the visual one (the report's weights);
//! - `visual (concept)`: cosine over the concept head's word probabilities
//!   (`sigmoid(x0 · Wc + bc)`, `x0` the projected image), for models trained with `concept_loss`;
//! - `hybrid (concept)`: the caption list fused with that one.
//!
//! Every row searches the same gallery with the same queries as the main rows.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::error::{Error, Result};
use crate::model::inference::CaptionEngine;
use crate::search::Hit;
use crate::search::fusion::{FusionMethod, FusionWeights, fuse};

/// A `--compare-fusion` entry: `METHOD:CAPTION_WEIGHT` (the visual weight is 1), e.g.
/// `combsum-z:0.5`.
pub fn parse_fusion(spec: &str) -> Result<FusionWeights> {
    let (method, weight) = spec.split_once(':').ok_or_else(|| {
        Error::option(
            "--compare-fusion",
            format!("{spec:?} is not METHOD:CAPTION_WEIGHT (e.g. combsum-z:0.5)"),
        )
    })?;
    let method: FusionMethod = method.parse()?;
    let caption: f32 = weight.parse().map_err(|_| {
        Error::option(
            "--compare-fusion",
            format!("{spec:?}: the caption weight {weight:?} is not a number"),
        )
    })?;
    let weights = FusionWeights {
        caption,
        visual: 1.0,
        method,
    };
    weights.validate()?;
    Ok(weights)
}

/// The row name of a compared fusion.
pub fn fusion_row(weights: &FusionWeights) -> String {
    format!(
        "hybrid {} c{} v{}",
        weights.method, weights.caption, weights.visual
    )
}

/// Fuses two lists and keeps the first `keep` paths.
pub fn fused_paths(
    caption: &[Hit],
    visual: &[Hit],
    weights: FusionWeights,
    keep: usize,
) -> Vec<String> {
    fuse(caption, visual, weights)
        .into_iter()
        .take(keep)
        .map(|h| h.path)
        .collect()
}

/// The concept head of an engine as a function of its embeddings, when it has one (and its
/// embeddings are the projected image or the features `project` takes).
pub struct ConceptSpace<'a> {
    engine: &'a CaptionEngine,
}

impl<'a> ConceptSpace<'a> {
    pub fn of(engine: &'a CaptionEngine) -> Option<Self> {
        // label-head embeddings are label probabilities, which no word head reads
        if engine.label_head().is_some() {
            return None;
        }
        let model = &engine.loaded.model;
        // a small CNN's embedding is the projected image, which a head on the feature cannot read
        let readable = match &model.guide_head {
            // a guide head reads the backbone's feature, which is the embedding
            Some(_) => model.cnn.is_none(),
            None => model
                .concept
                .as_ref()
                .is_some_and(|h| !(h.on_feature && model.cnn.is_some())),
        };
        (readable && model.tail.is_none()).then_some(ConceptSpace { engine })
    }

    /// The word probabilities of each embedding (rows of `embeddings`, all of one length).
    pub fn words(&self, embeddings: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let model = &self.engine.loaded.model;
        if !model.can_guide() {
            return Ok(Vec::new());
        }
        let Some(dims) = embeddings.first().map(|e| e.len()) else {
            return Ok(Vec::new());
        };
        let rows = embeddings.len();
        // The head reads the raw embedding: undo a fitted standardisation.
        let flat: Vec<f32> = match self.engine.embedding_stats() {
            Some(stats) => embeddings
                .iter()
                .flat_map(|e| {
                    let mut raw = e.to_vec();
                    stats.invert(&mut raw);
                    raw
                })
                .collect(),
            None => embeddings.iter().flat_map(|e| e.iter().copied()).collect(),
        };
        let x = Tensor::<1>::from_data(TensorData::new(flat, [rows * dims]), &self.engine.device)
            .reshape([rows, dims]);
        // A small CNN's embedding is the projected image already (its head reads that, see
        // `of`); a backbone's is the feature.
        let (x, x0) = if model.cnn.is_some() {
            (x.clone(), x)
        } else {
            (x.clone(), model.project(x))
        };
        let Some(logits) = model.guide_logits(x, x0) else {
            return Ok(Vec::new());
        };
        let probs = sigmoid(logits);
        let v = probs.dims()[1];
        let data = probs
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|error| Error::Backend {
                what: "the concept probabilities".into(),
                error,
            })?;
        Ok(data.chunks_exact(v.max(1)).map(<[f32]>::to_vec).collect())
    }
}

/// The `keep` gallery vectors nearest `query` by cosine, best first, ties by path, as hits with
/// `visual_score` set.
pub fn nearest_in_memory(gallery: &[(String, Vec<f32>)], query: &[f32], keep: usize) -> Vec<Hit> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let qn = norm(query);
    let mut scored: Vec<(f32, &str)> = gallery
        .iter()
        .map(|(path, v)| {
            let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
            (dot / (norm(v) * qn), path.as_str())
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(keep)
        .map(|(similarity, path)| Hit {
            path: path.to_string(),
            caption: String::new(),
            score: similarity,
            caption_score: None,
            visual_score: Some(similarity),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_fusions_parse_and_bad_ones_are_refused() {
        let w = parse_fusion("combsum-z:0.5").unwrap();
        assert_eq!(w.method, FusionMethod::CombsumZ);
        assert_eq!((w.caption, w.visual), (0.5, 1.0));
        assert_eq!(fusion_row(&w), "hybrid combsum-z c0.5 v1");
        assert!(parse_fusion("combsum-z").is_err());
        assert!(parse_fusion("borda:1").is_err());
        assert!(parse_fusion("rrf:x").is_err());
        assert!(parse_fusion("rrf:-1").is_err());
    }

    #[test]
    fn in_memory_nearest_is_cosine_with_ties_by_path() {
        let gallery = vec![
            ("c".to_string(), vec![1.0, 0.0]),
            ("a".to_string(), vec![2.0, 0.0]),
            ("b".to_string(), vec![0.0, 1.0]),
        ];
        let hits = nearest_in_memory(&gallery, &[1.0, 0.1], 3);
        let order: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"]);
        assert!((hits[0].score - hits[1].score).abs() < 1e-6);
    }
}
