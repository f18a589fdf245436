//! Dataset loaders, one file per format, plus format detection.

use serde::{Deserialize, Serialize};

/// The dataset formats capsearch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
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
