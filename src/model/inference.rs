//! Captioning with a saved model: images or precomputed features in, captions out.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::artifact::{LoadedModel, load_model_as};
use super::backbone::Backbone;
use super::captioner::EncoderConfig;
use super::decode::{DecodeOptions, decode_guided};
use super::embedding_stats::{EMBEDDING_STATS, EmbeddingStats};
use super::fast_cnn::FastCnn;
use super::fast_decode::{FastDecoder, decode_with};
use super::guide::Guidance;
use super::label_head::{LABEL_HEAD, LabelHead, LabelValues};
use super::pooling::Pooling;
use super::precision::Precision;
use crate::data::image::{ImageLimits, Normalization, ResizeMode};
use crate::error::{Error, Result};

/// A generated caption, with the image's embedding from the same forward pass.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generated {
    pub caption: String,
    pub logprob: f64,
    /// The image's embedding for visual search (see [`CaptionEngine::embedder`]): the frozen
    /// backbone's feature, or the small CNN's feature projected by the captioner (`We`, `be`);
    /// with a label head (`labels.json`), the square roots of its label probabilities.
    /// `None` when the caption came from features the engine cannot embed.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

/// What a [`CaptionEngine`]'s embeddings are: their length and, in words, what computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedder {
    pub dims: usize,
    pub name: String,
}

/// A loaded model ready to caption.
pub struct CaptionEngine {
    pub loaded: LoadedModel,
    /// A frozen backbone that turns images into the model's features (EfficientNet, VGG-16, ...).
    backbone: Option<Backbone>,
    /// The decoder's CPU fast path (on the CPU device; `None` on a GPU, where burn's path runs).
    fast: Option<FastDecoder>,
    /// The small CNN's CPU fast path (`None`: no small CNN, not `f32`, or not on the CPU).
    fast_cnn: Option<FastCnn>,
    pub device: Device,
    /// Precision of the weights in memory (`f16`: the lower-memory option).
    pub precision: Precision,
    pub limits: ImageLimits,
    normalization: Normalization,
    /// `embedding.json`: the statistics that standardise the embeddings, when fitted.
    embedding_stats: Option<EmbeddingStats>,
    /// `labels.json`: the label head whose probabilities are the embeddings, when fitted.
    label_head: Option<LabelHead>,
}

impl CaptionEngine {
    /// Loads `checkpoints/NAME` onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Self::load_with(dir, device, Precision::F32)
    }

    /// Loads `checkpoints/NAME` onto `device`, holding the weights in `precision`.
    pub fn load_with(dir: &Path, device: Device, precision: Precision) -> Result<Self> {
        if precision == Precision::F16 && device != Device::flex() {
            return Err(Error::option(
                "--precision f16",
                "is supported on the CPU device only; use f32 on a GPU",
            ));
        }
        let loaded = load_model_as(dir, &device, precision)?;
        let name = &loaded.info.preprocessing.normalization;
        let Some(normalization) = super::backbone::parse_normalization(name) else {
            return Err(Error::Model {
                path: dir.join(super::artifact::MODEL_INFO),
                message: format!(
                    "unknown normalization {name:?} (expected imagenet, caffe, unit or efficientnet)"
                ),
            });
        };
        let backbone = match loaded.model.cnn {
            Some(_) => None,
            None => Backbone::of_model_dir(dir, &loaded.info, &device, precision)?.map(|(b, _)| b),
        };
        if let Some(b) = &backbone
            && b.feature_dim() != loaded.model.input_dim()
        {
            return Err(Error::Model {
                path: dir.join(super::backbone::BACKBONE_INFO),
                message: format!(
                    "the backbone gives {}-d features but the decoder takes {}",
                    b.feature_dim(),
                    loaded.model.input_dim()
                ),
            });
        }
        let fast = if device == Device::flex() {
            Some(FastDecoder::with_precision(&loaded.model, precision)?)
        } else {
            None
        };
        let fast_cnn = match &loaded.model.cnn {
            Some(cnn) if device == Device::flex() => FastCnn::new(cnn)?,
            _ => None,
        };
        let embedding_stats = EmbeddingStats::read(dir)?;
        let label_head = LabelHead::read(dir)?;
        let engine = Self {
            loaded,
            backbone,
            fast,
            fast_cnn,
            precision,
            device,
            limits: ImageLimits::default(),
            normalization,
            embedding_stats,
            label_head,
        };
        if let Some(head) = &engine.label_head {
            if head.reads_own_features() && !engine.reads_whole_backbone() {
                return Err(Error::Model {
                    path: LabelHead::path(dir),
                    message: format!(
                        "reads {}, which only a model on a whole frozen EfficientNet-Lite or \
                         ResNet can: fit it again with `capsearch fit-labels` without --scale \
                         and --pooling",
                        match (head.scale, head.pooling) {
                            (1, Some(p)) => format!("the backbone's map pooled by {p}"),
                            (n, None) => format!("the image at {n}× size"),
                            (n, Some(p)) => format!("the image at {n}× size pooled by {p}"),
                        }
                    ),
                });
            }
            let dims = engine.label_input_dims(head.pooling);
            if head.features != dims {
                return Err(Error::Model {
                    path: LabelHead::path(dir),
                    message: format!(
                        "reads {}-d features, but this model's encoder gives {dims}-d ones: fit it \
                         again with `capsearch fit-labels`, or delete the file",
                        head.features
                    ),
                });
            }
        }
        if let Some(stats) = &engine.embedding_stats {
            let dims = engine.raw_embedder().dims;
            if stats.dims() != dims {
                return Err(Error::Model {
                    path: EmbeddingStats::path(dir),
                    message: format!(
                        "holds statistics of {}-d embeddings, but this model embeds images \
                         into {dims}-d vectors: fit them again with `capsearch fit-embedding`, \
                         or delete the file",
                        stats.dims()
                    ),
                });
            }
        }
        Ok(engine)
    }

    /// The model's id (its name in model.json).
    pub fn model_id(&self) -> &str {
        &self.loaded.info.name
    }

    /// How pixels are normalised before the encoder.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// Whether this model's features are a whole frozen EfficientNet's or ResNet's pooled
    /// output, which the backbone gives for an image of any size (what a label head's `scale`
    /// needs).
    pub fn reads_whole_backbone(&self) -> bool {
        self.backbone.as_ref().is_some_and(Backbone::takes_any_size)
            && matches!(
                self.loaded.info.captioner.encoder,
                EncoderConfig::Precomputed { .. }
            )
    }

    /// Whether this model captions raw images (it has an image encoder).
    pub fn takes_images(&self) -> bool {
        self.loaded.model.cnn.is_some() || self.backbone.is_some()
    }

    /// `options` as this model decodes them: the concept-guidance weight the caller set, else
    /// the model's own (`concept_weight` in model.json); 0 for a model without a concept head,
    /// which has nothing to guide with. A beam size of 0 becomes the model's own (`beam_size` in
    /// model.json, else 1: greedy). Every captioning call of the engine applies this, so
    /// `caption`, `eval`, `index`, `search` and `serve` decode alike.
    pub fn decode_options(&self, options: DecodeOptions) -> DecodeOptions {
        let weight = match self.loaded.model.can_guide() {
            true => options
                .concept_weight
                .or(self.loaded.info.captioner.concept_weight)
                .unwrap_or(0.0),
            false => 0.0,
        };
        let beam_size = match options.beam_size {
            0 => self.loaded.info.captioner.beam_size.unwrap_or(1).max(1),
            n => n,
        };
        DecodeOptions {
            beam_size,
            concept_weight: Some(weight),
            ..options
        }
    }

    /// What this model says about its words for concept guidance: `said_once` and `guide` in
    /// model.json (empty and absent for models trained before they existed).
    pub fn guidance(&self) -> Guidance<'_> {
        let captioner = &self.loaded.info.captioner;
        Guidance {
            said_once: captioner.said_once.as_deref().unwrap_or(&[]),
            guide: captioner.guide.as_ref(),
        }
    }

    /// Captions feature vectors `[N, F]` (row-major `data`; for a model with fine-tuned backbone
    /// blocks, the frozen part's maps `[N, C·H·W]`).
    pub fn caption_features(
        &self,
        data: Vec<f32>,
        rows: usize,
        options: DecodeOptions,
    ) -> Result<Vec<Generated>> {
        let options = self.decode_options(options);
        let f = self.loaded.model.input_dim();
        if rows == 0 {
            return Ok(Vec::new());
        }
        if data.len() != rows * f {
            return Err(Error::Invalid(format!(
                "features have {} values per row, but the model expects {f}",
                data.len() / rows.max(1)
            )));
        }
        let features =
            Tensor::<1>::from_data(TensorData::new(data.clone(), [rows * f]), &self.device)
                .reshape([rows, f]);
        if self.loaded.model.tail.is_some() {
            return self.decode_features(self.loaded.model.finish(features), options, None);
        }
        let embeddings = self.embed_features(features.clone())?;
        let captions = match &self.fast {
            Some(fast) => fast.decode_guided(&data, options, self.guidance())?,
            None => decode_guided(&self.loaded.model, features, options, self.guidance()),
        };
        Ok(self.generated(captions, embeddings))
    }

    fn decode_features(
        &self,
        features: Tensor<2>,
        options: DecodeOptions,
        embeddings: Option<Vec<Vec<f32>>>,
    ) -> Result<Vec<Generated>> {
        let options = self.decode_options(options);
        let embeddings = match embeddings {
            Some(e) => e,
            None => self.embed_features(features.clone())?,
        };
        let captions = decode_with(
            self.fast.as_ref(),
            &self.loaded.model,
            features,
            options,
            self.guidance(),
        )?;
        Ok(self.generated(captions, embeddings))
    }

    /// What this engine's embeddings are. A frozen backbone's pooled feature is shared by every
    /// model on that backbone (so it is named by the backbone); a small CNN's projected vector is
    /// the model's own (so it is named by the model).
    pub fn embedder(&self) -> Embedder {
        if let Some(head) = &self.label_head {
            let values = match head.values {
                LabelValues::SquareRoot => "square roots of ",
                LabelValues::Probability => "",
            };
            let scale = match head.scale {
                1 => String::new(),
                n => format!(", the image read at {n}× size"),
            };
            let pooling = head
                .pooling
                .map_or(String::new(), |p| format!(", the map pooled by {p}"));
            return Embedder {
                dims: head.labels.len(),
                name: format!(
                    "label head {LABEL_HEAD} {} of model {}: {values}{} label probabilities{scale}{pooling}",
                    head.fingerprint(),
                    self.model_id(),
                    head.labels.len()
                ),
            };
        }
        let raw = self.raw_embedder();
        match &self.embedding_stats {
            Some(stats) => Embedder {
                dims: raw.dims,
                name: format!(
                    "{}, standardised by {EMBEDDING_STATS} {} of model {}",
                    raw.name,
                    stats.fingerprint(),
                    self.model_id()
                ),
            },
            None => raw,
        }
    }

    /// The statistics that standardise this model's embeddings (`embedding.json`), if fitted.
    pub fn embedding_stats(&self) -> Option<&EmbeddingStats> {
        self.embedding_stats.as_ref()
    }

    /// The frozen backbone that turns images into this model's features, if it has one.
    pub fn backbone(&self) -> Option<&Backbone> {
        self.backbone.as_ref()
    }

    /// The label head that makes this model's embeddings (`labels.json`), if fitted.
    pub fn label_head(&self) -> Option<&LabelHead> {
        self.label_head.as_ref()
    }

    /// The length of the encoder's features (before the captioner's projection): what a label
    /// head reads.
    pub fn feature_dims(&self) -> usize {
        self.loaded.model.we.val().dims()[0]
    }

    /// What the embeddings are before standardisation.
    fn raw_embedder(&self) -> Embedder {
        let model = &self.loaded.model;
        match &self.loaded.info.captioner.encoder {
            EncoderConfig::Precomputed { backbone, dim } => Embedder {
                dims: *dim,
                name: format!("{backbone} feature ({dim}-d)"),
            },
            EncoderConfig::FineTuned {
                dim,
                backbone,
                tail,
            } => Embedder {
                dims: *dim,
                name: format!(
                    "{backbone} fine-tuned from block {} by model {} ({dim}-d)",
                    tail.from_block,
                    self.model_id()
                ),
            },
            EncoderConfig::SmallCnn(_) => {
                let dims = model.we.val().dims()[1];
                Embedder {
                    dims,
                    name: format!(
                        "model {} projected image vector ({dims}-d)",
                        self.model_id()
                    ),
                }
            }
        }
    }

    /// The embeddings of features `[N, F]` (see [`Generated::embedding`]), one row per image,
    /// standardised when the model has `embedding.json`.
    ///
    /// A label head that reads the image at another size cannot embed from the features alone:
    /// then there are no embeddings (empty), and [`CaptionEngine::caption_pixels`] embeds from
    /// the pixels instead.
    fn embed_features(&self, features: Tensor<2>) -> Result<Vec<Vec<f32>>> {
        if let Some(head) = &self.label_head {
            if head.reads_own_features() {
                return Ok(Vec::new());
            }
            return Ok(head.embed(&self.feature_rows(features)?));
        }
        let mut rows = self.raw_embeddings(features)?;
        if let Some(stats) = &self.embedding_stats {
            rows.iter_mut().for_each(|r| stats.apply(r));
        }
        Ok(rows)
    }

    /// The embeddings of prepared images (from [`CaptionEngine::prepare_image`]) before any
    /// standardisation: what `embedding.json` is fitted on.
    pub fn raw_embeddings_of_pixels(&self, images: &[Vec<u8>]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        self.raw_embeddings(self.features_of_pixels(images)?)
    }

    /// Features `[N, F]` as one row-major buffer.
    fn feature_rows(&self, features: Tensor<2>) -> Result<Vec<f32>> {
        features
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|error| Error::Backend {
                what: "the image features".into(),
                error,
            })
    }

    /// The features of prepared images (see [`CaptionEngine::features_of_pixels`]), one row per
    /// image: what `labels.json` is fitted on.
    pub fn feature_rows_of_pixels(&self, images: &[Vec<u8>]) -> Result<Vec<Vec<f32>>> {
        self.feature_rows_of_pixels_at(images, 1, None)
    }

    /// The length of the feature a label head with `pooling` reads: the encoder's
    /// ([`CaptionEngine::feature_dims`]) without one, else the backbone's map pooled by it.
    pub fn label_input_dims(&self, pooling: Option<Pooling>) -> usize {
        match (pooling, &self.backbone) {
            (Some(p), Some(backbone)) => p.dim(backbone.info.network.feature_dim()),
            _ => self.feature_dims(),
        }
    }

    /// [`CaptionEngine::feature_rows_of_pixels`] of the prepared images enlarged `scale` times
    /// on each side (`data::image::upscale_rgb8`), the backbone's last map pooled by `pooling`
    /// (`None`: as for the caption): what a label head with that `scale` and `pooling` reads.
    /// A scale above 1 or a pooling needs a model on a whole frozen backbone
    /// ([`CaptionEngine::reads_whole_backbone`]).
    pub fn feature_rows_of_pixels_at(
        &self,
        images: &[Vec<u8>],
        scale: u32,
        pooling: Option<Pooling>,
    ) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let dims = self.label_input_dims(pooling);
        let features = match (scale, pooling, &self.backbone) {
            (1, None, _) => self.features_of_pixels(images)?,
            (_, _, Some(backbone)) if self.reads_whole_backbone() => {
                let s = self.loaded.info.preprocessing.image_size;
                let big = s * scale as usize;
                let enlarged = images
                    .iter()
                    .map(|px| crate::data::image::upscale_rgb8(px, s as u32, scale))
                    .collect::<Result<Vec<_>>>()?;
                let buf = self.normalized_batch(&enlarged, big)?;
                let tensor = Tensor::<1>::from_data(
                    TensorData::new(buf, [images.len() * 3 * big * big]),
                    &self.device,
                )
                .reshape([images.len(), 3, big, big]);
                backbone.forward_pooling(tensor, pooling.unwrap_or(backbone.info.pooling))?
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "model {} cannot read images at {scale}× size or pool its map another way: \
                     only a model on a whole frozen EfficientNet-Lite or ResNet can",
                    self.model_id()
                )));
            }
        };
        let data = self.feature_rows(features)?;
        Ok(data
            .chunks_exact(dims.max(1))
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn raw_embeddings(&self, features: Tensor<2>) -> Result<Vec<Vec<f32>>> {
        let model = &self.loaded.model;
        let rows = features.dims()[0];
        let vectors = if model.cnn.is_some() {
            model.project(features)
        } else {
            features
        };
        let dims = vectors.dims()[1];
        let data = vectors
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|error| Error::Backend {
                what: "the image embeddings".into(),
                error,
            })?;
        Ok(data
            .chunks_exact(dims.max(1))
            .take(rows)
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn generated(
        &self,
        captions: Vec<super::decode::Caption>,
        embeddings: Vec<Vec<f32>>,
    ) -> Vec<Generated> {
        let mut embeddings = embeddings.into_iter();
        captions
            .into_iter()
            .map(|c| Generated {
                caption: self.loaded.vocab.decode(&c.ids),
                logprob: c.logprob,
                embedding: embeddings.next(),
            })
            .collect()
    }

    /// How images are brought to the model's square: as its frozen backbone was fed (e.g. the
    /// centre crop of EfficientNet), else squashed.
    pub fn resize_mode(&self) -> ResizeMode {
        self.backbone
            .as_ref()
            .map_or(ResizeMode::Squash, |b| b.info.resize)
    }

    /// Decoded, resized pixels of one image as the model wants them (`HWC` `u8`).
    pub fn prepare_image(&self, path: &Path) -> Result<Vec<u8>> {
        let size = self.loaded.info.preprocessing.image_size as u32;
        crate::data::image::load_rgb8(path, size, self.resize_mode(), &self.limits)
    }

    /// Decoded, resized pixels of an in-memory image (`HWC` `u8`).
    pub fn prepare_image_bytes(&self, bytes: &[u8], name: &Path) -> Result<Vec<u8>> {
        let size = self.loaded.info.preprocessing.image_size;
        let image = crate::data::image::decode_bytes(bytes, name, &self.limits)?;
        Ok(crate::data::image::resize_rgb8(&image, size as u32, self.resize_mode()).into_raw())
    }

    /// Captions prepared images (from [`CaptionEngine::prepare_image`]) in one batch.
    pub fn caption_pixels(
        &self,
        images: &[Vec<u8>],
        options: DecodeOptions,
    ) -> Result<Vec<Generated>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let features = self.features_of_pixels(images)?;
        let embeddings = match &self.label_head {
            Some(head) if head.reads_own_features() => Some(
                head.embed(
                    &self
                        .feature_rows_of_pixels_at(images, head.scale, head.pooling)?
                        .concat(),
                ),
            ),
            _ => None,
        };
        self.decode_features(features, options, embeddings)
    }

    /// Prepared `side`×`side` images (`HWC` `u8`) normalised as the model's encoder wants them,
    /// one `CHW` `f32` block after another.
    fn normalized_batch(&self, images: &[Vec<u8>], side: usize) -> Result<Vec<f32>> {
        let per = 3 * side * side;
        let mut buf = vec![0f32; images.len() * per];
        for (slot, px) in buf.chunks_exact_mut(per).zip(images) {
            if px.len() != per {
                return Err(Error::Internal(
                    "image buffer has the wrong size for this model".into(),
                ));
            }
            crate::data::image::normalize_into(px, self.normalization, slot);
        }
        Ok(buf)
    }

    /// The features `[N, F]` the decoder takes, of prepared images (from
    /// [`CaptionEngine::prepare_image`]): the small CNN's flattened `grid × grid` map, or the
    /// backbone's feature (finished by fine-tuned blocks); before the captioner's projection.
    pub fn features_of_pixels(&self, images: &[Vec<u8>]) -> Result<Tensor<2>> {
        let s = self.loaded.info.preprocessing.image_size;
        let per = 3 * s * s;
        let buf = self.normalized_batch(images, s)?;
        if let Some(cnn) = &self.fast_cnn {
            let features = cnn.forward(&buf, s, s)?;
            let dims = [images.len(), cnn.feature_dim()];
            return Ok(Tensor::from_data(
                TensorData::new(features, dims),
                &self.device,
            ));
        }
        let tensor =
            Tensor::<1>::from_data(TensorData::new(buf, [images.len() * per]), &self.device)
                .reshape([images.len(), 3, s, s]);
        match (&self.loaded.model.cnn, &self.backbone) {
            (Some(_), _) => self.loaded.model.encode(tensor),
            (None, Some(backbone)) => Some(self.loaded.model.finish(backbone.forward(tensor)?)),
            (None, None) => None,
        }
        .ok_or_else(|| self.no_encoder_error())
    }

    fn no_encoder_error(&self) -> Error {
        let backbone = match &self.loaded.info.captioner.encoder {
            EncoderConfig::Precomputed { backbone, .. }
            | EncoderConfig::FineTuned { backbone, .. } => backbone.clone(),
            EncoderConfig::SmallCnn(_) => "cnn".into(),
        };
        Error::Model {
            path: self.loaded.dir.clone(),
            message: format!(
                "this model takes precomputed {backbone} features, not images: pass --features FILE.npy, or import it with --vgg16 so it can caption images"
            ),
        }
    }

    /// Captions image files in batches of `batch_size`; one result per path, in order.
    pub fn caption_paths(
        &self,
        paths: &[PathBuf],
        options: DecodeOptions,
        batch_size: usize,
    ) -> Vec<Result<Generated>> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let prepared: Vec<Result<Vec<u8>>> =
                chunk.iter().map(|p| self.prepare_image(p)).collect();
            let ok: Vec<Vec<u8>> = prepared
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            let mut generated = match self.caption_pixels(&ok, options) {
                Ok(g) => g.into_iter(),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|_| Err(Error::Invalid(msg.clone()))));
                    continue;
                }
            };
            for r in prepared {
                out.push(match r {
                    Ok(_) => generated
                        .next()
                        .ok_or_else(|| Error::Internal("decoder returned too few captions".into())),
                    Err(e) => Err(e),
                });
            }
        }
        out
    }
}
