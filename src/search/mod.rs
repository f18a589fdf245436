//! Search: index images by their captions and find them again by text.
//!
//! One interface, [`SearchBackend`], with two implementations:
//! - [`embedded::EmbeddedBackend`] (the default): a tantivy index on disk, no server needed;
//! - [`elastic::ElasticBackend`]: an Elasticsearch 8 cluster, through the official client.
//!
//! A [`Document`] is one image: its path and its captions (the caption a model wrote, or every
//! reference caption of a dataset image), with the model or dataset that produced them. Its id is
//! derived from its path ([`doc_id`]), so indexing an image again replaces it and never adds a
//! second copy. Both backends analyse captions the same way (English: lower-casing, Lucene's
//! English stop words, stemming), and both pick the [`Hit::caption`] shown for a match with the
//! same rule ([`best_caption`]), so they give the same JSON for the same corpus; only the scores
//! (and the order of near ties) may differ.
//!
//! Apart from [`indexer`] (captioning images with a model and indexing the captions, for the CLI
//! and the web app alike), this module knows nothing of the model: whoever captions images builds
//! [`Document`]s and hands them to [`index_documents`].
//!
//! # Sync interface, async callers
//! The trait is synchronous (`&self`, `Send + Sync`), because tantivy is blocking and so are the
//! CLI commands. The Elasticsearch backend owns a small tokio runtime and blocks on it. From async
//! code (the axum web server) keep the backend in an `Arc<dyn SearchBackend>` and call it inside
//! `tokio::task::spawn_blocking`; calling it directly on an async worker thread would block that
//! thread (and the Elasticsearch backend refuses to run a nested runtime).

pub mod analysis;
pub mod elastic;
pub mod embedded;
pub mod fusion;
pub mod indexer;
pub mod shard;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};

pub use analysis::{analyze, best_caption};

/// What produced a document's captions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// The caption a model wrote for the image; [`Document::source`] is the model id.
    Model,
    /// The reference captions of a dataset image; [`Document::source`] is the dataset name.
    Dataset,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Model => "model",
            DocKind::Dataset => "dataset",
        }
    }
}

impl std::fmt::Display for DocKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One indexed image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The image's path, as the user will want to open it. It is the document's identity.
    pub path: String,
    /// Its captions: one from a model, or all the references of a dataset image. Never empty.
    pub captions: Vec<String>,
    /// The model id (for [`DocKind::Model`]) or the dataset name (for [`DocKind::Dataset`]).
    pub source: String,
    pub kind: DocKind,
    /// When it was indexed, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The image's embedding for visual search (see [`VectorSpace`]), when the indexer computed
    /// one. Every document of one index has the same length; backends compare by cosine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl Document {
    /// A document for the caption that `model` wrote for the image at `path`, stamped now.
    pub fn from_model(
        path: impl Into<String>,
        caption: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Document {
            path: path.into(),
            captions: vec![caption.into()],
            source: model.into(),
            kind: DocKind::Model,
            timestamp: now_millis(),
            embedding: None,
        }
    }

    /// A document for the reference captions of a dataset image, stamped now.
    pub fn from_dataset(
        path: impl Into<String>,
        captions: Vec<String>,
        dataset: impl Into<String>,
    ) -> Self {
        Document {
            path: path.into(),
            captions,
            source: dataset.into(),
            kind: DocKind::Dataset,
            timestamp: now_millis(),
            embedding: None,
        }
    }

    /// Checks what every backend relies on: a path, a source, and at least one non-blank caption.
    pub fn validate(&self) -> Result<()> {
        if self.path.trim().is_empty() {
            return Err(Error::Document {
                path: self.path.clone(),
                message: format!("from {} {:?}: the path is empty", self.kind, self.source),
            });
        }
        if self.source.trim().is_empty() {
            return Err(Error::Document {
                path: self.path.clone(),
                message: format!("the {} name is empty", self.kind),
            });
        }
        if self.captions.iter().all(|c| c.trim().is_empty()) {
            return Err(Error::Document {
                path: self.path.clone(),
                message: "has no caption: every document needs at least one non-blank caption"
                    .into(),
            });
        }
        Ok(())
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub path: String,
    /// The document's caption that best matches the query (see [`best_caption`]).
    pub caption: String,
    /// The score results are ranked by (higher is better): BM25 for caption search, cosine
    /// similarity for visual search, the fused reciprocal-rank score for hybrid search.
    pub score: f32,
    /// The caption (BM25) score, when the caption search found this document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption_score: Option<f32>,
    /// The cosine similarity of the document's embedding to the query's, when visual search
    /// found this document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visual_score: Option<f32>,
}

/// What the image vectors of an index are: their length, and what computed them (for example
/// `efficientnet-lite0 pooled 1280-d` or a captioner's projected image vector). Kept in the index's
/// metadata; an indexer refuses to mix vectors of different spaces in one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpace {
    pub dims: usize,
    /// What computed the vectors, in words a user recognises.
    pub embedder: String,
}

impl VectorSpace {
    /// Fails unless `wanted` is this space (the one `location`'s index holds): one index holds the
    /// vectors of one embedder, since distances between two spaces mean nothing.
    pub fn ensure_same(&self, wanted: &VectorSpace, location: &str) -> Result<()> {
        if self == wanted {
            return Ok(());
        }
        Err(Error::Search(format!(
            "{location} holds image vectors of {} ({} values), not of {} ({} values): an index \
             holds one vector space. Search or index it with the model that built it, or drop it \
             (`capsearch index --drop`) and index again",
            self.embedder, self.dims, wanted.embedder, wanted.dims
        )))
    }

    /// Fails unless `vector` has this space's length.
    pub fn ensure_dims(&self, vector: &[f32], what: &str) -> Result<()> {
        if vector.len() == self.dims {
            return Ok(());
        }
        Err(Error::Search(format!(
            "{what} has {} values, but the index's vectors ({}) have {}",
            vector.len(),
            self.embedder,
            self.dims
        )))
    }
}

/// How many documents one model or dataset contributed to an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    pub kind: DocKind,
    pub source: String,
    pub documents: u64,
}

/// What an index holds (`capsearch index --stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    /// `embedded` or `elasticsearch`.
    pub backend: String,
    /// The index folder, or the cluster URL and index name.
    pub location: String,
    pub documents: u64,
    /// Documents per model and per dataset, sorted by kind then name.
    pub sources: Vec<SourceCount>,
    /// Size of the index's files (on every copy, for Elasticsearch), when the backend reports it.
    pub size_bytes: Option<u64>,
    /// The image vectors, when the index holds a vector space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<VectorStats>,
}

/// The vector part of an index (`capsearch index --stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorStats {
    /// Vectors held (documents with an embedding); `None` when the backend could not count them.
    pub count: Option<u64>,
    /// Values per vector.
    pub dims: usize,
    /// What computed them ([`VectorSpace::embedder`]).
    pub embedder: String,
    /// Similarity and storage, in words (e.g. `cosine, f32, exact scan`).
    pub storage: String,
    /// Size of the vector file (embedded); `None` on Elasticsearch, which does not report it.
    pub size_bytes: Option<u64>,
    /// Embedded: whether the vector file matches the tantivy commit (a mismatch is rebuilt on the
    /// next search or write); `None` on Elasticsearch, where vectors are fields of the documents.
    pub in_sync: Option<bool>,
    /// Why the vectors do not match, when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The backend's state, as far as a cheap check can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub backend: String,
    pub location: String,
    /// `green`/`yellow`/`red` for Elasticsearch's cluster; `green` for a readable embedded index.
    pub status: String,
    /// Whether the index exists (queries on a missing index fail with an error saying so).
    pub index_exists: bool,
}

/// An index of image captions.
///
/// All methods take `&self` and may be called from several threads. Writes ([`index`],
/// [`delete`], [`drop_index`]) are visible to reads as soon as they return. Reads on an index that
/// does not exist fail with "... does not exist: run `capsearch index` first".
///
/// [`index`]: SearchBackend::index
/// [`delete`]: SearchBackend::delete
/// [`drop_index`]: SearchBackend::drop_index
pub trait SearchBackend: Send + Sync {
    /// `embedded` or `elasticsearch`.
    fn name(&self) -> &'static str;

    /// Where the index lives, for messages: a folder, or `URL, index NAME`.
    fn location(&self) -> String;

    /// Whether the backend answers, and whether the index exists.
    fn health(&self) -> Result<Health>;

    /// Adds or replaces documents (keyed by path), creating the index if it does not exist yet.
    /// Returns how many documents were written. A path given twice keeps its last document.
    fn index(&self, docs: &[Document]) -> Result<usize>;

    /// Removes the documents with these paths. Returns how many existed and were removed.
    fn delete(&self, paths: &[String]) -> Result<usize>;

    /// The documents best matching `text` (English-analysed, any term may match), best first,
    /// skipping the first `offset`. A query with no searchable term (empty, only stop words)
    /// matches nothing.
    fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>>;

    /// Number of documents in the index.
    fn count(&self) -> Result<u64>;

    /// Every document, `size` at a time, skipping the first `offset`, in a stable order: by path
    /// (bytewise). Each [`Hit`] carries the document's first caption and a score of 0. The total
    /// is [`count`](SearchBackend::count). Elasticsearch pages only through its first 10,000
    /// documents this way (`offset + size` ≤ 10,000) and says so beyond that.
    fn list(&self, size: usize, offset: usize) -> Result<Vec<Hit>>;

    /// Which of `paths` are indexed with a document of this kind and source (used to skip images
    /// already captioned by the same model). An index that does not exist yet holds none.
    fn indexed_paths(
        &self,
        paths: &[String],
        kind: DocKind,
        source: &str,
    ) -> Result<HashSet<String>>;

    /// Whether `path` is indexed with a document of this kind and source.
    fn contains(&self, path: &str, kind: DocKind, source: &str) -> Result<bool> {
        Ok(!self
            .indexed_paths(&[path.to_string()], kind, source)?
            .is_empty())
    }

    /// What the index holds.
    fn stats(&self) -> Result<IndexStats>;

    /// Deletes the whole index. Returns false if there was none.
    fn drop_index(&self) -> Result<bool>;

    /// The documents whose embeddings are nearest to `vector` by cosine similarity, best first,
    /// skipping the first `offset`; each [`Hit`] has `score` = `visual_score` = the similarity.
    /// Documents without an embedding are never returned.
    fn nearest(&self, vector: &[f32], size: usize, offset: usize) -> Result<Vec<Hit>> {
        let _ = (vector, size, offset);
        Err(Error::Search(format!(
            "the {} backend cannot search by image vector yet",
            self.name()
        )))
    }

    /// [`query`](SearchBackend::query) for ranking only: the same hits in the same order with
    /// the same scores, but a backend may leave each `caption` empty, for
    /// [`fill_captions`](SearchBackend::fill_captions) to fill on the hits kept. Hybrid search
    /// fuses 100 hits of each list to show a page of 10: reading the other 190 documents (the
    /// embedded backend decompresses a docstore block for each) is wasted time.
    fn query_ranked(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.query(text, size, offset)
    }

    /// [`nearest`](SearchBackend::nearest) for ranking only, as
    /// [`query_ranked`](SearchBackend::query_ranked) is to `query`.
    fn nearest_ranked(&self, vector: &[f32], size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.nearest(vector, size, offset)
    }

    /// Gives hits of [`query_ranked`](SearchBackend::query_ranked) and
    /// [`nearest_ranked`](SearchBackend::nearest_ranked) (fused or not) the caption that `query`
    /// and `nearest` would have given them: for a hit the caption search found (`caption_score`
    /// set), the document's caption best matching `text` ([`best_caption`]); otherwise its first
    /// caption. A backend whose ranked hits already carry their captions has nothing to do.
    fn fill_captions(&self, text: &str, hits: &mut [Hit]) -> Result<()> {
        let _ = (text, hits);
        Ok(())
    }

    /// The vector space of the index's embeddings, or `None` when it holds none.
    fn vector_space(&self) -> Result<Option<VectorSpace>> {
        Ok(None)
    }

    /// Declares the space of the embeddings that the next [`index`](SearchBackend::index) calls
    /// carry. An index holds one space: the first declaration is recorded with it, and declaring
    /// another space afterwards fails with an error naming both (drop the index, or index into
    /// another one). Returns whether the backend stores vectors at all: `false` means documents'
    /// embeddings would be ignored, and callers index captions only.
    fn set_vector_space(&self, space: &VectorSpace) -> Result<bool> {
        let _ = space;
        Ok(false)
    }

    /// Finishes a bulk run: the embedded backend waits for its background segment merges and
    /// releases the writer lock (so another process can write); Elasticsearch has nothing to do.
    /// Writing again afterwards is allowed. [`index_documents`] calls it at the end.
    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// The backends capsearch can search with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A tantivy index in a folder (`--index-path`); needs no server.
    #[default]
    Embedded,
    /// An Elasticsearch 8 cluster (`--es-url`, `--es-index`).
    Elasticsearch,
}

impl BackendKind {
    /// The backend's name, as `--backend` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Elasticsearch => "elasticsearch",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the index lives and how to reach it (the CLI fills it from `--backend`, `--index-path`,
/// `--es-*` and the `ES_*` environment variables).
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Which backend.
    pub backend: BackendKind,
    /// Folder of the embedded index.
    pub index_path: PathBuf,
    /// Elasticsearch URL, e.g. http://localhost:9200 (required for Elasticsearch).
    pub es_url: Option<String>,
    /// Elasticsearch index name.
    pub es_index: String,
    /// Elasticsearch user for basic authentication (with `es_password`).
    pub es_username: Option<String>,
    /// Elasticsearch password for basic authentication.
    pub es_password: Option<String>,
    /// Elasticsearch API key (the base64 `encoded` form).
    pub es_api_key: Option<String>,
}

/// The embedded index's folder when none is given.
pub const DEFAULT_INDEX_PATH: &str = "./index/";
/// The Elasticsearch index name when none is given.
pub const DEFAULT_ES_INDEX: &str = "capsearch";

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            backend: BackendKind::Embedded,
            index_path: PathBuf::from(DEFAULT_INDEX_PATH),
            es_url: None,
            es_index: DEFAULT_ES_INDEX.to_string(),
            es_username: None,
            es_password: None,
            es_api_key: None,
        }
    }
}

/// Opens the backend the options name. Nothing is created yet: the index appears on the first
/// [`SearchBackend::index`], and reads of a missing index fail with an error that says so.
pub fn open_backend(opts: &BackendOptions) -> Result<Box<dyn SearchBackend>> {
    match opts.backend {
        BackendKind::Embedded => Ok(Box::new(embedded::EmbeddedBackend::new(&opts.index_path))),
        BackendKind::Elasticsearch => {
            let url = opts.es_url.clone().ok_or_else(|| {
                Error::option(
                    "--backend elasticsearch",
                    "needs the cluster's URL: pass --es-url URL or set ES_URL",
                )
            })?;
            let auth = match (&opts.es_api_key, &opts.es_username, &opts.es_password) {
                (Some(_), Some(_), _) => {
                    return Err(Error::option(
                        "ES_API_KEY",
                        "give either an API key (ES_API_KEY) or a user and password \
                         (ES_USERNAME, ES_PASSWORD), not both",
                    ));
                }
                (Some(key), None, _) => elastic::Auth::ApiKey(key.clone()),
                (None, Some(user), Some(password)) => {
                    elastic::Auth::Basic(user.clone(), password.clone())
                }
                (None, Some(_), None) => {
                    return Err(Error::option(
                        "ES_PASSWORD",
                        "ES_USERNAME is set but ES_PASSWORD is not: set both for basic authentication",
                    ));
                }
                (None, None, Some(_)) => {
                    return Err(Error::option(
                        "ES_USERNAME",
                        "ES_PASSWORD is set but ES_USERNAME is not: set both for basic authentication",
                    ));
                }
                (None, None, None) => elastic::Auth::None,
            };
            let config = elastic::ElasticConfig {
                url,
                index: opts.es_index.clone(),
                auth,
                ..elastic::ElasticConfig::default()
            };
            Ok(Box::new(elastic::ElasticBackend::new(config)?))
        }
    }
}

/// A document's id in the index: the first 40 hex digits of the SHA-256 of its path. Stable across
/// runs and machines, so indexing a path again replaces its document.
pub fn doc_id(path: &str) -> String {
    let digest = Sha256::digest(path.as_bytes());
    let mut id = hex::encode(digest);
    id.truncate(40);
    id
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A progress bar for indexing (the one style, [`crate::util::progress_bar`]).
pub use crate::util::progress_bar;

/// Indexes documents in batches of `batch_size`, advancing `progress` by each batch, then calls
/// [`SearchBackend::finish`]. Returns how many documents were written. Stops at the first failing
/// batch: batches before it are kept, so running the same indexing again completes it without
/// duplicates.
pub fn index_documents<I>(
    backend: &dyn SearchBackend,
    docs: I,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<usize>
where
    I: IntoIterator<Item = Document>,
{
    let batch_size = batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut written = 0;
    for doc in docs {
        batch.push(doc);
        if batch.len() == batch_size {
            written += backend.index(&batch)?;
            progress.inc(batch.len() as u64);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        written += backend.index(&batch)?;
        progress.inc(batch.len() as u64);
    }
    backend.finish()?;
    Ok(written)
}

/// One document per image of a dataset, with all its reference captions, its path joined to the
/// dataset's image root, and the dataset's name as source; only the images of `split` when given.
pub fn dataset_documents(dataset: &Dataset, split: Option<Split>) -> Vec<Document> {
    let name = dataset.name();
    let timestamp = now_millis();
    dataset
        .samples
        .iter()
        .filter(|s| split.is_none_or(|wanted| s.split == wanted))
        .map(|sample| Document {
            path: dataset.image_path(sample).to_string_lossy().into_owned(),
            captions: sample.captions.clone(),
            source: name.clone(),
            kind: DocKind::Dataset,
            timestamp,
            embedding: None,
        })
        .collect()
}

/// The error every backend gives when reading an index that was never created.
pub(crate) fn missing_index(what: &str) -> Error {
    Error::Search(format!(
        "{what} does not exist: run `capsearch index` first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_id_is_stable_and_distinguishes_paths() {
        assert_eq!(doc_id("a/b.jpg"), doc_id("a/b.jpg"));
        assert_ne!(doc_id("a/b.jpg"), doc_id("a/c.jpg"));
        assert_eq!(doc_id("x").len(), 40);
        // sha256("x") = 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881
        assert_eq!(doc_id("x"), "2d711642b726b04401627ca9fbac32f5c8530fb1");
    }

    #[test]
    fn validate_rejects_documents_without_captions_or_path() {
        assert!(
            Document::from_model("a.jpg", "a dog", "m")
                .validate()
                .is_ok()
        );
        assert!(Document::from_model("", "a dog", "m").validate().is_err());
        assert!(Document::from_model("a.jpg", "  ", "m").validate().is_err());
        assert!(
            Document::from_dataset("a.jpg", vec![], "d")
                .validate()
                .is_err()
        );
        assert!(
            Document::from_model("a.jpg", "a dog", "")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn hit_serialises_to_the_documented_json() {
        let hit = Hit {
            path: "a.jpg".into(),
            caption: "a dog".into(),
            score: 1.5,
            caption_score: Some(1.5),
            visual_score: None,
        };
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            r#"{"path":"a.jpg","caption":"a dog","score":1.5,"caption_score":1.5}"#
        );
    }

    #[test]
    fn elasticsearch_needs_a_url_and_consistent_credentials() {
        let mut opts = BackendOptions {
            backend: BackendKind::Elasticsearch,
            ..BackendOptions::default()
        };
        let err = open_backend(&opts).err().unwrap().to_string();
        assert!(err.contains("ES_URL"), "{err}");
        opts.es_url = Some("http://127.0.0.1:1".into());
        opts.es_username = Some("elastic".into());
        let err = open_backend(&opts).err().unwrap().to_string();
        assert!(err.contains("ES_PASSWORD"), "{err}");
        opts.es_password = Some("secret".into());
        assert!(open_backend(&opts).is_ok());
    }
}
