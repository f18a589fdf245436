//! Assembling and running the whole server: check the settings, open the search backend, start
//! the captioning worker, listen, and serve until ctrl-c or SIGTERM. `capsearch serve` is this
//! with its flags; a library user fills a [`ServerConfig`].

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{AppState, HttpOptions, worker};
use crate::error::{Error, Result};
use crate::search::{self, BackendOptions};

/// The folder, under the image root, that images added through the web app go to by default.
pub const DEFAULT_UPLOAD_DIR: &str = "uploads";

/// Everything `capsearch serve` is told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The model directory to caption with.
    pub model: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Folder that `/images/...` serves from; created if missing.
    pub image_root: PathBuf,
    /// Folder, relative to the image root, that `POST /api/images` stores images in.
    pub upload_dir: PathBuf,
    /// Folder of training runs listed on `/runs`.
    pub runs: Option<PathBuf>,
    /// Folder of evaluation reports (`capsearch eval` writes `reports/NAME`), linked from `/runs`
    /// and served under `/reports/...`.
    pub reports: Option<PathBuf>,
    pub http: HttpOptions,
    pub worker: worker::WorkerOptions,
    pub device: burn::prelude::Device,
    pub backend: BackendOptions,
    /// The weights of hybrid image search (`/api/search`).
    pub fusion: crate::search::fusion::FusionWeights,
}

/// Checks that `dir` is a plain relative folder name (no `..`, not absolute), so uploads stay
/// inside the image root.
pub fn check_upload_dir(dir: &Path) -> Result<()> {
    let plain =
        !dir.as_os_str().is_empty() && dir.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(Error::option(
            "--upload-dir",
            format!(
                "{} must be a folder relative to the image root, without `..` (e.g. {DEFAULT_UPLOAD_DIR})",
                dir.display()
            ),
        ))
    }
}

/// Checks a CORS origin: `*`, or an `http://` or `https://` origin that fits in a header.
pub fn check_cors_origin(origin: &str) -> Result<()> {
    let fits = axum::http::HeaderValue::from_str(origin).is_ok();
    if fits && (origin == "*" || origin.starts_with("http://") || origin.starts_with("https://")) {
        Ok(())
    } else {
        Err(Error::option(
            "--cors-origin",
            format!("{origin:?} is not an origin: write e.g. http://localhost:3000 or *"),
        ))
    }
}

/// Runs the server until ctrl-c or SIGTERM, then lets the requests in flight finish and stops
/// the worker. `on_listening` is called with the bound address once the server accepts
/// connections (the CLI prints the URL there).
pub fn run(
    config: ServerConfig,
    on_listening: impl FnOnce(SocketAddr) -> std::io::Result<()> + Send,
) -> Result<()> {
    if let Some(origin) = &config.http.cors_origin {
        check_cors_origin(origin)?;
    }
    check_upload_dir(&config.upload_dir)?;
    std::fs::create_dir_all(&config.image_root).map_err(|e| Error::io(&config.image_root, e))?;
    let image_root = config
        .image_root
        .canonicalize()
        .map_err(|e| Error::io(&config.image_root, e))?;
    let runs = match &config.runs {
        Some(r) => Some(r.canonicalize().map_err(|e| Error::io(r, e))?),
        None => None,
    };
    let reports = match &config.reports {
        Some(r) => Some(r.canonicalize().map_err(|e| Error::io(r, e))?),
        None => None,
    };
    // Opened outside the async runtime: the Elasticsearch backend owns a runtime of its own.
    let backend: Arc<dyn search::SearchBackend> = Arc::from(search::open_backend(&config.backend)?);
    let (captioner, worker_thread) =
        worker::Captioner::start(&config.model, config.device.clone(), config.worker)?;
    tracing::info!(model = %captioner.info.id, backend = backend.name(), "model loaded");
    let state = AppState {
        captioner,
        backend: backend.clone(),
        image_root,
        upload_dir: config.upload_dir.clone(),
        runs,
        reports,
        max_body: config.http.max_body,
        fusion: config.fusion,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Thread {
            name: "async runtime".into(),
            message: format!("cannot start it: {e}"),
        })?;
    let addr = config.addr;
    let http = config.http;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::option("--addr", format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::option("--addr", format!("{addr}: {e}")))?;
        on_listening(local).map_err(|e| Error::io("<stdout>", e))?;
        super::serve(
            listener,
            super::router(state, &http),
            super::shutdown_signal(),
        )
        .await
        .map_err(|e| Error::Thread {
            name: "server".into(),
            message: format!("the server failed: {e}"),
        })
    });
    drop(runtime);
    // The last handle to the worker went with the router: the thread ends after its batch.
    let _ = worker_thread.join();
    drop(backend);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_dirs_and_origins_are_checked() {
        assert!(check_upload_dir(Path::new("uploads")).is_ok());
        assert!(check_upload_dir(Path::new("web/added")).is_ok());
        for bad in ["", "../up", "/tmp/up", "a/../../b"] {
            assert!(check_upload_dir(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(check_cors_origin("*").is_ok());
        assert!(check_cors_origin("http://localhost:3000").is_ok());
        assert!(check_cors_origin("localhost").is_err());
    }
}
