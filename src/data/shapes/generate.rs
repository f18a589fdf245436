//! The dataset on disk: one PNG per scene and a Karpathy-style `dataset_shapes.json`.

use std::path::{Path, PathBuf};

use image::ImageEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::grammar::captions;
use super::render::{labels, render};
use super::scene::{Kind, Scene, sample_scene};
use crate::data::formats::karpathy::{GeneratedImage, write_generated};
use crate::data::formats::{SplitOptions, split_counts, split_of_index};
use crate::data::labels::{Labels, Lexicon};
use crate::error::{Error, Result};

/// What `dataset shapes` generates.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesOptions {
    /// Output folder: gets `images/` and `dataset_shapes.json`.
    pub out: PathBuf,
    pub images: usize,
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    /// Captions per image.
    pub captions_per_image: usize,
    /// Worker threads.
    pub threads: usize,
    /// Split ratios (the seed is not used: images are independent draws, so the first share is
    /// train, the next val, the rest test).
    pub split: SplitOptions,
}

impl ShapesOptions {
    pub fn new(out: impl Into<PathBuf>, images: usize, seed: u64) -> Self {
        ShapesOptions {
            out: out.into(),
            images,
            seed,
            size: DEFAULT_SIZE,
            captions_per_image: 5,
            threads: crate::data::parallel::default_threads(),
            split: SplitOptions::default(),
        }
    }
}

/// Default image side.
pub const DEFAULT_SIZE: u32 = 64;
/// Name of the JSON file written next to `images/`.
pub const JSON_NAME: &str = "dataset_shapes.json";

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesSummary {
    pub json: PathBuf,
    pub images: usize,
    pub splits: [usize; 3],
}

#[derive(Serialize)]
struct Generator {
    name: &'static str,
    version: u32,
    seed: u64,
    size: u32,
    images: usize,
}

/// What a shapes image adds to the Karpathy fields.
#[derive(Serialize)]
struct ShapeFields<'a> {
    scene: &'a Scene,
    labels: Labels,
}

/// The RNG of image `index` for a seed: independent streams, so output is the same on any
/// number of threads.
pub fn image_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// One generated image: scene, captions, PNG bytes.
pub struct Generated {
    pub scene: Scene,
    pub captions: Vec<String>,
    pub png: Vec<u8>,
}

/// Generates image `index` for a seed.
pub fn generate_one(seed: u64, index: usize, size: u32, n_captions: usize) -> Result<Generated> {
    let mut rng = image_rng(seed, index);
    let scene = sample_scene(&mut rng);
    let captions = captions(&mut rng, &scene, n_captions);
    let img = render(&scene, size, &mut rng);
    let mut png = Vec::with_capacity((size * size) as usize * 2);
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(img.as_raw(), size, size, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("encoding shapes image {index}: {e}")))?;
    Ok(Generated {
        scene,
        captions,
        png,
    })
}

/// Writes the dataset: `out/images/shape_NNNNN.png` and `out/dataset_shapes.json`.
pub fn generate(opts: &ShapesOptions) -> Result<ShapesSummary> {
    if opts.images == 0 {
        return Err(Error::Invalid("--images must be at least 1".into()));
    }
    if !(16..=1024).contains(&opts.size) {
        return Err(Error::Invalid(format!(
            "--size {} is out of range: use 16 to 1024 pixels",
            opts.size
        )));
    }
    if opts.captions_per_image == 0 {
        return Err(Error::Invalid(
            "captions per image must be at least 1".into(),
        ));
    }
    opts.split.validate()?;
    let image_dir = opts.out.join("images");
    std::fs::create_dir_all(&image_dir).map_err(|e| Error::io(&image_dir, e))?;
    let digits = opts.images.saturating_sub(1).to_string().len().max(5);
    let names: Vec<String> = (0..opts.images)
        .map(|i| format!("shape_{i:0digits$}.png"))
        .collect();

    let bar = crate::data::parallel::progress_bar(opts.images as u64, "drawing shapes");
    let indices: Vec<usize> = (0..opts.images).collect();
    let results = crate::data::parallel::map_parallel(&indices, opts.threads, Some(&bar), |&i| {
        let g = generate_one(opts.seed, i, opts.size, opts.captions_per_image)?;
        let path = image_dir.join(&names[i]);
        std::fs::write(&path, &g.png).map_err(|e| Error::io(&path, e))?;
        Ok::<_, Error>((g.scene, g.captions))
    });
    bar.finish_and_clear();
    let generated: Vec<(Scene, Vec<String>)> = results.into_iter().collect::<Result<_>>()?;

    let counts = split_counts(opts.images, &opts.split);
    let split_of = |i: usize| split_of_index(i, counts);
    let generator = Generator {
        name: "capsearch dataset shapes",
        version: 1,
        seed: opts.seed,
        size: opts.size,
        images: opts.images,
    };
    let images: Vec<_> = generated
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, ((scene, captions), filename))| GeneratedImage {
            filename,
            split: split_of(i),
            captions,
            extra: ShapeFields {
                scene,
                labels: labels(scene),
            },
        })
        .collect();
    let json_path = opts.out.join(JSON_NAME);
    write_generated(&json_path, "shapes", &generator, &lexicon(), &images)?;
    Ok(ShapesSummary {
        json: json_path,
        images: opts.images,
        splits: counts,
    })
}

/// How captions name each kind of shape: every synonym, singular and plural.
pub fn lexicon() -> Lexicon {
    let mut lexicon = Lexicon::default();
    for kind in Kind::ALL {
        lexicon.add(
            kind.name(),
            kind.names().iter().flat_map(|(one, many)| [*one, *many]),
            [],
        );
    }
    lexicon
}

/// True when `path` looks like a shapes dataset folder (holds [`JSON_NAME`]).
pub fn is_shapes_dir(path: &Path) -> bool {
    path.join(JSON_NAME).is_file()
}
