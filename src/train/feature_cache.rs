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

/// First bytes of a shard file.
pub const MAGIC: &[u8; 8] = b"CSFEAT01";
/// Extension of shard files.
pub const SHARD_EXT: &str = "feat";

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

#[derive(serde::Serialize, serde::Deserialize)]
struct ShardHeader {
    key: String,
    dim: usize,
    images: Vec<String>,
    data_sha256: String,
}

/// Writes a shard atomically.
pub fn write_shard(
    path: &Path,
    key: &str,
    dim: usize,
    entries: &[(String, Vec<f32>)],
) -> Result<()> {
    let mut data = Vec::with_capacity(entries.len() * dim * 4);
    for (_, feature) in entries {
        if feature.len() != dim {
            return Err(Error::Invalid(format!(
                "feature of {} values in a cache of {dim}",
                feature.len()
            )));
        }
        for v in feature {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let header = ShardHeader {
        key: key.to_string(),
        dim,
        images: entries.iter().map(|(h, _)| h.clone()).collect(),
        data_sha256: hex::encode(Sha256::digest(&data)),
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut bytes = Vec::with_capacity(16 + header.len() + data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    crate::util::write_atomic(path, &bytes)
}

/// Reads and checks a shard; the error is the reason it is not trusted.
pub fn read_shard(
    path: &Path,
    key: &str,
    dim: usize,
) -> std::result::Result<Vec<(String, Vec<f32>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a capsearch feature shard (bad magic)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let header_len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let header_end = 16usize
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or("truncated header")?;
    let header: ShardHeader = serde_json::from_slice(&bytes[16..header_end])
        .map_err(|e| format!("unreadable header: {e}"))?;
    if header.key != key {
        return Err(format!("written for backbone {}, not {key}", header.key));
    }
    if header.dim != dim {
        return Err(format!(
            "features of {} values, the backbone gives {dim}",
            header.dim
        ));
    }
    let data = &bytes[header_end..];
    let want = header.images.len() * dim * 4;
    if data.len() != want {
        return Err(format!(
            "{} bytes of features where {} images need {want} (truncated or padded)",
            data.len(),
            header.images.len()
        ));
    }
    if hex::encode(Sha256::digest(data)) != header.data_sha256 {
        return Err("checksum mismatch (the features are corrupt)".into());
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(header
        .images
        .into_iter()
        .zip(values.chunks_exact(dim.max(1)))
        .map(|(h, f)| (h, f.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use crate::data::formats::Format;
    use crate::data::image::ResizeMode;
    use crate::model::artifact::Preprocessing;
    use crate::model::backbone::{BackboneInfo, BackboneNet, BackboneNetwork};
    use crate::model::encoder::SmallCnnConfig;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn write_png(path: &Path, color: [u8; 3]) {
        let img = RgbImage::from_fn(8, 8, |x, y| {
            if (x + y) % 3 == 0 {
                Rgb(color)
            } else {
                Rgb([color[1], color[2], color[0]])
            }
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), 8, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(path, out).unwrap();
    }

    const COLORS: [[u8; 3]; 3] = [[250, 10, 10], [10, 250, 10], [10, 10, 250]];

    /// Three images (and a missing one) in a CSV dataset in `dir`.
    fn dataset(dir: &Path) -> Dataset {
        for (i, c) in COLORS.iter().enumerate() {
            write_png(&dir.join(format!("{i}.png")), *c);
        }
        let sample = |p: &str| Sample {
            path: p.into(),
            captions: vec!["a thing".into()],
            split: Split::Train,
            labels: None,
        };
        Dataset {
            format: Format::Csv,
            source: dir.join("data.csv"),
            image_root: dir.to_path_buf(),
            samples: vec![
                sample("0.png"),
                sample("1.png"),
                sample("gone.png"),
                sample("2.png"),
            ],
            skipped: vec![],
            kinds: None,
        }
    }

    fn backbone(weights_sha256: &str, device: &Device) -> Backbone {
        device.seed(1);
        let config = SmallCnnConfig::new()
            .with_width(2)
            .with_depth(1)
            .with_grid(1);
        let cnn = config.init(device);
        Backbone::from_parts(
            BackboneInfo {
                name: "test".into(),
                network: BackboneNetwork::SmallCnn(config),
                preprocessing: Preprocessing {
                    image_size: 8,
                    normalization: "unit".into(),
                },
                resize: ResizeMode::Squash,
                source: "test".into(),
                weights_sha256: weights_sha256.into(),
                until_block: None,
                pooling: Default::default(),
            },
            BackboneNet::SmallCnn(cnn),
        )
        .unwrap()
    }

    fn run(root: &Path, b: &Backbone, ds: &Dataset) -> (FeatureCache, SplitFeatures) {
        let mut cache = FeatureCache::open(root, b).unwrap();
        let samples: Vec<&Sample> = ds.samples.iter().collect();
        let f = cache
            .features(
                b,
                ds,
                &samples,
                "test",
                &ExtractOptions {
                    batch_size: 1,
                    flush_every: 2,
                    ..Default::default()
                },
                &Device::flex(),
            )
            .unwrap();
        (cache, f)
    }

    fn shard_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == SHARD_EXT))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn computes_once_then_hits_and_recomputes_a_changed_image() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = dataset(tmp.path());
        let device = Device::flex();
        let b = backbone("aa", &device);
        let root = default_root(&ds);
        assert_eq!(root, tmp.path().join("features"));

        let (mut cache, first) = run(&root, &b, &ds);
        assert_eq!((first.hits, first.computed), (0, 3));
        assert_eq!(first.len(), 3);
        assert_eq!(first.dim, 2);
        assert_eq!(first.failed.len(), 1, "the missing image is skipped");
        assert_eq!(first.failed[0].entry, "gone.png");
        assert_eq!(first.samples[2].path, "2.png", "sample order is kept");
        // flush_every = 2: two shards, merged into one
        assert_eq!(shard_files(cache.dir()).len(), 2);
        cache.compact().unwrap();
        assert_eq!(shard_files(cache.dir()).len(), 1);
        assert!(cache.dir().join(BACKBONE_INFO).exists());

        let (_, second) = run(&root, &b, &ds);
        assert_eq!((second.hits, second.computed), (3, 0));
        assert_eq!(
            second.values, first.values,
            "cached features read back exactly"
        );

        // change one image: only it is computed again, and its feature changes
        write_png(&tmp.path().join("1.png"), [120, 120, 0]);
        let (_, third) = run(&root, &b, &ds);
        assert_eq!((third.hits, third.computed), (2, 1));
        assert_eq!(third.row(0), first.row(0));
        assert_ne!(third.row(1), first.row(1));
        assert_eq!(third.row(2), first.row(2));
    }

    /// A run killed after its first shard: the next run computes only what is missing.
    #[test]
    fn an_interrupted_run_is_resumed() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = dataset(tmp.path());
        let device = Device::flex();
        let b = backbone("aa", &device);
        let root = default_root(&ds);
        let mut cache = FeatureCache::open(&root, &b).unwrap();
        let first_two: Vec<&Sample> = ds.samples.iter().take(2).collect();
        let opts = ExtractOptions {
            flush_every: 1,
            ..Default::default()
        };
        let part = cache
            .features(&b, &ds, &first_two, "test", &opts, &device)
            .unwrap();
        assert_eq!(part.computed, 2);
        drop(cache); // no compaction: as if killed here
        let (_, all) = run(&root, &b, &ds);
        assert_eq!((all.hits, all.computed), (2, 1));
    }

    #[test]
    fn another_backbone_gets_its_own_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = dataset(tmp.path());
        let device = Device::flex();
        let root = default_root(&ds);
        let a = backbone("aa", &device);
        let (cache_a, _) = run(&root, &a, &ds);
        let b = backbone("bb", &device);
        let (cache_b, f) = run(&root, &b, &ds);
        assert_ne!(cache_a.dir(), cache_b.dir());
        assert_eq!((f.hits, f.computed), (0, 3), "new weights: nothing reused");
    }

    #[test]
    fn corrupt_or_truncated_shards_are_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = dataset(tmp.path());
        let device = Device::flex();
        let b = backbone("aa", &device);
        let root = default_root(&ds);
        let (mut cache, first) = run(&root, &b, &ds);
        cache.compact().unwrap();
        let dir = cache.dir().to_path_buf();
        let shard = shard_files(&dir).pop().unwrap();
        let good = std::fs::read(&shard).unwrap();

        // one flipped bit in the features
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        std::fs::write(&shard, &bad).unwrap();
        let (mut cache, f) = run(&root, &b, &ds);
        assert_eq!(cache.rejected.len(), 1);
        assert!(
            cache.rejected[0].1.contains("checksum"),
            "{:?}",
            cache.rejected
        );
        assert!(!shard.exists(), "the corrupt shard is deleted");
        assert_eq!((f.hits, f.computed), (0, 3));
        assert_eq!(f.values, first.values);
        cache.compact().unwrap();

        // a truncated shard, a stray file with the extension, and an unfinished temporary file
        let shard = shard_files(&dir).pop().unwrap();
        let good = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &good[..good.len() - 5]).unwrap();
        std::fs::write(dir.join("junk.feat"), b"hello").unwrap();
        std::fs::write(dir.join(".tmpXYZ"), &good[..20]).unwrap();
        let (cache, f) = run(&root, &b, &ds);
        let reasons: Vec<&str> = cache.rejected.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("truncated")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("magic")), "{reasons:?}");
        assert_eq!((f.hits, f.computed), (0, 3));

        // a shard of another backbone copied in is refused too
        let other = backbone("cc", &device);
        let path = dir.join("foreign.feat");
        write_shard(
            &path,
            &other.info.key(),
            2,
            &[("00".into(), vec![1.0, 2.0])],
        )
        .unwrap();
        let err = read_shard(&path, &b.info.key(), 2).unwrap_err();
        assert!(err.contains("written for backbone"), "{err}");
    }

    #[test]
    fn shard_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.feat");
        let entries = vec![
            ("ab".to_string(), vec![1.5f32, -2.0, 0.0]),
            ("cd".to_string(), vec![f32::MAX, 1e-30, 3.0]),
        ];
        write_shard(&path, "k", 3, &entries).unwrap();
        assert_eq!(read_shard(&path, "k", 3).unwrap(), entries);
        assert!(read_shard(&path, "k", 4).unwrap_err().contains("values"));
        assert!(write_shard(&path, "k", 2, &entries).is_err());
    }
}
