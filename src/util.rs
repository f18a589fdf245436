//! Small helpers shared by every module.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Error, Result};

/// Runs `f` on one of rayon's worker threads and waits for it (at once, when already on one).
///
/// capsearch's CPU ops (`model::ops`, the fast decoder), burn-flex and `gemm` split their loops
/// with rayon. Called from a thread outside the pool, every parallel loop is injected into the
/// pool while the caller sleeps on a latch until it ends: a wake-up through the kernel each time,
/// and a training step has hundreds (the LSTM op alone two per time step, forward and backward),
/// a NeuralTalk-sized greedy decode three per word. From a worker the same loops split by work
/// stealing. A whole training step run this way was about 40% faster at batch 8 and 10% at batch
/// 64 on 2 cores (issue 15, fifth round).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

/// A short fingerprint: the first 8 hex digits of the SHA-256 of what `feed` hashes (a model
/// file's values, so that two fits name two vector spaces).
pub fn short_fingerprint(feed: impl FnOnce(&mut sha2::Sha256)) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    feed(&mut hash);
    hash.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bytes of the file at `path`, or `None` when there is none (an optional file of a model
/// folder); other read errors name the file.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes a file atomically: to a temporary file in the same folder, flushed, then renamed over
/// the target, so a crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates files readable by the owner only; artifacts are ordinary files
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// The one progress bar style of capsearch: `label [bar] done/total (rate, ETA)`, or a spinner
/// with a count when the total is unknown. Drawn on stderr, and only when stderr is a terminal
/// (tests, pipes and CI logs get nothing).
pub fn progress_bar(total: Option<u64>, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{msg} [{bar:40}] {human_pos}/{human_len} ({per_sec}, ETA {eta})"
    } else {
        "{spinner} {msg} {human_pos} ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// A duration for people: "45s", "4m 12s", "1h 02m", "2d 03h".
pub fn format_duration(duration: std::time::Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {:02}h", s / 86400, s / 3600 % 24),
    }
}

/// Reads a `[N, D]` (or `[D]`, as one row) float32/float64 `.npy` file into row-major `f32`
/// values and the row count. Fortran-ordered arrays are transposed into row order.
pub fn read_npy_matrix(path: &Path) -> Result<(Vec<f32>, usize)> {
    let bad = |message: String| Error::parse(path, None, message);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    let (rows, cols) = match shape.as_slice() {
        [d] => (1usize, *d as usize),
        [n, d] => (*n as usize, *d as usize),
        other => {
            return Err(bad(format!(
                "expected a [N, D] array of features, found shape {other:?}"
            )));
        }
    };
    let fortran = npy.order() == npyz::Order::Fortran;
    let dtype = npy.dtype().descr();
    let values: Vec<f32> = match dtype
        .trim_matches(['\'', '"'])
        .trim_start_matches(['<', '|', '='])
    {
        "f4" => npy
            .into_vec::<f32>()
            .map_err(|e| bad(format!("cannot read float32 data: {e}")))?,
        "f8" => npy
            .into_vec::<f64>()
            .map_err(|e| bad(format!("cannot read float64 data: {e}")))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(bad(format!(
                "expected float32 or float64 values, found dtype {other}"
            )));
        }
    };
    if values.len() != rows * cols {
        return Err(bad(format!(
            "shape says {} values, file holds {}",
            rows * cols,
            values.len()
        )));
    }
    if fortran && rows > 1 {
        let mut out = vec![0f32; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[r * cols + c] = values[c * rows + r];
            }
        }
        return Ok((out, rows));
    }
    Ok((values, rows))
}

/// The nearest-rank `p`th percentile (`p` in 0–100) of sorted values (the default, 0, when empty).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile::<f64>(&[], 50.0), 0.0);
    }
}
