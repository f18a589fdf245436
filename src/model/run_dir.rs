//! A training run's directory: the one place that knows its file names.
//!
//! ```text
//! RUN/
//!   model.json, vocab.json, model.bpk   the best model so far, a complete model directory (see [`super::artifact`])
//!   backbone.json, backbone.bpk         a frozen backbone, when the run trains on one (see [`super::backbone`])
//!   config.toml                         the run's experiment config, overrides applied
//!   metrics.csv                         the log of losses and validation figures (see [`super::metrics`])
//!   last/state.json                     the resume point: epoch, iteration, history, best so far
//!   last/<tag>/model.bpk                the training model's weights at that point
//!   last/<tag>/optim.bpk                the optimizer's state
//! ```
//! Every reader and writer of these files takes its paths from a [`RunDir`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artifact;
use super::metrics::{MetricsRow, read_metrics};
use crate::error::{Error, Result};

/// The run's experiment config.
pub const CONFIG: &str = "config.toml";
/// The log of losses and validation figures.
pub const METRICS: &str = "metrics.csv";
/// The folder of the resumable checkpoint.
pub const LAST: &str = "last";
/// The resume point, inside [`LAST`].
pub const STATE: &str = "state.json";
/// The optimizer's state, inside a checkpoint folder.
pub const OPTIM: &str = "optim.bpk";

/// A training run's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder's name ("run" when it has none, e.g. `.`).
    pub fn name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    }

    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG)
    }

    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    /// `model.json` of the best model.
    pub fn model_info(&self) -> PathBuf {
        self.root.join(artifact::MODEL_INFO)
    }

    pub fn vocab(&self) -> PathBuf {
        self.root.join(artifact::VOCAB)
    }

    /// Weights of the best model (by validation BLEU-4).
    pub fn best_weights(&self) -> PathBuf {
        self.root.join(artifact::WEIGHTS)
    }

    /// The frozen backbone's weights, in runs that train on one.
    pub fn backbone_weights(&self) -> PathBuf {
        self.root.join(super::backbone::BACKBONE_WEIGHTS)
    }

    /// The folder of the resumable checkpoint.
    pub fn last(&self) -> PathBuf {
        self.root.join(LAST)
    }

    /// `last/state.json`.
    pub fn state(&self) -> PathBuf {
        self.last().join(STATE)
    }

    /// The folder of the checkpoint named `tag`, under `last/`.
    pub fn checkpoint(&self, tag: &str) -> PathBuf {
        self.last().join(tag)
    }

    /// The training model's weights in checkpoint `tag`.
    pub fn checkpoint_weights(&self, tag: &str) -> PathBuf {
        self.checkpoint(tag).join(artifact::WEIGHTS)
    }

    /// The optimizer's state in checkpoint `tag`.
    pub fn checkpoint_optim(&self, tag: &str) -> PathBuf {
        self.checkpoint(tag).join(OPTIM)
    }

    /// Reads `metrics.csv`.
    pub fn read_metrics(&self) -> Result<Vec<MetricsRow>> {
        read_metrics(&self.metrics())
    }

    /// Reads `last/state.json`, if there is one.
    pub fn load_state(&self) -> Result<Option<ResumeState>> {
        let path = self.state();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::parse(&path, Some(format!("line {}", e.line())), e.to_string()))
    }

    /// Writes `last/state.json` atomically.
    pub fn save_state(&self, state: &ResumeState) -> Result<()> {
        let json =
            serde_json::to_string_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::util::write_atomic(&self.state(), json.as_bytes())
    }
}

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
    /// How the run ended, once it has ("early stopping: ..."); `None` while it runs, and in runs
    /// that were killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_comes_from_the_run_dir() {
        let run = RunDir::new("checkpoints/shapes");
        assert_eq!(run.name(), "shapes");
        assert_eq!(run.config(), Path::new("checkpoints/shapes/config.toml"));
        assert_eq!(run.metrics(), Path::new("checkpoints/shapes/metrics.csv"));
        assert_eq!(
            run.best_weights(),
            Path::new("checkpoints/shapes/model.bpk")
        );
        assert_eq!(run.state(), Path::new("checkpoints/shapes/last/state.json"));
        assert_eq!(
            run.checkpoint_optim("e0001-i000000"),
            Path::new("checkpoints/shapes/last/e0001-i000000/optim.bpk")
        );
        assert_eq!(RunDir::new(".").name(), "run");
    }

    #[test]
    fn state_round_trips_and_older_states_load() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.load_state().unwrap(), None);
        let state = ResumeState {
            epoch: 2,
            tag: "e0002-i000000".into(),
            ended: Some("finished all epochs".into()),
            ..Default::default()
        };
        run.save_state(&state).unwrap();
        assert_eq!(run.load_state().unwrap(), Some(state));
        std::fs::write(
            run.state(),
            r#"{"epoch":1,"iteration":0,"global_iteration":4,"elapsed_s":1.0,"best_epoch":null,"best_bleu4":null,"history":[]}"#,
        )
        .unwrap();
        let old = run.load_state().unwrap().unwrap();
        assert_eq!((old.epoch, old.ended), (1, None));
    }
}
