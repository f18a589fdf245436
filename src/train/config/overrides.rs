//! What the command line changes in a config (`capsearch train`'s overrides), durations, and the
//! config a new or resumed run trains with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::run_dir::RunDir;

use super::TrainConfig;

/// Parses "90s", "10m", "1h30m", "2h", or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let err = || {
        Error::Invalid(format!(
            "invalid duration {text:?}: use a number with a unit, e.g. 90s, 10m, 1h30m"
        ))
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(err())
        };
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
        } else {
            let value: f64 = number.parse().map_err(|_| err())?;
            number.clear();
            total += value
                * match c {
                    's' => 1.0,
                    'm' => 60.0,
                    'h' => 3600.0,
                    'd' => 86400.0,
                    _ => return Err(err()),
                };
        }
    }
    if !number.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// What the command line may change in a config: `capsearch train`'s overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    /// The dataset (over the config's `dataset`).
    pub dataset: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub time_budget: Option<String>,
    pub seed: Option<u64>,
    pub devices: Option<Vec<String>>,
}

impl ConfigOverrides {
    /// Applies the overrides to `config`.
    pub fn apply(&self, config: &mut TrainConfig) {
        if let Some(v) = &self.dataset {
            config.dataset = Some(v.display().to_string());
        }
        if let Some(v) = self.epochs {
            config.run.epochs = v;
        }
        if let Some(v) = self.batch_size {
            config.run.batch_size = v;
        }
        if let Some(v) = self.lr {
            config.optim.lr = v;
        }
        if let Some(v) = &self.time_budget {
            config.run.time_budget = Some(v.clone());
        }
        if let Some(v) = self.seed {
            config.run.seed = v;
        }
        if let Some(v) = &self.devices {
            config.run.devices = v.clone();
        }
    }
}

/// The config a run trains with. A resumed run continues with its own `config.toml` (the config
/// it started with, overrides included), not `config_path`; a new run reads `config_path`. The
/// overrides are applied on top either way (so `--resume --epochs 40` extends a run), and the
/// result is validated. The dataset must then be known, from the overrides or the config.
pub fn run_config(
    config_path: &Path,
    run: &RunDir,
    resume: bool,
    overrides: &ConfigOverrides,
) -> Result<TrainConfig> {
    let mut config = if resume && run.config().exists() {
        TrainConfig::load(&run.config())?
    } else {
        TrainConfig::load(config_path)?
    };
    overrides.apply(&mut config);
    config.validate()?;
    if config.dataset.is_none() {
        return Err(Error::Invalid(
            "no dataset: pass --dataset PATH or set `dataset` in the config".into(),
        ));
    }
    Ok(config)
}
