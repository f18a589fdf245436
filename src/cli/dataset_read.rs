//! How a command reads the dataset it names: `--format` and `--images`, flattened beside the
//! command's own `--dataset` (or `--references`) into every command that loads one, with the one
//! load call and its error context.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::data::Dataset;
use crate::data::formats::{self, Format, LoadOptions};

/// `--format` and `--images`: how to read a dataset file.
#[derive(Debug, Clone, Default, Args)]
pub struct DatasetReadArgs {
    /// Read the dataset as this format instead of detecting it.
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<Format>::new())]
    pub format: Option<Format>,
    /// Folder the dataset's image paths are relative to, when the format does not imply it.
    #[arg(long)]
    pub images: Option<PathBuf>,
}

impl DatasetReadArgs {
    /// The loader's options these flags give (everything else at its default).
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            format: self.format,
            images: self.images.clone(),
            ..Default::default()
        }
    }

    /// Loads the dataset at `path`; an error says which file it was loading.
    pub fn load(&self, path: &Path) -> Result<Dataset> {
        formats::load(path, &self.options())
            .with_context(|| format!("loading the dataset {}", path.display()))
    }
}
