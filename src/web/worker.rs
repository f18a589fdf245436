//! The captioning worker: one dedicated thread owns the model; requests reach it through a bounded
//! queue, and requests that arrive together are captioned in one batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::inference::{CaptionEngine, Generated};

/// One image waiting for its caption: prepared pixels and where to send the answer.
struct Job {
    pixels: Vec<u8>,
    reply: oneshot::Sender<std::result::Result<Generated, String>>,
}

/// What the server needs to know about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub id: String,
    /// Side of the square the model's images are resized to...
    pub image_size: usize,
    /// ...and how (as its backbone was fed: EfficientNet crops, the rest squash).
    pub resize: crate::data::image::ResizeMode,
    pub limits: crate::data::image::ImageLimits,
    /// The space of the model's image embeddings (see [`crate::search::indexer::vector_space`]).
    pub space: crate::search::VectorSpace,
}

/// Why a caption was not produced.
#[derive(Debug)]
pub enum CaptionError {
    /// The queue is full: try again later.
    Busy,
    /// The worker has stopped.
    Gone,
    /// The model failed on this batch.
    Model(String),
}

/// A handle to the worker thread. Cloning is cheap; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Captioner {
    tx: mpsc::Sender<Job>,
    pub info: Arc<ModelInfo>,
    pub stats: Arc<WorkerStats>,
}

/// Counters of the worker's model calls.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Model calls made.
    pub batches: AtomicU64,
    /// Images captioned.
    pub images: AtomicU64,
    /// Largest batch so far.
    pub largest_batch: AtomicU64,
}

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Images waiting at most (beyond this, requests get 503).
    pub queue: usize,
    /// Largest batch handed to the model in one call.
    pub max_batch: usize,
    pub decode: DecodeOptions,
    /// Precision of the model's weights in memory.
    pub precision: crate::model::precision::Precision,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queue: 64,
            max_batch: 16,
            decode: DecodeOptions::default(),
            precision: crate::model::precision::Precision::F32,
        }
    }
}

impl Captioner {
    /// Loads the model on a new thread (the engine never leaves it) and starts serving jobs.
    pub fn start(
        model_dir: &Path,
        device: burn::prelude::Device,
        options: WorkerOptions,
    ) -> Result<(Captioner, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>(options.queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<ModelInfo>>();
        let dir = model_dir.to_path_buf();
        let stats = Arc::new(WorkerStats::default());
        let worker_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("capsearch-caption".into())
            .spawn(move || {
                let engine = match CaptionEngine::load_with(&dir, device, options.precision) {
                    Ok(engine) if engine.takes_images() => engine,
                    Ok(_) => {
                        let _ = ready_tx.send(Err(Error::Model {
                            path: dir.clone(),
                            message: "this model takes precomputed features, not images, so it cannot serve image search; import it with --vgg16".into(),
                        }));
                        return;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let info = ModelInfo {
                    id: engine.model_id().to_string(),
                    image_size: engine.loaded.info.preprocessing.image_size,
                    resize: engine.resize_mode(),
                    limits: engine.limits,
                    space: crate::search::indexer::vector_space(&engine),
                };
                if ready_tx.send(Ok(info)).is_err() {
                    return;
                }
                run(engine, rx, options, &worker_stats);
            })
            .map_err(|e| Error::Thread {
                name: "captioning".into(),
                message: format!("cannot start it: {e}"),
            })?;
        let info = ready_rx.recv().map_err(|_| Error::Thread {
            name: "captioning".into(),
            message: "it stopped while loading the model".into(),
        })??;
        Ok((
            Captioner {
                tx,
                info: Arc::new(info),
                stats,
            },
            handle,
        ))
    }

    /// Queues prepared pixels and waits for their caption. Never waits for queue space.
    pub async fn caption(&self, pixels: Vec<u8>) -> std::result::Result<Generated, CaptionError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job { pixels, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CaptionError::Busy,
                mpsc::error::TrySendError::Closed(_) => CaptionError::Gone,
            })?;
        match answer.await {
            Ok(Ok(generated)) => Ok(generated),
            Ok(Err(message)) => Err(CaptionError::Model(message)),
            Err(_) => Err(CaptionError::Gone),
        }
    }
}

/// The worker loop: wait for one job, take whatever else is already queued (up to `max_batch`),
/// caption them in one call, answer each.
fn run(
    engine: CaptionEngine,
    mut rx: mpsc::Receiver<Job>,
    options: WorkerOptions,
    stats: &WorkerStats,
) {
    let max_batch = options.max_batch.max(1);
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // A client that gave up (dropped its receiver) needs no caption.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let (pixels, replies): (Vec<Vec<u8>>, Vec<_>) =
            jobs.into_iter().map(|j| (j.pixels, j.reply)).unzip();
        tracing::debug!(batch = pixels.len(), "captioning a batch");
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .images
            .fetch_add(pixels.len() as u64, Ordering::Relaxed);
        stats
            .largest_batch
            .fetch_max(pixels.len() as u64, Ordering::Relaxed);
        match engine.caption_pixels(&pixels, options.decode) {
            Ok(generated) if generated.len() == replies.len() => {
                for (reply, g) in replies.into_iter().zip(generated) {
                    let _ = reply.send(Ok(g));
                }
            }
            Ok(generated) => {
                let message = format!(
                    "the model returned {} captions for {} images",
                    generated.len(),
                    replies.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
