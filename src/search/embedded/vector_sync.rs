//! Keeping the vector store ([`super::vectors`]) on the tantivy commit it belongs to: loading it,
//! repairing or rebuilding it from tantivy's stored embeddings when the file does not match,
//! applying each commit's changes, and saving it.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use tantivy::schema::Value;
use tantivy::{DocAddress, SegmentOrdinal, TantivyDocument};

use super::vectors::{ADD_BATCH, EXACT_BELOW, Unit, VECTOR_FILE, VectorStore};
use super::{EmbeddedBackend, Opened};
use crate::error::{Error, Result};
use crate::search::{Document, VectorSpace, VectorStats};

/// While indexing, the vector file is saved at most this often (and at the end of the run): the
/// file is rewritten whole, so saving after every batch would cost time quadratic in its size.
/// A run killed in between leaves a file of an older commit, repaired on the next use.
const SAVE_EVERY: Duration = Duration::from_secs(30);
/// ... and at most once per this many times the last save took (a 1M-vector graph is 2.8 GB to
/// write), so saving costs at most about a twentieth of an indexing run.
const SAVE_SPACING: u32 = 20;

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
    /// the tantivy commit (read without loading the graph). `None` without a vector space.
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
        let mut storage = self.storage;
        let (count, note) = match VectorStore::summary(&file) {
            Ok(summary) => {
                storage = summary.storage;
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
            storage: format!(
                "cosine, unit-length {storage}, usearch HNSW graph (M = {}); exact scan below \
                 {EXACT_BELOW} vectors",
                super::vectors::CONNECTIVITY
            ),
            size_bytes,
            in_sync: Some(note.is_none()),
            note: note.map(|n| {
                format!("{n}: repaired or rebuilt from the stored embeddings on the next use")
            }),
        }))
    }

    /// The vector store, matching tantivy's latest commit: the one in memory, else the file (as
    /// saved, or repaired when it is of an older commit), else rebuilt from the stored embeddings
    /// (repairs and rebuilds are logged, and saved when the folder is writable). `None` when the
    /// index has no vector space.
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
        let same_index =
            |store: &VectorStore| store.index_id == marker.index_id && store.space == space;
        if guard
            .as_ref()
            .is_some_and(|store| same_index(store) && store.opstamp == opstamp)
        {
            return Ok(guard);
        }
        let file = self.path.join(VECTOR_FILE);
        let (start, why) = match VectorStore::load(&file) {
            Ok(store) if same_index(&store) && store.opstamp == opstamp => {
                *guard = Some(store);
                return Ok(guard);
            }
            Ok(store) if same_index(&store) => {
                let why = format!(
                    "{} matches the index's commit {}, not its latest, {opstamp} (was a run \
                     interrupted?)",
                    file.display(),
                    store.opstamp
                );
                (Some(store), why)
            }
            Ok(store) if store.index_id != marker.index_id => {
                let why = format!(
                    "{} belongs to another index (id {}, this one is {})",
                    file.display(),
                    store.index_id,
                    marker.index_id
                );
                (None, why)
            }
            Ok(store) => {
                let why = format!(
                    "{} holds vectors of {} ({} values), the index's are {} ({} values)",
                    file.display(),
                    store.space.embedder,
                    store.space.dims,
                    space.embedder,
                    space.dims
                );
                (None, why)
            }
            Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                (None, format!("{} is missing", file.display()))
            }
            Err(e) => (None, e.to_string()),
        };
        let started = Instant::now();
        let repairing = start.is_some();
        let mut store = match start {
            Some(store) => store,
            None => VectorStore::new(space, self.storage, &marker.index_id, opstamp)?,
        };
        let changes = self.reconcile(opened, &mut store)?;
        store.opstamp = opstamp;
        if store.is_empty() && opstamp == 0 {
            // A new index: nothing to rebuild, nothing to say.
            *guard = Some(store);
            return Ok(guard);
        }
        tracing::warn!(
            "{why}: {} the image vectors from the index's stored embeddings ({} vectors; {} \
             added or replaced, {} removed; {:.1} s)",
            if repairing { "repaired" } else { "rebuilt" },
            store.len(),
            changes.0,
            changes.1,
            started.elapsed().as_secs_f64()
        );
        store.dirty = true;
        *guard = Some(store);
        drop(guard);
        self.save_vectors_if_changed();
        Ok(self.lock_vectors())
    }

    /// The `count` paths nearest to `vector` by an exact scan of every stored vector, whatever
    /// the index's size, with their cosine similarity (what `bench search` measures the graph
    /// against). An error when the index holds no vectors.
    pub fn exact_nearest(&self, vector: &[f32], count: usize) -> Result<Vec<(String, f32)>> {
        let opened = self.fresh_reader()?;
        let guard = self.synced_vectors(&opened)?;
        let store = guard
            .as_ref()
            .ok_or_else(|| Error::Search(format!("{} holds no image vectors", self.describe())))?;
        store.nearest_by(vector, count, true)
    }

    /// Memory the vector graph holds in this process (vectors and links), in bytes; `None`
    /// before it is loaded.
    pub fn vector_memory_bytes(&self) -> Option<usize> {
        self.lock_vectors().as_ref().map(VectorStore::memory_bytes)
    }

    /// Brings `store` in line with every live document's stored embedding as of tantivy's latest
    /// commit: adds what it lacks, replaces what differs, removes what tantivy no longer has.
    /// Returns (added or replaced, removed).
    fn reconcile(&self, opened: &Opened, store: &mut VectorStore) -> Result<(usize, usize)> {
        opened
            .reader
            .reload()
            .map_err(|e| self.err("cannot reload", e))?;
        let searcher = opened.reader.searcher();
        let f = opened.fields;
        let bar = crate::util::progress_bar(
            Some(searcher.num_docs()),
            "checking the image vectors against the index",
        );
        let mut seen = vec![false; store.key_bound() as usize];
        let mut pending: Vec<(String, Unit)> = Vec::new();
        let mut changed = 0;
        let flush = |store: &mut VectorStore, pending: &mut Vec<(String, Unit)>| {
            let items: Vec<(&str, &Unit)> = pending.iter().map(|(p, u)| (p.as_str(), u)).collect();
            let result = store.upsert_units(&items);
            pending.clear();
            result
        };
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                bar.inc(1);
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
                let unit = match Unit::from_bytes(bytes) {
                    Some(unit) if unit.len() == store.space.dims => unit,
                    _ => {
                        tracing::warn!(
                            "{}: the stored embedding of {path} is not {} f16 values; it is left \
                             out of visual search (index the image again)",
                            self.describe(),
                            store.space.dims
                        );
                        continue;
                    }
                };
                if let Some(key) = store.key(path)
                    && let Some(mark) = seen.get_mut(key as usize)
                {
                    *mark = true;
                }
                if !store.holds(path, &unit) {
                    pending.push((path.to_string(), unit));
                    changed += 1;
                    if pending.len() >= ADD_BATCH {
                        flush(store, &mut pending)?;
                    }
                }
            }
        }
        flush(store, &mut pending)?;
        let removed = store.remove_unseen(&seen)?;
        bar.finish_and_clear();
        Ok((changed, removed))
    }

    /// After tantivy committed `docs` (indexed; their unit vectors in `units`, in order) and
    /// `deleted` (paths) at `opstamp`: the same changes to the store. A store that cannot follow
    /// is forgotten (repaired from the file or rebuilt on next use).
    pub(super) fn apply_commit(
        &self,
        docs: &[Document],
        units: &[Option<Unit>],
        deleted: &[String],
        opstamp: u64,
    ) {
        let mut guard = self.lock_vectors();
        let Some(store) = guard.as_mut() else {
            return;
        };
        let applied = (|| -> Result<()> {
            let mut items: Vec<(&str, &Unit)> = Vec::with_capacity(docs.len());
            for (doc, unit) in docs.iter().zip(units) {
                match unit {
                    Some(unit) => items.push((&doc.path, unit)),
                    None => {
                        store.remove(&doc.path)?;
                    }
                }
            }
            store.upsert_units(&items)?;
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
        match *saved_at {
            // Counted from the first commit, so a short run saves once, at its end.
            None => *saved_at = Some((Instant::now(), Duration::ZERO)),
            Some((at, took)) if at.elapsed() >= SAVE_EVERY.max(took * SAVE_SPACING) => {
                drop(saved_at);
                drop(guard);
                self.save_vectors_if_changed();
            }
            Some(_) => {}
        }
    }

    /// Saves the store if it changed since it was loaded or saved (a failure is logged: the file
    /// is repaired or rebuilt on next use).
    pub(super) fn save_vectors_if_changed(&self) {
        let mut guard = self.lock_vectors();
        if let Some(store) = guard.as_mut()
            && store.dirty
        {
            let started = Instant::now();
            match store.save(&self.path.join(VECTOR_FILE)) {
                Ok(()) => {
                    *self.saved_at.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((Instant::now(), started.elapsed()))
                }
                Err(e) => tracing::warn!(
                    "{}: cannot save the image vectors ({e}); they will be repaired on next use",
                    self.describe()
                ),
            }
        }
    }
}
