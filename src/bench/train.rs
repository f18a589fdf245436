//! The training benchmark: images/s of the `shapes` model (forward, backward, Adam step) at its
//! batch size and over a batch-size sweep, greedy captioning with the same model, and PyTorch's
//! figures for the same model.

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::Value;

use super::baseline::{BaselineResult, merge_rounds};
use super::common::{
    baseline_samples, run_baseline, shapes_vocab_and_captions, weights_file_row, with_baseline,
};
use super::plot::draw_sweep;
use super::{
    BenchOptions, PYTORCH_SCRIPT, Row, Table, median, peak_rss_bytes, reset_peak_rss, time_runs,
};
use crate::data::batch::arrange_tokens;
use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::encoder::SmallCnnConfig;
use crate::model::fast_cnn::FastCnn;
use crate::model::fast_decode::{FastDecoder, decode_with};
use crate::model::guide::Guidance;
use crate::model::{Captioner, CaptionerConfig, EncoderConfig};
use crate::train::config::{TrainConfig, TrainEncoder};
use crate::train::memory::keep_freed_memory;
use crate::util::on_pool;

const TORCH: &str = "PyTorch (CPU)";

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
    /// Rounds of the whole measurement, capsearch's and PyTorch's in turn: the VM's speed drifts
    /// over seconds, so each side gets samples from every stretch of the run.
    rounds: usize,
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
                rounds: 1,
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
                sweep_runs: 6,
                rounds: 3,
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
    keep_freed_memory(); // as `capsearch train` does
    let device = device.clone().autodiff();
    device.seed(1);
    let mut model = Some(config.init(&device));
    let mut optim = AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(5.0)))
        .init();
    let data = train_batch(sizes, batch, pool, &device);
    // on a rayon worker, as `capsearch train` runs its steps
    let secs = time_runs(warmup, runs, || {
        on_pool(|| -> Result<()> {
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
        })
    })?;
    Ok(secs.iter().map(|s| batch as f64 / s).collect())
}

pub(super) fn bench_train(opts: &BenchOptions, cores: usize) -> Result<Table> {
    reset_peak_rss();
    let sizes = TrainSizes::new(opts.quick);
    let (vocab, pool) = shapes_vocab_and_captions(2000, sizes.max_len);
    let mean_len = pool.iter().map(Vec::len).sum::<usize>() as f64 / pool.len() as f64;
    let config = train_config(&sizes, vocab.len());
    let mut main = Vec::new();
    let mut caption_ips = Vec::new();
    let mut sweep: Vec<Vec<f64>> = vec![Vec::new(); sizes.sweep.len()];
    let mut torch_rounds = Vec::new();
    let mut model = None;
    for round in 1..=sizes.rounds {
        tracing::info!(
            "bench train: round {round}/{}, batch {}",
            sizes.rounds,
            sizes.batch
        );
        main.extend(train_throughput(
            &opts.device(),
            &config,
            &sizes,
            sizes.batch,
            &pool,
            sizes.warmup,
            sizes.runs,
        )?);
        let (m, ips) = greedy_captioning(opts, &config, &sizes)?;
        caption_ips.extend(ips);
        model = Some(m);
        for (samples, ips) in sweep
            .iter_mut()
            .zip(batch_sweep(opts, &config, &sizes, &pool)?)
        {
            samples.extend(ips);
        }
        torch_rounds.push(torch_baseline(opts, &sizes, vocab.len(), cores));
    }
    let model = model.ok_or_else(|| Error::Invalid("bench train ran no round".into()))?;
    let round_ratios = round_ratios(&sizes, &main, &sweep, &torch_rounds);
    let torch = merge_rounds(torch_rounds);
    let sweep = sizes
        .sweep
        .iter()
        .zip(&sweep)
        .map(|(b, ips)| Row::from_samples(&format!("training, batch {b}"), "img/s", true, ips))
        .collect();

    let (mut rows, torch_sweep) = train_rows(&sizes, &main, &caption_ips, sweep, &torch);
    rows.push(weights_file_row(
        &model,
        "shapes.bpk",
        "model file (shapes, f32)",
    )?);
    let plot = "bench_train_batch.png";
    draw_sweep(
        &opts.out.join(plot),
        "Training throughput against batch size (shapes model)",
        "images/s",
        &sweep_series(&rows, torch_sweep),
    )?;
    Ok(Table {
        name: "train".into(),
        title: "training throughput on the shapes model".into(),
        setup: train_setup(&sizes, vocab.len(), mean_len),
        rows,
        counts: vec![],
        peak_rss_bytes: peak_rss_bytes(),
        plots: vec![plot.into()],
        notes: train_notes(&torch, cores, &round_ratios),
    })
}

/// The benchmark's model: the default experiment's sizes, with `vocab` words.
fn train_config(sizes: &TrainSizes, vocab: usize) -> CaptionerConfig {
    CaptionerConfig::new(EncoderConfig::SmallCnn(sizes.cnn.clone()), vocab)
        .with_embed_size(sizes.embed)
        .with_hidden_size(sizes.hidden)
        .with_dropout(0.2)
}

/// Seconds per training step (forward, backward, Adam) of the benchmark's model at `batch` images,
/// for `steps` steps after two warm-up steps, and nothing else: what `bench/profile-train.sh`
/// runs under `perf`.
pub fn train_step_seconds(opts: &BenchOptions, batch: usize, steps: usize) -> Result<Vec<f64>> {
    let sizes = TrainSizes::new(opts.quick);
    let (vocab, pool) = shapes_vocab_and_captions(2000, sizes.max_len);
    let config = train_config(&sizes, vocab.len());
    let ips = train_throughput(&opts.device(), &config, &sizes, batch, &pool, 2, steps)?;
    Ok(ips.iter().map(|r| batch as f64 / r).collect())
}

/// Greedy captioning images/s with the same model (CNN and decoder, one batch), on the paths
/// capsearch's inference uses on this device: the CNN's and the decoder's fast paths on the CPU
/// (as `CaptionEngine` runs them), burn's ops elsewhere.
fn greedy_captioning(
    opts: &BenchOptions,
    config: &CaptionerConfig,
    sizes: &TrainSizes,
) -> Result<(Captioner, Vec<f64>)> {
    let device = opts.device();
    let model = config.init(&device);
    let fast = (device == Device::flex())
        .then(|| FastDecoder::new(&model))
        .transpose()?;
    let fast_cnn = match (&fast, &model.cnn) {
        (Some(_), Some(cnn)) => FastCnn::new(cnn)?,
        _ => None,
    };
    let images = Tensor::<4>::random(
        [sizes.batch, 3, sizes.image, sizes.image],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    // the pixels as the engine hands them to the fast CNN (PyTorch's side starts from its tensor)
    let pixels = images
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|error| Error::Backend {
            what: "the benchmark's images".into(),
            error,
        })?;
    let caption_secs = time_runs(sizes.warmup, sizes.runs, || {
        if let (Some(cnn), Some(fast)) = (&fast_cnn, &fast) {
            let features = cnn.forward(&pixels, sizes.image, sizes.image)?;
            fast.decode(&features, DecodeOptions::default())?;
            return Ok(());
        }
        let features = model
            .encode(images.clone())
            .ok_or_else(|| Error::Invalid("the shapes model has a CNN".into()))?;
        decode_with(
            fast.as_ref(),
            &model,
            features,
            DecodeOptions::default(),
            Guidance::default(),
        )?;
        Ok(())
    })?;
    let caption_ips = caption_secs
        .iter()
        .map(|s| sizes.batch as f64 / s)
        .collect();
    Ok((model, caption_ips))
}

/// Training images/s at each batch size of the sweep, in the sweep's order.
fn batch_sweep(
    opts: &BenchOptions,
    config: &CaptionerConfig,
    sizes: &TrainSizes,
    pool: &[Vec<usize>],
) -> Result<Vec<Vec<f64>>> {
    let mut sweep = Vec::new();
    for &b in &sizes.sweep {
        tracing::info!("bench train: sweep batch {b}");
        sweep.push(train_throughput(
            &opts.device(),
            config,
            sizes,
            b,
            pool,
            1,
            sizes.sweep_runs,
        )?);
    }
    Ok(sweep)
}

/// Each training figure's ratio to PyTorch, round by round (the median of the round's samples on
/// each side), as `(figure, ratios)`: how far the same comparison moves within one run.
fn round_ratios(
    sizes: &TrainSizes,
    main: &[f64],
    sweep: &[Vec<f64>],
    torch_rounds: &[BaselineResult],
) -> Vec<(String, Vec<f64>)> {
    let median_of = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    let mut figures = vec![(
        format!("batch {} × {}", sizes.batch, sizes.captions_per_image),
        "train_images_per_s".to_string(),
        main,
    )];
    for (b, ips) in sizes.sweep.iter().zip(sweep) {
        figures.push((format!("batch {b}"), format!("sweep_{b}"), ips));
    }
    figures
        .into_iter()
        .filter_map(|(name, key, ours)| {
            let per_round = ours.len() / torch_rounds.len().max(1);
            let ratios: Vec<f64> = torch_rounds
                .iter()
                .zip(ours.chunks(per_round.max(1)))
                .filter_map(|(torch, ours)| {
                    let theirs = baseline_samples(torch, &key, |v| v).ok()?;
                    let theirs = median_of(&theirs);
                    (theirs > 0.0).then(|| median_of(ours) / theirs)
                })
                .collect();
            (!ratios.is_empty()).then_some((name, ratios))
        })
        .collect()
}

/// The same model, batch and sweep in PyTorch.
fn torch_baseline(
    opts: &BenchOptions,
    sizes: &TrainSizes,
    vocab: usize,
    cores: usize,
) -> BaselineResult {
    run_baseline(
        opts,
        "pytorch_reference.py",
        PYTORCH_SCRIPT,
        &[],
        vec![
            format!("--image={}", sizes.image),
            format!("--width={}", sizes.cnn.width),
            format!("--depth={}", sizes.cnn.depth),
            format!("--grid={}", sizes.cnn.grid),
            format!("--embed={}", sizes.embed),
            format!("--hidden={}", sizes.hidden),
            format!("--vocab={vocab}"),
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
    )
}

/// The rows, each with PyTorch's figure beside it, and PyTorch's sweep as (batch, median img/s).
fn train_rows(
    sizes: &TrainSizes,
    main: &[f64],
    caption_ips: &[f64],
    sweep: Vec<Row>,
    torch: &BaselineResult,
) -> (Vec<Row>, Vec<(f64, f64)>) {
    let torch_train = baseline_samples(torch, "train_images_per_s", |v| v);
    let torch_caption = baseline_samples(torch, "greedy_images_per_s", |v| v);
    let mut rows = vec![
        with_baseline(
            Row::from_samples(
                &format!(
                    "training, batch {} × {} captions",
                    sizes.batch, sizes.captions_per_image
                ),
                "img/s",
                true,
                main,
            ),
            TORCH,
            &torch_train,
        ),
        with_baseline(
            Row::from_samples(
                &format!("greedy captioning, batch {}", sizes.batch),
                "img/s",
                true,
                caption_ips,
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
        let s = baseline_samples(torch, &format!("sweep_{b}"), |v| v);
        if let Ok(v) = &s {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            torch_sweep.push((b as f64, median(&v)));
        }
        rows.push(with_baseline(row, TORCH, &s));
    }
    (rows, torch_sweep)
}

/// The plot's series: capsearch's sweep rows, and PyTorch's when it ran.
fn sweep_series(rows: &[Row], torch_sweep: Vec<(f64, f64)>) -> Vec<(String, Vec<(f64, f64)>)> {
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
    series
}

fn train_setup(sizes: &TrainSizes, vocab: usize, mean_len: f64) -> Vec<String> {
    vec![
        format!(
            "{}×{} images, small CNN width {} depth {} grid {}, embed {}, hidden {}, vocabulary {}",
            sizes.image,
            sizes.image,
            sizes.cnn.width,
            sizes.cnn.depth,
            sizes.cnn.grid,
            sizes.embed,
            sizes.hidden,
            vocab
        ),
        format!(
            "batch {} images × {} captions, captions ≤ {} words (mean {mean_len:.1}); warm-up {}, runs {} (sweep {}) in each of {} rounds",
            sizes.batch,
            sizes.captions_per_image,
            sizes.max_len,
            sizes.warmup,
            sizes.runs,
            sizes.sweep_runs,
            sizes.rounds
        ),
    ]
}

fn train_notes(
    torch: &BaselineResult,
    cores: usize,
    round_ratios: &[(String, Vec<f64>)],
) -> Vec<String> {
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
    if round_ratios.iter().any(|(_, r)| r.len() > 1) {
        let each = round_ratios
            .iter()
            .map(|(name, r)| {
                let r: Vec<String> = r.iter().map(|v| format!("{v:.2}")).collect();
                format!("{name}: {}", r.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ");
        notes.push(format!(
            "capsearch and PyTorch ran in turn, round by round; the ratios above pool all rounds' samples. Training ratio to PyTorch in each round: {each}."
        ));
    }
    notes
}
