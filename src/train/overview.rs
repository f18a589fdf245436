//! What a training run's directory says about the run, for listings such as the web app's Runs
//! page: its progress, best epoch, wall time, curves, and whether it is still running.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::config::TrainConfig;
use crate::error::Result;
use crate::model::artifact::ModelInfo;
use crate::model::metrics::MetricsRow;
use crate::model::run_dir::RunDir;

/// A run whose `metrics.csv` has not changed for this long is not live (it was killed).
pub const LIVE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// One run, as its files describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunOverview {
    /// `model.json`'s name.
    pub name: String,
    /// Epochs with a validation row in `metrics.csv`.
    pub epochs_done: usize,
    /// `loop.epochs` of the run's `config.toml`.
    pub planned_epochs: Option<usize>,
    /// Epoch of the best model (by validation BLEU-4) and its BLEU-4 (0–100).
    pub best_epoch: Option<usize>,
    pub best_bleu4: Option<f64>,
    /// Training time so far (resumed runs included), from the last row of `metrics.csv`.
    pub wall_s: Option<f64>,
    /// Where the run is: the epoch and iteration (counted from the start) of `metrics.csv`'s last row.
    pub latest: Option<Position>,
    /// (iteration, mean training loss), one per iteration row.
    pub train_loss: Vec<(f64, f64)>,
    /// (iteration at the epoch's end, validation loss), one per epoch.
    pub val_loss: Vec<(f64, f64)>,
    /// (epoch, validation BLEU-4), one per epoch.
    pub val_bleu4: Vec<(f64, f64)>,
    /// How the run ended ("finished", "early stopping: ..."), when it has.
    pub ended: Option<String>,
    /// Still training: not ended, and `metrics.csv` written within [`LIVE_WINDOW`].
    pub live: bool,
}

/// A point in a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub epoch: usize,
    pub iteration: Option<usize>,
}

impl RunOverview {
    /// Reads a run's directory. A file that is missing leaves its part empty; one that cannot be
    /// read is an error.
    pub fn read(run: &RunDir, now: SystemTime) -> Result<Self> {
        let rows = if run.metrics().is_file() {
            run.read_metrics()?
        } else {
            Vec::new()
        };
        let mut overview = Self::from_rows(&rows);
        if let Ok(info) = ModelInfo::load(run.root()) {
            overview.name = info.name;
            if info.epoch.is_some() && info.val_bleu4.is_some() {
                overview.best_epoch = info.epoch;
                overview.best_bleu4 = info.val_bleu4;
            }
        }
        if run.config().is_file() {
            overview.planned_epochs = Some(TrainConfig::load(&run.config())?.run.epochs);
        }
        let state = run.load_state()?;
        overview.ended = state.and_then(|s| s.ended);
        let recent = modified(&run.metrics())
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < LIVE_WINDOW);
        overview.live = overview.ended.is_none()
            && recent
            && overview
                .planned_epochs
                .is_none_or(|planned| overview.epochs_done < planned);
        Ok(overview)
    }

    /// What `metrics.csv`'s rows say: epochs done, best epoch, wall time, curves.
    pub fn from_rows(rows: &[MetricsRow]) -> Self {
        let mut o = RunOverview::default();
        let mut epochs: Vec<usize> = Vec::new();
        let mut last_iteration = 0.0;
        for row in rows {
            if let Some(it) = row.iteration {
                last_iteration = it;
            }
            if row.is_epoch() {
                let epoch = row.epoch as usize;
                if !epochs.contains(&epoch) {
                    epochs.push(epoch);
                }
                if let Some(l) = row.val_loss.filter(|l| l.is_finite()) {
                    o.val_loss.push((last_iteration, l));
                }
                if let Some(b) = row.val_bleu4.filter(|b| b.is_finite()) {
                    o.val_bleu4.push((row.epoch, b));
                    // the first of equal BLEU-4s; model.json, when there, names the one kept
                    let better = match o.best_bleu4 {
                        None => true,
                        Some(best) => b > best,
                    };
                    if better {
                        o.best_bleu4 = Some(b);
                        o.best_epoch = Some(epoch);
                    }
                }
            } else if let Some(l) = row.train_loss.filter(|l| l.is_finite()) {
                o.train_loss.push((last_iteration, l));
            }
        }
        o.epochs_done = epochs.len();
        o.wall_s = rows.iter().rev().find_map(|r| r.elapsed_s);
        o.latest = rows.last().map(|r| Position {
            epoch: r.epoch as usize,
            iteration: r.iteration.map(|i| i as usize),
        });
        o
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The training runs under `root` (folders up to three levels down with a `model.json` or a
/// `metrics.csv`), each with its path relative to `root`, sorted by path.
pub fn find_runs(root: &Path) -> Vec<(String, RunDir)> {
    let mut runs: Vec<(String, RunDir)> = walkdir::WalkDir::new(root)
        .max_depth(3)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .filter_map(|e| {
            let run = RunDir::new(e.path());
            if !(run.model_info().is_file() || run.metrics().is_file()) {
                return None;
            }
            let rel = relative(root, e.path())?;
            (!rel.is_empty()).then_some((rel, run))
        })
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

/// `path` relative to `root`, with `/` separators.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(root)
        .ok()
        .and_then(|p| p.to_str())
        .map(|s| s.replace('\\', "/"))
}

/// A report folder of `capsearch eval` (it holds `eval.json` and `index.html`) and the model
/// folder it evaluated, as `eval.json` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLink {
    /// The folder, relative to the root it was found under.
    pub dir: String,
    pub model: PathBuf,
}

/// The evaluation reports under `root` (up to four levels down).
pub fn find_reports(root: &Path) -> Vec<ReportLink> {
    let mut reports: Vec<ReportLink> = walkdir::WalkDir::new(root)
        .max_depth(4)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == "eval.json")
        .filter_map(|e| {
            let dir = e.path().parent()?;
            if !dir.join("index.html").is_file() {
                return None;
            }
            let run = crate::eval::report::read_eval_json(dir).ok()?;
            Some(ReportLink {
                dir: relative(root, dir)?,
                model: run.checkpoint.path,
            })
        })
        .collect();
    reports.sort_by(|a, b| a.dir.cmp(&b.dir));
    reports
}

impl ReportLink {
    /// Whether the report evaluated the model in `run`: the same folder, or (when the path
    /// eval.json names cannot be found from here) a folder of the same name.
    pub fn is_of(&self, run: &RunDir) -> bool {
        match (self.model.canonicalize(), run.root().canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => {
                self.model.file_name().is_some() && self.model.file_name() == run.root().file_name()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::{MetricsLog, MetricsRow};

    /// A 30-epoch run logs many iteration rows per epoch; it has done 30 epochs, not one per line.
    #[test]
    fn epochs_are_epoch_rows_not_lines() {
        let mut rows = Vec::new();
        let mut it = 0;
        for epoch in 1..=30 {
            for _ in 0..13 {
                it += 1;
                rows.push(MetricsRow::iteration(
                    epoch,
                    it,
                    3.0 / it as f64,
                    1e-3,
                    50.0,
                    it as f64,
                ));
            }
            let bleu = if epoch == 21 { 40.0 } else { epoch as f64 };
            rows.push(MetricsRow::epoch(
                epoch,
                it,
                2.0,
                bleu,
                1e-3,
                50.0,
                it as f64 + 0.5,
            ));
        }
        assert_eq!(rows.len(), 420);
        let o = RunOverview::from_rows(&rows);
        assert_eq!(o.epochs_done, 30);
        assert_eq!((o.best_epoch, o.best_bleu4), (Some(21), Some(40.0)));
        assert_eq!(o.wall_s, Some(390.5));
        assert_eq!(o.train_loss.len(), 390);
        assert_eq!(o.val_bleu4.len(), 30);
        assert_eq!(o.val_loss[0], (13.0, 2.0));
        assert_eq!(o.latest.unwrap().epoch, 30);
    }

    #[test]
    fn a_run_is_live_while_its_log_grows_and_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("r"));
        std::fs::create_dir_all(run.root()).unwrap();
        std::fs::write(run.config(), "[loop]\nepochs = 3\n").unwrap();
        let mut log = MetricsLog::open(&run.metrics(), 0).unwrap();
        log.append(&MetricsRow::epoch(1, 4, 2.0, 10.0, 1e-3, 9.0, 2.0))
            .unwrap();
        let now = SystemTime::now();
        let o = RunOverview::read(&run, now).unwrap();
        assert!(o.live);
        assert_eq!((o.epochs_done, o.planned_epochs), (1, Some(3)));
        assert!(
            !RunOverview::read(&run, now + LIVE_WINDOW).unwrap().live,
            "killed runs go quiet"
        );
        run.save_state(&crate::model::run_dir::ResumeState {
            ended: Some("early stopping: no BLEU-4 gain for 1 epochs".into()),
            ..Default::default()
        })
        .unwrap();
        let o = RunOverview::read(&run, now).unwrap();
        assert!(!o.live);
        assert!(o.ended.unwrap().starts_with("early stopping"));
    }
}
