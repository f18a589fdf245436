//! The training loop: teacher forcing with masked cross-entropy, decoded validation BLEU-4 every
//! epoch, best-checkpoint keeping, early stopping, a time budget, resumable checkpoints, and
//! data-parallel steps on several devices ([`super::parallel`]).
//!
//! The loop is capsearch's own, on burn-train's `TrainStep` (see [`super::step`]) and burn's
//! optimizers, gradient clipping, records and modules: why not burn-train's `Learner` and
//! `SupervisedTraining` is written, with the burn-train source it rests on, in [`super`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{self, ResumeState};
use super::config::{TrainConfig, TrainEncoder};
use super::guide_fit::fit_on_features;
use super::inputs::{Prepared, SplitInputs, decode_split, load_backbone, prepare};
use super::parallel::{DataParallel, parse_device};
use super::report::{
    BestCheckpoint, Phase, SampleCaption, StopReason, TrainingReporter, TrainingStatus,
    current_rss_bytes,
};
use super::step::{learning_rate, optimizer, pick_captions, validation_loss};
use crate::data::Dataset;
use crate::data::text::{Vocabulary, tokenize};
use crate::error::{Error, Result};
use crate::model::artifact::{self, ModelInfo, Preprocessing};
use crate::model::backbone::Backbone;
use crate::model::embedding_stats::EmbeddingStats;
use crate::model::guide::{ConceptGuide, concept_prior, kind_names};
use crate::model::guide_head::{FittedHead, GuideFit, GuideHead, GuideHeadInfo};
use crate::model::metrics::{MetricsLog, MetricsRow};
use crate::model::run_dir::RunDir;
use crate::model::{CaptionerConfig, EncoderConfig};

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
    pub stopped_because: StopReason,
    pub elapsed: Duration,
    pub images_per_sec: f64,
}

/// Runs (or resumes) a training run.
pub fn train(req: TrainRequest, reporter: &mut dyn TrainingReporter) -> Result<TrainSummary> {
    super::memory::keep_freed_memory();
    let config = &req.config;
    let out = &req.out;
    let run = RunDir::new(out);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;

    let resume_state = if req.resume { run.load_state()? } else { None };
    if req.resume && resume_state.is_none() {
        tracing::warn!(
            "--resume: no checkpoint in {}, starting from scratch",
            out.display()
        );
    }
    if !req.resume && run.state().exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a training run: pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    // `[loop] devices` (data-parallel) when given, else the request's device; the first one
    // holds the model, validates and computes the backbone's features
    let devices = if config.run.devices.is_empty() {
        vec![req.device.clone()]
    } else {
        config
            .run
            .devices
            .iter()
            .map(|name| parse_device(name))
            .collect::<Result<Vec<_>>>()?
    };
    let device = devices[0].clone();
    let saved_vocab = match &resume_state {
        Some(_) => Some(Vocabulary::load(&run.vocab())?),
        None => None,
    };
    let (frozen, encoder) = match &config.model.encoder {
        TrainEncoder::SmallCnn(c) => (None, EncoderConfig::SmallCnn(c.clone())),
        TrainEncoder::Frozen(f) => {
            let backbone = load_backbone(f, &device)?;
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
    let data = prepare(
        &req.dataset,
        config,
        &device,
        saved_vocab,
        frozen.as_ref().map(|(f, b)| (*f, b)),
    )?;
    let vocab = &data.vocab;
    // a run resumed from a model saved without a guide head (trained before it existed) goes on
    // without one: its checkpoint has no weights for it
    let head_allowed = resume_state.is_none()
        || !run.model_info().exists()
        || ModelInfo::load(out)?.captioner.guide_head.is_some();
    let fitted = fit_on_train_features(config, &req.dataset, &encoder, &data, head_allowed)?;
    if let Some((_, stats)) = &fitted {
        // the model folder standardises its embeddings for visual search by the same statistics
        // (as `capsearch fit-embedding` would); a resumed run keeps the file it has
        if resume_state.is_none() || EmbeddingStats::read(out)?.is_none() {
            let path = stats.write(out)?;
            tracing::info!(
                fingerprint = stats.fingerprint(),
                "wrote {} from the train split's features",
                path.display()
            );
        }
    }

    let captioner_config = CaptionerConfig::new(encoder, vocab.len())
        .with_embed_size(config.model.embed_size)
        .with_hidden_size(config.model.hidden_size)
        .with_dropout(config.model.dropout)
        .with_tanh_c_version(config.model.tanh_c_version)
        .with_concept_head((config.model.concept_loss > 0.0).then_some(true))
        .with_concept_on_feature(
            (config.model.concept_loss > 0.0 && config.model.concept_on_feature).then_some(true),
        )
        .with_concept_weight(
            (config.model.concept_weight > 0.0).then_some(config.model.concept_weight as f32),
        )
        .with_said_once((config.model.concept_weight > 0.0).then(|| {
            crate::model::guide::said_once_words(
                vocab.len(),
                data.train.iter().flatten().map(Vec::as_slice),
            )
        }))
        .with_guide(
            (config.model.concept_weight > 0.0).then(|| guide_of(config, &req.dataset, &data)),
        )
        .with_beam_size((config.model.beam_size > 1).then_some(config.model.beam_size))
        .with_guide_head(
            fitted
                .as_ref()
                .and_then(|(head, _)| head.as_ref().map(|(_, info)| info.clone())),
        );
    let run_name = run.name();
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
    config.save(&run.config())?;
    vocab.save(&run.vocab())?;
    if let Some((_, backbone)) = &frozen {
        // the model directory captions images: it carries the backbone beside the decoder
        if Backbone::saved_info(out)?.is_none() || !run.backbone_weights().exists() {
            backbone.save(out)?;
        }
    }

    let parallel = DataParallel::new(devices)?;
    let ad_device = parallel.main().clone();
    parallel.seed(config.run.seed);
    let mut model = captioner_config.init(&ad_device);
    if let Some((Some((head, _)), _)) = &fitted {
        model.guide_head = Some(GuideHead::from_fit(head, &ad_device));
    }
    // fine-tuning starts from the backbone's pretrained last blocks (a resumed run loads its own)
    if let (Some((_, backbone)), Some(tail)) = (&frozen, model.tail.as_mut())
        && let Some(pretrained) = backbone.tail()
    {
        tail.copy_from(&pretrained)?;
        tracing::info!(
            from_block = backbone.info.until_block,
            "fine-tuning the backbone's last blocks with the decoder"
        );
    }
    let mut optim = optimizer(config);
    let mut state = ResumeState::default();
    if let Some(mut saved) = resume_state {
        let (m, o) = checkpoint::load_checkpoint(&run, &saved, model, optim)?;
        model = m;
        optim = o;
        tracing::info!(epoch = saved.epoch, iteration = saved.iteration, "resumed");
        saved.ended = None;
        state = saved;
    }
    let mut metrics = MetricsLog::open(&run.metrics(), state.global_iteration)?;

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
            path: run.best_weights(),
        });
    }
    let sample_count = data.val_images.len().min(4);
    let mut images_seen = 0usize;
    let mut stopped_because = StopReason::Finished;
    let mut throughput = 0.0;

    'epochs: for epoch0 in state.epoch..config.run.epochs {
        let epoch = epoch0 + 1;
        status.epoch = epoch;
        // The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.run.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        parallel.seed(
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
            // the logged loss is the caption loss alone, comparable with validation loss
            let (next, step) = parallel.step(
                model,
                &mut optim,
                lr,
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
            )?;
            model = next;
            let (loss_value, tokens) = (step.loss, step.tokens);
            if !loss_value.is_finite() {
                return Err(Error::Diverged {
                    epoch,
                    iteration: it + 1,
                    loss: loss_value,
                });
            }
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
                status.phase = Phase::Training;
                metrics.append(&MetricsRow::iteration(
                    epoch,
                    state.global_iteration,
                    mean_loss,
                    lr,
                    throughput,
                    status.elapsed.as_secs_f64(),
                ))?;
                reporter.update(&status);
                window = (Instant::now(), 0, 0, 0.0, 0);
            }
            if reporter.stop_requested() {
                status.phase = Phase::Stopping;
                reporter.update(&status);
                state.elapsed_s = (elapsed_before + started.elapsed()).as_secs_f64();
                state.epoch = epoch0;
                checkpoint::save_checkpoint(&run, &state, &model, &optim)?;
                stopped_because = StopReason::StoppedByUser {
                    epoch,
                    iteration: Some(it + 1),
                };
                break 'epochs;
            }
            if config.run.checkpoint_every > 0
                && (it + 1) % config.run.checkpoint_every == 0
                && it + 1 < iters_per_epoch
            {
                state.elapsed_s = (elapsed_before + started.elapsed()).as_secs_f64();
                state.epoch = epoch0;
                checkpoint::save_checkpoint(&run, &state, &model, &optim)?;
            }
        }

        // validation: teacher-forced loss, then decoded BLEU-4
        let valid = model.valid();
        status.phase = Phase::Validating;
        reporter.update(&status);
        let val_loss = validation_loss(&valid, &data, bs, &device)?;
        status.phase = Phase::Decoding;
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
        metrics.append(&MetricsRow::epoch(
            epoch,
            state.global_iteration,
            val_loss,
            bleu4,
            learning_rate(config, epoch0, state.global_iteration, total_iters),
            throughput,
            elapsed.as_secs_f64(),
        ))?;
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
            status.phase = Phase::Saving;
            reporter.update(&status);
            state.best_bleu4 = Some(bleu4);
            state.best_epoch = Some(epoch);
            info.epoch = Some(epoch);
            info.val_bleu4 = Some(bleu4);
            artifact::save_weights(valid.clone(), &run.best_weights())?;
            info.save(out)?;
            status.best = Some(BestCheckpoint {
                epoch,
                bleu4,
                path: run.best_weights(),
            });
        }
        state.epoch = epoch;
        state.iteration = 0;
        state.elapsed_s = elapsed.as_secs_f64();
        checkpoint::save_checkpoint(&run, &state, &model, &optim)?;
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
            stopped_because = StopReason::EarlyStopping {
                patience: config.run.patience,
            };
            break;
        }
        if let Some(budget) = budget
            && let Some(reason) = budget_stop(
                budget,
                elapsed,
                (skip == 0).then(|| epoch_start.elapsed()),
                epoch < config.run.epochs,
            )
        {
            stopped_because = reason;
            break;
        }
        if reporter.stop_requested() {
            status.phase = Phase::Stopping;
            reporter.update(&status);
            stopped_because = StopReason::StoppedByUser {
                epoch,
                iteration: None,
            };
            break;
        }
    }
    // the committed state records how the run ended (the Runs page tells finished runs from live ones)
    if let Some(mut saved) = run.load_state()? {
        saved.ended = Some(stopped_because.to_string());
        run.save_state(&saved)?;
    }
    status.phase = Phase::Ended(stopped_because.clone());
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

/// Whether the time budget ends the run at an epoch end: it has run out (`elapsed`, the whole
/// run's training time, is past it), or more epochs are planned and what is left of it is less
/// than the epoch just ended took (`last_epoch`: `None` when that epoch was resumed part-way, so
/// its time says nothing).
fn budget_stop(
    budget: Duration,
    elapsed: Duration,
    last_epoch: Option<Duration>,
    more_epochs: bool,
) -> Option<StopReason> {
    if elapsed >= budget {
        return Some(StopReason::TimeBudget(budget));
    }
    let epoch = last_epoch.filter(|_| more_epochs)?;
    (elapsed + epoch > budget).then(|| StopReason::NoTimeForAnotherEpoch {
        budget,
        left: budget - elapsed,
        epoch,
    })
}

/// For a whole frozen backbone (its cached features are the model's embeddings): the train
/// split's feature statistics, and with `[model] guide_head` and concept guidance, the guide head
/// fitted on them (see [`crate::model::guide_head`]) unless `head_allowed` is false. `None` for
/// other encoders.
#[allow(clippy::type_complexity)]
fn fit_on_train_features(
    config: &TrainConfig,
    dataset: &Dataset,
    encoder: &EncoderConfig,
    data: &Prepared,
    head_allowed: bool,
) -> Result<Option<(Option<(FittedHead, GuideHeadInfo)>, EmbeddingStats)>> {
    let (EncoderConfig::Precomputed { .. }, SplitInputs::Features(features)) =
        (encoder, &data.train_images)
    else {
        return Ok(None);
    };
    let fitted_on = format!("{} (train split)", dataset.source.display());
    if head_allowed && config.model.guide_head && config.model.concept_weight > 0.0 {
        let fit = GuideFit {
            seed: config.run.seed,
            ..GuideFit::default()
        };
        let (head, info) = fit_on_features(
            features,
            &data.train,
            &data.vocab,
            dataset.kinds.as_ref(),
            &fit,
            &fitted_on,
        )?;
        let stats = head.stats.clone();
        return Ok(Some((Some((head, info)), stats)));
    }
    let stats = EmbeddingStats::fit(features.values.chunks_exact(features.dim), fitted_on)?;
    Ok(Some((None, stats)))
}

/// What concept-guided decoding keeps of the training data and config (see [`ConceptGuide`]):
/// the dataset's kind names in the vocabulary, each word's base rate in the training captions,
/// and the kind weight, floor and relative weight of `[model]`.
fn guide_of(config: &TrainConfig, dataset: &Dataset, data: &Prepared) -> ConceptGuide {
    let m = &config.model;
    ConceptGuide {
        kind_names: dataset
            .kinds
            .as_ref()
            .map(|k| kind_names(k, &data.vocab, tokenize))
            .unwrap_or_default(),
        prior: concept_prior(data.vocab.len(), data.train.iter().map(Vec::as_slice)),
        kind_weight: m.kind_weight.map(|w| w as f32),
        kind_floor: (m.kind_floor > 0.0).then_some(m.kind_floor as f32),
        relative_weight: (m.relative_weight > 0.0).then_some(m.relative_weight as f32),
        rerank: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_that_would_end_past_the_budget_is_not_started() {
        let s = Duration::from_secs;
        let budget = s(600);
        // room for another 30 s epoch
        assert_eq!(budget_stop(budget, s(560), Some(s(30)), true), None);
        // 20 s left, epochs take 31 s
        assert_eq!(
            budget_stop(budget, s(580), Some(s(31)), true),
            Some(StopReason::NoTimeForAnotherEpoch {
                budget,
                left: s(20),
                epoch: s(31)
            })
        );
        // the last planned epoch: nothing to skip
        assert_eq!(budget_stop(budget, s(580), Some(s(31)), false), None);
        // an epoch resumed part-way says nothing of how long one takes
        assert_eq!(budget_stop(budget, s(580), None, true), None);
        // past the budget: stop, whatever is planned
        for more in [true, false] {
            assert_eq!(
                budget_stop(budget, s(610), None, more),
                Some(StopReason::TimeBudget(budget))
            );
        }
    }
}
