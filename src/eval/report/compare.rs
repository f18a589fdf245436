//! Two reports' metrics side by side.

use std::fmt;
use std::path::{Path, PathBuf};

use super::record::EvalRun;
use super::{read_eval_json, title};
use crate::error::Result;

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
