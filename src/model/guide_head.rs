//! The guide head: a logistic word classifier fitted on a frozen backbone's standardised features,
//! read by concept-guided decoding (see [`super::guide::ConceptBias`]) in place of the concept
//! head that trains with the decoder.
//!
//! Why: the concept head (`Wc`, `bc`) reads the decoder's 256-value projection of the image and
//! trains jointly with it; read as a kind classifier it names 0.62 of the `scenes` test split's
//! seen things at the oracle count, while a linear classifier on the same cached 1280-value
//! EfficientNet-Lite0 features, standardised, names 0.77 (README, "Pooling"). The guide head is
//! that classifier, fitted before the decoder's first epoch on the train split's cached features:
//! its targets are the concept loss's (for each word, the share of an image's captions using it),
//! its inputs standardised by the train split's mean and sd, trained by AdamW on mini-batches
//! in a fixed, seeded order for a fixed number of epochs. The standardisation is folded into the
//! weights, so the saved head reads the raw feature: `logits = f · weight + bias`, `weight`
//! `[F, V]`, `bias` `[V]` (`guide_head.weight`, `guide_head.bias` in `model.bpk`). The same
//! statistics are the model's `embedding.json` (see [`super::embedding_stats`]).
//!
//! The concept loss on the projection stays: it shapes the decoder (without it, validation BLEU-4
//! with guidance peaked at epoch 1).

use burn::module::Param;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::embedding_stats::EmbeddingStats;
use super::gemm::{Layout, matmul, matmul_strided};
use crate::error::{Error, Result};

/// How a guide head is fitted (`guide_head` in model.json records the settings it was fitted
/// with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuideFit {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per AdamW step.
    pub batch_size: usize,
    pub lr: f32,
    /// AdamW's decoupled weight decay of the weights (not the bias).
    pub weight_decay: f32,
    /// Seed of the images' order in each epoch (and of the dropout masks).
    pub seed: u64,
    /// Share of the standardised input values zeroed at each step (inverted dropout: the rest
    /// are scaled by 1 / (1 − p)); 0 turns it off. Models fitted before it existed had none.
    #[serde(default)]
    pub dropout: f32,
    /// The targets of the words of kind names (see [`KindTargets`]). Models fitted before it
    /// existed used the caption shares.
    #[serde(default)]
    pub kind_targets: KindTargets,
}

/// What a guide head learns for the words of the dataset's kind names (the other words always
/// learn the share of an image's captions that say them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindTargets {
    /// The share of the image's captions that say the word, as for every word.
    #[default]
    Shares,
    /// Whether a thing of the kind is there: for each labelled thing, the last word of each of
    /// its kind's names (singular, plural, synonyms: "scissors" of "pair of scissors") gets
    /// target 1. The head then ranks kinds by whether they are in the image, not by how often
    /// captions call them by their kind rather than a category. The first words ("pair", "red",
    /// "small", "sea") keep their shares: captions say them of other things too. Needs the
    /// dataset's labels and lexicon (images without labels keep the shares).
    Presence,
}

impl Default for GuideFit {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.01,
            seed: 42,
            dropout: 0.0,
            kind_targets: KindTargets::Presence,
        }
    }
}

/// What model.json says of a model's guide head (`captioner.guide_head`): how it was fitted and
/// on what. Its weights are in `model.bpk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuideHeadInfo {
    /// What it was fitted on, in words (dataset and split).
    pub fitted_on: String,
    /// How many images.
    pub images: usize,
    pub fit: GuideFit,
}

/// The guide head's weights: raw feature `[B, F]` → word logits `[B, V]`.
#[derive(Module, Debug)]
pub struct GuideHead {
    /// `[F, V]`, the standardisation folded in.
    pub weight: Param<Tensor<2>>,
    /// `[V]`
    pub bias: Param<Tensor<1>>,
}

impl GuideHead {
    /// A head of zeros (what a model's config builds before its weights are loaded).
    pub fn zeros(features: usize, vocab: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::zeros([features, vocab], device)),
            bias: Param::from_tensor(Tensor::zeros([vocab], device)),
        }
    }

    /// The head of a fit, on `device`.
    pub fn from_fit(fit: &FittedHead, device: &Device) -> Self {
        let weight = Tensor::<1>::from_data(
            TensorData::new(fit.weight.clone(), [fit.features * fit.vocab]),
            device,
        )
        .reshape([fit.features, fit.vocab]);
        let bias = Tensor::<1>::from_data(TensorData::new(fit.bias.clone(), [fit.vocab]), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    /// Word logits `[B, V]` of raw features `[B, F]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        let w = self.weight.val();
        features.cast(w.dtype()).matmul(w) + self.bias.val().unsqueeze_dim(0)
    }
}

/// A fitted guide head, in plain buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedHead {
    pub features: usize,
    pub vocab: usize,
    /// `[F, V]` row-major, reading raw features (the standardisation folded in).
    pub weight: Vec<f32>,
    /// `[V]`
    pub bias: Vec<f32>,
    /// The training features' mean and scale (`1 / sd`): the model's `embedding.json`.
    pub stats: EmbeddingStats,
    /// The mean loss (binary cross-entropy summed over words) of the last epoch.
    pub loss: f64,
}

impl FittedHead {
    /// Logits of raw features (`rows × F`, row-major), `rows × V`.
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        let rows = features.len() / self.features.max(1);
        let mut out: Vec<f32> = self.bias.repeat(rows);
        matmul(
            &mut out,
            features,
            &self.weight,
            (rows, self.features, self.vocab),
            true,
            true,
        );
        out
    }
}

/// For each image (its captions as word ids) and word `< vocab`, the share of its captions that
/// use the word: the concept loss's targets, row-major `images × vocab`.
pub fn word_shares(captions: &[Vec<Vec<usize>>], vocab: usize) -> Vec<f32> {
    let mut values = vec![0f32; captions.len() * vocab];
    for (row, caps) in values.chunks_exact_mut(vocab.max(1)).zip(captions) {
        let share = 1.0 / caps.len().max(1) as f32;
        for cap in caps {
            let mut seen: Vec<usize> = cap.iter().copied().filter(|&w| w < vocab).collect();
            seen.sort_unstable();
            seen.dedup();
            for w in seen {
                row[w] += share;
            }
        }
    }
    values
}

/// Fits a guide head on `features` (`n × dim`, row-major, raw) and `targets` (`n × vocab`, each
/// in `[0, 1]`): per-dimension standardisation by the features' own statistics, then logistic
/// regression (binary cross-entropy summed over words, averaged over a batch) by AdamW from zero
/// weights and the targets' mean as the bias, `fit.epochs` passes in a seeded order. The same
/// inputs and settings give the same head.
pub fn fit_guide_head(
    features: &[f32],
    dim: usize,
    targets: &[f32],
    vocab: usize,
    fit: &GuideFit,
    fitted_on: &str,
) -> Result<FittedHead> {
    if dim == 0 || vocab == 0 || !features.len().is_multiple_of(dim) {
        return Err(Error::Invalid(format!(
            "guide head: {} feature values are not rows of {dim}",
            features.len()
        )));
    }
    let n = features.len() / dim;
    if targets.len() != n * vocab {
        return Err(Error::Invalid(format!(
            "guide head: {} targets for {n} images of {vocab} words",
            targets.len()
        )));
    }
    if fit.batch_size == 0 || !(fit.lr > 0.0 && fit.lr.is_finite()) {
        return Err(Error::Invalid(
            "guide head: batch_size and lr must be positive".into(),
        ));
    }
    if !(0.0..1.0).contains(&fit.dropout) {
        return Err(Error::Invalid(format!(
            "guide head: dropout {} is not in [0, 1)",
            fit.dropout
        )));
    }
    let stats = EmbeddingStats::fit(features.chunks_exact(dim), fitted_on)?;
    let mut x = features.to_vec();
    for row in x.chunks_exact_mut(dim) {
        stats.apply(row);
    }
    // parameters: weights `[dim, vocab]` then the bias `[vocab]`
    let mut w = vec![0f32; dim * vocab];
    let mut b: Vec<f32> = (0..vocab)
        .map(|j| {
            let p = (0..n)
                .map(|i| f64::from(targets[i * vocab + j]))
                .sum::<f64>()
                / n as f64;
            let p = p.clamp(1e-4, 1.0 - 1e-4);
            (p / (1.0 - p)).ln() as f32
        })
        .collect();
    let (mut mw, mut vw) = (vec![0f32; w.len()], vec![0f32; w.len()]);
    let (mut mb, mut vb) = (vec![0f32; vocab], vec![0f32; vocab]);
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let bs = fit.batch_size.min(n.max(1));
    let mut xb = vec![0f32; bs * dim];
    let mut g = vec![0f32; bs * vocab];
    let mut gw = vec![0f32; dim * vocab];
    let mut gb = vec![0f32; vocab];
    let mut order: Vec<usize> = (0..n).collect();
    let mut step = 0i32;
    let mut loss = 0.0;
    let mut masks = ChaCha8Rng::seed_from_u64(fit.seed ^ 0xD1B5_4A32_D192_ED03);
    let keep_scale = 1.0 / (1.0 - fit.dropout);
    for epoch in 0..fit.epochs {
        order.sort_unstable();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            fit.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        let mut epoch_loss = 0.0;
        for chunk in order.chunks(bs) {
            let m = chunk.len();
            for (dst, &i) in xb.chunks_exact_mut(dim).zip(chunk) {
                dst.copy_from_slice(&x[i * dim..(i + 1) * dim]);
            }
            if fit.dropout > 0.0 {
                for v in &mut xb[..m * dim] {
                    *v = if masks.random::<f32>() < fit.dropout {
                        0.0
                    } else {
                        *v * keep_scale
                    };
                }
            }
            // logits = xb · w + b
            let logits = &mut g[..m * vocab];
            for row in logits.chunks_exact_mut(vocab) {
                row.copy_from_slice(&b);
            }
            matmul(logits, &xb[..m * dim], &w, (m, dim, vocab), true, true);
            // gradient of the mean over the batch: (σ(z) − y) / m
            let scale = 1.0 / m as f32;
            for (r, &i) in chunk.iter().enumerate() {
                let y = &targets[i * vocab..(i + 1) * vocab];
                for (z, &t) in logits[r * vocab..(r + 1) * vocab].iter_mut().zip(y) {
                    let ls = super::guide::log_sigmoid(*z);
                    let lns = super::guide::log_sigmoid(-*z);
                    epoch_loss -= f64::from(t * ls + (1.0 - t) * lns);
                    *z = (ls.exp() - t) * scale;
                }
            }
            // gw = xbᵀ · g, gb = Σ rows of g
            matmul_strided(
                (&mut gw, Layout::rows(vocab)),
                (&xb[..m * dim], Layout::transposed(dim)),
                (&g[..m * vocab], Layout::rows(vocab)),
                (dim, m, vocab),
                false,
                true,
            );
            gb.fill(0.0);
            for row in g[..m * vocab].chunks_exact(vocab) {
                for (s, &v) in gb.iter_mut().zip(row) {
                    *s += v;
                }
            }
            step += 1;
            let c1 = 1.0 - beta1.powi(step);
            let c2 = 1.0 - beta2.powi(step);
            let lr = fit.lr;
            let adam = |p: &mut [f32], m: &mut [f32], v: &mut [f32], grad: &[f32], decay: f32| {
                for (((p, m), v), &gr) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grad)
                {
                    *m = beta1 * *m + (1.0 - beta1) * gr;
                    *v = beta2 * *v + (1.0 - beta2) * gr * gr;
                    *p -= lr * decay * *p;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            };
            adam(&mut w, &mut mw, &mut vw, &gw, fit.weight_decay);
            adam(&mut b, &mut mb, &mut vb, &gb, 0.0);
        }
        loss = epoch_loss / n.max(1) as f64;
        tracing::debug!(epoch = epoch + 1, loss, "guide head");
    }
    // fold the standardisation in: ((f − μ) · s) · w + b = f · (s ⊙ w) + (b − (μ ⊙ s) · w)
    let mut bias = b;
    for (i, row) in w.chunks_exact_mut(vocab).enumerate() {
        let (mu, s) = (stats.mean[i], stats.scale[i]);
        for (wj, bj) in row.iter_mut().zip(bias.iter_mut()) {
            *bj -= mu * s * *wj;
            *wj *= s;
        }
    }
    if !w.iter().chain(&bias).all(|v| v.is_finite()) {
        return Err(Error::Invalid(
            "guide head: fitting diverged (a weight is not finite); lower its lr".into(),
        ));
    }
    Ok(FittedHead {
        features: dim,
        vocab,
        weight: w,
        bias,
        stats,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two words, each used by the images whose feature 0 (word 1) or feature 1 (word 2) is
    /// large, on features with offsets and scales far from standard; feature 2 is noise.
    fn toy() -> (Vec<f32>, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let a = (i % 2) as f32;
            let c = ((i / 2) % 2) as f32;
            let noise: f32 = rng.random_range(-1.0..1.0);
            x.extend([100.0 + 10.0 * a, -5.0 + 0.01 * c, 3.0 + noise]);
            y.extend([0.0, a, c]);
        }
        (x, y)
    }

    #[test]
    fn it_learns_a_separable_problem_from_raw_features() {
        let (x, y) = toy();
        let fit = GuideFit {
            epochs: 60,
            batch_size: 32,
            lr: 0.05,
            ..GuideFit::default()
        };
        let head = fit_guide_head(&x, 3, &y, 3, &fit, "toy").unwrap();
        let logits = head.logits(&x);
        for (z, t) in logits.iter().zip(&y) {
            let p = 1.0 / (1.0 + (-z).exp());
            assert!((p - t).abs() < 0.2, "p {p} for target {t}");
        }
        assert!(head.loss < 0.5, "loss {}", head.loss);
        // the statistics are the features' own
        assert!((head.stats.mean[0] - 105.0).abs() < 1e-3);
        // the burn module gives the same logits
        let device = Device::flex();
        let module = GuideHead::from_fit(&head, &device);
        let got: Vec<f32> = module
            .logits(Tensor::<1>::from_floats(x.as_slice(), &device).reshape([200, 3]))
            .into_data()
            .try_into_vec()
            .unwrap();
        for (a, b) in got.iter().zip(&logits) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn fitting_is_deterministic_for_a_seed() {
        let (x, y) = toy();
        let fit = GuideFit {
            epochs: 3,
            batch_size: 16,
            ..GuideFit::default()
        };
        let a = fit_guide_head(&x, 3, &y, 3, &fit, "toy").unwrap();
        let b = fit_guide_head(&x, 3, &y, 3, &fit, "toy").unwrap();
        assert_eq!(a, b);
        let other = GuideFit { seed: 7, ..fit };
        let c = fit_guide_head(&x, 3, &y, 3, &other, "toy").unwrap();
        assert_ne!(a.weight, c.weight);
        // dropout masks come from the seed too
        let dropped = GuideFit {
            dropout: 0.2,
            ..fit.clone()
        };
        let d = fit_guide_head(&x, 3, &y, 3, &dropped, "toy").unwrap();
        assert_eq!(d, fit_guide_head(&x, 3, &y, 3, &dropped, "toy").unwrap());
        assert_ne!(a.weight, d.weight);
    }

    #[test]
    fn it_still_learns_with_dropout() {
        let (x, y) = toy();
        let fit = GuideFit {
            epochs: 60,
            batch_size: 32,
            lr: 0.05,
            dropout: 0.2,
            ..GuideFit::default()
        };
        let head = fit_guide_head(&x, 3, &y, 3, &fit, "toy").unwrap();
        for (z, t) in head.logits(&x).iter().zip(&y) {
            let p = 1.0 / (1.0 + (-z).exp());
            assert!((p - t).abs() < 0.3, "p {p} for target {t}");
        }
        for p in [-0.1, 1.0, f32::NAN] {
            let bad = GuideFit {
                dropout: p,
                ..fit.clone()
            };
            assert!(fit_guide_head(&x, 3, &y, 3, &bad, "toy").is_err(), "{p}");
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let fit = GuideFit::default();
        assert!(fit_guide_head(&[1.0; 5], 2, &[0.0; 4], 2, &fit, "x").is_err());
        assert!(fit_guide_head(&[1.0, 2.0, 3.0, 4.0], 2, &[0.0; 3], 2, &fit, "x").is_err());
        assert!(fit_guide_head(&[1.0, 2.0], 2, &[0.0; 2], 2, &fit, "x").is_err());
    }

    #[test]
    fn word_shares_are_the_concept_targets() {
        let caps = vec![vec![vec![1, 2, 2], vec![2, 5]], vec![]];
        let t = word_shares(&caps, 3);
        assert_eq!(t, [0.0, 0.5, 1.0, 0.0, 0.0, 0.0]);
    }
}
