//! `index.html`: one self-contained page (inline CSS, plots and thumbnails as data URIs).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;

use super::markdown::READING_NOTES;
use super::record::{EvalRun, OBJECTS_NOTE, object_rows, share_text};
use super::{ReportOptions, best_and_worst, decode_text, title};
use crate::eval::Scores;
use crate::eval::plot::Curve;

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

pub(super) fn thumbnails(run: &EvalRun, opts: &ReportOptions) -> HashMap<usize, String> {
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

/// The page's style sheet.
const CSS: &str = include_str!("report.css");

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

/// The object table (empty when the run has no object metrics).
fn object_table_html(run: &EvalRun) -> String {
    let (rows, apart) = object_rows(run);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Objects</h2><table class=\"metrics objects\"><thead><tr><th>Captions</th><th>Bleu_4</th><th>CIDEr</th><th>object recall</th><th>object precision</th>",
    );
    if apart {
        s.push_str("<th>seen recall</th><th>unseen recall</th>");
    }
    s.push_str("</tr></thead><tbody>\n");
    for r in &rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            html_escape(r.who),
            r.bleu_4,
            r.cider,
            share_text(r.objects.recall),
            share_text(r.objects.precision)
        );
        if apart {
            let _ = write!(
                s,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td>",
                share_text(r.objects.seen_recall),
                share_text(r.objects.unseen_recall)
            );
        }
        s.push_str("</tr>\n");
    }
    let o = rows[0].objects;
    let _ = writeln!(
        s,
        "</tbody></table>\n<p class=\"note\">{} things labelled ({} from unseen exemplars). {}</p>",
        o.objects,
        o.unseen_objects,
        html_escape(OBJECTS_NOTE)
    );
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
    s.push_str(&object_table_html(run));
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
