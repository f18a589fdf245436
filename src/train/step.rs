//! One training step and its pieces: the learning-rate schedule, the optimizer, which captions a
//! step trains on, the captioner's burn-train [`TrainStep`] and [`InferenceStep`] (the caption
//! loss with the concept head's), and the validation loss.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, RmsPropConfig};
use burn::prelude::*;
use burn::tensor::ExecutionError;
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};

use super::config::{OptimizerKind, Schedule, TrainConfig};
use super::inputs::{ModelInputs, Prepared, SplitInputs};
use crate::data::batch::arrange_tokens;
use crate::error::Result;
use crate::model::Captioner;

/// The learning rate of an iteration under the config's schedule.
pub fn learning_rate(
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

/// The config's optimizer, with gradient clipping and weight decay.
pub fn optimizer(config: &TrainConfig) -> burn::optim::ModuleOptimizer {
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

/// Which captions of an image a training step uses: all of them (`per_image == 0`), or
/// `per_image` of them chosen by a rotation that depends on (seed, epoch, image), so that
/// successive epochs cycle through an image's captions and a resumed run makes the same choice.
pub(crate) fn pick_captions(
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

/// The captions a step trains on for some images (`pick` chooses which of each image's), before
/// anything is on a device: the step's images can then be shared out between devices by the
/// number of target tokens each part holds.
pub(crate) struct Selection<'a> {
    images: &'a [usize],
    /// For each caption row, its image's position in `images`.
    rows: Vec<i64>,
    caps: Vec<&'a [usize]>,
    /// Target tokens: each caption's words and its END.
    pub tokens: usize,
}

impl<'a> Selection<'a> {
    pub fn new(
        captions: &'a [Vec<Vec<usize>>],
        images: &'a [usize],
        pick: impl Fn(usize, usize) -> Vec<usize>,
    ) -> Self {
        let mut rows = Vec::new();
        let mut caps: Vec<&[usize]> = Vec::new();
        for (pos, &i) in images.iter().enumerate() {
            for k in pick(i, captions[i].len()) {
                rows.push(pos as i64);
                caps.push(captions[i][k].as_slice());
            }
        }
        let tokens = caps.iter().map(|c| c.len() + 1).sum();
        Selection {
            images,
            rows,
            caps,
            tokens,
        }
    }

    /// The step's tensors on `device`. `step_size` is the (target tokens, images) of the whole
    /// step this selection is a part of: the batch's losses are weighted by its share of them.
    pub fn batch(
        &self,
        model: &Captioner,
        store: &SplitInputs,
        captions: &[Vec<Vec<usize>>],
        concept_weight: f64,
        step_size: (usize, usize),
        device: &Device,
    ) -> Result<StepBatch> {
        let (inputs, targets, mask, steps) = arrange_tokens(&self.caps);
        let n = self.caps.len();
        let image_share = self.images.len() as f64 / step_size.1.max(1) as f64;
        let concept = (concept_weight > 0.0 && model.concept.is_some()).then(|| {
            (
                concept_targets(captions, self.images, model.vocab_size(), device),
                concept_weight * image_share,
            )
        });
        let ints =
            |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, steps]), device);
        Ok(StepBatch {
            inputs: store.inputs(model, self.images, device)?,
            rows: Tensor::<1, Int>::from_data(TensorData::new(self.rows.clone(), [n]), device),
            words: ints(inputs),
            targets: ints(targets),
            mask: Tensor::<2>::from_data(TensorData::new(mask, [n, steps]), device),
            concept,
            token_share: self.tokens as f64 / step_size.0.max(1) as f64,
            tokens: self.tokens,
        })
    }
}

/// One step's tensors on one device: what the captioner's [`TrainStep`] and [`InferenceStep`]
/// take. The CNN runs once per image (or the cached feature is read); the feature is repeated
/// for each of the image's captions.
pub struct StepBatch {
    inputs: ModelInputs,
    rows: Tensor<1, Int>,
    words: Tensor<2, Int>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
    /// Concept targets and the concept loss's weight, scaled by this batch's share of the step's
    /// images.
    concept: Option<(Tensor<2>, f64)>,
    /// This batch's share of the step's target tokens (1 on one device). Each device's loss is
    /// scaled by it, so that the gradients of the devices, which burn-train sums
    /// (`GradientsAccumulator`), are those of the whole step's mean loss.
    token_share: f64,
    tokens: usize,
}

/// The caption loss of a step (mean per target token, before any scaling) and its target tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    pub loss: f64,
    pub tokens: usize,
}

impl ItemLazy for StepLoss {
    fn sync(self) -> std::result::Result<Self, ExecutionError> {
        Ok(self)
    }
}

impl Captioner {
    /// The caption loss and the weighted concept loss (when the batch has one) of a batch.
    fn step_losses(&self, batch: StepBatch) -> (Tensor<1>, Option<Tensor<1>>) {
        let features = batch.inputs.features(self);
        let concept = batch.concept.and_then(|(targets, weight)| {
            self.concept_loss(features.clone(), targets)
                .map(|l| l * weight)
        });
        let features = features.select(0, batch.rows);
        let loss = self.loss(features, batch.words, batch.targets, batch.mask);
        (loss, concept)
    }
}

impl TrainStep for Captioner {
    type Input = StepBatch;
    type Output = StepLoss;

    /// Forward and backward on one device. The reported loss is the caption loss alone,
    /// comparable with the validation loss; the gradients are those of the caption loss plus
    /// the concept loss, each scaled by the batch's share of the step.
    fn step(&self, batch: StepBatch) -> TrainOutput<StepLoss> {
        let (share, tokens) = (batch.token_share, batch.tokens);
        let (loss, concept) = self.step_losses(batch);
        let value = loss.clone().into_scalar::<f32>() as f64;
        // the caption loss is a mean over tokens, the concept loss one over images (its weight
        // already holds the batch's share of them)
        let loss = if share == 1.0 { loss } else { loss * share };
        let total = match concept {
            Some(c) => loss + c,
            None => loss,
        };
        TrainOutput::new(
            self,
            total.backward(),
            StepLoss {
                loss: value,
                tokens,
            },
        )
    }
}

impl InferenceStep for Captioner {
    type Input = StepBatch;
    type Output = StepLoss;

    /// The caption loss of a validation batch.
    fn step(&self, batch: StepBatch) -> StepLoss {
        let tokens = batch.tokens;
        let (loss, _) = self.step_losses(batch);
        StepLoss {
            loss: loss.into_scalar::<f32>() as f64,
            tokens,
        }
    }
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
pub(crate) fn validation_loss(
    model: &Captioner,
    data: &Prepared,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let mut total = 0.0;
    let mut tokens = 0usize;
    let indices: Vec<usize> = (0..data.val.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let selection = Selection::new(&data.val, chunk, |_, count| (0..count).collect());
        let size = (selection.tokens, chunk.len());
        let batch = selection.batch(model, &data.val_images, &data.val, 0.0, size, device)?;
        let step = InferenceStep::step(model, batch);
        total += step.loss * step.tokens as f64;
        tokens += step.tokens;
    }
    Ok(if tokens == 0 {
        f64::NAN
    } else {
        total / tokens as f64
    })
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
