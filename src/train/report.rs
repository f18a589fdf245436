//! What the training loop tells a reporter, and how both reporters write numbers.
//!
//! The training loop fills a [`TrainingStatus`] and hands it to a [`TrainingReporter`] every few
//! iterations and at each phase change. The reporters are the ratatui dashboard
//! ([`super::dashboard`]) and the plain-log [`super::progress::LogReporter`]; both depend on this
//! module, and it on neither.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::util::format_duration;

/// What the training loop is doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Phase {
    /// Preparing data; nothing trained yet.
    #[default]
    Starting,
    Training,
    /// Teacher-forced validation loss.
    Validating,
    /// Decoding validation images for BLEU-4.
    Decoding,
    /// Writing the best model or a checkpoint.
    Saving,
    /// The user asked to stop: a checkpoint is being saved, then the loop exits.
    Stopping,
    /// The run is over.
    Ended(StopReason),
}

impl Phase {
    /// The word shown for the phase ("training", ...); an ended run shows how it ended.
    pub fn label(&self) -> String {
        match self {
            Phase::Starting => "starting".into(),
            Phase::Training => "training".into(),
            Phase::Validating => "validating".into(),
            Phase::Decoding => "decoding".into(),
            Phase::Saving => "saving".into(),
            Phase::Stopping => "stopping".into(),
            Phase::Ended(reason) => reason.to_string(),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// Why a training run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Every planned epoch ran.
    Finished,
    /// No BLEU-4 gain for `patience` epochs.
    EarlyStopping { patience: usize },
    /// The time budget ran out at an epoch end.
    TimeBudget(Duration),
    /// What was `left` of the time budget at an epoch end is less than the last epoch took, so
    /// the next one was not started.
    NoTimeForAnotherEpoch {
        budget: Duration,
        left: Duration,
        epoch: Duration,
    },
    /// The user stopped the run in `epoch`, during `iteration` (or at its end, `None`).
    StoppedByUser {
        epoch: usize,
        iteration: Option<usize>,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Finished => write!(f, "finished"),
            StopReason::EarlyStopping { patience } => {
                write!(f, "early stopping: no BLEU-4 gain for {patience} epochs")
            }
            StopReason::TimeBudget(budget) => {
                write!(f, "time budget of {} reached", format_duration(*budget))
            }
            StopReason::NoTimeForAnotherEpoch {
                budget,
                left,
                epoch,
            } => write!(
                f,
                "time budget of {}: {} left, an epoch takes {}",
                format_duration(*budget),
                format_duration(*left),
                format_duration(*epoch)
            ),
            StopReason::StoppedByUser {
                epoch,
                iteration: Some(it),
            } => write!(f, "stopped by the user at epoch {epoch}, iteration {it}"),
            StopReason::StoppedByUser {
                epoch,
                iteration: None,
            } => write!(f, "stopped by the user after epoch {epoch}"),
        }
    }
}

/// Everything the screen shows; the training loop fills it.
#[derive(Debug, Clone, Default)]
pub struct TrainingStatus {
    pub run_name: String,
    /// 1-based current epoch.
    pub epoch: usize,
    /// Planned epochs.
    pub epochs: usize,
    /// Iteration within the epoch (1-based).
    pub iteration: usize,
    pub iterations_per_epoch: usize,
    pub global_iteration: usize,
    /// (fractional epoch, loss), one point per logged iteration.
    pub train_loss: Vec<(f64, f64)>,
    /// (epoch, loss).
    pub val_loss: Vec<(f64, f64)>,
    /// (epoch, BLEU-4 on the 0..100 scale).
    pub val_bleu4: Vec<(f64, f64)>,
    pub learning_rate: f64,
    pub images_per_sec: f64,
    pub tokens_per_sec: f64,
    pub elapsed: Duration,
    /// Time left for the whole run.
    pub eta: Option<Duration>,
    /// Time left in the current epoch.
    pub epoch_eta: Option<Duration>,
    /// Resident set size of this process; see [`current_rss_bytes`].
    pub memory_bytes: Option<u64>,
    /// Fixed validation images: current caption vs one reference, refreshed every epoch.
    pub samples: Vec<SampleCaption>,
    pub best: Option<BestCheckpoint>,
    /// What the loop is doing; at `finish`, how the run ended, which the summary line repeats.
    pub phase: Phase,
    pub time_budget: Option<Duration>,
}

/// One fixed validation image: the caption the model gives it now, and one of its references.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCaption {
    pub image: String,
    pub generated: String,
    pub reference: String,
}

/// The checkpoint kept as best (by validation BLEU-4) so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestCheckpoint {
    pub epoch: usize,
    pub bleu4: f64,
    pub path: PathBuf,
}

impl TrainingStatus {
    /// Share of the current epoch done, in 0..=1.
    pub fn epoch_fraction(&self) -> f64 {
        if self.iterations_per_epoch == 0 {
            return 0.0;
        }
        (self.iteration as f64 / self.iterations_per_epoch as f64).clamp(0.0, 1.0)
    }

    /// Share of the planned run done, in 0..=1 (training iterations only).
    pub fn run_fraction(&self) -> f64 {
        let total = self.epochs.saturating_mul(self.iterations_per_epoch);
        if total == 0 {
            return 0.0;
        }
        let done = self.epoch.saturating_sub(1) * self.iterations_per_epoch
            + self.iteration.min(self.iterations_per_epoch);
        (done as f64 / total as f64).clamp(0.0, 1.0)
    }

    pub fn last_train_loss(&self) -> Option<f64> {
        self.train_loss.last().map(|p| p.1)
    }

    pub fn last_val_loss(&self) -> Option<f64> {
        self.val_loss.last().map(|p| p.1)
    }

    pub fn last_bleu4(&self) -> Option<f64> {
        self.val_bleu4.last().map(|p| p.1)
    }

    /// Validation perplexity, `exp(validation loss)` (the loss is a per-word cross-entropy).
    pub fn val_perplexity(&self) -> Option<f64> {
        self.last_val_loss().map(f64::exp)
    }

    /// Time left of the `--time-budget`, if one was given.
    pub fn budget_left(&self) -> Option<Duration> {
        self.time_budget
            .map(|budget| budget.saturating_sub(self.elapsed))
    }
}

/// What the training loop talks to. `update` is called every few iterations and at each phase change.
pub trait TrainingReporter {
    fn update(&mut self, status: &TrainingStatus);
    /// True once the user asked to stop and confirmed (the loop then saves a checkpoint and exits).
    fn stop_requested(&mut self) -> bool;
    /// Called once at the end (restore the terminal, print a final summary line).
    fn finish(&mut self, status: &TrainingStatus);
}

/// Resident set size of this process in bytes, from `/proc/self/statm` (resident pages times the
/// page size). `None` where that file does not exist (not Linux) or cannot be parsed.
pub fn current_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

/// The kernel's page size. `/proc/self/smaps_rollup` does not give it, but `/proc/self/smaps`
/// names it per mapping (`KernelPageSize: 4 kB`); 4 KiB where that cannot be read.
fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        std::fs::File::open("/proc/self/smaps")
            .ok()
            .and_then(|file| {
                use std::io::BufRead;
                io::BufReader::new(file)
                    .lines()
                    .take(64)
                    .map_while(|line| line.ok())
                    .find_map(|line| {
                        let kb = line.strip_prefix("KernelPageSize:")?;
                        kb.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
                    })
            })
            .map_or(4096, |kb| kb * 1024)
    })
}

// ---------------------------------------------------------------------------------------------
// Number formatting, shared by the dashboard and the log reporter.

/// "812 B", "3.4 KiB", "512.3 MiB", "1.24 GiB".
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// A throughput: "7.25", "312.4", "3.12k", "1.20M"; "-" when not known yet (zero or not finite).
pub fn format_rate(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        "-".to_string()
    } else if rate < 10.0 {
        format!("{rate:.2}")
    } else if rate < 1000.0 {
        format!("{rate:.1}")
    } else if rate < 1e6 {
        format!("{:.2}k", rate / 1e3)
    } else {
        format!("{:.2}M", rate / 1e6)
    }
}

pub(crate) fn format_loss(loss: Option<f64>) -> String {
    loss.map_or_else(|| "-".to_string(), |l| format!("{l:.4}"))
}

pub(crate) fn format_bleu(bleu: Option<f64>) -> String {
    bleu.map_or_else(|| "-".to_string(), |b| format!("{b:.2}"))
}

pub(crate) fn format_lr(lr: f64) -> String {
    if lr == 0.0 {
        "-".to_string()
    } else {
        format!("{lr:.2e}")
    }
}

pub(crate) fn format_eta(eta: Option<Duration>) -> String {
    eta.map_or_else(|| "-".to_string(), format_duration)
}

/// The one line printed when a run ends, by both reporters.
pub fn summary_line(status: &TrainingStatus, stopped_by_user: bool) -> String {
    let ended = if stopped_by_user {
        "stopped by user".to_string()
    } else {
        match &status.phase {
            Phase::Ended(reason) => reason.to_string(),
            _ => "ended".to_string(),
        }
    };
    let name = if status.run_name.is_empty() {
        String::new()
    } else {
        format!(" {}", status.run_name)
    };
    let best = match &status.best {
        Some(best) => format!(
            "best epoch {} (BLEU-4 {:.2}) at {}",
            best.epoch,
            best.bleu4,
            best.path.display()
        ),
        None => "no best checkpoint yet".to_string(),
    };
    format!(
        "run{name} {ended}: epoch {}/{} after {} · train loss {} · val loss {} · BLEU-4 {} · {best}",
        status.epoch,
        status.epochs,
        format_duration(status.elapsed),
        format_loss(status.last_train_loss()),
        format_loss(status.last_val_loss()),
        format_bleu(status.last_bleu4()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86400 + 3 * 3600)),
            "2d 03h"
        );
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(537_214_976), "512.3 MiB");
        assert_eq!(format_bytes(1_331_439_862), "1.24 GiB");
        assert_eq!(format_rate(7.254), "7.25");
        assert_eq!(format_rate(312.44), "312.4");
        assert_eq!(format_rate(3120.0), "3.12k");
        assert_eq!(format_rate(f64::NAN), "-");
        assert_eq!(format_lr(3e-4), "3.00e-4");
    }

    #[test]
    fn phases_and_endings_read_as_words() {
        assert_eq!(Phase::default().label(), "starting");
        assert_eq!(Phase::Stopping.to_string(), "stopping");
        assert_eq!(Phase::Ended(StopReason::Finished).label(), "finished");
        assert_eq!(
            StopReason::TimeBudget(Duration::from_secs(600)).to_string(),
            "time budget of 10m 00s reached"
        );
        assert_eq!(
            StopReason::NoTimeForAnotherEpoch {
                budget: Duration::from_secs(600),
                left: Duration::from_secs(20),
                epoch: Duration::from_secs(31),
            }
            .to_string(),
            "time budget of 10m 00s: 20s left, an epoch takes 31s"
        );
        assert_eq!(
            StopReason::StoppedByUser {
                epoch: 3,
                iteration: Some(7)
            }
            .to_string(),
            "stopped by the user at epoch 3, iteration 7"
        );
    }

    #[test]
    fn rss_is_read_from_proc() {
        if std::path::Path::new("/proc/self/statm").exists() {
            let rss = current_rss_bytes().expect("statm parses");
            // A test binary is bigger than 1 MiB and smaller than 64 GiB.
            assert!(rss > 1 << 20 && rss < 64 << 30, "{rss}");
            assert!(page_size().is_power_of_two());
        }
    }
}
