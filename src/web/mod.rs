//! The web server behind `capsearch serve`: a JSON API and a few server-rendered pages.
//!
//! - The model lives on one dedicated thread ([`worker::Captioner`]); handlers decode and resize
//!   images on tokio's blocking pool, then queue the pixels. Requests that arrive together are
//!   captioned in one model call; a full queue answers 503 with `Retry-After`.
//! - The search backend is synchronous, so every call to it runs in `spawn_blocking`.
//! - Bodies are limited (`max_body`), image types are detected from the bytes, and the decoded
//!   pixel limit applies before any pixel is allocated.
//! - Images added through `POST /api/images` are stored in their own folder under the image root
//!   ([`server::DEFAULT_UPLOAD_DIR`] unless configured), named by their content's hash.
//! - Files are served only from the image root (and the runs folder), after checking that the
//!   resolved path, symlinks followed, is still inside it.

pub mod api;
pub mod pages;
pub mod runs;
pub mod server;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::search::SearchBackend;
pub use server::{ServerConfig, run as run_server};
use worker::Captioner;

/// The hand-written OpenAPI 3 description of the API, served as is at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub captioner: Captioner,
    pub backend: Arc<dyn SearchBackend>,
    /// Canonical folder that `/images/...` serves from.
    pub image_root: PathBuf,
    /// Folder, relative to the image root, that `POST /api/images` stores images in.
    pub upload_dir: PathBuf,
    /// Folder of training runs shown on `/runs`, if any.
    pub runs: Option<PathBuf>,
    /// Folder of evaluation reports (`capsearch eval` writes `reports/NAME`), linked from `/runs`
    /// and served under `/reports/...`, if any.
    pub reports: Option<PathBuf>,
    pub max_body: usize,
    /// The weights of hybrid image search.
    pub fusion: crate::search::fusion::FusionWeights,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// The one origin allowed to call the API from a browser; `None`: CORS off.
    pub cors_origin: Option<String>,
}

/// The whole application: API routes, pages, files, limits and (optional) CORS.
pub fn router(state: AppState, http: &HttpOptions) -> Router {
    let app = Router::new()
        .route("/api/caption", post(api::caption))
        .route("/api/search", post(api::search))
        .route("/api/query", get(api::query))
        .route("/api/images", post(api::add_images))
        .route("/api/openapi.json", get(api::openapi))
        .route("/healthz", get(api::healthz))
        .route("/images/{*path}", get(api::image_file))
        .route("/runs/{*path}", get(api::run_file))
        .route("/reports/{*path}", get(api::report_file))
        .route("/api/runs", get(runs::runs_json))
        .route("/", get(pages::home))
        .route("/browse", get(pages::browse))
        .route("/upload", get(pages::upload))
        .route("/runs", get(runs::runs_page))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(http.max_body))
        .layer(middleware::from_fn(security_headers))
        .with_state(state);
    match http
        .cors_origin
        .as_deref()
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        Some(origin) => app.layer(middleware::from_fn_with_state(Arc::new(origin), cors)),
        None => app,
    }
}

/// Headers every response gets.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// CORS for one configured origin (`*` allows any): preflights are answered here, and responses
/// to that origin carry `Access-Control-Allow-Origin`.
async fn cors(State(allowed): State<Arc<HeaderValue>>, req: Request, next: Next) -> Response {
    let matches = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| allowed.as_bytes() == b"*" || o == allowed.as_ref());
    let echo = if allowed.as_bytes() == b"*" {
        HeaderValue::from_static("*")
    } else {
        allowed.as_ref().clone()
    };
    if req.method() == Method::OPTIONS && matches {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, echo),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, OPTIONS"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                ),
            ],
        )
            .into_response();
    }
    let mut response = next.run(req).await;
    if matches {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, echo);
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves when the process gets ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// The file `rel` names under `root`, or `None` if `rel` is not a plain relative path (`..`, an
/// absolute path, a drive, a backslash, NUL), the file does not exist, or it resolves (through
/// symlinks) to somewhere outside `root`.
pub fn resolve_under(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return None;
    }
    let rel_path = Path::new(rel);
    if !rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let full = root.join(rel_path).canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

/// Percent-encodes a relative path for a URL, keeping `/` between segments.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `/images/...` URL of an indexed path, if the server can serve it: a relative path, or an
/// absolute one inside the image root.
pub fn image_url(root: &Path, path: &str) -> Option<String> {
    let p = Path::new(path);
    let rel = if p.is_absolute() {
        p.strip_prefix(root).ok()?.to_str()?.to_string()
    } else {
        path.trim_start_matches("./").to_string()
    };
    let plain = Path::new(&rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !rel.is_empty()).then(|| format!("/images/{}", encode_path(&rel)))
}

/// Parses a size such as `10MB`, `512KiB` or `1048576` into bytes (KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB of 1024).
pub fn parse_size(text: &str) -> crate::Result<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        crate::Error::Invalid(format!(
            "{text:?} is not a size: write e.g. 10MB, 512KiB or 1048576"
        ))
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !(1.0..=(u32::MAX as f64)).contains(&bytes) {
        return Err(crate::Error::Invalid(format!(
            "size {text:?} is out of range (1 byte to 4 GB)"
        )));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_under_refuses_everything_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.png"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        assert!(resolve_under(&root, "sub/a.png").is_some());
        for bad in [
            "../secret.txt",
            "sub/../../secret.txt",
            "/etc/passwd",
            "",
            "sub\\..\\..\\secret.txt",
            "sub",
            "missing.png",
        ] {
            assert_eq!(resolve_under(&root, bad), None, "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.png"))
                .unwrap();
            assert_eq!(resolve_under(&root, "link.png"), None);
        }
    }

    #[test]
    fn urls_are_encoded_and_only_for_servable_paths() {
        let root = Path::new("/data/img");
        assert_eq!(
            image_url(root, "a b/c#1.png").as_deref(),
            Some("/images/a%20b/c%231.png")
        );
        assert_eq!(
            image_url(root, "/data/img/x.png").as_deref(),
            Some("/images/x.png")
        );
        assert_eq!(image_url(root, "/elsewhere/x.png"), None);
        assert_eq!(image_url(root, "../x.png"), None);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("0").is_err());
    }
}
