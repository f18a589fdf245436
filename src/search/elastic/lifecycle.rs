//! The index's life: created on the first write with [`mapping`], an existing one's mapping
//! checked, given its image vectors ([`vector_mapping`]) when their space is first declared,
//! refreshed after writes, dropped; and the cluster's health.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::client::{Inner, error_type, is_index_not_found};
use super::{VECTOR_FIELD, mapping, vector_mapping};
use crate::error::Result;
use crate::search::{Health, VectorSpace};

impl Inner {
    /// Makes sure the index exists with our mapping, creating it if needed.
    pub(super) async fn ensure_index(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let reply = self.api_get_mapping("reading the index mapping").await?;
        if reply.status.is_success() {
            self.check_mapping(&reply.body)?;
        } else if is_index_not_found(&reply) {
            let body = json!({"mappings": mapping()});
            let created = self.api_create_index("creating the index", &body).await?;
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
        let properties = mappings(body)
            .and_then(|m| m.get("properties"))
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
        self.space_in_mapping(body)?;
        Ok(())
    }

    /// The vector space a get-mapping answer records, checked against its `embedding` field:
    /// both or neither, of the same length, a cosine `dense_vector`.
    fn space_in_mapping(&self, body: &Value) -> Result<Option<VectorSpace>> {
        let mappings = mappings(body).cloned().unwrap_or(Value::Null);
        let field = &mappings["properties"][VECTOR_FIELD];
        let meta = &mappings["_meta"]["vector_space"];
        if field.is_null() && meta.is_null() {
            return Ok(None);
        }
        if field.is_null() {
            return Err(self.conflict(&format!(
                "its _meta names a vector space ({meta}) but it has no `{VECTOR_FIELD}` field"
            )));
        }
        if field["type"] != "dense_vector" || field["similarity"] != "cosine" {
            return Err(self.conflict(&format!(
                "field `{VECTOR_FIELD}` is {} with similarity {}, capsearch needs a \
                 \"dense_vector\" with \"cosine\"",
                field["type"], field["similarity"]
            )));
        }
        let space: VectorSpace = serde_json::from_value(meta.clone()).map_err(|e| {
            self.conflict(&format!(
                "field `{VECTOR_FIELD}` exists but its _meta.vector_space ({meta}) is not \
                 {{\"dims\": N, \"embedder\": \"...\"}}: {e}"
            ))
        })?;
        if field["dims"].as_u64() != Some(space.dims as u64) {
            return Err(self.conflict(&format!(
                "field `{VECTOR_FIELD}` has {} dimensions but its _meta.vector_space says {}",
                field["dims"], space.dims
            )));
        }
        Ok(Some(space))
    }

    /// The index's vector space (from its mapping's `_meta`), or `None` when it holds no vectors
    /// or does not exist. Cached once found.
    pub(super) async fn vector_space(&self) -> Result<Option<VectorSpace>> {
        if let Some(space) = self.cached_space() {
            return Ok(Some(space));
        }
        const WHAT: &str = "reading the index mapping";
        let reply = self.api_get_mapping(WHAT).await?;
        if !self.found(WHAT, &reply)? {
            return Ok(None);
        }
        let space = self.space_in_mapping(&reply.body)?;
        self.cache_space(space.clone());
        Ok(space)
    }

    /// Records `space` as the index's vector space, creating the index if needed and adding the
    /// `embedding` field to its mapping if it has none yet; fails when it holds another space.
    pub(super) async fn declare_vector_space(&self, space: &VectorSpace) -> Result<()> {
        if space.dims == 0 {
            return Err(crate::Error::Search(format!(
                "the vector space {:?} has 0 dimensions",
                space.embedder
            )));
        }
        self.ensure_index().await?;
        if let Some(existing) = self.vector_space().await? {
            return existing.ensure_same(space, &self.describe());
        }
        const WHAT: &str = "adding the image vector field to the mapping";
        let reply = self.api_put_mapping(WHAT, &vector_mapping(space)).await?;
        if !reply.status.is_success() {
            // Another machine may have added its field meanwhile: then compare with theirs.
            self.cache_space(None);
            if let Some(existing) = self.vector_space().await? {
                return existing.ensure_same(space, &self.describe());
            }
            return Err(self.failure(WHAT, &reply));
        }
        tracing::info!(
            "{} now holds image vectors of {} ({} values)",
            self.describe(),
            space.embedder,
            space.dims
        );
        self.cache_space(Some(space.clone()));
        Ok(())
    }

    fn cached_space(&self) -> Option<VectorSpace> {
        self.space.lock().ok().and_then(|s| s.clone())
    }

    fn cache_space(&self, space: Option<VectorSpace>) {
        if let Ok(mut cached) = self.space.lock() {
            *cached = space;
        }
    }

    /// Makes writes visible to searches.
    pub(super) async fn refresh(&self) -> Result<()> {
        const WHAT: &str = "refreshing the index";
        let reply = self.api_refresh(WHAT).await?;
        self.success(WHAT, reply).map(drop)
    }

    /// Whether the index exists.
    pub(super) async fn exists(&self) -> Result<bool> {
        const WHAT: &str = "checking the index";
        let reply = self.api_get_mapping(WHAT).await?;
        self.found(WHAT, &reply)
    }

    pub(super) async fn health(&self) -> Result<Health> {
        const WHAT: &str = "a health check";
        let reply = self.api_cluster_health(WHAT).await?;
        let body = self.success(WHAT, reply)?;
        let status = body["status"].as_str().unwrap_or("unknown").to_string();
        Ok(Health {
            backend: "elasticsearch".to_string(),
            location: self.location(),
            status,
            index_exists: self.exists().await?,
        })
    }

    pub(super) async fn drop_index(&self) -> Result<bool> {
        const WHAT: &str = "deleting the index";
        let reply = self.api_delete_index(WHAT).await?;
        self.ready.store(false, Ordering::Release);
        self.cache_space(None);
        self.found(WHAT, &reply)
    }
}

/// The `mappings` object of a get-mapping answer: `{ "<index>": { "mappings": {...} } }` (the key
/// is the concrete index name, which differs from ours when ours is an alias).
fn mappings(body: &Value) -> Option<&Value> {
    body.as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.get("mappings"))
}
