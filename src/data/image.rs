//! Image decoding with limits, resize modes and normalisation presets.
//!
//! Decoding never trusts a file's name: the type is detected from the first bytes, and a file that
//! is no image we read (a text file named `.jpg`, a zero-byte file) is refused with a message that
//! says so. The header is read first, and an image with more pixels than [`ImageLimits::max_pixels`]
//! is refused before any pixel buffer is allocated, so a decompression bomb (a 50,000×50,000 PNG of a
//! few bytes) costs nothing.
//!
//! Two layers, so training can pre-decode a split once and normalise per batch:
//! [`load_rgb8`] gives a square RGB `u8` buffer (row-major, interleaved `HWC`), and [`normalize`]
//! turns such a buffer into planar `CHW` `f32` values for the model.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Limits applied before an image is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted file size in bytes.
    pub max_file_bytes: u64,
}

impl Default for ImageLimits {
    /// 64 megapixels (e.g. 9,000×7,000) and 256 MiB files: far above any dataset photo, far below
    /// what would hurt.
    fn default() -> Self {
        ImageLimits {
            max_pixels: 64_000_000,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How an image is brought to a square of `size`×`size` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize both sides to `size`, ignoring the aspect ratio (NeuralTalk's preprocessing).
    #[default]
    Squash,
    /// Resize the shorter side to `size`, then cut the centre square (torchvision's
    /// `Resize` + `CenterCrop`).
    ShorterSideCenterCrop,
    /// torchvision's ImageNet evaluation transform: the shorter side to `size · 8/7` (256 for
    /// 224), then the centre `size`×`size` square (`Resize(256)` + `CenterCrop(224)`).
    TorchvisionCenterCrop,
}

/// How `u8` RGB pixels become model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// RGB order, `x/255` scaled to [0, 1], then `(x - mean) / std` with ImageNet's
    /// mean [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225] (torchvision models).
    #[default]
    Imagenet,
    /// BGR order, 0..255 scale, minus the mean [103.939, 116.779, 123.68] (Caffe's VGG-16, used
    /// by NeuralTalk's features). No scaling.
    Caffe,
    /// RGB order, `x/255` in [0, 1] and nothing else.
    Unit,
    /// RGB order, `(x - 127) / 128` (TensorFlow's EfficientNet-Lite).
    Efficientnet,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Caffe's VGG-16 mean, in BGR order.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// What the header of an image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

use super::image_files::{IMAGE_FORMAT_NAMES as SUPPORTED, is_supported, unsupported_photo_format};

fn read_limited(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > limits.max_file_bytes {
        return Err(Error::Image {
            path: path.to_path_buf(),
            message: format!(
                "file is {len} bytes, more than the limit of {} bytes",
                limits.max_file_bytes
            ),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Detects the image type from the bytes, reads the header and checks the limits. Returns a
/// decoder that has not allocated the pixel buffer yet.
fn checked_decoder<'a>(
    bytes: &'a [u8],
    path: &Path,
    limits: &ImageLimits,
) -> Result<(impl ImageDecoder + 'a, ImageInfo)> {
    let err = |message: String| Error::Image {
        path: path.to_path_buf(),
        message,
    };
    if bytes.is_empty() {
        return Err(err("file is empty (0 bytes), not an image".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    // Photo formats capsearch does not read (HEIC, AVIF, ...) are named, not called "unknown".
    if let Some(name) = unsupported_photo_format(bytes) {
        return Err(err(format!(
            "{name} image: capsearch does not read {name}; convert it to JPEG or PNG first (supported: {SUPPORTED})"
        )));
    }
    let Some(format) = reader.format() else {
        let looks_text = bytes
            .iter()
            .take(512)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        return Err(err(format!(
            "not an image: the content is {} (the file name does not matter; expected {SUPPORTED})",
            if looks_text {
                "text"
            } else {
                "of an unknown type"
            }
        )));
    };
    if !is_supported(format) {
        return Err(err(format!(
            "{format:?} images are not supported (supported: {SUPPORTED})"
        )));
    }
    let mut reader = reader;
    let mut decoder_limits = Limits::default();
    // No side may exceed 65,535 pixels (JPEG's own limit) or the pixel budget: this bounds what a
    // decoder allocates while reading the header. The exact area check follows the header read.
    let side = u32::try_from(limits.max_pixels.min(65_535)).unwrap_or(65_535);
    decoder_limits.max_image_width = Some(side);
    decoder_limits.max_image_height = Some(side);
    // RGBA16 is the widest layout we accept: 8 bytes per pixel, plus decoder working memory.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| describe(path, format, e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(err(format!(
            "{width}×{height} {format:?} image has {pixels} pixels, more than the limit of {}; refused without decoding",
            limits.max_pixels
        )));
    }
    if pixels == 0 {
        return Err(err(format!(
            "{format:?} image has no pixels ({width}×{height})"
        )));
    }
    Ok((
        decoder,
        ImageInfo {
            format,
            width,
            height,
        },
    ))
}

fn describe(path: &Path, format: ImageFormat, e: image::ImageError) -> Error {
    let message = match &e {
        image::ImageError::Limits(_) => {
            format!("{format:?} image is larger than the limits allow ({e}); refused")
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("{format:?} image is truncated (the file ends early)")
        }
        image::ImageError::Unsupported(_) => {
            format!("{format:?} image cannot be decoded: {e} (supported: {SUPPORTED})")
        }
        _ => format!("{format:?} image is corrupt: {e}"),
    };
    Error::Image {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads an image's type and size from its header only.
pub fn probe(path: &Path, limits: &ImageLimits) -> Result<ImageInfo> {
    let bytes = read_limited(path, limits)?;
    checked_decoder(&bytes, path, limits).map(|(_, info)| info)
}

/// Decodes image bytes; `path` only names the image in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: &ImageLimits) -> Result<DynamicImage> {
    let (decoder, info) = checked_decoder(bytes, path, limits)?;
    DynamicImage::from_decoder(decoder).map_err(|e| describe(path, info.format, e))
}

/// Decodes an image file, with the type detected from its bytes and the limits applied.
pub fn decode(path: &Path, limits: &ImageLimits) -> Result<DynamicImage> {
    let bytes = read_limited(path, limits)?;
    decode_bytes(&bytes, path, limits)
}

/// Brings an image to `size`×`size` RGB pixels.
pub fn resize_rgb8(image: &DynamicImage, size: u32, mode: ResizeMode) -> RgbImage {
    let rgb = image.to_rgb8();
    let size = size.max(1);
    match mode {
        ResizeMode::Squash => scale(&rgb, size, size),
        ResizeMode::ShorterSideCenterCrop => shorter_side_crop(&rgb, size, size),
        ResizeMode::TorchvisionCenterCrop => {
            // 256 / 224 = 8 / 7, rounded as torchvision's int(size / 0.875) would for 224
            let resize = ((u64::from(size) * 8 + 3) / 7) as u32;
            shorter_side_crop(&rgb, resize, size)
        }
    }
}

/// Prepared `size`×`size` interleaved RGB pixels (as [`load_rgb8`] gives) enlarged `factor`
/// times on each side by bilinear interpolation: `3 · (size · factor)²` bytes. A factor of 1
/// returns them unchanged. A label head with `scale` 2 reads its backbone on these (see
/// `model::label_head`).
pub fn upscale_rgb8(rgb: &[u8], size: u32, factor: u32) -> Result<Vec<u8>> {
    let factor = factor.max(1);
    if factor == 1 {
        return Ok(rgb.to_vec());
    }
    let image = RgbImage::from_raw(size, size, rgb.to_vec()).ok_or_else(|| {
        Error::Internal(format!(
            "{} bytes are not a prepared {size}×{size} RGB image",
            rgb.len()
        ))
    })?;
    Ok(scale(&image, size * factor, size * factor).into_raw())
}

/// The shorter side scaled to `resize` (the aspect ratio kept), then the centre `crop`×`crop`
/// square cut out (`crop` ≤ `resize`).
fn shorter_side_crop(rgb: &RgbImage, resize: u32, crop: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let resize = resize.max(crop);
    let longer = |long: u32, short: u32| {
        ((u64::from(long) * u64::from(resize)).div_ceil(u64::from(short)) as u32).max(resize)
    };
    let (nw, nh) = if w <= h {
        (resize, longer(h, w))
    } else {
        (longer(w, h), resize)
    };
    let scaled = scale(rgb, nw, nh);
    let x = (nw - crop) / 2;
    let y = (nh - crop) / 2;
    image::imageops::crop_imm(&scaled, x, y, crop, crop).to_image()
}

/// Area-averaging when shrinking (fast, no aliasing), bilinear when enlarging.
fn scale(rgb: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = rgb.dimensions();
    if (sw, sh) == (w, h) {
        rgb.clone()
    } else if w <= sw && h <= sh {
        image::imageops::thumbnail(rgb, w, h)
    } else {
        image::imageops::resize(rgb, w, h, image::imageops::FilterType::Triangle)
    }
}

/// Decodes an image and returns `size`×`size` RGB pixels, row-major and interleaved (`HWC`),
/// `3 * size * size` bytes.
pub fn load_rgb8(
    path: &Path,
    size: u32,
    mode: ResizeMode,
    limits: &ImageLimits,
) -> Result<Vec<u8>> {
    let image = decode(path, limits)?;
    Ok(resize_rgb8(&image, size, mode).into_raw())
}

/// Converts interleaved RGB `u8` pixels (`HWC`, as [`load_rgb8`] gives) into planar `CHW` `f32`
/// values with a normalisation preset. The output has the same length as the input.
pub fn normalize(rgb: &[u8], preset: Normalization) -> Vec<f32> {
    let mut out = vec![0.0; rgb.len()];
    normalize_into(rgb, preset, &mut out);
    out
}

/// [`normalize`] into a caller's buffer (e.g. one image's slot in a batch).
///
/// # Panics
/// When `out.len() != rgb.len()` or the length is not a multiple of 3 (a programming error,
/// not an input error: buffers come from [`load_rgb8`]).
pub fn normalize_into(rgb: &[u8], preset: Normalization, out: &mut [f32]) {
    assert_eq!(rgb.len(), out.len(), "normalize_into: buffer sizes differ");
    assert_eq!(rgb.len() % 3, 0, "normalize_into: not RGB triples");
    let plane = rgb.len() / 3;
    // Per output channel: which input channel, then value = x * scale + offset.
    let (source, scale, offset): ([usize; 3], [f32; 3], [f32; 3]) = match preset {
        Normalization::Imagenet => (
            [0, 1, 2],
            std::array::from_fn(|c| 1.0 / (255.0 * IMAGENET_STD[c])),
            std::array::from_fn(|c| -IMAGENET_MEAN[c] / IMAGENET_STD[c]),
        ),
        Normalization::Caffe => (
            [2, 1, 0],
            [1.0; 3],
            std::array::from_fn(|c| -CAFFE_MEAN_BGR[c]),
        ),
        Normalization::Unit => ([0, 1, 2], [1.0 / 255.0; 3], [0.0; 3]),
        // exact: both factors are powers of two
        Normalization::Efficientnet => ([0, 1, 2], [1.0 / 128.0; 3], [-127.0 / 128.0; 3]),
    };
    let (c0, rest) = out.split_at_mut(plane);
    let (c1, c2) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        c0[i] = f32::from(px[source[0]]) * scale[0] + offset[0];
        c1[i] = f32::from(px[source[1]]) * scale[1] + offset[1];
        c2[i] = f32::from(px[source[2]]) * scale[2] + offset[2];
    }
}

/// Decodes, resizes and normalises one image into `CHW` `f32` values (`3 * size * size`).
pub fn load_chw(
    path: &Path,
    size: u32,
    mode: ResizeMode,
    preset: Normalization,
    limits: &ImageLimits,
) -> Result<Vec<f32>> {
    Ok(normalize(&load_rgb8(path, size, mode, limits)?, preset))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    #[test]
    fn upscaling_a_prepared_image_keeps_its_halves() {
        // 4×4, left half red, right half blue
        let rgb = RgbImage::from_fn(4, 4, |x, _| {
            if x < 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
        .into_raw();
        assert_eq!(upscale_rgb8(&rgb, 4, 1).unwrap(), rgb);
        let big = upscale_rgb8(&rgb, 4, 2).unwrap();
        assert_eq!(big.len(), 3 * 8 * 8);
        let px = |x: usize, y: usize| &big[3 * (y * 8 + x)..3 * (y * 8 + x) + 3];
        assert_eq!(px(0, 0), [255, 0, 0]);
        assert_eq!(px(7, 7), [0, 0, 255]);
        // bilinear: the seam is a blend
        assert!(px(3, 4)[0] > 0 && px(3, 4)[2] > 0, "{:?}", px(3, 4));
        assert!(upscale_rgb8(&rgb[..10], 4, 2).is_err());
    }

    /// A PNG of `w`×`h` whose left half is red and right half blue.
    pub(crate) fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A valid PNG header (signature + IHDR with a correct CRC) claiming `w`×`h` RGB pixels,
    /// followed by a tiny IDAT: a decompression-bomb header.
    pub(crate) fn bomb_png_header(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&ihdr);
        out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
        out.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
        out.extend_from_slice(idat);
        out.extend_from_slice(&crc32(idat).to_be_bytes());
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn decodes_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        // A PNG named .jpg decodes as PNG.
        let p = write(dir.path(), "really_png.jpg", &png_bytes(8, 4));
        let info = probe(&p, &ImageLimits::default()).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 8, 4)
        );
        let rgb = load_rgb8(&p, 4, ResizeMode::Squash, &ImageLimits::default()).unwrap();
        assert_eq!(rgb.len(), 4 * 4 * 3);
        assert_eq!(&rgb[0..3], &[255, 0, 0]);
        assert_eq!(&rgb[9..12], &[0, 0, 255]);
    }

    #[test]
    fn refuses_text_empty_truncated_and_bombs() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ImageLimits::default();
        let text = write(dir.path(), "notes.jpg", b"just some words\n");
        let e = decode(&text, &limits).unwrap_err().to_string();
        assert!(
            e.contains("notes.jpg") && e.contains("not an image") && e.contains("text"),
            "{e}"
        );

        let empty = write(dir.path(), "empty.png", b"");
        let e = decode(&empty, &limits).unwrap_err().to_string();
        assert!(e.contains("empty.png") && e.contains("0 bytes"), "{e}");

        let full = png_bytes(32, 32);
        let cut = write(dir.path(), "cut.png", &full[..full.len() / 2]);
        let e = decode(&cut, &limits).unwrap_err().to_string();
        assert!(e.contains("cut.png"), "{e}");

        let mut garbage = full.clone();
        for b in garbage.iter_mut().skip(40) {
            *b = 0x5a;
        }
        let bad = write(dir.path(), "garbage.png", &garbage);
        assert!(decode(&bad, &limits).is_err());

        let bomb = write(dir.path(), "bomb.png", &bomb_png_header(50_000, 50_000));
        let e = decode(&bomb, &limits).unwrap_err().to_string();
        assert!(e.contains("bomb.png") && e.contains("refused"), "{e}");
        let e = probe(&bomb, &limits).unwrap_err().to_string();
        assert!(e.contains("50000×50000"), "{e}");
        // Within limits the same kind of header is accepted by the probe.
        let fine = write(dir.path(), "fine.png", &bomb_png_header(100, 100));
        assert_eq!(probe(&fine, &limits).unwrap().width, 100);
    }

    /// Photo libraries hold TIFF (decoded) and HEIC or AVIF (named in the refusal, not "unknown").
    #[test]
    fn tiff_decodes_and_heic_avif_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ImageLimits::default();
        let img = RgbImage::from_fn(6, 3, |x, _| Rgb([if x < 3 { 200 } else { 10 }, 20, 30]));
        let tiff = dir.path().join("scan.tiff");
        img.save_with_format(&tiff, ImageFormat::Tiff).unwrap();
        let info = probe(&tiff, &limits).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Tiff, 6, 3)
        );
        assert_eq!(decode(&tiff, &limits).unwrap().to_rgb8(), img);

        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic\0\0\0\0");
        let p = write(dir.path(), "phone.jpg", &heic);
        let e = decode(&p, &limits).unwrap_err().to_string();
        assert!(
            e.contains("phone.jpg") && e.contains("HEIC") && e.contains("convert it to JPEG"),
            "{e}"
        );
        let mut avif = vec![0, 0, 0, 24];
        avif.extend_from_slice(b"ftypavif\0\0\0\0mif1avif\0\0\0\0");
        let p = write(dir.path(), "x.avif", &avif);
        let e = decode(&p, &limits).unwrap_err().to_string();
        assert!(e.contains("AVIF") && e.contains("TIFF"), "{e}");
    }

    #[test]
    fn file_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.png", &png_bytes(16, 16));
        let limits = ImageLimits {
            max_file_bytes: 10,
            ..ImageLimits::default()
        };
        let e = decode(&p, &limits).unwrap_err().to_string();
        assert!(e.contains("more than the limit"), "{e}");
    }

    #[test]
    fn resize_modes() {
        // 40×20: left half red, right half blue.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        }));
        let squash = resize_rgb8(&img, 10, ResizeMode::Squash);
        assert_eq!(squash.dimensions(), (10, 10));
        assert_eq!(squash.get_pixel(0, 5).0, [255, 0, 0]);
        assert_eq!(squash.get_pixel(9, 5).0, [0, 0, 255]);
        // Centre crop of a 20×10 resize keeps x in 5..15: still red on the left, blue on the right.
        let crop = resize_rgb8(&img, 10, ResizeMode::ShorterSideCenterCrop);
        assert_eq!(crop.dimensions(), (10, 10));
        assert_eq!(crop.get_pixel(0, 5).0, [255, 0, 0]);
        assert_eq!(crop.get_pixel(9, 5).0, [0, 0, 255]);
        // torchvision's transform at 7: shorter side to 8 (16×8), then x in 4..11 cut out.
        let tv = resize_rgb8(&img, 7, ResizeMode::TorchvisionCenterCrop);
        assert_eq!(tv.dimensions(), (7, 7));
        assert_eq!(tv.get_pixel(0, 3).0, [255, 0, 0]);
        assert_eq!(tv.get_pixel(6, 3).0, [0, 0, 255]);
        // Tall image, enlarged.
        let tall = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 6, Rgb([1, 2, 3])));
        let up = resize_rgb8(&tall, 12, ResizeMode::ShorterSideCenterCrop);
        assert_eq!(up.dimensions(), (12, 12));
        assert_eq!(up.get_pixel(6, 6).0, [1, 2, 3]);
    }

    #[test]
    fn normalisation_presets() {
        // Two pixels: pure red, then (0, 128, 255).
        let rgb = [255u8, 0, 0, 0, 128, 255];
        let unit = normalize(&rgb, Normalization::Unit);
        assert_eq!(unit, vec![1.0, 0.0, 0.0, 128.0 / 255.0, 0.0, 1.0]);

        let caffe = normalize(&rgb, Normalization::Caffe);
        // Planar BGR minus the BGR mean.
        let expect = [
            0.0 - 103.939,
            255.0 - 103.939,
            0.0 - 116.779,
            128.0 - 116.779,
            255.0 - 123.68,
            0.0 - 123.68,
        ];
        for (a, b) in caffe.iter().zip(expect) {
            assert!((a - b).abs() < 1e-4, "{caffe:?}");
        }

        let imnet = normalize(&rgb, Normalization::Imagenet);
        let r0 = (1.0 - 0.485) / 0.229;
        let g1 = (128.0 / 255.0 - 0.456) / 0.224;
        let b1 = (1.0 - 0.406) / 0.225;
        assert!((imnet[0] - r0).abs() < 1e-5);
        assert!((imnet[3] - g1).abs() < 1e-5);
        assert!((imnet[5] - b1).abs() < 1e-5);

        // Planar RGB, (x - 127) / 128 exactly.
        let effnet = normalize(&rgb, Normalization::Efficientnet);
        let expect = [255.0, 0.0, 0.0, 128.0, 0.0, 255.0].map(|x: f32| (x - 127.0) / 128.0);
        assert_eq!(effnet, expect);
    }
}
