//! Evaluation reports: what `capsearch eval` writes into `reports/NAME/`.
//!
//! From an [`EvalRun`] (plain data: metrics, decode settings, dataset and checkpoint identity, and
//! per-image captions with their scores), [`write_report`] writes:
//! - `eval.json`: everything in the run, plus what each metric's scale and convention are;
//! - `eval.md`: the metric table a person reads first, then the best and the worst captions beside
//!   their references;
//! - `results.json`: the captions in COCO results format, `[{"image_id", "caption"}]`;
//! - `loss.png`, `perplexity.png`, `bleu4.png`: training curves from the run's `metrics.csv`, when given;
//! - `index.html`: one self-contained page (inline CSS, plots and thumbnails as data URIs) with the
//!   metric table, the curves, and a grid of test images with generated and reference captions.
//!
//! [`compare`] reads two reports back and sets their metrics side by side.

mod compare;
mod html;
mod markdown;
mod record;

#[cfg(test)]
mod tests;

pub use compare::{Comparison, compare};
pub use html::{html, html_escape};
pub use markdown::{markdown, metric_table_md, metric_table_text, object_table_md};
pub use record::{
    Baseline, CaptionedImage, CheckpointIdentity, DatasetIdentity, DecodeSettings, EvalRun,
    ImageId, ImageResult, OBJECTS_NOTE, ObjectRow, ResultEntry, object_rows, results, score_images,
    share_text,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plot;
use crate::error::{Error, Result};
use crate::util::write_atomic;
use html::thumbnails;

/// Version tag of `eval.json`.
pub const EVAL_FORMAT: &str = "capsearch-eval/1";

/// NeuralTalk's published Flickr8k BLEU-1..4 (`flickr8k_cnn_lstm_v1`, multi-bleu.perl, ×100).
pub const NEURALTALK_FLICKR8K: [f64; 4] = [57.2, 38.6, 25.4, 16.8];

/// Options of [`write_report`].
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The training run's `metrics.csv`, for the curves. Missing file: no curves.
    pub metrics_csv: Option<PathBuf>,
    /// How many best and worst captions to list.
    pub ranked: usize,
    /// How many images (in dataset order) the HTML grid shows, besides the best and worst.
    pub grid_images: usize,
    /// Longest side of the HTML thumbnails, in pixels.
    pub thumbnail_px: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            metrics_csv: None,
            ranked: 10,
            grid_images: 48,
            thumbnail_px: 224,
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenReport {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// The `eval.json` document: the run plus what each number means.
#[derive(Serialize)]
struct EvalJson<'a> {
    format: &'static str,
    capsearch_version: &'static str,
    /// Metric key → "scale; convention".
    metric_notes: BTreeMap<&'static str, String>,
    #[serde(flatten)]
    run: &'a EvalRun,
}

#[derive(Deserialize)]
struct EvalJsonIn {
    format: Option<String>,
    #[serde(flatten)]
    run: EvalRun,
}

fn metric_notes(run: &EvalRun) -> BTreeMap<&'static str, String> {
    let scores = &run.metrics;
    let mut notes: BTreeMap<&'static str, String> = scores
        .rows()
        .into_iter()
        .map(|r| (r.key, format!("{}; {}", r.scale, r.convention)))
        .collect();
    notes.insert("perplexity", PERPLEXITY_NOTE.to_string());
    if run.objects.is_some() {
        notes.insert("objects", format!("0–1, higher is better; {OBJECTS_NOTE}"));
    }
    notes
}

const PERPLEXITY_NOTE: &str =
    "≥ 1, lower is better; per-word perplexity of the reference captions, teacher-forced";

fn to_json<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Report {
        path: path.to_path_buf(),
        message: format!("serialising failed: {e}"),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes every report file into `dir` (created if needed) and returns their paths.
pub fn write_report(run: &EvalRun, dir: &Path, opts: &ReportOptions) -> Result<WrittenReport> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        files.push(path);
        Ok(())
    };

    let eval_json = EvalJson {
        format: EVAL_FORMAT,
        capsearch_version: env!("CARGO_PKG_VERSION"),
        metric_notes: metric_notes(run),
        run,
    };
    put("eval.json", &to_json(&eval_json, &dir.join("eval.json"))?)?;
    put(
        "results.json",
        &to_json(&results(run), &dir.join("results.json"))?,
    )?;

    let curves = match &opts.metrics_csv {
        Some(csv) if csv.is_file() => plot::render_curves(&plot::read_metrics_csv(csv)?)?,
        Some(csv) => {
            tracing::warn!(path = %csv.display(), "no metrics.csv: the report has no training curves");
            Vec::new()
        }
        None => Vec::new(),
    };
    for c in &curves {
        put(c.file_name, &c.png)?;
    }
    put("eval.md", markdown(run, &curves, opts.ranked).as_bytes())?;

    let thumbnails = thumbnails(run, opts);
    put(
        "index.html",
        html(run, &curves, &thumbnails, opts).as_bytes(),
    )?;
    Ok(WrittenReport {
        dir: dir.to_path_buf(),
        files,
    })
}

/// Reads `eval.json` back, from a report folder or the file itself.
pub fn read_eval_json(path: &Path) -> Result<EvalRun> {
    let file = if path.is_dir() {
        path.join("eval.json")
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(Error::Report {
            path: file,
            message: format!(
                "no eval.json there: give a report folder written by `capsearch eval` (or its eval.json); {} {}",
                path.display(),
                if path.exists() {
                    "has none"
                } else {
                    "does not exist"
                }
            ),
        });
    }
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let doc: EvalJsonIn = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            &file,
            Some(format!("line {}, column {}", e.line(), e.column())),
            format!("not a capsearch eval.json: {e}"),
        )
    })?;
    if let Some(f) = doc.format.as_deref()
        && f != EVAL_FORMAT
    {
        return Err(Error::parse(
            &file,
            None,
            format!(
                "format {f:?} is not {EVAL_FORMAT:?}; it was written by another capsearch version"
            ),
        ));
    }
    Ok(doc.run)
}

/// Indices of the images ordered best first: per-image CIDEr-D, then BLEU-4, then dataset order.
fn ranking(run: &EvalRun) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..run.images.len()).collect();
    idx.sort_by(|&a, &b| {
        let (sa, sb) = (&run.images[a].scores, &run.images[b].scores);
        sb.cider
            .total_cmp(&sa.cider)
            .then(sb.bleu[3].total_cmp(&sa.bleu[3]))
            .then(a.cmp(&b))
    });
    idx
}

fn best_and_worst(run: &EvalRun, n: usize) -> (Vec<usize>, Vec<usize>) {
    let order = ranking(run);
    let best = order.iter().take(n).copied().collect();
    let worst = order.iter().rev().take(n).copied().collect();
    (best, worst)
}

fn title(run: &EvalRun) -> String {
    let epoch = run
        .checkpoint
        .epoch
        .map(|e| format!(", epoch {e}"))
        .unwrap_or_default();
    let dataset = run
        .dataset
        .path
        .file_stem()
        .or_else(|| run.dataset.path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.dataset.path.display().to_string());
    format!(
        "{}{} on {} ({} split)",
        run.checkpoint.config, epoch, dataset, run.dataset.split
    )
}

fn decode_text(d: &DecodeSettings) -> String {
    let how = if d.beam_size <= 1 {
        "greedy decoding".to_string()
    } else {
        format!("beam search, beam size {}", d.beam_size)
    };
    match d.concept_weight {
        Some(w) => format!(
            "{how}, at most {} words, concept-guided (λ = {w})",
            d.max_len
        ),
        None => format!("{how}, at most {} words", d.max_len),
    }
}
