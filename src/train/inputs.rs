//! What a training run feeds the model: the train and validation splits as decoded images or as
//! a frozen backbone's cached features, their captions as ids, and greedy decoding of a split for
//! validation BLEU-4.

use burn::prelude::*;

use super::config::{BackboneKind, FrozenEncoder, TrainConfig};
use super::feature_cache::{self, ExtractOptions, FeatureCache, SplitFeatures};
use crate::data::batch::{ImageStore, StoreOptions};
use crate::data::image::{Normalization, ResizeMode};
use crate::data::text::{Vocabulary, tokenize};
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::Captioner;
use crate::model::backbone::Backbone;
use crate::model::decode::DecodeOptions;
use crate::model::fast_decode::{FastDecoder, decode_with};
use crate::model::guide::Guidance;

/// Normalisation used for models trained here.
pub const TRAIN_NORMALIZATION: Normalization = Normalization::Imagenet;

/// Generated token lists and, for each, the reference token lists.
pub type DecodedSplit = (Vec<Vec<String>>, Vec<Vec<Vec<String>>>);

/// What a split feeds the model: decoded images for a CNN trained with the decoder, or the
/// cached features of a frozen backbone.
#[derive(Debug, Clone)]
pub enum SplitInputs {
    Images(ImageStore),
    Features(SplitFeatures),
}

impl SplitInputs {
    /// Number of usable images.
    pub fn len(&self) -> usize {
        match self {
            SplitInputs::Images(s) => s.len(),
            SplitInputs::Features(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample of image `i`.
    pub fn sample(&self, i: usize) -> &Sample {
        match self {
            SplitInputs::Images(s) => &s.images()[i].sample,
            SplitInputs::Features(f) => &f.samples[i],
        }
    }

    /// Features `[B, F]` of the images at `indices`: through the model's CNN, or from the cache.
    pub fn features(
        &self,
        model: &Captioner,
        indices: &[usize],
        device: &Device,
    ) -> Result<Tensor<2>> {
        Ok(self.inputs(model, indices, device)?.features(model))
    }

    /// What `model` reads for the images at `indices`, on `device`: their pixels, or their cached
    /// features. Fails when the model cannot read them (no CNN for images, another feature length).
    pub(crate) fn inputs(
        &self,
        model: &Captioner,
        indices: &[usize],
        device: &Device,
    ) -> Result<ModelInputs> {
        match self {
            SplitInputs::Images(store) => {
                if model.cnn.is_none() {
                    return Err(Error::Invalid(
                        "training on images needs a model with an image encoder".into(),
                    ));
                }
                Ok(ModelInputs::Images(store.tensor(
                    indices,
                    TRAIN_NORMALIZATION,
                    device,
                )?))
            }
            SplitInputs::Features(f) => {
                let mut values = Vec::with_capacity(indices.len() * f.dim);
                for &i in indices {
                    if i >= f.len() {
                        return Err(Error::Invalid(format!(
                            "feature index {i} out of range ({} images)",
                            f.len()
                        )));
                    }
                    values.extend_from_slice(f.row(i));
                }
                if f.dim != model.input_dim() {
                    return Err(Error::Internal(format!(
                        "cached features have {} values per image, the model reads {}",
                        f.dim,
                        model.input_dim()
                    )));
                }
                Ok(ModelInputs::Cached(
                    Tensor::<1>::from_data(
                        TensorData::new(values, [indices.len() * f.dim]),
                        device,
                    )
                    .reshape([indices.len(), f.dim]),
                ))
            }
        }
    }
}

/// A batch of images as a model reads them, checked by [`SplitInputs::inputs`] to suit it.
#[derive(Debug, Clone)]
pub(crate) enum ModelInputs {
    /// Normalised pixels `[B, 3, H, W]`, for the model's CNN.
    Images(Tensor<4>),
    /// Cached features `[B, input_dim]`, finished by the model's tail when it has one.
    Cached(Tensor<2>),
}

impl ModelInputs {
    /// Features `[B, F]`.
    pub fn features(self, model: &Captioner) -> Tensor<2> {
        match self {
            ModelInputs::Images(images) => model
                .encode(images)
                .unwrap_or_else(|| unreachable!("SplitInputs::inputs checked the model's CNN")),
            ModelInputs::Cached(inputs) => model.finish(inputs),
        }
    }
}

/// Greedy-decodes up to `limit` images of a split (0: all) and returns (generated token lists,
/// reference token lists), in split order.
pub fn decode_split(
    model: &Captioner,
    vocab: &Vocabulary,
    images: &SplitInputs,
    limit: usize,
    batch_size: usize,
    device: &Device,
) -> Result<DecodedSplit> {
    let n = if limit == 0 {
        images.len()
    } else {
        images.len().min(limit)
    };
    let indices: Vec<usize> = (0..n).collect();
    let mut generated = Vec::with_capacity(n);
    // the CPU fast path gives the same captions as burn's path, faster
    let fast = if *device == Device::flex() {
        Some(FastDecoder::new(model)?)
    } else {
        None
    };
    for chunk in indices.chunks(batch_size.max(1)) {
        let features = images.features(model, chunk, device)?;
        let captions = decode_with(
            fast.as_ref(),
            model,
            features,
            DecodeOptions::default(),
            Guidance::default(),
        )?;
        for caption in captions {
            generated.push(tokenize(&vocab.decode(&caption.ids)));
        }
    }
    let references = (0..n)
        .map(|i| {
            images
                .sample(i)
                .captions
                .iter()
                .map(|c| tokenize(c))
                .collect()
        })
        .collect();
    Ok((generated, references))
}

/// Both splits, ready for the loop.
pub(crate) struct Prepared {
    pub vocab: Vocabulary,
    pub train_images: SplitInputs,
    pub val_images: SplitInputs,
    /// Encoded captions of each stored train image.
    pub train: Vec<Vec<Vec<usize>>>,
    pub val: Vec<Vec<Vec<usize>>>,
}

/// Builds the vocabulary (or takes a resumed run's) and reads both splits.
pub(crate) fn prepare(
    ds: &Dataset,
    config: &TrainConfig,
    device: &Device,
    vocab: Option<Vocabulary>,
    frozen: Option<(&FrozenEncoder, &Backbone)>,
) -> Result<Prepared> {
    let no_split = |split: &str, hint: &str| Error::Dataset {
        path: ds.source.clone(),
        message: format!("no images in the {split} split: {hint}"),
    };
    if ds.count(Split::Train) == 0 {
        return Err(no_split("train", "nothing to train on"));
    }
    if ds.count(Split::Val) == 0 {
        return Err(no_split(
            "val",
            "validation BLEU-4 needs one (give the dataset a val split, or leave splits out and capsearch makes one)",
        ));
    }
    let vocab = vocab.unwrap_or_else(|| {
        let tokens: Vec<Vec<String>> = ds
            .split(Split::Train)
            .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
            .collect();
        Vocabulary::build(
            tokens.iter().map(|c| c.as_slice()),
            config.data.word_count_threshold,
            true,
        )
    });
    let (train_images, val_images) = match frozen {
        None => {
            let opts = StoreOptions::new(config.data.image_size as u32, ResizeMode::Squash);
            tracing::info!(
                train = ds.count(Split::Train),
                val = ds.count(Split::Val),
                vocabulary = vocab.len(),
                "decoding images once into memory"
            );
            (
                SplitInputs::Images(ImageStore::build(ds, ds.split(Split::Train), &opts)?),
                SplitInputs::Images(ImageStore::build(ds, ds.split(Split::Val), &opts)?),
            )
        }
        Some((encoder, backbone)) => {
            let root = encoder
                .cache_dir
                .clone()
                .unwrap_or_else(|| feature_cache::default_root(ds));
            tracing::info!(
                train = ds.count(Split::Train),
                val = ds.count(Split::Val),
                vocabulary = vocab.len(),
                backbone = backbone.info.name,
                "frozen backbone: training the decoder on cached features"
            );
            let mut cache = FeatureCache::open(&root, backbone)?;
            let opts = ExtractOptions {
                batch_size: config.run.batch_size,
                ..Default::default()
            };
            let train: Vec<&Sample> = ds.split(Split::Train).collect();
            let val: Vec<&Sample> = ds.split(Split::Val).collect();
            let train = cache.features(backbone, ds, &train, "train", &opts, device)?;
            let val = cache.features(backbone, ds, &val, "val", &opts, device)?;
            cache.compact()?;
            (SplitInputs::Features(train), SplitInputs::Features(val))
        }
    };
    if train_images.is_empty() || val_images.is_empty() {
        return Err(no_split(
            if train_images.is_empty() {
                "train"
            } else {
                "val"
            },
            "none of its images could be read (see the warnings above)",
        ));
    }
    let max_len = config.data.max_caption_len;
    tracing::debug!(
        train = train_images.len(),
        val = val_images.len(),
        "images ready"
    );
    Ok(Prepared {
        train: encode_captions(&train_images, &vocab, max_len),
        val: encode_captions(&val_images, &vocab, max_len),
        vocab,
        train_images,
        val_images,
    })
}

/// Every caption of every usable image as ids (truncated to `max_len` words).
fn encode_captions(
    inputs: &SplitInputs,
    vocab: &Vocabulary,
    max_len: usize,
) -> Vec<Vec<Vec<usize>>> {
    (0..inputs.len())
        .map(|i| {
            inputs
                .sample(i)
                .captions
                .iter()
                .map(|c| {
                    let mut ids = vocab.encode(&tokenize(c));
                    ids.truncate(max_len);
                    ids
                })
                .collect()
        })
        .collect()
}

/// Loads a frozen encoder's backbone from its weights.
pub(crate) fn load_backbone(encoder: &FrozenEncoder, device: &Device) -> Result<Backbone> {
    match encoder.backbone {
        BackboneKind::Vgg16 => Backbone::vgg16(encoder.vgg16_config(), &encoder.weights, device),
        BackboneKind::Capsearch => Backbone::from_capsearch_model(&encoder.weights, device),
        BackboneKind::EfficientnetLite0
        | BackboneKind::EfficientnetLite1
        | BackboneKind::EfficientnetLite2 => {
            let variant = encoder.backbone.efficientnet_lite().unwrap_or_default();
            let config = encoder
                .efficientnet_config()
                .ok_or_else(|| Error::Invalid(format!("no EfficientNet-Lite{variant} shape")))?;
            Backbone::efficientnet(variant, config, &encoder.weights, device)
        }
        BackboneKind::Resnet18 | BackboneKind::Resnet50 => {
            let config = encoder
                .resnet_config()
                .ok_or_else(|| Error::Invalid("no ResNet shape".into()))?;
            Backbone::resnet(config, &encoder.weights, device)
        }
    }
    .and_then(|backbone| match encoder.train_from_block {
        Some(n) => backbone.cut_before(n),
        None => backbone.with_pooling(encoder.pooling()),
    })
}
