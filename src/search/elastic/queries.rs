//! `_search` and `_count`: matching captions, listing by path, looking up indexed paths, and the
//! statistics per source.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::MAX_RESULT_WINDOW;
use super::client::Inner;
use crate::error::{Error, Result};
use crate::search::analysis::best_caption;
use crate::search::{DocKind, Hit, IndexStats, SourceCount};

impl Inner {
    async fn search(&self, what: &str, body: Value) -> Result<Value> {
        let reply = self.api_search(what, &body).await?;
        self.success(what, reply)
    }

    pub(super) async fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
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
                caption_score: Some(score),
                visual_score: None,
            })
            .collect())
    }

    pub(super) async fn list(&self, size: usize, offset: usize) -> Result<Vec<Hit>> {
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
                caption_score: None,
                visual_score: None,
            })
            .collect())
    }

    pub(super) async fn count(&self) -> Result<u64> {
        const WHAT: &str = "counting documents";
        let reply = self.api_count(WHAT).await?;
        let body = self.success(WHAT, reply)?;
        body["count"].as_u64().ok_or_else(|| {
            Error::Search(format!(
                "Elasticsearch at {} answered a count without a number: {body}",
                self.url(),
            ))
        })
    }

    pub(super) async fn indexed_paths(
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

    pub(super) async fn stats(&self) -> Result<IndexStats> {
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
        let size_bytes = match self.api_store_stats("reading index statistics").await {
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
