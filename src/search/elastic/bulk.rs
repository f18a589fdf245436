//! Writing and deleting documents with `_bulk`, in batches by count and bytes, each with its
//! image vector when it has one; items rejected with 429 are sent again.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::client::{Inner, reason};
use super::{VECTOR_FIELD, check_vector};
use crate::error::{Error, Result};
use crate::search::{Document, doc_id};

impl Inner {
    /// Sends one `_bulk` request; returns its items (one per action line pair).
    async fn bulk(&self, lines: &[String]) -> Result<Vec<Value>> {
        const WHAT: &str = "a bulk request";
        let reply = self.api_bulk(WHAT, lines).await?;
        let body = self.success(WHAT, reply)?;
        match body.get("items").and_then(Value::as_array) {
            Some(items) => Ok(items.clone()),
            None => Err(Error::Search(format!(
                "Elasticsearch at {} answered a bulk request without items: {body}",
                self.url(),
            ))),
        }
    }

    pub(super) async fn index_docs(&self, docs: &[Document]) -> Result<usize> {
        self.ensure_index().await?;
        self.check_embeddings(docs).await?;
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

    /// Checks the documents' embeddings before anything is sent: the index must hold a vector
    /// space (declared with `set_vector_space`) and each vector must fit it.
    async fn check_embeddings(&self, docs: &[Document]) -> Result<()> {
        let Some(first) = docs.iter().find(|d| d.embedding.is_some()) else {
            return Ok(());
        };
        let Some(space) = self.vector_space().await? else {
            return Err(Error::Search(format!(
                "{} holds no image vectors, so the embedding of {:?} has nowhere to go: declare \
                 the vectors' space first (SearchBackend::set_vector_space)",
                self.describe(),
                first.path
            )));
        };
        for doc in docs {
            if let Some(vector) = &doc.embedding {
                let what = format!("the embedding of {:?}", doc.path);
                space.ensure_dims(vector, &what)?;
                check_vector(vector, &what)?;
            }
        }
        Ok(())
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

    pub(super) async fn delete_docs(&self, paths: &[String]) -> Result<usize> {
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
        let mut source = json!({
            "path": doc.path,
            "caption": captions,
            "kind": doc.kind.as_str(),
            doc.kind.as_str(): doc.source,
            "timestamp": doc.timestamp,
        });
        if let Some(vector) = &doc.embedding {
            source[VECTOR_FIELD] = json!(vector);
        }
        let source = source.to_string();
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
        assert!(source.get(VECTOR_FIELD).is_none(), "no embedding, no field");
        let action: Value = serde_json::from_str(&b[0][0].0).unwrap();
        assert_eq!(action["index"]["_id"], doc_id("0.jpg"));
        let mut with = Document::from_model("v.jpg", "a dog", "m");
        with.embedding = Some(vec![0.5, -0.25]);
        let b = batches(std::slice::from_ref(&with), 10, usize::MAX);
        let source: Value = serde_json::from_str(&b[0][0].1).unwrap();
        assert_eq!(source[VECTOR_FIELD], json!([0.5, -0.25]));
    }
}
