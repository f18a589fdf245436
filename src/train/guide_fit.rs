//! Fitting a model's guide head (see [`crate::model::guide_head`]) on a split's cached features:
//! at the start of training (frozen backbones), and afterwards for an existing model
//! (`capsearch fit-guide`, [`add_guide_head`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;

use super::feature_cache::{self, ExtractOptions, FeatureCache, SplitFeatures};
use crate::data::text::tokenize;
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::artifact::{self, load_model};
use crate::model::backbone::Backbone;
use crate::model::captioner::EncoderConfig;
use crate::model::guide_head::{
    FittedHead, GuideFit, GuideHead, GuideHeadInfo, fit_guide_head, word_shares,
};
use crate::model::precision::Precision;

/// Fits a guide head on a split's cached features and each image's captions (word ids, in the
/// features' sample order), for a vocabulary of `vocab` words.
pub fn fit_on_features(
    features: &SplitFeatures,
    captions: &[Vec<Vec<usize>>],
    vocab: usize,
    fit: &GuideFit,
    fitted_on: &str,
) -> Result<(FittedHead, GuideHeadInfo)> {
    if captions.len() != features.len() {
        return Err(Error::Internal(format!(
            "guide head: {} images of captions for {} features",
            captions.len(),
            features.len()
        )));
    }
    let started = Instant::now();
    let targets = word_shares(captions, vocab);
    let head = fit_guide_head(
        &features.values,
        features.dim,
        &targets,
        vocab,
        fit,
        fitted_on,
    )?;
    tracing::info!(
        images = features.len(),
        epochs = fit.epochs,
        loss = head.loss,
        seconds = started.elapsed().as_secs_f64(),
        "fitted the guide head on the standardised features"
    );
    let info = GuideHeadInfo {
        fitted_on: fitted_on.to_string(),
        images: features.len(),
        fit: fit.clone(),
    };
    Ok((head, info))
}

/// What [`add_guide_head`] did.
#[derive(Debug, Clone)]
pub struct AddedGuideHead {
    pub info: GuideHeadInfo,
    /// The last epoch's mean loss.
    pub loss: f64,
    pub seconds: f64,
    /// The feature cache read.
    pub cache: PathBuf,
}

/// Fits a guide head for the model in `dir` on the `split` images of `dataset` (their features
/// from the dataset's feature cache of the model's backbone, `cache_root` or the default beside
/// the dataset; computed and cached when missing) and saves it in the model (`model.bpk` and
/// `guide_head` in model.json), replacing one fitted before. Only models on a whole frozen
/// backbone (precomputed features, no fine-tuned blocks) can have one.
pub fn add_guide_head(
    dir: &Path,
    dataset: &Dataset,
    split: Split,
    cache_root: Option<&Path>,
    fit: &GuideFit,
    device: &Device,
) -> Result<AddedGuideHead> {
    let started = Instant::now();
    let mut loaded = load_model(dir, device)?;
    if !matches!(
        loaded.info.captioner.encoder,
        EncoderConfig::Precomputed { .. }
    ) {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "a guide head reads a frozen backbone's features; this model trains its own CNN or fine-tunes backbone blocks".into(),
        });
    }
    let Some((backbone, _)) = Backbone::of_model_dir(dir, &loaded.info, device, Precision::F32)?
    else {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "the model folder has no backbone (backbone.json) to compute features with"
                .into(),
        });
    };
    let root = cache_root.map_or_else(|| feature_cache::default_root(dataset), Path::to_path_buf);
    let mut cache = FeatureCache::open(&root, &backbone)?;
    let samples: Vec<&Sample> = dataset.split(split).collect();
    let features = cache.features(
        &backbone,
        dataset,
        &samples,
        &split.to_string(),
        &ExtractOptions::default(),
        device,
    )?;
    if features.len() < 2 {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "the {split} split has {} readable images; a guide head needs at least 2",
                features.len()
            ),
        });
    }
    let vocab = &loaded.vocab;
    let captions: Vec<Vec<Vec<usize>>> = features
        .samples
        .iter()
        .map(|s| {
            s.captions
                .iter()
                .map(|c| vocab.encode(&tokenize(c)))
                .collect()
        })
        .collect();
    let fitted_on = format!("{} ({split} split)", dataset.source.display());
    let (head, info) = fit_on_features(&features, &captions, vocab.len(), fit, &fitted_on)?;
    loaded.model.guide_head = Some(GuideHead::from_fit(&head, device));
    loaded.info.captioner.guide_head = Some(info.clone());
    artifact::save_weights(loaded.model, &dir.join(artifact::WEIGHTS))?;
    loaded.info.save(dir)?;
    Ok(AddedGuideHead {
        info,
        loss: head.loss,
        seconds: started.elapsed().as_secs_f64(),
        cache: cache.dir().to_path_buf(),
    })
}
