//! The vector part of `capsearch bench search` (or `bench vectors` alone): visual search (the
//! embedded backend's usearch graph, or its exact scan below
//! [`vectors::EXACT_BELOW`](crate::search::embedded::vectors::EXACT_BELOW) vectors) and hybrid
//! search (caption + visual, fused) over 1280-d image vectors, at the sizes of `--vectors`
//! (default 10k and 100k; 1k and 10k with `--quick`) and each storage of `--vector-storage`
//! (default f16). Per size: build time (captions, vectors, graph and the saved files), peak RSS,
//! visual and hybrid query p50/p99, recall@10 of visual search against an exact f32 search of
//! the original vectors, and the latency of the backend's exact scan (the cost the graph saves).
//!
//! The vectors are synthetic and shaped like what capsearch indexes: EfficientNet-Lite0 features
//! standardised by a model's `embedding.json`. Measured on the 4,500 train + val images of
//! `scenes` (the photo job's feature cache), those have mean 0 and a covariance whose eigenvalues
//! fall as `(1 + i/24)^-1.45` (i = 1, 2, …; the fit's mean squared log error over the first 1,100
//! is 0.01; participation ratio 116); the cosine of an image to its nearest neighbour averages
//! 0.63 and 99% of random pairs stay under 0.36. Cosine similarity does not change under a
//! rotation, so each value `i` is drawn with that eigenvalue as its variance, the sum of three
//! parts: one of [`GROUPS`] group centres (30% of the variance, like a shared setting), one of
//! [`CLUSTERS`] cluster centres (45%, like the things shown) and the vector's own noise (25%).
//! 4,500 such vectors give a nearest-neighbour cosine of 0.62 and a 99th percentile of 0.37.
//! (Until December 2026 the vectors were 64 centres of uniform values in 0..1 plus uniform noise
//! in every value, cut at 0: every pair had a cosine near 0.75, the points of a cluster were all
//! about equally far apart, and each insertion's search visited more of its cluster as the
//! cluster grew; the tables below were measured on those.) Each document's caption is
//! [`indexed_caption`]'s, so hybrid queries have a caption list to fuse.
//! The exact reference is computed while the vectors are generated (a matrix product of each
//! batch with the queries), so no copy of the vectors is kept.
//!
//! Measured at 100k vectors, `capsearch bench vectors --vectors 100000 --vector-storage f16` and
//! the same with `i8`, the two runs at once on 2 cores also shared with the other helpers' builds
//! (heavily contended, load ~8: upper bounds; a dev build, whose dependencies, usearch's C++ and
//! numkong's SIMD kernels included, are compiled at -O3):
//!
//! | storage | build | recall@10 | visual p50/p99 | hybrid p50/p99 | exact scan p50 | peak RSS | file |
//! |---|---|---|---|---|---|---|---|
//! | f16 | 334 s | 0.980 | 6.6 / 11.3 ms | 37.4 / 54.5 ms | 42 ms | 662 MiB | 260 MiB |
//! | i8 | 291 s | 0.956 | 6.2 / 16.2 ms | 55.9 / 89.1 ms | 55 ms | 526 MiB | 138 MiB |
//!
//! f16 is the default: i8 is barely above the 0.95 recall target, for no speed gained. Visual
//! p99 meets the < 20 ms target; hybrid does not (< 30 ms): its caption half ranks every caption
//! match (`embedded::collector`), which on this corpus of repetitive shapes captions is most of
//! the 100k documents. The ef of 128 (not 64) was chosen on a 3000-vector test set, where ef 64
//! gave recall 0.946 against the exact scan and 128 gave 0.982. 1M was not run (the 100k build
//! alone took 5.5 min on the contended cores; 1M is about an hour).
//!
//! Build time by part, per 50k vectors on this code path (`index` in batches of 2000; 2 cores,
//! contended, load as noted), and the graph alone in CPU seconds per 10k insertions:
//!
//! | load | vectors | graph inserts | `vectors.bin` saves | tantivy | generation | peak RSS |
//! |---|---|---|---|---|---|---|
//! | 1.5→9 | 0–50k / 50–100k | 88 / 173 s | 0.5 / 4.0 s | 5.5 / 5.7 s | 0.8 / 1.1 s | 262 / 400 MiB |
//! | 12–14 | 0–50k / –100k / –150k | 237 / 469 / 514 s | 4.9 / 20 / 21 s | 10 / 11 / 11 s | 2 s | 235 / 387 / 832 MiB |
//!
//! Graph alone (load 10–12), CPU s per 10k at 10k, 20k, …, 100k vectors: 6.4, 5.9, 7.3, 9.2, 11.4,
//! 11.8, 17.0, 17.9, 19.3, 20.0; recall@10 against its exact scan 1.000 → 0.968. The growth is the
//! graph's: these vectors are cluster centres plus independent noise in every value, so the points
//! of a cluster are all about equally far apart and each insertion's search (ef_add 128) visits
//! more of its cluster as the cluster grows. tantivy's merges and the saves do not grow with size.
//!
//! After a search stopped reopening every segment when the index is unchanged and hybrid ran its
//! halves at once, 100k f16 at load 4–6 (contended, one run): built in 189 s, recall@10 0.968,
//! visual p50/p99 2.64 / 7.44 ms, hybrid 35.7 / 59.4 ms, peak RSS 686 MiB. The caption half still
//! scores every match (`embedded::collector` has the WAND measurements).
//!
//! Then hybrid stopped reading what it throws away: the two lists are ranked without their
//! captions (`SearchBackend::query_ranked`, `nearest_ranked`) and only the page kept is read
//! (`fill_captions`: 10 documents from the docstore instead of 200, each 2.5 KB of stored
//! embedding besides its caption), and `TopScores` reads the paths of about 100 matches instead
//! of 100 per segment. Same results (tests in `embedded/tests.rs`; `eval search` reports equal).
//! Before and after, alternately, same command, 2 cores at load 12–15 with other builds
//! (contended: only the direction means much), hybrid p50 / p99: before 122 / 218 ms and
//! 61.8 / 299 ms; after 27.4 / 65.8 ms and 8.39 / 12.6 ms (the last at load 10–13). Visual p50
//! unchanged (1.91, 1.85 before; 1.86, 1.89 after).
//!
//! The vectors shaped like standardised features, against the old ones, 100k f16, one run each
//! one after the other with the same binary's code otherwise (load 12–15, contended): the graph's
//! insertions per 10k vectors took 27, 44, 49, 53, 54, 55, 42, 42, 41 s (flat after 30k) against
//! 15, 14, 24, 28, 32, 33, 43, 50, 53 s (growing); build 429 s against 312 s, recall@10 0.982
//! against 0.966, peak RSS 693 against 685 MiB.

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::common::single;
use super::{BenchOptions, Row, Table, peak_rss_bytes, reset_peak_rss};
use crate::data::shapes::indexed_caption;
use crate::error::{Error, Result};
use crate::model::inference::Generated;
use crate::search::embedded::EmbeddedBackend;
use crate::search::embedded::vectors::{EXACT_BELOW, VectorStorage};
use crate::search::fusion::{ImageSearch, SearchMode, search_generated};
use crate::search::{Document, SearchBackend, VectorSpace, index_documents};
use crate::util::percentile;

/// The vectors' length: EfficientNet-Lite0's pooled feature.
pub const DIMS: usize = 1280;
/// Group centres of the synthetic vectors (see the module documentation).
const GROUPS: usize = 16;
/// Cluster centres of the synthetic vectors.
const CLUSTERS: usize = 512;
/// Shares of each value's variance: group centre, cluster centre, the vector's own noise.
const SHARES: [f32; 3] = [0.30, 0.45, 0.25];
/// Documents per commit while indexing.
const BATCH: usize = 2000;
/// Hits compared for recall.
const RECALL_AT: usize = 10;

/// What one size measured.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorFigures {
    pub vectors: usize,
    pub storage: VectorStorage,
    /// Indexing all documents (tantivy, graph, saved vector file), s.
    pub index_seconds: f64,
    /// `nearest` (size 10), ms: p50, p99.
    pub visual_ms: (f64, f64),
    /// Hybrid `search_generated` (size 10, fusion depth 100), ms: p50, p99.
    pub hybrid_ms: (f64, f64),
    /// The backend's exact scan (size 10), ms: p50, p99 (over at most 20 queries).
    pub exact_ms: (f64, f64),
    /// Mean share of the exact f32 top 10 that visual search returned.
    pub recall_at_10: f64,
    pub vector_file_bytes: Option<u64>,
    /// Peak RSS of this process while indexing and querying this size.
    pub peak_rss_bytes: Option<u64>,
}

/// Deterministic synthetic vectors (see the module documentation).
pub struct SyntheticVectors {
    /// Per value: its standard deviation, `(1 + i/24)^-0.725` for the `i`-th (1-based).
    scale: Vec<f32>,
    groups: Vec<Vec<f32>>,
    clusters: Vec<Vec<f32>>,
    rng: ChaCha8Rng,
}

impl SyntheticVectors {
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let scale: Vec<f32> = (1..=DIMS)
            .map(|i| (1.0 + i as f32 / 24.0).powf(-0.725))
            .collect();
        let mut centres = |n: usize, share: f32| -> Vec<Vec<f32>> {
            (0..n)
                .map(|_| {
                    let mut v = vec![0f32; DIMS];
                    fill_normal(&mut rng, &mut v);
                    for (x, s) in v.iter_mut().zip(&scale) {
                        *x *= s * share.sqrt();
                    }
                    v
                })
                .collect()
        };
        let groups = centres(GROUPS, SHARES[0]);
        let clusters = centres(CLUSTERS, SHARES[1]);
        SyntheticVectors {
            scale,
            groups,
            clusters,
            rng,
        }
    }

    pub fn next_vector(&mut self) -> Vec<f32> {
        let g = &self.groups[self.rng.random_range(0..GROUPS)];
        let c = &self.clusters[self.rng.random_range(0..CLUSTERS)];
        let mut v = vec![0f32; DIMS];
        fill_normal(&mut self.rng, &mut v);
        let own = SHARES[2].sqrt();
        for (i, x) in v.iter_mut().enumerate() {
            *x = g[i] + c[i] + *x * own * self.scale[i];
        }
        v
    }
}

/// Fills `out` with standard normal values (Box–Muller, two values from two uniforms).
fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        // 1 − u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f32>();
        let u2 = rng.random::<f32>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f32::consts::TAU * u2;
        pair[0] = r * t.cos();
        if let Some(second) = pair.get_mut(1) {
            *second = r * t.sin();
        }
    }
}

fn unit_f32(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter().map(|x| x / norm).collect()
}

/// The exact top [`RECALL_AT`] of each query over every vector seen, by cosine similarity in f32,
/// fed batch by batch.
struct ExactReference {
    /// `DIMS × queries`, row-major: the unit queries as columns.
    queries_t: Vec<f32>,
    queries: usize,
    /// Unit vectors waiting for the next product, row-major.
    pending: Vec<f32>,
    pending_ids: Vec<usize>,
    /// Per query: (similarity, document number), best first.
    top: Vec<Vec<(f32, usize)>>,
}

impl ExactReference {
    fn new(queries: &[Vec<f32>]) -> Self {
        let q = queries.len();
        let mut queries_t = vec![0f32; DIMS * q];
        for (j, query) in queries.iter().enumerate() {
            for (d, x) in unit_f32(query).into_iter().enumerate() {
                queries_t[d * q + j] = x;
            }
        }
        ExactReference {
            queries_t,
            queries: q,
            pending: Vec::with_capacity(BATCH * DIMS),
            pending_ids: Vec::with_capacity(BATCH),
            top: vec![Vec::new(); q],
        }
    }

    fn push(&mut self, id: usize, vector: &[f32]) {
        self.pending.extend(unit_f32(vector));
        self.pending_ids.push(id);
        if self.pending_ids.len() == BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let rows = self.pending_ids.len();
        if rows == 0 || self.queries == 0 {
            self.pending.clear();
            self.pending_ids.clear();
            return;
        }
        let q = self.queries;
        let mut sims = vec![0f32; rows * q];
        crate::model::gemm::matmul(
            &mut sims,
            &self.pending,
            &self.queries_t,
            (rows, DIMS, q),
            false,
            true,
        );
        for (j, top) in self.top.iter_mut().enumerate() {
            for (r, &id) in self.pending_ids.iter().enumerate() {
                let s = sims[r * q + j];
                if top.len() < RECALL_AT || s > top[top.len() - 1].0 {
                    let at = top.partition_point(|&(t, _)| t >= s);
                    top.insert(at, (s, id));
                    top.truncate(RECALL_AT);
                }
            }
        }
        self.pending.clear();
        self.pending_ids.clear();
    }
}

fn doc_path(i: usize) -> String {
    format!("bench/{i:07}.png")
}

/// Indexes `n` documents with vectors into `backend` (empty), then times `queries` visual and
/// hybrid searches with unseen vectors and captions, and measures recall@10 against an exact
/// f32 search.
pub fn vector_figures(
    backend: &EmbeddedBackend,
    storage: VectorStorage,
    n: usize,
    queries: usize,
) -> Result<VectorFigures> {
    reset_peak_rss();
    let space = VectorSpace {
        dims: DIMS,
        embedder: format!("synthetic clustered vectors ({DIMS}-d)"),
    };
    backend.set_vector_space(&space)?;
    // The queries come from their own stream (same clusters), so they are unseen.
    let mut query_stream = SyntheticVectors::new(7);
    query_stream.rng = ChaCha8Rng::seed_from_u64(1_000_007);
    let query_vectors: Vec<Vec<f32>> = (0..queries).map(|_| query_stream.next_vector()).collect();
    let reference = std::cell::RefCell::new(ExactReference::new(&query_vectors));
    let mut vectors = SyntheticVectors::new(7);
    let progress = crate::util::progress_bar(
        Some(n as u64),
        &format!("bench: indexing {n} vectors ({storage})"),
    );
    let step = (n / 10).max(1);
    let docs = (0..n).map(|i| {
        let mut d = Document::from_model(doc_path(i), indexed_caption(i as u64), "bench");
        let v = vectors.next_vector();
        reference.borrow_mut().push(i, &v);
        d.embedding = Some(v);
        if (i + 1) % step == 0 {
            tracing::info!("bench search vectors: {} of {n} indexed", i + 1);
        }
        d
    });
    let start = Instant::now();
    index_documents(backend, docs, BATCH, &progress)?;
    progress.finish_and_clear();
    // The first search loads the vector file: not part of a query's latency.
    backend.nearest(&vectors.next_vector(), 1, 0)?;
    let index_seconds = start.elapsed().as_secs_f64();
    let mut reference = reference.into_inner();
    reference.flush();
    tracing::info!("bench search vectors: {n} indexed in {index_seconds:.1} s; querying");

    let mut visual = Vec::with_capacity(queries);
    let mut hybrid = Vec::with_capacity(queries);
    let mut exact = Vec::new();
    let mut found_share = 0.0;
    for (j, vector) in query_vectors.iter().enumerate() {
        let generated = Generated {
            caption: indexed_caption((n + j) as u64),
            logprob: 0.0,
            embedding: Some(vector.clone()),
        };
        let t = Instant::now();
        let found = backend.nearest(vector, RECALL_AT, 0)?;
        visual.push(t.elapsed().as_secs_f64() * 1e3);
        if found.len() != RECALL_AT.min(n) {
            return Err(Error::Internal(format!(
                "visual search found {} of {n} vectors",
                found.len()
            )));
        }
        let truth: Vec<String> = reference.top[j].iter().map(|&(_, i)| doc_path(i)).collect();
        let hit = found.iter().filter(|h| truth.contains(&h.path)).count();
        found_share += hit as f64 / truth.len().max(1) as f64;
        let request = ImageSearch {
            mode: Some(SearchMode::Hybrid),
            ..ImageSearch::default()
        };
        let t = Instant::now();
        search_generated(backend, &generated, &space, &request)?;
        hybrid.push(t.elapsed().as_secs_f64() * 1e3);
        if j < 20 {
            let t = Instant::now();
            backend.exact_nearest(vector, RECALL_AT)?;
            exact.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let p = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (percentile(&v, 50.0), percentile(&v, 99.0))
    };
    let stats = backend.stats()?;
    Ok(VectorFigures {
        vectors: n,
        storage,
        index_seconds,
        visual_ms: p(visual),
        hybrid_ms: p(hybrid),
        exact_ms: p(exact),
        recall_at_10: found_share / queries.max(1) as f64,
        vector_file_bytes: stats.vectors.and_then(|v| v.size_bytes),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn latency(name: &str, (p50, p99): (f64, f64), runs: usize) -> Row {
    let mut row = single(name, "ms", false, p50);
    row.high = p99;
    row.spread = "p50–p99".into();
    row.runs = runs;
    row
}

/// The sizes measured: `--vectors`, else the defaults.
pub fn vector_sizes(opts: &BenchOptions) -> Vec<usize> {
    match &opts.vector_sizes {
        Some(sizes) => sizes.clone(),
        None if opts.quick => vec![1000, 10_000],
        None => vec![10_000, 100_000],
    }
}

pub(super) fn bench_vectors(opts: &BenchOptions) -> Result<Table> {
    reset_peak_rss();
    let sizes = vector_sizes(opts);
    let storages = if opts.vector_storages.is_empty() {
        vec![VectorStorage::default()]
    } else {
        opts.vector_storages.clone()
    };
    let queries = if opts.quick { 20 } else { 200 };
    let mut rows = Vec::new();
    let mut setup = vec![format!(
        "{DIMS}-d synthetic clustered non-negative vectors with shapes captions, embedded \
         backend (usearch HNSW graph, cosine, M = 16, ef_add 128, ef 128; exact scan below \
         {EXACT_BELOW} vectors), {queries} unseen queries per size; recall@10 against an exact \
         f32 search of the original vectors"
    )];
    let mut peak = None;
    for &n in &sizes {
        for &storage in &storages {
            tracing::info!("bench search vectors: {n} vectors, {storage}");
            let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let backend =
                EmbeddedBackend::new(dir.path().join("index")).with_vector_storage(storage);
            let f = vector_figures(&backend, storage, n, queries)?;
            drop(backend);
            // The storage is named when more than one is measured.
            let label = if storages.len() > 1 {
                format!("{n} vectors, {storage}")
            } else {
                format!("{n} vectors")
            };
            rows.push(latency(
                &format!("visual query, {label} (size 10)"),
                f.visual_ms,
                queries,
            ));
            rows.push(latency(
                &format!("hybrid query, {label} (size 10, depth 100)"),
                f.hybrid_ms,
                queries,
            ));
            rows.push(latency(
                &format!("exact scan, {label} (size 10)"),
                f.exact_ms,
                queries.min(20),
            ));
            rows.push(single(
                &format!("visual recall@10, {label}"),
                "",
                true,
                f.recall_at_10,
            ));
            rows.push(single(
                &format!("index build, {label}"),
                "s",
                false,
                f.index_seconds,
            ));
            let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / 1048576.0);
            rows.push(single(
                &format!("peak RSS, {label}"),
                "MiB",
                false,
                mib(f.peak_rss_bytes),
            ));
            setup.push(format!(
                "{n} vectors, {storage}: built (captions, vectors, graph, saved files) in {:.1} s; vector file \
                 {}; recall@10 {:.3}; peak RSS {}",
                f.index_seconds,
                f.vector_file_bytes
                    .map_or("?".into(), |b| indicatif::HumanBytes(b).to_string()),
                f.recall_at_10,
                f.peak_rss_bytes
                    .map_or("?".into(), |b| indicatif::HumanBytes(b).to_string()),
            ));
            peak = peak.max(f.peak_rss_bytes);
        }
    }
    Ok(Table {
        name: "search-vectors".into(),
        title: "embedded backend, image vectors".into(),
        setup,
        rows,
        counts: vec![],
        peak_rss_bytes: peak,
        plots: vec![],
        notes: vec![format!(
            "Below {EXACT_BELOW} vectors visual search scans every vector (recall 1 against the \
             f16 vectors; what is lost is f16 rounding); from there on it walks the graph."
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_vector_run_measures_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        let f = vector_figures(&backend, VectorStorage::F16, 300, 5).unwrap();
        assert_eq!(f.vectors, 300);
        assert_eq!(backend.count().unwrap(), 300);
        assert!(f.visual_ms.0 <= f.visual_ms.1);
        assert!(f.hybrid_ms.0 <= f.hybrid_ms.1);
        // An exact scan of f16 vectors finds nearly the f32 top 10.
        assert!(f.recall_at_10 >= 0.9, "{f:?}");
        // 300 unit vectors of 1280 f16 plus the graph and the header.
        assert!(f.vector_file_bytes.unwrap() > 300 * 1280 * 2);
        let v = backend.stats().unwrap().vectors.unwrap();
        assert_eq!((v.count, v.dims, v.in_sync), (Some(300), DIMS, Some(true)));
    }

    /// The synthetic vectors repeat for a seed and look like standardised features: centred,
    /// the first values wider than the last, unrelated pairs near cosine 0 and nearest
    /// neighbours well above it (the module documentation has the real features' figures).
    #[test]
    fn synthetic_vectors_are_shaped_like_standardised_features() {
        let take = |seed| {
            let mut s = SyntheticVectors::new(seed);
            (0..1500).map(|_| s.next_vector()).collect::<Vec<_>>()
        };
        let vectors = take(7);
        assert_eq!(vectors, take(7));
        assert_ne!(vectors, take(8));
        let n = vectors.len() as f32;
        let mean = |d: usize| vectors.iter().map(|v| v[d]).sum::<f32>() / n;
        let var = |d: usize| vectors.iter().map(|v| v[d] * v[d]).sum::<f32>() / n;
        assert!(mean(0).abs() < 0.25 && mean(DIMS - 1).abs() < 0.05);
        // Expected variances (1 + 1/24)^-1.45 ≈ 0.94 and (1 + 1280/24)^-1.45 ≈ 0.003.
        assert!(var(0) > 0.5 && var(0) < 1.5, "{}", var(0));
        assert!(var(DIMS - 1) < 0.01, "{}", var(DIMS - 1));
        let units: Vec<Vec<f32>> = vectors.iter().map(|v| unit_f32(v)).collect();
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let (mut pairs, mut nearest) = (0f32, 0f32);
        for i in 0..200 {
            pairs += cos(&units[i], &units[i + 200]);
            nearest += (0..units.len())
                .filter(|&j| j != i)
                .map(|j| cos(&units[i], &units[j]))
                .fold(f32::MIN, f32::max);
        }
        let (pairs, nearest) = (pairs / 200.0, nearest / 200.0);
        assert!(pairs.abs() < 0.1, "unrelated pairs: {pairs}");
        assert!(
            nearest > 0.4 && nearest < 0.85,
            "nearest neighbours: {nearest}"
        );
    }

    #[test]
    fn the_exact_reference_keeps_the_best_ten_in_order() {
        let mut stream = SyntheticVectors::new(3);
        let vectors: Vec<Vec<f32>> = (0..50).map(|_| stream.next_vector()).collect();
        let mut reference = ExactReference::new(&vectors[..2]);
        for (i, v) in vectors.iter().enumerate() {
            reference.push(i, v);
        }
        reference.flush();
        for j in 0..2 {
            let top = &reference.top[j];
            assert_eq!(top.len(), RECALL_AT);
            assert_eq!(top[0].1, j, "a vector is its own nearest");
            assert!(top.windows(2).all(|w| w[0].0 >= w[1].0));
        }
    }
}
