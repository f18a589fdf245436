//! `capsearch eval search`: how often image → image search returns the right images.
//!
//! The gallery splits (default train + val) are captioned and embedded with the model and indexed
//! into a temporary embedded index, and indexed a second time by their reference captions. Each
//! query-split image (default test) is captioned and embedded the same way, then searched in
//! every mode, its own path excluded from its results:
//! - `caption`: its caption against the generated captions;
//! - `visual`: its embedding against the gallery's (cosine);
//! - `hybrid`: both fused by reciprocal rank ([`crate::search::fusion`]);
//! - `references`: its caption against the gallery's reference captions (what caption search
//!   could reach with perfect gallery captions).
//!
//! Relevance and metrics are [`super::retrieval`]'s. The report is `eval_search.md` and
//! `eval_search.json` in the report folder.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::retrieval::{Judgements, K, Metrics, Relevance, Summary, judge_query, summarise};
use super::search_label_probe::LabelProbe;
use super::search_probes::{ProbeItem, Probes, probe_items};
use super::search_variants::{ConceptSpace, fused_paths, fusion_row, nearest_in_memory};
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::inference::{CaptionEngine, Generated};
use crate::search::embedded::EmbeddedBackend;
use crate::search::fusion::{
    FUSION_DEPTH, FusionWeights, ImageSearch, SearchMode, search_generated,
};
use crate::search::indexer::{CaptionIndexer, vector_space};
use crate::search::{Document, SearchBackend, index_documents};

/// `eval_search.json` in the report folder.
pub const SEARCH_REPORT_JSON: &str = "eval_search.json";
/// `eval_search.md` in the report folder.
pub const SEARCH_REPORT_MD: &str = "eval_search.md";

/// What `eval search` runs.
#[derive(Debug, Clone)]
pub struct SearchEvalOptions {
    /// Splits indexed as the gallery.
    pub gallery: Vec<Split>,
    /// Split whose images are the queries.
    pub queries: Split,
    /// Search only the first N query images.
    pub limit: Option<usize>,
    pub decode: DecodeOptions,
    /// Images per model call.
    pub batch_size: usize,
    pub weights: FusionWeights,
    /// Explicit judgements instead of the dataset's labels.
    pub relevance: Option<Judgements>,
    /// Advanced per image captioned (gallery and queries).
    pub progress: Option<ProgressBar>,
    /// Other fusions to report beside `hybrid`, one row each ([`super::search_variants`]).
    pub compare: Vec<FusionWeights>,
    /// Add the diagnostic rows ([`super::search_variants`]).
    pub diagnostics: bool,
    /// Add the in-memory probe rows ([`super::search_probes`]).
    pub probes: bool,
}

impl Default for SearchEvalOptions {
    fn default() -> Self {
        SearchEvalOptions {
            gallery: vec![Split::Train, Split::Val],
            queries: Split::Test,
            limit: None,
            decode: DecodeOptions::default(),
            batch_size: 32,
            weights: FusionWeights::default(),
            relevance: None,
            progress: None,
            compare: Vec::new(),
            diagnostics: false,
            probes: false,
        }
    }
}

/// One mode's row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeRow {
    /// `caption`, `visual`, `hybrid` or `references`.
    pub mode: String,
    pub summary: Summary,
}

/// What `eval search` measured (`eval_search.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchEvalReport {
    pub model: String,
    pub dataset: String,
    /// What computed the embeddings.
    pub embedder: String,
    pub gallery_splits: Vec<String>,
    pub query_split: String,
    /// Gallery images indexed.
    pub gallery: usize,
    /// Query images searched.
    pub queries: usize,
    /// `labels` (Jaccard ≥ 0.5 of the label sets) or the judgements file.
    pub relevance: String,
    pub weights: FusionWeights,
    /// One row per mode, then `random`: the random-ranking baseline on the same queries.
    pub rows: Vec<ModeRow>,
    /// Images that could not be read or captioned, with why.
    pub skipped: Vec<(String, String)>,
}

impl SearchEvalReport {
    /// The mean metrics of a mode (`random` for the baseline).
    pub fn mean(&self, mode: &str) -> Option<Metrics> {
        self.rows
            .iter()
            .find(|r| r.mode == mode)
            .map(|r| r.summary.mean)
    }
}

/// The modes of the report, in its order.
pub const MODES: [&str; 4] = ["caption", "visual", "hybrid", "references"];

/// Runs the evaluation (see the module documentation). Indexes into a temporary folder that is
/// removed at the end.
pub fn evaluate_search(
    engine: &CaptionEngine,
    dataset: &Dataset,
    relevance_source: &Path,
    options: &SearchEvalOptions,
) -> Result<SearchEvalReport> {
    if options.gallery.contains(&options.queries) {
        return Err(Error::option(
            "--gallery",
            format!(
                "the query split {} is also a gallery split; queries would find themselves \
                 among fewer competitors: pick disjoint splits",
                options.queries
            ),
        ));
    }
    let gallery: Vec<&Sample> = dataset
        .samples
        .iter()
        .filter(|s| options.gallery.contains(&s.split))
        .collect();
    let mut queries: Vec<&Sample> = dataset
        .samples
        .iter()
        .filter(|s| s.split == options.queries)
        .collect();
    if let Some(limit) = options.limit {
        queries.truncate(limit.max(1));
    }
    if gallery.is_empty() || queries.is_empty() {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "the gallery ({}) has {} images and the query split ({}) {}: both need some",
                split_names(&options.gallery).join(" + "),
                gallery.len(),
                options.queries,
                queries.len()
            ),
        });
    }
    let relevance = match &options.relevance {
        Some(judgements) => Relevance::Judged(judgements.clone()),
        None => Relevance::from_labels(gallery.iter().chain(&queries).copied(), relevance_source)?,
    };
    let space = vector_space(engine);
    if let Some(bar) = &options.progress {
        bar.set_length((gallery.len() + queries.len()) as u64);
    }
    let mut skipped = Vec::new();
    let gallery_generated = caption_all(engine, dataset, &gallery, options, &mut skipped)?;
    let query_generated = caption_all(engine, dataset, &queries, options, &mut skipped)?;

    let temp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let model_index = EmbeddedBackend::new(temp.path().join("model"));
    let mut indexer =
        CaptionIndexer::new(&model_index, engine.model_id()).with_vectors(space.clone());
    for chunk in gallery_generated.chunks(1024) {
        indexer.add(
            chunk
                .iter()
                .map(|(s, g)| (s.path.clone(), Ok(g.clone())))
                .collect(),
        )?;
    }
    let indexed = indexer.finish()?;
    for failed in &indexed.failed {
        skipped.push((failed.path.display().to_string(), failed.reason.clone()));
    }
    let reference_index = EmbeddedBackend::new(temp.path().join("references"));
    let name = dataset.name();
    let reference_docs = gallery_generated
        .iter()
        .map(|(s, _)| Document::from_dataset(s.path.clone(), s.captions.clone(), name.clone()));
    index_documents(
        &reference_index,
        reference_docs,
        1024,
        &ProgressBar::hidden(),
    )?;
    let gallery_paths: Vec<String> = gallery_generated
        .iter()
        .map(|(s, _)| s.path.clone())
        .collect();

    let concept = if options.diagnostics || options.probes {
        ConceptSpace::of(engine)
    } else {
        None
    };
    let concept_of = |generated: &[(&Sample, Generated)]| -> Result<Vec<(String, Vec<f32>)>> {
        let Some(concept) = &concept else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(generated.len());
        for chunk in generated.chunks(256) {
            let embeddings: Vec<&[f32]> = chunk
                .iter()
                .filter_map(|(_, g)| g.embedding.as_deref())
                .collect();
            let words = concept.words(&embeddings)?;
            out.extend(chunk.iter().map(|(s, _)| s.path.clone()).zip(words));
        }
        Ok(out)
    };
    let gallery_concepts = concept_of(&gallery_generated)?;
    let query_concepts = concept_of(&query_generated)?;
    let mut extra: Vec<String> = options.compare.iter().map(fusion_row).collect();
    if options.diagnostics {
        extra.extend(["caption (query refs)".into(), "hybrid (query refs)".into()]);
        if concept.is_some() {
            extra.extend(["visual (concept)".into(), "hybrid (concept)".into()]);
        }
    }
    let probes = if options.probes {
        let items = |generated: &[(&Sample, Generated)], concepts: &[(String, Vec<f32>)]| {
            probe_items(engine, dataset, generated, concepts, options.batch_size)
        };
        let gallery_items = items(&gallery_generated, &gallery_concepts)?;
        let query_items = items(&query_generated, &query_concepts)?;
        let probes = Probes::new(&gallery_items);
        extra.extend(probes.names().iter().cloned());
        let labelled: Vec<(&Sample, &ProbeItem)> = gallery_generated
            .iter()
            .map(|(s, _)| *s)
            .zip(&gallery_items)
            .collect();
        let label_probe = match options.relevance {
            Some(_) => None,
            None => LabelProbe::new(&labelled)?,
        };
        if let Some(label_probe) = &label_probe {
            extra.extend(label_probe.names().iter().cloned());
        }
        Some((probes, query_items, label_probe))
    } else {
        None
    };

    let mut outcomes: Vec<Vec<_>> = vec![Vec::new(); MODES.len() + extra.len()];
    for (q, (sample, generated)) in query_generated.iter().enumerate() {
        if !extra.is_empty() {
            let depth = FUSION_DEPTH;
            let caption = if generated.caption.trim().is_empty() {
                Vec::new()
            } else {
                model_index.query(&generated.caption, depth, 0)?
            };
            let embedding = generated.embedding.as_deref().unwrap_or_default();
            let visual = model_index.nearest(embedding, depth, 0)?;
            let mut lists: Vec<Vec<String>> = options
                .compare
                .iter()
                .map(|w| fused_paths(&caption, &visual, *w, K + 1))
                .collect();
            if options.diagnostics {
                let refs = model_index.query(&sample.captions.join(" . "), depth, 0)?;
                lists.push(refs.iter().take(K + 1).map(|h| h.path.clone()).collect());
                lists.push(fused_paths(&refs, &visual, options.weights, K + 1));
                if let Some((_, words)) = query_concepts.get(q) {
                    let near = nearest_in_memory(&gallery_concepts, words, depth);
                    lists.push(near.iter().take(K + 1).map(|h| h.path.clone()).collect());
                    lists.push(fused_paths(&caption, &near, options.weights, K + 1));
                }
            }
            if let Some((probes, items, label_probe)) = &probes {
                lists.extend(probes.lists(&items[q], &visual, K + 1));
                if let Some(label_probe) = label_probe {
                    lists.extend(label_probe.lists(
                        sample,
                        &items[q],
                        &caption,
                        options.weights,
                        K + 1,
                    ));
                }
            }
            for (i, ranked) in lists.into_iter().enumerate() {
                outcomes[MODES.len() + i].push(judge_query(
                    &relevance,
                    &sample.path,
                    &ranked,
                    &gallery_paths,
                ));
            }
        }
        for (i, mode) in MODES.iter().enumerate() {
            let (backend, mode): (&dyn SearchBackend, SearchMode) = match *mode {
                "references" => (&reference_index, SearchMode::Caption),
                other => (&model_index, other.parse()?),
            };
            let request = ImageSearch {
                mode: Some(mode),
                size: K + 1,
                offset: 0,
                weights: options.weights,
            };
            let found = search_generated(backend, generated, &space, &request)?;
            let ranked: Vec<String> = found.hits.into_iter().map(|h| h.path).collect();
            outcomes[i].push(judge_query(
                &relevance,
                &sample.path,
                &ranked,
                &gallery_paths,
            ));
        }
    }
    let mut rows: Vec<ModeRow> = MODES
        .iter()
        .map(|m| m.to_string())
        .chain(extra)
        .zip(&outcomes)
        .map(|(mode, outcomes)| ModeRow {
            mode: mode.to_string(),
            summary: summarise(outcomes),
        })
        .collect();
    let random = rows[0].summary.clone();
    rows.push(ModeRow {
        mode: "random".into(),
        summary: Summary {
            mean: random.random,
            ..random
        },
    });
    Ok(SearchEvalReport {
        model: engine.model_id().to_string(),
        dataset: dataset.source.display().to_string(),
        embedder: space.embedder,
        gallery_splits: split_names(&options.gallery),
        query_split: options.queries.to_string(),
        gallery: gallery_paths.len(),
        queries: query_generated.len(),
        relevance: match &options.relevance {
            Some(_) => "judgements".into(),
            None => {
                "labels: Jaccard overlap of the label sets ≥ 0.5, overlap as graded gain".into()
            }
        },
        weights: options.weights,
        rows,
        skipped,
    })
}

fn split_names(splits: &[Split]) -> Vec<String> {
    splits.iter().map(|s| s.to_string()).collect()
}

/// Captions and embeds `samples` in batches; unreadable ones go to `skipped`.
fn caption_all<'a>(
    engine: &CaptionEngine,
    dataset: &Dataset,
    samples: &[&'a Sample],
    options: &SearchEvalOptions,
    skipped: &mut Vec<(String, String)>,
) -> Result<Vec<(&'a Sample, Generated)>> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(options.batch_size.max(1)) {
        let paths: Vec<PathBuf> = chunk.iter().map(|s| dataset.image_path(s)).collect();
        let results = engine.caption_paths(&paths, options.decode, options.batch_size);
        for (sample, result) in chunk.iter().zip(results) {
            match result {
                Ok(g) if g.embedding.is_some() => out.push((*sample, g)),
                Ok(_) => skipped.push((sample.path.clone(), "no embedding".into())),
                Err(e) => {
                    tracing::warn!("skipping image {}: {e}", sample.path);
                    skipped.push((sample.path.clone(), e.to_string()));
                }
            }
        }
        if let Some(bar) = &options.progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(out)
}

/// Writes `eval_search.json` and `eval_search.md` into `dir` (created if missing). Returns their
/// paths.
pub fn write_search_report(report: &SearchEvalReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = dir.join(SEARCH_REPORT_JSON);
    let bytes = serde_json::to_vec_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    crate::util::write_atomic(&json, &bytes)?;
    let md = dir.join(SEARCH_REPORT_MD);
    crate::util::write_atomic(&md, search_markdown(report).as_bytes())?;
    Ok(vec![json, md])
}

/// The metric table alone, as text (for the terminal and the Markdown report).
pub fn search_table(report: &SearchEvalReport) -> String {
    let mut out = String::from("| mode | P@1 | P@10 | mAP@10 | nDCG@10 |\n|---|---|---|---|---|\n");
    for row in &report.rows {
        let m = row.summary.mean;
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            row.mode, m.p_at_1, m.p_at_10, m.map_at_10, m.ndcg_at_10
        ));
    }
    out
}

fn search_markdown(report: &SearchEvalReport) -> String {
    let without = report
        .rows
        .first()
        .map_or(0, |r| r.summary.without_relevant);
    let mut md = format!(
        "# Image search: {model} on {dataset}\n\n\
         - gallery: {gallery} images ({splits}), queries: {queries} images ({query_split}), \
         each query's own image excluded\n\
         - {without} queries have no relevant gallery image and are left out of the means\n\
         - relevance: {relevance}\n\
         - embeddings: {embedder}; hybrid = {method} fusion (rrf: k = {k}), weights caption \
         {wc}, visual {wv}\n\
         - `references`: the gallery indexed by its reference captions, searched with the \
         query's generated caption; `random`: the exact expectation of a random ranking\n\n",
        model = report.model,
        dataset = report.dataset,
        gallery = report.gallery,
        splits = report.gallery_splits.join(" + "),
        queries = report.queries,
        query_split = report.query_split,
        relevance = report.relevance,
        embedder = report.embedder,
        k = crate::search::fusion::RRF_K,
        wc = report.weights.caption,
        wv = report.weights.visual,
        method = report.weights.method,
    );
    if report.rows.len() > MODES.len() + 1 {
        md.push_str(
            "- rows after `references`: other fusions (`hybrid METHOD cW vW`), diagnostics \
             (`query refs`: the query's reference captions as its text; `concept`: the concept \
             head's word probabilities as the embedding) and probes (other embeddings and \
             caption matching, searched exactly in memory); see `capsearch eval search --help` \
             and `src/eval/search_probes.rs`\n\n",
        );
    }
    md.push_str(&search_table(report));
    if !report.skipped.is_empty() {
        md.push_str(&format!("\n{} images skipped:\n\n", report.skipped.len()));
        for (path, why) in report.skipped.iter().take(50) {
            md.push_str(&format!("- `{path}`: {why}\n"));
        }
    }
    md
}
