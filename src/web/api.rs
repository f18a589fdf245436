//! The JSON API handlers. Every error is `{"error", "detail"}` with a fitting status.

use std::io::Cursor;
use std::path::Path;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use image::ImageFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::worker::{CaptionError, ModelInfo};
use super::{AppState, image_url, resolve_under};
use crate::data::image_files::{IMAGE_FORMAT_NAMES, extension, is_supported, mime};
use crate::search::Hit;
use crate::search::fusion::{ImageSearch, SearchMode, search_generated};
use crate::search::indexer::CaptionIndexer;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
            retry_after: None,
        }
    }
    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    fn bad_image(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_image", detail)
    }
    fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
    }
    fn unsupported(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        )
    }
    fn search_down(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "search_unavailable",
            e.to_string(),
        )
    }
    fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.error,
                detail: &self.detail,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<CaptionError> for ApiError {
    fn from(e: CaptionError) -> Self {
        match e {
            CaptionError::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the captioning queue is full; retry shortly",
                )
            },
            CaptionError::Gone => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the captioning worker has stopped (the server is shutting down)",
            ),
            CaptionError::Model(m) => ApiError::internal(format!("the model failed: {m}")),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// An image from a request: its bytes and a name for messages.
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The JSON form of an image request.
#[derive(Deserialize)]
struct JsonImage {
    image_base64: Option<String>,
    size: Option<usize>,
    offset: Option<usize>,
    mode: Option<String>,
}

/// Paging for searches, and the mode of an image search.
#[derive(Debug, Deserialize, Default)]
pub struct Page {
    pub size: Option<usize>,
    pub offset: Option<usize>,
    /// `caption`, `visual` or `hybrid` (image searches only; absent: the index's default).
    pub mode: Option<String>,
}

/// Largest page a search returns.
pub const MAX_PAGE: usize = 100;
/// Results per page when the request does not say.
pub const DEFAULT_PAGE: usize = 12;

impl Page {
    fn mode(&self) -> ApiResult<Option<SearchMode>> {
        self.mode
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .map(|m| {
                m.trim().parse::<SearchMode>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "mode must be caption, visual or hybrid, not {m:?}"
                    ))
                })
            })
            .transpose()
    }

    fn checked(&self) -> ApiResult<(usize, usize)> {
        let size = self.size.unwrap_or(DEFAULT_PAGE);
        if size == 0 || size > MAX_PAGE {
            return Err(ApiError::bad_request(format!(
                "size must be between 1 and {MAX_PAGE}, not {size}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 10_000 {
            return Err(ApiError::bad_request(format!(
                "offset must be at most 10000, not {offset}"
            )));
        }
        Ok((size, offset))
    }
}

fn decode_base64(text: &str) -> ApiResult<Vec<u8>> {
    let text = text.trim();
    let payload = match text.strip_prefix("data:") {
        Some(rest) => match rest.split_once(',') {
            Some((meta, data)) if meta.ends_with(";base64") => data,
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_base64",
                    "a data: URL must be base64-encoded (data:image/png;base64,...)",
                ));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_base64",
                    "the data: URL has no comma before its data",
                ));
            }
        },
        None => text,
    };
    let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut last = None;
    for engine in engines {
        match engine.decode(&compact) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => last = Some(e),
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_base64",
        format!(
            "image_base64 is not valid base64: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

/// Reads the images of a request (multipart fields `image`, or any file field when `many`; or
/// JSON `{"image_base64"}`) and the paging fields that came with them.
async fn read_images(req: Request, state: &AppState, many: bool) -> ApiResult<(Vec<Upload>, Page)> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than the server's limit of {} bytes",
            state.max_body
        ))
    };
    // Refuse a declared length over the limit before reading anything (streamed bodies are
    // limited as they are read).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return Err(too_large());
    }
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut uploads = Vec::new();
        let mut page = Page::default();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::bad_request(e.body_text())),
            };
            let name = field.name().unwrap_or("").to_string();
            let file_name = field.file_name().map(str::to_string);
            let data = match field.bytes().await {
                Ok(d) => d,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::bad_request(e.body_text())),
            };
            match name.as_str() {
                "mode" => page.mode = Some(String::from_utf8_lossy(&data).into_owned()),
                "size" | "offset" => {
                    let text = String::from_utf8_lossy(&data);
                    let value: usize = text.trim().parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "{name} must be a whole number, not {text:?}"
                        ))
                    })?;
                    if name == "size" {
                        page.size = Some(value);
                    } else {
                        page.offset = Some(value);
                    }
                }
                "image" | "images" => uploads.push(Upload {
                    name: file_name.unwrap_or(name),
                    bytes: data.to_vec(),
                }),
                _ if many && file_name.is_some() => uploads.push(Upload {
                    name: file_name.unwrap_or(name),
                    bytes: data.to_vec(),
                }),
                _ => {}
            }
        }
        if uploads.is_empty() {
            return Err(ApiError::bad_request(
                "the form has no image: send the file in a field named `image`",
            ));
        }
        if !many && uploads.len() > 1 {
            return Err(ApiError::bad_request(
                "send one image per request (use /api/images to add several)",
            ));
        }
        Ok((uploads, page))
    } else if content_type.starts_with("application/json") {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        let json: JsonImage = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the JSON body is malformed: {e}")))?;
        let text = json
            .image_base64
            .ok_or_else(|| ApiError::bad_request("the JSON body has no `image_base64` field"))?;
        let bytes = decode_base64(&text)?;
        Ok((
            vec![Upload {
                name: "image_base64".into(),
                bytes,
            }],
            Page {
                size: json.size,
                offset: json.offset,
                mode: json.mode,
            },
        ))
    } else {
        Err(ApiError::unsupported(format!(
            "send multipart/form-data (field `image`) or application/json ({{\"image_base64\": ...}}), not {:?}",
            if content_type.is_empty() {
                "no content type"
            } else {
                &content_type
            }
        )))
    }
}

/// Checks an image's type (from its bytes) and size, decodes it and resizes it for the model.
/// Returns the pixels and the detected format.
fn prepare(upload: &Upload, info: &ModelInfo) -> ApiResult<(Vec<u8>, ImageFormat)> {
    let format = image::guess_format(&upload.bytes).map_err(|_| {
        ApiError::unsupported(format!(
            "{}: not an image the server can read (the content decides, not the name; send {IMAGE_FORMAT_NAMES})",
            upload.name
        ))
    })?;
    if !is_supported(format) {
        return Err(ApiError::unsupported(format!(
            "{}: {format:?} images are not supported (send {IMAGE_FORMAT_NAMES})",
            upload.name
        )));
    }
    let (w, h) = image::ImageReader::with_format(Cursor::new(&upload.bytes), format)
        .into_dimensions()
        .map_err(|e| {
            ApiError::bad_image(format!("{}: unreadable {format:?} image: {e}", upload.name))
        })?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > info.limits.max_pixels {
        return Err(ApiError::too_large(format!(
            "{}: {w}×{h} image has {pixels} pixels, more than the limit of {}",
            upload.name, info.limits.max_pixels
        )));
    }
    let image =
        crate::data::image::decode_bytes(&upload.bytes, Path::new(&upload.name), &info.limits)
            .map_err(|e| ApiError::bad_image(e.to_string()))?;
    let rgb = crate::data::image::resize_rgb8(&image, info.image_size as u32, info.resize);
    Ok((rgb.into_raw(), format))
}

async fn prepare_blocking(
    upload: Upload,
    info: std::sync::Arc<ModelInfo>,
) -> ApiResult<(Upload, Vec<u8>, ImageFormat)> {
    tokio::task::spawn_blocking(move || {
        let (pixels, format) = prepare(&upload, &info)?;
        Ok((upload, pixels, format))
    })
    .await
    .map_err(|e| ApiError::internal(format!("image preparation failed: {e}")))?
}

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
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
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

/// `GET /images/{path}`: an image file under the image root, nothing else.
pub async fn image_file(
    State(state): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no image {path:?}"),
        )
    };
    let file = resolve_under(&state.image_root, &path).ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&file).await.map_err(|_| not_found())?;
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|f| is_supported(*f))
        .ok_or_else(not_found)?;
    Ok((
        [
            (header::CONTENT_TYPE, mime(format)),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /runs/{path}`: a report file of a training run (HTML, images, JSON, CSV, Markdown).
pub async fn run_file(
    State(state): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> ApiResult<Response> {
    file_under(state.runs.as_deref(), &path, "run").await
}

/// `GET /reports/{path}`: a file of an evaluation report under `--reports`.
pub async fn report_file(
    State(state): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> ApiResult<Response> {
    file_under(state.reports.as_deref(), &path, "report").await
}

/// A report-like file under `root` (HTML, images, JSON, CSV, Markdown, TOML), or 404.
async fn file_under(root: Option<&Path>, path: &str, what: &str) -> ApiResult<Response> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} file {path:?}"),
        )
    };
    let root = root.ok_or_else(not_found)?;
    let file = resolve_under(root, path).ok_or_else(not_found)?;
    let content_type = match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "csv" | "md" | "txt" | "toml" => "text/plain; charset=utf-8",
        _ => return Err(not_found()),
    };
    let bytes = tokio::fs::read(&file).await.map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// Anything else.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", uri.path()),
    )
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

    #[test]
    fn base64_accepts_plain_and_data_urls() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("!!!").unwrap_err().error, "bad_base64");
        assert_eq!(
            decode_base64("data:text/plain,hi").unwrap_err().error,
            "bad_base64"
        );
    }
}
