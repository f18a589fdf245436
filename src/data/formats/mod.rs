//! Dataset loaders, one file per format, plus format detection.
//!
//! [`load`] is the entry point: it detects the format (or takes `--format`), lets the format's
//! reader turn the file into raw entries, and then applies the rules every format shares:
//!
//! - Image paths must be relative and stay inside the image root: `..`, absolute paths and
//!   symlinks that resolve outside the root are refused with an error (never skipped).
//! - Every caption must keep at least one token after tokenising; an empty one is an error that
//!   names the file and line or entry.
//! - Duplicate image entries: formats with one entry per caption (Flickr8k's token file, CSV)
//!   merge the rows of an image, since that is how they list several captions; formats with one
//!   entry per image (Karpathy, COCO `images[]`, custom) refuse a second entry for the same image
//!   with an error naming both entries, since it is a mistake there. Rows of one image that name
//!   different splits are refused in every format.
//! - Images that are missing (and, with [`LoadOptions::check_images`], unreadable, corrupt or too
//!   large) are skipped into [`Dataset::skipped`], or refused when [`LoadOptions::strict`] is set.
//!   With [`LoadOptions::captions_only`] no image file is looked at: every entry with captions is
//!   kept (scoring, and indexing captions, need no image).
//! - Entries without a split get a deterministic, seeded split ([`SplitOptions`]).

pub mod coco;
pub mod csv;
pub mod custom;
pub mod detect;
mod files;
pub mod flickr8k;
pub mod folder;
pub mod karpathy;
mod paths;
mod splits;

pub(crate) use files::{parent_dir, parse_json, read_file, read_text};
use paths::{Resolved, escape_error, resolve_in_root};
pub use paths::{clean_relative, resolve_image};
use splits::assign_splits;
pub use splits::{SplitOptions, split_counts, split_of_index};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image::ImageLimits;
use super::labels::Labels;
use super::{Dataset, Sample, Skipped, Split};
use crate::data::text::tokenize;
use crate::error::{Error, Result};

/// The dataset formats capsearch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Flickr8k as distributed: `Flickr8k.token.txt` + `Flickr_8k.{train,dev,test}Images.txt`.
    Flickr8k,
    /// Karpathy's split JSON (`dataset_flickr8k.json`, `dataset_coco.json`, ...).
    Karpathy,
    /// COCO captions JSON (`captions_train2014.json`, ...).
    Coco,
    /// The original project's `custom_dataset.json` (`images[].{imgurl, description}`).
    Custom,
    /// CSV with a header `image,caption[,split]`.
    Csv,
    /// An image folder with a sidecar `.txt` caption file per image.
    Folder,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Flickr8k => "flickr8k",
            Format::Karpathy => "karpathy",
            Format::Coco => "coco",
            Format::Custom => "custom",
            Format::Csv => "csv",
            Format::Folder => "folder",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`load`] reads a dataset. The default detects the format, uses the format's image root,
/// splits 80/10/10 with seed 42, skips missing images and does not decode them.
/// [`LoadOptions::captions_only`] leaves the image files alone altogether.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The format; detected from the path and content when `None`.
    pub format: Option<Format>,
    /// The folder image paths are relative to, when the format does not imply it.
    pub images: Option<PathBuf>,
    /// How entries without a split are divided.
    pub split: SplitOptions,
    /// Refuse the dataset on the first missing or unreadable image instead of skipping it.
    pub strict: bool,
    /// Decode every image (in parallel) and skip the corrupt, truncated, oversized or non-image
    /// ones. Without it only existence and containment in the image root are checked.
    pub check_images: bool,
    /// Limits applied when images are decoded.
    pub limits: ImageLimits,
    /// Read the captions only and never touch an image file: no existence check and no
    /// decoding (`check_images` is ignored, and `strict` refuses nothing about images). Image
    /// paths are still refused when they leave the root lexically (`..`, absolute paths); symlinks
    /// are not followed, since nothing is opened. For scoring captions, or indexing them, with
    /// an annotation file whose images are not at hand.
    pub captions_only: bool,
}

/// Loads a dataset file or folder into the common in-memory form.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    opts.split.validate()?;
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    let (format, file) = match opts.format {
        Some(format) => (format, detect::resolve(format, path)?),
        None => {
            let d = detect::detect(path)?;
            (d.format, d.file)
        }
    };
    tracing::debug!(format = %format, file = %file.display(), "loading dataset");
    let images = opts.images.as_deref();
    // Ground truth some formats carry beside the captions (Karpathy's `labels`), by clean path.
    let mut labels: HashMap<String, Labels> = HashMap::new();
    let mut kinds = None;
    let raw = match format {
        Format::Flickr8k => flickr8k::read(&file, images)?,
        Format::Karpathy => karpathy::read(&file, images, &mut labels, &mut kinds)?,
        Format::Coco => coco::read(&file, images)?,
        Format::Custom => custom::read(&file, images)?,
        Format::Csv => csv::read(&file, images)?,
        Format::Folder => folder::read(&file, images)?,
    };
    let mut dataset = finish(format, file, raw, opts)?;
    dataset.kinds = kinds;
    if !labels.is_empty() {
        for sample in &mut dataset.samples {
            sample.labels = labels.remove(&sample.path);
        }
    }
    Ok(dataset)
}

/// One caption as a reader found it.
#[derive(Debug, Clone)]
pub(crate) struct RawCaption {
    pub text: String,
    /// Where it is, e.g. "line 12" or "images[3].sentences[1]".
    pub location: String,
    /// The file it is in, when not the dataset file (folder sidecars).
    pub file: Option<PathBuf>,
}

/// One image entry (or one caption row) as a reader found it.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// The image path exactly as written in the dataset.
    pub path: String,
    pub captions: Vec<RawCaption>,
    pub split: Option<Split>,
    /// Where the entry is, e.g. "line 12" or "images[3]".
    pub location: String,
}

/// What to do with a second entry for the same image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Duplicates {
    /// Rows are captions: merge them (Flickr8k token file, CSV).
    Merge,
    /// Entries are images: a repeat is an error (Karpathy, COCO, custom).
    Refuse,
}

/// A reader's output, before the shared rules are applied.
#[derive(Debug)]
pub(crate) struct Raw {
    pub image_root: PathBuf,
    pub entries: Vec<RawEntry>,
    pub skipped: Vec<Skipped>,
    pub duplicates: Duplicates,
}

struct Pending {
    path: String,
    captions: Vec<String>,
    split: Option<Split>,
    location: String,
    split_location: String,
}

/// Applies the shared rules to a reader's output (see the module docs).
fn finish(format: Format, file: PathBuf, raw: Raw, opts: &LoadOptions) -> Result<Dataset> {
    let Raw {
        image_root,
        entries,
        mut skipped,
        duplicates,
    } = raw;
    let total_entries = entries.len();
    let pending = merge_entries(&file, &image_root, entries, duplicates)?;
    let kept = drop_captionless(pending, &mut skipped);
    let (present, missing) = if opts.captions_only {
        (kept, 0)
    } else {
        let (present, missing) = keep_found_images(&file, &image_root, kept, opts, &mut skipped)?;
        let present = if opts.check_images {
            keep_decodable_images(&file, &image_root, present, opts, &mut skipped)?
        } else {
            present
        };
        (present, missing)
    };
    if present.is_empty() {
        return Err(nothing_usable(
            file,
            &image_root,
            total_entries,
            missing,
            &skipped,
        ));
    }
    let assigned = assign_splits(&present, &opts.split);
    let samples = present
        .into_iter()
        .zip(assigned)
        .map(|(p, split)| Sample {
            path: p.path,
            captions: p.captions,
            split,
            labels: None,
        })
        .collect();
    Ok(Dataset {
        format,
        source: file,
        image_root,
        samples,
        skipped,
        kinds: None,
    })
}

/// Cleans every entry's path (refusing one that leaves the root), checks its captions, and merges
/// or refuses repeated entries of one image (see [`Duplicates`]), keeping the first entry's order.
fn merge_entries(
    file: &Path,
    image_root: &Path,
    entries: Vec<RawEntry>,
    duplicates: Duplicates,
) -> Result<Vec<Pending>> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let clean = clean_relative(&entry.path)
            .ok_or_else(|| escape_error(file, &entry.location, &entry.path, image_root))?;
        let captions = checked_captions(file, &clean, entry.captions)?;
        match by_path.get(&clean) {
            Some(&i) => {
                let first = &mut pending[i];
                if duplicates == Duplicates::Refuse {
                    return Err(Error::parse(
                        file,
                        Some(entry.location),
                        format!(
                            "duplicate entry for image {clean:?} (first at {}); give each image one entry with all its captions",
                            first.location
                        ),
                    ));
                }
                match (first.split, entry.split) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(Error::parse(
                            file,
                            Some(entry.location),
                            format!(
                                "image {clean:?} is put in split {b} here but in split {a} at {}; an image belongs to one split",
                                first.split_location
                            ),
                        ));
                    }
                    (None, Some(b)) => {
                        first.split = Some(b);
                        first.split_location = entry.location;
                    }
                    _ => {}
                }
                first.captions.extend(captions);
            }
            None => {
                by_path.insert(clean.clone(), pending.len());
                pending.push(Pending {
                    path: clean,
                    captions,
                    split: entry.split,
                    split_location: entry.location.clone(),
                    location: entry.location,
                });
            }
        }
    }
    Ok(pending)
}

/// The trimmed captions of image `clean`; an error names the first one with no token.
fn checked_captions(file: &Path, clean: &str, raw: Vec<RawCaption>) -> Result<Vec<String>> {
    let mut captions = Vec::with_capacity(raw.len());
    for c in raw {
        let text = c.text.trim();
        if tokenize(text).is_empty() {
            return Err(Error::parse(
                c.file.unwrap_or_else(|| file.to_path_buf()),
                Some(c.location),
                format!(
                    "caption {text:?} of image {clean:?} is empty after tokenising (it has no letters or digits); write a caption or remove it"
                ),
            ));
        }
        captions.push(text.to_string());
    }
    Ok(captions)
}

/// Moves the images without any caption into `skipped`.
fn drop_captionless(pending: Vec<Pending>, skipped: &mut Vec<Skipped>) -> Vec<Pending> {
    let mut kept = Vec::with_capacity(pending.len());
    for p in pending {
        if p.captions.is_empty() {
            skipped.push(Skipped {
                entry: p.path,
                reason: format!("no captions ({})", p.location),
            });
        } else {
            kept.push(p);
        }
    }
    kept
}

/// Keeps the images that exist inside the image root; a missing one is skipped (an error with
/// `strict`), one that resolves outside the root through a symlink is always an error. Returns
/// the images kept and how many were missing.
fn keep_found_images(
    file: &Path,
    image_root: &Path,
    kept: Vec<Pending>,
    opts: &LoadOptions,
    skipped: &mut Vec<Skipped>,
) -> Result<(Vec<Pending>, usize)> {
    if !image_root.is_dir() {
        return Err(Error::Dataset {
            path: file.to_path_buf(),
            message: format!(
                "image folder {} does not exist; give the folder the image paths are relative to with --images DIR",
                image_root.display()
            ),
        });
    }
    let root_canon = std::fs::canonicalize(image_root).map_err(|e| Error::io(image_root, e))?;
    let mut missing = 0usize;
    let mut present = Vec::with_capacity(kept.len());
    for p in kept {
        let full = image_root.join(&p.path);
        match resolve_in_root(&root_canon, &full) {
            Resolved::Inside => present.push(p),
            Resolved::Outside(target) => {
                return Err(Error::parse(
                    file,
                    Some(p.location),
                    format!(
                        "image path {:?} resolves to {}, outside the image root {} (a symlink pointing out); refused",
                        p.path,
                        target.display(),
                        image_root.display()
                    ),
                ));
            }
            Resolved::Missing(reason) => {
                if opts.strict {
                    return Err(Error::parse(
                        file,
                        Some(p.location),
                        format!("image {reason}; without --strict it would be skipped"),
                    ));
                }
                missing += 1;
                skipped.push(Skipped {
                    entry: p.path,
                    reason: format!("{reason} ({})", p.location),
                });
            }
        }
    }
    Ok((present, missing))
}

/// Decodes every image (in parallel) and keeps the ones that decode within the limits; the
/// others are skipped (an error with `strict`).
fn keep_decodable_images(
    file: &Path,
    image_root: &Path,
    present: Vec<Pending>,
    opts: &LoadOptions,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Pending>> {
    if present.is_empty() {
        return Ok(present);
    }
    let bar = crate::util::progress_bar(Some(present.len() as u64), "checking images");
    let problems = super::parallel::map_parallel(
        &present,
        super::parallel::default_threads(),
        Some(&bar),
        |p| {
            super::image::decode(&image_root.join(&p.path), &opts.limits)
                .err()
                .map(|e| e.to_string())
        },
    );
    bar.finish_and_clear();
    let mut good = Vec::with_capacity(present.len());
    for (p, problem) in present.into_iter().zip(problems) {
        match problem {
            None => good.push(p),
            Some(reason) if opts.strict => {
                return Err(Error::parse(
                    file,
                    Some(p.location),
                    format!("unreadable image: {reason}; without --strict it would be skipped"),
                ));
            }
            Some(reason) => skipped.push(Skipped {
                entry: p.path,
                reason: format!("{reason} ({})", p.location),
            }),
        }
    }
    Ok(good)
}

/// The error for a dataset that kept no image: empty, all images missing, or all skipped.
fn nothing_usable(
    file: PathBuf,
    image_root: &Path,
    total_entries: usize,
    missing: usize,
    skipped: &[Skipped],
) -> Error {
    let message = if total_entries == 0 {
        "has no entries: nothing to train on".to_string()
    } else if missing > 0 && missing == skipped.len() {
        format!(
            "none of its {missing} images were found under {}; give the image folder with --images DIR",
            image_root.display()
        )
    } else {
        let first = skipped
            .first()
            .map(|s| format!(" (first: {}: {})", s.entry, s.reason))
            .unwrap_or_default();
        format!("no usable images: all {} skipped{first}", skipped.len())
    };
    Error::Dataset {
        path: file,
        message,
    }
}

#[cfg(test)]
mod loader_tests;
