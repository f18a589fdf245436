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
pub mod flickr8k;
pub mod folder;
pub mod karpathy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
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

/// How entries without a split are divided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// Seed of the shuffle that assigns splits.
    pub seed: u64,
    /// Relative share of the training split.
    pub train: f64,
    /// Relative share of the validation split.
    pub val: f64,
    /// Relative share of the test split.
    pub test: f64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            seed: 42,
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
    }
}

impl SplitOptions {
    /// Checks that the ratios are finite, non-negative and not all zero.
    pub fn validate(&self) -> Result<()> {
        let r = [self.train, self.val, self.test];
        if r.iter().any(|x| !x.is_finite() || *x < 0.0) || r.iter().sum::<f64>() <= 0.0 {
            return Err(Error::Config {
                field: "split ratios".into(),
                message: format!(
                    "train/val/test ratios {}/{}/{} must be non-negative numbers, not all zero",
                    self.train, self.val, self.test
                ),
            });
        }
        Ok(())
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

/// Normalises a dataset image path: `/` separators, no `.` components. `None` when it is empty,
/// absolute, or has a `..` component (it could leave the image root).
pub fn clean_relative(path: &str) -> Option<String> {
    let unified = path.trim().replace('\\', "/");
    if unified.starts_with('/') {
        return None;
    }
    // A Windows drive (`C:`) is absolute too.
    let b = unified.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return None;
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

fn escape_error(file: &Path, location: &str, path: &str, root: &Path) -> Error {
    let why = if path.trim().is_empty() {
        "is empty".to_string()
    } else {
        format!("escapes the image root {}", root.display())
    };
    Error::parse(
        file,
        Some(location.to_string()),
        format!(
            "image path {path:?} {why}; refused: use a path relative to the image root without `..`"
        ),
    )
}

/// Where an existing image file actually lives, and whether that is inside the root.
enum Resolved {
    Inside,
    Outside(PathBuf),
    Missing(String),
}

fn resolve_in_root(root_canon: &Path, full: &Path) -> Resolved {
    match std::fs::canonicalize(full) {
        Ok(c) if !c.starts_with(root_canon) => Resolved::Outside(c),
        Ok(c) if c.is_dir() => {
            Resolved::Missing(format!("{} is a folder, not an image", full.display()))
        }
        Ok(_) => Resolved::Inside,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Resolved::Missing(format!("missing: {} not found", full.display()))
        }
        Err(e) => Resolved::Missing(format!("unreadable: {}: {e}", full.display())),
    }
}

/// Resolves a dataset image path under `root`, refusing any path that leaves it lexically
/// (`..`, absolute) or through a symlink. Used by loaders and by anything that opens a
/// dataset image later (the image store, the web server).
pub fn resolve_image(root: &Path, path: &str) -> Result<PathBuf> {
    let refuse = || Error::Image {
        path: PathBuf::from(path),
        message: format!("escapes the image root {}; refused", root.display()),
    };
    let clean = clean_relative(path).ok_or_else(refuse)?;
    let full = root.join(&clean);
    let root_canon = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    match resolve_in_root(&root_canon, &full) {
        Resolved::Outside(_) => Err(refuse()),
        Resolved::Inside | Resolved::Missing(_) => Ok(full),
    }
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

/// Keeps given splits; gives the others a split from a seeded shuffle of their paths (sorted
/// first, so the result does not depend on entry order).
fn assign_splits(items: &[Pending], opts: &SplitOptions) -> Vec<Split> {
    let mut out: Vec<Option<Split>> = items.iter().map(|p| p.split).collect();
    let mut free: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    if free.is_empty() {
        return out.into_iter().map(|s| s.unwrap_or(Split::Train)).collect();
    }
    free.sort_by(|&a, &b| items[a].path.cmp(&items[b].path));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    free.shuffle(&mut rng);
    let split = split_counts(free.len(), opts);
    for (k, &i) in free.iter().enumerate() {
        out[i] = Some(if k < split[0] {
            Split::Train
        } else if k < split[0] + split[1] {
            Split::Val
        } else {
            Split::Test
        });
    }
    out.into_iter().map(|s| s.unwrap_or(Split::Train)).collect()
}

/// The split of item `i` when the first `counts[0]` items train, the next `counts[1]` validate and
/// the rest test (how the generators lay out their images).
pub fn split_of_index(i: usize, counts: [usize; 3]) -> Split {
    if i < counts[0] {
        Split::Train
    } else if i < counts[0] + counts[1] {
        Split::Val
    } else {
        Split::Test
    }
}

/// Train/val/test counts for `n` items: rounded shares, at least one training item when there is
/// any item and a non-zero training share.
pub fn split_counts(n: usize, opts: &SplitOptions) -> [usize; 3] {
    let total = opts.train + opts.val + opts.test;
    let share = |r: f64| ((n as f64) * r / total).round() as usize;
    let mut val = share(opts.val).min(n);
    let mut test = share(opts.test).min(n - val);
    if n > 0 && opts.train > 0.0 && val + test == n {
        // val + test == n > 0, so the larger of the two is positive.
        if test >= val {
            test -= 1;
        } else {
            val -= 1;
        }
    }
    [n - val - test, val, test]
}

/// Parses JSON with errors that name the line and column, and a clear message for the original
/// project's Python-style single-quoted files.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    file: &Path,
    bytes: &[u8],
    what: &str,
) -> Result<T> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = String::from_utf8_lossy(bytes);
            if e.is_syntax()
                && let Some((line, column)) = python_quote_position(&text)
            {
                return Err(Error::parse(
                    file,
                    Some(format!("line {line}, column {column}")),
                    "uses Python single quotes ('...') where JSON needs double quotes (\"...\"); \
                     the original project's sample custom_dataset.json was written this way. \
                     Replace the single quotes around keys and strings with double quotes",
                ));
            }
            let location = Some(format!("line {}, column {}", e.line(), e.column()));
            let message = if e.is_data() {
                format!("not a valid {what}: {e}")
            } else if e.is_eof() {
                format!("malformed JSON: the file ends early ({e})")
            } else {
                format!("malformed JSON: {e}")
            };
            Err(Error::parse(file, location, message))
        }
    }
}

/// Line and column (1-based, in characters) of the first single quote outside a JSON string
/// that opens a key or value (follows `{`, `[`, `,` or `:`).
fn python_quote_position(text: &str) -> Option<(usize, usize)> {
    let (mut line, mut column) = (1, 0);
    let mut in_string = false;
    let mut escaped = false;
    let mut prev = None;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '\'' && matches!(prev, None | Some('{' | '[' | ',' | ':')) {
            return Some((line, column));
        }
        if !c.is_whitespace() {
            prev = Some(c);
        }
    }
    None
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a UTF-8 text file (a leading BOM is dropped), naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            Err(Error::parse(
                path,
                Some(format!("line {line}")),
                "not UTF-8 text; save the file as UTF-8",
            ))
        }
    }
}

/// The folder a dataset file sits in.
pub(crate) fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod loader_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_paths() {
        assert_eq!(clean_relative("a/b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("./a//b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("a\\b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("../../etc/passwd"), None);
        assert_eq!(clean_relative("a/../../b"), None);
        assert_eq!(clean_relative("/etc/passwd"), None);
        assert_eq!(clean_relative("C:\\x.jpg"), None);
        assert_eq!(clean_relative(""), None);
        assert_eq!(clean_relative("."), None);
    }

    #[test]
    fn split_counts_round_and_keep_a_train_item() {
        let o = SplitOptions::default();
        assert_eq!(split_counts(100, &o), [80, 10, 10]);
        assert_eq!(split_counts(10, &o), [8, 1, 1]);
        assert_eq!(split_counts(1, &o), [1, 0, 0]);
        assert_eq!(split_counts(0, &o), [0, 0, 0]);
        let odd = SplitOptions {
            train: 0.0,
            val: 1.0,
            test: 1.0,
            seed: 1,
        };
        assert_eq!(split_counts(4, &odd), [0, 2, 2]);
        assert!(SplitOptions { train: -1.0, ..o }.validate().is_err());
    }

    #[test]
    fn python_quotes_are_found() {
        assert_eq!(python_quote_position("{\n  'images': []}"), Some((2, 3)));
        assert_eq!(python_quote_position("{\"a\": \"it's\"}"), None);
        assert_eq!(python_quote_position("{\"a\": ['x']}"), Some((1, 8)));
    }
}
