//! The search benchmark: index a synthetic caption corpus, then time queries.
//!
//! [`search_figures`] measures one backend on one corpus (the caption generator is a parameter);
//! [`bench_search`] is what `capsearch bench search` runs: the embedded backend on
//! [`indexed_caption`]'s corpus.

use std::time::Instant;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::common::single;
use super::{BenchOptions, Table, peak_rss_bytes, reset_peak_rss};
use crate::data::shapes::indexed_caption;
use crate::error::{Error, Result};
use crate::search::embedded::EmbeddedBackend;
use crate::search::{Document, SearchBackend, index_documents};
use crate::util::percentile;

/// What one run of [`search_figures`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchFigures {
    pub backend: String,
    pub documents: u64,
    /// Wall time to index every document (including commits/refreshes).
    pub index_seconds: f64,
    pub docs_per_second: f64,
    pub queries: usize,
    /// Median and 99th percentile latency of one `query` call (size 10), in milliseconds.
    pub query_p50_ms: f64,
    pub query_p99_ms: f64,
    /// Mean number of hits per query (a check that the queries match something).
    pub mean_hits: f64,
    /// The index's size as the backend reports it.
    pub size_bytes: Option<u64>,
    /// This process's peak resident memory so far (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
}

/// Indexes `n_docs` documents whose caption `i` is `caption(i)` (paths `bench/NNNNNNN.png`, dataset
/// `bench`), in batches of `batch_size`, then runs `n_queries` queries of size 10 whose texts are
/// `caption(n_docs + j)` (same distribution, unseen), and reports throughput and latency.
/// The backend should be empty; its documents are left in place.
pub fn search_figures(
    backend: &dyn SearchBackend,
    n_docs: u64,
    n_queries: usize,
    batch_size: usize,
    caption: &dyn Fn(u64) -> String,
    progress: &ProgressBar,
) -> Result<BenchFigures> {
    let docs = (0..n_docs)
        .map(|i| Document::from_dataset(format!("bench/{i:07}.png"), vec![caption(i)], "bench"));
    let start = Instant::now();
    index_documents(backend, docs, batch_size, progress)?;
    let index_seconds = start.elapsed().as_secs_f64();

    let mut latencies = Vec::with_capacity(n_queries);
    let mut hits = 0usize;
    for j in 0..n_queries {
        let text = caption(n_docs + j as u64);
        let t = Instant::now();
        hits += backend.query(&text, 10, 0)?.len();
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let size_bytes = backend.stats()?.size_bytes;
    Ok(BenchFigures {
        backend: backend.name().to_string(),
        documents: n_docs,
        index_seconds,
        docs_per_second: n_docs as f64 / index_seconds.max(1e-9),
        queries: n_queries,
        query_p50_ms: percentile(&latencies, 50.0),
        query_p99_ms: percentile(&latencies, 99.0),
        mean_hits: hits as f64 / n_queries.max(1) as f64,
        size_bytes,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

pub(super) fn bench_search(opts: &BenchOptions) -> Result<Table> {
    reset_peak_rss();
    let docs = if opts.quick {
        opts.search_docs.min(2000)
    } else {
        opts.search_docs
    };
    let queries = if opts.quick { 50 } else { 1000 };
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let backend = EmbeddedBackend::new(dir.path().join("index"));
    tracing::info!("bench search: {docs} documents");
    let progress = if opts.quick {
        indicatif::ProgressBar::hidden()
    } else {
        crate::search::progress_bar(Some(docs), "docs")
    };
    let f = search_figures(&backend, docs, queries, 10_000, &indexed_caption, &progress)?;
    progress.finish_and_clear();
    let mut query = single("query latency (size 10)", "ms", false, f.query_p50_ms);
    query.high = f.query_p99_ms;
    query.spread = "p50–p99".into();
    query.runs = f.queries;
    let mut rows = vec![single("indexing", "docs/s", true, f.docs_per_second), query];
    if let Some(size) = f.size_bytes {
        rows.push(single(
            "index size on disk",
            "MiB",
            false,
            size as f64 / 1048576.0,
        ));
    }
    Ok(Table {
        name: "search".into(),
        title: format!("embedded backend, {docs} documents"),
        setup: vec![
            format!("{docs} synthetic shapes captions indexed in batches of 10,000, then {queries} unseen captions as queries"),
            format!("mean hits per query: {:.1}", f.mean_hits),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![],
        notes: vec!["No baseline: Elasticsearch needs a server (see `bench::search` for its measuring test).".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench_docs() -> u64 {
        std::env::var("CAPSEARCH_BENCH_DOCS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    }

    /// The embedded figures, until `capsearch bench search` exists. Run with
    /// `CAPSEARCH_BENCH_DOCS=100000 cargo test --lib bench::search::tests::measure_embedded --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run it by name with --ignored"]
    fn measure_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("index"));
        let figures = search_figures(
            &backend,
            bench_docs(),
            1000,
            10_000,
            &indexed_caption,
            &crate::search::progress_bar(Some(bench_docs()), "docs"),
        )
        .unwrap();
        println!("{}", serde_json::to_string_pretty(&figures).unwrap());
    }

    /// The same against `ES_URL` (index `capsearch-bench`, dropped first and afterwards).
    #[test]
    #[ignore = "a benchmark: run it by name with --ignored"]
    fn measure_elasticsearch() {
        let Ok(url) = std::env::var("ES_URL") else {
            println!("skipped: ES_URL is not set");
            return;
        };
        let backend =
            crate::search::elastic::ElasticBackend::new(crate::search::elastic::ElasticConfig {
                url,
                index: "capsearch-bench".into(),
                ..Default::default()
            })
            .unwrap();
        backend.drop_index().unwrap();
        let figures = search_figures(
            &backend,
            bench_docs(),
            1000,
            1000,
            &indexed_caption,
            &crate::search::progress_bar(Some(bench_docs()), "docs"),
        )
        .unwrap();
        backend.drop_index().unwrap();
        println!("{}", serde_json::to_string_pretty(&figures).unwrap());
    }

    #[test]
    fn bench_measures_a_small_embedded_run() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        let figures = search_figures(
            &backend,
            2000,
            50,
            500,
            &indexed_caption,
            &ProgressBar::hidden(),
        )
        .unwrap();
        assert_eq!(figures.documents, 2000);
        assert_eq!(backend.count().unwrap(), 2000);
        assert!(figures.docs_per_second > 0.0);
        assert!(figures.query_p50_ms <= figures.query_p99_ms);
        assert_eq!(figures.mean_hits, 10.0);
        assert!(figures.size_bytes.unwrap() > 0);
    }
}
