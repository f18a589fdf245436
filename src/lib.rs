//! capsearch: train and evaluate image captioners, and search images by their captions.
//!
//! The data flows one way: [`data`] loads datasets and prepares batches, [`model`] holds the
//! captioner, [`train`] fits it, [`eval`] scores it, [`search`] indexes captions, and [`cli`] is
//! a thin front end. See `ARCHITECTURE.md` at the repository root.

pub mod bench;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod import;
pub mod model;
pub mod search;
pub mod train;
pub mod util;
pub mod web;

pub use error::{Error, Result};
