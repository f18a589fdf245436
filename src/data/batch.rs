//! Feeding a model: an in-memory store of pre-decoded images, a burn [`Dataset`] of
//! (image, caption) pairs, and a burn [`Batcher`] that builds [`CaptionBatch`]es.
//!
//! Images are decoded, resized and kept as RGB `u8` once ([`ImageStore`], in parallel), shared by
//! every caption of the image through an `Arc`, and normalised to `f32` only when a batch is built.
//! At 224×224 that is 147 KiB per image (6,000 Flickr8k training images: about 0.9 GiB).
//!
//! Token layout (NeuralTalk's): for a caption with ids `w1..wn` (truncated to `max_len` words),
//! `inputs = [0, w1, .., wn]` and `targets = [w1, .., wn, 0]`, where 0 is the boundary token (START
//! when fed, END when predicted). Rows are padded with 0 and `mask` is 1.0 exactly where the
//! target is real (the `n + 1` first steps). The model prepends the image as step 0 itself.

use std::fmt;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset as BurnDataset, DatasetError};
use burn::prelude::*;

use super::image::{ImageLimits, Normalization, ResizeMode, load_rgb8, normalize_into};
use super::text::{BOUNDARY, Vocabulary, tokenize};
use super::{Dataset, Sample, Skipped};
use crate::error::{Error, Result};

/// How an [`ImageStore`] decodes images.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Side of the square images.
    pub size: u32,
    pub mode: ResizeMode,
    pub limits: ImageLimits,
    /// Worker threads for decoding.
    pub threads: usize,
    /// Fail on the first image that cannot be decoded instead of skipping it.
    pub strict: bool,
}

impl StoreOptions {
    pub fn new(size: u32, mode: ResizeMode) -> Self {
        StoreOptions {
            size,
            mode,
            limits: ImageLimits::default(),
            threads: super::parallel::default_threads(),
            strict: false,
        }
    }
}

/// One decoded image with its sample.
#[derive(Clone)]
pub struct StoredImage {
    pub sample: Sample,
    /// `size`×`size` RGB pixels, `HWC`.
    pub pixels: Arc<[u8]>,
}

impl fmt::Debug for StoredImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredImage")
            .field("sample", &self.sample)
            .field("pixels", &format_args!("[{} bytes]", self.pixels.len()))
            .finish()
    }
}

/// Pre-decoded images of some samples (usually one split), in sample order. Images that fail to
/// decode are left out and listed in [`ImageStore::failed`].
#[derive(Debug, Clone)]
pub struct ImageStore {
    size: u32,
    mode: ResizeMode,
    images: Vec<StoredImage>,
    failed: Vec<Skipped>,
}

impl ImageStore {
    /// Decodes the images of `samples` (paths relative to `dataset`'s image root) in parallel.
    pub fn build<'a>(
        dataset: &Dataset,
        samples: impl IntoIterator<Item = &'a Sample>,
        opts: &StoreOptions,
    ) -> Result<ImageStore> {
        let samples: Vec<&Sample> = samples.into_iter().collect();
        let bar = crate::util::progress_bar(Some(samples.len() as u64), "decoding images");
        let decoded = super::parallel::map_parallel(&samples, opts.threads, Some(&bar), |s| {
            let path = super::formats::resolve_image(&dataset.image_root, &s.path)?;
            load_rgb8(&path, opts.size, opts.mode, &opts.limits)
        });
        bar.finish_and_clear();
        let mut images = Vec::with_capacity(samples.len());
        let mut failed = Vec::new();
        for (s, result) in samples.into_iter().zip(decoded) {
            match result {
                Ok(pixels) => images.push(StoredImage {
                    sample: s.clone(),
                    pixels: pixels.into(),
                }),
                Err(e) if opts.strict => return Err(e),
                Err(e) => {
                    tracing::warn!("skipping image {}: {e}", s.path);
                    failed.push(Skipped {
                        entry: s.path.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(ImageStore {
            size: opts.size,
            mode: opts.mode,
            images,
            failed,
        })
    }

    /// Side of the stored square images.
    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn mode(&self) -> ResizeMode {
        self.mode
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn images(&self) -> &[StoredImage] {
        &self.images
    }

    pub fn get(&self, index: usize) -> Option<&StoredImage> {
        self.images.get(index)
    }

    /// Images that could not be decoded.
    pub fn failed(&self) -> &[Skipped] {
        &self.failed
    }

    /// A normalised `[B, 3, size, size]` tensor of the images at `indices` (for captioning a split).
    /// Indices out of range are an error.
    pub fn tensor(
        &self,
        indices: &[usize],
        preset: Normalization,
        device: &Device,
    ) -> Result<Tensor<4>> {
        let images = indices
            .iter()
            .map(|&i| {
                self.images.get(i).map(|s| &*s.pixels).ok_or_else(|| {
                    Error::Internal(format!(
                        "image index {i} out of range (store has {})",
                        self.len()
                    ))
                })
            })
            .collect::<Result<Vec<&[u8]>>>()?;
        Ok(images_tensor(&images, self.size as usize, preset, device))
    }
}

/// Normalises square RGB `u8` images into one `[B, 3, size, size]` tensor.
///
/// # Panics
/// When an image is not `3 * size * size` bytes (a programming error: images come from one store).
pub fn images_tensor(
    images: &[&[u8]],
    size: usize,
    preset: Normalization,
    device: &Device,
) -> Tensor<4> {
    let plane = 3 * size * size;
    let mut data = vec![0.0f32; images.len() * plane];
    for (image, out) in images.iter().zip(data.chunks_exact_mut(plane.max(1))) {
        assert_eq!(
            image.len(),
            plane,
            "image of {} bytes in a batch of {size}×{size} images",
            image.len()
        );
        normalize_into(image, preset, out);
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 3, size, size]), device)
}

/// One (image, caption) pair.
#[derive(Clone)]
pub struct CaptionItem {
    /// The image's index in its [`ImageStore`].
    pub image_index: usize,
    /// RGB `u8` pixels, shared by all captions of the image.
    pub image: Arc<[u8]>,
    /// Caption token ids without boundaries, at most `max_len` of them.
    pub tokens: Vec<usize>,
}

impl fmt::Debug for CaptionItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptionItem")
            .field("image_index", &self.image_index)
            .field("image", &format_args!("[{} bytes]", self.image.len()))
            .field("tokens", &self.tokens)
            .finish()
    }
}

/// Every (image, caption) pair of an [`ImageStore`], as a burn dataset.
#[derive(Debug, Clone)]
pub struct CaptionDataset {
    images: Vec<Arc<[u8]>>,
    pairs: Vec<(usize, Vec<usize>)>,
}

impl CaptionDataset {
    /// Pairs each stored image with each of its captions, tokenised, encoded with `vocab` and
    /// truncated to `max_len` words.
    pub fn new(store: &ImageStore, vocab: &Vocabulary, max_len: usize) -> Self {
        let images = store.images.iter().map(|s| s.pixels.clone()).collect();
        let pairs = store
            .images
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.sample.captions.iter().map(move |c| {
                    let mut ids = vocab.encode(&tokenize(c));
                    ids.truncate(max_len);
                    (i, ids)
                })
            })
            .collect();
        CaptionDataset { images, pairs }
    }

    /// Number of (image, caption) pairs.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

impl BurnDataset<CaptionItem> for CaptionDataset {
    fn get(&self, index: usize) -> Result<CaptionItem, DatasetError> {
        let (image_index, tokens) = self.pairs.get(index).ok_or_else(|| {
            DatasetError::new(Error::Internal(format!(
                "caption pair {index} out of range ({} pairs)",
                self.pairs.len()
            )))
        })?;
        Ok(CaptionItem {
            image_index: *image_index,
            image: self.images[*image_index].clone(),
            tokens: tokens.clone(),
        })
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// A batch of (image, caption) pairs.
#[derive(Debug, Clone)]
pub struct CaptionBatch {
    /// `[B, 3, H, W]`, normalised.
    pub images: Tensor<4>,
    /// `[B, T]`: boundary, then the caption's ids, then 0 padding.
    pub inputs: Tensor<2, Int>,
    /// `[B, T]`: the caption's ids, then the boundary, then 0 padding.
    pub targets: Tensor<2, Int>,
    /// `[B, T]`: 1.0 where `targets` is real, 0.0 on padding.
    pub mask: Tensor<2>,
    /// Index of each row's image in its [`ImageStore`].
    pub image_index: Vec<usize>,
}

/// Builds [`CaptionBatch`]es.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionBatcher {
    pub normalization: Normalization,
}

impl CaptionBatcher {
    pub fn new(normalization: Normalization) -> Self {
        CaptionBatcher { normalization }
    }
}

/// Inputs, targets and mask rows (NeuralTalk's arrangement, see the module docs), `T` = longest
/// caption + 1.
pub fn arrange_tokens(captions: &[&[usize]]) -> (Vec<i64>, Vec<i64>, Vec<f32>, usize) {
    let steps = captions.iter().map(|c| c.len()).max().unwrap_or(0) + 1;
    let b = captions.len();
    let mut inputs = vec![BOUNDARY as i64; b * steps];
    let mut targets = vec![BOUNDARY as i64; b * steps];
    let mut mask = vec![0.0f32; b * steps];
    for (row, ids) in captions.iter().enumerate() {
        let base = row * steps;
        for (t, &id) in ids.iter().enumerate() {
            inputs[base + t + 1] = id as i64;
            targets[base + t] = id as i64;
        }
        mask[base..base + ids.len() + 1].fill(1.0);
    }
    (inputs, targets, mask, steps)
}

impl Batcher<CaptionItem, CaptionBatch> for CaptionBatcher {
    fn batch(&self, items: Vec<CaptionItem>, device: &Device) -> CaptionBatch {
        let b = items.len();
        let size = items
            .first()
            .map(|i| ((i.image.len() / 3) as f64).sqrt().round() as usize)
            .unwrap_or(0);
        let pixels: Vec<&[u8]> = items.iter().map(|i| &*i.image).collect();
        let images = images_tensor(&pixels, size, self.normalization, device);
        let captions: Vec<&[usize]> = items.iter().map(|i| i.tokens.as_slice()).collect();
        let (inputs, targets, mask, steps) = arrange_tokens(&captions);
        CaptionBatch {
            images,
            inputs: Tensor::from_data(TensorData::new(inputs, [b, steps]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, steps]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, steps]), device),
            image_index: items.iter().map(|i| i.image_index).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use crate::data::formats::Format;
    use burn::data::dataloader::DataLoaderBuilder;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn write_png(path: &std::path::Path, color: [u8; 3]) {
        let img = RgbImage::from_pixel(8, 6, Rgb(color));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), 8, 6, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(path, out).unwrap();
    }

    fn fixture(dir: &std::path::Path) -> Dataset {
        write_png(&dir.join("a.png"), [255, 0, 0]);
        write_png(&dir.join("b.png"), [0, 0, 255]);
        std::fs::write(dir.join("c.png"), b"not an image").unwrap();
        let sample = |p: &str, caps: &[&str]| Sample {
            path: p.into(),
            captions: caps.iter().map(|s| s.to_string()).collect(),
            split: Split::Train,
            labels: None,
        };
        Dataset {
            format: Format::Csv,
            source: dir.join("x.csv"),
            image_root: dir.to_path_buf(),
            samples: vec![
                sample("a.png", &["a red dog", "red dog runs fast today"]),
                sample("b.png", &["a blue cat"]),
                sample("c.png", &["a broken one"]),
            ],
            skipped: vec![],
            kinds: None,
        }
    }

    #[test]
    fn arrangement_follows_neuraltalk() {
        let (inputs, targets, mask, t) = arrange_tokens(&[&[5, 6, 7], &[9]]);
        assert_eq!(t, 4);
        assert_eq!(inputs, [0, 5, 6, 7, 0, 9, 0, 0]);
        assert_eq!(targets, [5, 6, 7, 0, 9, 0, 0, 0]);
        assert_eq!(mask, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn store_dataset_and_batcher() {
        let dir = tempfile::tempdir().unwrap();
        let ds = fixture(dir.path());
        let store =
            ImageStore::build(&ds, &ds.samples, &StoreOptions::new(4, ResizeMode::Squash)).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.failed().len(), 1);
        assert_eq!(store.failed()[0].entry, "c.png");
        assert_eq!(store.get(0).unwrap().pixels.len(), 4 * 4 * 3);

        let mut strict = StoreOptions::new(4, ResizeMode::Squash);
        strict.strict = true;
        let e = ImageStore::build(&ds, &ds.samples, &strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.png"), "{e}");

        let caps: Vec<Vec<String>> = ds
            .samples
            .iter()
            .flat_map(|s| s.captions.iter().map(|c| tokenize(c)))
            .collect();
        let vocab = Vocabulary::build(caps.iter().map(|c| c.as_slice()), 1, true);
        let data = CaptionDataset::new(&store, &vocab, 3);
        assert_eq!(data.len(), 3);
        let item = data.get(1).unwrap();
        assert_eq!(item.image_index, 0);
        assert_eq!(item.tokens.len(), 3, "truncated to max_len");
        assert!(data.get(3).is_err());

        let device = Device::flex();
        let batcher = CaptionBatcher::new(Normalization::Unit);
        let batch = batcher.batch(vec![data.get(0).unwrap(), data.get(2).unwrap()], &device);
        assert_eq!(batch.images.dims(), [2, 3, 4, 4]);
        assert_eq!(batch.inputs.dims(), [2, 4]);
        assert_eq!(batch.image_index, vec![0, 1]);
        let img = batch.images.to_data().try_into_vec_as::<f32>().unwrap();
        // Image 0 is red: channel 0 is 1, channel 2 is 0. Image 1 is blue.
        assert_eq!(img[0], 1.0);
        assert_eq!(img[2 * 16], 0.0);
        assert_eq!(img[48], 0.0);
        assert_eq!(img[48 + 32], 1.0);
        let red = vocab.id("red").unwrap() as i64;
        let inputs = batch.inputs.to_data().try_into_vec_as::<i64>().unwrap();
        let targets = batch.targets.to_data().try_into_vec_as::<i64>().unwrap();
        assert_eq!(inputs[0..3], [0, vocab.id("a").unwrap() as i64, red]);
        assert_eq!(targets[2..4], [vocab.id("dog").unwrap() as i64, 0]);
        let mask = batch.mask.to_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(mask, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);

        // Through burn's data loader, shuffled, on two workers: every pair comes out once.
        let loader = DataLoaderBuilder::new(batcher)
            .batch_size(2)
            .shuffle(7)
            .num_workers(2)
            .build(data);
        let mut seen = Vec::new();
        for batch in loader.iter() {
            let batch = batch.unwrap();
            assert_eq!(batch.images.dims()[1..], [3, 4, 4]);
            seen.extend(batch.image_index);
        }
        seen.sort();
        assert_eq!(seen, [0, 0, 1]);
    }
}
