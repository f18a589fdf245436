//! The captioning benchmark: a NeuralTalk-sized decoder's greedy and beam-5 latency, its
//! throughput by batch size (the CPU fast path and burn's ops), VGG-16's forward pass, and
//! NeuralTalk's numpy `predict()` on the same sizes.

use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::Value;

use super::baseline::BaselineResult;
use super::common::{
    baseline_samples, memory_bandwidth_gbs, run_baseline, single, weights_file_row, with_baseline,
};
use super::plot::draw_sweep;
use super::{
    BenchOptions, NEURALTALK_REFERENCE, NEURALTALK_SCRIPT, Row, Table, median, peak_rss_bytes,
    reset_peak_rss, time_runs,
};
use crate::error::Result;
use crate::model::decode::{DecodeOptions, decode};
use crate::model::fast_decode::FastDecoder;
use crate::model::precision::Precision;
use crate::model::vgg16::Vgg16Config;
use crate::model::{Captioner, CaptionerConfig, EncoderConfig};

const NUMPY: &str = "numpy NeuralTalk";
/// Decoding through the model's burn ops: what ran before the CPU fast path, and what a GPU runs.
const BURN_PATH: &str = "burn ops, no fast path";

/// A plot series' points: (batch size, images/s).
type Points = Vec<(f64, f64)>;

struct CaptionSizes {
    feature: usize,
    embed: usize,
    hidden: usize,
    vocab: usize,
    batches: Vec<usize>,
    greedy_runs: usize,
    beam_runs: usize,
    batch_runs: usize,
    vgg: Vgg16Config,
    vgg_image: usize,
    vgg_runs: usize,
}

impl CaptionSizes {
    fn new(quick: bool) -> Self {
        if quick {
            CaptionSizes {
                feature: 64,
                embed: 32,
                hidden: 32,
                vocab: 100,
                batches: vec![1, 4],
                greedy_runs: 3,
                beam_runs: 2,
                batch_runs: 2,
                vgg: Vgg16Config::new().with_width(2).with_hidden(32),
                vgg_image: 64,
                vgg_runs: 1,
            }
        } else {
            CaptionSizes {
                feature: 4096,
                embed: 512,
                hidden: 512,
                vocab: 2538,
                batches: vec![1, 8, 32],
                greedy_runs: 20,
                beam_runs: 5,
                batch_runs: 5,
                vgg: Vgg16Config::new(),
                vgg_image: 224,
                vgg_runs: 3,
            }
        }
    }
}

pub(super) fn bench_caption(opts: &BenchOptions) -> Result<Table> {
    reset_peak_rss();
    let s = CaptionSizes::new(opts.quick);
    // burn's ops and VGG-16 run on the chosen device; the fast path is the CPU's either way
    let device = opts.device();
    device.seed(2);
    let config = CaptionerConfig::new(
        EncoderConfig::Precomputed {
            dim: s.feature,
            backbone: "random".into(),
        },
        s.vocab,
    )
    .with_embed_size(s.embed)
    .with_hidden_size(s.hidden)
    .with_dropout(0.0);
    let model = config.init(&device);
    let bench = Decoding {
        fast: FastDecoder::new(&model)?,
        fast16: FastDecoder::with_precision(&model, Precision::F16)?,
        model: &model,
        feature: s.feature,
        device: &device,
    };
    let one = bench.features(1);
    tracing::info!("bench caption: memory bandwidth");
    let bandwidth = memory_bandwidth_gbs(5);
    tracing::info!("bench caption: greedy");
    let greedy = bench.latency_ms(&one, 1, 2, s.greedy_runs, Path::Fast)?;
    let greedy16 = bench.latency_ms(&one, 1, 2, s.greedy_runs, Path::Fast16)?;
    let greedy_burn = bench.latency_ms(&one, 1, 2, s.greedy_runs, Path::Burn)?;
    tracing::info!("bench caption: beam 5");
    // fast and burn alternate, so that a change in the machine's load hits both alike
    let (mut beam, mut beam_burn, mut beam16) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.beam_runs {
        beam.extend(bench.latency_ms(&one, 5, 1, 1, Path::Fast)?);
        beam_burn.extend(bench.latency_ms(&one, 5, 1, 1, Path::Burn)?);
        beam16.extend(bench.latency_ms(&one, 5, 1, 1, Path::Fast16)?);
    }
    let steps = bench.greedy_steps(&one)?;
    // the least time a one-image greedy caption can take: its weight bytes read once per step
    let bound_ms = |fast: &FastDecoder| {
        (fast.start_bytes() + steps * fast.step_bytes()) as f64 / (bandwidth * 1e9) * 1e3
    };
    let (bound32, bound16) = (bound_ms(&bench.fast), bound_ms(&bench.fast16));
    let over = |v: &[f64], bound: f64| v.iter().map(|t| t / bound).collect::<Vec<_>>();
    let (batch_rows, burn_series) = bench.batch_throughput(&s)?;

    let numpy = numpy_baseline(opts, &s);
    let np_greedy = baseline_samples(&numpy, "greedy_ms", |v| v);
    let np_beam = baseline_samples(&numpy, "beam5_ms", |v| v);
    // NeuralTalk's predict() captions one image at a time: its throughput is 1000 / latency.
    let np_ips = baseline_samples(&numpy, "greedy_ms", |v| 1e3 / v);

    let mut rows = vec![
        with_baseline(
            Row::from_samples("greedy latency per image", "ms", false, &greedy),
            NUMPY,
            &np_greedy,
        ),
        with_baseline(
            Row::from_samples("beam-5 latency per image", "ms", false, &beam),
            NUMPY,
            &np_beam,
        ),
        Row::from_samples(
            &format!("greedy latency per image, {BURN_PATH}"),
            "ms",
            false,
            &greedy_burn,
        ),
        Row::from_samples(
            &format!("beam-5 latency per image, {BURN_PATH}"),
            "ms",
            false,
            &beam_burn,
        ),
        single("memory bandwidth (copy)", "GB/s", true, bandwidth),
        Row::from_samples(
            "greedy latency ÷ bandwidth bound (f32)",
            "×",
            false,
            &over(&greedy, bound32),
        ),
        with_baseline(
            Row::from_samples(
                "greedy latency per image, f16 weights",
                "ms",
                false,
                &greedy16,
            ),
            NUMPY,
            &np_greedy,
        ),
        Row::from_samples(
            "greedy latency ÷ bandwidth bound (f16)",
            "×",
            false,
            &over(&greedy16, bound16),
        ),
        with_baseline(
            Row::from_samples(
                "beam-5 latency per image, f16 weights",
                "ms",
                false,
                &beam16,
            ),
            NUMPY,
            &np_beam,
        ),
    ];
    let mut series = vec![
        ("capsearch (fast path)".to_string(), Vec::new()),
        (format!("capsearch, {BURN_PATH}"), burn_series),
    ];
    for (b, row) in batch_rows {
        series[0].1.push((b as f64, row.median));
        rows.push(with_baseline(row, NUMPY, &np_ips));
    }
    if let Ok(v) = &np_ips {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let m = median(&v);
        series.push((
            "numpy NeuralTalk (one image at a time)".into(),
            s.batches.iter().map(|&b| (b as f64, m)).collect(),
        ));
    }

    let (vgg_row, vgg_mib) = vgg16_forward(&s, &device)?;
    rows.push(vgg_row);
    rows.push(weights_file_row(
        &model,
        "neuraltalk.bpk",
        "model file (decoder, f32)",
    )?);
    rows.push(single(
        "VGG-16 parameters (f32, not written)",
        "MiB",
        false,
        vgg_mib,
    ));

    let plot = "bench_caption_batch.png";
    draw_sweep(
        &opts.out.join(plot),
        "Greedy captioning throughput against batch size (NeuralTalk-sized decoder)",
        "images/s",
        &series,
    )?;
    Ok(Table {
        name: "caption".into(),
        title: "NeuralTalk-sized captioning".into(),
        setup: vec![
            format!(
                "decoder D = {}, H = {}, V = {}, {}-d precomputed features ({} parameters)",
                s.embed,
                s.hidden,
                s.vocab,
                s.feature,
                model.num_params()
            ),
            format!(
                "greedy: warm-up 2, {} runs; beam 5: warm-up 1, {} runs (fast path, burn ops and f16 in turn); batches {:?}: {} runs",
                s.greedy_runs, s.beam_runs, s.batches, s.batch_runs
            ),
            format!(
                "bandwidth bound of a one-image greedy caption ({steps} steps): (We + WLSTM's input rows + {steps} × (WLSTM + Wd)) bytes ÷ the copy bandwidth = {:.2} MB ÷ {bandwidth:.1} GB/s = {bound32:.2} ms in f32, {bound16:.2} ms in f16",
                (bench.fast.start_bytes() + steps * bench.fast.step_bytes()) as f64 / 1e6,
            ),
            "memory bandwidth: a 256 MiB buffer copied, best of 5, read + written bytes counted (as STREAM's copy)".into(),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![plot.into()],
        notes: caption_notes(&numpy),
    })
}

/// Which decoding path a latency measures.
#[derive(Clone, Copy)]
enum Path {
    /// The CPU fast path, f32 weights.
    Fast,
    /// The CPU fast path, f16 weights.
    Fast16,
    /// The model's burn ops (the path before the fast path, and the one a GPU runs).
    Burn,
}

/// The decoder under test, on the fast path (f32 and f16) and through burn's ops.
struct Decoding<'a> {
    fast: FastDecoder,
    fast16: FastDecoder,
    model: &'a Captioner,
    feature: usize,
    device: &'a Device,
}

impl Decoding<'_> {
    /// Random features for `batch` images.
    fn features(&self, batch: usize) -> Vec<f32> {
        let t = Tensor::<2>::random(
            [batch, self.feature],
            Distribution::Uniform(0.0, 1.0),
            self.device,
        );
        t.into_data().try_into_vec::<f32>().unwrap_or_default()
    }

    fn tensor(&self, features: &[f32]) -> Tensor<2> {
        let batch = features.len() / self.feature.max(1);
        Tensor::<2>::from_data(
            TensorData::new(features.to_vec(), [batch, self.feature]),
            self.device,
        )
    }

    /// Latency of captioning one image, in ms, on `path`.
    fn latency_ms(
        &self,
        one: &[f32],
        beam: usize,
        warmup: usize,
        runs: usize,
        path: Path,
    ) -> Result<Vec<f64>> {
        let opts = DecodeOptions {
            beam_size: beam,
            max_steps: 20,
            concept_weight: None,
        };
        let secs = time_runs(warmup, runs, || {
            match path {
                Path::Burn => drop(decode(self.model, self.tensor(one), opts)),
                Path::Fast => drop(self.fast.decode(one, opts)?),
                Path::Fast16 => drop(self.fast16.decode(one, opts)?),
            }
            Ok(())
        })?;
        Ok(secs.iter().map(|t| t * 1e3).collect())
    }

    /// Decoding steps a greedy caption of `one` runs (the words, and END unless cut at 20).
    fn greedy_steps(&self, one: &[f32]) -> Result<usize> {
        let caption = self.fast.decode(one, DecodeOptions::default())?;
        let words = caption.first().map_or(0, |c| c.ids.len());
        Ok((words + 1).min(DecodeOptions::default().max_steps))
    }

    /// Greedy images/s at each batch size: the fast path's rows, and burn's as (batch, median).
    fn batch_throughput(&self, s: &CaptionSizes) -> Result<(Vec<(usize, Row)>, Points)> {
        let mut batch_rows = Vec::new();
        let mut burn_series = Vec::new();
        for &b in &s.batches {
            tracing::info!("bench caption: batch {b}");
            let f = self.features(b);
            let secs = time_runs(1, s.batch_runs, || {
                self.fast.decode(&f, DecodeOptions::default())?;
                Ok(())
            })?;
            let ips: Vec<f64> = secs.iter().map(|t| b as f64 / t).collect();
            batch_rows.push((
                b,
                Row::from_samples(
                    &format!("greedy throughput, batch {b}"),
                    "img/s",
                    true,
                    &ips,
                ),
            ));
            let ft = self.tensor(&f);
            let secs = time_runs(1, s.batch_runs, || {
                decode(self.model, ft.clone(), DecodeOptions::default());
                Ok(())
            })?;
            let mut ips: Vec<f64> = secs.iter().map(|t| b as f64 / t).collect();
            ips.sort_by(f64::total_cmp);
            burn_series.push((b as f64, median(&ips)));
        }
        Ok((batch_rows, burn_series))
    }
}

/// NeuralTalk's numpy `predict()` on the same sizes.
fn numpy_baseline(opts: &BenchOptions, s: &CaptionSizes) -> BaselineResult {
    run_baseline(
        opts,
        "neuraltalk_bench.py",
        NEURALTALK_SCRIPT,
        &[("neuraltalk_reference.py", NEURALTALK_REFERENCE)],
        vec![
            format!("--feature={}", s.feature),
            format!("--embed={}", s.embed),
            format!("--hidden={}", s.hidden),
            format!("--vocab={}", s.vocab),
            format!("--greedy-runs={}", s.greedy_runs),
            format!("--beam-runs={}", s.beam_runs.min(3)),
        ],
    )
}

/// VGG-16's forward pass on one image: its row, and its parameters' size in MiB.
fn vgg16_forward(s: &CaptionSizes, device: &Device) -> Result<(Row, f64)> {
    tracing::info!("bench caption: VGG-16");
    let vgg = s.vgg.init(device);
    let image = Tensor::<4>::random(
        [1, 3, s.vgg_image, s.vgg_image],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let vgg_secs = time_runs(1, s.vgg_runs, || {
        let _ = vgg.forward(image.clone()).into_data();
        Ok(())
    })?;
    let vgg_ms: Vec<f64> = vgg_secs.iter().map(|t| t * 1e3).collect();
    let row = Row::from_samples(
        &format!("VGG-16 forward, one {0}×{0} image", s.vgg_image),
        "ms",
        false,
        &vgg_ms,
    );
    Ok((row, vgg.num_params() as f64 * 4.0 / 1048576.0))
}

fn caption_notes(numpy: &BaselineResult) -> Vec<String> {
    let mut notes = vec![
        "Random weights and features: captions run the full 20 steps, as they do in the numpy baseline. Latency excludes the CNN (precomputed features).".to_string(),
        format!("capsearch rows without a suffix are the CPU fast path (src/model/fast_decode.rs), which `caption`, `eval`, `search` and `serve` use; the rows marked \"{BURN_PATH}\" decode the same model through burn's tensor ops (the path before the fast path, and the one a GPU runs)."),
    ];
    if let Some(v) = numpy
        .as_ref()
        .ok()
        .and_then(|v| v.get("numpy"))
        .and_then(Value::as_str)
    {
        notes.push(format!("numpy {v}, float64 as in NeuralTalk; batch rows compare against its one-image-at-a-time throughput."));
    }
    notes
}
