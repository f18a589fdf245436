//! The training loop: teacher forcing with masked cross-entropy, decoded validation BLEU-4 every
//! epoch, best-checkpoint keeping, early stopping, a time budget, and resumable checkpoints.
//!
//! Why not burn-train's `SupervisedTraining`: it ranks checkpoints by metrics that are averaged
//! over batches, while BLEU-4 is a corpus statistic of *decoded* captions that must be computed
//! over the whole validation set at epoch end; it has no time budget; and its renderer cannot show
//! the caption panel. burn's optimizers, gradient clipping, records and modules are used as they are.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, RmsPropConfig};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{self, ResumeState};
use super::config::{
    BackboneKind, FrozenEncoder, OptimizerKind, Schedule, TrainConfig, TrainEncoder,
};
use super::dashboard::{
    BestCheckpoint, SampleCaption, TrainingReporter, TrainingStatus, current_rss_bytes,
};
use super::feature_cache::{self, ExtractOptions, FeatureCache, SplitFeatures};
use crate::data::batch::{ImageStore, StoreOptions, arrange_tokens};
use crate::data::image::{Normalization, ResizeMode};
use crate::data::text::{Vocabulary, tokenize};
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::artifact::{self, ModelInfo, Preprocessing};
use crate::model::backbone::Backbone;
use crate::model::decode::DecodeOptions;
use crate::model::fast_decode::{FastDecoder, decode_with};
use crate::model::{Captioner, CaptionerConfig, EncoderConfig};

/// Normalisation used for models trained here.
pub const TRAIN_NORMALIZATION: Normalization = Normalization::Imagenet;

/// What `capsearch train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TrainConfig,
    pub dataset: Dataset,
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub epochs_run: usize,
    pub best_epoch: Option<usize>,
    pub best_bleu4: Option<f64>,
    pub stopped_because: String,
    pub elapsed: Duration,
    pub images_per_sec: f64,
}

fn learning_rate(
    config: &TrainConfig,
    epoch0: usize,
    global_iter: usize,
    total_iters: usize,
) -> f64 {
    let base = config.optim.lr;
    match config.optim.schedule {
        Schedule::Constant => base,
        Schedule::Step => base * config.optim.decay.powi(epoch0 as i32),
        Schedule::Cosine => {
            let progress = (global_iter as f64 / total_iters.max(1) as f64).min(1.0);
            let floor = base * config.optim.decay;
            floor + 0.5 * (base - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

fn optimizer(config: &TrainConfig) -> burn::optim::ModuleOptimizer {
    let clip = (config.optim.grad_clip > 0.0)
        .then_some(GradientClippingConfig::Norm(config.optim.grad_clip));
    let decay = (config.optim.weight_decay > 0.0)
        .then(|| WeightDecayConfig::new(config.optim.weight_decay));
    match config.optim.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_grad_clipping(clip)
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Rmsprop => RmsPropConfig::new()
            .with_grad_clipping(clip)
            .with_weight_decay(decay)
            .init(),
    }
}

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
        match self {
            SplitInputs::Images(store) => model
                .encode(store.tensor(indices, TRAIN_NORMALIZATION, device)?)
                .ok_or_else(|| {
                    Error::Invalid("training on images needs a model with an image encoder".into())
                }),
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
                Ok(
                    Tensor::<1>::from_data(
                        TensorData::new(values, [indices.len() * f.dim]),
                        device,
                    )
                    .reshape([indices.len(), f.dim]),
                )
            }
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
        let captions = decode_with(fast.as_ref(), model, features, DecodeOptions::default())?;
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

struct Prepared {
    vocab: Vocabulary,
    train_images: SplitInputs,
    val_images: SplitInputs,
    /// Encoded captions of each stored train image.
    train: Vec<Vec<Vec<usize>>>,
    val: Vec<Vec<Vec<usize>>>,
}

fn prepare(
    req: &TrainRequest,
    vocab: Option<Vocabulary>,
    frozen: Option<(&FrozenEncoder, &Backbone)>,
) -> Result<Prepared> {
    let ds = &req.dataset;
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
            req.config.data.word_count_threshold,
            true,
        )
    });
    let (train_images, val_images) = match frozen {
        None => {
            let opts = StoreOptions::new(req.config.data.image_size as u32, ResizeMode::Squash);
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
                batch_size: req.config.run.batch_size,
                ..Default::default()
            };
            let train: Vec<&Sample> = ds.split(Split::Train).collect();
            let val: Vec<&Sample> = ds.split(Split::Val).collect();
            let train = cache.features(backbone, ds, &train, "train", &opts, &req.device)?;
            let val = cache.features(backbone, ds, &val, "val", &opts, &req.device)?;
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
    let max_len = req.config.data.max_caption_len;
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

/// Which captions of an image a training step uses: all of them (`per_image == 0`), or
/// `per_image` of them chosen by a rotation that depends on (seed, epoch, image), so that
/// successive epochs cycle through an image's captions and a resumed run makes the same choice.
fn pick_captions(
    count: usize,
    per_image: usize,
    seed: u64,
    epoch: usize,
    image: usize,
) -> Vec<usize> {
    if per_image == 0 || per_image >= count {
        return (0..count).collect();
    }
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(image as u64)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let start = (mix >> 33) as usize % count + epoch * per_image;
    (0..per_image).map(|k| (start + k) % count).collect()
}

/// Loss of a batch of images with their captions (`pick` chooses which). The CNN runs once per
/// image (or the cached feature is read); the feature is repeated for each caption. Returns the
/// loss and the number of target tokens.
fn batch_loss(
    model: &Captioner,
    store: &SplitInputs,
    captions: &[Vec<Vec<usize>>],
    images: &[usize],
    pick: impl Fn(usize, usize) -> Vec<usize>,
    concept_weight: f64,
    device: &Device,
) -> Result<(Tensor<1>, Option<Tensor<1>>, usize)> {
    let mut rows = Vec::new();
    let mut caps: Vec<&[usize]> = Vec::new();
    for (pos, &i) in images.iter().enumerate() {
        for k in pick(i, captions[i].len()) {
            rows.push(pos as i64);
            caps.push(captions[i][k].as_slice());
        }
    }
    let (inputs, targets, mask, steps) = arrange_tokens(&caps);
    let n = caps.len();
    let tokens = caps.iter().map(|c| c.len() + 1).sum();
    let features = store.features(model, images, device)?;
    let concept = if concept_weight > 0.0 && model.concept.is_some() {
        let targets = concept_targets(captions, images, model.vocab_size(), device);
        model
            .concept_loss(features.clone(), targets)
            .map(|l| l * concept_weight)
    } else {
        None
    };
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
    let features = features.select(0, rows);
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, steps]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, steps]), device);
    Ok((
        model.loss(features, ints(inputs), ints(targets), mask),
        concept,
        tokens,
    ))
}

/// Concept targets `[B, V]` for the images at `images`: for each word, the share of the image's
/// captions that use it (all of its captions, whichever ones the step trains on).
fn concept_targets(
    captions: &[Vec<Vec<usize>>],
    images: &[usize],
    vocab_size: usize,
    device: &Device,
) -> Tensor<2> {
    let mut values = vec![0f32; images.len() * vocab_size];
    for (row, &i) in images.iter().enumerate() {
        let caps = &captions[i];
        let share = 1.0 / caps.len().max(1) as f32;
        for cap in caps {
            let mut seen: Vec<usize> = cap.iter().copied().filter(|&w| w < vocab_size).collect();
            seen.sort_unstable();
            seen.dedup();
            for w in seen {
                values[row * vocab_size + w] += share;
            }
        }
    }
    Tensor::<1>::from_data(TensorData::new(values, [images.len() * vocab_size]), device)
        .reshape([images.len(), vocab_size])
}

/// Mean teacher-forced loss per token over the validation captions.
fn validation_loss(
    model: &Captioner,
    data: &Prepared,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let mut total = 0.0;
    let mut tokens = 0usize;
    let indices: Vec<usize> = (0..data.val.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let (loss, _, n) = batch_loss(
            model,
            &data.val_images,
            &data.val,
            chunk,
            |_, count| (0..count).collect(),
            0.0,
            device,
        )?;
        total += loss.into_scalar::<f32>() as f64 * n as f64;
        tokens += n;
    }
    Ok(if tokens == 0 {
        f64::NAN
    } else {
        total / tokens as f64
    })
}

/// Runs (or resumes) a training run.
pub fn train(req: TrainRequest, reporter: &mut dyn TrainingReporter) -> Result<TrainSummary> {
    let config = &req.config;
    let out = &req.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;

    let resume_state = if req.resume {
        checkpoint::load_state(out)?
    } else {
        None
    };
    if req.resume && resume_state.is_none() {
        tracing::warn!(
            "--resume: no checkpoint in {}, starting from scratch",
            out.display()
        );
    }
    if !req.resume && checkpoint::state_path(out).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    let saved_vocab = match &resume_state {
        Some(_) => Some(Vocabulary::load(&out.join(artifact::VOCAB))?),
        None => None,
    };
    let (frozen, encoder) = match &config.model.encoder {
        TrainEncoder::SmallCnn(c) => (None, EncoderConfig::SmallCnn(c.clone())),
        TrainEncoder::Frozen(f) => {
            let backbone = load_backbone(f, &req.device)?;
            let encoder = backbone.info.encoder_config();
            (Some((f, backbone)), encoder)
        }
    };
    if let Some((_, backbone)) = &frozen
        && let Some(saved) = Backbone::saved_info(out)?
        && saved.key() != backbone.info.key()
    {
        return Err(Error::Invalid(format!(
            "{} was trained on backbone {} ({}), but the config's backbone is now {} ({}): its weights, shape or preprocessing changed; choose another --out",
            out.display(),
            saved.name,
            saved.key(),
            backbone.info.name,
            backbone.info.key()
        )));
    }
    let data = prepare(&req, saved_vocab, frozen.as_ref().map(|(f, b)| (*f, b)))?;
    let vocab = &data.vocab;

    let captioner_config = CaptionerConfig::new(encoder, vocab.len())
        .with_embed_size(config.model.embed_size)
        .with_hidden_size(config.model.hidden_size)
        .with_dropout(config.model.dropout)
        .with_tanh_c_version(config.model.tanh_c_version)
        .with_concept_head((config.model.concept_loss > 0.0).then_some(true));
    let run_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let mut info = ModelInfo {
        name: run_name.clone(),
        captioner: captioner_config.clone(),
        preprocessing: match &frozen {
            Some((_, backbone)) => backbone.info.preprocessing.clone(),
            None => Preprocessing {
                image_size: config.data.image_size,
                normalization: "imagenet".into(),
            },
        },
        produced_by: "capsearch train".into(),
        capsearch_version: env!("CARGO_PKG_VERSION").into(),
        dataset: Some(req.dataset.source.display().to_string()),
        epoch: None,
        val_bleu4: None,
    };
    config.save(&out.join("config.toml"))?;
    vocab.save(&out.join(artifact::VOCAB))?;
    if let Some((_, backbone)) = &frozen {
        // the model directory captions images: it carries the backbone beside the decoder
        if Backbone::saved_info(out)?.is_none()
            || !out.join(crate::model::backbone::BACKBONE_WEIGHTS).exists()
        {
            backbone.save(out)?;
        }
    }

    let device = req.device.clone();
    let ad_device = device.clone().autodiff();
    ad_device.seed(config.run.seed);
    let mut model = captioner_config.init(&ad_device);
    let mut optim = optimizer(config);
    let mut state = ResumeState::default();
    if let Some(saved) = resume_state {
        let (m, o) = checkpoint::load_checkpoint(out, &saved, model, optim)?;
        model = m;
        optim = o;
        tracing::info!(epoch = saved.epoch, iteration = saved.iteration, "resumed");
        state = saved;
    }
    let mut metrics =
        checkpoint::MetricsLog::open(&out.join("metrics.csv"), state.global_iteration)?;

    let bs = config.run.batch_size;
    let iters_per_epoch = data.train.len().div_ceil(bs);
    let total_iters = iters_per_epoch * config.run.epochs;
    let budget = config.time_budget()?;
    let started = Instant::now();
    let elapsed_before = Duration::from_secs_f64(state.elapsed_s);
    let mut status = TrainingStatus {
        run_name,
        epochs: config.run.epochs,
        iterations_per_epoch: iters_per_epoch,
        time_budget: budget,
        ..Default::default()
    };
    // restore the curves of a resumed run
    for row in &state.history {
        status.val_loss.push((row.epoch as f64, row.val_loss));
        status.val_bleu4.push((row.epoch as f64, row.val_bleu4));
    }
    if let (Some(e), Some(b)) = (state.best_epoch, state.best_bleu4) {
        status.best = Some(BestCheckpoint {
            epoch: e,
            bleu4: b,
            path: out.join(artifact::WEIGHTS),
        });
    }
    let sample_count = data.val_images.len().min(4);
    let mut images_seen = 0usize;
    let mut stopped_because = String::from("finished all epochs");
    let mut throughput = 0.0;

    'epochs: for epoch0 in state.epoch..config.run.epochs {
        let epoch = epoch0 + 1;
        status.epoch = epoch;
        // The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.run.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        ad_device.seed(
            config
                .run
                .seed
                .wrapping_add(epoch as u64 * 1_000_003 + state.iteration as u64),
        );
        let skip = state.iteration;
        let epoch_start = Instant::now();
        let mut window = (Instant::now(), 0usize, 0usize, 0.0f64, 0usize);
        for (it, chunk) in order.chunks(bs).enumerate().skip(skip) {
            let lr = learning_rate(config, epoch0, state.global_iteration, total_iters);
            let (loss, concept, tokens) = batch_loss(
                &model,
                &data.train_images,
                &data.train,
                chunk,
                |image, count| {
                    pick_captions(
                        count,
                        config.run.captions_per_image,
                        config.run.seed,
                        epoch0,
                        image,
                    )
                },
                config.model.concept_loss,
                &ad_device,
            )?;
            // the logged loss is the caption loss alone, comparable with validation loss
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            let loss = match concept {
                Some(c) => loss + c,
                None => loss,
            };
            if !loss_value.is_finite() {
                return Err(Error::Invalid(format!(
                    "training diverged at epoch {epoch}, iteration {}: loss is {loss_value}; lower optim.lr or set optim.grad_clip",
                    it + 1
                )));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            state.iteration = it + 1;
            state.global_iteration += 1;
            images_seen += chunk.len();
            window.1 += chunk.len();
            window.2 += tokens;
            window.3 += loss_value;
            window.4 += 1;

            if state.global_iteration % config.run.log_every.max(1) == 0
                || it + 1 == iters_per_epoch
            {
                let secs = window.0.elapsed().as_secs_f64().max(1e-9);
                throughput = window.1 as f64 / secs;
                let mean_loss = window.3 / window.4 as f64;
                status.iteration = it + 1;
                status.global_iteration = state.global_iteration;
                status.learning_rate = lr;
                status.images_per_sec = throughput;
                status.tokens_per_sec = window.2 as f64 / secs;
                status.train_loss.push((
                    epoch0 as f64 + (it + 1) as f64 / iters_per_epoch as f64,
                    mean_loss,
                ));
                status.elapsed = elapsed_before + started.elapsed();
                let done_in_epoch = (it + 1 - skip).max(1) as f64;
                let per_iter = epoch_start.elapsed().as_secs_f64() / done_in_epoch;
                status.epoch_eta = Some(Duration::from_secs_f64(
                    per_iter * (iters_per_epoch - it - 1) as f64,
                ));
                let remaining = total_iters.saturating_sub(state.global_iteration);
                status.eta = Some(Duration::from_secs_f64(per_iter * remaining as f64));
                status.memory_bytes = current_rss_bytes();
                status.phase = "training".into();
                metrics.iteration_row(
                    epoch,
                    state.global_iteration,
                    mean_loss,
                    lr,
                    throughput,
                    status.elapsed.as_secs_f64(),
                )?;
                reporter.update(&status);
                window = (Instant::now(), 0, 0, 0.0, 0);
            }
            if reporter.stop_requested() {
                status.phase = "saving".into();
                reporter.update(&status);
                state.elapsed_s = (elapsed_before + started.elapsed()).as_secs_f64();
                state.epoch = epoch0;
                checkpoint::save_checkpoint(out, &state, &model, &optim)?;
                stopped_because =
                    format!("stopped by the user at epoch {epoch}, iteration {}", it + 1);
                break 'epochs;
            }
            if config.run.checkpoint_every > 0
                && (it + 1) % config.run.checkpoint_every == 0
                && it + 1 < iters_per_epoch
            {
                state.elapsed_s = (elapsed_before + started.elapsed()).as_secs_f64();
                state.epoch = epoch0;
                checkpoint::save_checkpoint(out, &state, &model, &optim)?;
            }
        }

        // validation: teacher-forced loss, then decoded BLEU-4
        let valid = model.valid();
        status.phase = "validating".into();
        reporter.update(&status);
        let val_loss = validation_loss(&valid, &data, bs, &device)?;
        status.phase = "decoding".into();
        reporter.update(&status);
        let (generated, references) = decode_split(
            &valid,
            vocab,
            &data.val_images,
            config.run.val_bleu_images,
            bs,
            &device,
        )?;
        let bleu4 = 100.0 * crate::eval::bleu::coco_bleu(&generated, &references).corpus[3];
        status.samples = (0..sample_count.min(generated.len()))
            .map(|i| SampleCaption {
                image: data.val_images.sample(i).path.clone(),
                generated: generated[i].join(" "),
                reference: references[i]
                    .first()
                    .map(|r| r.join(" "))
                    .unwrap_or_default(),
            })
            .collect();
        status.val_loss.push((epoch as f64, val_loss));
        status.val_bleu4.push((epoch as f64, bleu4));
        let elapsed = elapsed_before + started.elapsed();
        status.elapsed = elapsed;
        metrics.epoch_row(
            epoch,
            state.global_iteration,
            val_loss,
            bleu4,
            learning_rate(config, epoch0, state.global_iteration, total_iters),
            throughput,
            elapsed.as_secs_f64(),
        )?;
        state.history.push(checkpoint::EpochRecord {
            epoch,
            val_loss,
            val_perplexity: val_loss.exp(),
            val_bleu4: bleu4,
            elapsed_s: elapsed.as_secs_f64(),
        });

        // best model by validation BLEU-4
        // ties (common once captions are perfect) go to the lower validation loss
        let best_loss = state
            .best_epoch
            .and_then(|e| state.history.iter().find(|r| r.epoch == e))
            .map(|r| r.val_loss);
        let better = match state.best_bleu4 {
            None => true,
            Some(b) => bleu4 > b || (bleu4 == b && best_loss.is_none_or(|l| val_loss < l)),
        };
        if better {
            status.phase = "saving".into();
            reporter.update(&status);
            state.best_bleu4 = Some(bleu4);
            state.best_epoch = Some(epoch);
            info.epoch = Some(epoch);
            info.val_bleu4 = Some(bleu4);
            artifact::save_weights(valid.clone(), &out.join(artifact::WEIGHTS))?;
            info.save(out)?;
            status.best = Some(BestCheckpoint {
                epoch,
                bleu4,
                path: out.join(artifact::WEIGHTS),
            });
        }
        state.epoch = epoch;
        state.iteration = 0;
        state.elapsed_s = elapsed.as_secs_f64();
        checkpoint::save_checkpoint(out, &state, &model, &optim)?;
        tracing::info!(
            epoch,
            val_loss = format!("{val_loss:.4}"),
            val_perplexity = format!("{:.2}", val_loss.exp()),
            val_bleu4 = format!("{bleu4:.2}"),
            "epoch done"
        );
        reporter.update(&status);

        if config.run.patience > 0
            && let Some(best_epoch) = state.best_epoch
            && epoch >= best_epoch + config.run.patience
        {
            stopped_because = format!(
                "early stopping: no BLEU-4 gain for {} epochs",
                config.run.patience
            );
            break;
        }
        if let Some(budget) = budget
            && elapsed >= budget
        {
            stopped_because = format!("time budget of {} reached", humanize(budget));
            break;
        }
        if reporter.stop_requested() {
            stopped_because = format!("stopped by the user after epoch {epoch}");
            break;
        }
    }
    status.phase = stopped_because.clone();
    reporter.finish(&status);
    let elapsed = elapsed_before + started.elapsed();
    Ok(TrainSummary {
        epochs_run: state.epoch,
        best_epoch: state.best_epoch,
        best_bleu4: state.best_bleu4,
        stopped_because,
        elapsed,
        images_per_sec: images_seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// Loads a frozen encoder's backbone from its weights.
fn load_backbone(encoder: &FrozenEncoder, device: &Device) -> Result<Backbone> {
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
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each word's target is the share of the image's captions that use it, counted once per
    /// caption however often the caption repeats it.
    #[test]
    fn concept_targets_are_the_share_of_captions_using_each_word() {
        let captions = vec![
            vec![vec![1, 2, 2], vec![2, 3], vec![1, 4], vec![4, 4]],
            vec![vec![3]],
        ];
        let t = concept_targets(&captions, &[1, 0], 5, &Device::flex());
        assert_eq!(t.dims(), [2, 5]);
        let v = t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(&v[..5], &[0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(&v[5..], &[0.0, 0.5, 0.5, 0.25, 0.5]);
    }

    #[test]
    fn caption_rotation_covers_every_caption_and_is_deterministic() {
        assert_eq!(pick_captions(5, 0, 1, 0, 3), [0, 1, 2, 3, 4]);
        assert_eq!(pick_captions(3, 5, 1, 0, 3), [0, 1, 2]);
        let mut seen = std::collections::HashSet::new();
        for epoch in 0..5 {
            let picked = pick_captions(5, 1, 42, epoch, 7);
            assert_eq!(picked, pick_captions(5, 1, 42, epoch, 7));
            seen.extend(picked);
        }
        assert_eq!(
            seen.len(),
            5,
            "five epochs with one caption each see all five"
        );
    }

    #[test]
    fn cosine_schedule_goes_from_base_to_floor() {
        let config = TrainConfig::default();
        let lr0 = learning_rate(&config, 0, 0, 100);
        let lr_end = learning_rate(&config, 0, 100, 100);
        assert!((lr0 - config.optim.lr).abs() < 1e-12);
        assert!((lr_end - config.optim.lr * config.optim.decay).abs() < 1e-12);
    }
}
