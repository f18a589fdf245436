//! `eval.md` and the plain-text metric table.

use std::fmt::Write as _;

use super::record::{EvalRun, OBJECTS_NOTE, object_rows, share_text};
use super::{best_and_worst, decode_text, title};
use crate::eval::Scores;
use crate::eval::plot::Curve;

/// Escapes text for a Markdown table cell.
pub(super) fn md_escape(text: &str) -> String {
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

/// The object table as Markdown (empty when the run has no object metrics).
pub fn object_table_md(run: &EvalRun) -> String {
    let (rows, apart) = object_rows(run);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Objects

| Captions | Bleu_4 | CIDEr | object recall | object precision |",
    );
    s.push_str(if apart {
        " seen recall | unseen recall |\n|---|---:|---:|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|---:|\n"
    });
    for r in &rows {
        let _ = write!(
            s,
            "| {} | {:.4} | {:.4} | {} | {} |",
            r.who,
            r.bleu_4,
            r.cider,
            share_text(r.objects.recall),
            share_text(r.objects.precision)
        );
        if apart {
            let _ = write!(
                s,
                " {} | {} |",
                share_text(r.objects.seen_recall),
                share_text(r.objects.unseen_recall)
            );
        }
        s.push('\n');
    }
    let o = rows[0].objects;
    let _ = writeln!(
        s,
        "\n{} things labelled ({} from unseen exemplars). {}\n",
        o.objects,
        o.unseen_objects,
        md_escape(OBJECTS_NOTE)
    );
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

pub(super) const READING_NOTES: &str = "Every score above is computed on captions the model decoded on its own (not teacher-forced). \
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
    s.push_str(&object_table_md(run));
    if let Some(probe) = &run.concept_probe {
        s.push_str(&crate::eval::concepts::probe_table_md(probe));
    }
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
