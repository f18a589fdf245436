//! Flickr8k as distributed: `Flickr8k.token.txt` (`<image>#<n><TAB><caption>`, one caption per
//! line), the split lists `Flickr_8k.{train,dev,test}Images.txt` next to it (one image name per
//! line), and the image folder (`Flicker8k_Dataset/`, as the archive spells it).
//!
//! When split lists exist, images that no list names are skipped (the distributed token file has
//! 92 such images), as are listed images without captions. Without split lists every image gets
//! a seeded split.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{Duplicates, Raw, RawCaption, RawEntry, parent_dir, read_text};
use crate::data::{Skipped, Split};
use crate::error::{Error, Result};

/// Split list file names, as distributed.
pub const SPLIT_FILES: [(Split, &str); 3] = [
    (Split::Train, "Flickr_8k.trainImages.txt"),
    (Split::Val, "Flickr_8k.devImages.txt"),
    (Split::Test, "Flickr_8k.testImages.txt"),
];

/// Image folder names tried, in order, when `--images` is not given.
pub const IMAGE_DIRS: [&str; 4] = ["Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images"];

pub(crate) fn read(file: &Path, images: Option<&Path>) -> Result<Raw> {
    let dir = parent_dir(file);
    let image_root = match images {
        Some(p) => p.to_path_buf(),
        None => IMAGE_DIRS
            .iter()
            .map(|d| dir.join(d))
            .find(|p| p.is_dir())
            .unwrap_or_else(|| dir.clone()),
    };

    // Split lists: image name -> (split, where it was listed).
    let mut splits: HashMap<String, (Split, String)> = HashMap::new();
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut any_split_file = false;
    for (split, name) in SPLIT_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        any_split_file = true;
        let text = read_text(&path)?;
        for (i, line) in text.lines().enumerate() {
            let image = line.trim();
            if image.is_empty() {
                continue;
            }
            let here = format!("{name} line {}", i + 1);
            if let Some((other, there)) = splits.get(image) {
                return Err(Error::parse(
                    &path,
                    Some(format!("line {}", i + 1)),
                    format!(
                        "image {image:?} is listed in split {split} here and in split {other} at {there}; an image belongs to one split"
                    ),
                ));
            }
            splits.insert(image.to_string(), (split, here.clone()));
            listed.push((image.to_string(), here));
        }
    }

    let text = read_text(file)?;
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut unlisted: HashSet<String> = HashSet::new();
    let mut captioned: HashSet<String> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let location = format!("line {}", i + 1);
        let Some((key, caption)) = line.split_once('\t') else {
            return Err(Error::parse(
                file,
                Some(location),
                "expected `<image>#<n><TAB><caption>`, found no tab",
            ));
        };
        let key = key.trim();
        let image = match key.rsplit_once('#') {
            Some((image, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => image,
            _ => key,
        };
        if image.is_empty() {
            return Err(Error::parse(
                file,
                Some(location),
                "expected `<image>#<n><TAB><caption>`, the image name is empty",
            ));
        }
        captioned.insert(image.to_string());
        let split = if any_split_file {
            match splits.get(image) {
                Some((s, _)) => Some(*s),
                None => {
                    if unlisted.insert(image.to_string()) {
                        skipped.push(Skipped {
                            entry: image.to_string(),
                            reason: format!("not listed in any split file ({location})"),
                        });
                    }
                    continue;
                }
            }
        } else {
            None
        };
        entries.push(RawEntry {
            path: image.to_string(),
            captions: vec![RawCaption {
                text: caption.to_string(),
                location: location.clone(),
                file: None,
            }],
            split,
            location,
        });
    }
    for (image, here) in listed {
        if !captioned.contains(&image) {
            skipped.push(Skipped {
                entry: image,
                reason: format!("no captions in {} ({here})", file_name(file)),
            });
        }
    }
    Ok(Raw {
        image_root,
        entries,
        skipped,
        duplicates: Duplicates::Merge,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
