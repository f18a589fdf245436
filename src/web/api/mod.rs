//! The JSON API handlers. Every error is `{"error", "detail"}` with a fitting status.

use std::path::Path;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use image::ImageFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::image_files::extension;
use crate::search::Hit;
use crate::search::fusion::{ImageSearch, SearchMode, search_generated};
use crate::search::indexer::CaptionIndexer;
use crate::web::{AppState, image_url};

mod error;
mod files;
mod request;

pub use error::{ApiError, ApiResult};
pub use files::{image_file, not_found, report_file, run_file};
pub use request::{DEFAULT_PAGE, MAX_PAGE, Page, Upload};
use request::{prepare_blocking, read_images};

/// What `/api/caption` answers.
#[derive(Serialize)]
pub struct CaptionResponse {
    pub caption: String,
    pub logprob: f64,
    pub model: String,
}

/// `POST /api/caption`
pub async fn caption(
    State(state): State<AppState>,
    req: Request,
) -> ApiResult<Json<CaptionResponse>> {
    let (mut uploads, _) = read_images(req, &state, false).await?;
    let upload = uploads.remove(0);
    let (_, pixels, _) = prepare_blocking(upload, state.captioner.info.clone()).await?;
    let generated = state.captioner.caption(pixels).await?;
    Ok(Json(CaptionResponse {
        caption: generated.caption,
        logprob: generated.logprob,
        model: state.captioner.info.id.clone(),
    }))
}

/// One search result as the API shows it.
#[derive(Serialize)]
pub struct Result_ {
    pub path: String,
    pub caption: String,
    pub score: f32,
    /// The caption (BM25) score, when caption search found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_score: Option<f32>,
    /// The cosine similarity of its embedding to the query image's, when visual search found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visual_score: Option<f32>,
    /// Where the server serves the image, when it can.
    pub url: Option<String>,
}

impl Result_ {
    fn of(state: &AppState, h: Hit) -> Self {
        Result_ {
            url: image_url(&state.image_root, &h.path),
            path: h.path,
            caption: h.caption,
            score: h.score,
            caption_score: h.caption_score,
            visual_score: h.visual_score,
        }
    }
}

/// What `/api/search` and `/api/query` answer.
#[derive(Serialize)]
pub struct SearchResponse {
    pub caption: String,
    /// The mode an image search ran in (`/api/search` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<SearchMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub size: usize,
    pub offset: usize,
    pub results: Vec<Result_>,
}

/// Runs a text search off the async threads. A missing index (nothing indexed yet) has no
/// results; any other backend failure is a 503.
pub async fn run_query(
    state: &AppState,
    text: String,
    size: usize,
    offset: usize,
) -> ApiResult<Vec<Result_>> {
    let backend = state.backend.clone();
    let hits: Vec<Hit> =
        tokio::task::spawn_blocking(move || match backend.query(&text, size, offset) {
            Ok(hits) => Ok(hits),
            Err(e) => match backend.health() {
                Ok(h) if !h.index_exists => Ok(Vec::new()),
                _ => Err(ApiError::search_down(e)),
            },
        })
        .await
        .map_err(|e| ApiError::internal(format!("search task failed: {e}")))??;
    Ok(hits.into_iter().map(|h| Result_::of(state, h)).collect())
}

/// `POST /api/search`: caption and embed the image, then search in the asked mode (caption,
/// visual or hybrid; by default hybrid when the index holds vectors). A mode the index cannot
/// serve (no vectors, or vectors of another model) is a 400.
pub async fn search(
    State(state): State<AppState>,
    query: Result<Query<Page>, QueryRejection>,
    req: Request,
) -> ApiResult<Json<SearchResponse>> {
    let query_page = query.map_err(|e| ApiError::bad_request(e.body_text()))?.0;
    let (mut uploads, body_page) = read_images(req, &state, false).await?;
    let page = Page {
        size: body_page.size.or(query_page.size),
        offset: body_page.offset.or(query_page.offset),
        mode: body_page.mode.or(query_page.mode),
    };
    let (size, offset) = page.checked()?;
    let mode = page.mode()?;
    let upload = uploads.remove(0);
    let (_, pixels, _) = prepare_blocking(upload, state.captioner.info.clone()).await?;
    let generated = state.captioner.caption(pixels).await?;
    let backend = state.backend.clone();
    let space = state.captioner.info.space.clone();
    let request = ImageSearch {
        mode,
        size,
        offset,
        weights: state.fusion,
    };
    let query_image = generated.clone();
    let found = tokio::task::spawn_blocking(move || {
        match search_generated(backend.as_ref(), &query_image, &space, &request) {
            Ok(found) => Ok(Some(found)),
            Err(e) => match backend.health() {
                Ok(h) if !h.index_exists => Ok(None),
                Ok(_) if matches!(e, crate::error::Error::Option { .. }) => {
                    Err(ApiError::bad_request(e.to_string()))
                }
                _ => Err(ApiError::search_down(e)),
            },
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("search task failed: {e}")))??;
    let (mode, results) = match found {
        Some(found) => (
            found.mode,
            found
                .hits
                .into_iter()
                .map(|h| Result_::of(&state, h))
                .collect(),
        ),
        None => (mode.unwrap_or(SearchMode::Caption), Vec::new()),
    };
    Ok(Json(SearchResponse {
        mode: Some(mode),
        caption: generated.caption,
        logprob: Some(generated.logprob),
        model: Some(state.captioner.info.id.clone()),
        size,
        offset,
        results,
    }))
}

/// The query string of `/api/query`.
#[derive(Deserialize)]
pub struct TextQuery {
    pub q: Option<String>,
    pub size: Option<usize>,
    pub offset: Option<usize>,
}

/// `GET /api/query?q=...`
pub async fn query(
    State(state): State<AppState>,
    query: Result<Query<TextQuery>, QueryRejection>,
) -> ApiResult<Json<SearchResponse>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let text = q.q.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the query is empty: pass some words as q, e.g. /api/query?q=red+square",
        ));
    }
    if text.len() > 1000 {
        return Err(ApiError::bad_request("the query is longer than 1000 bytes"));
    }
    let (size, offset) = Page {
        size: q.size,
        offset: q.offset,
        mode: None,
    }
    .checked()?;
    let results = run_query(&state, text.clone(), size, offset).await?;
    Ok(Json(SearchResponse {
        mode: None,
        caption: text,
        logprob: None,
        model: None,
        size,
        offset,
        results,
    }))
}

/// One image added by `/api/images`.
#[derive(Serialize)]
pub struct Added {
    /// The name the client sent (for matching answers to files; never used on disk).
    pub name: String,
    /// Where it is stored, relative to the image root (also its path in the index).
    pub path: String,
    pub url: Option<String>,
    pub caption: String,
    pub logprob: f64,
}

#[derive(Serialize)]
pub struct AddedResponse {
    pub model: String,
    pub added: Vec<Added>,
}

/// `POST /api/images`: caption each file, store it in the upload folder under a name derived from
/// its content ([`store_upload`]), index it.
/// Every file is checked before anything is stored, so a bad file fails the request as a whole.
pub async fn add_images(
    State(state): State<AppState>,
    req: Request,
) -> ApiResult<Json<AddedResponse>> {
    let (uploads, _) = read_images(req, &state, true).await?;
    let info = state.captioner.info.clone();
    let mut prepared = Vec::with_capacity(uploads.len());
    for upload in uploads {
        prepared.push(prepare_blocking(upload, info.clone()).await?);
    }
    let captions = futures_join(
        &state,
        prepared.iter().map(|(_, px, _)| px.clone()).collect(),
    )
    .await?;
    let root = state.image_root.clone();
    let model = info.id.clone();
    let items: Vec<(Upload, ImageFormat, crate::model::inference::Generated)> = prepared
        .into_iter()
        .zip(captions)
        .map(|((u, _, f), g)| (u, f, g))
        .collect();
    let backend = state.backend.clone();
    let upload_dir = state.upload_dir.clone();
    let space = info.space.clone();
    let added = tokio::task::spawn_blocking(move || -> ApiResult<Vec<Added>> {
        let mut added = Vec::new();
        let mut batch = Vec::new();
        for (upload, format, generated) in items {
            let path = store_upload(&root, &upload_dir, &upload.bytes, format)
                .map_err(|e| ApiError::internal(format!("cannot store the upload: {e}")))?;
            batch.push((path.clone(), Ok(generated.clone())));
            added.push(Added {
                name: upload.name,
                url: image_url(&root, &path),
                path,
                caption: generated.caption,
                logprob: generated.logprob,
            });
        }
        let mut indexer = CaptionIndexer::new(backend.as_ref(), model).with_vectors(space);
        indexer.add(batch).map_err(ApiError::search_down)?;
        let report = indexer.finish().map_err(ApiError::search_down)?;
        if let Some(f) = report.failed.first() {
            return Err(ApiError::internal(format!(
                "{} could not be indexed: {}",
                f.path.display(),
                f.reason
            )));
        }
        Ok(added)
    })
    .await
    .map_err(|e| ApiError::internal(format!("indexing task failed: {e}")))??;
    Ok(Json(AddedResponse {
        model: info.id.clone(),
        added,
    }))
}

/// Stores an uploaded image under `root/upload_dir/upload-<hash>.<ext>`, named by the first 20
/// hex digits of its content's SHA-256 (the same image is stored once), written atomically.
/// Returns its path relative to the root, with `/` separators (its path in the index).
pub fn store_upload(
    root: &Path,
    upload_dir: &Path,
    bytes: &[u8],
    format: ImageFormat,
) -> crate::Result<String> {
    let digest = hex::encode(Sha256::digest(bytes));
    let name = format!("upload-{}.{}", &digest[..20], extension(format));
    let dir: Vec<String> = upload_dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let rel = if dir.is_empty() {
        name
    } else {
        format!("{}/{name}", dir.join("/"))
    };
    let target = root.join(&rel);
    if !target.exists() {
        crate::util::write_atomic(&target, bytes)?;
    }
    Ok(rel)
}

/// Captions several prepared images concurrently (so the worker batches them).
async fn futures_join(
    state: &AppState,
    pixels: Vec<Vec<u8>>,
) -> ApiResult<Vec<crate::model::inference::Generated>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, px) in pixels.into_iter().enumerate() {
        let captioner = state.captioner.clone();
        set.spawn(async move { (i, captioner.caption(px).await) });
    }
    let mut out: Vec<Option<crate::model::inference::Generated>> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, result) =
            joined.map_err(|e| ApiError::internal(format!("caption task failed: {e}")))?;
        if out.len() <= i {
            out.resize(i + 1, None);
        }
        out[i] = Some(result?);
    }
    out.into_iter()
        .map(|g| g.ok_or_else(|| ApiError::internal("a caption went missing")))
        .collect()
}

/// `GET /api/openapi.json`
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::web::OPENAPI,
    )
        .into_response()
}

/// What `/healthz` answers.
#[derive(Serialize)]
pub struct HealthResponse {
    pub status: &'static str,
    pub model: String,
    pub backend: String,
    pub location: String,
    /// `null` when the backend cannot be reached.
    pub documents: Option<u64>,
    pub backend_status: String,
    pub batches: u64,
    pub images_captioned: u64,
    pub largest_batch: u64,
}

/// `GET /healthz`: 200 while the model serves; says whether the search backend answers.
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<HealthResponse>> {
    use std::sync::atomic::Ordering::Relaxed;
    let backend = state.backend.clone();
    let (documents, backend_status) = tokio::task::spawn_blocking(move || match backend.health() {
        Ok(h) if !h.index_exists => (Some(0), "empty".to_string()),
        Ok(h) => match backend.count() {
            Ok(n) => (Some(n), h.status),
            Err(e) => (None, format!("down: {e}")),
        },
        Err(e) => (None, format!("down: {e}")),
    })
    .await
    .map_err(|e| ApiError::internal(format!("health task failed: {e}")))?;
    let stats = &state.captioner.stats;
    Ok(Json(HealthResponse {
        status: if documents.is_some() {
            "ok"
        } else {
            "degraded"
        },
        model: state.captioner.info.id.clone(),
        backend: state.backend.name().to_string(),
        location: state.backend.location(),
        documents,
        backend_status,
        batches: stats.batches.load(Relaxed),
        images_captioned: stats.images.load(Relaxed),
        largest_batch: stats.largest_batch.load(Relaxed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_stored_once_in_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path =
            store_upload(dir.path(), Path::new("uploads"), b"png", ImageFormat::Png).unwrap();
        assert!(
            path.starts_with("uploads/upload-") && path.ends_with(".png"),
            "{path}"
        );
        assert_eq!(std::fs::read(dir.path().join(&path)).unwrap(), b"png");
        let again =
            store_upload(dir.path(), Path::new("uploads"), b"png", ImageFormat::Png).unwrap();
        assert_eq!(again, path);
        let jpeg = store_upload(dir.path(), Path::new("a/b"), b"jpg", ImageFormat::Jpeg).unwrap();
        assert!(
            jpeg.starts_with("a/b/upload-") && jpeg.ends_with(".jpg"),
            "{jpeg}"
        );
    }
}
