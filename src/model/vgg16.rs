//! VGG-16 (Simonyan & Zisserman, 2014) as a frozen image encoder: the image's fc7 activations
//! after ReLU, 4096 values, which is what NeuralTalk's models were trained on.
//!
//! The module mirrors torchvision's `vgg16()` parameter names exactly, so weights load by name
//! with no remapping: `features.{0,2,5,7,10,12,14,17,19,21,24,26,28}` are the 13 convolutions
//! (their `features` entries at the ReLU and max-pool indices are `None`), and `classifier.0`
//! (fc6) and `classifier.3` (fc7) the two fully connected layers kept. torchvision's fc8
//! (`classifier.6`, the 1000 ImageNet classes) is not part of the encoder and is ignored when
//! present in a weight file.
//!
//! Weights come from torchvision's `vgg16-*.pth` (a PyTorch ZIP checkpoint) or from a
//! safetensors file with the same tensor names and PyTorch layouts (Linear weights
//! `[out, in]`), through burn-store's [`PytorchStore`] and [`SafetensorsStore`]; see
//! [`Vgg16::load_weights`].
//!
//! To reproduce NeuralTalk's features, feed images the way its Caffe VGG-16 saw them:
//! [`NEURALTALK_RESIZE`] (the whole image squashed to [`INPUT_SIZE`]², no crop) and
//! [`NEURALTALK_NORMALIZATION`] (BGR, 0..255 minus Caffe's mean, no scaling), as
//! [`crate::data::image::load_chw`] does with those presets.

use std::io::Read;
use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::activation::relu;

use crate::data::image::{Normalization, ResizeMode};
use crate::error::{Error, Result};

/// Side of the square image VGG-16 takes.
pub const INPUT_SIZE: u32 = 224;
/// NeuralTalk's resize: the whole image to 224×224, aspect ratio ignored.
pub const NEURALTALK_RESIZE: ResizeMode = ResizeMode::Squash;
/// NeuralTalk's (Caffe's) normalisation: BGR, 0..255 minus the mean pixel, no scaling.
pub const NEURALTALK_NORMALIZATION: Normalization = Normalization::Caffe;

/// The convolution stack: channels of each conv as a multiple of `width` (`None` = max-pool).
const LAYOUT: [Option<usize>; 18] = [
    Some(1),
    Some(1),
    None,
    Some(2),
    Some(2),
    None,
    Some(4),
    Some(4),
    Some(4),
    None,
    Some(8),
    Some(8),
    Some(8),
    None,
    Some(8),
    Some(8),
    Some(8),
    None,
];

/// torchvision's `classifier` indices of fc6 and fc7.
const FC6: usize = 0;
const FC7: usize = 3;

/// VGG-16's shape. The defaults are the real network; tests shrink it.
#[derive(Config, Debug, PartialEq)]
pub struct Vgg16Config {
    /// Channels of the first block (64); the five blocks have 1, 2, 4, 8 and 8 times this.
    #[config(default = 64)]
    pub width: usize,
    /// Size of fc6 and fc7 (4096): the length of the feature vector.
    #[config(default = 4096)]
    pub hidden: usize,
    /// Side of the average-pooled map flattened into fc6 (7, torchvision's
    /// `AdaptiveAvgPool2d((7, 7))`; with 224×224 input the map is already 7×7).
    #[config(default = 7)]
    pub pool: usize,
}

impl Vgg16Config {
    /// Length of the feature vector ([`Vgg16::forward`]'s output width).
    pub fn feature_dim(&self) -> usize {
        self.hidden
    }

    /// Channels of the last convolution.
    fn last_channels(&self) -> usize {
        8 * self.width
    }

    /// A VGG-16 with random weights (load real ones with [`Vgg16::load_weights`]).
    pub fn init(&self, device: &Device) -> Vgg16 {
        let mut features: Vec<Option<Conv2d>> = Vec::new();
        let mut pool_after = Vec::new();
        let mut c_in = 3;
        for step in LAYOUT {
            match step {
                Some(mult) => {
                    let c_out = mult * self.width;
                    features.push(Some(
                        Conv2dConfig::new([c_in, c_out], [3, 3])
                            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                            .init(device),
                    ));
                    features.push(None); // ReLU
                    c_in = c_out;
                }
                None => {
                    // The pool follows the conv two entries back (conv, ReLU, pool).
                    pool_after.push(features.len() - 2);
                    features.push(None); // MaxPool
                }
            }
        }
        // Trailing ReLU/pool entries hold nothing; the last conv is features.28.
        while matches!(features.last(), Some(None)) {
            features.pop();
        }
        let fc_in = self.last_channels() * self.pool * self.pool;
        let mut classifier: Vec<Option<Linear>> = (0..=FC7).map(|_| None).collect();
        classifier[FC6] = Some(LinearConfig::new(fc_in, self.hidden).init(device));
        classifier[FC7] = Some(LinearConfig::new(self.hidden, self.hidden).init(device));
        Vgg16 {
            features,
            avgpool: AdaptiveAvgPool2dConfig::new([self.pool, self.pool]).init(),
            classifier,
            maxpool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            pool_after,
        }
    }
}

/// VGG-16 up to fc7 after ReLU, with torchvision's parameter names.
#[derive(Module, Debug)]
pub struct Vgg16 {
    /// torchvision's `features.N`: a convolution at each conv index, `None` at ReLU and pool
    /// indices.
    pub features: Vec<Option<Conv2d>>,
    pub avgpool: AdaptiveAvgPool2d,
    /// torchvision's `classifier.N`: fc6 at 0 and fc7 at 3; ReLU and dropout entries are `None`.
    pub classifier: Vec<Option<Linear>>,
    maxpool: MaxPool2d,
    /// `features` indices followed by a 2×2 max-pool (2, 7, 14, 21, 28).
    pool_after: Vec<usize>,
}

/// What [`Vgg16::load_weights`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReport {
    /// `"pytorch"` or `"safetensors"`.
    pub format: &'static str,
    /// Tensors loaded into the model.
    pub loaded: usize,
    /// Tensors of the file the encoder has no use for (fc8: `classifier.6.*`).
    pub ignored: Vec<String>,
}

impl Vgg16 {
    /// The convolution stack: `[B, 3, H, W]` → `[B, 8·width, H/32, W/32]` (pool5).
    pub fn forward_conv(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = images;
        for (i, layer) in self.features.iter().enumerate() {
            if let Some(conv) = layer {
                x = relu(conv.forward(x));
            }
            if self.pool_after.contains(&i) {
                x = self.maxpool.forward(x);
            }
        }
        x
    }

    /// `[B, 3, H, W]` images (preprocessed) → `[B, hidden]` fc7 activations after ReLU.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.avgpool.forward(self.forward_conv(images));
        let [b, c, h, w] = x.dims();
        let mut x = x.reshape([b, c * h * w]);
        for fc in self.classifier.iter().flatten() {
            x = relu(fc.forward(x));
        }
        x
    }

    /// Loads weights by torchvision's names from a PyTorch checkpoint (`vgg16-*.pth`) or a
    /// safetensors file, detected from the file's first bytes. Every parameter of the model must
    /// be in the file with the right shape; tensors the encoder does not use are reported.
    pub fn load_weights(&mut self, path: &Path) -> Result<WeightsReport> {
        let import = |message: String| Error::Import {
            path: path.to_path_buf(),
            message,
        };
        let format = detect_format(path)?;
        let result = match format {
            "pytorch" => {
                // Names already match: no contiguous renumbering of `features.N`.
                let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
                self.load_from(&mut store)
                    .map_err(|e| import(format!("cannot load VGG-16 weights: {e}")))?
            }
            _ => {
                let mut store =
                    SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
                self.load_from(&mut store)
                    .map_err(|e| import(format!("cannot load VGG-16 weights: {e}")))?
            }
        };
        if !result.errors.is_empty() {
            let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
            return Err(import(format!(
                "VGG-16 weights do not fit (is this VGG-16, with torchvision's names?): {}",
                errors.join("; ")
            )));
        }
        if !result.missing.is_empty() {
            let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
            return Err(import(format!(
                "the file lacks VGG-16 tensors: {}",
                missing.join(", ")
            )));
        }
        Ok(WeightsReport {
            format,
            loaded: result.applied.len(),
            ignored: result.unused,
        })
    }
}

/// `"pytorch"` for a ZIP (torch.save) or legacy pickle checkpoint, `"safetensors"` for a file
/// that starts with a safetensors header.
pub(crate) fn detect_format(path: &Path) -> Result<&'static str> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0x80]) {
        return Ok("pytorch");
    }
    if head.len() == 9 && head[8] == b'{' {
        return Ok("safetensors");
    }
    Err(Error::Import {
        path: path.to_path_buf(),
        message: "not a PyTorch checkpoint (.pth) nor a safetensors file".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg16")
    }

    /// The fixture model (see tests/fixtures/vgg16/make_fixtures.py).
    fn tiny() -> Vgg16Config {
        Vgg16Config::new()
            .with_width(2)
            .with_hidden(16)
            .with_pool(2)
    }

    /// The script's input: x[b, c, h, w] = ((7b + 13c + 31h + 17w) mod 255) - 127.
    fn input(batch: usize, side: usize, device: &Device) -> Tensor<4> {
        let mut v = Vec::with_capacity(batch * 3 * side * side);
        for b in 0..batch {
            for c in 0..3 {
                for h in 0..side {
                    for w in 0..side {
                        v.push(((7 * b + 13 * c + 31 * h + 17 * w) % 255) as f32 - 127.0);
                    }
                }
            }
        }
        Tensor::<1>::from_floats(v.as_slice(), device).reshape([batch, 3, side, side])
    }

    #[derive(serde::Deserialize)]
    struct Expected {
        side: usize,
        batch: usize,
        pool5: Vec<Vec<f64>>,
        fc7: Vec<Vec<f64>>,
    }

    fn expected() -> Vec<Expected> {
        let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn assert_close(got: Tensor<2>, want: &[Vec<f64>], what: &str) {
        let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
        let want: Vec<f64> = want.iter().flatten().copied().collect();
        assert_eq!(got.len(), want.len(), "{what}");
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{what}: all zero");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (f64::from(*g) - w).abs();
            assert!(
                err <= 1e-4 * scale,
                "{what}[{i}]: burn {g}, numpy {w} (scale {scale})"
            );
        }
    }

    fn check_against_numpy(model: &Vgg16, device: &Device) {
        for case in expected() {
            let x = input(case.batch, case.side, device);
            let pool5 = model.avgpool.forward(model.forward_conv(x.clone()));
            let [b, c, h, w] = pool5.dims();
            assert_close(pool5.reshape([b, c * h * w]), &case.pool5, "pool5");
            let fc7 = model.forward(x);
            assert_eq!(fc7.dims(), [case.batch, 16]);
            assert_close(fc7, &case.fc7, &format!("fc7 ({0}×{0})", case.side));
        }
    }

    #[test]
    fn names_mirror_torchvision() {
        let device = Device::flex();
        let model = tiny().init(&device);
        let mut names: Vec<String> = model
            .collect(None, None, false)
            .iter()
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        let mut want: Vec<String> = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
            .iter()
            .map(|i| format!("features.{i}"))
            .chain(["classifier.0".into(), "classifier.3".into()])
            .flat_map(|p| [format!("{p}.bias"), format!("{p}.weight")])
            .collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(model.pool_after, vec![2, 7, 14, 21, 28]);
    }

    #[test]
    fn pytorch_weights_match_numpy() {
        let device = Device::flex();
        let mut model = tiny().init(&device);
        let report = model
            .load_weights(&fixtures().join("vgg16_tiny.pth"))
            .unwrap();
        assert_eq!(report.format, "pytorch");
        assert_eq!(report.loaded, 30);
        let mut ignored = report.ignored.clone();
        ignored.sort();
        assert_eq!(ignored, ["classifier.6.bias", "classifier.6.weight"]);
        check_against_numpy(&model, &device);
    }

    #[test]
    fn safetensors_weights_match_numpy() {
        let device = Device::flex();
        let mut model = tiny().init(&device);
        let report = model
            .load_weights(&fixtures().join("vgg16_tiny.safetensors"))
            .unwrap();
        assert_eq!(report.format, "safetensors");
        assert_eq!(report.loaded, 30);
        check_against_numpy(&model, &device);
    }

    #[test]
    fn wrong_weights_are_refused_with_names() {
        let device = Device::flex();
        // Twice as wide as the file: every conv shape differs.
        let mut model = tiny().with_width(4).init(&device);
        let e = model
            .load_weights(&fixtures().join("vgg16_tiny.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("features.0.weight"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pth");
        std::fs::write(&junk, b"hello").unwrap();
        let e = tiny()
            .init(&device)
            .load_weights(&junk)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a PyTorch checkpoint"), "{e}");
    }

    #[test]
    fn full_size_graph_shapes() {
        let device = Device::flex();
        let config = Vgg16Config::new();
        let model = config.init(&device);
        // torchvision's vgg16 has 138,357,544 parameters; fc8 (4096 × 1000 + 1000) is left out.
        assert_eq!(model.num_params(), 138_357_544 - 4_097_000);
        let x = Tensor::ones([1, 3, 224, 224], &device);
        assert_eq!(model.forward_conv(x.clone()).dims(), [1, 512, 7, 7]);
        assert_eq!(model.forward(x).dims(), [1, 4096]);
        assert_eq!(config.feature_dim(), 4096);
    }
}
