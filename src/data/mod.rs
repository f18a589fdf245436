//! Datasets: the one in-memory form every loader produces, and the pieces that feed a model.
//!
//! A [`Dataset`] is a list of [`Sample`]s (an image path relative to the image root, 1..n reference
//! captions, and a [`Split`]), plus what was skipped while loading. Loaders live in [`formats`].

pub mod batch;
pub mod check;
pub mod formats;
pub mod image;
pub mod image_files;
pub mod labels;
pub mod parallel;
pub mod scenes;
pub mod shapes;
pub mod text;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which part of the dataset a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's name as used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parses the split names used by the formats we read. Karpathy's `restval` counts as train,
    /// Flickr8k's `dev` as val.
    pub fn parse(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" | "restval" => Some(Split::Train),
            "val" | "valid" | "validation" | "dev" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::parse(s).ok_or_else(|| format!("unknown split {s:?}: expected train, val or test"))
    }
}

/// One image and its reference captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Path of the image relative to the dataset's image root, with `/` separators.
    /// It is also the image's identity (search document id, report key).
    pub path: String,
    /// Reference captions as written in the dataset (raw, untokenised). Never empty.
    pub captions: Vec<String>,
    pub split: Split,
    /// What the image shows (kinds, boxes, setting), for generated datasets that record it
    /// (Karpathy JSON's `labels` field); `None` for datasets without ground truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<labels::Labels>,
}

/// An entry that a loader left out, and why (missing image, unreadable image, empty captions...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The image path (or entry description) at fault.
    pub entry: String,
    pub reason: String,
}

/// A loaded dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    /// The format it was read as.
    pub format: formats::Format,
    /// The file or folder it was read from.
    pub source: PathBuf,
    /// Folder that every [`Sample::path`] is relative to.
    pub image_root: PathBuf,
    pub samples: Vec<Sample>,
    /// Entries left out while loading.
    pub skipped: Vec<Skipped>,
    /// How captions name each labelled kind (Karpathy JSON's top-level `kinds`, written by the
    /// generators); `None` for datasets without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<labels::Lexicon>,
}

impl Dataset {
    /// Absolute (or root-relative) path of a sample's image.
    pub fn image_path(&self, sample: &Sample) -> PathBuf {
        self.image_root.join(&sample.path)
    }

    /// Samples of one split, in dataset order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.split == split)
    }

    /// Number of samples in a split.
    pub fn count(&self, split: Split) -> usize {
        self.split(split).count()
    }

    /// The dataset's name: its file stem or folder name.
    pub fn name(&self) -> String {
        name_of(&self.source)
    }
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .or_else(|| path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".to_string())
}
