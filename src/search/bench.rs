//! A search benchmark: index a synthetic caption corpus, then time queries.
//!
//! [`bench_search`] is what `capsearch bench search` runs for each backend and corpus size; the
//! caption generator is a parameter, so the bench can use the `shapes` grammar ([`shapes_caption`]
//! is a stand-in with the same flavour until that generator exists).

use std::time::Instant;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{Document, SearchBackend, index_documents};
use crate::error::Result;

/// What one run of [`bench_search`] measured.
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
pub fn bench_search(
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

/// The nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A deterministic caption of simple coloured shapes, e.g. "a small red circle above a large
/// blue square on a white background": a vocabulary of 38 words and many combinations, so that
/// postings are long and queries match thousands of documents, as with a real caption corpus.
pub fn shapes_caption(i: u64) -> String {
    const SIZES: [&str; 5] = ["small", "large", "big", "tiny", "medium"];
    const COLOURS: [&str; 9] = [
        "red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey",
    ];
    const SHAPES: [&str; 9] = [
        "circle",
        "square",
        "triangle",
        "star",
        "hexagon",
        "ellipse",
        "rectangle",
        "diamond",
        "cross",
    ];
    const RELATIONS: [&str; 8] = [
        "above", "below", "left of", "right of", "next to", "inside", "near", "touching",
    ];
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut pick = |n: usize| {
        // splitmix64: a fixed, fast mixer, so captions are reproducible without an RNG crate API.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as usize
    };
    let mut text = format!(
        "a {} {} {} {} a {} {} {}",
        SIZES[pick(SIZES.len())],
        COLOURS[pick(COLOURS.len())],
        SHAPES[pick(SHAPES.len())],
        RELATIONS[pick(RELATIONS.len())],
        SIZES[pick(SIZES.len())],
        COLOURS[pick(COLOURS.len())],
        SHAPES[pick(SHAPES.len())],
    );
    if pick(2) == 0 {
        text.push_str(&format!(
            " on a {} background",
            COLOURS[pick(COLOURS.len())]
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::embedded::EmbeddedBackend;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn shapes_captions_are_deterministic_and_varied() {
        assert_eq!(shapes_caption(7), shapes_caption(7));
        let distinct: std::collections::HashSet<String> = (0..1000).map(shapes_caption).collect();
        assert!(distinct.len() > 950, "{}", distinct.len());
    }

    fn bench_docs() -> u64 {
        std::env::var("CAPSEARCH_BENCH_DOCS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    }

    /// The embedded figures, until `capsearch bench search` exists. Run with
    /// `CAPSEARCH_BENCH_DOCS=100000 cargo test --lib search::bench::tests::measure_embedded --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run it by name with --ignored"]
    fn measure_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("index"));
        let figures = bench_search(
            &backend,
            bench_docs(),
            1000,
            10_000,
            &shapes_caption,
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
        let figures = bench_search(
            &backend,
            bench_docs(),
            1000,
            1000,
            &shapes_caption,
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
        let figures = bench_search(
            &backend,
            2000,
            50,
            500,
            &shapes_caption,
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
