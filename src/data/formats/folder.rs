//! An image folder with a sidecar caption file per image: `cat.jpg` + `cat.txt`, one caption per
//! non-blank line. Subfolders are searched too. When the folder's top level holds `train/`,
//! `val/` (or `dev/`) and `test/` subfolders, an image's first folder gives its split; other
//! images get a seeded split. Images without a sidecar are skipped and listed.
//!
//! The folder is also the image root; `--images` is not used by this format.

use std::path::Path;

use super::{Duplicates, Raw, RawCaption, RawEntry, read_text};
use crate::data::image_files::is_image_name;
use crate::data::{Skipped, Split};
use crate::error::{Error, Result};

pub(crate) fn read(dir: &Path, images: Option<&Path>) -> Result<Raw> {
    if let Some(other) = images
        && other != dir
    {
        tracing::warn!(
            "the folder format reads images and captions from {}; ignoring --images {}",
            dir.display(),
            other.display()
        );
    }
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name();
    for item in walker {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            match e.into_io_error() {
                Some(io) => Error::io(path, io),
                None => Error::Dataset {
                    path,
                    message: "cannot walk the folder (a symlink loop?)".into(),
                },
            }
        })?;
        // Symlinked images are listed too: the shared rules refuse ones that point out of the folder.
        if item.file_type().is_dir() || !is_image_name(item.path()) {
            continue;
        }
        let Ok(rel) = item.path().strip_prefix(dir) else {
            continue;
        };
        let rel_str = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let sidecar = item.path().with_extension("txt");
        if !sidecar.is_file() {
            skipped.push(Skipped {
                entry: rel_str,
                reason: format!(
                    "no caption file {}",
                    sidecar.file_name().unwrap_or_default().to_string_lossy()
                ),
            });
            continue;
        }
        let text = read_text(&sidecar)?;
        let captions: Vec<RawCaption> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| RawCaption {
                text: l.to_string(),
                location: format!("line {}", i + 1),
                file: Some(sidecar.clone()),
            })
            .collect();
        if captions.is_empty() {
            return Err(Error::parse(
                &sidecar,
                None,
                format!("caption file of {rel_str} is empty; write one caption per line"),
            ));
        }
        let split = match rel.components().next() {
            Some(first) if rel.components().count() > 1 => {
                Split::parse(&first.as_os_str().to_string_lossy())
            }
            _ => None,
        };
        entries.push(RawEntry {
            path: rel_str,
            captions,
            split,
            location: sidecar.display().to_string(),
        });
    }
    Ok(Raw {
        image_root: dir.to_path_buf(),
        entries,
        skipped,
        duplicates: Duplicates::Refuse,
    })
}
