//! The on-disk cache of frozen-backbone features: each image's feature is computed once and read
//! back by later runs, which then train only the decoder.
//!
//! ## Layout
//! ```text
//! <dataset dir>/features/<backbone key>/     e.g. datasets/shapes/features/capsearch-cnn-3fa2c1d07b9e4f21/
//!   backbone.json                            what the backbone is (for people; the key is what counts)
//!   shard-<time>-<pid>-<n>.feat              features of some images
//! ```
//! The directory's name is [`BackboneInfo::key`], a hash of the backbone's network, shape,
//! preprocessing and weights file: another backbone (or the same one with other weights) never
//! reads these features.
//!
//! ## Keying images by content
//! Inside a cache, features are keyed by the SHA-256 of the image file's bytes, not by path, size
//! or modification time. A changed image gets a new hash and so a new feature, whatever its
//! timestamps say (`cp -p`, `rsync -t`, archives and checkouts all restore or set times that need
//! not follow the content); an unchanged image keeps its feature even when moved or copied. The
//! price is reading and hashing every image once per run, which is small next to decoding it and
//! far smaller than running a backbone on it.
//!
//! ## Shard files: atomic and checked
//! Features are written in shards of at most [`ExtractOptions::flush_every`] images, so a killed
//! run keeps what it finished and the next run computes only the rest. Each shard is written to a
//! temporary file and renamed into place ([`crate::util::write_atomic`]), so a `.feat` file is
//! always complete; leftover temporary files (`.tmp*`) are never read. A shard is
//! ```text
//! b"CSFEAT01" | header length (u64 LE) | header JSON | features (f32 LE, images × dim)
//! ```
//! with the header `{"key", "dim", "images": [sha256 hex, ...], "data_sha256"}`. A shard whose
//! magic, header, key, dimension, length or data checksum is wrong is not trusted: it is reported
//! with a warning, deleted, and its images are computed again. When a run leaves more than one
//! shard, they are merged into one ([`FeatureCache::compact`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use burn::prelude::*;
use sha2::{Digest, Sha256};

use crate::data::batch::images_tensor;
use crate::data::formats::resolve_image;
use crate::data::image::{ImageLimits, load_rgb8};
use crate::data::parallel::{default_threads, map_parallel, progress_bar};
use crate::data::{Dataset, Sample, Skipped};
use crate::error::{Error, Result};
use crate::model::backbone::{BACKBONE_INFO, Backbone};

mod shard;
pub use shard::{MAGIC, SHARD_EXT, read_shard, write_shard};

/// The `features/` folder beside a dataset: in the dataset's folder (a folder dataset) or in
/// the folder of its file.
pub fn default_root(dataset: &Dataset) -> PathBuf {
    let source = &dataset.source;
    if source.is_dir() {
        source.join("features")
    } else {
        source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("features")
    }
}

/// How features are computed.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Images per backbone call.
    pub batch_size: usize,
    /// Threads for hashing and decoding.
    pub threads: usize,
    pub limits: ImageLimits,
    /// Write a shard after this many new features (and at the end).
    pub flush_every: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch_size: 32,
            threads: default_threads(),
            limits: ImageLimits::default(),
            flush_every: 256,
        }
    }
}

/// Features of some samples, in sample order (unreadable images left out).
#[derive(Debug, Clone, Default)]
pub struct SplitFeatures {
    pub dim: usize,
    pub samples: Vec<Sample>,
    /// Row-major `[samples.len(), dim]`.
    pub values: Vec<f32>,
    /// Images that could not be read or decoded.
    pub failed: Vec<Skipped>,
    /// Samples whose feature came from the cache.
    pub hits: usize,
    /// Features computed by this call (distinct images).
    pub computed: usize,
}

impl SplitFeatures {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The feature of sample `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// An open feature cache: every trusted feature of one backbone, in memory.
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    key: String,
    dim: usize,
    /// Image SHA-256 (hex) → feature.
    rows: HashMap<String, Vec<f32>>,
    /// Trusted shard files on disk.
    shards: Vec<PathBuf>,
    /// Shard files found corrupt (and deleted), with the reason.
    pub rejected: Vec<(PathBuf, String)>,
}

static SHARD_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl FeatureCache {
    /// Opens (creating it when missing) the cache of `backbone` under `root`
    /// (`root/<key>/`), reading every shard and rejecting the ones that fail their checks.
    pub fn open(root: &Path, backbone: &Backbone) -> Result<Self> {
        let key = backbone.info.key();
        let dir = root.join(&key);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let info_path = dir.join(BACKBONE_INFO);
        if !info_path.exists() {
            let json = serde_json::to_string_pretty(&backbone.info)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            crate::util::write_atomic(&info_path, json.as_bytes())?;
        }
        let mut cache = FeatureCache {
            dir,
            key,
            dim: backbone.feature_dim(),
            rows: HashMap::new(),
            shards: Vec::new(),
            rejected: Vec::new(),
        };
        cache.load_shards()?;
        Ok(cache)
    }

    /// The cache's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of distinct images with a trusted feature.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Trusted shard files.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    fn load_shards(&mut self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == SHARD_EXT))
            .collect();
        paths.sort();
        for path in paths {
            match read_shard(&path, &self.key, self.dim) {
                Ok(entries) => {
                    for (hash, feature) in entries {
                        self.rows.insert(hash, feature);
                    }
                    self.shards.push(path);
                }
                Err(reason) => {
                    tracing::warn!(
                        "feature cache: ignoring {} ({reason}); its images will be computed again",
                        path.display()
                    );
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!("cannot delete {}: {e}", path.display());
                    }
                    self.rejected.push((path, reason));
                }
            }
        }
        Ok(())
    }

    /// Features of `samples` (paths relative to `dataset`'s image root): from the cache when the
    /// image's content is known, otherwise computed with `backbone`, written to the cache and
    /// kept. Unreadable images are left out with a warning, as training does with images.
    pub fn features(
        &mut self,
        backbone: &Backbone,
        dataset: &Dataset,
        samples: &[&Sample],
        what: &str,
        opts: &ExtractOptions,
        device: &Device,
    ) -> Result<SplitFeatures> {
        let size = backbone.info.preprocessing.image_size as u32;
        let normalization = backbone.info.normalization()?;
        let mut failed = Vec::new();

        // 1. hash every image file
        let started = Instant::now();
        let bar = progress_bar(samples.len() as u64, &format!("hashing {what} images"));
        let hashed = map_parallel(samples, opts.threads, Some(&bar), |s| {
            let path = resolve_image(&dataset.image_root, &s.path)?;
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            Ok::<_, Error>((path, hex::encode(Sha256::digest(&bytes))))
        });
        bar.finish_and_clear();
        let mut located: Vec<Option<(PathBuf, String)>> = Vec::with_capacity(samples.len());
        for (s, r) in samples.iter().zip(hashed) {
            match r {
                Ok(v) => located.push(Some(v)),
                Err(e) => {
                    tracing::warn!("skipping image {}: {e}", s.path);
                    failed.push(Skipped {
                        entry: s.path.clone(),
                        reason: e.to_string(),
                    });
                    located.push(None);
                }
            }
        }
        let hash_secs = started.elapsed().as_secs_f64();

        // 2. the distinct images the cache lacks
        let mut missing: Vec<(PathBuf, String)> = Vec::new();
        let mut queued = std::collections::HashSet::new();
        let mut hits = 0usize;
        for (path, hash) in located.iter().flatten() {
            if self.rows.contains_key(hash) {
                hits += 1;
            } else if queued.insert(hash.clone()) {
                missing.push((path.clone(), hash.clone()));
            }
        }
        let readable = located.iter().flatten().count();
        tracing::info!(
            "feature cache {}: {what}: {hits} of {readable} images cached, {} to compute (hashed in {hash_secs:.1}s)",
            self.dir.display(),
            missing.len(),
        );

        // 3. compute them in batches, flushing shards as we go
        let mut computed = 0usize;
        let mut broken: HashMap<String, String> = HashMap::new();
        if !missing.is_empty() {
            let started = Instant::now();
            let bar = progress_bar(
                missing.len() as u64,
                &format!("computing {what} features ({})", backbone.info.name),
            );
            let mut pending: Vec<(String, Vec<f32>)> = Vec::new();
            for chunk in missing.chunks(opts.batch_size.max(1)) {
                let decoded = map_parallel(chunk, opts.threads, None, |(path, _)| {
                    load_rgb8(path, size, backbone.info.resize, &opts.limits)
                });
                let mut pixels = Vec::with_capacity(chunk.len());
                let mut hashes = Vec::with_capacity(chunk.len());
                for ((_, hash), r) in chunk.iter().zip(decoded) {
                    match r {
                        Ok(px) => {
                            pixels.push(px);
                            hashes.push(hash.clone());
                        }
                        Err(e) => {
                            broken.insert(hash.clone(), e.to_string());
                        }
                    }
                }
                if !pixels.is_empty() {
                    let refs: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
                    let tensor = images_tensor(&refs, size as usize, normalization, device);
                    let out = backbone.forward(tensor)?;
                    let [b, d] = out.dims();
                    if d != self.dim || b != hashes.len() {
                        return Err(Error::Invalid(format!(
                            "backbone {} gave [{b}, {d}] features for {} images of {} values",
                            backbone.info.name,
                            hashes.len(),
                            self.dim
                        )));
                    }
                    let values: Vec<f32> = out
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .map_err(|e| {
                            Error::Invalid(format!("cannot read backbone output: {e:?}"))
                        })?;
                    for (hash, feature) in hashes.into_iter().zip(values.chunks_exact(d)) {
                        self.rows.insert(hash.clone(), feature.to_vec());
                        pending.push((hash, feature.to_vec()));
                        computed += 1;
                    }
                }
                bar.inc(chunk.len() as u64);
                if pending.len() >= opts.flush_every.max(1) {
                    self.write_pending(&mut pending)?;
                }
            }
            self.write_pending(&mut pending)?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                "feature cache: computed {computed} {what} features in {secs:.1}s ({:.1} images/s)",
                computed as f64 / secs.max(1e-9)
            );
        }

        // 4. assemble in sample order
        let mut out = SplitFeatures {
            dim: self.dim,
            hits,
            computed,
            ..Default::default()
        };
        for (s, loc) in samples.iter().zip(located) {
            let Some((_, hash)) = loc else { continue };
            match self.rows.get(&hash) {
                Some(feature) => {
                    out.samples.push((*s).clone());
                    out.values.extend_from_slice(feature);
                }
                None => {
                    let reason = broken
                        .get(&hash)
                        .cloned()
                        .unwrap_or_else(|| "no feature".into());
                    tracing::warn!("skipping image {}: {reason}", s.path);
                    failed.push(Skipped {
                        entry: s.path.clone(),
                        reason,
                    });
                }
            }
        }
        out.failed = failed;
        Ok(out)
    }

    fn write_pending(&mut self, pending: &mut Vec<(String, Vec<f32>)>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let path = self.new_shard_path();
        write_shard(&path, &self.key, self.dim, pending)?;
        self.shards.push(path);
        pending.clear();
        Ok(())
    }

    fn new_shard_path(&self) -> PathBuf {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = SHARD_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "shard-{millis:015}-{}-{n}.{SHARD_EXT}",
            std::process::id()
        ))
    }

    /// Merges the shards into one when there are several: the merged shard is written first
    /// (atomically), then the others are deleted, so a run killed in between only leaves
    /// duplicates, which read back the same.
    pub fn compact(&mut self) -> Result<()> {
        if self.shards.len() <= 1 {
            return Ok(());
        }
        let mut entries: Vec<(String, Vec<f32>)> = self
            .rows
            .iter()
            .map(|(h, f)| (h.clone(), f.clone()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let path = self.new_shard_path();
        write_shard(&path, &self.key, self.dim, &entries)?;
        for old in std::mem::take(&mut self.shards) {
            if let Err(e) = std::fs::remove_file(&old) {
                tracing::warn!("cannot delete merged shard {}: {e}", old.display());
            }
        }
        self.shards.push(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
