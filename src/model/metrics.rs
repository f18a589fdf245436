//! `metrics.csv`, a training run's log: one row per logged training iteration and one per epoch.
//!
//! The columns are `epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,
//! elapsed_s,kind`. `kind` says what a row is (`iteration` or `epoch`); iteration rows leave the
//! validation cells empty, epoch rows leave `train_loss` empty. Files written before `kind` existed
//! are read too: a row with a validation figure is an epoch row, any other an iteration row.
//!
//! Reading is lenient, so curves can be drawn from other trainers' logs: columns may come in any
//! order, extra columns are ignored, and any cell but `epoch` may be empty.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// The columns, in the order they are written.
pub const COLUMNS: [&str; 10] = [
    "epoch",
    "iteration",
    "train_loss",
    "val_loss",
    "val_perplexity",
    "val_bleu4",
    "lr",
    "images_per_sec",
    "elapsed_s",
    "kind",
];

/// What a row of `metrics.csv` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// The mean training loss of the iterations since the previous row.
    Iteration,
    /// An epoch's validation figures.
    Epoch,
}

/// One row of `metrics.csv`. Empty cells are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// 1-based epoch.
    #[serde(serialize_with = "plain")]
    pub epoch: f64,
    /// Iterations done since the start of the run.
    #[serde(default, serialize_with = "plain_opt")]
    pub iteration: Option<f64>,
    #[serde(default, serialize_with = "plain_opt")]
    pub train_loss: Option<f64>,
    #[serde(default, serialize_with = "plain_opt")]
    pub val_loss: Option<f64>,
    #[serde(default, serialize_with = "plain_opt")]
    pub val_perplexity: Option<f64>,
    /// Validation BLEU-4; capsearch logs it on the 0–100 scale.
    #[serde(default, serialize_with = "plain_opt")]
    pub val_bleu4: Option<f64>,
    #[serde(default, serialize_with = "plain_opt")]
    pub lr: Option<f64>,
    #[serde(default, serialize_with = "plain_opt")]
    pub images_per_sec: Option<f64>,
    /// Training time of the run so far (resumed runs included), in seconds.
    #[serde(default, serialize_with = "plain_opt")]
    pub elapsed_s: Option<f64>,
    /// Absent in files written before the column existed; see [`MetricsRow::kind`].
    #[serde(default)]
    pub kind: Option<RowKind>,
}

/// Numbers as Rust prints them: `3` rather than `3.0`, never an exponent.
fn plain<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn plain_opt<S: Serializer>(v: &Option<f64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// `v` as it reads with `digits` decimals (or, with `exp`, `digits` decimals of the mantissa).
fn rounded(v: f64, digits: usize, exp: bool) -> f64 {
    let text = if exp {
        format!("{v:.digits$e}")
    } else {
        format!("{v:.digits$}")
    };
    text.parse().unwrap_or(v)
}

impl MetricsRow {
    /// A training row: the mean loss of the iterations logged since the previous row.
    pub fn iteration(
        epoch: usize,
        global_iteration: usize,
        train_loss: f64,
        lr: f64,
        images_per_sec: f64,
        elapsed_s: f64,
    ) -> Self {
        MetricsRow {
            epoch: epoch as f64,
            iteration: Some(global_iteration as f64),
            train_loss: Some(rounded(train_loss, 6, false)),
            lr: Some(rounded(lr, 6, true)),
            images_per_sec: Some(rounded(images_per_sec, 2, false)),
            elapsed_s: Some(rounded(elapsed_s, 2, false)),
            kind: Some(RowKind::Iteration),
            ..MetricsRow::default()
        }
    }

    /// An epoch row: validation loss (its perplexity is `exp(val_loss)`) and BLEU-4.
    pub fn epoch(
        epoch: usize,
        global_iteration: usize,
        val_loss: f64,
        val_bleu4: f64,
        lr: f64,
        images_per_sec: f64,
        elapsed_s: f64,
    ) -> Self {
        MetricsRow {
            epoch: epoch as f64,
            iteration: Some(global_iteration as f64),
            val_loss: Some(rounded(val_loss, 6, false)),
            val_perplexity: Some(rounded(val_loss.exp(), 4, false)),
            val_bleu4: Some(rounded(val_bleu4, 4, false)),
            lr: Some(rounded(lr, 6, true)),
            images_per_sec: Some(rounded(images_per_sec, 2, false)),
            elapsed_s: Some(rounded(elapsed_s, 2, false)),
            kind: Some(RowKind::Epoch),
            ..MetricsRow::default()
        }
    }

    /// What the row records: its `kind` cell, or for older files without one, an epoch row when it
    /// has a validation figure.
    pub fn kind(&self) -> RowKind {
        self.kind.unwrap_or(
            if self.val_loss.is_some() || self.val_perplexity.is_some() || self.val_bleu4.is_some()
            {
                RowKind::Epoch
            } else {
                RowKind::Iteration
            },
        )
    }

    pub fn is_epoch(&self) -> bool {
        self.kind() == RowKind::Epoch
    }
}

/// Reads a `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    parse_metrics(file, path)
}

/// Parses `metrics.csv` content; `path` is only used in error messages.
pub fn parse_metrics<R: std::io::Read>(reader: R, path: &Path) -> Result<Vec<MetricsRow>> {
    let mut rows = Vec::new();
    for row in rows_of(reader, path)? {
        rows.push(row?);
    }
    Ok(rows)
}

/// The rows of a `metrics.csv`, each parsed on its own (so a caller may skip bad ones).
fn rows_of<R: std::io::Read>(
    reader: R,
    path: &Path,
) -> Result<impl Iterator<Item = Result<MetricsRow>>> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| Error::parse(path, Some("header".into()), e.to_string()))?
        .clone();
    let Some(epoch_col) = headers.iter().position(|h| h == "epoch") else {
        return Err(Error::parse(
            path,
            Some("header".into()),
            format!(
                "no `epoch` column (found: {}); expected {}",
                headers.iter().collect::<Vec<_>>().join(","),
                COLUMNS.join(",")
            ),
        ));
    };
    let path = path.to_path_buf();
    Ok(csv
        .into_records()
        .enumerate()
        .map(move |(i, record)| parse_row(record, i + 2, epoch_col, &headers, &path)))
}

fn parse_row(
    record: csv::Result<csv::StringRecord>,
    line: usize,
    epoch_col: usize,
    headers: &csv::StringRecord,
    path: &Path,
) -> Result<MetricsRow> {
    let record =
        record.map_err(|e| Error::parse(path, Some(format!("line {line}")), e.to_string()))?;
    if record.get(epoch_col).is_none_or(str::is_empty) {
        return Err(Error::parse(
            path,
            Some(format!("line {line}, column epoch")),
            "the epoch cell is empty; every row needs its epoch",
        ));
    }
    record.deserialize(Some(headers)).map_err(|e| {
        let field = match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => err.field().map(|f| f as usize),
            _ => None,
        }
        .or_else(|| bad_cell(&record, headers));
        let name = field.and_then(|f| headers.get(f)).unwrap_or("?");
        let text = field.and_then(|f| record.get(f)).unwrap_or("");
        let message = if name == "kind" {
            format!("{text:?} is not a row kind: write `iteration` or `epoch`, or leave it empty")
        } else {
            format!("{text:?} is not a number; leave the cell empty when there is no value")
        };
        Error::parse(path, Some(format!("line {line}, column {name}")), message)
    })
}

/// The first cell that does not fit its column (csv does not always say which one it was).
fn bad_cell(record: &csv::StringRecord, headers: &csv::StringRecord) -> Option<usize> {
    headers.iter().zip(record.iter()).position(|(name, text)| {
        !text.is_empty()
            && match name {
                "kind" => !matches!(text, "iteration" | "epoch"),
                name if COLUMNS.contains(&name) => text.parse::<f64>().is_err(),
                _ => false,
            }
    })
}

/// `metrics.csv` open for appending, as the training loop writes it.
pub struct MetricsLog {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl MetricsLog {
    /// Opens the log for appending. On resume, rows past `keep_until_iteration` (written after the
    /// checkpoint that is resumed) are dropped so the log matches the resumed state. An older file
    /// is rewritten in the current layout; rows that cannot be read are dropped with a warning.
    pub fn open(path: &Path, keep_until_iteration: usize) -> Result<Self> {
        let mut kept = Vec::new();
        if let Ok(file) = File::open(path) {
            match rows_of(file, path) {
                Ok(rows) => {
                    for row in rows {
                        match row {
                            Ok(mut row) => {
                                if row
                                    .iteration
                                    .is_some_and(|i| i <= keep_until_iteration as f64)
                                {
                                    row.kind = Some(row.kind());
                                    kept.push(row);
                                }
                            }
                            Err(e) => tracing::warn!("dropping a row of metrics.csv: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("starting metrics.csv afresh: {e}"),
            }
        }
        let mut body = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        let csv_err = |e: csv::Error| Error::parse(path, None, e.to_string());
        body.write_record(COLUMNS).map_err(csv_err)?;
        for row in &kept {
            body.serialize(row).map_err(csv_err)?;
        }
        let bytes = body
            .into_inner()
            .map_err(|e| Error::parse(path, None, e.to_string()))?;
        crate::util::write_atomic(path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(file),
        })
    }

    /// Appends a row and flushes it to disk.
    pub fn append(&mut self, row: &MetricsRow) -> Result<()> {
        self.writer
            .serialize(row)
            .map_err(|e| Error::parse(&self.path, None, e.to_string()))?;
        // flushes the file too
        self.writer.flush().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s\n\
        1,1,5.0,,,,0.001,100,1\n\
        1,2,4.5,,,,0.001,100,2\n\
        1,2,,4.6,99.5,0.05,0.001,100,2\n\
        2,3,4.0,,,,0.001,100,3\n\
        2,4,3.5,,,,0.001,100,4\n\
        2,4,,3.9,49.4,0.11,0.001,100,4\n";

    #[test]
    fn the_header_is_the_row_type() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(MetricsRow::iteration(1, 2, 3.0, 1e-3, 9.0, 1.0))
            .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
    }

    #[test]
    fn rows_are_written_as_before_plus_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        log.append(&MetricsRow::iteration(1, 5, 2.1234567, 2e-4, 312.456, 4.0))
            .unwrap();
        log.append(&MetricsRow::epoch(1, 5, 2.0, 17.25, 2e-4, 312.456, 4.5))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s,kind\n\
             1,5,2.123457,,,,0.0002,312.46,4,iteration\n\
             1,5,,2,7.3891,17.25,0.0002,312.46,4.5,epoch\n"
        );
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows[0].kind(), RowKind::Iteration);
        assert_eq!(rows[1].kind(), RowKind::Epoch);
        assert_eq!(rows[1].val_bleu4, Some(17.25));
    }

    #[test]
    fn old_files_are_read_and_rewritten_up_to_the_resumed_iteration() {
        let rows = parse_metrics(OLD.as_bytes(), Path::new("metrics.csv")).unwrap();
        let kinds: Vec<RowKind> = rows.iter().map(MetricsRow::kind).collect();
        use RowKind::*;
        assert_eq!(
            kinds,
            [Iteration, Iteration, Epoch, Iteration, Iteration, Epoch]
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, OLD).unwrap();
        let mut log = MetricsLog::open(&path, 3).unwrap();
        log.append(&MetricsRow::iteration(2, 4, 3.25, 1e-3, 100.0, 4.0))
            .unwrap();
        let rows = read_metrics(&path).unwrap();
        assert_eq!(rows.len(), 5, "rows past iteration 3 are dropped");
        assert!(rows.iter().all(|r| r.kind.is_some()), "kinds filled in");
        assert_eq!(rows[2].kind, Some(Epoch));
        assert_eq!(rows[4].train_loss, Some(3.25));
        assert_eq!(rows[4].epoch, 2.0);
    }

    #[test]
    fn columns_in_any_order_and_bad_cells_named() {
        let rows = parse_metrics(
            "extra,val_bleu4,epoch\nx,12.5,3\n".as_bytes(),
            Path::new("m.csv"),
        )
        .unwrap();
        assert_eq!(rows[0].epoch, 3.0);
        assert_eq!(rows[0].val_bleu4, Some(12.5));
        assert_eq!(rows[0].kind(), RowKind::Epoch);
        let err = parse_metrics("epoch,kind\n1,step\n".as_bytes(), Path::new("m.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("kind"), "{err}");
        let err = parse_metrics("epoch,lr\n,1\n".as_bytes(), Path::new("m.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch cell is empty"), "{err}");
    }
}
