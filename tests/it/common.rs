//! Helpers shared by the integration tests: running the binary, temporary folders, fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of the `capsearch` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_capsearch")
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the whole output unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{self:#?}");
        self
    }

    /// Asserts exit code 2, no panic, and that stderr mentions every needle; returns stderr.
    pub fn fails_with(self, needles: &[&str]) -> String {
        assert_eq!(self.code, 2, "expected exit code 2:\n{self:#?}");
        assert!(
            !self.stderr.contains("panicked"),
            "panicked:\n{}",
            self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}:\n{}",
                self.stderr
            );
        }
        self.stderr
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `capsearch` with `args` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("running the capsearch binary");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `capsearch` with `args` in the current directory.
pub fn run(args: &[&str]) -> Output {
    run_in(Path::new("."), args)
}

/// A fresh temporary folder, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("creating a temporary folder")
}

/// Writes a file, creating its folders.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Bytes of a small solid-colour PNG.
pub fn png_bytes(w: u32, h: u32, color: [u8; 3]) -> Vec<u8> {
    use image::ImageEncoder;
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(color));
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Bytes of a small solid-colour JPEG.
pub fn jpeg_bytes(w: u32, h: u32, color: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(color));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out)
        .encode_image(&img)
        .unwrap();
    out
}

/// Writes a small PNG.
pub fn png(path: &Path) -> PathBuf {
    write(path, png_bytes(8, 6, [200, 30, 30]))
}

/// Writes a small JPEG.
pub fn jpeg(path: &Path) -> PathBuf {
    write(path, jpeg_bytes(8, 6, [30, 30, 200]))
}

/// A PNG header (with correct CRCs) claiming `w`×`h` pixels: a decompression bomb.
pub fn bomb_png(w: u32, h: u32) -> Vec<u8> {
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

/// A path as a `&str` for command lines.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Four solid colours and one caption each: a tiny model learns them exactly in a few seconds.
pub const CAPTIONS: [(&str, [u8; 3], &str); 4] = [
    ("red.png", [220, 30, 30], "a red square on the left"),
    ("green.png", [30, 200, 40], "a green circle"),
    ("blue.png", [30, 40, 220], "two blue triangles at the top"),
    ("white.png", [240, 240, 240], "nothing but a white wall"),
];

/// Writes the training config of the tiny model (16×16 images, a 2-block CNN, 150 epochs).
pub fn write_tiny_config(path: &Path, log_every: usize) {
    write(
        path,
        format!(
            r#"
[model]
embed_size = 16
hidden_size = 32
dropout = 0.0
[model.encoder]
kind = "small-cnn"
width = 4
depth = 2
grid = 2
[data]
word_count_threshold = 1
image_size = 16
[optim]
lr = 0.01
schedule = "constant"
[loop]
epochs = 150
batch_size = 4
patience = 0
log_every = {log_every}
"#
        ),
    );
}

/// Runs `train --config tiny.toml --dataset DATASET --out run --no-tui EXTRA…` in `dir` (a config
/// written by [`write_tiny_config`]).
pub fn train_run(dir: &Path, dataset: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        "tiny.toml",
        "--dataset",
        dataset,
        "--out",
        "run",
        "--no-tui",
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args)
}

/// Visual search (`--json`) for `query`, an image indexed in `index` with `model`, lists it
/// among its nearest with similarity > 0.999.
pub fn assert_finds_itself(dir: &Path, model: &str, index: &str, query: &str) {
    let out = run_in(
        dir,
        &[
            "search",
            query,
            "--model",
            model,
            "--index-path",
            index,
            "--mode",
            "visual",
            "--json",
        ],
    )
    .ok();
    let results = out.json()["results"].as_array().unwrap().clone();
    let own = results
        .iter()
        .find(|r| r["path"] == query)
        .unwrap_or_else(|| panic!("the query is not among its nearest: {}", out.stdout));
    assert!(own["visual_score"].as_f64().unwrap() > 0.999, "{own}");
}
