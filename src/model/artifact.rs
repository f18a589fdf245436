//! A model directory on disk, self-describing: everything needed to caption with it.
//!
//! ```text
//! checkpoints/NAME/
//!   model.json    what the model is (ModelInfo: sizes, encoder, preprocessing, provenance)
//!   vocab.json    the vocabulary
//!   model.bpk     the weights (burnpack), the best checkpoint of a training run
//! ```
//! Training runs add `config.toml`, `metrics.csv` and `last/` (resume state) beside them (see
//! [`super::run_dir`]).
//! Models trained on a frozen backbone add `backbone.json` and `backbone.bpk` (see
//! [`super::backbone`]).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use super::captioner::{Captioner, CaptionerConfig};
use super::precision::Precision;
use crate::data::text::Vocabulary;
use crate::error::{Error, Result};

pub const MODEL_INFO: &str = "model.json";
pub const VOCAB: &str = "vocab.json";
pub const WEIGHTS: &str = "model.bpk";
/// A frozen VGG-16 encoder's weights, present in models imported with `--vgg16`.
pub const VGG16_WEIGHTS: &str = "vgg16.bpk";

/// How images are prepared for the encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Side length images are squashed to.
    pub image_size: usize,
    /// Normalisation preset name (see `data::image`).
    pub normalization: String,
}

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// A short identifier (the directory name at creation), used as the model id in search indexes.
    pub name: String,
    pub captioner: CaptionerConfig,
    pub preprocessing: Preprocessing,
    /// What produced the weights: "capsearch train", "capsearch import-neuraltalk", ...
    pub produced_by: String,
    pub capsearch_version: String,
    /// Dataset the model was trained on, when known.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Epoch of the saved weights, when trained here.
    #[serde(default)]
    pub epoch: Option<usize>,
    /// Validation BLEU-4 (0–100, coco convention, greedy decoding) of the saved weights.
    #[serde(default)]
    pub val_bleu4: Option<f64>,
}

/// A loaded model directory.
#[derive(Debug)]
pub struct LoadedModel {
    pub dir: PathBuf,
    pub info: ModelInfo,
    pub vocab: Vocabulary,
    pub model: Captioner,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            path,
            Some(format!("line {}, column {}", e.line(), e.column())),
            e.to_string(),
        )
    })
}

impl ModelInfo {
    pub fn load(dir: &Path) -> Result<Self> {
        read_json(&dir.join(MODEL_INFO))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::serialize(dir.join(MODEL_INFO), e))?;
        crate::util::write_atomic(&dir.join(MODEL_INFO), json.as_bytes())
    }
}

/// Saves a module's weights atomically (temporary file, then rename).
pub fn save_weights<M: Module>(module: M, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension("bpk.tmp");
    module.into_record().save(&tmp).map_err(|e| Error::Model {
        path: tmp.clone(),
        message: format!("cannot write weights: {e:?}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads weights saved by [`save_weights`] into `module`.
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M> {
    if !path.exists() {
        return Err(Error::Model {
            path: path.to_path_buf(),
            message: "weights file is missing".into(),
        });
    }
    let record = ModuleRecord::load(path).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        message: format!("cannot read weights: {e:?}"),
    })?;
    // A record that does not fit the module (wrong sizes, other model) is refused by burn with a
    // panic; catch it and turn it into an error that names the file.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.load_record(record))).map_err(
        |_| Error::Model {
            path: path.to_path_buf(),
            message: "weights do not match model.json (different sizes or another model)".into(),
        },
    )
}

/// Path of the half-precision copy of a weights file: `model.bpk` → `model.f16.bpk`.
pub fn half_copy_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("f16.bpk")
}

/// Loads weights saved by [`save_weights`] into `module`, held in `precision`.
///
/// For `f16`, the half-precision copy beside the file ([`half_copy_path`]) is loaded when it is
/// newer than the file, so the `f32` weights are never all in memory at once. Otherwise the
/// `f32` weights are loaded and cast, and the copy is written for the next load (when the folder
/// is writable; a read-only model folder only costs the higher peak).
pub fn load_weights_as<M: Module>(module: M, path: &Path, precision: Precision) -> Result<M> {
    if precision == Precision::F32 {
        return Ok(precision.apply(load_weights(module, path)?));
    }
    let half = half_copy_path(path);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = matches!((modified(&half), modified(path)), (Some(h), Some(f)) if h >= f);
    if fresh {
        match load_weights(module.clone(), &half) {
            Ok(m) => return Ok(precision.apply(m)),
            Err(e) => tracing::warn!("ignoring the half-precision copy: {e}"),
        }
    }
    let cast = precision.apply(load_weights(module, path)?);
    match save_weights(cast.clone(), &half) {
        Ok(()) => tracing::info!(
            "wrote a half-precision copy of the weights: {}",
            half.display()
        ),
        Err(e) => tracing::warn!("could not write a half-precision copy of the weights: {e}"),
    }
    Ok(cast)
}

/// Writes a complete model directory: `model.json`, `vocab.json` and `model.bpk`.
pub fn save_model(
    dir: &Path,
    info: &ModelInfo,
    vocab: &Vocabulary,
    model: Captioner,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    vocab.save(&dir.join(VOCAB))?;
    save_weights(model, &dir.join(WEIGHTS))?;
    info.save(dir)
}

/// Loads a model directory onto `device`.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel> {
    load_model_as(dir, device, Precision::F32)
}

/// [`load_model`] with the weights held in `precision` (see [`load_weights_as`]).
pub fn load_model_as(dir: &Path, device: &Device, precision: Precision) -> Result<LoadedModel> {
    if !dir.is_dir() {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "not a model directory: train one with `capsearch train` or import one with `capsearch import-neuraltalk`".into(),
        });
    }
    let info = ModelInfo::load(dir)?;
    let vocab = Vocabulary::load(&dir.join(VOCAB))?;
    if vocab.len() != info.captioner.vocab_size {
        return Err(Error::Model {
            path: dir.join(VOCAB),
            message: format!(
                "vocabulary has {} words but model.json says {}",
                vocab.len(),
                info.captioner.vocab_size
            ),
        });
    }
    let model = load_weights_as(info.captioner.init(device), &dir.join(WEIGHTS), precision)?;
    Ok(LoadedModel {
        dir: dir.to_path_buf(),
        info,
        vocab,
        model: model.valid(),
    })
}
