//! Resumable training state, written atomically.
//!
//! ```text
//! RUN/last/state.json               the commit point: epoch, iteration, history, best so far
//! RUN/last/<tag>/model.bpk          weights of the training model at that point
//! RUN/last/<tag>/optim.bpk          optimizer state
//! ```
//! A checkpoint's files are written into a fresh `<tag>` folder first; `state.json` is then
//! replaced atomically to point at it, and older folders are removed. A run killed at any moment
//! (SIGKILL included) therefore resumes from the last complete checkpoint, losing at most the work
//! since then. The shuffling order and dropout seed of an epoch depend only on the run's seed, the
//! epoch and the iteration, so a resumed run continues as the original would have.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Captioner;
use crate::model::artifact::{load_weights, save_weights};

/// One finished epoch's validation figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub val_loss: f64,
    pub val_perplexity: f64,
    pub val_bleu4: f64,
    pub elapsed_s: f64,
}

/// `last/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs completed (0-based index of the epoch in progress).
    pub epoch: usize,
    /// Iterations completed within that epoch.
    pub iteration: usize,
    pub global_iteration: usize,
    pub elapsed_s: f64,
    pub best_epoch: Option<usize>,
    pub best_bleu4: Option<f64>,
    pub history: Vec<EpochRecord>,
    /// Folder under `last/` holding the weights and optimizer state.
    #[serde(default)]
    pub tag: String,
}

pub fn state_path(run: &Path) -> PathBuf {
    run.join("last").join("state.json")
}

/// Reads `last/state.json`, if there is one.
pub fn load_state(run: &Path) -> Result<Option<ResumeState>> {
    let path = state_path(run);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::parse(&path, Some(format!("line {}", e.line())), e.to_string())
    })
}

/// Writes a checkpoint: weights and optimizer state into a new folder, then the state file.
pub fn save_checkpoint(run: &Path, state: &ResumeState, model: &Captioner, optim: &ModuleOptimizer) -> Result<()> {
    let last = run.join("last");
    let tag = format!("e{:04}-i{:06}", state.epoch, state.iteration);
    let dir = last.join(&tag);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    save_weights(model.clone(), &dir.join("model.bpk"))?;
    let optim_path = dir.join("optim.bpk");
    let tmp = dir.join("optim.bpk.tmp");
    optim.save(&tmp).map_err(|e| Error::Model {
        path: tmp.clone(),
        message: format!("cannot write optimizer state: {e:?}"),
    })?;
    std::fs::rename(&tmp, &optim_path).map_err(|e| Error::io(&optim_path, e))?;
    let mut state = state.clone();
    state.tag = tag.clone();
    let json = serde_json::to_string_pretty(&state).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::util::write_atomic(&state_path(run), json.as_bytes())?;
    // the new checkpoint is committed: older ones can go
    if let Ok(entries) = std::fs::read_dir(&last) {
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() && entry.file_name().to_string_lossy() != tag {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    Ok(())
}

/// Loads the weights and optimizer state a [`ResumeState`] points at.
pub fn load_checkpoint(
    run: &Path,
    state: &ResumeState,
    model: Captioner,
    optim: ModuleOptimizer,
) -> Result<(Captioner, ModuleOptimizer)> {
    let dir = run.join("last").join(&state.tag);
    let model = load_weights(model, &dir.join("model.bpk"))?;
    let optim_path = dir.join("optim.bpk");
    let optim = optim.load(&optim_path).map_err(|e| Error::Model {
        path: optim_path.clone(),
        message: format!("cannot read optimizer state: {e:?}"),
    })?;
    Ok((model, optim))
}

/// `metrics.csv`: one row per logged iteration and one per epoch.
///
/// Columns: `epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s`.
/// Iteration rows leave the validation cells empty; epoch rows leave `train_loss` empty.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

pub const METRICS_HEADER: &str =
    "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s";

impl MetricsLog {
    /// Opens the log for appending. On resume, rows past `keep_until_iteration` (written after the
    /// checkpoint that is resumed) are dropped so the log matches the resumed state.
    pub fn open(path: &Path, keep_until_iteration: usize) -> Result<Self> {
        let mut kept = vec![METRICS_HEADER.to_string()];
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().skip(1) {
                let iteration = line.split(',').nth(1).and_then(|v| v.parse::<usize>().ok());
                if iteration.is_some_and(|i| i <= keep_until_iteration) {
                    kept.push(line.to_string());
                }
            }
        }
        let mut body = kept.join("\n");
        body.push('\n');
        crate::util::write_atomic(path, body.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    fn write(&mut self, line: String) -> Result<()> {
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    pub fn iteration_row(&mut self, epoch: usize, iteration: usize, loss: f64, lr: f64, ips: f64, elapsed: f64) -> Result<()> {
        self.write(format!("{epoch},{iteration},{loss:.6},,,,{lr:.6e},{ips:.2},{elapsed:.2}"))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn epoch_row(&mut self, epoch: usize, iteration: usize, val_loss: f64, bleu4: f64, lr: f64, ips: f64, elapsed: f64) -> Result<()> {
        self.write(format!(
            "{epoch},{iteration},,{val_loss:.6},{:.4},{bleu4:.4},{lr:.6e},{ips:.2},{elapsed:.2}",
            val_loss.exp()
        ))
    }
}
