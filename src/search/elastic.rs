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
//! - Only documented Elasticsearch 8 REST APIs are used: index create/get-mapping/refresh/delete/
//!   stats, `_bulk`, `_search` (match, match_all sorted by path, bool, term, terms, terms aggregation), `_count` and
//!   `_cluster/health`.
//!
//! The client is async; [`ElasticBackend`] owns a one-thread tokio runtime, runs each call as a
//! task on it and waits for the answer, so the [`SearchBackend`] trait stays synchronous and the
//! backend can be called from any thread (from async code, call it in `spawn_blocking`: waiting
//! would otherwise block an executor thread).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{StatusCode, Url};
use elasticsearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesGetMappingParts, IndicesRefreshParts,
    IndicesStatsParts,
};
use elasticsearch::{BulkParts, CountParts, Elasticsearch, SearchParts};
use serde_json::{Value, json};

use super::analysis::best_caption;
use super::{
    DocKind, Document, Health, Hit, IndexStats, SearchBackend, SourceCount, doc_id, missing_index,
};
use crate::error::{Error, Result};

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

/// An Elasticsearch index. Cheap to construct: nothing is sent until the first call.
pub struct ElasticBackend {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    client: Elasticsearch,
    config: ElasticConfig,
    /// Set once the index is known to exist with our mapping.
    ready: AtomicBool,
}

/// A request on its way.
type EsFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = std::result::Result<Response, elasticsearch::Error>> + Send + 'a>,
>;

/// An HTTP answer: status and JSON body (`Null` when empty).
struct Reply {
    status: StatusCode,
    body: Value,
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

impl Inner {
    fn url(&self) -> &str {
        &self.config.url
    }

    fn index(&self) -> &str {
        &self.config.index
    }

    /// `URL, index NAME`.
    fn location(&self) -> String {
        format!("{}, index {}", self.url(), self.index())
    }

    fn describe(&self) -> String {
        format!("Elasticsearch index {} at {}", self.index(), self.url())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        self.config
            .initial_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(10))
    }

    /// Sends a request built by `send`, retrying with backoff while the answer is 429 or 5xx.
    async fn call<'a, F>(&self, what: &str, send: F) -> Result<Reply>
    where
        F: Fn() -> EsFuture<'a>,
    {
        let mut attempt = 0;
        loop {
            let response = send().await.map_err(|e| self.transport_error(what, &e))?;
            let status = response.status_code();
            let text = response
                .text()
                .await
                .map_err(|e| self.transport_error(what, &e))?;
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < self.config.max_retries {
                let wait = self.backoff(attempt);
                tracing::warn!(
                    "Elasticsearch at {} answered {status} to {what}; retrying in {wait:?}",
                    self.url()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(Error::Search(format!(
                    "Elasticsearch at {} refused {what} ({status}: {}): check ES_USERNAME and \
                     ES_PASSWORD, or ES_API_KEY",
                    self.url(),
                    reason(&body)
                )));
            }
            if retryable {
                return Err(Error::Search(format!(
                    "Elasticsearch at {} answered {status} to {what} after {} retries: {}",
                    self.url(),
                    self.config.max_retries,
                    reason(&body)
                )));
            }
            return Ok(Reply { status, body });
        }
    }

    fn transport_error(&self, what: &str, e: &elasticsearch::Error) -> Error {
        // The chain of causes, without the repeats (the client's error repeats reqwest's).
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if !cause.contains(&text) {
                cause = format!("{cause}: {text}");
            }
            source = s.source();
        }
        if e.is_timeout() {
            Error::Search(format!(
                "Elasticsearch at {} did not answer {what} within {:?}: {cause}",
                self.url(),
                self.config.timeout
            ))
        } else {
            Error::Search(format!(
                "Elasticsearch is not reachable at {} ({what}: {cause}); is it running, and is \
                 the URL right (--es-url, ES_URL)?",
                self.url()
            ))
        }
    }

    /// The error for an unexpected answer; a missing index gets the "run `capsearch index`" one.
    fn failure(&self, what: &str, reply: &Reply) -> Error {
        if is_index_not_found(reply) {
            return missing_index(&self.describe());
        }
        Error::Search(format!(
            "Elasticsearch at {} failed {what} ({}): {}",
            self.url(),
            reply.status,
            reason(&reply.body)
        ))
    }

    fn conflict(&self, why: &str) -> Error {
        Error::Search(format!(
            "{} has a mapping that conflicts with capsearch's: {why}. Use another index \
             (--es-index, ES_INDEX) or drop this one (`capsearch index --drop --backend \
             elasticsearch`) and index again",
            self.describe()
        ))
    }

    /// Makes sure the index exists with our mapping, creating it if needed.
    async fn ensure_index(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let index = self.index();
        let indices = [index];
        let reply = self
            .call("reading the index mapping", || {
                Box::pin(async move {
                    self.client
                        .indices()
                        .get_mapping(IndicesGetMappingParts::Index(&indices))
                        .send()
                        .await
                })
            })
            .await?;
        if reply.status.is_success() {
            self.check_mapping(&reply.body)?;
        } else if is_index_not_found(&reply) {
            let body = json!({"mappings": mapping()});
            let created = self
                .call("creating the index", || {
                    let body = body.clone();
                    Box::pin(async move {
                        self.client
                            .indices()
                            .create(IndicesCreateParts::Index(index))
                            .body(body)
                            .send()
                            .await
                    })
                })
                .await?;
            if !created.status.is_success() {
                if error_type(&created.body) == Some("resource_already_exists_exception") {
                    // Created meanwhile by someone else: check theirs.
                    self.ready.store(false, Ordering::Release);
                    return Box::pin(self.ensure_index()).await;
                }
                return Err(self.failure("creating the index", &created));
            }
            tracing::info!("created {}", self.describe());
        } else {
            return Err(self.failure("reading the index mapping", &reply));
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    fn check_mapping(&self, body: &Value) -> Result<()> {
        // `{ "<index>": { "mappings": { "properties": {...} } } }` (the key is the concrete index
        // name, which differs from ours when ours is an alias).
        let properties = body
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.pointer("/mappings/properties"))
            .cloned()
            .unwrap_or(Value::Null);
        let expected = mapping();
        let Some(wanted) = expected["properties"].as_object() else {
            return Ok(());
        };
        for (field, spec) in wanted {
            let found = &properties[field.as_str()];
            if found.is_null() {
                return Err(self.conflict(&format!("it has no field `{field}`")));
            }
            if found["type"] != spec["type"] {
                return Err(self.conflict(&format!(
                    "field `{field}` is {}, capsearch needs {}",
                    found["type"], spec["type"]
                )));
            }
            if let Some(analyzer) = spec.get("analyzer")
                && found.get("analyzer") != Some(analyzer)
            {
                return Err(self.conflict(&format!(
                    "field `{field}` is analysed with {}, capsearch needs {analyzer}",
                    found
                        .get("analyzer")
                        .unwrap_or(&json!("the standard analyzer"))
                )));
            }
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<()> {
        let index = self.index();
        let indices = [index];
        let reply = self
            .call("refreshing the index", || {
                Box::pin(async move {
                    self.client
                        .indices()
                        .refresh(IndicesRefreshParts::Index(&indices))
                        .send()
                        .await
                })
            })
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(self.failure("refreshing the index", &reply))
        }
    }

    /// Sends one `_bulk` request; returns its items (one per action line pair).
    async fn bulk(&self, lines: &[String]) -> Result<Vec<Value>> {
        let index = self.index();
        let reply = self
            .call("a bulk request", || {
                Box::pin(async move {
                    self.client
                        .bulk(BulkParts::Index(index))
                        .body(lines.to_vec())
                        .send()
                        .await
                })
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.failure("a bulk request", &reply));
        }
        match reply.body.get("items").and_then(Value::as_array) {
            Some(items) => Ok(items.clone()),
            None => Err(Error::Search(format!(
                "Elasticsearch at {} answered a bulk request without items: {}",
                self.url(),
                reply.body
            ))),
        }
    }

    async fn index_docs(&self, docs: &[Document]) -> Result<usize> {
        self.ensure_index().await?;
        for batch in batches(docs, self.config.batch_docs, self.config.batch_bytes) {
            let mut pending: Vec<&(String, String, &Document)> = batch.iter().collect();
            let mut attempt = 0;
            loop {
                let lines: Vec<String> = pending
                    .iter()
                    .flat_map(|(action, source, _)| [action.clone(), source.clone()])
                    .collect();
                let items = self.bulk(&lines).await?;
                if items.len() != pending.len() {
                    return Err(Error::Search(format!(
                        "Elasticsearch at {} answered {} bulk items for {} documents",
                        self.url(),
                        items.len(),
                        pending.len()
                    )));
                }
                let mut rejected = Vec::new();
                let mut failures = Vec::new();
                for (item, entry) in items.iter().zip(&pending) {
                    let result = &item["index"];
                    if result.get("error").is_none() {
                        continue;
                    }
                    if result["status"].as_u64() == Some(429) {
                        rejected.push(*entry);
                    } else {
                        failures.push((entry.2.path.clone(), result["error"].clone()));
                    }
                }
                if !failures.is_empty() {
                    return Err(self.bulk_failure(&failures, pending.len()));
                }
                if rejected.is_empty() {
                    break;
                }
                if attempt >= self.config.max_retries {
                    return Err(Error::Search(format!(
                        "Elasticsearch at {} kept rejecting {} documents with 429 Too Many \
                         Requests after {attempt} retries; try again later or with a smaller \
                         batch",
                        self.url(),
                        rejected.len()
                    )));
                }
                let wait = self.backoff(attempt);
                tracing::warn!(
                    "Elasticsearch rejected {} documents (429); retrying them in {wait:?}",
                    rejected.len()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                pending = rejected;
            }
        }
        self.refresh().await?;
        Ok(docs.len())
    }

    fn bulk_failure(&self, failures: &[(String, Value)], of: usize) -> Error {
        let (path, error) = &failures[0];
        let ty = error["type"].as_str().unwrap_or("error");
        let why = reason(&json!({ "error": error }));
        let mapping_error = matches!(
            ty,
            "strict_dynamic_mapping_exception"
                | "mapper_parsing_exception"
                | "document_parsing_exception"
                | "illegal_argument_exception"
        );
        if mapping_error {
            self.conflict(&format!(
                "{} of {of} documents were refused, the first ({path:?}) with {why}",
                failures.len()
            ))
        } else {
            Error::Search(format!(
                "Elasticsearch at {} refused {} of {of} documents; the first ({path:?}): {why}",
                self.url(),
                failures.len()
            ))
        }
    }

    async fn exists(&self) -> Result<bool> {
        let index = self.index();
        let indices = [index];
        let reply = self
            .call("checking the index", || {
                Box::pin(async move {
                    self.client
                        .indices()
                        .get_mapping(IndicesGetMappingParts::Index(&indices))
                        .send()
                        .await
                })
            })
            .await?;
        if reply.status.is_success() {
            Ok(true)
        } else if is_index_not_found(&reply) {
            Ok(false)
        } else {
            Err(self.failure("checking the index", &reply))
        }
    }

    async fn delete_docs(&self, paths: &[String]) -> Result<usize> {
        if paths.is_empty() || !self.exists().await? {
            return Ok(0);
        }
        let unique: HashSet<&String> = paths.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        let mut deleted = 0;
        for chunk in unique.chunks(self.config.batch_docs.max(1)) {
            let lines: Vec<String> = chunk
                .iter()
                .map(|p| json!({"delete": {"_id": doc_id(p)}}).to_string())
                .collect();
            let items = self.bulk(&lines).await?;
            for (item, path) in items.iter().zip(chunk) {
                let result = &item["delete"];
                match result["result"].as_str() {
                    Some("deleted") => deleted += 1,
                    Some("not_found") => {}
                    _ => {
                        return Err(Error::Search(format!(
                            "Elasticsearch at {} could not delete {path:?}: {}",
                            self.url(),
                            reason(&json!({"error": result["error"].clone()}))
                        )));
                    }
                }
            }
        }
        self.refresh().await?;
        Ok(deleted)
    }

    async fn search(&self, what: &str, body: Value) -> Result<Value> {
        let index = self.index();
        let indices = [index];
        let reply = self
            .call(what, || {
                let body = body.clone();
                Box::pin(async move {
                    self.client
                        .search(SearchParts::Index(&indices))
                        .body(body)
                        .send()
                        .await
                })
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.failure(what, &reply));
        }
        Ok(reply.body)
    }

    async fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        let body = json!({
            "query": {"match": {"caption": {"query": text}}},
            "from": offset,
            "size": size,
            "_source": ["path", "caption"],
            "track_total_hits": false
        });
        let answer = self.search("a search", body).await?;
        Ok(source_hits(&answer)
            .map(|(source, captions, score)| Hit {
                path: source["path"].as_str().unwrap_or_default().to_string(),
                caption: best_caption(text, &captions),
                score,
            })
            .collect())
    }

    async fn list(&self, size: usize, offset: usize) -> Result<Vec<Hit>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        if offset.saturating_add(size) > MAX_RESULT_WINDOW {
            return Err(Error::Search(format!(
                "Elasticsearch pages through at most the first {MAX_RESULT_WINDOW} documents \
                 (its index.max_result_window): offset {offset} + size {size} is beyond that"
            )));
        }
        let body = json!({
            "query": {"match_all": {}},
            "sort": [{"path": "asc"}],
            "from": offset,
            "size": size,
            "_source": ["path", "caption"],
            "track_total_hits": false
        });
        let answer = self.search("listing documents", body).await?;
        Ok(source_hits(&answer)
            .map(|(source, captions, _)| Hit {
                path: source["path"].as_str().unwrap_or_default().to_string(),
                caption: captions.into_iter().next().unwrap_or_default(),
                score: 0.0,
            })
            .collect())
    }

    async fn count(&self) -> Result<u64> {
        let index = self.index();
        let indices = [index];
        let reply = self
            .call("counting documents", || {
                Box::pin(async move { self.client.count(CountParts::Index(&indices)).send().await })
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.failure("counting documents", &reply));
        }
        reply.body["count"].as_u64().ok_or_else(|| {
            Error::Search(format!(
                "Elasticsearch at {} answered a count without a number: {}",
                self.url(),
                reply.body
            ))
        })
    }

    async fn indexed_paths(
        &self,
        paths: &[String],
        kind: DocKind,
        source: &str,
    ) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        if paths.is_empty() || !self.exists().await? {
            return Ok(found);
        }
        for chunk in paths.chunks(1000) {
            let body = json!({
                "size": chunk.len(),
                "_source": ["path"],
                "query": {"bool": {"filter": [
                    {"term": {kind.as_str(): source}},
                    {"terms": {"path": chunk}}
                ]}}
            });
            let answer = self.search("looking up indexed paths", body).await?;
            for hit in answer
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(path) = hit.pointer("/_source/path").and_then(Value::as_str) {
                    found.insert(path.to_string());
                }
            }
        }
        Ok(found)
    }

    async fn stats(&self) -> Result<IndexStats> {
        let documents = self.count().await?;
        let body = json!({
            "size": 0,
            "track_total_hits": false,
            "aggs": {
                "dataset": {"terms": {"field": "dataset", "size": 10000}},
                "model": {"terms": {"field": "model", "size": 10000}}
            }
        });
        let answer = self.search("counting documents per source", body).await?;
        let mut sources = Vec::new();
        for kind in [DocKind::Dataset, DocKind::Model] {
            let path = format!("/aggregations/{}/buckets", kind.as_str());
            let mut names: Vec<SourceCount> = answer
                .pointer(&path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    Some(SourceCount {
                        kind,
                        source: b["key"].as_str()?.to_string(),
                        documents: b["doc_count"].as_u64()?,
                    })
                })
                .collect();
            names.sort_by(|a, b| a.source.cmp(&b.source));
            sources.extend(names);
        }
        let index = self.index();
        let indices = [index];
        let size_bytes = match self
            .call("reading index statistics", || {
                Box::pin(async move {
                    self.client
                        .indices()
                        .stats(IndicesStatsParts::IndexMetric(&indices, &["store"]))
                        .send()
                        .await
                })
            })
            .await
        {
            Ok(reply) if reply.status.is_success() => reply
                .body
                .pointer("/_all/total/store/size_in_bytes")
                .and_then(Value::as_u64),
            _ => None,
        };
        Ok(IndexStats {
            backend: "elasticsearch".to_string(),
            location: self.location(),
            documents,
            sources,
            size_bytes,
        })
    }

    async fn health(&self) -> Result<Health> {
        let reply = self
            .call("a health check", || {
                Box::pin(async move {
                    self.client
                        .cluster()
                        .health(ClusterHealthParts::None)
                        .send()
                        .await
                })
            })
            .await?;
        if !reply.status.is_success() {
            return Err(self.failure("a health check", &reply));
        }
        let status = reply.body["status"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        Ok(Health {
            backend: "elasticsearch".to_string(),
            location: self.location(),
            status,
            index_exists: self.exists().await?,
        })
    }

    async fn drop_index(&self) -> Result<bool> {
        let index = self.index();
        let indices = [index];
        let reply = self
            .call("deleting the index", || {
                Box::pin(async move {
                    self.client
                        .indices()
                        .delete(IndicesDeleteParts::Index(&indices))
                        .send()
                        .await
                })
            })
            .await?;
        self.ready.store(false, Ordering::Release);
        if reply.status.is_success() {
            Ok(true)
        } else if is_index_not_found(&reply) {
            Ok(false)
        } else {
            Err(self.failure("deleting the index", &reply))
        }
    }
}

/// Splits documents into `_bulk` batches of at most `max_docs` documents and about `max_bytes`
/// bytes, each as (action line, source line, document).
fn batches(
    docs: &[Document],
    max_docs: usize,
    max_bytes: usize,
) -> Vec<Vec<(String, String, &Document)>> {
    let mut out = Vec::new();
    let mut batch: Vec<(String, String, &Document)> = Vec::new();
    let mut bytes = 0;
    for doc in docs {
        let action = json!({"index": {"_id": doc_id(&doc.path)}}).to_string();
        let captions: Vec<&String> = doc
            .captions
            .iter()
            .filter(|c| !c.trim().is_empty())
            .collect();
        let source = json!({
            "path": doc.path,
            "caption": captions,
            "kind": doc.kind.as_str(),
            doc.kind.as_str(): doc.source,
            "timestamp": doc.timestamp,
        })
        .to_string();
        let size = action.len() + source.len() + 2;
        if !batch.is_empty() && (batch.len() >= max_docs.max(1) || bytes + size > max_bytes) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push((action, source, doc));
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

fn error_type(body: &Value) -> Option<&str> {
    body.pointer("/error/type").and_then(Value::as_str)
}

fn is_index_not_found(reply: &Reply) -> bool {
    reply.status == StatusCode::NOT_FOUND
        && (error_type(&reply.body) == Some("index_not_found_exception")
            // HEAD-like answers and some proxies give a bare 404.
            || reply.body.is_null()
            // get-mapping on a missing index can answer `{}`.
            || reply.body.as_object().is_some_and(|o| o.is_empty()))
}

/// A one-line description of an Elasticsearch error body: `type: reason (caused by ...)`.
fn reason(body: &Value) -> String {
    let error = &body["error"];
    match error {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let mut text = format!(
                "{}: {}",
                error["type"].as_str().unwrap_or("error"),
                error["reason"].as_str().unwrap_or("no reason given")
            );
            if let Some(cause) = error.get("caused_by")
                && let Some(r) = cause["reason"].as_str()
            {
                text.push_str(&format!(" (caused by {r})"));
            }
            text
        }
        _ if body.is_null() => "no details".to_string(),
        _ => body.to_string(),
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
}

/// The hits of a `_search` answer: each one's `_source`, its captions (one or many) and `_score`.
fn source_hits(answer: &Value) -> impl Iterator<Item = (&Value, Vec<String>, f32)> {
    answer
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .map(|hits| hits.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let source = &h["_source"];
            let captions = match &source["caption"] {
                Value::Array(values) => values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            };
            (source, captions, h["_score"].as_f64().unwrap_or(0.0) as f32)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_by_count_and_bytes() {
        let docs: Vec<Document> = (0..10)
            .map(|i| Document::from_model(format!("{i}.jpg"), "a dog", "m"))
            .collect();
        let b = batches(&docs, 4, usize::MAX);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let one = b[0][0].0.len() + b[0][0].1.len() + 2;
        let b = batches(&docs, 100, one * 3);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let source: Value = serde_json::from_str(&b[0][0].1).unwrap();
        assert_eq!(source["model"], "m");
        assert_eq!(source["kind"], "model");
        assert_eq!(source["caption"], json!(["a dog"]));
        let action: Value = serde_json::from_str(&b[0][0].0).unwrap();
        assert_eq!(action["index"]["_id"], doc_id("0.jpg"));
    }

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

    #[test]
    fn error_bodies_are_summarised() {
        let body = json!({"error": {"type": "x_exception", "reason": "bad",
            "caused_by": {"type": "y", "reason": "worse"}}, "status": 400});
        assert_eq!(reason(&body), "x_exception: bad (caused by worse)");
        assert_eq!(reason(&Value::Null), "no details");
    }
}
