//! The `scenes` dataset: real photographs of things (Debian's `tuxpaint-stamps-default`, the
//! photographic stamps listed in `datasets/scenes/stamps.tsv`) alpha-composited onto random crops
//! of real landscape and room photographs (wallpaper packages, `datasets/scenes/settings.tsv`).
//! Each image gets five true captions naming every thing (with counts), the setting, and where
//! visible the relation or sizes ("a frog to the left of an apple in a meadow", "two small
//! apples on a beach"), and ground-truth [`Labels`](crate::data::labels::Labels) (kind, stamp,
//! box, size, `unseen`, setting) in the Karpathy JSON.
//!
//! Kinds with two or more stamps keep their last stamp out of train and val images; it appears
//! only in test images, marked `unseen: true`, so evaluation can report seen and unseen
//! exemplars apart.
//!
//! Deterministic for a seed: image `i` draws its scene from its own RNG stream, so the output does
//! not depend on the number of threads (same scheme as [`shapes`](crate::data::shapes)), and its
//! captions from another ([`caption_rng`]), so the caption grammar can change without changing
//! a pixel.

pub mod assets;
pub mod compose;
pub mod fixture;

use std::io::Cursor;
use std::path::PathBuf;

use image::ImageEncoder;
use serde::Serialize;

use self::assets::{AssetPaths, Assets};
use super::Split;
use super::formats::karpathy::{GeneratedImage, write_generated};
use super::formats::{SplitOptions, split_counts, split_of_index};
use super::labels::{Labels, Lexicon};
use super::shapes::image_rng;
use crate::error::{Error, Result};

/// Default image side.
pub const DEFAULT_SIZE: u32 = 224;
/// Name of the JSON file written next to `images/`.
pub const JSON_NAME: &str = "dataset_scenes.json";
/// JPEG quality of the images.
pub const JPEG_QUALITY: u8 = 90;

/// What `dataset scenes` generates.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenesOptions {
    /// Output folder: gets `images/` and `dataset_scenes.json`.
    pub out: PathBuf,
    pub assets: AssetPaths,
    pub images: usize,
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    pub captions_per_image: usize,
    pub threads: usize,
    /// Split ratios: the first share of images is train, the next val, the rest test.
    pub split: SplitOptions,
}

impl ScenesOptions {
    pub fn new(out: impl Into<PathBuf>, assets: AssetPaths, images: usize, seed: u64) -> Self {
        ScenesOptions {
            out: out.into(),
            assets,
            images,
            seed,
            size: DEFAULT_SIZE,
            captions_per_image: 5,
            threads: super::parallel::default_threads(),
            split: SplitOptions::default(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenesSummary {
    pub json: PathBuf,
    pub images: usize,
    pub splits: [usize; 3],
    /// Stamps, kinds and settings used, and how many stamps are held out of training.
    pub stamps: usize,
    pub kinds: usize,
    pub settings: usize,
    pub unseen_stamps: usize,
}

/// One generated image.
pub struct Generated {
    pub captions: Vec<String>,
    pub labels: Labels,
    pub jpeg: Vec<u8>,
}

/// The RNG of image `index`'s captions for a seed: a stream of its own, apart from the one the
/// scene (and so the image) is drawn from, so a change to the caption grammar leaves every image
/// byte-identical (and the features cached for them valid).
pub fn caption_rng(seed: u64, index: usize) -> rand_chacha::ChaCha8Rng {
    let mut rng = image_rng(seed, index);
    rng.set_stream(CAPTION_STREAM | index as u64);
    rng
}

/// High bit of the caption streams (image streams are the image's index).
const CAPTION_STREAM: u64 = 1 << 63;

/// Generates image `index` (of split `split`) for a seed.
pub fn generate_one(
    assets: &Assets,
    seed: u64,
    index: usize,
    split: Split,
    size: u32,
    n_captions: usize,
) -> Result<Generated> {
    let scene = compose::sample_scene(
        &mut image_rng(seed, index),
        assets,
        size,
        split == Split::Test,
    );
    let captions = compose::captions(&mut caption_rng(seed, index), assets, &scene, n_captions);
    let (img, boxes) = compose::render(assets, &scene, size);
    let mut jpeg = Cursor::new(Vec::with_capacity((size * size) as usize / 4));
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .write_image(img.as_raw(), size, size, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("encoding scenes image {index}: {e}")))?;
    Ok(Generated {
        captions,
        labels: compose::labels(assets, &scene, &boxes),
        jpeg: jpeg.into_inner(),
    })
}

#[derive(Serialize)]
struct GeneratorInfo {
    name: &'static str,
    version: u32,
    seed: u64,
    size: u32,
    images: usize,
    stamps: usize,
    unseen_stamps: usize,
    settings: usize,
}

/// What a scenes image adds to the Karpathy fields.
#[derive(Serialize)]
struct SceneFields<'a> {
    labels: &'a Labels,
}

fn validate(opts: &ScenesOptions) -> Result<()> {
    if opts.images == 0 {
        return Err(Error::Invalid("--images must be at least 1".into()));
    }
    if !(32..=1024).contains(&opts.size) {
        return Err(Error::Invalid(format!(
            "--size {} is out of range: use 32 to 1024 pixels",
            opts.size
        )));
    }
    if opts.captions_per_image == 0 {
        return Err(Error::Invalid(
            "captions per image must be at least 1".into(),
        ));
    }
    opts.split.validate()
}

/// Loads the assets and writes the dataset: `out/images/scene_NNNNN.jpg` and
/// `out/dataset_scenes.json`.
pub fn generate(opts: &ScenesOptions) -> Result<ScenesSummary> {
    validate(opts)?;
    let assets = assets::load(&opts.assets, opts.size, opts.threads)?;
    generate_from(opts, &assets)
}

/// Writes the dataset from assets already loaded.
pub fn generate_from(opts: &ScenesOptions, assets: &Assets) -> Result<ScenesSummary> {
    validate(opts)?;
    let image_dir = opts.out.join("images");
    std::fs::create_dir_all(&image_dir).map_err(|e| Error::io(&image_dir, e))?;
    let digits = opts.images.saturating_sub(1).to_string().len().max(5);
    let names: Vec<String> = (0..opts.images)
        .map(|i| format!("scene_{i:0digits$}.jpg"))
        .collect();
    let counts = split_counts(opts.images, &opts.split);
    let split_of = |i: usize| split_of_index(i, counts);

    let bar = super::parallel::progress_bar(opts.images as u64, "composing scenes");
    let indices: Vec<usize> = (0..opts.images).collect();
    let results = super::parallel::map_parallel(&indices, opts.threads, Some(&bar), |&i| {
        let g = generate_one(
            assets,
            opts.seed,
            i,
            split_of(i),
            opts.size,
            opts.captions_per_image,
        )?;
        let path = image_dir.join(&names[i]);
        std::fs::write(&path, &g.jpeg).map_err(|e| Error::io(&path, e))?;
        Ok::<_, Error>((g.captions, g.labels))
    });
    bar.finish_and_clear();
    let generated: Vec<(Vec<String>, Labels)> = results.into_iter().collect::<Result<_>>()?;

    let unseen_stamps = assets.stamps.iter().filter(|s| s.unseen).count();
    let mut kinds: Vec<usize> = assets.stamps.iter().map(|s| s.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let generator = GeneratorInfo {
        name: "capsearch dataset scenes",
        // 2: captions from their own RNG stream.
        version: 2,
        seed: opts.seed,
        size: opts.size,
        images: opts.images,
        stamps: assets.stamps.len(),
        unseen_stamps,
        settings: assets.settings.len(),
    };
    let images: Vec<_> = generated
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, ((captions, labels), filename))| GeneratedImage {
            filename,
            split: split_of(i),
            captions,
            extra: SceneFields { labels },
        })
        .collect();
    let json_path = opts.out.join(JSON_NAME);
    write_generated(&json_path, "scenes", &generator, &lexicon(assets), &images)?;
    Ok(ScenesSummary {
        json: json_path,
        images: opts.images,
        splits: counts,
        stamps: assets.stamps.len(),
        kinds: kinds.len(),
        settings: assets.settings.len(),
        unseen_stamps,
    })
}

/// How captions name the kinds that have stamps: singular and plural, each stamp's phrase
/// (without its article), and the category's names.
pub fn lexicon(assets: &Assets) -> Lexicon {
    let mut lexicon = Lexicon::default();
    for stamp in &assets.stamps {
        let k = &assets.kinds[stamp.kind];
        let phrase = stamp
            .phrase
            .split_once(' ')
            .filter(|(first, _)| matches!(*first, "a" | "an" | "the" | "some"))
            .map_or(stamp.phrase.as_str(), |(_, rest)| rest);
        let category = k
            .category
            .iter()
            .flat_map(|(one, many)| [one.as_str(), many.as_str()]);
        lexicon.add(
            &k.kind,
            [k.singular.as_str(), k.plural.as_str(), phrase],
            category,
        );
    }
    lexicon
}

#[cfg(test)]
mod tests;
