//! Retrieval metrics for image → image search: which gallery images are relevant to a query
//! image, and how well a ranking puts them first. Pure functions: paths and gains in, numbers out.
//!
//! # Relevance
//! Two sources, one interface ([`Relevance::gain`]):
//! - **Labels** ([`Relevance::from_labels`]), for the generated datasets. Each image's label set
//!   ([`label_set`]) holds one element per distinct labelled thing: `colour kind` when the object
//!   has a colour (`shapes`: the (colour, kind) pairs, e.g. `red circle`), its kind otherwise
//!   (`scenes`: the object kinds, e.g. `frog`). A gallery image is relevant to a query when the
//!   Jaccard overlap of the two sets is at least [`RELEVANT_OVERLAP`] (0.5), and its graded gain
//!   (for nDCG) is that overlap; below the threshold the gain is 0, so P@k, mAP and nDCG agree on
//!   which images count. An image with no labelled thing is relevant to nothing.
//!
//!   The `scenes` **setting** (meadow, beach, room, ...) is *not* in the set. Relevance asks
//!   "does it show the same things": with one or two things per scene, one extra element weighs
//!   as much as a thing (an image with the same frog on another setting would fall to 1/3 and
//!   stop being relevant, and one with a different thing on the same setting would rise to 1/3),
//!   and there are only 19 setting photographs, so a search that returns the same wallpaper
//!   would be rewarded for matching the background rather than the subject.
//! - **Judgements** ([`Judgements`], `--relevance FILE`), for any other dataset: explicit
//!   `query, gallery image, gain` triples, in a tab-separated file (see [`Judgements::parse`]).
//!   A gallery image is relevant when its gain is above 0; pairs not listed have gain 0.
//!
//! Paths are the dataset's image paths, relative to its image root with `/` separators, as
//! [`Sample::path`](crate::data::Sample::path) holds them.
//!
//! # Metrics (per query, then the mean over queries)
//! With `rel_i` = 1 when the result at rank `i` (1-based) has gain > 0, `R` the number of gallery
//! images relevant to the query (the query itself excluded), `N` the gallery size and `k` = 10:
//! - **P@1**, **P@10**: relevant results among the first 1 / 10, divided by 1 / 10 (a ranking
//!   shorter than 10 still divides by 10);
//! - **mAP@10**: `AP@10 = Σ_{i≤10} rel_i · P@i / min(R, 10)`, averaged over queries;
//! - **nDCG@10**: `Σ_{i≤10} gain_i / log2(i + 1)` divided by the same sum over the ideal ranking
//!   (the gallery's gains, highest first); linear gains, as the overlaps are already in [0.5, 1].
//!
//! A query with no relevant gallery image (`R = 0`) has no defined AP or nDCG and would score 0 on
//! every system: it is reported but left out of every mean, and the count is kept
//! ([`Summary::without_relevant`]).
//!
//! # Random-ranking baseline
//! [`random_expectation`] is the exact expectation of each metric over a uniformly random ordering
//! of the gallery (query excluded), not a sampled one. All four have closed forms, by linearity of
//! expectation, with `g` the gallery's gains and `m = min(k, N)`:
//! - `E[P@k] = m · R / (N · k)` (so `E[P@1] = R / N`);
//! - `E[AP@k] = 1/min(R, k) · Σ_{i=1..m} (1/i) · (R/N + (i − 1) · R(R − 1) / (N(N − 1)))`, from
//!   `E[rel_i] = R/N` and `E[rel_i rel_j] = R(R − 1)/(N(N − 1))` for `i ≠ j`;
//! - `E[nDCG@k] = (Σ g / N) · Σ_{i=1..m} 1/log2(i + 1) / IDCG@k`, as each rank holds each gallery
//!   image with probability `1/N`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Sample;
use crate::data::labels::Labels;
use crate::error::{Error, Result};

/// The Jaccard overlap from which a gallery image is relevant to a query.
pub const RELEVANT_OVERLAP: f64 = 0.5;

/// The cut-off of P@10, mAP@10 and nDCG@10.
pub const K: usize = 10;

/// The label set of one image ([`Labels::label_set`]): one element per distinct labelled
/// thing, `colour kind` when the object has a colour (`shapes`), its kind otherwise (`scenes`).
/// The setting is left out (see the module documentation for why).
pub fn label_set(labels: &Labels) -> BTreeSet<String> {
    labels.label_set()
}

/// The Jaccard overlap `|a ∩ b| / |a ∪ b|` of two sorted, duplicate-free slices; 0 when both are
/// empty.
pub fn jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        0.0
    } else {
        common as f64 / union as f64
    }
}

/// The graded gain of two label sets: their overlap when it reaches [`RELEVANT_OVERLAP`], else 0.
pub fn overlap_gain<T: Ord>(a: &[T], b: &[T]) -> f64 {
    let overlap = jaccard(a, b);
    if overlap >= RELEVANT_OVERLAP {
        overlap
    } else {
        0.0
    }
}

/// Explicit relevance judgements (`--relevance FILE`): query path → gallery path → gain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgements {
    gains: HashMap<String, HashMap<String, f64>>,
}

impl Judgements {
    /// Reads a judgements file (see [`Judgements::parse`] for the format).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses judgements: one per line, `query_path<TAB>gallery_path<TAB>gain`, where the paths
    /// are image paths as the dataset lists them (relative to its image root) and the gain is a
    /// number ≥ 0 (0 = judged not relevant; any gain above 0 is relevant, and nDCG uses it as
    /// given). Blank lines and lines starting with `#` are skipped. A pair given twice, a query
    /// judged against itself, a missing field or a bad gain is an error naming `path` and the line.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut gains: HashMap<String, HashMap<String, f64>> = HashMap::new();
        let mut first_line: HashMap<(String, String), usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let at = || Some(format!("line {number}"));
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 3 {
                return Err(Error::parse(
                    path,
                    at(),
                    format!(
                        "expected 3 tab-separated fields (query path, gallery path, gain), found {}",
                        fields.len()
                    ),
                ));
            }
            let (query, gallery) = (fields[0].trim(), fields[1].trim());
            if query.is_empty() || gallery.is_empty() {
                return Err(Error::parse(
                    path,
                    at(),
                    "a path is empty: give the query and the gallery image as the dataset lists them",
                ));
            }
            if query == gallery {
                return Err(Error::parse(
                    path,
                    at(),
                    format!(
                        "{query:?} is judged against itself: a query is never among its own results"
                    ),
                ));
            }
            let gain: f64 = fields[2].trim().parse().map_err(|_| {
                Error::parse(
                    path,
                    at(),
                    format!("gain {:?} is not a number", fields[2].trim()),
                )
            })?;
            if !gain.is_finite() || gain < 0.0 {
                return Err(Error::parse(
                    path,
                    at(),
                    format!("gain {gain} must be a finite number ≥ 0 (0 = not relevant)"),
                ));
            }
            let key = (query.to_string(), gallery.to_string());
            if let Some(earlier) = first_line.get(&key) {
                return Err(Error::parse(
                    path,
                    at(),
                    format!(
                        "{query:?} → {gallery:?} was already judged on line {earlier}: keep one"
                    ),
                ));
            }
            first_line.insert(key, number);
            gains
                .entry(query.to_string())
                .or_default()
                .insert(gallery.to_string(), gain);
        }
        if gains.is_empty() {
            return Err(Error::parse(
                path,
                None,
                "holds no judgement: write `query_path<TAB>gallery_path<TAB>gain` lines",
            ));
        }
        Ok(Judgements { gains })
    }

    /// The judged queries.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.gains.keys().map(String::as_str)
    }

    /// The gain of `gallery` for `query`; 0 when the pair is not judged.
    pub fn gain(&self, query: &str, gallery: &str) -> f64 {
        self.gains
            .get(query)
            .and_then(|g| g.get(gallery))
            .copied()
            .unwrap_or(0.0)
    }
}

/// Where relevance comes from: the dataset's object labels, or explicit judgements.
#[derive(Debug, Clone)]
pub enum Relevance {
    /// Each image's label set, its elements numbered (sorted, duplicate-free), by image path.
    Labels(HashMap<String, Vec<u32>>),
    /// Judgements read from `--relevance FILE`.
    Judged(Judgements),
}

impl Relevance {
    /// Relevance from the object labels of `samples`. Fails, naming `dataset`, when no sample
    /// has labels (the dataset was not generated with them: pass `--relevance FILE` instead).
    /// Samples without labels get an empty set (relevant to nothing).
    pub fn from_labels<'a>(
        samples: impl IntoIterator<Item = &'a Sample>,
        dataset: &Path,
    ) -> Result<Self> {
        let mut numbers: HashMap<String, u32> = HashMap::new();
        let mut sets = HashMap::new();
        let mut labelled = 0usize;
        for sample in samples {
            let mut set: Vec<u32> = match &sample.labels {
                Some(labels) => {
                    labelled += 1;
                    label_set(labels)
                        .into_iter()
                        .map(|label| {
                            let next = numbers.len() as u32;
                            *numbers.entry(label).or_insert(next)
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            set.sort_unstable();
            sets.insert(sample.path.clone(), set);
        }
        if labelled == 0 {
            return Err(Error::Dataset {
                path: dataset.to_path_buf(),
                message: "no image has object labels (only generated datasets such as `shapes` \
                          and `scenes` write them): give explicit judgements with --relevance FILE"
                    .into(),
            });
        }
        Ok(Relevance::Labels(sets))
    }

    /// The gain of `gallery` for `query` (0 = not relevant).
    pub fn gain(&self, query: &str, gallery: &str) -> f64 {
        if query == gallery {
            return 0.0;
        }
        match self {
            Relevance::Labels(sets) => match (sets.get(query), sets.get(gallery)) {
                (Some(q), Some(g)) => overlap_gain(q, g),
                _ => 0.0,
            },
            Relevance::Judged(judgements) => judgements.gain(query, gallery),
        }
    }
}

/// The four metrics of one query, or their mean over queries. All on the 0–1 scale.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(rename = "P@1")]
    pub p_at_1: f64,
    #[serde(rename = "P@10")]
    pub p_at_10: f64,
    #[serde(rename = "mAP@10")]
    pub map_at_10: f64,
    #[serde(rename = "nDCG@10")]
    pub ndcg_at_10: f64,
}

impl Metrics {
    /// The metrics with their JSON keys, in table order.
    pub fn rows(&self) -> [(&'static str, f64); 4] {
        [
            ("P@1", self.p_at_1),
            ("P@10", self.p_at_10),
            ("mAP@10", self.map_at_10),
            ("nDCG@10", self.ndcg_at_10),
        ]
    }
}

/// The ideal DCG@k of a gallery: its gains, highest first.
fn ideal_dcg(gallery_gains: &[f64], k: usize) -> f64 {
    let mut sorted: Vec<f64> = gallery_gains.iter().copied().filter(|g| *g > 0.0).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / discount(i))
        .sum()
}

/// `log2(rank + 1)` for the 0-based position `i` (rank `i + 1`).
fn discount(i: usize) -> f64 {
    ((i + 2) as f64).log2()
}

fn relevant_count(gallery_gains: &[f64]) -> usize {
    gallery_gains.iter().filter(|g| **g > 0.0).count()
}

/// The metrics of one ranking. `ranked_gains` are the gains of the results in rank order (only
/// the first [`K`] are read); `gallery_gains` are the gains of every gallery image for this query
/// (the query itself excluded). `None` when no gallery image is relevant.
pub fn query_metrics(ranked_gains: &[f64], gallery_gains: &[f64]) -> Option<Metrics> {
    metrics_at(K, ranked_gains, gallery_gains)
}

/// [`query_metrics`] with the cut-off `k` (the `_at_10` fields then hold the values at `k`).
fn metrics_at(k: usize, ranked_gains: &[f64], gallery_gains: &[f64]) -> Option<Metrics> {
    let relevant = relevant_count(gallery_gains);
    if relevant == 0 {
        return None;
    }
    let top = &ranked_gains[..ranked_gains.len().min(k)];
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    let mut dcg = 0.0;
    for (i, &gain) in top.iter().enumerate() {
        if gain > 0.0 {
            hits += 1;
            precision_sum += hits as f64 / (i + 1) as f64;
            dcg += gain / discount(i);
        }
    }
    Some(Metrics {
        p_at_1: top.first().map_or(0.0, |g| f64::from(u8::from(*g > 0.0))),
        p_at_10: hits as f64 / k as f64,
        map_at_10: precision_sum / relevant.min(k) as f64,
        ndcg_at_10: dcg / ideal_dcg(gallery_gains, k),
    })
}

/// The exact expectation of each metric over a uniformly random ordering of the gallery, for a
/// query whose gallery has `gallery_gains` (see the module documentation for the closed forms).
/// `None` when no gallery image is relevant.
pub fn random_expectation(gallery_gains: &[f64]) -> Option<Metrics> {
    random_at(K, gallery_gains)
}

/// [`random_expectation`] with the cut-off `k`.
fn random_at(k: usize, gallery_gains: &[f64]) -> Option<Metrics> {
    let r = relevant_count(gallery_gains) as f64;
    if r == 0.0 {
        return None;
    }
    let n = gallery_gains.len() as f64;
    let m = gallery_gains.len().min(k);
    let p_rel = r / n;
    // Probability that two given distinct ranks both hold relevant images (0 when N = 1: there
    // is no second rank).
    let p_pair = if gallery_gains.len() > 1 {
        r * (r - 1.0) / (n * (n - 1.0))
    } else {
        0.0
    };
    let ap_sum: f64 = (1..=m)
        .map(|i| (p_rel + (i - 1) as f64 * p_pair) / i as f64)
        .sum();
    let discount_sum: f64 = (0..m).map(discount).map(|d| 1.0 / d).sum();
    let mean_gain = gallery_gains.iter().sum::<f64>() / n;
    Some(Metrics {
        p_at_1: p_rel,
        p_at_10: m as f64 * p_rel / k as f64,
        map_at_10: ap_sum / (r as usize).min(k) as f64,
        ndcg_at_10: mean_gain * discount_sum / ideal_dcg(gallery_gains, k),
    })
}

/// One query's outcome: its metrics and the random baseline on the same gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryOutcome {
    pub query: String,
    /// Gallery images relevant to it (query excluded).
    pub relevant: usize,
    /// The metrics; `None` when no gallery image is relevant (left out of the means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<Metrics>,
}

/// Judges one query's ranking. `ranked` are the result paths, best first; `gallery` every gallery
/// path. The query itself is removed from both (it is never its own result), and a path ranked
/// twice counts at its first rank only.
pub fn judge_query(
    relevance: &Relevance,
    query: &str,
    ranked: &[String],
    gallery: &[String],
) -> QueryOutcome {
    let mut seen = HashSet::new();
    let ranked_gains: Vec<f64> = ranked
        .iter()
        .filter(|p| p.as_str() != query && seen.insert(p.as_str()))
        .take(K)
        .map(|p| relevance.gain(query, p))
        .collect();
    let gallery_gains: Vec<f64> = gallery
        .iter()
        .filter(|p| p.as_str() != query)
        .map(|p| relevance.gain(query, p))
        .collect();
    QueryOutcome {
        query: query.to_string(),
        relevant: relevant_count(&gallery_gains),
        metrics: query_metrics(&ranked_gains, &gallery_gains),
        random: random_expectation(&gallery_gains),
    }
}

/// The means over queries of a mode's metrics and of the random baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Queries judged.
    pub queries: usize,
    /// Queries with no relevant gallery image, left out of the means.
    pub without_relevant: usize,
    /// Mean metrics over the queries with at least one relevant gallery image.
    pub mean: Metrics,
    /// The random-ranking baseline's mean over the same queries.
    pub random: Metrics,
}

/// Averages query outcomes (see [`Summary`]).
pub fn summarise(outcomes: &[QueryOutcome]) -> Summary {
    let mut mean = Metrics::default();
    let mut random = Metrics::default();
    let mut counted = 0usize;
    for outcome in outcomes {
        if let (Some(m), Some(r)) = (outcome.metrics, outcome.random) {
            counted += 1;
            for (sum, value) in [(&mut mean, m), (&mut random, r)] {
                sum.p_at_1 += value.p_at_1;
                sum.p_at_10 += value.p_at_10;
                sum.map_at_10 += value.map_at_10;
                sum.ndcg_at_10 += value.ndcg_at_10;
            }
        }
    }
    if counted > 0 {
        let n = counted as f64;
        for sum in [&mut mean, &mut random] {
            sum.p_at_1 /= n;
            sum.p_at_10 /= n;
            sum.map_at_10 /= n;
            sum.ndcg_at_10 /= n;
        }
    }
    Summary {
        queries: outcomes.len(),
        without_relevant: outcomes.len() - counted,
        mean,
        random,
    }
}

#[cfg(test)]
mod tests;
