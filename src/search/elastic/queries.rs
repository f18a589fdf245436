//! `_search` and `_count`: matching captions, nearest image vectors (`knn`), listing by path,
//! looking up indexed paths, and the statistics per source.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::client::Inner;
use super::{MAX_KNN_CANDIDATES, MAX_RESULT_WINDOW, VECTOR_FIELD};
use crate::error::{Error, Result};
use crate::search::analysis::best_caption;
use crate::search::{DocKind, Hit, IndexStats, SourceCount, VectorStats, missing_index};

impl Inner {
    async fn search(&self, what: &str, body: Value) -> Result<Value> {
        let reply = self.api_search(what, &body).await?;
        self.success(what, reply)
    }

    pub(super) async fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        let body = json!({
            "query": {"match": {"caption": {"query": text}}},
            // Equal scores by path, so the order does not depend on shards and segments.
            "sort": [{"_score": "desc"}, {"path": "asc"}],
            "track_scores": true,
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

    /// The documents whose vectors are nearest to `vector`: a top-level `knn` search for the
    /// first `offset + size`, of which the page `offset..offset + size` is returned.
    pub(super) async fn nearest(
        &self,
        vector: &[f32],
        size: usize,
        offset: usize,
    ) -> Result<Vec<Hit>> {
        let Some(space) = self.vector_space().await? else {
            if !self.exists().await? {
                return Err(missing_index(&self.describe()));
            }
            return Err(Error::Search(format!(
                "{} holds no image vectors: index images with a model (`capsearch index \
                 --images DIR --model DIR`) to search by image",
                self.describe()
            )));
        };
        space.ensure_dims(vector, "the query vector")?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let k = offset.saturating_add(size);
        if k > MAX_KNN_CANDIDATES {
            return Err(Error::Search(format!(
                "Elasticsearch finds at most the {MAX_KNN_CANDIDATES} nearest vectors: offset \
                 {offset} + size {size} is beyond that"
            )));
        }
        let answer = self
            .search("a vector search", knn_body(vector, size, offset))
            .await?;
        Ok(source_hits(&answer)
            .map(|(source, captions, score)| {
                let similarity = cosine_from_score(score);
                Hit {
                    path: source["path"].as_str().unwrap_or_default().to_string(),
                    caption: captions.into_iter().next().unwrap_or_default(),
                    score: similarity,
                    caption_score: None,
                    visual_score: Some(similarity),
                }
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
        let vectors = match self.vector_space().await? {
            Some(space) => {
                let body = json!({
                    "size": 0,
                    "track_total_hits": true,
                    "query": {"exists": {"field": VECTOR_FIELD}}
                });
                // A server without `exists` (or total hits) leaves the count unknown.
                let count = match self.search("counting vectors", body).await {
                    Ok(answer) => answer.pointer("/hits/total/value").and_then(Value::as_u64),
                    Err(e) => {
                        tracing::debug!("cannot count the vectors: {e}");
                        None
                    }
                };
                Some(VectorStats {
                    count,
                    dims: space.dims,
                    embedder: space.embedder,
                    storage: "cosine, dense_vector with the server's default index_options \
                              (int8_hnsw in Elasticsearch 8.14+), approximate knn"
                        .into(),
                    size_bytes: None,
                    in_sync: None,
                    note: None,
                })
            }
            None => None,
        };
        Ok(IndexStats {
            backend: "elasticsearch".to_string(),
            location: self.location(),
            documents,
            sources,
            size_bytes,
            vectors,
        })
    }
}

/// The `_search` body of a vector search: `knn` for the first `offset + size` documents, with
/// twice as many candidates per shard (at least 100, at most [`MAX_KNN_CANDIDATES`]).
fn knn_body(vector: &[f32], size: usize, offset: usize) -> Value {
    let k = offset + size;
    let candidates = (2 * k).clamp(100, MAX_KNN_CANDIDATES).max(k);
    json!({
        "knn": {
            "field": VECTOR_FIELD,
            "query_vector": vector,
            "k": k,
            "num_candidates": candidates
        },
        "from": offset,
        "size": size,
        "_source": ["path", "caption"],
        "track_total_hits": false
    })
}

/// The cosine similarity behind a `knn` `_score`: for `similarity: cosine` Elasticsearch
/// reports (1 + cos) / 2, so that scores are positive.
fn cosine_from_score(score: f32) -> f32 {
    (2.0 * score - 1.0).clamp(-1.0, 1.0)
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
    fn knn_asks_for_the_page_end_with_spare_candidates() {
        let body = knn_body(&[1.0, 0.0], 10, 20);
        assert_eq!(body["knn"]["field"], VECTOR_FIELD);
        assert_eq!(body["knn"]["k"], 30);
        assert_eq!(body["knn"]["num_candidates"], 100);
        assert_eq!(body["from"], 20);
        assert_eq!(body["size"], 10);
        assert_eq!(body["knn"]["query_vector"], json!([1.0, 0.0]));
        assert_eq!(knn_body(&[1.0], 500, 0)["knn"]["num_candidates"], 1000);
        assert_eq!(
            knn_body(&[1.0], 9000, 0)["knn"]["num_candidates"],
            MAX_KNN_CANDIDATES
        );
    }

    #[test]
    fn cosine_scores_are_converted_back() {
        assert_eq!(cosine_from_score(1.0), 1.0);
        assert_eq!(cosine_from_score(0.5), 0.0);
        assert_eq!(cosine_from_score(0.0), -1.0);
        assert!((cosine_from_score(0.75) - 0.5).abs() < 1e-6);
    }
}
