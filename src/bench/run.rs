//! The benchmarks themselves: training, captioning, search (and `serve`, in [`super::serve`]).

use std::path::Path;
use std::time::Instant;

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::baseline::{self, BaselineResult};
use super::plot::draw_sweep;
use super::{
    BenchOptions, BenchReport, Machine, NEURALTALK_SCRIPT, PYTORCH_SCRIPT, Row, Table,
    load_average, peak_rss_bytes, render_markdown, reset_peak_rss, time_runs,
};
use crate::data::batch::arrange_tokens;
use crate::data::shapes;
use crate::data::text::{Vocabulary, tokenize};
use crate::error::{Error, Result};
use crate::model::artifact::save_weights;
use crate::model::decode::{DecodeOptions, decode};
use crate::model::encoder::SmallCnnConfig;
use crate::model::fast_decode::{FastDecoder, decode_with};
use crate::model::vgg16::Vgg16Config;
use crate::model::{CaptionerConfig, EncoderConfig};
use crate::search::bench::{bench_search as search_figures, shapes_caption};
use crate::search::embedded::EmbeddedBackend;
use crate::train::config::{TrainConfig, TrainEncoder};

/// Which benchmark `capsearch bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// Training images/s on the `shapes` model, and a batch-size sweep.
    Train,
    /// NeuralTalk-sized caption latency and throughput, and VGG-16's forward pass.
    Caption,
    /// Embedded search: indexing docs/s, query latency, index size.
    Search,
    /// `capsearch serve` under load: requests/s, p50/p99 latency, errors and the server's peak RSS
    /// on `POST /api/search` (images) and `GET /api/query`.
    Serve,
    /// All of the above.
    All,
}

const NUMPY: &str = "numpy NeuralTalk";
const TORCH: &str = "PyTorch (CPU)";
/// Decoding through the model's burn ops: what ran before the CPU fast path, and what a GPU runs.
const BURN_PATH: &str = "burn ops, no fast path";

/// Runs the chosen benchmarks, writes `bench.md`, `bench.json` and the plots into `opts.out`, and
/// returns the report.
pub fn run_benchmarks(kind: BenchKind, opts: &BenchOptions, command: &str) -> Result<BenchReport> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let started = Instant::now();
    let mut machine = Machine::detect();
    if opts.device.is_some() {
        machine.backend = format!("burn {:?}", opts.device());
    }
    let mut tables = Vec::new();
    if matches!(kind, BenchKind::Train | BenchKind::All) {
        tables.push(bench_train(opts, machine.cores)?);
    }
    if matches!(kind, BenchKind::Caption | BenchKind::All) {
        tables.push(bench_caption(opts)?);
    }
    if matches!(kind, BenchKind::Search | BenchKind::All) {
        tables.push(bench_search(opts)?);
    }
    if matches!(kind, BenchKind::Serve | BenchKind::All) {
        tables.push(super::serve::bench_serve(opts)?);
    }
    machine.load_after = load_average();
    let report = BenchReport {
        machine,
        quick: opts.quick,
        command: command.to_string(),
        tables,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let md_path = opts.out.join("bench.md");
    std::fs::write(&md_path, render_markdown(&report)).map_err(|e| Error::io(&md_path, e))?;
    let json_path = opts.out.join("bench.json");
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::Invalid(format!("cannot serialise the bench report: {e}")))?;
    std::fs::write(&json_path, json).map_err(|e| Error::io(&json_path, e))?;
    Ok(report)
}

fn run_baseline(
    opts: &BenchOptions,
    file: &str,
    script: &str,
    args: Vec<String>,
) -> BaselineResult {
    if opts.no_baselines {
        return Err("--no-baselines".into());
    }
    baseline::run_script(&opts.python, file, script, &args)
}

fn baseline_samples(
    result: &BaselineResult,
    key: &str,
    scale: impl Fn(f64) -> f64,
) -> std::result::Result<Vec<f64>, String> {
    baseline::samples(result, key).map(|v| v.into_iter().map(scale).collect())
}

fn with_baseline(row: Row, name: &str, samples: &std::result::Result<Vec<f64>, String>) -> Row {
    match samples {
        Ok(s) => row.with_baseline(name, Ok(s)),
        Err(why) => row.with_baseline(name, Err(why)),
    }
}

/// One value measured once (sizes, single long runs).
fn single(name: &str, unit: &str, higher_is_better: bool, value: f64) -> Row {
    let mut r = Row::from_samples(name, unit, higher_is_better, &[value]);
    r.spread = "single run".into();
    r
}

fn file_mib(path: &Path) -> Result<f64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len() as f64
        / 1048576.0)
}

// ---------------------------------------------------------------- train

/// Sizes of the training benchmark: `configs/shapes.toml`, or tiny ones with `--quick`.
struct TrainSizes {
    image: usize,
    cnn: SmallCnnConfig,
    embed: usize,
    hidden: usize,
    batch: usize,
    captions_per_image: usize,
    max_len: usize,
    sweep: Vec<usize>,
    warmup: usize,
    runs: usize,
    sweep_runs: usize,
}

impl TrainSizes {
    fn new(quick: bool) -> Self {
        if quick {
            TrainSizes {
                image: 32,
                cnn: SmallCnnConfig::new()
                    .with_width(4)
                    .with_depth(2)
                    .with_grid(2),
                embed: 16,
                hidden: 32,
                batch: 4,
                captions_per_image: 5,
                max_len: 16,
                sweep: vec![2, 4],
                warmup: 1,
                runs: 2,
                sweep_runs: 2,
            }
        } else {
            // the default experiment, as configs/shapes.toml sets it
            let config = TrainConfig::from_toml(DEFAULT_CONFIG).ok();
            let cnn = match config.as_ref().map(|c| &c.model.encoder) {
                Some(TrainEncoder::SmallCnn(c)) => c.clone(),
                _ => SmallCnnConfig::new(),
            };
            let get = |f: fn(&TrainConfig) -> usize, default: usize| {
                config.as_ref().map(f).unwrap_or(default)
            };
            TrainSizes {
                image: get(|c| c.data.image_size, 64),
                cnn,
                embed: get(|c| c.model.embed_size, 128),
                hidden: get(|c| c.model.hidden_size, 256),
                batch: get(|c| c.run.batch_size, 32),
                captions_per_image: match get(|c| c.run.captions_per_image, 5) {
                    0 => 5, // all of a shapes image's 5 captions
                    n => n.min(5),
                },
                max_len: get(|c| c.data.max_caption_len, 16),
                sweep: vec![8, 16, 32, 64],
                warmup: 2,
                runs: 8,
                sweep_runs: 4,
            }
        }
    }
}

/// `configs/shapes.toml`, the default experiment the training benchmark measures.
const DEFAULT_CONFIG: &str = include_str!("../../configs/shapes.toml");

/// A synthetic batch: random pixels, and captions drawn from the `shapes` grammar.
struct TrainBatch {
    images: Tensor<4>,
    rows: Tensor<1, Int>,
    inputs: Tensor<2, Int>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
}

pub(super) fn shapes_vocab_and_captions(n: usize, max_len: usize) -> (Vocabulary, Vec<Vec<usize>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let tokens: Vec<Vec<String>> = (0..n)
        .map(|_| tokenize(&shapes::random_caption(&mut rng)))
        .collect();
    let vocab = Vocabulary::build(tokens.iter().map(|c| c.as_slice()), 5, true);
    let ids = tokens
        .iter()
        .map(|t| {
            let mut ids = vocab.encode(t);
            ids.truncate(max_len);
            ids
        })
        .collect();
    (vocab, ids)
}

fn train_batch(
    sizes: &TrainSizes,
    batch: usize,
    pool: &[Vec<usize>],
    device: &Device,
) -> TrainBatch {
    let n = batch * sizes.captions_per_image;
    let caps: Vec<&[usize]> = (0..n).map(|i| pool[i % pool.len()].as_slice()).collect();
    let rows: Vec<i64> = (0..n)
        .map(|i| (i / sizes.captions_per_image) as i64)
        .collect();
    let (inputs, targets, mask, steps) = arrange_tokens(&caps);
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, steps]), device);
    TrainBatch {
        images: Tensor::random(
            [batch, 3, sizes.image, sizes.image],
            Distribution::Normal(0.0, 1.0),
            device,
        ),
        rows: Tensor::from_data(TensorData::new(rows, [n]), device),
        inputs: ints(inputs),
        targets: ints(targets),
        mask: Tensor::from_data(TensorData::new(mask, [n, steps]), device),
    }
}

/// Training images/s at one batch size: forward, backward and an Adam step per run.
fn train_throughput(
    device: &Device,
    config: &CaptionerConfig,
    sizes: &TrainSizes,
    batch: usize,
    pool: &[Vec<usize>],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>> {
    let device = device.clone().autodiff();
    device.seed(1);
    let mut model = Some(config.init(&device));
    let mut optim = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(5.0)))
        .init();
    let data = train_batch(sizes, batch, pool, &device);
    let secs = time_runs(warmup, runs, || {
        let m = model
            .take()
            .ok_or_else(|| Error::Invalid("model lost".into()))?;
        let features = m
            .encode(data.images.clone())
            .ok_or_else(|| Error::Invalid("the shapes model has a CNN".into()))?
            .select(0, data.rows.clone());
        let loss = m.loss(
            features,
            data.inputs.clone(),
            data.targets.clone(),
            data.mask.clone(),
        );
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let m = optim.step(2e-3, m, grads);
        model = Some(m);
        Ok(())
    })?;
    Ok(secs.iter().map(|s| batch as f64 / s).collect())
}

fn bench_train(opts: &BenchOptions, cores: usize) -> Result<Table> {
    reset_peak_rss();
    let sizes = TrainSizes::new(opts.quick);
    let (vocab, pool) = shapes_vocab_and_captions(2000, sizes.max_len);
    let mean_len = pool.iter().map(Vec::len).sum::<usize>() as f64 / pool.len() as f64;
    let config = CaptionerConfig::new(EncoderConfig::SmallCnn(sizes.cnn.clone()), vocab.len())
        .with_embed_size(sizes.embed)
        .with_hidden_size(sizes.hidden)
        .with_dropout(0.2);
    tracing::info!("bench train: batch {}", sizes.batch);
    let main = train_throughput(
        &opts.device(),
        &config,
        &sizes,
        sizes.batch,
        &pool,
        sizes.warmup,
        sizes.runs,
    )?;

    // greedy captioning with the same model: CNN + decoder, one batch
    let device = opts.device();
    let model = config.init(&device);
    // the decoder path capsearch uses on this device: the fast path on the CPU, burn's ops elsewhere
    let fast = (device == Device::flex())
        .then(|| FastDecoder::new(&model))
        .transpose()?;
    let images = Tensor::<4>::random(
        [sizes.batch, 3, sizes.image, sizes.image],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let caption_secs = time_runs(sizes.warmup, sizes.runs, || {
        let features = model
            .encode(images.clone())
            .ok_or_else(|| Error::Invalid("the shapes model has a CNN".into()))?;
        decode_with(fast.as_ref(), &model, features, DecodeOptions::default())?;
        Ok(())
    })?;
    let caption_ips: Vec<f64> = caption_secs
        .iter()
        .map(|s| sizes.batch as f64 / s)
        .collect();

    let mut sweep = Vec::new();
    for &b in &sizes.sweep {
        tracing::info!("bench train: sweep batch {b}");
        let ips = train_throughput(
            &opts.device(),
            &config,
            &sizes,
            b,
            &pool,
            1,
            sizes.sweep_runs,
        )?;
        let row = Row::from_samples(&format!("training, batch {b}"), "img/s", true, &ips);
        sweep.push(row);
    }

    let torch = run_baseline(
        opts,
        "pytorch_reference.py",
        PYTORCH_SCRIPT,
        vec![
            format!("--image={}", sizes.image),
            format!("--width={}", sizes.cnn.width),
            format!("--depth={}", sizes.cnn.depth),
            format!("--grid={}", sizes.cnn.grid),
            format!("--embed={}", sizes.embed),
            format!("--hidden={}", sizes.hidden),
            format!("--vocab={}", vocab.len()),
            format!("--batch={}", sizes.batch),
            format!("--captions={}", sizes.captions_per_image),
            format!("--seq={}", sizes.max_len),
            format!("--warmup={}", sizes.warmup),
            format!("--runs={}", sizes.runs),
            format!("--threads={cores}"),
            format!(
                "--sweep={}",
                sizes
                    .sweep
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            format!("--sweep-runs={}", sizes.sweep_runs),
        ],
    );
    let torch_train = baseline_samples(&torch, "train_images_per_s", |v| v);
    let torch_caption = baseline_samples(&torch, "greedy_images_per_s", |v| v);

    let mut rows = vec![
        with_baseline(
            Row::from_samples(
                &format!(
                    "training, batch {} × {} captions",
                    sizes.batch, sizes.captions_per_image
                ),
                "img/s",
                true,
                &main,
            ),
            TORCH,
            &torch_train,
        ),
        with_baseline(
            Row::from_samples(
                &format!("greedy captioning, batch {}", sizes.batch),
                "img/s",
                true,
                &caption_ips,
            ),
            TORCH,
            &torch_caption,
        ),
    ];
    let mut torch_sweep = Vec::new();
    for row in sweep {
        let b: usize = row
            .name
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let s = baseline_samples(&torch, &format!("sweep_{b}"), |v| v);
        if let Ok(v) = &s {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            torch_sweep.push((b as f64, super::median(&v)));
        }
        rows.push(with_baseline(row, TORCH, &s));
    }

    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let weights = dir.path().join("shapes.bpk");
    save_weights(model.clone(), &weights)?;
    rows.push(single(
        "model file (shapes, f32)",
        "MiB",
        false,
        file_mib(&weights)?,
    ));

    let mut series = vec![(
        "capsearch".to_string(),
        rows.iter()
            .filter(|r| r.name.starts_with("training, batch ") && !r.name.contains('×'))
            .filter_map(|r| {
                r.name
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|b| (b, r.median))
            })
            .collect::<Vec<_>>(),
    )];
    if !torch_sweep.is_empty() {
        series.push(("PyTorch (CPU)".into(), torch_sweep));
    }
    let plot = "bench_train_batch.png";
    draw_sweep(
        &opts.out.join(plot),
        "Training throughput against batch size (shapes model)",
        "images/s",
        &series,
    )?;
    let mut notes = vec![
        "Synthetic batches: random pixels, captions drawn from the shapes grammar; one run = forward, backward and an Adam step (gradient clipping 5).".into(),
    ];
    if let Some(v) = torch
        .as_ref()
        .ok()
        .and_then(|v| v.get("torch"))
        .and_then(Value::as_str)
    {
        notes.push(format!("PyTorch {v}, {cores} threads."));
    }
    Ok(Table {
        name: "train".into(),
        title: "training throughput on the shapes model".into(),
        setup: vec![
            format!(
                "{}×{} images, small CNN width {} depth {} grid {}, embed {}, hidden {}, vocabulary {}",
                sizes.image,
                sizes.image,
                sizes.cnn.width,
                sizes.cnn.depth,
                sizes.cnn.grid,
                sizes.embed,
                sizes.hidden,
                vocab.len()
            ),
            format!(
                "batch {} images × {} captions, captions ≤ {} words (mean {mean_len:.1}); warm-up {}, runs {}",
                sizes.batch, sizes.captions_per_image, sizes.max_len, sizes.warmup, sizes.runs
            ),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![plot.into()],
        notes,
    })
}

// ---------------------------------------------------------------- caption

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

fn bench_caption(opts: &BenchOptions) -> Result<Table> {
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
    let fast = FastDecoder::new(&model)?;
    let features = |b: usize| -> Vec<f32> {
        let t = Tensor::<2>::random([b, s.feature], Distribution::Uniform(0.0, 1.0), &device);
        t.into_data().try_into_vec::<f32>().unwrap_or_default()
    };
    let one = features(1);
    let one_tensor =
        || Tensor::<2>::from_data(TensorData::new(one.clone(), [1, s.feature]), &device);
    // `burn`: the model's own ops (the path before the fast path, and the one a GPU runs).
    let decode_ms = |beam: usize, warmup: usize, runs: usize, burn: bool| -> Result<Vec<f64>> {
        let opts = DecodeOptions {
            beam_size: beam,
            max_steps: 20,
        };
        let secs = time_runs(warmup, runs, || {
            if burn {
                decode(&model, one_tensor(), opts);
            } else {
                fast.decode(&one, opts)?;
            }
            Ok(())
        })?;
        Ok(secs.iter().map(|t| t * 1e3).collect())
    };
    tracing::info!("bench caption: greedy");
    let greedy = decode_ms(1, 2, s.greedy_runs, false)?;
    let greedy_burn = decode_ms(1, 2, s.greedy_runs, true)?;
    tracing::info!("bench caption: beam 5");
    let beam = decode_ms(5, 1, s.beam_runs, false)?;
    let beam_burn = decode_ms(5, 1, s.beam_runs, true)?;
    let mut batch_rows = Vec::new();
    let mut burn_series = Vec::new();
    for &b in &s.batches {
        tracing::info!("bench caption: batch {b}");
        let f = features(b);
        let secs = time_runs(1, s.batch_runs, || {
            fast.decode(&f, DecodeOptions::default())?;
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
        let ft = Tensor::<2>::from_data(TensorData::new(f.clone(), [b, s.feature]), &device);
        let secs = time_runs(1, s.batch_runs, || {
            decode(&model, ft.clone(), DecodeOptions::default());
            Ok(())
        })?;
        let mut ips: Vec<f64> = secs.iter().map(|t| b as f64 / t).collect();
        ips.sort_by(f64::total_cmp);
        burn_series.push((b as f64, super::median(&ips)));
    }

    let numpy = run_baseline(
        opts,
        "neuraltalk_reference.py",
        NEURALTALK_SCRIPT,
        vec![
            format!("--feature={}", s.feature),
            format!("--embed={}", s.embed),
            format!("--hidden={}", s.hidden),
            format!("--vocab={}", s.vocab),
            format!("--greedy-runs={}", s.greedy_runs),
            format!("--beam-runs={}", s.beam_runs.min(3)),
        ],
    );
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
        let m = super::median(&v);
        series.push((
            "numpy NeuralTalk (one image at a time)".into(),
            s.batches.iter().map(|&b| (b as f64, m)).collect(),
        ));
    }

    tracing::info!("bench caption: VGG-16");
    let vgg = s.vgg.init(&device);
    let image = Tensor::<4>::random(
        [1, 3, s.vgg_image, s.vgg_image],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let vgg_secs = time_runs(1, s.vgg_runs, || {
        let _ = vgg.forward(image.clone()).into_data();
        Ok(())
    })?;
    let vgg_ms: Vec<f64> = vgg_secs.iter().map(|t| t * 1e3).collect();
    rows.push(Row::from_samples(
        &format!("VGG-16 forward, one {0}×{0} image", s.vgg_image),
        "ms",
        false,
        &vgg_ms,
    ));
    let vgg_mib = vgg.num_params() as f64 * 4.0 / 1048576.0;
    drop(vgg);

    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let weights = dir.path().join("neuraltalk.bpk");
    save_weights(model.clone(), &weights)?;
    rows.push(single(
        "model file (decoder, f32)",
        "MiB",
        false,
        file_mib(&weights)?,
    ));
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
                "greedy: warm-up 2, {} runs; beam 5: warm-up 1, {} runs; batches {:?}: {} runs",
                s.greedy_runs, s.beam_runs, s.batches, s.batch_runs
            ),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![plot.into()],
        notes,
    })
}

// ---------------------------------------------------------------- search

fn bench_search(opts: &BenchOptions) -> Result<Table> {
    reset_peak_rss();
    let docs = if opts.quick {
        opts.search_docs.min(2000)
    } else {
        opts.search_docs
    };
    let queries = if opts.quick { 50 } else { 1000 };
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let backend = EmbeddedBackend::new(dir.path().join("index"));
    tracing::info!("bench search: {docs} documents");
    let progress = if opts.quick {
        indicatif::ProgressBar::hidden()
    } else {
        crate::search::progress_bar(Some(docs), "docs")
    };
    let f = search_figures(&backend, docs, queries, 10_000, &shapes_caption, &progress)?;
    progress.finish_and_clear();
    let mut query = single("query latency (size 10)", "ms", false, f.query_p50_ms);
    query.high = f.query_p99_ms;
    query.spread = "p50–p99".into();
    query.runs = f.queries;
    let mut rows = vec![single("indexing", "docs/s", true, f.docs_per_second), query];
    if let Some(size) = f.size_bytes {
        rows.push(single(
            "index size on disk",
            "MiB",
            false,
            size as f64 / 1048576.0,
        ));
    }
    Ok(Table {
        name: "search".into(),
        title: format!("embedded backend, {docs} documents"),
        setup: vec![
            format!("{docs} synthetic shapes captions indexed in batches of 10,000, then {queries} unseen captions as queries"),
            format!("mean hits per query: {:.1}", f.mean_hits),
        ],
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![],
        notes: vec!["No baseline: Elasticsearch needs a server (see `search::bench` for its measuring test).".into()],
    })
}
