//! Files the server hands out (images, run folders, reports) and the fallback route.

use std::path::Path;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::data::image_files::{is_supported, mime};
use crate::web::{AppState, resolve_under};

use super::{ApiError, ApiResult};

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
