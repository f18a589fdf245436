//! A NeuralTalk checkpoint as a capsearch model directory.
//!
//! The arrays map one-to-one onto the captioner's parameters, which carry NeuralTalk's names:
//! `We`→`we`, `be` (1×D)→`be` (D), `Ws`→`ws`, `WLSTM`→`lstm.wlstm`, `Wd`→`wd`, `bd` (1×V)→`bd` (V).
//! The vocabulary is `ixtoword` as it is (index 0 = `.`, NeuralTalk's END and START), without an
//! `<unk>`: NeuralTalk dropped rare words.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;

use super::neuraltalk::{Array2, NeuralTalkCheckpoint};
use crate::data::text::Vocabulary;
use crate::error::{Error, Result};
use crate::model::artifact::{ModelInfo, Preprocessing, VGG16_WEIGHTS, save_model, save_weights};
use crate::model::vgg16::{INPUT_SIZE, Vgg16Config};
use crate::model::{Captioner, CaptionerConfig, EncoderConfig};

/// Name of the backbone NeuralTalk's features come from.
pub const NEURALTALK_BACKBONE: &str = "vgg16-fc7";

fn matrix(a: &Array2, device: &Device) -> Tensor<2> {
    Tensor::<1>::from_data(TensorData::new(a.data.clone(), [a.rows * a.cols]), device)
        .reshape([a.rows, a.cols])
}

fn vector(a: &Array2, device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(a.data.clone(), [a.rows * a.cols]), device)
}

/// The captioner config of a checkpoint.
pub fn captioner_config(ckpt: &NeuralTalkCheckpoint) -> CaptionerConfig {
    CaptionerConfig::new(
        EncoderConfig::Precomputed {
            dim: ckpt.feature_size(),
            backbone: NEURALTALK_BACKBONE.into(),
        },
        ckpt.vocab_size(),
    )
    .with_embed_size(ckpt.encoding_size())
    .with_hidden_size(ckpt.hidden_size())
    .with_dropout(0.0)
    .with_tanh_c_version(u8::from(ckpt.tanhc_version))
}

/// Builds the captioner holding the checkpoint's weights.
pub fn to_captioner(ckpt: &NeuralTalkCheckpoint, device: &Device) -> Captioner {
    let mut model = captioner_config(ckpt).init(device);
    model.we = Param::from_tensor(matrix(&ckpt.we, device));
    model.be = Param::from_tensor(vector(&ckpt.be, device));
    model.ws = Param::from_tensor(matrix(&ckpt.ws, device));
    model.lstm.wlstm = Param::from_tensor(matrix(&ckpt.wlstm, device));
    model.wd = Param::from_tensor(matrix(&ckpt.wd, device));
    model.bd = Param::from_tensor(vector(&ckpt.bd, device));
    model
}

/// The checkpoint's vocabulary.
pub fn vocabulary(ckpt: &NeuralTalkCheckpoint) -> Vocabulary {
    let threshold = ckpt
        .params
        .get("word_count_threshold")
        .and_then(|v| v.as_u64())
        .unwrap_or(5) as usize;
    Vocabulary::from_words(ckpt.ixtoword.clone(), None, threshold)
}

/// Writes a model directory from a NeuralTalk pickle; with `vgg16`, also imports VGG-16 weights so
/// the model captions raw images end to end. Returns the checkpoint and what the VGG load reported.
pub fn import(
    pickle: &Path,
    vgg16: Option<&Path>,
    out: &Path,
    device: &Device,
) -> Result<(
    NeuralTalkCheckpoint,
    Option<crate::model::vgg16::WeightsReport>,
)> {
    let ckpt = NeuralTalkCheckpoint::load(pickle)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "neuraltalk".into());
    let report = match vgg16 {
        Some(path) => {
            let config = Vgg16Config::new();
            if config.feature_dim() != ckpt.feature_size() {
                return Err(Error::Import {
                    path: pickle.to_path_buf(),
                    message: format!(
                        "the model takes {}-d features, but VGG-16 fc7 gives {}",
                        ckpt.feature_size(),
                        config.feature_dim()
                    ),
                });
            }
            let mut vgg = config.init(device);
            let report = vgg.load_weights(path)?;
            save_weights(vgg, &out.join(VGG16_WEIGHTS))?;
            Some(report)
        }
        None => None,
    };
    let info = ModelInfo {
        name,
        captioner: captioner_config(&ckpt),
        preprocessing: Preprocessing {
            image_size: INPUT_SIZE as usize,
            normalization: "caffe".into(),
        },
        produced_by: format!("capsearch import-neuraltalk {}", pickle.display()),
        capsearch_version: env!("CARGO_PKG_VERSION").into(),
        dataset: ckpt
            .params
            .get("dataset")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        epoch: ckpt.epoch.map(|e| e.round() as usize),
        val_bleu4: None,
    };
    save_model(out, &info, &vocabulary(&ckpt), to_captioner(&ckpt, device))?;
    Ok((ckpt, report))
}
