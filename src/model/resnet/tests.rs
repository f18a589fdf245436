use super::*;
use burn::store::BurnToPyTorchAdapter;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet")
}

#[derive(serde::Deserialize)]
struct Case {
    batch: usize,
    height: usize,
    width: usize,
    features: Vec<Vec<f64>>,
    logits: Vec<Vec<f64>>,
}

#[derive(serde::Deserialize)]
struct Expected {
    shape: ResNetConfig,
    tensors: usize,
    cases: Vec<Case>,
}

/// tests/fixtures/resnet/expected.json (see make_fixtures.py there), by network name.
fn expected() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The script's input: x[b, c, h, w] = (((7b + 13c + 31h + 17w) mod 255) - 127) / 128.
fn input(batch: usize, height: usize, width: usize, device: &Device) -> Tensor<4> {
    let mut v = Vec::with_capacity(batch * 3 * height * width);
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..height {
                for w in 0..width {
                    v.push((((7 * b + 13 * c + 31 * h + 17 * w) % 255) as f32 - 127.0) / 128.0);
                }
            }
        }
    }
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([batch, 3, height, width])
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

/// Both fixtures, in both formats, against the numpy forward.
#[test]
fn tiny_fixtures_match_numpy_in_both_formats() {
    let device = Device::flex();
    let all = expected();
    assert_eq!(all.len(), 2);
    for (name, want) in &all {
        want.shape.validate().unwrap();
        for (ext, format) in [("pth", "pytorch"), ("safetensors", "safetensors")] {
            let mut model = want.shape.init(&device);
            let report = model
                .load_weights(&fixtures().join(format!("{name}.{ext}")))
                .unwrap();
            assert_eq!(report.format, format);
            let counters = report.ignored.len();
            assert!(
                report
                    .ignored
                    .iter()
                    .all(|k| k.ends_with(".num_batches_tracked")),
                "{:?}",
                report.ignored
            );
            assert_eq!(report.loaded + counters, want.tensors, "{name}.{ext}");
            for case in &want.cases {
                let what = format!("{name}.{ext} {}×{}", case.height, case.width);
                let x = input(case.batch, case.height, case.width, &device);
                let features = model.forward(x.clone());
                assert_eq!(
                    features.dims(),
                    [case.batch, want.shape.feature_dim()],
                    "{what}"
                );
                assert_close(features, &case.features, &format!("features {what}"));
                assert_close(model.classify(x), &case.logits, &format!("logits {what}"));
            }
        }
    }
}

#[test]
fn names_mirror_torchvision() {
    let device = Device::flex();
    let model = ResNetConfig {
        width: 2,
        ..ResNetConfig::resnet50()
    }
    .init(&device);
    let names: Vec<String> = model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .iter()
        .map(|t| t.name.clone())
        .collect();
    for want in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_mean",
        "layer3.5.bn2.bias",
        "layer4.2.conv1.weight",
        "fc.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "layer1.1.downsample.0.weight"));
    // torchvision's resnet50 state dict: 267 parameters and running statistics, plus 53
    // num_batches_tracked.
    assert_eq!(names.len(), 267);
    let r18 = ResNetConfig {
        width: 2,
        ..ResNetConfig::resnet18()
    }
    .init(&device);
    // resnet18: 102 tensors, plus 20 num_batches_tracked.
    assert_eq!(r18.collect(None, None, true).len(), 102);
}

#[test]
fn feature_sizes_of_the_real_networks() {
    assert_eq!(ResNetConfig::resnet18().feature_dim(), 512);
    assert_eq!(ResNetConfig::resnet50().feature_dim(), 2048);
    assert_eq!(ResNetConfig::resnet50().block_count(), 16);
}

/// A file of the other network is refused with the missing and unexpected names.
#[test]
fn wrong_network_names_missing_and_unexpected_keys() {
    let device = Device::flex();
    let all = expected();
    let shape18 = &all["resnet18_tiny"].shape;
    let mut model = shape18.init(&device);
    let e = model
        .load_weights(&fixtures().join("resnet50_tiny.pth"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
    assert!(e.contains("layer1.1.bn1.weight"), "{e}");
    assert!(!e.contains("gamma"), "{e}");
    assert!(e.contains("unexpected"), "{e}");
    assert!(e.contains("conv3"), "{e}");
    assert!(e.contains("resnet18 or resnet50"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"hello").unwrap();
    let e = shape18
        .init(&device)
        .load_weights(&junk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a PyTorch checkpoint"), "{e}");
    // a truncated checkpoint
    let bytes = std::fs::read(fixtures().join("resnet18_tiny.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = shape18.init(&device).load_weights(&cut);
    assert!(e.is_err(), "a truncated file loads");
}
