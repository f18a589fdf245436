//! COCO captions JSON (`captions_train2014.json`, ...): `images[].{id, file_name}` and
//! `annotations[].{image_id, caption}`. The file has no splits, so every image gets a seeded one.
//!
//! Without `--images`, the image folder is guessed from the file name, as COCO is distributed:
//! `captions_train2014.json` → `train2014/` next to the file or next to its `annotations/`
//! folder; failing that, the file's own folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Duplicates, Raw, RawCaption, RawEntry, parent_dir, parse_json, read_file};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct File {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
}

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: u64,
    caption: String,
}

fn guess_root(file: &Path) -> PathBuf {
    let dir = parent_dir(file);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(set) = stem.strip_prefix("captions_") {
        let mut candidates = vec![dir.join(set)];
        if let Some(up) = dir.parent() {
            candidates.push(up.join(set));
            candidates.push(up.join("images").join(set));
        }
        if let Some(found) = candidates.into_iter().find(|p| p.is_dir()) {
            return found;
        }
    }
    dir
}

pub(crate) fn read(file: &Path, images: Option<&Path>) -> Result<Raw> {
    let bytes = read_file(file)?;
    let parsed: File = parse_json(
        file,
        &bytes,
        "COCO captions file (images[].{id, file_name}, annotations[].{image_id, caption})",
    )?;
    let image_root = images
        .map(Path::to_path_buf)
        .unwrap_or_else(|| guess_root(file));
    let mut by_id: HashMap<u64, usize> = HashMap::with_capacity(parsed.images.len());
    let mut entries = Vec::with_capacity(parsed.images.len());
    for (i, image) in parsed.images.into_iter().enumerate() {
        let location = format!("images[{i}]");
        if let Some(&first) = by_id.get(&image.id) {
            return Err(Error::parse(
                file,
                Some(location),
                format!(
                    "duplicate image id {} (first at images[{first}]); image ids must be unique",
                    image.id
                ),
            ));
        }
        by_id.insert(image.id, i);
        entries.push(RawEntry {
            path: image.file_name,
            captions: Vec::new(),
            split: None,
            location,
        });
    }
    for (j, ann) in parsed.annotations.into_iter().enumerate() {
        let location = format!("annotations[{j}]");
        let Some(&i) = by_id.get(&ann.image_id) else {
            return Err(Error::parse(
                file,
                Some(location),
                format!(
                    "image_id {} is not in images[]; every annotation must point at a listed image",
                    ann.image_id
                ),
            ));
        };
        entries[i].captions.push(RawCaption {
            text: ann.caption,
            location,
            file: None,
        });
    }
    Ok(Raw {
        image_root,
        entries,
        skipped: Vec::new(),
        duplicates: Duplicates::Refuse,
    })
}
