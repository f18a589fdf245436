//! The photo-feature benchmark: EfficientNet-Lite0's pooled features (what the feature cache,
//! `caption`, `index` and `serve` compute for every photo) in images/s at batch 1 and 16, on the
//! CPU fast path and through burn's ops, against the same network in PyTorch
//! (`bench/pytorch_features.py`) on the same weights, with the largest difference between the two
//! networks' features.

use std::path::PathBuf;

use burn::prelude::*;
use serde_json::Value;

use super::baseline::BaselineResult;
use super::common::{baseline_samples, run_baseline, with_baseline};
use super::{
    BenchOptions, FEATURES_SCRIPT, Row, Table, median, peak_rss_bytes, reset_peak_rss, time_runs,
};
use crate::error::Result;
use crate::model::efficientnet::fast::FastEfficientNet;
use crate::model::efficientnet::{EfficientNet, EfficientNetConfig};

const TORCH: &str = "PyTorch";

/// Where `datasets/fetch-weights.sh` puts Lite0's weights: `$CAPSEARCH_WEIGHTS_DIR`, else
/// `datasets/weights/`.
pub fn default_weights() -> PathBuf {
    std::env::var_os("CAPSEARCH_WEIGHTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("datasets/weights"))
        .join("efficientnet-lite0.pth")
}

struct Sizes {
    image: usize,
    /// (batch, measured runs)
    batches: Vec<(usize, usize)>,
    warmup: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                image: 64,
                batches: vec![(1, 2), (4, 1)],
                warmup: 1,
            }
        } else {
            Sizes {
                image: 224,
                batches: vec![(1, 20), (16, 5)],
                warmup: 2,
            }
        }
    }
}

/// `x[b, c, h, w] = (((7b + 13c + 31h + 17w) mod 255) − 127) / 128`, as the script builds them.
fn fixed_images(batch: usize, size: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for h in 0..size {
                for w in 0..size {
                    v.push((((7 * b + 13 * c + 31 * h + 17 * w) % 255) as f32 - 127.0) / 128.0);
                }
            }
        }
    }
    v
}

pub(super) fn bench_features(opts: &BenchOptions, cores: usize) -> Result<Table> {
    reset_peak_rss();
    let s = Sizes::new(opts.quick);
    let cpu = Device::flex();
    let config = EfficientNetConfig::lite(0).expect("Lite0 is defined");
    let mut net: EfficientNet = config.init(&cpu);
    let weights = opts
        .efficientnet_weights
        .clone()
        .unwrap_or_else(default_weights);
    let have_weights = weights.exists();
    if have_weights {
        net.load_weights(&weights)?;
    }
    let fast = FastEfficientNet::new(&net)?;
    let device = opts.device();
    let burn_net = if device == cpu {
        net.clone()
    } else {
        net.clone().to_device(&device)
    };

    let mut ours = Vec::new();
    for &(batch, runs) in &s.batches {
        tracing::info!("bench features: batch {batch}");
        let pixels = fixed_images(batch, s.image);
        let x =
            Tensor::<1>::from_floats(pixels.as_slice(), &cpu).reshape([batch, 3, s.image, s.image]);
        let fast_s = time_runs(s.warmup, runs, || {
            fast.forward(x.clone())?.into_data();
            Ok(())
        })?;
        let xd = x.clone().to_device(&device);
        let burn_s = time_runs(1, runs.div_ceil(2), || {
            let _ = burn_net.forward(xd.clone()).into_data();
            Ok(())
        })?;
        let ips = |v: Vec<f64>| v.into_iter().map(|t| batch as f64 / t).collect::<Vec<_>>();
        ours.push((batch, ips(fast_s), ips(burn_s)));
    }

    let torch = if have_weights {
        let (batches, runs): (Vec<String>, Vec<String>) = s
            .batches
            .iter()
            .map(|(b, r)| (b.to_string(), r.to_string()))
            .unzip();
        run_baseline(
            opts,
            "pytorch_features.py",
            FEATURES_SCRIPT,
            &[],
            vec![
                "--weights".into(),
                weights.display().to_string(),
                "--image".into(),
                s.image.to_string(),
                "--batches".into(),
                batches.join(","),
                "--runs".into(),
                runs.join(","),
                "--warmup".into(),
                s.warmup.to_string(),
                "--threads".into(),
                cores.to_string(),
            ],
        )
    } else {
        Err(format!(
            "{} is absent (run `bash datasets/fetch-weights.sh efficientnet-lite0`, or pass --weights)",
            weights.display()
        ))
    };

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (batch, fast_ips, burn_ips) in ours {
        let (samples, layout) = faster_torch(&torch, batch);
        if let Some(layout) = layout {
            notes.push(format!(
                "PyTorch at batch {batch}: the faster of its two memory formats, {layout}."
            ));
        }
        rows.push(with_baseline(
            Row::from_samples(
                &format!("Lite0 features, batch {batch}"),
                "img/s",
                true,
                &fast_ips,
            ),
            TORCH,
            &samples,
        ));
        rows.push(with_baseline(
            Row::from_samples(
                &format!("Lite0 features, batch {batch}, burn ops (no fast path)"),
                "img/s",
                true,
                &burn_ips,
            ),
            TORCH,
            &samples,
        ));
    }
    notes.extend(agreement(&torch, &fast, &net, s.image)?);
    Ok(Table {
        name: "features".into(),
        title: "EfficientNet-Lite0 photo features".into(),
        setup: vec![
            format!(
                "EfficientNet-Lite0, {0}×{0} images, the 1280-d pooled feature; weights: {1}",
                s.image,
                if have_weights {
                    weights.display().to_string()
                } else {
                    format!("random ({} absent)", weights.display())
                }
            ),
            format!(
                "warm-up {}, then {} runs per batch size (burn ops: half as many); PyTorch: torch.no_grad(), eval mode, {cores} threads",
                s.warmup,
                s.batches
                    .iter()
                    .map(|(b, r)| format!("batch {b}: {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![],
        notes,
    })
}

/// PyTorch's samples at `batch` in its faster memory format, and that format's name.
fn faster_torch(
    torch: &BaselineResult,
    batch: usize,
) -> (std::result::Result<Vec<f64>, String>, Option<&'static str>) {
    let nchw = baseline_samples(torch, &format!("batch_{batch}"), |v| v);
    let cl = baseline_samples(torch, &format!("batch_{batch}_channels_last"), |v| v);
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    match (&nchw, &cl) {
        (Ok(a), Ok(b)) if med(b) > med(a) => (cl, Some("channels_last")),
        (Ok(_), Ok(_)) => (nchw, Some("NCHW (the default)")),
        _ => (nchw, None),
    }
}

/// How far apart the fast path, burn's ops and PyTorch put the two fixed images' features.
fn agreement(
    torch: &BaselineResult,
    fast: &FastEfficientNet,
    net: &EfficientNet,
    size: usize,
) -> Result<Vec<String>> {
    let cpu = Device::flex();
    let pixels = fixed_images(2, size);
    let ours = fast.features(
        &pixels,
        [2, 3, size, size],
        crate::model::pooling::Pooling::Mean,
    )?;
    let x = Tensor::<1>::from_floats(pixels.as_slice(), &cpu).reshape([2, 3, size, size]);
    let burn: Vec<f32> = net
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = |other: &[f32]| {
        ours.iter()
            .zip(other)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    let mut notes = vec![format!(
        "Features of two fixed images, fast path vs burn's ops: largest difference {:.2e} (largest feature {scale:.3}).",
        diff(&burn)
    )];
    if let Ok(Value::Array(rows)) = torch.as_ref().map(|v| v["features"].clone()) {
        let theirs: Vec<f32> = rows
            .iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_f64)
            .map(|v| v as f32)
            .collect();
        if theirs.len() == ours.len() {
            notes.push(format!(
                "The same, capsearch vs PyTorch on the same weights: largest difference {:.2e}.",
                diff(&theirs)
            ));
        } else {
            notes.push(format!(
                "PyTorch returned {} feature values for the two fixed images, capsearch {}.",
                theirs.len(),
                ours.len()
            ));
        }
    }
    Ok(notes)
}
