use super::*;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet")
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
    shape: EfficientNetConfig,
    tensors: usize,
    cases: Vec<Case>,
}

/// tests/fixtures/efficientnet/expected.json (see make_fixtures.py there).
fn expected() -> Expected {
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

fn tiny(device: &Device) -> (EfficientNet, WeightsReport, Expected) {
    let expected = expected();
    expected.shape.validate().unwrap();
    let mut model = expected.shape.init(device);
    let report = model
        .load_weights(&fixtures().join("effnet_tiny.pth"))
        .unwrap();
    (model, report, expected)
}

#[test]
fn key_remap_drops_one_leading_underscore_per_segment() {
    assert_eq!(remap_key("_conv_stem.weight"), "conv_stem.weight");
    assert_eq!(
        remap_key("_blocks.12._depthwise_conv.weight"),
        "blocks.12.depthwise_conv.weight"
    );
    assert_eq!(remap_key("_bn1.running_var"), "bn1.running_var");
    assert_eq!(remap_key("fc.bias"), "fc.bias");
    assert_eq!(remap_key("a.__b"), "a._b");
}

#[test]
fn checkpoint_names_map_onto_the_module() {
    let device = Device::flex();
    let (model, report, expected) = tiny(&device);
    // Everything but the 19 batch norms' step counters is loaded, and only they are left over.
    let batch_norms = 2 + 2 + 5 * 3; // stem, head; 2 in block 0 (no expansion), 3 in the others
    assert_eq!(report.ignored.len(), batch_norms, "{:?}", report.ignored);
    assert!(
        report
            .ignored
            .iter()
            .all(|k| k.ends_with(".num_batches_tracked") && !k.contains("._"))
    );
    assert_eq!(report.loaded + batch_norms, expected.tensors);
    let names: Vec<String> = model
        .collect(None, None, false)
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names.len(), report.loaded);
    assert!(names.contains(&"blocks.1.expand_conv.weight".to_string()));
    assert!(!names.contains(&"blocks.0.expand_conv.weight".to_string()));
}

#[test]
fn tiny_network_matches_numpy_reference() {
    let device = Device::flex();
    let (model, _, expected) = tiny(&device);
    for case in &expected.cases {
        let what = format!("{}×{}×{}", case.batch, case.height, case.width);
        let x = input(case.batch, case.height, case.width, &device);
        let features = model.forward(x.clone());
        assert_eq!(features.dims(), [case.batch, expected.shape.feature_dim()]);
        assert_close(features, &case.features, &format!("features {what}"));
        assert_close(model.classify(x), &case.logits, &format!("logits {what}"));
    }
}

/// The largest difference between two feature sets, relative to the largest magnitude of `want`.
fn relative_difference(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, x| m.max(f64::from(x.abs())));
    assert!(scale > 0.0, "all zero");
    got.iter()
        .zip(want)
        .map(|(g, w)| f64::from((g - w).abs()))
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn fast_path_matches_burn_and_numpy_on_the_tiny_network() {
    let device = Device::flex();
    let (model, _, expected) = tiny(&device);
    let fast = fast::FastEfficientNet::new(&model).unwrap();
    assert_eq!(fast.feature_dim(), expected.shape.feature_dim());
    for case in &expected.cases {
        let what = format!("{}×{}×{}", case.batch, case.height, case.width);
        let x = input(case.batch, case.height, case.width, &device);
        let burn: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();
        let got = fast.forward(x).unwrap();
        assert_eq!(got.dims(), [case.batch, expected.shape.feature_dim()]);
        let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
        let diff = relative_difference(&got, &burn);
        assert!(diff <= 1e-4, "fast vs burn {what}: {diff:e}");
        assert_close(
            Tensor::<1>::from_floats(got.as_slice(), &device)
                .reshape([case.batch, fast.feature_dim()]),
            &case.features,
            &format!("fast features {what}"),
        );
    }
    // One image at a time (the single-image path spreads rows, not images) gives the same.
    let x = input(3, 32, 32, &device);
    let all: Vec<f32> = fast
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    for i in 0..3 {
        let one: Vec<f32> = fast
            .forward(x.clone().narrow(0, i, 1))
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let dim = fast.feature_dim();
        assert!(relative_difference(&one, &all[i * dim..(i + 1) * dim]) <= 1e-6);
    }
    // A wrong input is an error, not a panic.
    let bad = Tensor::<4>::zeros([1, 4, 32, 32], &device);
    assert!(fast.forward(bad).is_err());
}

/// Every pooling runs the same on the fast path as through burn's ops on the head's map.
#[test]
fn fast_path_pools_the_head_map_as_burn_does() {
    use crate::model::pooling::Pooling;
    let device = Device::flex();
    let (model, _, _) = tiny(&device);
    let fast = fast::FastEfficientNet::new(&model).unwrap();
    let x = input(2, 32, 32, &device);
    for pooling in [Pooling::Mean, Pooling::Max, Pooling::MeanMax, Pooling::Gem] {
        let want: Vec<f32> = pooling
            .pool_map(model.forward_map(x.clone()))
            .into_data()
            .try_to_vec()
            .unwrap();
        let got = fast.forward_pooled(x.clone(), pooling).unwrap();
        assert_eq!(
            got.dims(),
            [2, pooling.dim(fast.feature_dim())],
            "{pooling}"
        );
        let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
        let diff = relative_difference(&got, &want);
        assert!(diff <= 1e-4, "{pooling}: fast vs burn {diff:e}");
    }
    // mean is the network's own pooled feature
    let mean: Vec<f32> = fast
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let pooled: Vec<f32> = fast
        .forward_pooled(x, Pooling::Mean)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(mean, pooled);
}

#[test]
fn lite_variants_have_the_published_shapes() {
    let device = Device::flex();
    let lite0 = EfficientNetConfig::lite(0).unwrap();
    lite0.validate().unwrap();
    let repeats: Vec<usize> = lite0.stages.iter().map(|s| s.repeats).collect();
    assert_eq!(repeats, [1, 2, 2, 3, 3, 4, 1]);
    let model = lite0.init(&device);
    // The checkpoint's 247 tensors: 149 learned ones of 4,652,008 values, and the 49 batch
    // norms' running means and variances, 2 × 21,008 values (counted from
    // efficientnet-lite0-57934424.pth); burn counts both.
    assert_eq!(model.blocks.len(), 16);
    assert_eq!(model.num_params(), 4_652_008 + 2 * 21_008);
    assert_eq!(model.collect(None, None, false).len(), 247);
    let x = Tensor::zeros([1, 3, 224, 224], &device);
    assert_eq!(model.forward_map(x.clone()).dims(), [1, 1280, 7, 7]);
    assert_eq!(model.classify(x).dims(), [1, 1000]);

    let lite1 = EfficientNetConfig::lite(1).unwrap();
    assert_eq!(lite1.image_size, 240);
    let repeats: Vec<usize> = lite1.stages.iter().map(|s| s.repeats).collect();
    assert_eq!(repeats, [1, 3, 3, 4, 4, 5, 1]);
    let lite2 = EfficientNetConfig::lite(2).unwrap();
    assert_eq!(lite2.image_size, 260);
    let outs: Vec<usize> = lite2.stages.iter().map(|s| s.out).collect();
    assert_eq!(outs, [16, 24, 48, 88, 120, 208, 352]);
    assert_eq!((lite2.stem, lite2.head), (32, 1280));
    assert!(EfficientNetConfig::lite(5).is_none());
}

#[test]
fn wrong_network_names_missing_and_unexpected_tensors() {
    let device = Device::flex();
    let mut model = expected().shape.init(&device);
    let vgg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg16/vgg16_tiny.pth");
    let e = model.load_weights(&vgg).unwrap_err().to_string();
    assert!(e.contains("97 missing: blocks.0.bn1.beta"), "{e}");
    assert!(e.contains("32 unexpected: classifier.0.bias"), "{e}");
    assert!(e.contains("vgg16_tiny.pth"), "{e}");

    // The right names at other widths: the shapes are wrong.
    let mut wider = expected().shape;
    wider.stem = 16;
    let e = wider
        .init(&device)
        .load_weights(&fixtures().join("effnet_tiny.pth"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv_stem.weight"), "{e}");
}

#[test]
fn truncated_and_corrupt_files_are_errors() {
    let device = Device::flex();
    let bytes = std::fs::read(fixtures().join("effnet_tiny.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shape = expected().shape;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("text", b"hello, not weights".to_vec()),
        ("zip header only", b"PK\x03\x04garbage".to_vec()),
    ];
    for cut in [
        1,
        10,
        100,
        1000,
        bytes.len() / 2,
        bytes.len() - 100,
        bytes.len() - 1,
    ] {
        cases.push(("truncated", bytes[..cut].to_vec()));
    }
    let mut flipped = bytes.clone();
    for b in &mut flipped[40..400] {
        *b ^= 0x5a;
    }
    cases.push(("corrupt pickle", flipped));
    for (i, (what, data)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.pth"));
        std::fs::write(&path, &data).unwrap();
        let mut model = shape.init(&device);
        let result = model.load_weights(&path);
        let e = result
            .err()
            .unwrap_or_else(|| panic!("{what} ({} bytes) loaded", data.len()))
            .to_string();
        assert!(e.contains(&format!("bad{i}.pth")), "{what}: {e}");
    }
}

/// Where `datasets/fetch-weights.sh` puts weights: `$CAPSEARCH_WEIGHTS_DIR`, else
/// `datasets/weights/`.
fn weights_dir() -> PathBuf {
    std::env::var_os("CAPSEARCH_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/weights"))
}

/// The real EfficientNet-Lite0 on scikit-image's photographs: `chelsea` is a cat (ImageNet 281
/// tabby, 282 tiger cat or 285 Egyptian cat in the top 5), `coffee` an espresso (967, top 1).
/// Needs `bash datasets/fetch-weights.sh efficientnet-lite0 test-images`; skips without the
/// files, unless `CAPSEARCH_REQUIRE_WEIGHTS=1` (CI) makes their absence a failure. Prints the
/// time per image at batch 1 and 16 (224×224).
#[test]
fn real_lite0_classifies_photographs() {
    use crate::data::image::{ImageLimits, ResizeMode, load_rgb8, normalize};
    let dir = weights_dir();
    let weights = dir.join("efficientnet-lite0.pth");
    let images = dir.join("test-images");
    let needed = [
        weights.clone(),
        images.join("chelsea.png"),
        images.join("coffee.png"),
    ];
    if let Some(absent) = needed.iter().find(|p| !p.exists()) {
        let message = format!(
            "{} is absent: run `bash datasets/fetch-weights.sh efficientnet-lite0 test-images`",
            absent.display()
        );
        assert!(
            std::env::var_os("CAPSEARCH_REQUIRE_WEIGHTS").is_none(),
            "CAPSEARCH_REQUIRE_WEIGHTS is set but {message}"
        );
        eprintln!("SKIPPED real_lite0_classifies_photographs: {message}");
        return;
    }
    let device = Device::flex();
    let config = EfficientNetConfig::lite(0).unwrap();
    let mut model = config.init(&device);
    let report = model.load_weights(&weights).unwrap();
    assert_eq!(report.loaded, 247);
    assert_eq!(report.ignored.len(), 49);
    let size = config.image_size;
    let pixels = |name: &str| {
        let rgb = load_rgb8(
            &images.join(name),
            size as u32,
            ResizeMode::ShorterSideCenterCrop,
            &ImageLimits::default(),
        )
        .unwrap();
        normalize(&rgb, NORMALIZATION)
    };
    let (chelsea, coffee) = (pixels("chelsea.png"), pixels("coffee.png"));
    let batch: Vec<f32> = chelsea.iter().chain(&coffee).copied().collect();
    let x = Tensor::<1>::from_floats(batch.as_slice(), &device).reshape([2, 3, size, size]);
    let probs: Vec<f32> = burn::tensor::activation::softmax(model.classify(x), 1)
        .into_data()
        .try_to_vec()
        .unwrap();
    let top = |p: &[f32]| {
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        idx.truncate(5);
        idx.into_iter().map(|i| (i, p[i])).collect::<Vec<_>>()
    };
    let (cat, cup) = (top(&probs[..1000]), top(&probs[1000..]));
    eprintln!("chelsea top-5 (ImageNet index, probability): {cat:?}");
    eprintln!("coffee top-5: {cup:?}");
    assert!(
        cat.iter().any(|(i, _)| [281, 282, 285].contains(i)),
        "no cat class in chelsea's top 5: {cat:?}"
    );
    assert_eq!(cup[0].0, 967, "coffee's top 1 is not espresso: {cup:?}");

    // The CPU fast path gives the same features on the photographs.
    let fast = fast::FastEfficientNet::new(&model).unwrap();
    let x = Tensor::<1>::from_floats(batch.as_slice(), &device).reshape([2, 3, size, size]);
    let want: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();
    let got: Vec<f32> = fast.forward(x).unwrap().into_data().try_to_vec().unwrap();
    let diff = relative_difference(&got, &want);
    eprintln!(
        "fast path vs burn's ops, largest difference relative to the largest feature: {diff:e}"
    );
    assert!(diff <= 1e-4, "fast path differs from burn's: {diff:e}");

    // Timing, printed only (machines differ).
    for batch in [1usize, 16] {
        let one: Vec<f32> = (0..batch).flat_map(|_| chelsea.iter().copied()).collect();
        let x = Tensor::<1>::from_floats(one.as_slice(), &device).reshape([batch, 3, size, size]);
        let runs = if batch == 1 { 10 } else { 2 };
        let time = |f: &dyn Fn()| {
            f(); // warm-up
            let started = std::time::Instant::now();
            for _ in 0..runs {
                f();
            }
            started.elapsed().as_secs_f64() * 1000.0 / (runs * batch) as f64
        };
        let burn = time(&|| drop(model.forward(x.clone()).into_data()));
        let quick = time(&|| drop(fast.forward(x.clone()).unwrap().into_data()));
        eprintln!(
            "EfficientNet-Lite0 features, batch {batch}: {burn:.1} ms per 224×224 image through burn's ops, {quick:.1} ms on the fast path"
        );
    }
}

/// Where burn's forward spends its time, op by op (`cargo test --lib profile_burn_ops --
/// --ignored --nocapture`): random weights, 224×224, batch 1 and 16.
#[test]
#[ignore = "a measurement, not a check"]
fn profile_burn_ops() {
    use std::collections::BTreeMap;
    use std::time::Instant;
    let device = Device::flex();
    let model = EfficientNetConfig::lite(0).unwrap().init(&device);
    for batch in [1usize, 16] {
        let x0 = Tensor::<4>::random(
            [batch, 3, 224, 224],
            burn::tensor::Distribution::Default,
            &device,
        );
        let mut table: BTreeMap<String, f64> = BTreeMap::new();
        let runs = if batch == 1 { 10 } else { 2 };
        let total = Instant::now();
        for _ in 0..runs + 1 {
            let mut t = |name: &str, f: &mut dyn FnMut() -> Tensor<4>| -> Tensor<4> {
                let s = Instant::now();
                let y = f();
                *table.entry(name.to_string()).or_default() += s.elapsed().as_secs_f64();
                y
            };
            let mut x = t("stem conv 3×3 s2", &mut || {
                model.conv_stem.forward(x0.clone())
            });
            x = t("batch norm", &mut || model.bn0.forward(x.clone()));
            x = t("ReLU6", &mut || relu6(x.clone()));
            for b in &model.blocks {
                let input = x.clone();
                if let (Some(c), Some(bn)) = (&b.expand_conv, &b.bn0) {
                    x = t("expand 1×1", &mut || c.forward(x.clone()));
                    x = t("batch norm", &mut || bn.forward(x.clone()));
                    x = t("ReLU6", &mut || relu6(x.clone()));
                }
                let k = b.depthwise_conv.weight.dims()[2];
                let s = b.depthwise_conv.stride[0];
                x = t(&format!("depthwise {k}×{k} s{s}"), &mut || {
                    b.depthwise_conv.forward(x.clone())
                });
                x = t("batch norm", &mut || b.bn1.forward(x.clone()));
                x = t("ReLU6", &mut || relu6(x.clone()));
                x = t("project 1×1", &mut || b.project_conv.forward(x.clone()));
                x = t("batch norm", &mut || b.bn2.forward(x.clone()));
                if b.skip {
                    x = t("residual add", &mut || x.clone() + input.clone());
                }
            }
            x = t("head 1×1", &mut || model.conv_head.forward(x.clone()));
            x = t("batch norm", &mut || model.bn1.forward(x.clone()));
            x = t("ReLU6", &mut || relu6(x.clone()));
            let _ = t("average pool", &mut || {
                let [b, c, h, w] = x.dims();
                x.clone()
                    .reshape([b, c, h * w])
                    .mean_dim(2)
                    .reshape([b, c, 1, 1])
            });
        }
        let wall = total.elapsed().as_secs_f64();
        let sum: f64 = table.values().sum();
        let per = |v: f64| v * 1000.0 / ((runs + 1) * batch) as f64;
        eprintln!(
            "batch {batch}: ops {:.1} ms per image, wall {:.1} ms per image",
            per(sum),
            per(wall)
        );
        let mut rows: Vec<_> = table.into_iter().collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, v) in rows {
            eprintln!("| {name} | {:.2} ms | {:.0}% |", per(v), 100.0 * v / sum);
        }
    }
}
