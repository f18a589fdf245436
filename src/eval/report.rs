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

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::plot::{self, Curve};
use super::{ImageScores, Scores};
use crate::data::Skipped;
use crate::error::{Error, Result};
use crate::util::write_atomic;

/// Version tag of `eval.json`.
pub const EVAL_FORMAT: &str = "capsearch-eval/1";

/// NeuralTalk's published Flickr8k BLEU-1..4 (`flickr8k_cnn_lstm_v1`, multi-bleu.perl, ×100).
pub const NEURALTALK_FLICKR8K: [f64; 4] = [57.2, 38.6, 25.4, 16.8];

/// An image's identity in results files: COCO's integer id, or the image path for other datasets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageId {
    Number(u64),
    Path(String),
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageId::Number(n) => write!(f, "{n}"),
            ImageId::Path(p) => f.write_str(p),
        }
    }
}

/// How captions were decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeSettings {
    /// 1 is greedy decoding.
    pub beam_size: usize,
    /// Most words in a caption.
    pub max_len: usize,
}

/// Which data was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    pub path: PathBuf,
    /// The format it was read as (`flickr8k`, `coco`, ...).
    pub format: String,
    pub split: String,
    /// Number of images scored.
    pub images: usize,
}

/// Which model was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointIdentity {
    pub path: PathBuf,
    /// Name of the training configuration.
    pub config: String,
    pub epoch: Option<usize>,
}

/// One image's generated caption, references and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    pub image_id: ImageId,
    /// Where the image is on disk, for thumbnails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<PathBuf>,
    pub caption: String,
    pub references: Vec<String>,
    /// Per-image scores (coco-caption conventions; CIDEr-D with the test set's document frequencies).
    pub scores: ImageScores,
}

/// Everything an evaluation produced; the content of `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    /// Corpus metrics of the decoded captions.
    pub metrics: Scores,
    /// Per-word perplexity of the reference captions under the model (teacher-forced), if measured.
    pub perplexity: Option<f64>,
    /// Why `perplexity` is absent, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_note: Option<String>,
    pub decode: DecodeSettings,
    pub dataset: DatasetIdentity,
    pub checkpoint: CheckpointIdentity,
    /// Per-image results, in dataset order.
    pub images: Vec<ImageResult>,
    /// Images of the split that could not be read, and why; they count in no score.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The image-blind baseline scored on the same images, when the dataset has training captions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// A caption that ignores the image, given to every evaluated image and scored like the model's
/// captions: what "the model learned something" is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The caption (tokenized and lower-cased, as the metrics see it).
    pub caption: String,
    /// How it was chosen.
    pub source: String,
    /// Its corpus metrics on the evaluated images.
    pub metrics: Scores,
}

impl Baseline {
    /// One sentence comparing the baseline's BLEU-4 and CIDEr-D with the model's.
    pub fn summary(&self, model: &Scores) -> String {
        format!(
            "Image-blind baseline: {} \"{}\", given to every image, scores Bleu_4 {:.4} and CIDEr {:.4}; the model scores {:.4} ({:.2}×) and {:.4} ({:.2}×).",
            self.source,
            self.caption,
            self.metrics.bleu_4,
            self.metrics.cider,
            model.bleu_4,
            ratio(model.bleu_4, self.metrics.bleu_4),
            model.cider,
            ratio(model.cider, self.metrics.cider),
        )
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::INFINITY }
}

/// An image with its generated caption and references, before scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionedImage {
    pub image_id: ImageId,
    pub image_path: Option<PathBuf>,
    pub caption: String,
    pub references: Vec<String>,
}

/// Scores generated captions against their references: corpus metrics and per-image results.
pub fn score_images(images: Vec<CaptionedImage>) -> Result<(Scores, Vec<ImageResult>)> {
    let candidates: Vec<&str> = images.iter().map(|i| i.caption.as_str()).collect();
    let references: Vec<Vec<&str>> = images
        .iter()
        .map(|i| i.references.iter().map(String::as_str).collect())
        .collect();
    let evaluation = super::evaluate(&candidates, &references)?;
    let results = images
        .into_iter()
        .zip(evaluation.per_image)
        .map(|(i, scores)| ImageResult {
            image_id: i.image_id,
            image_path: i.image_path,
            caption: i.caption,
            references: i.references,
            scores,
        })
        .collect();
    Ok((evaluation.scores, results))
}

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

/// A COCO results entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    pub image_id: ImageId,
    pub caption: String,
}

/// The run's captions in COCO results format.
pub fn results(run: &EvalRun) -> Vec<ResultEntry> {
    run.images
        .iter()
        .map(|i| ResultEntry {
            image_id: i.image_id.clone(),
            caption: i.caption.clone(),
        })
        .collect()
}

fn metric_notes(scores: &Scores) -> BTreeMap<&'static str, String> {
    let mut notes: BTreeMap<&'static str, String> = scores
        .rows()
        .into_iter()
        .map(|r| (r.key, format!("{}; {}", r.scale, r.convention)))
        .collect();
    notes.insert("perplexity", PERPLEXITY_NOTE.to_string());
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
        metric_notes: metric_notes(&run.metrics),
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

/// Escapes text for a Markdown table cell.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
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
    format!("{how}, at most {} words", d.max_len)
}

/// The metric table as Markdown.
pub fn metric_table_md(scores: &Scores, perplexity: Option<f64>) -> String {
    let mut s = String::new();
    s.push_str("| Metric | Value | ×100 | Scale | Convention |\n|---|---:|---:|---|---|\n");
    for r in scores.rows() {
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.1} | {} | {} |",
            r.key,
            r.value,
            r.value * 100.0,
            r.scale,
            md_escape(r.convention)
        );
    }
    if let Some(p) = perplexity {
        let _ = writeln!(
            s,
            "| perplexity | {p:.2} | | ≥ 1, lower is better | per-word perplexity of the reference captions (teacher-forced) |"
        );
    }
    s
}

/// The metric table as plain text for a terminal.
pub fn metric_table_text(scores: &Scores, perplexity: Option<f64>) -> String {
    let mut s = format!(
        "{:<18} {:>8} {:>7}  {:<7} {}\n",
        "metric", "value", "×100", "scale", "convention"
    );
    for r in scores.rows() {
        let _ = writeln!(
            s,
            "{:<18} {:>8.4} {:>7.1}  {:<7} {}",
            r.key,
            r.value,
            r.value * 100.0,
            r.scale,
            r.convention
        );
    }
    if let Some(p) = perplexity {
        let _ = writeln!(
            s,
            "{:<18} {:>8.2} {:>7}  {:<7} per-word perplexity of the reference captions (teacher-forced), lower is better",
            "perplexity", p, "", "≥ 1"
        );
    }
    s
}

const READING_NOTES: &str = "Every score above is computed on captions the model decoded on its own (not teacher-forced). \
`Bleu_*`, `CIDEr` and `ROUGE_L` are `pycocoevalcap`'s numbers on its scale (papers print them ×100: `Bleu_4` 0.251 is \"25.1\", `CIDEr` 0.85 is \"85.0\"); \
METEOR and SPICE are not computed. `NeuralTalk_Bleu_*` reproduce NeuralTalk's `multi-bleu.perl`, which has no brevity penalty: \
NeuralTalk's published Flickr8k BLEU-1..4 (`flickr8k_cnn_lstm_v1`) are 57.2 / 38.6 / 25.4 / 16.8 on its ×100 scale.";

fn ranked_table_md(run: &EvalRun, indices: &[usize]) -> String {
    let mut s = String::from(
        "| # | Image | CIDEr | BLEU-4 | Generated | References |\n|---:|---|---:|---:|---|---|\n",
    );
    for (rank, &i) in indices.iter().enumerate() {
        let img = &run.images[i];
        let refs: Vec<String> = img.references.iter().map(|r| md_escape(r)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {} | {} |",
            rank + 1,
            md_escape(&img.image_id.to_string()),
            img.scores.cider,
            img.scores.bleu[3],
            md_escape(&img.caption),
            refs.join("<br>")
        );
    }
    s
}

/// `eval.md`: the metric table first, then curves and the best and worst captions.
pub fn markdown(run: &EvalRun, curves: &[Curve], ranked: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Evaluation: {}\n", md_escape(&title(run)));
    s.push_str(&metric_table_md(&run.metrics, run.perplexity));
    if let (None, Some(note)) = (run.perplexity, &run.perplexity_note) {
        let _ = writeln!(s, "\nPerplexity: {}.", md_escape(note));
    }
    if let Some(b) = &run.baseline {
        let _ = writeln!(s, "\n{}", md_escape(&b.summary(&run.metrics)));
    }
    let _ = writeln!(s, "\n{READING_NOTES}\n");
    let _ = writeln!(
        s,
        "- Checkpoint: `{}` (config {}{})",
        run.checkpoint.path.display(),
        md_escape(&run.checkpoint.config),
        run.checkpoint
            .epoch
            .map(|e| format!(", epoch {e}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- Dataset: `{}` ({} format), split {}, {} images",
        run.dataset.path.display(),
        md_escape(&run.dataset.format),
        md_escape(&run.dataset.split),
        run.dataset.images
    );
    let _ = writeln!(s, "- Decoding: {}", decode_text(&run.decode));
    let _ = writeln!(
        s,
        "- Files: `eval.json` (all numbers), `results.json` (COCO results format), `index.html` (this report with images)\n"
    );
    if !curves.is_empty() {
        s.push_str("## Training curves\n\n");
        for c in curves {
            let _ = writeln!(s, "![{}]({})\n", c.title, c.file_name);
        }
    }
    let (best, worst) = best_and_worst(run, ranked);
    let _ = writeln!(
        s,
        "## Best {} captions\n\nRanked by per-image CIDEr-D (document frequencies from the whole split), then BLEU-4.\n",
        best.len()
    );
    s.push_str(&ranked_table_md(run, &best));
    let _ = writeln!(s, "\n## Worst {} captions\n", worst.len());
    s.push_str(&ranked_table_md(run, &worst));
    if !run.skipped.is_empty() {
        let _ = writeln!(
            s,
            "\n## Skipped images ({})\n\nThese images of the split could not be read; they count in no score.\n\n| Image | Why |\n|---|---|",
            run.skipped.len()
        );
        for k in &run.skipped {
            let _ = writeln!(s, "| {} | {} |", md_escape(&k.entry), md_escape(&k.reason));
        }
    }
    s
}

/// Decodes an image and returns a small JPEG as a data URI; `None` when it cannot be read.
fn thumbnail_data_uri(path: &Path, px: u32) -> Option<String> {
    let reader = match image::ImageReader::open(path).and_then(|r| r.with_guessed_format()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "thumbnail: cannot open image");
            return None;
        }
    };
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(20_000);
    limits.max_image_height = Some(20_000);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = match reader.decode() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "thumbnail: cannot decode image");
            return None;
        }
    };
    // Shrink to fit px × px; never enlarge (the page scales small images itself).
    let thumb = if img.width() > px || img.height() > px {
        img.thumbnail(px, px).to_rgb8()
    } else {
        img.to_rgb8()
    };
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 82);
    if let Err(e) = thumb.write_with_encoder(encoder) {
        tracing::warn!(path = %path.display(), error = %e, "thumbnail: cannot encode");
        return None;
    }
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    ))
}

/// The images the HTML shows: best, worst, and the first `grid_images` in dataset order.
fn shown_images(run: &EvalRun, opts: &ReportOptions) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (best, worst) = best_and_worst(run, opts.ranked);
    let grid: Vec<usize> = (0..run.images.len().min(opts.grid_images)).collect();
    (best, worst, grid)
}

fn thumbnails(run: &EvalRun, opts: &ReportOptions) -> HashMap<usize, String> {
    let (best, worst, grid) = shown_images(run, opts);
    let mut out = HashMap::new();
    for i in best.into_iter().chain(worst).chain(grid) {
        if out.contains_key(&i) {
            continue;
        }
        if let Some(uri) = run.images[i]
            .image_path
            .as_deref()
            .and_then(|p| thumbnail_data_uri(p, opts.thumbnail_px))
        {
            out.insert(i, uri);
        }
    }
    out
}

const CSS: &str = r#"
:root { --fg: #1d1d1f; --muted: #6e6e73; --line: #e3e3e8; --accent: #e67300; --bg: #fafafa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 18px; }
.sub code { color: var(--fg); }
table.metrics { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
table.metrics th, table.metrics td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
table.metrics th { background: #f2f2f5; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
table.metrics td.conv { color: var(--muted); font-size: 13px; }
.note { color: var(--muted); font-size: 13px; max-width: 960px; }
.curves { display: flex; flex-wrap: wrap; gap: 16px; }
.curves img { width: 600px; max-width: 100%; border: 1px solid var(--line); background: #fff; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; display: flex; flex-direction: column; }
.card img, .card .noimg { width: 100%; height: 190px; object-fit: cover; display: block; background: #eee; }
.card .noimg { display: flex; align-items: center; justify-content: center; color: var(--muted); font-size: 13px; }
.card .body { padding: 10px 12px 12px; }
.card .gen { font-weight: 600; margin: 0 0 6px; }
.card .score { display: inline-block; font-size: 12px; color: #fff; background: var(--accent); border-radius: 10px; padding: 1px 8px; margin-bottom: 6px; }
.card .id { font-size: 12px; color: var(--muted); word-break: break-all; margin-bottom: 4px; }
.card ul { margin: 0; padding-left: 18px; color: var(--muted); font-size: 13px; }
ul.skipped { color: var(--muted); font-size: 13px; }
"#;

fn metric_table_html(scores: &Scores, perplexity: Option<f64>) -> String {
    let mut s = String::from(
        "<table class=\"metrics\"><thead><tr><th>Metric</th><th>Value</th><th>×100</th><th>Scale</th><th>Convention</th></tr></thead><tbody>\n",
    );
    for r in scores.rows() {
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td class=\"num\">{:.4}</td><td class=\"num\">{:.1}</td><td>{}</td><td class=\"conv\">{}</td></tr>",
            html_escape(r.key),
            r.value,
            r.value * 100.0,
            html_escape(r.scale),
            html_escape(r.convention)
        );
    }
    if let Some(p) = perplexity {
        let _ = writeln!(
            s,
            "<tr><td><code>perplexity</code></td><td class=\"num\">{p:.2}</td><td></td><td>≥ 1, lower is better</td><td class=\"conv\">per-word perplexity of the reference captions (teacher-forced)</td></tr>"
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn card(run: &EvalRun, i: usize, thumbs: &HashMap<usize, String>) -> String {
    let img = &run.images[i];
    let picture = match thumbs.get(&i) {
        Some(uri) => format!(
            "<img src=\"{}\" alt=\"{}\" loading=\"lazy\">",
            uri,
            html_escape(&img.image_id.to_string())
        ),
        None => "<div class=\"noimg\">image not available</div>".to_string(),
    };
    let refs: String = img
        .references
        .iter()
        .map(|r| format!("<li>{}</li>", html_escape(r)))
        .collect();
    format!(
        "<div class=\"card\">{picture}<div class=\"body\"><div class=\"id\">{}</div><p class=\"gen\">{}</p>\
         <span class=\"score\">CIDEr {:.3} · BLEU-4 {:.3}</span><ul>{refs}</ul></div></div>\n",
        html_escape(&img.image_id.to_string()),
        html_escape(if img.caption.is_empty() {
            "(empty caption)"
        } else {
            &img.caption
        }),
        img.scores.cider,
        img.scores.bleu[3],
    )
}

/// `index.html`: one self-contained page.
pub fn html(
    run: &EvalRun,
    curves: &[Curve],
    thumbs: &HashMap<usize, String>,
    opts: &ReportOptions,
) -> String {
    let (best, worst, grid) = shown_images(run, opts);
    let mut s = String::new();
    let title = title(run);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>capsearch evaluation: {}</title><style>{CSS}</style></head><body><main>\n",
        html_escape(&title)
    );
    let _ = writeln!(s, "<h1>Evaluation: {}</h1>", html_escape(&title));
    let _ = writeln!(
        s,
        "<p class=\"sub\">Checkpoint <code>{}</code> · dataset <code>{}</code> ({} format, {} split, {} images) · {}</p>",
        html_escape(&run.checkpoint.path.display().to_string()),
        html_escape(&run.dataset.path.display().to_string()),
        html_escape(&run.dataset.format),
        html_escape(&run.dataset.split),
        run.dataset.images,
        html_escape(&decode_text(&run.decode))
    );
    s.push_str(&metric_table_html(&run.metrics, run.perplexity));
    if let (None, Some(note)) = (run.perplexity, &run.perplexity_note) {
        let _ = writeln!(
            s,
            "<p class=\"note\">Perplexity: {}.</p>",
            html_escape(note)
        );
    }
    if let Some(b) = &run.baseline {
        let _ = writeln!(
            s,
            "<p class=\"note\">{}</p>",
            html_escape(&b.summary(&run.metrics))
        );
    }
    let notes = html_escape(READING_NOTES).replace('`', "");
    let _ = writeln!(s, "<p class=\"note\">{notes}</p>");
    if !curves.is_empty() {
        s.push_str("<h2>Training curves</h2><div class=\"curves\">\n");
        for c in curves {
            let _ = writeln!(
                s,
                "<img src=\"data:image/png;base64,{}\" alt=\"{}\">",
                base64::engine::general_purpose::STANDARD.encode(&c.png),
                html_escape(&c.title)
            );
        }
        s.push_str("</div>\n");
    }
    let section = |s: &mut String, heading: &str, note: &str, idx: &[usize]| {
        let _ = writeln!(s, "<h2>{}</h2>", html_escape(heading));
        if !note.is_empty() {
            let _ = writeln!(s, "<p class=\"note\">{}</p>", html_escape(note));
        }
        s.push_str("<div class=\"grid\">\n");
        for &i in idx {
            s.push_str(&card(run, i, thumbs));
        }
        s.push_str("</div>\n");
    };
    section(
        &mut s,
        &format!("Best {} captions", best.len()),
        "Ranked by per-image CIDEr-D, then BLEU-4. Generated caption in bold, references below.",
        &best,
    );
    section(
        &mut s,
        &format!("Worst {} captions", worst.len()),
        "",
        &worst,
    );
    section(
        &mut s,
        &format!(
            "Images of the {} split ({} of {}, in dataset order)",
            run.dataset.split,
            grid.len(),
            run.images.len()
        ),
        "",
        &grid,
    );
    if !run.skipped.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Skipped images ({})</h2><p class=\"note\">These images of the split could not be read; they count in no score.</p><ul class=\"skipped\">",
            run.skipped.len()
        );
        for k in &run.skipped {
            let _ = writeln!(
                s,
                "<li><code>{}</code>: {}</li>",
                html_escape(&k.entry),
                html_escape(&k.reason)
            );
        }
        s.push_str("</ul>\n");
    }
    let _ = writeln!(
        s,
        "<p class=\"note\">Written by capsearch {}. All numbers are in eval.json beside this page.</p></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    s
}

/// `value`, or 0 when it prints as zero with `decimals` decimals (so that a difference of -1e-9
/// reads `+0.0000`, not `-0.0000`).
fn no_negative_zero(value: f64, decimals: i32) -> f64 {
    if value.abs() < 0.5 * 10f64.powi(-decimals) {
        0.0
    } else {
        value
    }
}

/// Two reports' metrics side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub a: (PathBuf, EvalRun),
    pub b: (PathBuf, EvalRun),
}

/// Reads two report folders (or `eval.json` files) for side-by-side display.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    Ok(Comparison {
        a: (a.to_path_buf(), read_eval_json(a)?),
        b: (b.to_path_buf(), read_eval_json(b)?),
    })
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pa, a) = (&self.a.0, &self.a.1);
        let (pb, b) = (&self.b.0, &self.b.1);
        writeln!(f, "A: {}  ({})", pa.display(), title(a))?;
        writeln!(f, "B: {}  ({})", pb.display(), title(b))?;
        if a.dataset.path != b.dataset.path
            || a.dataset.split != b.dataset.split
            || a.dataset.images != b.dataset.images
        {
            writeln!(
                f,
                "warning: the reports scored different data ({} {} {} images vs {} {} {} images); CIDEr and BLEU are not comparable across test sets",
                a.dataset.path.display(),
                a.dataset.split,
                a.dataset.images,
                b.dataset.path.display(),
                b.dataset.split,
                b.dataset.images
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<20} {:>10} {:>10} {:>10}  scale",
            "metric", "A", "B", "B - A"
        )?;
        let rows_a = a.metrics.rows();
        let rows_b = b.metrics.rows();
        for (ra, rb) in rows_a.iter().zip(&rows_b) {
            writeln!(
                f,
                "{:<20} {:>10.4} {:>10.4} {:>+10.4}  {}",
                ra.key,
                ra.value,
                rb.value,
                no_negative_zero(rb.value - ra.value, 4),
                ra.scale
            )?;
        }
        match (a.perplexity, b.perplexity) {
            (Some(x), Some(y)) => writeln!(
                f,
                "{:<20} {:>10.2} {:>10.2} {:>+10.2}  lower is better",
                "perplexity",
                x,
                y,
                no_negative_zero(y - x, 2)
            )?,
            (x, y) => writeln!(
                f,
                "{:<20} {:>10} {:>10} {:>10}  lower is better",
                "perplexity",
                x.map_or("-".into(), |v| format!("{v:.2}")),
                y.map_or("-".into(), |v| format!("{v:.2}")),
                "-"
            )?,
        }
        writeln!(
            f,
            "{:<20} {:>10} {:>10}",
            "beam size", a.decode.beam_size, b.decode.beam_size
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic run: images drawn as coloured squares, captions scored for real.
    fn sample_run(dir: &Path, n: usize) -> EvalRun {
        let colours = [
            ("red", [220u8, 40, 40]),
            ("green", [40, 180, 60]),
            ("blue", [40, 80, 220]),
            ("yellow", [240, 210, 40]),
        ];
        let shapes = ["circle", "square", "triangle"];
        let mut images = Vec::new();
        for i in 0..n {
            let (colour, rgb) = colours[i % colours.len()];
            let shape = shapes[i % shapes.len()];
            let path = dir.join(format!("img{i:03}.png"));
            let mut img = image::RgbImage::from_pixel(96, 64, image::Rgb([245, 245, 245]));
            for y in 16..48 {
                for x in 32..64 {
                    img.put_pixel(x, y, image::Rgb(rgb));
                }
            }
            img.save(&path).unwrap();
            let caption = match i % 5 {
                0 => format!("a {colour} {shape} on a white background"),
                1 => format!("a {shape}"),
                2 => format!("a big {colour} {shape} <b>&amp;</b> \"quoted\""),
                3 => String::new(),
                _ => format!("two {colour} shapes next to each other"),
            };
            images.push(CaptionedImage {
                image_id: ImageId::Path(format!("img{i:03}.png")),
                image_path: Some(path),
                caption,
                references: vec![
                    format!("a {colour} {shape} on a white background."),
                    format!("A {colour} {shape}."),
                    format!("There is one {shape} | it is {colour}."),
                ],
            });
        }
        // One image whose file is missing: the page shows a placeholder.
        images.push(CaptionedImage {
            image_id: ImageId::Number(42),
            image_path: Some(dir.join("missing.jpg")),
            caption: "a missing image".into(),
            references: vec!["an image that is not there".into()],
        });
        let (metrics, images) = score_images(images).unwrap();
        EvalRun {
            metrics,
            perplexity: Some(7.25),
            perplexity_note: None,
            decode: DecodeSettings {
                beam_size: 3,
                max_len: 16,
            },
            dataset: DatasetIdentity {
                path: PathBuf::from("data/shapes.json"),
                format: "karpathy".into(),
                split: "test".into(),
                images: images.len(),
            },
            checkpoint: CheckpointIdentity {
                path: PathBuf::from("checkpoints/shapes"),
                config: "shapes".into(),
                epoch: Some(12),
            },
            images,
            skipped: vec![Skipped {
                entry: "gone.png".into(),
                reason: "gone.png: no such file".into(),
            }],
            baseline: None,
        }
    }

    fn metrics_csv(path: &Path) {
        let mut s = String::from(
            "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s\n",
        );
        let mut it = 0;
        for epoch in 1..=12 {
            for _ in 0..25 {
                it += 1;
                let x = it as f64;
                let loss = 1.6 + 3.0 * (-x / 90.0).exp() + 0.15 * ((x * 1.7).sin());
                let _ = writeln!(s, "{epoch},{it},{loss:.4},,,,0.001,850,{:.1}", x * 0.4);
            }
            let e = epoch as f64;
            let val = 1.9 + 2.6 * (-e / 3.2).exp();
            let _ = writeln!(
                s,
                "{epoch},{it},,{val:.4},{:.3},{:.4},,,",
                val.exp(),
                32.0 * (1.0 - (-e / 4.0).exp())
            );
        }
        std::fs::write(path, s).unwrap();
    }

    #[test]
    fn writes_every_file_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let run = sample_run(tmp.path(), 30);
        let csv = tmp.path().join("metrics.csv");
        metrics_csv(&csv);
        let out = tmp.path().join("reports/shapes");
        let written = write_report(
            &run,
            &out,
            &ReportOptions {
                metrics_csv: Some(csv),
                ..Default::default()
            },
        )
        .unwrap();
        let names: Vec<String> = written
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for f in [
            "eval.json",
            "results.json",
            "loss.png",
            "perplexity.png",
            "bleu4.png",
            "eval.md",
            "index.html",
        ] {
            assert!(names.contains(&f.to_string()), "{f} in {names:?}");
            assert!(out.join(f).is_file());
        }
        // eval.json reads back to the same run (floats to within parsing precision), and keys
        // follow pycocoevalcap.
        let back = read_eval_json(&out).unwrap();
        assert_eq!(back.checkpoint, run.checkpoint);
        assert_eq!(back.dataset, run.dataset);
        assert_eq!(back.decode, run.decode);
        assert_eq!(back.perplexity, run.perplexity);
        assert_eq!(back.skipped, run.skipped);
        assert!((back.metrics.cider - run.metrics.cider).abs() < 1e-12);
        assert!((back.metrics.neuraltalk_bleu_4 - run.metrics.neuraltalk_bleu_4).abs() < 1e-12);
        assert_eq!(back.images.len(), run.images.len());
        for (x, y) in back.images.iter().zip(&run.images) {
            assert_eq!(
                (&x.image_id, &x.image_path, &x.caption, &x.references),
                (&y.image_id, &y.image_path, &y.caption, &y.references)
            );
            assert!((x.scores.cider - y.scores.cider).abs() < 1e-12);
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
        assert!(json["metrics"]["Bleu_4"].is_f64());
        assert!(json["metrics"]["NeuralTalk_Bleu_4"].is_f64());
        assert!(
            json["metric_notes"]["CIDEr"]
                .as_str()
                .unwrap()
                .contains("σ = 6")
        );
        // results.json is COCO results format.
        let res: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(res.len(), run.images.len());
        assert_eq!(res[0]["image_id"], "img000.png");
        assert_eq!(res[30]["image_id"], 42);
        assert!(res[0]["caption"].is_string());

        let md = std::fs::read_to_string(out.join("eval.md")).unwrap();
        assert!(md.starts_with("# Evaluation: shapes, epoch 12 on shapes (test split)"));
        assert!(md.contains("| Bleu_4 |"));
        assert!(md.contains("| perplexity | 7.25 |"));
        assert!(md.contains("## Best 10 captions"));
        assert!(md.contains("## Worst 10 captions"));
        assert!(md.contains("\\| it is"), "pipes in captions are escaped");
        assert!(md.contains("![Loss](loss.png)"));
        assert!(md.contains("## Skipped images (1)"));
        assert!(md.contains("| gone.png | gone.png: no such file |"));

        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(html.contains("data:image/png;base64,"));
        assert!(html.contains("data:image/jpeg;base64,"));
        assert!(html.contains("image not available"));
        assert!(html.contains("Skipped images (1)"));
        assert!(html.contains("Images of the test split"));
        let start = html.find("data:image/jpeg;base64,").unwrap() + "data:image/jpeg;base64,".len();
        let len = html[start..].find('"').unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(&html[start..start + len])
            .unwrap();
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            (thumb.width(), thumb.height()),
            (96, 64),
            "small images are not enlarged"
        );
        assert!(!html.contains("<b>&amp;</b>"), "captions are escaped");
        assert!(html.contains("&lt;b&gt;&amp;amp;&lt;/b&gt; &quot;quoted&quot;"));
        assert!(!html.contains("src=\"http"), "no external resources");
        assert!(!html.contains("href=\"http"), "no external resources");

        // A copy for looking at by hand: CAPSEARCH_KEEP_REPORT=dir.
        if let Ok(keep) = std::env::var("CAPSEARCH_KEEP_REPORT") {
            let keep = PathBuf::from(keep);
            std::fs::create_dir_all(&keep).unwrap();
            for f in &written.files {
                std::fs::copy(f, keep.join(f.file_name().unwrap())).unwrap();
            }
        }
    }

    #[test]
    fn ranking_puts_best_cider_first() {
        let tmp = tempfile::tempdir().unwrap();
        let run = sample_run(tmp.path(), 12);
        let order = ranking(&run);
        for w in order.windows(2) {
            assert!(run.images[w[0]].scores.cider >= run.images[w[1]].scores.cider);
        }
        let (best, worst) = best_and_worst(&run, 3);
        assert_eq!(best.len(), 3);
        assert_eq!(worst[0], *order.last().unwrap());
    }

    #[test]
    fn compare_shows_differences() {
        let tmp = tempfile::tempdir().unwrap();
        let run_a = sample_run(tmp.path(), 8);
        let mut run_b = run_a.clone();
        run_b.metrics.bleu_4 += 0.05;
        run_b.decode.beam_size = 5;
        run_b.dataset.split = "val".into();
        let (da, db) = (tmp.path().join("A"), tmp.path().join("B"));
        let opts = ReportOptions::default();
        write_report(&run_a, &da, &opts).unwrap();
        write_report(&run_b, &db, &opts).unwrap();
        let text = compare(&da, &db).unwrap().to_string();
        assert!(text.contains("Bleu_4"), "{text}");
        assert!(text.contains("+0.0500"), "{text}");
        assert!(
            text.contains("warning: the reports scored different data"),
            "{text}"
        );
        let e = compare(&da, &tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
        // Differences too small to print are shown as +0, never -0.
        let mut run_c = run_a.clone();
        run_c.metrics.bleu_1 -= 1e-9;
        let dc = tmp.path().join("C");
        write_report(&run_c, &dc, &opts).unwrap();
        let text = compare(&da, &dc).unwrap().to_string();
        assert!(!text.contains("-0.0000"), "{text}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(md_escape("a|b*c\nd"), "a\\|b\\*c d");
    }
}
