//! `capsearch bench serve`: load a `capsearch serve` from loopback for a bounded time.
//!
//! Unless `--url` names a running server, the benchmark starts one (this same binary, `serve` on
//! 127.0.0.1 port 0) on an embedded index of synthetic `shapes` captions, with `--model` (default:
//! `checkpoints/shapes` when it exists, else an untrained model of the `shapes` size, which
//! captions noise but costs the same to run). Then `clients` concurrent clients send, for
//! `seconds` each, `POST /api/search` with `shapes` images (multipart), and then
//! `GET /api/query` with `shapes` captions. It reports answered requests per second, p50/p99
//! latency of the answered requests, the errors (503 busy apart from the rest), and the peak RSS
//! (`VmHWM`) of the server process it started.
//!
//! The server and the clients share the machine, as they would on a single host.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::prelude::*;

use super::common::shapes_vocab_and_captions;
use super::{BenchOptions, Count, Row, Table};
use crate::data::shapes::{self, indexed_caption};
use crate::error::{Error, Result};
use crate::model::artifact::{ModelInfo, Preprocessing, save_model};
use crate::model::encoder::SmallCnnConfig;
use crate::model::{CaptionerConfig, EncoderConfig};
use crate::search::embedded::EmbeddedBackend;
use crate::search::{Document, index_documents};
use crate::util::percentile;

/// Settings of the serve benchmark.
#[derive(Debug, Clone, Default)]
pub struct ServeBenchOptions {
    /// Model the started server captions with; `None`: `checkpoints/shapes`, else untrained.
    pub model: Option<PathBuf>,
    /// Load this running server instead of starting one.
    pub url: Option<String>,
    /// Concurrent clients (default 8; 4 with `--quick`).
    pub clients: Option<usize>,
    /// Seconds each load phase lasts (default 10; 2 with `--quick`).
    pub seconds: Option<f64>,
}

/// A server started for the benchmark; killed when dropped.
struct Started {
    child: Child,
    url: String,
}

impl Started {
    /// Peak resident memory of the server process so far (`VmHWM`, Linux).
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one load phase measured.
#[derive(Debug, Default)]
struct Phase {
    /// Latencies of the requests answered 200, in ms.
    ok_ms: Vec<f64>,
    busy: u64,
    /// Other statuses and transport errors.
    other: u64,
    /// The first other error, for the report.
    first_error: Option<String>,
    seconds: f64,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.ok_ms.extend(other.ok_ms);
        self.busy += other.busy;
        self.other += other.other;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One request a client sends, given the request's number.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// `clients` tasks send requests back to back until `seconds` have passed.
async fn load(client: &reqwest::Client, make: MakeRequest, clients: usize, seconds: f64) -> Phase {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = client.clone();
        let make = Arc::clone(&make);
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::default();
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                let answer = match make(&client, i).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        resp.bytes().await.map(|body| (status, body))
                    }
                    Err(e) => Err(e),
                };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                match answer {
                    Ok((200, _)) => phase.ok_ms.push(ms),
                    Ok((503, body)) if String::from_utf8_lossy(&body).contains("\"busy\"") => {
                        phase.busy += 1
                    }
                    Ok((status, body)) => {
                        phase.other += 1;
                        phase.first_error.get_or_insert_with(|| {
                            format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        phase.other += 1;
                        phase.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                i += clients;
            }
            phase
        }));
    }
    let mut all = Phase::default();
    for task in tasks {
        if let Ok(phase) = task.await {
            all.merge(phase);
        }
    }
    all.seconds = start.elapsed().as_secs_f64();
    all
}

/// Writes an untrained model of the `shapes` size (tiny sizes with `quick`) into `dir`.
fn untrained_model(dir: &Path, quick: bool) -> Result<()> {
    let (vocab, _) = shapes_vocab_and_captions(2000, 16);
    let (cnn, embed, hidden, image) = if quick {
        (
            SmallCnnConfig::new()
                .with_width(4)
                .with_depth(2)
                .with_grid(2),
            16,
            32,
            32,
        )
    } else {
        (
            SmallCnnConfig::new()
                .with_width(16)
                .with_depth(4)
                .with_grid(4),
            128,
            256,
            64,
        )
    };
    let config = CaptionerConfig::new(EncoderConfig::SmallCnn(cnn), vocab.len())
        .with_embed_size(embed)
        .with_hidden_size(hidden)
        .with_dropout(0.0);
    let device = Device::flex();
    device.seed(3);
    let model = config.init(&device);
    let info = ModelInfo {
        name: "untrained-shapes".into(),
        captioner: config,
        preprocessing: Preprocessing {
            image_size: image,
            normalization: "imagenet".into(),
        },
        produced_by: "capsearch bench serve (untrained)".into(),
        capsearch_version: env!("CARGO_PKG_VERSION").into(),
        dataset: None,
        epoch: None,
        val_bleu4: None,
    };
    save_model(dir, &info, &vocab, model)
}

/// Starts `capsearch serve` (this binary) on loopback and waits for its URL.
fn start_server(model: &Path, work: &Path) -> Result<Started> {
    let exe = std::env::current_exe().map_err(|e| Error::io("the capsearch binary", e))?;
    let root = work.join("root");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let mut child = Command::new(&exe)
        .arg("serve")
        .arg("--model")
        .arg(model)
        .args(["--addr", "127.0.0.1:0"])
        .arg("--image-root")
        .arg(&root)
        .arg("--index-path")
        .arg(work.join("index"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io(&exe, e))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(Error::Invalid(
            "the server's output was not captured".into(),
        ));
    };
    let mut started = Started {
        child,
        url: String::new(),
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| Error::io("the server's output", e))?;
    match line.trim().strip_prefix("capsearch serving on ") {
        Some(url) => started.url = url.trim_end_matches('/').to_string(),
        None => {
            return Err(Error::Invalid(format!(
                "`capsearch serve --model {}` did not start (it printed {line:?}); its errors are above",
                model.display()
            )));
        }
    }
    Ok(started)
}

fn latency_row(name: &str, phase: &Phase) -> Row {
    let mut ms = phase.ok_ms.clone();
    ms.sort_by(f64::total_cmp);
    let p50 = percentile(&ms, 50.0);
    Row {
        name: name.into(),
        unit: "ms".into(),
        higher_is_better: false,
        median: p50,
        low: p50,
        high: percentile(&ms, 99.0),
        spread: "p50–p99".into(),
        runs: ms.len(),
        baseline: None,
    }
}

fn throughput_row(name: &str, phase: &Phase) -> Row {
    let mut row = Row::from_samples(
        name,
        "req/s",
        true,
        &[phase.ok_ms.len() as f64 / phase.seconds.max(1e-9)],
    );
    row.spread = "single run".into();
    row
}

/// Runs the serve benchmark and returns its table.
pub fn bench_serve(opts: &BenchOptions) -> Result<Table> {
    let s = &opts.serve;
    let clients = s.clients.unwrap_or(if opts.quick { 4 } else { 8 }).max(1);
    let seconds = s.seconds.unwrap_or(if opts.quick { 2.0 } else { 10.0 });
    if seconds.is_nan() || seconds <= 0.0 || seconds > 3600.0 {
        return Err(Error::Invalid(format!(
            "--duration must be between 0 and 3600 seconds, not {seconds}"
        )));
    }
    let docs: u64 = if opts.quick { 1_000 } else { 10_000 };
    let work = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut setup = Vec::new();
    let mut notes = Vec::new();

    let started = match &s.url {
        Some(_) => None,
        None => {
            let model =
                match &s.model {
                    Some(m) => {
                        setup.push(format!("model: {}", m.display()));
                        m.clone()
                    }
                    None if Path::new("checkpoints/shapes/model.json").is_file() => {
                        setup.push("model: checkpoints/shapes".into());
                        PathBuf::from("checkpoints/shapes")
                    }
                    None => {
                        let dir = work.path().join("model");
                        untrained_model(&dir, opts.quick)?;
                        setup.push(format!(
                        "model: untrained, {} shapes sizes (no --model and no checkpoints/shapes): \
                         captions are noise, the cost per image is the architecture's",
                        if opts.quick { "tiny (--quick)" } else { "configs/shapes.toml" }
                    ));
                        dir
                    }
                };
            tracing::info!("bench serve: indexing {docs} synthetic captions");
            let backend = EmbeddedBackend::new(work.path().join("index"));
            let documents = (0..docs).map(|i| {
                Document::from_dataset(
                    format!("bench/{i:07}.png"),
                    vec![indexed_caption(i)],
                    "bench",
                )
            });
            index_documents(
                &backend,
                documents,
                10_000,
                &indicatif::ProgressBar::hidden(),
            )?;
            drop(backend);
            setup.push(format!(
                "server: `capsearch serve` started on 127.0.0.1, embedded index of {docs} synthetic shapes captions, default --queue 64 and --max-batch 16"
            ));
            Some(start_server(&model, work.path())?)
        }
    };
    let url = match (&s.url, &started) {
        (Some(url), _) => {
            setup.push(format!(
                "server: {url} (already running; its peak RSS is not measured)"
            ));
            url.trim_end_matches('/').to_string()
        }
        (None, Some(st)) => st.url.clone(),
        (None, None) => return Err(Error::Invalid("no server to load".into())),
    };

    let images: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..16)
            .map(|i| shapes::generate_one(5, i, shapes::DEFAULT_SIZE, 1).map(|g| g.png))
            .collect::<Result<_>>()?,
    );
    let search_url = format!("{url}/api/search?size=10");
    let query_url = format!("{url}/api/query");
    let search: MakeRequest = {
        let images = Arc::clone(&images);
        Arc::new(move |client: &reqwest::Client, i: usize| {
            let part = reqwest::multipart::Part::bytes(images[i % images.len()].clone())
                .file_name(format!("shape{i}.png"));
            client
                .post(&search_url)
                .multipart(reqwest::multipart::Form::new().part("image", part))
        })
    };
    let query: MakeRequest = Arc::new(move |client: &reqwest::Client, i: usize| {
        client.get(&query_url).query(&[
            ("q", indexed_caption(1_000_000 + i as u64)),
            ("size", "10".into()),
        ])
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the async runtime: {e}")))?;
    let (search_phase, query_phase) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(clients)
            .build()
            .map_err(|e| Error::Invalid(format!("cannot build the HTTP client: {e}")))?;
        // Warm-up: a few requests of each kind, one at a time; they must succeed.
        for i in 0..3 {
            for (what, make) in [("POST /api/search", &search), ("GET /api/query", &query)] {
                let resp = make(&client, i)
                    .send()
                    .await
                    .map_err(|e| Error::Invalid(format!("{what} at {url} failed: {e}")))?;
                let status = resp.status();
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(Error::Invalid(format!(
                        "{what} at {url} answered {status}: {body}"
                    )));
                }
                let _ = resp.bytes().await;
            }
        }
        tracing::info!("bench serve: {clients} clients on POST /api/search for {seconds} s");
        let search_phase = load(&client, Arc::clone(&search), clients, seconds).await;
        tracing::info!("bench serve: {clients} clients on GET /api/query for {seconds} s");
        let query_phase = load(&client, Arc::clone(&query), clients, seconds).await;
        Ok::<_, Error>((search_phase, query_phase))
    })?;
    drop(runtime);
    let peak = started.as_ref().and_then(Started::peak_rss);
    drop(started);

    let mut counts = Vec::new();
    for (what, phase) in [
        ("POST /api/search", &search_phase),
        ("GET /api/query", &query_phase),
    ] {
        if phase.ok_ms.is_empty() {
            return Err(Error::Invalid(format!(
                "no {what} request succeeded in {seconds} s ({} busy, {} other errors{})",
                phase.busy,
                phase.other,
                phase
                    .first_error
                    .as_ref()
                    .map(|e| format!("; first: {e}"))
                    .unwrap_or_default()
            )));
        }
        counts.push(Count {
            name: format!("{what}: answered 200"),
            value: phase.ok_ms.len() as u64,
        });
        counts.push(Count {
            name: format!("{what}: 503 busy"),
            value: phase.busy,
        });
        counts.push(Count {
            name: format!("{what}: other errors"),
            value: phase.other,
        });
        if let Some(e) = &phase.first_error {
            notes.push(format!("{what}: first error: {e}"));
        }
    }
    setup.push(format!(
        "{clients} concurrent clients on loopback, {seconds} s per endpoint, after a warm-up of 3 requests each; \
         POST /api/search: 16 shapes images ({0}×{0} PNG, multipart), size 10; GET /api/query: unseen shapes captions, size 10",
        shapes::DEFAULT_SIZE
    ));
    setup.push("requests/s and latency count the requests answered 200; 503s and other errors are counted apart".into());
    if peak.is_some() {
        setup.push("peak RSS: the server process's VmHWM at the end of the run".into());
    }
    Ok(Table {
        name: "serve".into(),
        title: format!("`capsearch serve` under load, {clients} clients"),
        setup,
        rows: vec![
            throughput_row("search by image (POST /api/search)", &search_phase),
            latency_row("search by image latency", &search_phase),
            throughput_row("text query (GET /api/query)", &query_phase),
            latency_row("text query latency", &query_phase),
        ],
        counts,
        peak_rss_bytes: peak,
        plots: vec![],
        notes,
    })
}
