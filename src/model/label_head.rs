//! `labels.json` in a model folder: the label head, which makes the model's image embeddings name
//! the things a dataset's labels say its images show (`capsearch fit-labels`).
//!
//! A label head is a logistic classifier from the encoder's feature (a frozen backbone's pooled
//! feature, or a small CNN's features before the decoder's projection) to the elements of the
//! images' label sets ([`Labels::label_set`](crate::data::labels::Labels::label_set): `colour
//! kind` pairs on `shapes`, kinds on `scenes`), fitted like the guide head
//! ([`fit_guide_head`]: standardised inputs, AdamW on seeded mini-batches, deterministic) on a
//! labelled split. With the file, the model's embedding for visual search is the square root of
//! the head's probabilities, one value per label, instead of the feature.
//!
//! Why: image → image relevance on labelled datasets is the overlap of label sets, and neither
//! the features nor the captions bind what they know into it. Measured with `eval search
//! --probes` (`shapes`, 500 test queries, gallery 4500; P@10 / nDCG@10): the standardised
//! projected embedding 0.379 / 0.357, a label head on it 0.545 / 0.511, on the CNN's features
//! 0.602 / 0.536, their square roots 0.606 / 0.550; caption search 0.294 / 0.302 (README,
//! Search, has the `scenes` figures). The square root weighs the less likely labels up: cosine
//! over `√p` is the Bhattacharyya coefficient of the two images' label beliefs.
//!
//! Three choices made at fit time (`fit-labels --scale`, `--values`, `--pooling`) are kept in the
//! file:
//! - `scale`: a whole frozen EfficientNet or ResNet takes images of any size, so the head can
//!   read the backbone on the model's prepared image enlarged N times (bilinear): the small things
//!   `scenes` composites over a photo then cover more of the network's cells. `scenes`, 200 test
//!   queries against the val gallery, visual P@10: 0.319 at scale 1, 0.398 at scale 2, at four
//!   times the backbone's work per embedded image (a linear probe on Lite0's 7×7 map pooled every
//!   other way had stayed within 0.01 of the mean: README, Pooling).
//! - `values`: the square roots of the probabilities (the default) or the probabilities
//!   themselves. Probabilities weigh the unlikely labels down: `scenes` at scale 2, 0.398 →
//!   0.419; `shapes` 0.606 → 0.602.
//!
//! - `pooling`: the backbone's last map pooled the head's own way (computed beside the caption's
//!   features): `gem` on `scenes`, 1,000 test queries against the train + val gallery, visual
//!   P@10 0.843 → 0.848 at scale 2 with probabilities (README, Label heads).
//!
//! A model with `labels.json` embeds into another vector space (named by the file's
//! fingerprint), so indexes built before refuse its queries with the usual mismatch message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::guide_head::{GuideFit, fit_guide_head};
use super::pooling::Pooling;
use crate::error::{Error, Result};

/// The file in a model folder.
pub const LABEL_HEAD: &str = "labels.json";

/// The largest [`LabelHead::scale`]: 4× a 224-pixel image is 896 pixels a side, 16 times the
/// backbone's work.
pub const MAX_SCALE: u32 = 4;

/// A fitted label head (`labels.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelHead {
    /// What it was fitted on, in words (dataset and split).
    pub fitted_on: String,
    /// How many images.
    pub images: usize,
    /// How it was fitted.
    pub fit: GuideFit,
    /// The labels, in the order of the weight's columns (and of the embedding's values).
    pub labels: Vec<String>,
    /// The length of the feature it reads.
    pub features: usize,
    /// `[features, labels]` row-major, reading the raw feature (the standardisation folded in).
    pub weight: Vec<f32>,
    /// `[labels]`
    pub bias: Vec<f32>,
    /// How many times larger, on each side, the backbone reads the model's prepared image for
    /// this head: 1, the caption's own feature; 2, the prepared image enlarged 2× (bilinear)
    /// first, so that small things cover more of the network's cells (a whole frozen backbone
    /// only; see the module documentation). Files written before it existed are 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub scale: u32,
    /// What the embedding holds per label. Files written before it existed hold square roots.
    #[serde(default, skip_serializing_if = "LabelValues::is_square_root")]
    pub values: LabelValues,
    /// How the backbone's last map becomes the feature the head reads, when not as for the
    /// caption (a whole frozen backbone only): `gem` on `scenes` (see the module
    /// documentation). Files written before it existed read the caption's pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
}

fn one() -> u32 {
    1
}

fn is_one(x: &u32) -> bool {
    *x == 1
}

/// What a label embedding holds per label (`values` in `labels.json`, `fit-labels --values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelValues {
    /// The square root of the label's probability: cosine is then the Bhattacharyya coefficient
    /// of the two images' label beliefs.
    #[default]
    SquareRoot,
    /// The probability itself: the unlikely labels weigh less.
    Probability,
}

impl std::fmt::Display for LabelValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LabelValues {
    /// The name flags and files use.
    pub fn name(self) -> &'static str {
        match self {
            LabelValues::SquareRoot => "square-root",
            LabelValues::Probability => "probability",
        }
    }

    fn is_square_root(&self) -> bool {
        *self == LabelValues::SquareRoot
    }
}

impl LabelHead {
    /// Fits a head on `features` (`rows × dim`, row-major, raw) and each row's label set. The
    /// labels are those the sets name, sorted. Fails when fewer than two rows or no labels are
    /// given.
    pub fn fit(
        features: &[f32],
        dim: usize,
        sets: &[BTreeSet<String>],
        fit: &GuideFit,
        fitted_on: &str,
    ) -> Result<LabelHead> {
        let labels: Vec<String> = sets
            .iter()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if sets.len() < 2 || labels.is_empty() {
            return Err(Error::Invalid(format!(
                "a label head needs at least two labelled images and one label; {fitted_on} \
                 has {} labelled images and {} labels",
                sets.len(),
                labels.len()
            )));
        }
        let column: BTreeMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let mut targets = vec![0f32; sets.len() * labels.len()];
        for (row, set) in targets.chunks_exact_mut(labels.len()).zip(sets) {
            for label in set {
                row[column[label.as_str()]] = 1.0;
            }
        }
        let fitted = fit_guide_head(features, dim, &targets, labels.len(), fit, fitted_on)?;
        Ok(LabelHead {
            fitted_on: fitted_on.to_string(),
            images: sets.len(),
            fit: fit.clone(),
            labels,
            features: fitted.features,
            weight: fitted.weight,
            bias: fitted.bias,
            scale: 1,
            values: LabelValues::default(),
            pooling: None,
        })
    }

    /// Whether the head reads a feature of its own (another size or pooling), which the
    /// caption's features do not give: computed beside them, from the pixels.
    pub fn reads_own_features(&self) -> bool {
        self.scale > 1 || self.pooling.is_some()
    }

    /// The embedding of each feature row (`rows × features`, row-major): the labels'
    /// probabilities, or their square roots ([`LabelHead::values`]).
    pub fn embed(&self, features: &[f32]) -> Vec<Vec<f32>> {
        let l = self.labels.len();
        let rows = features.len() / self.features.max(1);
        let mut out: Vec<f32> = self.bias.repeat(rows);
        super::gemm::matmul(
            &mut out,
            &features[..rows * self.features],
            &self.weight,
            (rows, self.features, l),
            true,
            true,
        );
        out.chunks_exact(l.max(1))
            .map(|row| {
                row.iter()
                    .map(|&z| {
                        let p = 1.0 / (1.0 + (-z).exp());
                        match self.values {
                            LabelValues::SquareRoot => p.sqrt(),
                            LabelValues::Probability => p,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// A short fingerprint of the head (8 hex digits of the SHA-256 of its labels and values), so
    /// that two fits make two vector spaces.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        crate::util::short_fingerprint(|hash| {
            for label in &self.labels {
                hash.update(label.as_bytes());
                hash.update([0]);
            }
            for x in self.weight.iter().chain(&self.bias) {
                hash.update(x.to_le_bytes());
            }
            // the defaults add nothing, so heads written before these existed keep their name
            if self.scale != 1 {
                hash.update(format!("scale {}", self.scale).as_bytes());
            }
            if self.values != LabelValues::SquareRoot {
                hash.update(self.values.name().as_bytes());
            }
            if let Some(pooling) = self.pooling {
                hash.update(format!("pooling {pooling}").as_bytes());
            }
        })
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LABEL_HEAD)
    }

    /// Reads `dir/labels.json`; `None` when the model has none. A file that does not parse, or
    /// whose sizes disagree or hold a value that is not finite, is an error naming the file.
    pub fn read(dir: &Path) -> Result<Option<LabelHead>> {
        let path = Self::path(dir);
        let Some(bytes) = crate::util::read_optional(&path)? else {
            return Ok(None);
        };
        let bad = |message: String| Error::Model {
            path: path.clone(),
            message: format!("{message}; fit it again with `capsearch fit-labels`, or delete it"),
        };
        let head: LabelHead = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let l = head.labels.len();
        if l == 0 || head.features == 0 {
            return Err(bad("it names no label or reads no feature".into()));
        }
        if head.bias.len() != l || head.weight.len() != head.features * l {
            return Err(bad(format!(
                "{} labels need {} weights ({} features × labels) and {l} biases; it holds {} \
                 and {}",
                l,
                head.features * l,
                head.features,
                head.weight.len(),
                head.bias.len()
            )));
        }
        if !head.weight.iter().chain(&head.bias).all(|x| x.is_finite()) {
            return Err(bad("a weight or bias is not a finite number".into()));
        }
        if !(1..=MAX_SCALE).contains(&head.scale) {
            return Err(bad(format!(
                "its scale is {}, outside 1..={MAX_SCALE}",
                head.scale
            )));
        }
        Ok(Some(head))
    }

    /// Writes `dir/labels.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = Self::path(dir);
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        crate::util::write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Two features, each saying whether one label is there; a third label is never there.
    fn toy() -> (Vec<f32>, Vec<BTreeSet<String>>) {
        let mut features = Vec::new();
        let mut sets = Vec::new();
        for i in 0..64 {
            let (a, b) = (i % 2 == 0, i % 3 == 0);
            features.extend([f32::from(u8::from(a)), f32::from(u8::from(b))]);
            let mut s = Vec::new();
            if a {
                s.push("red circle");
            }
            if b {
                s.push("frog");
            }
            sets.push(set(&s));
        }
        (features, sets)
    }

    #[test]
    fn a_fitted_head_names_the_labels_it_was_shown() {
        let (features, sets) = toy();
        let fit = GuideFit {
            epochs: 300,
            batch_size: 16,
            lr: 0.05,
            ..GuideFit::default()
        };
        let head = LabelHead::fit(&features, 2, &sets, &fit, "toy").unwrap();
        assert_eq!(head.labels, ["frog", "red circle"]);
        let e = head.embed(&[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(e.len(), 2);
        // √p: the red circle likely in the first, the frog in the second
        assert!(e[0][1] > 0.9 && e[0][0] < 0.5, "{e:?}");
        assert!(e[1][0] > 0.9 && e[1][1] < 0.5, "{e:?}");
        // the same inputs give the same head
        assert_eq!(
            LabelHead::fit(&features, 2, &sets, &fit, "toy").unwrap(),
            head
        );
        assert!(LabelHead::fit(&features[..2], 2, &sets[..1], &fit, "one").is_err());
        assert!(LabelHead::fit(&features, 2, &vec![set(&[]); 64], &fit, "none").is_err());
    }

    #[test]
    fn the_file_round_trips_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabelHead::read(dir.path()).unwrap(), None);
        let (features, sets) = toy();
        let fit = GuideFit {
            epochs: 2,
            ..GuideFit::default()
        };
        let head = LabelHead::fit(&features, 2, &sets, &fit, "toy").unwrap();
        head.write(dir.path()).unwrap();
        assert_eq!(LabelHead::read(dir.path()).unwrap(), Some(head.clone()));
        let mut other = head.clone();
        other.bias[0] += 1.0;
        assert_ne!(other.fingerprint(), head.fingerprint());
        let mut short = head.clone();
        short.weight.pop();
        short.write(dir.path()).unwrap();
        let err = LabelHead::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("labels.json") && err.contains("fit-labels"),
            "{err}"
        );
        std::fs::write(dir.path().join(LABEL_HEAD), "{").unwrap();
        assert!(LabelHead::read(dir.path()).is_err());
    }

    #[test]
    fn scale_and_values_change_the_space_and_old_files_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let (features, sets) = toy();
        let fit = GuideFit {
            epochs: 2,
            ..GuideFit::default()
        };
        let head = LabelHead::fit(&features, 2, &sets, &fit, "toy").unwrap();
        // a file without the fields (as written before they existed) is scale 1, square roots
        let json = serde_json::to_string(&head).unwrap();
        assert!(
            !json.contains("scale") && !json.contains("values"),
            "{json}"
        );
        let mut scaled = head.clone();
        scaled.scale = 2;
        scaled.values = LabelValues::Probability;
        scaled.write(dir.path()).unwrap();
        assert_eq!(LabelHead::read(dir.path()).unwrap(), Some(scaled.clone()));
        let fingerprints: BTreeSet<String> = [&head, &scaled]
            .into_iter()
            .map(LabelHead::fingerprint)
            .chain([{
                let mut h = head.clone();
                h.scale = 2;
                h.fingerprint()
            }])
            .collect();
        assert_eq!(fingerprints.len(), 3, "{fingerprints:?}");
        // probabilities are the squares of the square roots
        let x = [1.0, 0.0];
        let (roots, probs) = (head.embed(&x), scaled.embed(&x));
        for (r, p) in roots[0].iter().zip(&probs[0]) {
            assert!((r * r - p).abs() < 1e-6, "{r} {p}");
        }
        // another pooling: another space, read back as written
        let mut gem = scaled.clone();
        gem.pooling = Some(Pooling::Gem);
        assert!(gem.reads_own_features() && scaled.reads_own_features());
        assert!(!head.reads_own_features());
        assert_ne!(gem.fingerprint(), scaled.fingerprint());
        gem.write(dir.path()).unwrap();
        assert_eq!(LabelHead::read(dir.path()).unwrap(), Some(gem));
        for bad in [0, MAX_SCALE + 1] {
            let mut h = head.clone();
            h.scale = bad;
            h.write(dir.path()).unwrap();
            let err = LabelHead::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("scale") && err.contains("fit-labels"), "{err}");
        }
    }
}
