//! The client: one helper per REST call, each retried with backoff while the answer is 429 or
//! 5xx, and the error messages that name the cluster, the call and what would fix it.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::StatusCode;
use elasticsearch::http::response::Response;
use elasticsearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesGetMappingParts, IndicesPutMappingParts,
    IndicesRefreshParts, IndicesStatsParts,
};
use elasticsearch::{BulkParts, CountParts, Elasticsearch, SearchParts};
use serde_json::Value;

use super::ElasticConfig;
use crate::error::{Error, Result};
use crate::search::{VectorSpace, missing_index};

pub(super) struct Inner {
    pub(super) client: Elasticsearch,
    pub(super) config: ElasticConfig,
    /// Set once the index is known to exist with our mapping.
    pub(super) ready: AtomicBool,
    /// The index's vector space, once read from (or written to) its mapping's `_meta`.
    pub(super) space: Mutex<Option<VectorSpace>>,
}

/// A request on its way.
type EsFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = std::result::Result<Response, elasticsearch::Error>> + Send + 'a>,
>;

/// An HTTP answer: status and JSON body (`Null` when empty).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Inner {
    pub(super) fn url(&self) -> &str {
        &self.config.url
    }

    pub(super) fn index(&self) -> &str {
        &self.config.index
    }

    /// `URL, index NAME`.
    pub(super) fn location(&self) -> String {
        format!("{}, index {}", self.url(), self.index())
    }

    pub(super) fn describe(&self) -> String {
        format!("Elasticsearch index {} at {}", self.index(), self.url())
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
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
    pub(super) fn failure(&self, what: &str, reply: &Reply) -> Error {
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

    pub(super) fn conflict(&self, why: &str) -> Error {
        Error::Search(format!(
            "{} has a mapping that conflicts with capsearch's: {why}. Use another index \
             (--es-index, ES_INDEX) or drop this one (`capsearch index --drop --backend \
             elasticsearch`) and index again",
            self.describe()
        ))
    }

    /// The reply's body when its status is a success, else [`Inner::failure`].
    pub(super) fn success(&self, what: &str, reply: Reply) -> Result<Value> {
        if reply.status.is_success() {
            Ok(reply.body)
        } else {
            Err(self.failure(what, &reply))
        }
    }

    /// True for a success, false for a missing index, else [`Inner::failure`].
    pub(super) fn found(&self, what: &str, reply: &Reply) -> Result<bool> {
        if reply.status.is_success() {
            Ok(true)
        } else if is_index_not_found(reply) {
            Ok(false)
        } else {
            Err(self.failure(what, reply))
        }
    }

    // --- one helper per REST call, each through [`Inner::call`] --------------------------------

    /// `GET /<index>/_mapping`.
    pub(super) async fn api_get_mapping(&self, what: &str) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .indices()
                    .get_mapping(IndicesGetMappingParts::Index(&indices))
                    .send()
                    .await
            })
        })
        .await
    }

    /// `PUT /<index>` with `body` (settings and mappings).
    pub(super) async fn api_create_index(&self, what: &str, body: &Value) -> Result<Reply> {
        let index = self.index();
        self.call(what, || {
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
        .await
    }

    /// `PUT /<index>/_mapping` with `body` (new fields and `_meta`).
    pub(super) async fn api_put_mapping(&self, what: &str, body: &Value) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            let body = body.clone();
            Box::pin(async move {
                self.client
                    .indices()
                    .put_mapping(IndicesPutMappingParts::Index(&indices))
                    .body(body)
                    .send()
                    .await
            })
        })
        .await
    }

    /// `POST /<index>/_refresh`.
    pub(super) async fn api_refresh(&self, what: &str) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .indices()
                    .refresh(IndicesRefreshParts::Index(&indices))
                    .send()
                    .await
            })
        })
        .await
    }

    /// `POST /<index>/_bulk` with `lines` (NDJSON, one line per entry).
    pub(super) async fn api_bulk(&self, what: &str, lines: &[String]) -> Result<Reply> {
        let index = self.index();
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .bulk(BulkParts::Index(index))
                    .body(lines.to_vec())
                    .send()
                    .await
            })
        })
        .await
    }

    /// `POST /<index>/_search` with `body`.
    pub(super) async fn api_search(&self, what: &str, body: &Value) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            let body = body.clone();
            Box::pin(async move {
                self.client
                    .search(SearchParts::Index(&indices))
                    .body(body)
                    .send()
                    .await
            })
        })
        .await
    }

    /// `GET /<index>/_count`.
    pub(super) async fn api_count(&self, what: &str) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            Box::pin(async move { self.client.count(CountParts::Index(&indices)).send().await })
        })
        .await
    }

    /// `GET /<index>/_stats/store`.
    pub(super) async fn api_store_stats(&self, what: &str) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .indices()
                    .stats(IndicesStatsParts::IndexMetric(&indices, &["store"]))
                    .send()
                    .await
            })
        })
        .await
    }

    /// `GET /_cluster/health`.
    pub(super) async fn api_cluster_health(&self, what: &str) -> Result<Reply> {
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .cluster()
                    .health(ClusterHealthParts::None)
                    .send()
                    .await
            })
        })
        .await
    }

    /// `DELETE /<index>`.
    pub(super) async fn api_delete_index(&self, what: &str) -> Result<Reply> {
        let indices = [self.index()];
        self.call(what, || {
            Box::pin(async move {
                self.client
                    .indices()
                    .delete(IndicesDeleteParts::Index(&indices))
                    .send()
                    .await
            })
        })
        .await
    }
}

pub(super) fn error_type(body: &Value) -> Option<&str> {
    body.pointer("/error/type").and_then(Value::as_str)
}

pub(super) fn is_index_not_found(reply: &Reply) -> bool {
    reply.status == StatusCode::NOT_FOUND
        && (error_type(&reply.body) == Some("index_not_found_exception")
            // HEAD-like answers and some proxies give a bare 404.
            || reply.body.is_null()
            // get-mapping on a missing index can answer `{}`.
            || reply.body.as_object().is_some_and(|o| o.is_empty()))
}

/// A one-line description of an Elasticsearch error body: `type: reason (caused by ...)`.
pub(super) fn reason(body: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_are_summarised() {
        let body = json!({"error": {"type": "x_exception", "reason": "bad",
            "caused_by": {"type": "y", "reason": "worse"}}, "status": 400});
        assert_eq!(reason(&body), "x_exception: bad (caused by worse)");
        assert_eq!(reason(&Value::Null), "no details");
    }
}
