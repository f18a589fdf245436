//! The Elasticsearch backend, through the official `elasticsearch` client (Elasticsearch 8 APIs).
//!
//! - The index is created on the first write with an explicit, strict mapping ([`mapping`]):
//!   `caption` is `text` with the `english` analyzer, `path`, `kind`, `model` and `dataset` are
//!   `keyword`s, `timestamp` is a `date` (ms since the epoch). An existing index whose mapping
//!   disagrees is refused with an error naming the field.
//! - Documents are written with `_bulk` in batches (by count and by bytes). Each document's `_id` is
//!   [`doc_id`] of its path, so writing it again replaces it. Every item's status is checked; items
//!   rejected with 429 are sent again, and whole requests answered 429 or 5xx are retried, with
//!   exponential backoff. The index is refreshed before a write returns, so a query right after
//!   sees it.
//! - Image vectors: the index gains a `dense_vector` field `embedding` ([`vector_mapping`]:
//!   `similarity: cosine`, `index: true`, the server's default HNSW quantisation, `int8_hnsw`
//!   since Elasticsearch 8.14) when its vector space is first declared
//!   ([`SearchBackend::set_vector_space`]), through the put-mapping API, which may add fields to
//!   an existing index; so an index first filled with captions alone gains vectors later. The
//!   [`VectorSpace`] is kept in the mapping's `_meta` (`vector_space`), where
//!   [`SearchBackend::vector_space`] reads it. Bulk writes carry each document's embedding;
//!   [`SearchBackend::nearest`] is a `knn` search (`k` = offset + size, `num_candidates` =
//!   max(2k, 100), at most 10,000), and converts the `_score` Elasticsearch reports for cosine,
//!   (1 + cos) / 2, back to the cosine similarity.
//! - Only documented Elasticsearch 8 REST APIs are used: index create/get-mapping/put-mapping/
//!   refresh/delete/stats, `_bulk`, `_search` (match sorted by `_score` then path, so that ties
//!   are stable; match_all sorted by path; exists, bool, term, terms, terms aggregation,
//!   top-level `knn`), `_count` and `_cluster/health`.
//!
//! The client is async; [`ElasticBackend`] owns a one-thread tokio runtime, runs each call as a
//! task on it and waits for the answer, so the [`SearchBackend`] trait stays synchronous and the
//! backend can be called from any thread (from async code, call it in `spawn_blocking`: waiting
//! would otherwise block an executor thread).
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | configuration, the backend and its runtime, the [`SearchBackend`] impl |
//! | `client.rs` | the client: one helper per REST call, retries with backoff, error messages |
//! | `lifecycle.rs` | the index: created with [`mapping`], checked, refreshed, dropped; health |
//! | `bulk.rs` | writing and deleting documents with `_bulk` |
//! | `queries.rs` | `_search` and `_count`: queries, listing, lookups, statistics |

mod bulk;
mod client;
mod lifecycle;
mod queries;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::http::Url;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde_json::{Value, json};

use super::{DocKind, Document, Health, Hit, IndexStats, SearchBackend, VectorSpace};
use crate::error::{Error, Result};
use client::Inner;

/// How to authenticate to the cluster.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// User and password (HTTP basic authentication).
    Basic(String, String),
    /// An API key in its base64 "encoded" form, as Elasticsearch prints it on creation.
    ApiKey(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic(user, _) => write!(f, "Basic({user:?}, <hidden>)"),
            Auth::ApiKey(_) => f.write_str("ApiKey(<hidden>)"),
        }
    }
}

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ElasticConfig {
    /// Base URL, e.g. `http://localhost:9200`.
    pub url: String,
    /// Index name.
    pub index: String,
    pub auth: Auth,
    /// Most documents in one `_bulk` request.
    pub batch_docs: usize,
    /// Most bytes in one `_bulk` request (a single larger document still goes alone).
    pub batch_bytes: usize,
    /// Retries after a 429 or 5xx answer (whole request, or rejected bulk items).
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time, up to 10 s.
    pub initial_backoff: Duration,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
}

impl Default for ElasticConfig {
    fn default() -> Self {
        ElasticConfig {
            url: String::new(),
            index: "capsearch".to_string(),
            auth: Auth::None,
            batch_docs: 1000,
            batch_bytes: 5 * 1024 * 1024,
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Elasticsearch's default `index.max_result_window`: `from + size` of a search may not exceed it.
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// The index mapping capsearch creates (and expects of an existing index).
pub fn mapping() -> Value {
    json!({
        "dynamic": "strict",
        "properties": {
            "path": {"type": "keyword"},
            "caption": {"type": "text", "analyzer": "english"},
            "kind": {"type": "keyword"},
            "model": {"type": "keyword"},
            "dataset": {"type": "keyword"},
            "timestamp": {"type": "date", "format": "epoch_millis"}
        }
    })
}

/// The field that holds each document's image vector.
pub const VECTOR_FIELD: &str = "embedding";

/// The most `k` (and `num_candidates`) a `knn` search may ask for: Elasticsearch refuses more.
pub const MAX_KNN_CANDIDATES: usize = 10_000;

/// The mapping update that gives an index its image vectors: the `dense_vector` field (cosine,
/// indexed for approximate kNN with the server's default `index_options`) and the space in `_meta`.
pub fn vector_mapping(space: &VectorSpace) -> Value {
    json!({
        "_meta": {"vector_space": {"dims": space.dims, "embedder": space.embedder}},
        "properties": {
            VECTOR_FIELD: {
                "type": "dense_vector",
                "dims": space.dims,
                "index": true,
                "similarity": "cosine"
            }
        }
    })
}

/// Checks what cosine similarity needs of a vector (`what` names it in the error): finite values
/// and a length above zero (Elasticsearch refuses zero vectors for `cosine`).
pub fn check_vector(vector: &[f32], what: &str) -> Result<()> {
    if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::Search(format!(
            "{what} has a value that is not a finite number ({} at position {i})",
            vector[i]
        )));
    }
    if vector.iter().all(|v| *v == 0.0) {
        return Err(Error::Search(format!(
            "{what} is all zeros: cosine similarity needs a vector of non-zero length"
        )));
    }
    Ok(())
}

/// An Elasticsearch index. Cheap to construct: nothing is sent until the first call.
pub struct ElasticBackend {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ElasticBackend {
    pub fn new(config: ElasticConfig) -> Result<Self> {
        let url = Url::parse(&config.url).map_err(|e| {
            Error::Invalid(format!(
                "invalid Elasticsearch URL {:?}: {e} (expected e.g. http://localhost:9200)",
                config.url
            ))
        })?;
        if config.index.is_empty()
            || config.index != config.index.to_lowercase()
            || config.index.starts_with(['-', '_', '+'])
            || config
                .index
                .contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'])
        {
            return Err(Error::Invalid(format!(
                "invalid Elasticsearch index name {:?}: use lower case letters, digits, `-` and `_`",
                config.index
            )));
        }
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(config.timeout);
        builder = match &config.auth {
            Auth::None => builder,
            Auth::Basic(user, password) => {
                builder.auth(Credentials::Basic(user.clone(), password.clone()))
            }
            Auth::ApiKey(key) => builder.auth(Credentials::EncodedApiKey(key.clone())),
        };
        let transport = builder
            .build()
            .map_err(|e| Error::Search(format!("cannot set up the Elasticsearch client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("capsearch-es")
            .enable_all()
            .build()
            .map_err(|e| Error::Search(format!("cannot start the Elasticsearch client: {e}")))?;
        Ok(ElasticBackend {
            inner: Arc::new(Inner {
                client: Elasticsearch::new(transport),
                config,
                ready: AtomicBool::new(false),
                space: Mutex::new(None),
            }),
            runtime: Some(runtime),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ElasticConfig {
        &self.inner.config
    }

    /// Runs `make(inner)` on the backend's runtime and waits for its result.
    fn run<T, F, Fut>(&self, make: F) -> Result<T>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Search(
                "the Elasticsearch client is shut down".into(),
            ));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = make(Arc::clone(&self.inner));
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| {
            Error::Search(
                "the Elasticsearch request was interrupted (the client task ended)".into(),
            )
        })?
    }
}

impl Drop for ElasticBackend {
    fn drop(&mut self) {
        // Never blocks, and is allowed inside an async context (unlike dropping a Runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SearchBackend for ElasticBackend {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn health(&self) -> Result<Health> {
        self.run(|inner| async move { inner.health().await })
    }

    fn index(&self, docs: &[Document]) -> Result<usize> {
        for doc in docs {
            doc.validate()?;
        }
        if docs.is_empty() {
            return Ok(0);
        }
        let docs = docs.to_vec();
        self.run(|inner| async move { inner.index_docs(&docs).await })
    }

    fn delete(&self, paths: &[String]) -> Result<usize> {
        let paths = paths.to_vec();
        self.run(|inner| async move { inner.delete_docs(&paths).await })
    }

    fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        let text = text.to_string();
        self.run(move |inner| async move { inner.query(&text, size, offset).await })
    }

    fn count(&self) -> Result<u64> {
        self.run(|inner| async move { inner.count().await })
    }

    fn list(&self, size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.run(move |inner| async move { inner.list(size, offset).await })
    }

    fn indexed_paths(
        &self,
        paths: &[String],
        kind: DocKind,
        source: &str,
    ) -> Result<HashSet<String>> {
        let paths = paths.to_vec();
        let source = source.to_string();
        self.run(move |inner| async move { inner.indexed_paths(&paths, kind, &source).await })
    }

    fn stats(&self) -> Result<IndexStats> {
        self.run(|inner| async move { inner.stats().await })
    }

    fn drop_index(&self) -> Result<bool> {
        self.run(|inner| async move { inner.drop_index().await })
    }

    fn nearest(&self, vector: &[f32], size: usize, offset: usize) -> Result<Vec<Hit>> {
        check_vector(vector, "the query vector")?;
        let vector = vector.to_vec();
        self.run(move |inner| async move { inner.nearest(&vector, size, offset).await })
    }

    fn vector_space(&self) -> Result<Option<VectorSpace>> {
        self.run(|inner| async move { inner.vector_space().await })
    }

    fn set_vector_space(&self, space: &VectorSpace) -> Result<bool> {
        let space = space.clone();
        self.run(move |inner| async move { inner.declare_vector_space(&space).await })
            .map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_and_index_names_are_refused() {
        let config = |url: &str, index: &str| ElasticConfig {
            url: url.into(),
            index: index.into(),
            ..ElasticConfig::default()
        };
        assert!(ElasticBackend::new(config("not a url", "capsearch")).is_err());
        assert!(ElasticBackend::new(config("http://localhost:9200", "Caps")).is_err());
        assert!(ElasticBackend::new(config("http://localhost:9200", "a/b")).is_err());
        assert!(ElasticBackend::new(config("http://localhost:9200", "caps-1")).is_ok());
    }

    #[test]
    fn vector_mapping_is_a_cosine_dense_vector_with_the_space_in_meta() {
        let space = VectorSpace {
            dims: 4,
            embedder: "test 4-d".into(),
        };
        let m = vector_mapping(&space);
        assert_eq!(m["_meta"]["vector_space"]["dims"], 4);
        assert_eq!(m["_meta"]["vector_space"]["embedder"], "test 4-d");
        let field = &m["properties"][VECTOR_FIELD];
        assert_eq!(field["type"], "dense_vector");
        assert_eq!(field["similarity"], "cosine");
        assert_eq!(field["index"], true);
        assert!(field.get("index_options").is_none(), "the server's default");
        let space: VectorSpace =
            serde_json::from_value(m["_meta"]["vector_space"].clone()).unwrap();
        assert_eq!(space.dims, 4);
    }

    #[test]
    fn vectors_must_be_finite_and_not_zero() {
        assert!(check_vector(&[0.0, 1.0], "v").is_ok());
        let err = check_vector(&[0.0, 0.0], "the embedding of \"a.png\"").unwrap_err();
        assert!(err.to_string().contains("a.png") && err.to_string().contains("all zeros"));
        let err = check_vector(&[1.0, f32::NAN], "v").unwrap_err().to_string();
        assert!(err.contains("position 1"), "{err}");
    }

    #[test]
    fn an_unreachable_server_gives_an_actionable_error_even_from_async_code() {
        // Port 1 on loopback: nothing listens there.
        let backend = ElasticBackend::new(ElasticConfig {
            url: "http://127.0.0.1:1".into(),
            ..ElasticConfig::default()
        })
        .unwrap();
        let err = backend.count().unwrap_err().to_string();
        assert!(
            err.contains("Elasticsearch is not reachable at http://127.0.0.1:1"),
            "{err}"
        );
        // The web server calls it from spawn_blocking inside its own runtime.
        let backend = Arc::new(backend);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = Arc::clone(&backend);
        let err = rt
            .block_on(async move { tokio::task::spawn_blocking(move || b.health()).await })
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not reachable"), "{err}");
        // Dropping the backend inside async code must not panic.
        rt.block_on(async move { drop(backend) });
    }
}
