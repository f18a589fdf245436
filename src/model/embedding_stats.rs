//! `embedding.json` in a model folder: per-dimension statistics that standardise the model's image
//! embeddings for visual search, `(x − mean) / sd`, fitted on a set of images
//! (`capsearch fit-embedding`).
//!
//! Why: cosine similarity over raw embeddings is dominated by the dimensions with the largest
//! values, which every image shares (an EfficientNet's pooled ReLU6 feature is never negative).
//! Standard scores weigh each dimension by how much it tells images apart. Measured with
//! `eval search --diagnostics` (P@10 / nDCG@10, statistics fitted on the gallery): `shapes`
//! 0.354 / 0.333 → 0.373 / 0.345, `scenes` 0.062 / 0.181 → 0.084 / 0.236 (README, Search).
//!
//! A model with `embedding.json` embeds into another vector space than one without (its name
//! carries the statistics' fingerprint), so an index built before the statistics were fitted, or
//! with other statistics, refuses its vectors with the usual mismatch error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::inference::CaptionEngine;

/// The file in a model folder.
pub const EMBEDDING_STATS: &str = "embedding.json";

/// Per-dimension mean and scale (`1 / sd`) of a model's embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingStats {
    /// What the statistics were fitted on, in words (dataset and split).
    pub fitted_on: String,
    /// How many images.
    pub images: usize,
    pub mean: Vec<f32>,
    /// `1 / sd` of each dimension; 1 where a dimension does not vary (it is then only centred).
    pub scale: Vec<f32>,
}

impl EmbeddingStats {
    /// Fits on `rows` (all of one length; at least two).
    pub fn fit<'a>(
        rows: impl IntoIterator<Item = &'a [f32]>,
        fitted_on: impl Into<String>,
    ) -> Result<EmbeddingStats> {
        let mut sum: Vec<f64> = Vec::new();
        let mut sq: Vec<f64> = Vec::new();
        let mut n = 0usize;
        for row in rows {
            if n == 0 {
                sum = vec![0.0; row.len()];
                sq = vec![0.0; row.len()];
            } else if row.len() != sum.len() {
                return Err(Error::Invalid(format!(
                    "embedding {n} has {} values, the first had {}",
                    row.len(),
                    sum.len()
                )));
            }
            for ((s, q), &x) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                *s += f64::from(x);
                *q += f64::from(x) * f64::from(x);
            }
            n += 1;
        }
        if n < 2 {
            return Err(Error::Invalid(format!(
                "standardising embeddings needs at least 2 images, got {n}"
            )));
        }
        let count = n as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let scale = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let var = (q / count - m * m).max(0.0);
                if var > 1e-12 {
                    (1.0 / var.sqrt()) as f32
                } else {
                    1.0
                }
            })
            .collect();
        Ok(EmbeddingStats {
            fitted_on: fitted_on.into(),
            images: n,
            mean: mean.into_iter().map(|m| m as f32).collect(),
            scale,
        })
    }

    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Standardises `v` in place.
    pub fn apply(&self, v: &mut [f32]) {
        for ((x, m), s) in v.iter_mut().zip(&self.mean).zip(&self.scale) {
            *x = (*x - m) * s;
        }
    }

    /// Undoes [`EmbeddingStats::apply`] in place.
    pub fn invert(&self, v: &mut [f32]) {
        for ((x, m), s) in v.iter_mut().zip(&self.mean).zip(&self.scale) {
            *x = *x / s + m;
        }
    }

    /// A short fingerprint of the statistics (8 hex digits of the SHA-256 of their values), so
    /// that two fits make two vector spaces.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        crate::util::short_fingerprint(|hash| {
            for x in self.mean.iter().chain(&self.scale) {
                hash.update(x.to_le_bytes());
            }
        })
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(EMBEDDING_STATS)
    }

    /// Reads `dir/embedding.json`; `None` when the model has none. A file that does not parse,
    /// or whose two lists differ in length or hold a value that is not finite, is an error naming
    /// the file.
    pub fn read(dir: &Path) -> Result<Option<EmbeddingStats>> {
        let path = Self::path(dir);
        let Some(bytes) = crate::util::read_optional(&path)? else {
            return Ok(None);
        };
        let bad = |message: String| Error::Model {
            path: path.clone(),
            message,
        };
        let stats: EmbeddingStats = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "{e}; fit it again with `capsearch fit-embedding`, or delete it"
            ))
        })?;
        if stats.mean.len() != stats.scale.len() || stats.mean.is_empty() {
            return Err(bad(format!(
                "`mean` has {} values and `scale` {}: they must be the embedding's length; fit \
                 it again with `capsearch fit-embedding`",
                stats.mean.len(),
                stats.scale.len()
            )));
        }
        if !stats.mean.iter().chain(&stats.scale).all(|x| x.is_finite()) {
            return Err(bad(
                "`mean` or `scale` holds a value that is not a finite number".into(),
            ));
        }
        Ok(Some(stats))
    }

    /// Writes `dir/embedding.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = Self::path(dir);
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        crate::util::write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

/// Fits the statistics on the raw embeddings `engine` gives the images at `paths` (read in
/// batches of `batch_size`); images that cannot be read are left out and returned with why.
pub fn fit_on_images(
    engine: &CaptionEngine,
    paths: &[PathBuf],
    batch_size: usize,
    fitted_on: &str,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<(EmbeddingStats, Vec<(PathBuf, String)>)> {
    let mut rows = Vec::with_capacity(paths.len());
    let mut skipped = Vec::new();
    for chunk in paths.chunks(batch_size.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len());
        for path in chunk {
            match engine.prepare_image(path) {
                Ok(p) => pixels.push(p),
                Err(e) => skipped.push((path.clone(), e.to_string())),
            }
        }
        rows.extend(engine.raw_embeddings_of_pixels(&pixels)?);
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    let stats = EmbeddingStats::fit(rows.iter().map(Vec::as_slice), fitted_on)?;
    Ok((stats, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_standardises_each_dimension() {
        let rows = [
            vec![10.0, 1.0, 5.0],
            vec![12.0, 3.0, 5.0],
            vec![14.0, 2.0, 5.0],
        ];
        let s = EmbeddingStats::fit(rows.iter().map(Vec::as_slice), "test").unwrap();
        assert_eq!(s.images, 3);
        let mut v = [14.0, 3.0, 6.0];
        s.apply(&mut v);
        // sd of (10, 12, 14) = sqrt(8/3); of (1, 3, 2) = sqrt(2/3); (5, 5, 5) is only centred.
        assert!((v[0] - 2.0 / (8.0f32 / 3.0).sqrt()).abs() < 1e-5);
        assert!((v[1] - 1.0 / (2.0f32 / 3.0).sqrt()).abs() < 1e-5);
        assert!((v[2] - 1.0).abs() < 1e-6);
        s.invert(&mut v);
        assert!(
            v.iter()
                .zip([14.0, 3.0, 6.0])
                .all(|(a, b)| (a - b).abs() < 1e-5)
        );
        assert_eq!(s.fingerprint().len(), 8);
        let other = EmbeddingStats::fit(rows[..2].iter().map(Vec::as_slice), "test").unwrap();
        assert_ne!(s.fingerprint(), other.fingerprint());
        assert!(EmbeddingStats::fit([[1.0f32].as_slice()], "one").is_err());
        assert!(EmbeddingStats::fit([[1.0f32].as_slice(), &[1.0, 2.0]], "ragged").is_err());
    }

    #[test]
    fn the_file_round_trips_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EmbeddingStats::read(dir.path()).unwrap(), None);
        let rows = [vec![1.0, 2.0], vec![3.0, 5.0]];
        let s = EmbeddingStats::fit(rows.iter().map(Vec::as_slice), "two").unwrap();
        s.write(dir.path()).unwrap();
        assert_eq!(EmbeddingStats::read(dir.path()).unwrap(), Some(s));
        std::fs::write(
            dir.path().join(EMBEDDING_STATS),
            r#"{"fitted_on":"x","images":2,"mean":[1,2],"scale":[1]}"#,
        )
        .unwrap();
        let e = EmbeddingStats::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("embedding.json") && e.contains("`scale` 1"),
            "{e}"
        );
        std::fs::write(dir.path().join(EMBEDDING_STATS), "{").unwrap();
        let e = EmbeddingStats::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("fit-embedding"), "{e}");
    }
}
