//! Keeping the vector store ([`super::vectors`]) on the tantivy commit it belongs to: loading it,
//! rebuilding it from tantivy's stored embeddings when the file does not match, applying each
//! commit's changes, and saving it.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use tantivy::schema::Value;
use tantivy::{DocAddress, SegmentOrdinal, TantivyDocument};

use super::schema::embedding_from_bytes;
use super::vectors::{VECTOR_FILE, VectorStore};
use super::{EmbeddedBackend, Opened};
use crate::error::{Error, Result};
use crate::search::{Document, VectorSpace, VectorStats};

/// While indexing, the vector file is saved at most this often (and at the end of the run): the
/// file is rewritten whole, so saving after every batch would cost time quadratic in its size.
/// A run killed in between leaves a file of an older commit, rebuilt on the next use.
const SAVE_EVERY: Duration = Duration::from_secs(30);

pub(super) type Vectors<'a> = MutexGuard<'a, Option<VectorStore>>;

impl EmbeddedBackend {
    pub(super) fn lock_vectors(&self) -> Vectors<'_> {
        self.vectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vector space in the index's marker (none when the index holds no vectors).
    pub(super) fn marker_space(&self) -> Result<Option<VectorSpace>> {
        if !self.path.join(super::MARKER_FILE).is_file() {
            return Ok(None);
        }
        Ok(self.read_marker()?.vector_space)
    }

    /// Records `space` as the index's (or checks it is the one recorded).
    pub(super) fn declare_space(&self, space: &VectorSpace) -> Result<()> {
        if space.dims == 0 {
            return Err(Error::Search(format!(
                "cannot index vectors of 0 values ({})",
                space.embedder
            )));
        }
        let mut state = self.lock();
        if self.exists() && self.path.join(super::MARKER_FILE).is_file() {
            let mut marker = self.read_marker()?;
            match &marker.vector_space {
                Some(stored) => stored.ensure_same(space, &self.describe())?,
                None => {
                    marker.vector_space = Some(space.clone());
                    self.write_marker(&marker)?;
                }
            }
        }
        state.space = Some(space.clone());
        Ok(())
    }

    /// The vector part of `--stats`: what the vector file's header says, and whether it matches
    /// the tantivy commit (read without loading the vectors). `None` without a vector space.
    pub(super) fn vector_stats(&self, opened: &Opened) -> Result<Option<VectorStats>> {
        let marker = self.read_marker()?;
        let Some(space) = marker.vector_space else {
            return Ok(None);
        };
        let opstamp = opened
            .index
            .load_metas()
            .map_err(|e| self.err("cannot read meta.json", e))?
            .opstamp;
        let file = self.path.join(VECTOR_FILE);
        let size_bytes = std::fs::metadata(&file).ok().map(|m| m.len());
        let (count, note) = match VectorStore::summary(&file) {
            Ok(summary) => {
                let note = if summary.index_id != marker.index_id {
                    Some(format!("{VECTOR_FILE} belongs to another index"))
                } else if summary.space != space {
                    Some(format!(
                        "{VECTOR_FILE} holds vectors of {}",
                        summary.space.embedder
                    ))
                } else if summary.opstamp != opstamp {
                    Some(format!(
                        "{VECTOR_FILE} matches commit {}, the index is at {opstamp}",
                        summary.opstamp
                    ))
                } else {
                    None
                };
                (Some(summary.count as u64), note)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Some(VectorStats {
            count,
            dims: space.dims,
            embedder: space.embedder,
            storage: "cosine, unit-length f32, exact scan".into(),
            size_bytes,
            in_sync: Some(note.is_none()),
            note: note.map(|n| format!("{n}: rebuilt from the stored embeddings on the next use")),
        }))
    }

    /// The vector store, matching tantivy's latest commit: the one in memory, else the file, else
    /// rebuilt from the stored embeddings (logged, and saved when the folder is writable).
    /// `None` when the index has no vector space.
    pub(super) fn synced_vectors(&self, opened: &Opened) -> Result<Vectors<'_>> {
        let marker = self.read_marker()?;
        let mut guard = self.lock_vectors();
        let Some(space) = marker.vector_space else {
            *guard = None;
            return Ok(guard);
        };
        let opstamp = opened
            .index
            .load_metas()
            .map_err(|e| self.err("cannot read meta.json", e))?
            .opstamp;
        let matches = |store: &VectorStore| {
            store.opstamp == opstamp && store.index_id == marker.index_id && store.space == space
        };
        if guard.as_ref().is_some_and(matches) {
            return Ok(guard);
        }
        let file = self.path.join(VECTOR_FILE);
        let why = match VectorStore::load(&file) {
            Ok(store) if matches(&store) => {
                *guard = Some(store);
                return Ok(guard);
            }
            Ok(store) if store.index_id != marker.index_id => format!(
                "{} belongs to another index (id {}, this one is {})",
                file.display(),
                store.index_id,
                marker.index_id
            ),
            Ok(store) if store.space != space => format!(
                "{} holds vectors of {}, the index's are {}",
                file.display(),
                store.space.embedder,
                space.embedder
            ),
            Ok(store) => format!(
                "{} matches the index's commit {}, not its latest, {opstamp} (was a run \
                 interrupted?)",
                file.display(),
                store.opstamp
            ),
            Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                format!("{} is missing", file.display())
            }
            Err(e) => e.to_string(),
        };
        let started = Instant::now();
        let mut store = self.rebuild(opened, space, &marker.index_id, opstamp)?;
        if store.is_empty() && opstamp == 0 {
            // A new index: nothing to rebuild, nothing to say.
            *guard = Some(store);
            return Ok(guard);
        }
        tracing::warn!(
            "{why}: rebuilt the image vectors from the index's stored embeddings ({} vectors in {:.1} s)",
            store.len(),
            started.elapsed().as_secs_f64()
        );
        match store.save(&file) {
            Ok(()) => {
                *self.saved_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now())
            }
            Err(e) => tracing::warn!("cannot save the rebuilt vectors (kept in memory): {e}"),
        }
        *guard = Some(store);
        Ok(guard)
    }

    /// A store of every live document's stored embedding, as of tantivy's latest commit.
    fn rebuild(
        &self,
        opened: &Opened,
        space: VectorSpace,
        index_id: &str,
        opstamp: u64,
    ) -> Result<VectorStore> {
        opened
            .reader
            .reload()
            .map_err(|e| self.err("cannot reload", e))?;
        let searcher = opened.reader.searcher();
        let f = opened.fields;
        let mut store = VectorStore::new(space, index_id, opstamp)?;
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                let stored: TantivyDocument = searcher
                    .doc(DocAddress::new(ordinal as SegmentOrdinal, doc))
                    .map_err(|e| self.err("cannot read a document", e))?;
                let Some(bytes) = stored.get_first(f.embedding).and_then(|v| v.as_bytes()) else {
                    continue;
                };
                let path = stored
                    .get_first(f.path)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                match embedding_from_bytes(bytes) {
                    Some(vector) if vector.len() == store.space.dims => {
                        store.upsert(path, &vector)?
                    }
                    _ => tracing::warn!(
                        "{}: the stored embedding of {path} is not {} floats; it is left out \
                         of visual search (index the image again)",
                        self.describe(),
                        store.space.dims
                    ),
                }
            }
        }
        Ok(store)
    }

    /// After tantivy committed `docs` (indexed) and `deleted` (paths) at `opstamp`: the same
    /// changes to the store. A store that cannot follow is forgotten (rebuilt on next use).
    pub(super) fn apply_commit(&self, docs: &[Document], deleted: &[String], opstamp: u64) {
        let mut guard = self.lock_vectors();
        let Some(store) = guard.as_mut() else {
            return;
        };
        let applied = (|| -> Result<()> {
            for doc in docs {
                match &doc.embedding {
                    Some(vector) => store.upsert(&doc.path, vector)?,
                    None => {
                        store.remove(&doc.path)?;
                    }
                }
            }
            for path in deleted {
                store.remove(path)?;
            }
            Ok(())
        })();
        match applied {
            Ok(()) => {
                store.opstamp = opstamp;
                store.dirty = true;
            }
            Err(e) => {
                tracing::warn!("{}: {e}; the vectors will be rebuilt", self.describe());
                *guard = None;
                return;
            }
        }
        let mut saved_at = self.saved_at.lock().unwrap_or_else(|p| p.into_inner());
        if saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            // Counted from the first commit, so a short run saves once, at its end.
            if saved_at.is_none() {
                *saved_at = Some(Instant::now());
            } else {
                drop(saved_at);
                drop(guard);
                self.save_vectors_if_changed();
            }
        }
    }

    /// Saves the store if it changed since it was loaded or saved (a failure is logged: the file
    /// is rebuilt on next use).
    pub(super) fn save_vectors_if_changed(&self) {
        let mut guard = self.lock_vectors();
        if let Some(store) = guard.as_mut()
            && store.dirty
        {
            match store.save(&self.path.join(VECTOR_FILE)) {
                Ok(()) => {
                    *self.saved_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now())
                }
                Err(e) => tracing::warn!(
                    "{}: cannot save the image vectors ({e}); they will be rebuilt on next use",
                    self.describe()
                ),
            }
        }
    }
}
