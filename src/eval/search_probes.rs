//! In-memory probes for `eval search --diagnostics`: other embeddings and other caption matching,
//! searched exactly over the same gallery, so that a change to the index is measured before it is
//! made.
//!
//! - [`Standardiser`]: per-dimension standard scores fitted on the gallery's vectors (cosine over
//!   raw pooled features is dominated by the dimensions every image shares);
//! - [`CosineIndex`]: exact cosine search over unit vectors, and pseudo-relevance feedback
//!   ([`CosineIndex::expanded`]: the query averaged with its nearest neighbours, searched again);
//! - [`TermIndex`]: BM25 over the analysed caption terms, optionally with their word bigrams
//!   (shingles, so that `red circle` binds a colour to a kind);
//! - [`cell_pooled`]: a small CNN's `grid × grid` feature map pooled over the cells (mean and
//!   max of each channel), an embedding that ignores where things are;
//! - [`rerank`]: the first `depth` hits of one list reordered by another list's scores.
//!
//! What they measured (P@10 / nDCG@10; `shapes`: 500 test queries, gallery 4500, small CNN 28
//! epochs; `scenes`: 200 test queries, val gallery 500, EfficientNet-Lite0 with concept-guided
//! decoding; the index's rows for comparison: visual 0.354 / 0.333 and 0.062 / 0.181, caption
//! 0.274 / 0.272 and 0.088 / 0.226):
//!
//! | probe | shapes | scenes |
//! |---|---|---|
//! | visual (std): standardised, fitted on the gallery | 0.373 / 0.345 | 0.084 / 0.236 |
//! | visual (centred) | 0.358 / 0.335 | 0.061 / 0.184 |
//! | signed square root of the standardised embedding, (then standardised) | 0.362, 0.364 | 0.081, 0.081 |
//! | visual (std, prf 3), (std, prf 10) | 0.352, 0.357 | 0.069, 0.067 |
//! | std + standardised concept probabilities | 0.308 / 0.288 | 0.102 / 0.306 |
//! | std + raw concept probabilities (weight 2) | 0.407 / 0.394 | 0.039 / 0.123 |
//! | caption (bigrams) | 0.312 / 0.308 | 0.079 / 0.198 |
//! | rerank std@50 by bigrams | 0.384 / 0.368 | 0.079 / 0.207 |
//! | hybrid (std, caption) c0.1, c0.3, c0.5 | 0.376, 0.382, 0.372 | 0.087, 0.096, 0.100 |
//! | small CNN features (std), cell-pooled (std) | 0.215, 0.330 | n/a |
//!
//! Only standardisation helped on both datasets; it is what `capsearch fit-embedding` makes
//! permanent. The rows are exploratory: their names may change.

use std::collections::HashMap;

use crate::data::{Dataset, Sample};
use crate::error::Result;
use crate::model::captioner::EncoderConfig;
use crate::model::inference::{CaptionEngine, Generated};
use crate::search::Hit;
use crate::search::analysis::{analyze, word_pairs};

/// Per-dimension standardisation: `(x − mean) / sd`, fitted on a set of vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    mean: Vec<f32>,
    inv_sd: Vec<f32>,
}

impl Standardiser {
    /// Fits on `rows` (all of one length). A dimension that does not vary is centred only.
    pub fn fit<'a>(rows: impl IntoIterator<Item = &'a [f32]>) -> Standardiser {
        let mut sum: Vec<f64> = Vec::new();
        let mut sq: Vec<f64> = Vec::new();
        let mut n = 0usize;
        for row in rows {
            if sum.is_empty() {
                sum = vec![0.0; row.len()];
                sq = vec![0.0; row.len()];
            }
            for ((s, q), &x) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                *s += f64::from(x);
                *q += f64::from(x) * f64::from(x);
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let inv_sd = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let var = (q / n - m * m).max(0.0);
                if var > 1e-12 {
                    (1.0 / var.sqrt()) as f32
                } else {
                    1.0
                }
            })
            .collect();
        Standardiser {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_sd,
        }
    }

    /// Centres only (the standard deviations taken as 1).
    pub fn centre_only(mut self) -> Standardiser {
        self.inv_sd.iter_mut().for_each(|s| *s = 1.0);
        self
    }

    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        v.iter()
            .zip(&self.mean)
            .zip(&self.inv_sd)
            .map(|((x, m), s)| (x - m) * s)
            .collect()
    }
}

/// `v` scaled to unit length (a zero vector stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Exact cosine search over a gallery held in memory.
pub struct CosineIndex {
    paths: Vec<String>,
    dims: usize,
    /// Unit vectors, row-major.
    data: Vec<f32>,
}

impl CosineIndex {
    pub fn new<'a>(items: impl IntoIterator<Item = (&'a str, Vec<f32>)>) -> CosineIndex {
        let mut paths = Vec::new();
        let mut data = Vec::new();
        let mut dims = 0;
        for (path, v) in items {
            dims = v.len();
            paths.push(path.to_string());
            data.extend(unit(&v));
        }
        CosineIndex { paths, dims, data }
    }

    /// The `keep` nearest gallery vectors, best first, ties by path.
    pub fn search(&self, query: &[f32], keep: usize) -> Vec<Hit> {
        let q = unit(query);
        let mut scored: Vec<(f32, usize)> = self
            .data
            .chunks_exact(self.dims.max(1))
            .map(|row| row.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();
        let by = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.paths[a.1].cmp(&self.paths[b.1]))
        };
        if keep < scored.len() {
            scored.select_nth_unstable_by(keep, by);
            scored.truncate(keep);
        }
        scored.sort_unstable_by(by);
        scored
            .into_iter()
            .map(|(similarity, i)| visual_hit(&self.paths[i], similarity))
            .collect()
    }

    /// Pseudo-relevance feedback: the query's unit vector plus the unit vectors of its `k`
    /// nearest gallery images (each weighted `weight`), searched again. `skip` is a path left out
    /// of the feedback (the query's own image, were it in the gallery).
    pub fn expanded(&self, query: &[f32], k: usize, weight: f32, keep: usize) -> Vec<Hit> {
        let first = self.search(query, k);
        let mut q = unit(query);
        for hit in &first {
            if let Some(i) = self.paths.iter().position(|p| *p == hit.path) {
                let row = &self.data[i * self.dims..(i + 1) * self.dims];
                q.iter_mut().zip(row).for_each(|(a, b)| *a += weight * b);
            }
        }
        self.search(&q, keep)
    }
}

fn visual_hit(path: &str, similarity: f32) -> Hit {
    Hit {
        path: path.to_string(),
        caption: String::new(),
        score: similarity,
        caption_score: None,
        visual_score: Some(similarity),
    }
}

/// The terms of a caption: its analysed words (as both backends index them), and with `bigrams`
/// also each pair of analysed words that stood side by side ([`word_pairs`]) as one term
/// (`red circl`), what a phrase query of the two would match.
pub fn caption_terms(text: &str, bigrams: bool) -> Vec<String> {
    let mut terms = analyze(text);
    if bigrams {
        terms.extend(word_pairs(text).into_iter().map(|(a, _)| a.join(" ")));
    }
    terms
}

/// BM25 (k1 = 1.2, b = 0.75, Lucene's idf) over caption terms, in memory.
pub struct TermIndex {
    paths: Vec<String>,
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f32>,
    average: f32,
    df: HashMap<String, u32>,
    bigrams: bool,
}

impl TermIndex {
    pub fn new<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>, bigrams: bool) -> Self {
        let mut index = TermIndex {
            paths: Vec::new(),
            docs: Vec::new(),
            lengths: Vec::new(),
            average: 0.0,
            df: HashMap::new(),
            bigrams,
        };
        for (path, text) in items {
            let terms = caption_terms(text, bigrams);
            let mut tf: HashMap<String, u32> = HashMap::new();
            for t in &terms {
                *tf.entry(t.clone()).or_default() += 1;
            }
            for t in tf.keys() {
                *index.df.entry(t.clone()).or_default() += 1;
            }
            index.paths.push(path.to_string());
            index.lengths.push(terms.len() as f32);
            index.docs.push(tf);
        }
        let n = index.lengths.len().max(1) as f32;
        index.average = index.lengths.iter().sum::<f32>() / n;
        index
    }

    /// The `keep` best-scoring captions for `text` (each distinct query term once), best first, ties by path; captions sharing no term are left out.
    pub fn search(&self, text: &str, keep: usize) -> Vec<Hit> {
        let (k1, b) = (1.2f32, 0.75f32);
        let n = self.docs.len() as f32;
        // Each distinct term once, as the embedded backend's query has one clause per term.
        let mut terms = caption_terms(text, self.bigrams);
        terms.sort();
        terms.dedup();
        let mut scored: Vec<(f32, usize)> = Vec::new();
        for (i, doc) in self.docs.iter().enumerate() {
            let mut score = 0.0;
            for t in &terms {
                let Some(&tf) = doc.get(t) else { continue };
                let df = self.df[t] as f32;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                let tf = tf as f32;
                let norm = k1 * (1.0 - b + b * self.lengths[i] / self.average.max(1e-6));
                score += idf * tf * (k1 + 1.0) / (tf + norm);
            }
            if score > 0.0 {
                scored.push((score, i));
            }
        }
        scored.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.paths[a.1].cmp(&self.paths[b.1]))
        });
        scored
            .into_iter()
            .take(keep)
            .map(|(score, i)| Hit {
                path: self.paths[i].clone(),
                caption: String::new(),
                score,
                caption_score: Some(score),
                visual_score: None,
            })
            .collect()
    }
}

/// A small CNN's flattened `[channels, grid, grid]` feature pooled over its cells: each channel's
/// mean, then each channel's maximum (`2 · channels` values).
pub fn cell_pooled(features: &[f32], cells: usize) -> Vec<f32> {
    let cells = cells.max(1);
    let rows: Vec<&[f32]> = features.chunks_exact(cells).collect();
    let mean = rows.iter().map(|c| c.iter().sum::<f32>() / cells as f32);
    let max = rows
        .iter()
        .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    mean.chain(max).collect()
}

/// The first `depth` hits of `first` reordered by their scores in `by` (absent: 0), ties keeping
/// `first`'s order; the rest of `first` follows unchanged.
pub fn rerank(first: &[Hit], by: &[Hit], depth: usize) -> Vec<Hit> {
    let scores: HashMap<&str, f32> = by.iter().map(|h| (h.path.as_str(), h.score)).collect();
    let depth = depth.min(first.len());
    let mut head: Vec<(usize, f32)> = (0..depth)
        .map(|i| {
            (
                i,
                scores.get(first[i].path.as_str()).copied().unwrap_or(0.0),
            )
        })
        .collect();
    head.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    head.into_iter()
        .map(|(i, _)| first[i].clone())
        .chain(first[depth..].iter().cloned())
        .collect()
}

/// Two vectors side by side, the second scaled by `weight` after both are made unit length.
pub fn concat(a: &[f32], b: &[f32], weight: f32) -> Vec<f32> {
    unit(a)
        .into_iter()
        .chain(unit(b).into_iter().map(|x| x * weight))
        .collect()
}

/// One image as the probes see it.
#[derive(Debug, Clone, Default)]
pub struct ProbeItem {
    pub path: String,
    /// Its generated caption.
    pub caption: String,
    /// Its embedding (what the index stores).
    pub embedding: Vec<f32>,
    /// A small CNN's features before projection, with the number of grid cells.
    pub features: Option<(Vec<f32>, usize)>,
    /// The concept head's word probabilities.
    pub concept: Option<Vec<f32>>,
}

/// The weights of the raw concept probabilities beside the standardised embedding.
const RAW_CONCEPT_WEIGHTS: [f32; 3] = [0.5, 1.0, 2.0];

/// Each value's signed square root (power normalisation), a transform that needs no statistics.
pub fn signed_sqrt(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.signum() * x.abs().sqrt()).collect()
}

/// How far each probe list reaches (as deep as hybrid search fuses).
const DEPTH: usize = crate::search::fusion::FUSION_DEPTH;

/// The probes over one gallery: their row names, and each query's ranked lists.
pub struct Probes {
    names: Vec<String>,
    unigrams: TermIndex,
    bigrams: TermIndex,
    centre: Standardiser,
    standard: Standardiser,
    centred: CosineIndex,
    standardised: CosineIndex,
    rooted: CosineIndex,
    std_rooted: (Standardiser, CosineIndex),
    /// Standardised embedding beside the raw concept probabilities, at weights 0.5, 1, 2.
    raw_concept: Vec<CosineIndex>,
    features: Option<(Standardiser, CosineIndex, Standardiser, CosineIndex)>,
    concept: Option<(Standardiser, CosineIndex)>,
}

impl Probes {
    pub fn new(gallery: &[ProbeItem]) -> Probes {
        let texts = gallery
            .iter()
            .map(|g| (g.path.as_str(), g.caption.as_str()));
        let unigrams = TermIndex::new(texts.clone(), false);
        let bigrams = TermIndex::new(texts, true);
        let standard = Standardiser::fit(gallery.iter().map(|g| g.embedding.as_slice()));
        let centre = standard.clone().centre_only();
        let index = |s: &Standardiser, of: &dyn Fn(&ProbeItem) -> Option<Vec<f32>>| {
            CosineIndex::new(
                gallery
                    .iter()
                    .filter_map(|g| of(g).map(|v| (g.path.as_str(), s.apply(&v)))),
            )
        };
        let centred = index(&centre, &|g| Some(g.embedding.clone()));
        let rooted = CosineIndex::new(
            gallery
                .iter()
                .map(|g| (g.path.as_str(), signed_sqrt(&g.embedding))),
        );
        let rooted_rows: Vec<Vec<f32>> =
            gallery.iter().map(|g| signed_sqrt(&g.embedding)).collect();
        let s_rooted = Standardiser::fit(rooted_rows.iter().map(Vec::as_slice));
        let std_rooted = (
            s_rooted.clone(),
            index(&s_rooted, &|g| Some(signed_sqrt(&g.embedding))),
        );
        let standardised = index(&standard, &|g| Some(g.embedding.clone()));
        let features = gallery
            .iter()
            .all(|g| g.features.is_some())
            .then(|| {
                let raw = |g: &ProbeItem| g.features.as_ref().map(|f| f.0.clone());
                let pooled =
                    |g: &ProbeItem| g.features.as_ref().map(|(f, cells)| cell_pooled(f, *cells));
                let s_raw = Standardiser::fit(
                    gallery
                        .iter()
                        .filter_map(|g| g.features.as_ref().map(|f| f.0.as_slice())),
                );
                let pooled_rows: Vec<Vec<f32>> = gallery.iter().filter_map(pooled).collect();
                let s_pooled = Standardiser::fit(pooled_rows.iter().map(Vec::as_slice));
                let i_raw = index(&s_raw, &raw);
                let i_pooled = index(&s_pooled, &pooled);
                (s_raw, i_raw, s_pooled, i_pooled)
            })
            .filter(|_| !gallery.is_empty());
        let concept = gallery
            .iter()
            .all(|g| g.concept.is_some())
            .then(|| {
                let s = Standardiser::fit(gallery.iter().filter_map(|g| g.concept.as_deref()));
                let joint = |g: &ProbeItem| {
                    g.concept
                        .as_ref()
                        .map(|c| concat(&standard.apply(&g.embedding), &s.apply(c), 1.0))
                };
                let i = CosineIndex::new(
                    gallery
                        .iter()
                        .filter_map(|g| joint(g).map(|v| (g.path.as_str(), v))),
                );
                (s, i)
            })
            .filter(|_| !gallery.is_empty());
        let raw_concept: Vec<CosineIndex> = if concept.is_some() {
            RAW_CONCEPT_WEIGHTS
                .iter()
                .map(|&w| {
                    CosineIndex::new(gallery.iter().filter_map(|g| {
                        g.concept
                            .as_ref()
                            .map(|c| (g.path.as_str(), concat(&standard.apply(&g.embedding), c, w)))
                    }))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut names: Vec<String> = [
            "caption (bm25 in memory)",
            "caption (bigrams)",
            "visual (centred)",
            "visual (std)",
            "visual (std, prf 3)",
            "visual (std, prf 10)",
            "hybrid (std, caption)",
            "hybrid (std, bigrams)",
            "hybrid (std, bigrams) c0.3",
            "hybrid (std, bigrams) c1",
            "hybrid (std prf 3, bigrams)",
            "rerank std@50 by bigrams",
            "rerank std@20 by bigrams",
            "hybrid (visual, bigrams)",
            "visual (sqrt)",
            "visual (std sqrt)",
            "hybrid (std, caption) c0.3",
            "hybrid (std, caption) c0.5",
        ]
        .map(String::from)
        .to_vec();
        if features.is_some() {
            names.extend(
                [
                    "visual (features std)",
                    "visual (cell-pooled std)",
                    "hybrid (cell-pooled, bigrams)",
                ]
                .map(String::from),
            );
        }
        if concept.is_some() {
            names.extend(
                [
                    "visual (std + concept)",
                    "visual (std + concept, prf 3)",
                    "hybrid (std + concept, bigrams)",
                ]
                .map(String::from),
            );
            for w in RAW_CONCEPT_WEIGHTS {
                names.push(format!("visual (std + raw concept {w})"));
                names.push(format!("hybrid (std + raw concept {w}, caption) c0.3"));
            }
        }
        Probes {
            names,
            unigrams,
            bigrams,
            centre,
            standard,
            centred,
            standardised,
            rooted,
            std_rooted,
            raw_concept,
            features,
            concept,
        }
    }

    /// The row names, in the order of [`Probes::lists`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The query's ranked paths for each row; `visual` is the index's visual list (for the
    /// plain-embedding fusions).
    pub fn lists(&self, query: &ProbeItem, visual: &[Hit], keep: usize) -> Vec<Vec<String>> {
        use crate::search::fusion::{FusionWeights, fuse};
        let top = |hits: Vec<Hit>| -> Vec<String> {
            hits.into_iter().take(keep).map(|h| h.path).collect()
        };
        let w = |caption: f32| FusionWeights {
            caption,
            ..FusionWeights::default()
        };
        let fused = |a: &[Hit], b: &[Hit], c: f32| top(fuse(a, b, w(c)));
        let caption = self.unigrams.search(&query.caption, DEPTH);
        let bigrams = self.bigrams.search(&query.caption, DEPTH);
        let std_q = self.standard.apply(&query.embedding);
        let std = self.standardised.search(&std_q, DEPTH);
        let prf3 = self.standardised.expanded(&std_q, 3, 0.5, DEPTH);
        let prf10 = self.standardised.expanded(&std_q, 10, 0.2, DEPTH);
        let mut lists = vec![
            top(caption.clone()),
            top(bigrams.clone()),
            top(self
                .centred
                .search(&self.centre.apply(&query.embedding), DEPTH)),
            top(std.clone()),
            top(prf3.clone()),
            top(prf10),
            fused(&caption, &std, 0.1),
            fused(&bigrams, &std, 0.1),
            fused(&bigrams, &std, 0.3),
            fused(&bigrams, &std, 1.0),
            fused(&bigrams, &prf3, 0.1),
            top(rerank(&std, &bigrams, 50)),
            top(rerank(&std, &bigrams, 20)),
            fused(&bigrams, visual, 0.1),
            top(self.rooted.search(&signed_sqrt(&query.embedding), DEPTH)),
            top(self.std_rooted.1.search(
                &self.std_rooted.0.apply(&signed_sqrt(&query.embedding)),
                DEPTH,
            )),
            fused(&caption, &std, 0.3),
            fused(&caption, &std, 0.5),
        ];
        if let (Some((s_raw, i_raw, s_pooled, i_pooled)), Some((f, cells))) =
            (&self.features, &query.features)
        {
            let pooled = i_pooled.search(&s_pooled.apply(&cell_pooled(f, *cells)), DEPTH);
            lists.push(top(i_raw.search(&s_raw.apply(f), DEPTH)));
            lists.push(top(pooled.clone()));
            lists.push(fused(&bigrams, &pooled, 0.1));
        }
        if let (Some((s, i)), Some(c)) = (&self.concept, &query.concept) {
            let joint = concat(&std_q, &s.apply(c), 1.0);
            let near = i.search(&joint, DEPTH);
            lists.push(top(near.clone()));
            lists.push(top(i.expanded(&joint, 3, 0.5, DEPTH)));
            lists.push(fused(&bigrams, &near, 0.1));
            for (index, w) in self.raw_concept.iter().zip(RAW_CONCEPT_WEIGHTS) {
                let near = index.search(&concat(&std_q, c, w), DEPTH);
                lists.push(top(near.clone()));
                lists.push(fused(&caption, &near, 0.3));
            }
        }
        lists
    }
}

/// The probes' view of captioned images: each one's caption and embedding, its concept
/// probabilities from `concepts` (same order, when given), and, for a small-CNN model, its
/// features before projection (read from the image again).
pub fn probe_items(
    engine: &CaptionEngine,
    dataset: &Dataset,
    generated: &[(&Sample, Generated)],
    concepts: &[(String, Vec<f32>)],
    batch_size: usize,
) -> Result<Vec<ProbeItem>> {
    let cells = match &engine.loaded.info.captioner.encoder {
        EncoderConfig::SmallCnn(c) if engine.loaded.model.cnn.is_some() => Some(c.grid * c.grid),
        _ => None,
    };
    let mut items = Vec::with_capacity(generated.len());
    for (at, chunk) in generated.chunks(batch_size.max(1)).enumerate() {
        let features: Option<Vec<Vec<f32>>> = match cells {
            Some(_) => {
                let pixels = chunk
                    .iter()
                    .map(|(s, _)| engine.prepare_image(&dataset.image_path(s)))
                    .collect::<Result<Vec<_>>>()?;
                Some(engine.feature_rows_of_pixels(&pixels)?)
            }
            None => None,
        };
        for (i, (sample, g)) in chunk.iter().enumerate() {
            let index = at * batch_size.max(1) + i;
            items.push(ProbeItem {
                path: sample.path.clone(),
                caption: g.caption.clone(),
                embedding: g.embedding.clone().unwrap_or_default(),
                features: features.as_ref().and_then(|f| f.get(i).cloned()).zip(cells),
                concept: concepts.get(index).map(|(_, c)| c.clone()),
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.path.as_str()).collect()
    }

    #[test]
    fn standardising_removes_the_shared_offset() {
        let rows = [vec![10.0, 1.0], vec![12.0, 3.0], vec![14.0, 2.0]];
        let s = Standardiser::fit(rows.iter().map(Vec::as_slice));
        let z = s.apply(&[12.0, 2.0]);
        assert!(z.iter().all(|x| x.abs() < 1e-6), "{z:?}");
        let z = s.apply(&[14.0, 3.0]);
        // sd of (10, 12, 14) = sqrt(8/3); of (1, 3, 2) = sqrt(2/3).
        assert!((z[0] - 2.0 / (8.0f32 / 3.0).sqrt()).abs() < 1e-5);
        assert!((z[1] - 1.0 / (2.0f32 / 3.0).sqrt()).abs() < 1e-5);
        let c = s.centre_only().apply(&[14.0, 3.0]);
        assert_eq!(c, vec![2.0, 1.0]);
    }

    #[test]
    fn cosine_index_ranks_by_angle_and_feedback_moves_the_query() {
        let index = CosineIndex::new([
            ("a", vec![1.0, 0.0]),
            ("b", vec![0.8, 0.6]),
            ("c", vec![0.0, 1.0]),
            ("d", vec![2.0, 0.0]),
        ]);
        let hits = index.search(&[1.0, 0.1], 4);
        assert_eq!(paths(&hits), ["a", "d", "b", "c"]);
        assert_eq!(paths(&index.search(&[1.0, 0.1], 1)), ["a"]);
        // Feedback from b (the nearest to [0.6, 0.8]) pulls the query further toward c.
        let plain = index.search(&[0.6, 0.8], 4);
        let expanded = index.expanded(&[0.6, 0.8], 1, 1.0, 4);
        assert_eq!(paths(&plain)[0], "b");
        assert!(expanded[0].score <= 1.0 + 1e-6);
        assert_eq!(expanded.len(), 4);
    }

    #[test]
    fn bigrams_bind_colours_to_kinds() {
        let captions = [
            ("one", "a red circle and a blue square"),
            ("two", "a blue circle and a red square"),
            ("three", "a green triangle"),
        ];
        let unigrams = TermIndex::new(captions, false);
        let hits = unigrams.search("a red circle", 10);
        assert_eq!(hits.len(), 2, "both name red and circle");
        assert!((hits[0].score - hits[1].score).abs() < 1e-6);
        let bigrams = TermIndex::new(captions, true);
        let hits = bigrams.search("a red circle", 10);
        assert_eq!(paths(&hits), ["one", "two"]);
        assert!(hits[0].score > hits[1].score);
        assert_eq!(
            caption_terms("a red circle", true),
            ["red", "circl", "red circl"]
        );
    }

    #[test]
    fn cell_pooling_and_reranking() {
        // 2 channels × 4 cells.
        let f = [1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 4.0, 0.0];
        assert_eq!(cell_pooled(&f, 4), vec![3.0, 1.0, 6.0, 4.0]);
        let hit = |p: &str, s: f32| Hit {
            path: p.into(),
            caption: String::new(),
            score: s,
            caption_score: None,
            visual_score: None,
        };
        let first = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7), hit("d", 0.6)];
        let by = [hit("c", 5.0), hit("b", 1.0), hit("d", 9.0)];
        assert_eq!(paths(&rerank(&first, &by, 3)), ["c", "b", "a", "d"]);
        let v = concat(&[3.0, 4.0], &[0.0, 2.0], 0.5);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.5]);
    }
}
