//! One training step and its pieces: the learning-rate schedule, the optimizer, which captions a
//! step trains on, the batch loss (with the concept head's), and the validation loss.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, RmsPropConfig};
use burn::prelude::*;

use super::config::{OptimizerKind, Schedule, TrainConfig};
use super::inputs::{Prepared, SplitInputs};
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

/// Loss of a batch of images with their captions (`pick` chooses which). The CNN runs once per
/// image (or the cached feature is read); the feature is repeated for each caption. Returns the
/// loss and the number of target tokens.
pub(crate) fn batch_loss(
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
