//! `capsearch serve`: the web app and REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::device::DeviceArg;
use crate::search::{self, BackendOptions};
use crate::web::{self, AppState, HttpOptions, worker};

/// Serve the search page and a JSON API: caption an uploaded image, find similar images.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model to caption with (a `checkpoints/NAME` folder).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,

    /// Address to listen on. The default accepts local connections only; port 0 picks a free port.
    /// The URL is printed on stdout once the server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Folder that `/images/...` serves from and uploads are stored in. Relative paths in the
    /// index are resolved against it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub image_root: PathBuf,

    /// Folder of training runs to list on `/runs` (each subfolder with a model.json).
    #[arg(long, value_name = "DIR")]
    pub runs: Option<PathBuf>,

    /// Folder of evaluation reports (`capsearch eval` writes reports/NAME): each run on `/runs`
    /// links the reports of its model, served under `/reports/...`.
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,

    /// Largest request body, e.g. 10MB or 512KiB.
    #[arg(long, default_value = "10MB", value_parser = parse_size)]
    pub max_body: usize,

    /// Allow browsers on this origin (e.g. http://localhost:3000, or *) to call the API. CORS is
    /// off without it.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,

    /// Images waiting for the model at most; beyond this, requests get 503 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue: u32,

    /// Largest batch of images captioned in one model call.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,

    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,

    /// Precision of the weights in memory: `f16` halves the memory the model holds, at a small
    /// cost in caption quality (measure it with `capsearch eval --precision f16`). CPU only.
    #[arg(long, value_enum, default_value_t)]
    pub precision: crate::model::precision::Precision,

    #[command(flatten)]
    pub backend: BackendOptions,
}

fn parse_size(text: &str) -> std::result::Result<usize, String> {
    web::parse_size(text).map_err(|e| e.to_string())
}

pub fn run(args: ServeArgs) -> Result<()> {
    if let Some(origin) = &args.cors_origin {
        axum::http::HeaderValue::from_str(origin)
            .ok()
            .filter(|_| origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"))
            .with_context(|| {
                format!("--cors-origin {origin:?} is not an origin: write e.g. http://localhost:3000 or *")
            })?;
    }
    std::fs::create_dir_all(&args.image_root)
        .with_context(|| format!("cannot create the image root {}", args.image_root.display()))?;
    let image_root = args
        .image_root
        .canonicalize()
        .with_context(|| format!("image root {}", args.image_root.display()))?;
    let runs = match &args.runs {
        Some(r) => Some(
            r.canonicalize()
                .with_context(|| format!("--runs {}: no such folder", r.display()))?,
        ),
        None => None,
    };
    let reports = match &args.reports {
        Some(r) => Some(
            r.canonicalize()
                .with_context(|| format!("--reports {}: no such folder", r.display()))?,
        ),
        None => None,
    };
    // Opened outside the async runtime: the Elasticsearch backend owns a runtime of its own.
    let backend: Arc<dyn search::SearchBackend> = Arc::from(search::open_backend(&args.backend)?);
    let (captioner, worker_thread) = worker::Captioner::start(
        &args.model,
        args.device.device()?,
        worker::WorkerOptions {
            queue: args.queue as usize,
            max_batch: args.max_batch as usize,
            precision: args.precision,
            ..worker::WorkerOptions::default()
        },
    )?;
    tracing::info!(model = %captioner.info.id, backend = backend.name(), "model loaded");
    let state = AppState {
        captioner,
        backend: backend.clone(),
        image_root,
        runs,
        reports,
        max_body: args.max_body,
    };
    let http = HttpOptions {
        max_body: args.max_body,
        cors_origin: args.cors_origin.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let local = listener.local_addr()?;
        println!("capsearch serving on http://{local}/");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        web::serve(listener, web::router(state, &http), web::shutdown_signal())
            .await
            .context("the server failed")
    });
    drop(runtime);
    // The last handle to the worker went with the router: the thread ends after its batch.
    let _ = worker_thread.join();
    drop(backend);
    result
}
