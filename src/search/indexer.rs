//! Captioning images with a model and indexing the captions: the one implementation behind
//! `capsearch index --images` and the web app's `POST /api/images`.
//!
//! This is the part of [`crate::search`] that knows the model ([`CaptionEngine`], [`Generated`]);
//! the rest of the module only sees [`Document`]s.

use super::shard::Shard;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::{DocKind, Document, SearchBackend, VectorSpace};
use crate::data::image_files::{Unreadable, list_images};
use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::inference::{CaptionEngine, Generated};

/// Images are captioned this many at a time by [`index_folder`].
pub const CAPTION_BATCH: usize = 32;

/// What indexing captioned images did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexReport {
    /// Documents written.
    pub written: usize,
    /// Images skipped because they are indexed already with the same model.
    pub already_indexed: usize,
    /// Images that could not be read, captioned or indexed, and why.
    pub failed: Vec<Unreadable>,
}

/// The vector space of an engine's embeddings ([`CaptionEngine::embedder`]).
pub fn vector_space(engine: &CaptionEngine) -> VectorSpace {
    let embedder = engine.embedder();
    VectorSpace {
        dims: embedder.dims,
        embedder: embedder.name,
    }
}

/// Indexes the captions one model wrote, batch by batch: one [`Document`] per image, keyed by
/// the path given, with the image's embedding when [`CaptionIndexer::with_vectors`] named their
/// space and the backend stores vectors. An empty caption or a failed captioning is recorded in
/// [`IndexReport::failed`], not indexed.
pub struct CaptionIndexer<'a> {
    backend: &'a dyn SearchBackend,
    model_id: String,
    report: IndexReport,
    /// The embeddings' space, until it is declared to the backend on the first batch.
    space: Option<VectorSpace>,
    /// Whether documents carry their embeddings (declared, and the backend stores vectors).
    vectors: Option<bool>,
}

impl<'a> CaptionIndexer<'a> {
    pub fn new(backend: &'a dyn SearchBackend, model_id: impl Into<String>) -> Self {
        CaptionIndexer {
            backend,
            model_id: model_id.into(),
            report: IndexReport::default(),
            space: None,
            vectors: None,
        }
    }

    /// Indexes each image's embedding too, as vectors of `space` (see [`vector_space`]). The
    /// space is declared to the backend with the first batch: an index holding another space
    /// refuses it then. A backend that stores no vectors gets captions only (logged once).
    pub fn with_vectors(mut self, space: VectorSpace) -> Self {
        self.space = Some(space);
        self
    }

    fn vectors(&mut self) -> Result<bool> {
        if let Some(on) = self.vectors {
            return Ok(on);
        }
        let on = match &self.space {
            Some(space) => {
                let stored = self.backend.set_vector_space(space)?;
                if !stored {
                    tracing::warn!(
                        "the {} backend stores no image vectors: indexing captions only",
                        self.backend.name()
                    );
                }
                stored
            }
            None => false,
        };
        self.vectors = Some(on);
        Ok(on)
    }

    /// Indexes one batch of `(path, captioning result)`. Returns the documents written; a backend
    /// failure stops here (the batches before it stay indexed).
    pub fn add(&mut self, batch: Vec<(String, Result<Generated>)>) -> Result<usize> {
        let vectors = self.vectors()?;
        let mut docs = Vec::with_capacity(batch.len());
        for (path, result) in batch {
            match result {
                Ok(g) if !g.caption.trim().is_empty() => {
                    let mut doc = Document::from_model(path, g.caption, &self.model_id);
                    if vectors {
                        doc.embedding = g.embedding;
                    }
                    docs.push(doc)
                }
                Ok(_) => self.report.failed.push(Unreadable {
                    path: path.into(),
                    reason: "the model produced an empty caption".into(),
                }),
                Err(e) => self.report.failed.push(Unreadable {
                    path: path.into(),
                    reason: e.to_string(),
                }),
            }
        }
        let written = if docs.is_empty() {
            0
        } else {
            self.backend.index(&docs)?
        };
        self.report.written += written;
        Ok(written)
    }

    /// Records images that were not captioned at all (unreadable entries of a folder).
    pub fn add_failures(&mut self, failures: impl IntoIterator<Item = Unreadable>) {
        self.report.failed.extend(failures);
    }

    /// Ends the run ([`SearchBackend::finish`]) and returns what it did.
    pub fn finish(self) -> Result<IndexReport> {
        self.backend.finish()?;
        Ok(self.report)
    }
}

/// Captions every image in `dir` (and its subfolders) with `engine` and indexes the captions,
/// each under its path as listed (`dir` joined with the file's path in it). Images already
/// indexed with this model are skipped, so an interrupted run resumes. `progress` gets its
/// length set and advances per image. Unreadable entries and images that fail are reported in
/// the [`IndexReport`], not errors; a backend failure is an error, and what was indexed before it
/// stays.
pub fn index_folder(
    backend: &dyn SearchBackend,
    engine: &CaptionEngine,
    dir: &Path,
    options: DecodeOptions,
    shard: Option<Shard>,
    progress: &ProgressBar,
) -> Result<IndexReport> {
    if !dir.is_dir() {
        return Err(Error::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        });
    }
    let mut listed = list_images(&[dir.to_path_buf()])?;
    if listed.images.is_empty() && listed.unreadable.is_empty() {
        return Err(Error::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no images found"),
        });
    }
    if let Some(shard) = shard {
        shard.retain(dir, &mut listed);
    }
    let model_id = engine.model_id().to_string();
    let keys: Vec<String> = listed
        .images
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let done = backend.indexed_paths(&keys, DocKind::Model, &model_id)?;
    let todo: Vec<PathBuf> = listed
        .images
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !done.contains(*key))
        .map(|(p, _)| p.clone())
        .collect();
    let mut indexer = CaptionIndexer::new(backend, model_id).with_vectors(vector_space(engine));
    // Declared before anything is skipped: an index of another vector space (another backbone,
    // or embeddings standardised since) refuses the run even when every image is indexed with
    // this model already, instead of reporting "already indexed" and failing at search time.
    indexer.vectors()?;
    indexer.report.already_indexed = listed.images.len() - todo.len();
    indexer.add_failures(listed.unreadable);
    progress.set_length(todo.len() as u64);
    for chunk in todo.chunks(CAPTION_BATCH) {
        let results = engine.caption_paths(chunk, options, CAPTION_BATCH);
        let batch = chunk
            .iter()
            .map(|p| p.display().to_string())
            .zip(results)
            .collect();
        indexer.add(batch)?;
        progress.inc(chunk.len() as u64);
    }
    indexer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::embedded::EmbeddedBackend;

    fn generated(caption: &str) -> Result<Generated> {
        Ok(Generated {
            caption: caption.into(),
            logprob: -1.0,
            embedding: None,
        })
    }

    #[test]
    fn indexes_good_captions_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("index"));
        let mut indexer = CaptionIndexer::new(&backend, "m1");
        let written = indexer
            .add(vec![
                ("a.png".into(), generated("a red square")),
                ("b.png".into(), generated("  ")),
                ("c.png".into(), Err(Error::Internal("boom".into()))),
            ])
            .unwrap();
        assert_eq!(written, 1);
        let report = indexer.finish().unwrap();
        assert_eq!(report.written, 1);
        let failed: Vec<_> = report.failed.iter().map(|f| f.path.clone()).collect();
        assert_eq!(failed, [PathBuf::from("b.png"), PathBuf::from("c.png")]);
        assert!(report.failed[0].reason.contains("empty caption"));
        assert!(backend.contains("a.png", DocKind::Model, "m1").unwrap());
        assert!(!backend.contains("b.png", DocKind::Model, "m1").unwrap());
    }
}
