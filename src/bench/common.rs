//! What the benchmarks share: running a baseline and attaching it to a row, one-value rows, the
//! size of a saved model, and a `shapes` caption pool.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::baseline::{self, BaselineResult};
use super::{BenchOptions, Row};
use crate::data::shapes;
use crate::data::text::{Vocabulary, tokenize};
use crate::error::{Error, Result};
use crate::model::Captioner;
use crate::model::artifact::save_weights;

/// Runs a baseline script, unless `--no-baselines` says not to.
pub(super) fn run_baseline(
    opts: &BenchOptions,
    file: &str,
    script: &str,
    modules: &[(&str, &str)],
    args: Vec<String>,
) -> BaselineResult {
    if opts.no_baselines {
        return Err("--no-baselines".into());
    }
    baseline::run_script(&opts.python, file, script, modules, &args)
}

/// The baseline's samples under `key`, each passed through `scale`.
pub(super) fn baseline_samples(
    result: &BaselineResult,
    key: &str,
    scale: impl Fn(f64) -> f64,
) -> std::result::Result<Vec<f64>, String> {
    baseline::samples(result, key).map(|v| v.into_iter().map(scale).collect())
}

pub(super) fn with_baseline(
    row: Row,
    name: &str,
    samples: &std::result::Result<Vec<f64>, String>,
) -> Row {
    match samples {
        Ok(s) => row.with_baseline(name, Ok(s)),
        Err(why) => row.with_baseline(name, Err(why)),
    }
}

/// One value measured once (sizes, single long runs).
pub(super) fn single(name: &str, unit: &str, higher_is_better: bool, value: f64) -> Row {
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

/// The size of `model`'s weights file (written as `file_name` in a temporary folder), as a row.
pub(super) fn weights_file_row(model: &Captioner, file_name: &str, name: &str) -> Result<Row> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let weights = dir.path().join(file_name);
    save_weights(model.clone(), &weights)?;
    Ok(single(name, "MiB", false, file_mib(&weights)?))
}

/// A vocabulary and `n` token-id captions (at most `max_len` words) drawn from the `shapes`
/// grammar with a fixed seed.
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

/// This machine's memory bandwidth in GB/s: copying a 256 MiB buffer (far beyond the caches), best
/// of `runs`, counting the bytes read and the bytes written as STREAM's copy does.
pub(super) fn memory_bandwidth_gbs(runs: usize) -> f64 {
    const BYTES: usize = 256 << 20;
    let src = vec![1.0f32; BYTES / 4];
    let mut dst = vec![0.0f32; BYTES / 4];
    dst.copy_from_slice(&src); // fault the pages in
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * BYTES as f64 / best / 1e9
}
