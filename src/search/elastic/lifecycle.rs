//! The index's life: created on the first write with [`mapping`], an existing one's mapping
//! checked, refreshed after writes, dropped; and the cluster's health.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::client::{Inner, error_type, is_index_not_found};
use super::mapping;
use crate::error::Result;
use crate::search::Health;

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
        self.found(WHAT, &reply)
    }
}
