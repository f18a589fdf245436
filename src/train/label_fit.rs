//! Fitting a model's label head (`labels.json`, see [`crate::model::label_head`]) on a dataset's
//! labelled images: each image's features (from the feature cache training filled, for a model on
//! a whole frozen backbone; else through the model's encoder) beside its label set.

use std::collections::BTreeSet;
use std::path::PathBuf;

use indicatif::ProgressBar;

use super::feature_cache::{self, ExtractOptions, FeatureCache};
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::captioner::EncoderConfig;
use crate::model::guide_head::GuideFit;
use crate::model::inference::CaptionEngine;
use crate::model::label_head::{LabelHead, LabelValues};
use crate::model::pooling::Pooling;

/// What [`fit_label_head`] reads and how it fits.
#[derive(Debug, Clone)]
pub struct LabelFitOptions {
    /// The split whose labelled images are used.
    pub split: Split,
    /// Use only the first N labelled images of the split.
    pub limit: Option<usize>,
    /// Images per model call.
    pub batch_size: usize,
    pub fit: GuideFit,
    /// The feature cache folder of a model on a whole frozen backbone (default: `features/`
    /// beside the dataset, as training uses).
    pub cache_root: Option<PathBuf>,
    /// The head's [`LabelHead::scale`]: above 1, each image is read at that many times the
    /// model's size (computed, not from the cache).
    pub scale: u32,
    /// The head's [`LabelHead::values`].
    pub values: LabelValues,
    /// The head's [`LabelHead::pooling`]: computed, not from the cache.
    pub pooling: Option<Pooling>,
}

impl Default for LabelFitOptions {
    fn default() -> Self {
        LabelFitOptions {
            split: Split::Train,
            limit: None,
            batch_size: 32,
            fit: GuideFit::default(),
            cache_root: None,
            scale: 1,
            values: LabelValues::default(),
            pooling: None,
        }
    }
}

/// The fitted head, with the images that could not be read (and why).
pub struct LabelFit {
    pub head: LabelHead,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Fits a label head for `engine`'s model on the labelled images of `dataset`'s split. Fails,
/// naming the dataset, when the split has fewer than two labelled images (only generated
/// datasets such as `shapes` and `scenes` carry labels).
pub fn fit_label_head(
    engine: &CaptionEngine,
    dataset: &Dataset,
    options: &LabelFitOptions,
    progress: Option<&ProgressBar>,
) -> Result<LabelFit> {
    if !engine.takes_images() {
        return Err(Error::Invalid(format!(
            "model {} takes precomputed features, not images, so a label head cannot be fitted \
             on its encoder",
            engine.model_id()
        )));
    }
    let samples: Vec<_> = dataset
        .samples
        .iter()
        .filter(|s| s.split == options.split && s.labels.is_some())
        .take(options.limit.unwrap_or(usize::MAX))
        .collect();
    if samples.len() < 2 {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "the {} split has {} images with object labels; a label head needs at least 2 \
                 (only generated datasets such as `shapes` and `scenes` write labels): pick \
                 another --split or dataset",
                options.split,
                samples.len()
            ),
        });
    }
    if options.scale > 1 && !engine.reads_whole_backbone() {
        return Err(Error::Invalid(format!(
            "a label head at scale {} reads images at another size, which only a model on a \
             whole frozen EfficientNet-Lite or ResNet can; model {} is not one: use scale 1",
            options.scale,
            engine.model_id()
        )));
    }
    if let Some(pooling) = options.pooling.filter(|_| !engine.reads_whole_backbone()) {
        return Err(Error::Invalid(format!(
            "a label head pooled by {pooling} pools a backbone's last map, which only a model on \
             a whole frozen EfficientNet-Lite or ResNet has; model {} is not one: leave the \
             pooling out",
            engine.model_id()
        )));
    }
    let cached = options.scale == 1
        && options.pooling.is_none()
        && matches!(
            engine.loaded.info.captioner.encoder,
            EncoderConfig::Precomputed { .. }
        );
    let (features, sets, skipped) = match engine.backbone() {
        Some(backbone) if cached => {
            let root = options
                .cache_root
                .clone()
                .unwrap_or_else(|| feature_cache::default_root(dataset));
            let mut cache = FeatureCache::open(&root, backbone)?;
            let split = cache.features(
                backbone,
                dataset,
                &samples,
                &options.split.to_string(),
                &ExtractOptions::default(),
                &engine.device,
            )?;
            let sets = split.samples.iter().map(label_set_of).collect();
            let skipped = split
                .failed
                .iter()
                .map(|f| (dataset.image_root.join(&f.entry), f.reason.clone()))
                .collect();
            (split.values, sets, skipped)
        }
        _ => encode(engine, dataset, &samples, options, progress)?,
    };
    let dims = engine.label_input_dims(options.pooling);
    let fitted_on = format!("{} ({} split)", dataset.source.display(), options.split);
    let mut head = LabelHead::fit(&features, dims, &sets, &options.fit, &fitted_on)?;
    head.scale = options.scale;
    head.values = options.values;
    head.pooling = options.pooling;
    Ok(LabelFit { head, skipped })
}

fn label_set_of(sample: &Sample) -> BTreeSet<String> {
    sample
        .labels
        .as_ref()
        .map(|l| l.label_set())
        .unwrap_or_default()
}

/// Each sample through the model's encoder: the features (row-major), the label sets, and the
/// images that could not be read.
#[allow(clippy::type_complexity)]
fn encode(
    engine: &CaptionEngine,
    dataset: &Dataset,
    samples: &[&Sample],
    options: &LabelFitOptions,
    progress: Option<&ProgressBar>,
) -> Result<(Vec<f32>, Vec<BTreeSet<String>>, Vec<(PathBuf, String)>)> {
    if let Some(bar) = progress {
        bar.set_length(samples.len() as u64);
    }
    let mut features = Vec::with_capacity(samples.len() * engine.label_input_dims(options.pooling));
    let mut sets = Vec::with_capacity(samples.len());
    let mut skipped = Vec::new();
    for chunk in samples.chunks(options.batch_size.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len());
        for sample in chunk {
            let path = dataset.image_path(sample);
            match engine.prepare_image(&path) {
                Ok(p) => {
                    pixels.push(p);
                    sets.push(label_set_of(sample));
                }
                Err(e) => skipped.push((path, e.to_string())),
            }
        }
        for row in engine.feature_rows_of_pixels_at(&pixels, options.scale, options.pooling)? {
            features.extend(row);
        }
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok((features, sets, skipped))
}
