//! Training configuration, read from TOML (`configs/*.toml`) and saved next to every run.
//!
//! `encoder` holds `[model.encoder]`, `sections` the other tables, `overrides` what the command
//! line changes; this file holds the whole config, its loading and its validation.

mod encoder;
mod overrides;
mod sections;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use encoder::{BackboneKind, FrozenEncoder, TrainEncoder};
pub use overrides::{ConfigOverrides, parse_duration, run_config};
pub use sections::{DataSection, LoopSection, ModelSection, OptimSection, OptimizerKind, Schedule};
use sections::{default_data, default_loop, default_model, default_optim};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset used when `--dataset` is not given.
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default = "default_model")]
    pub model: ModelSection,
    #[serde(default = "default_data")]
    pub data: DataSection,
    #[serde(default = "default_optim")]
    pub optim: OptimSection,
    #[serde(default = "default_loop", rename = "loop")]
    pub run: LoopSection,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: None,
            model: default_model(),
            data: default_data(),
            optim: default_optim(),
            run: default_loop(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config; errors name the file, the line and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Parse {
                location, message, ..
            } => Error::parse(path, location, message),
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            });
            Error::parse("config", location, e.message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: &str| {
            Err(Error::Config {
                field: field.to_string(),
                message: message.to_string(),
            })
        };
        if self.run.batch_size == 0 {
            return bad("loop.batch_size", "must be at least 1");
        }
        if self.run.epochs == 0 {
            return bad("loop.epochs", "must be at least 1");
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return bad("model.dropout", "must be in [0, 1)");
        }
        if !(self.model.concept_loss >= 0.0 && self.model.concept_loss.is_finite()) {
            return bad(
                "model.concept_loss",
                "must be 0 (off) or a positive weight such as 0.5",
            );
        }
        if !(self.model.concept_weight >= 0.0 && self.model.concept_weight.is_finite()) {
            return bad(
                "model.concept_weight",
                "must be 0 (off) or a positive weight such as 1",
            );
        }
        if self.model.concept_weight > 0.0 && self.model.concept_loss == 0.0 {
            return bad(
                "model.concept_weight",
                "guides decoding with the concept head, which concept_loss = 0 turns off: set concept_loss > 0 or concept_weight = 0",
            );
        }
        if !(1..=64).contains(&self.model.beam_size) {
            return bad("model.beam_size", "must be 1 (greedy) to 64, such as 3");
        }
        let weight = |w: f64| w >= 0.0 && w.is_finite();
        if !self.model.kind_weight.is_none_or(weight) {
            return bad(
                "model.kind_weight",
                "must be a weight ≥ 0 such as 1, or left out",
            );
        }
        if !(0.0..1.0).contains(&self.model.kind_floor) {
            return bad(
                "model.kind_floor",
                "must be a probability in [0, 1) such as 0.1 (0: no floor)",
            );
        }
        if !weight(self.model.relative_weight) {
            return bad(
                "model.relative_weight",
                "must be 0 (off) or a weight such as 0.5",
            );
        }
        if self.model.embed_size == 0 || self.model.hidden_size == 0 {
            return bad("model.embed_size/hidden_size", "must be at least 1");
        }
        if self.data.max_caption_len == 0 {
            return bad("data.max_caption_len", "must be at least 1");
        }
        match &self.model.encoder {
            TrainEncoder::SmallCnn(c) => {
                if c.depth == 0 || c.width == 0 || c.grid == 0 {
                    return bad("model.encoder", "width, depth and grid must be at least 1");
                }
                if self.data.image_size >> c.depth < c.grid {
                    return bad(
                        "data.image_size",
                        "too small for the encoder: image_size / 2^depth must be at least grid",
                    );
                }
            }
            TrainEncoder::Frozen(f) => {
                let shape = [f.width, f.hidden, f.pool];
                if f.backbone == BackboneKind::Capsearch && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; a capsearch backbone has the shape of its model",
                    );
                }
                if f.backbone.resnet().is_some() && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; a ResNet's shape goes in [model.encoder.resnet]",
                    );
                }
                match (&f.resnet, f.backbone.resnet()) {
                    (Some(_), None) => {
                        return bad(
                            "model.encoder.resnet",
                            "is for backbone = \"resnet18\" or \"resnet50\" only",
                        );
                    }
                    (Some(shape), Some(_)) => {
                        if let Err(e) = shape.validate() {
                            return bad("model.encoder.resnet", &e.to_string());
                        }
                    }
                    _ => {}
                }
                if f.backbone.efficientnet_lite().is_some() && shape.iter().any(Option::is_some) {
                    return bad(
                        "model.encoder",
                        "width, hidden and pool are for backbone = \"vgg16\"; an EfficientNet's shape goes in [model.encoder.efficientnet]",
                    );
                }
                match (&f.efficientnet, f.backbone.efficientnet_lite()) {
                    (Some(_), None) => {
                        return bad(
                            "model.encoder.efficientnet",
                            "is for backbone = \"efficientnet-lite0\" (-lite1, -lite2) only",
                        );
                    }
                    (Some(shape), Some(_)) => {
                        if let Err(e) = shape.validate() {
                            return bad("model.encoder.efficientnet", &e.to_string());
                        }
                    }
                    _ => {}
                }
                if shape.contains(&Some(0)) {
                    return bad("model.encoder", "width, hidden and pool must be at least 1");
                }
                if f.pooling.is_some_and(|p| !p.is_mean()) && !f.pools_a_map() {
                    return bad(
                        "model.encoder.pooling",
                        "is for a whole backbone = \"efficientnet-lite0\" (-lite1, -lite2), \"resnet18\" or \"resnet50\" (without train_from_block); leave it out or set \"mean\"",
                    );
                }
                if let Some(n) = f.train_from_block {
                    use crate::model::finetune::{TailNetwork, check_split};
                    let network = match (f.efficientnet_config(), f.resnet_config()) {
                        (Some(c), _) => TailNetwork::EfficientNet(c),
                        (None, Some(c)) => TailNetwork::ResNet(c),
                        (None, None) => {
                            return bad(
                                "model.encoder.train_from_block",
                                "is for backbone = \"efficientnet-lite0\" (-lite1, -lite2), \"resnet18\" or \"resnet50\"",
                            );
                        }
                    };
                    check_split(&network, n)?;
                }
                if f.weights.as_os_str().is_empty() {
                    return bad(
                        "model.encoder.weights",
                        "name the backbone's weights (efficientnet-lite*: a .pth from datasets/fetch-weights.sh; resnet18/resnet50: torchvision's .pth or safetensors; vgg16: a .pth or safetensors file; capsearch: a model directory)",
                    );
                }
            }
        }
        if self.model.tanh_c_version > 1 {
            return bad("model.tanh_c_version", "must be 0 or 1");
        }
        self.time_budget()?;
        Ok(())
    }

    /// The parsed time budget.
    pub fn time_budget(&self) -> Result<Option<Duration>> {
        self.run
            .time_budget
            .as_deref()
            .map(parse_duration)
            .transpose()
    }

    /// Writes the config as TOML (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::util::write_atomic(path, text.as_bytes())
    }
}
