//! `capsearch serve`: the web app and REST API.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::device::DeviceArg;
use crate::web::{self, HttpOptions, ServerConfig, worker};

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

    /// Folder that `/images/...` serves from. Relative paths in the index are resolved against
    /// it. Images added through the web app are stored under it, in --upload-dir.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub image_root: PathBuf,

    /// Folder, relative to --image-root, that images added through the web app (POST
    /// /api/images) are stored in, as upload-<hash>.<ext>; created when the first one arrives.
    #[arg(long, value_name = "DIR", default_value = web::server::DEFAULT_UPLOAD_DIR)]
    pub upload_dir: PathBuf,

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
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<crate::model::precision::Precision>::new(), default_value_t)]
    pub precision: crate::model::precision::Precision,

    #[command(flatten)]
    pub backend: crate::cli::backend::BackendArgs,

    #[command(flatten)]
    pub fusion: crate::cli::search::FusionArgs,
}

fn parse_size(text: &str) -> std::result::Result<usize, String> {
    web::parse_size(text).map_err(|e| e.to_string())
}

pub fn run(args: ServeArgs) -> Result<()> {
    let fusion = args.fusion.weights(&args.model)?;
    let config = ServerConfig {
        model: args.model,
        addr: args.addr,
        image_root: args.image_root,
        upload_dir: args.upload_dir,
        runs: args.runs,
        reports: args.reports,
        http: HttpOptions {
            max_body: args.max_body,
            cors_origin: args.cors_origin,
        },
        worker: worker::WorkerOptions {
            queue: args.queue as usize,
            max_batch: args.max_batch as usize,
            precision: args.precision,
            ..worker::WorkerOptions::default()
        },
        device: args.device.device()?,
        backend: args.backend.options(),
        fusion,
    };
    web::run_server(config, |local| {
        println!("capsearch serving on http://{local}/");
        std::io::stdout().flush()
    })?;
    Ok(())
}
