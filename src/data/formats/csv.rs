//! CSV with a header row naming the columns `image` and `caption` (any order, any case, other
//! columns ignored), one row per caption; several rows may name the same image. An optional
//! `split` column gives the split (an empty cell leaves the row to the seeded split). Image paths
//! are relative to `--images` or, by default, the CSV file's folder.

use std::path::Path;

use super::{Duplicates, Raw, RawCaption, RawEntry, parent_dir, read_file};
use crate::data::Split;
use crate::error::{Error, Result};

fn csv_error(file: &Path, e: &::csv::Error) -> Error {
    let location = e.position().map(|p| format!("line {}", p.line()));
    let message = match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "row has {len} fields but the header has {expected_len}; quote captions that contain commas"
        ),
        ::csv::ErrorKind::Utf8 { .. } => "not UTF-8 text; save the file as UTF-8".to_string(),
        _ => format!("malformed CSV: {e}"),
    };
    Error::parse(file, location, message)
}

pub(crate) fn read(file: &Path, images: Option<&Path>) -> Result<Raw> {
    let bytes = read_file(file)?;
    let image_root = images
        .map(Path::to_path_buf)
        .unwrap_or_else(|| parent_dir(file));
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes.as_slice());
    let headers = reader.headers().map_err(|e| csv_error(file, &e))?.clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let column = |name: &str| names.iter().position(|n| n == name);
    let (image_col, caption_col) = match (column("image"), column("caption")) {
        (Some(i), Some(c)) => (i, c),
        (i, c) => {
            let missing: Vec<&str> = [("image", i), ("caption", c)]
                .into_iter()
                .filter(|(_, found)| found.is_none())
                .map(|(name, _)| name)
                .collect();
            return Err(Error::parse(
                file,
                Some("line 1 (header)".into()),
                format!(
                    "missing column{} {}; the header must name `image` and `caption` (found: {})",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", "),
                    if names.iter().all(|n| n.is_empty()) {
                        "nothing".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    };
    let split_col = column("split");

    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let location = format!("line {line}");
        let image = record.get(image_col).unwrap_or("").trim();
        if image.is_empty() {
            return Err(Error::parse(
                file,
                Some(location),
                "the `image` cell is empty",
            ));
        }
        let split = match split_col.and_then(|c| record.get(c)).map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(Split::parse(s).ok_or_else(|| {
                Error::parse(
                    file,
                    Some(location.clone()),
                    format!("unknown split {s:?}; expected train, val or test"),
                )
            })?),
        };
        entries.push(RawEntry {
            path: image.to_string(),
            captions: vec![RawCaption {
                text: record.get(caption_col).unwrap_or("").to_string(),
                location: location.clone(),
                file: None,
            }],
            split,
            location,
        });
    }
    Ok(Raw {
        image_root,
        entries,
        skipped: Vec::new(),
        duplicates: Duplicates::Merge,
    })
}
