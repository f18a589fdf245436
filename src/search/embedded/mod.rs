//! The embedded backend: a tantivy index in a folder (`--index-path`, default `./index/`).
//!
//! Schema: `caption` (English-analysed text, stored, one value per caption), `path` (raw string,
//! stored and fast; the document's key, and the tie-breaker between equal scores), `kind`, `model` and `dataset` (raw strings, stored) and `timestamp`
//! (stored i64, ms since the epoch), `embedding` (stored bytes: the image vector, unit length in
//! f16, when indexed with one). The folder also holds `capsearch-index.json`, which says what
//! wrote it, the index's id and the vector space of its embeddings; capsearch refuses to write
//! into, or delete, a folder without it. `vectors.bin` holds the embeddings as a usearch HNSW
//! graph, kept to tantivy's commit (see [`vectors`]).
//!
//! Writes take tantivy's writer lock, held from the first write until [`SearchBackend::finish`] (or
//! until the backend is dropped), so two processes cannot index into one folder at once (the second
//! gets an error saying so). Readers never take it: the web server can search while
//! `capsearch index` runs. A backend sees its own writes at once; another process's commits
//! reach its queries within about a second (tantivy's file watcher), and its `count`, `stats`
//! and `indexed_paths` at once (they reload first).
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the backend: opening and creating the folder, its marker, the writer lock |
//! | `schema.rs` | the tantivy schema and its fields |
//! | `collector.rs` | `TopScores`, the collector that ranks every match |
//! | `backend.rs` | the [`SearchBackend`] operations |
//! | `vectors.rs` | `VectorStore`: the embeddings' usearch graph in `vectors.bin`; `Unit`, the stored f16 vector |
//! | `vector_sync.rs` | loading, repairing or rebuilding, and saving the vector store so it matches the tantivy commit |

mod backend;
mod collector;
mod schema;
mod vector_sync;
pub mod vectors;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::directory::error::LockError;
use tantivy::query::Query;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyError};

use crate::error::{Error, Result};
use crate::search::analysis::{ANALYZER_NAME, english_analyzer};
use crate::search::missing_index;
use schema::{Fields, schema};

/// The file that marks a folder as a capsearch index.
pub const MARKER_FILE: &str = "capsearch-index.json";
/// Bumped when the schema changes; an index with another version is refused.
/// 2: the `embedding` field. 3: `path` is a fast field (ties broken by path). 4: `embedding` holds
/// the unit-length vector in f16 (was f32), and `vectors.bin` is a usearch graph.
const SCHEMA_VERSION: u32 = 4;
/// Memory the writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 96 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    schema_version: u32,
    created_by: String,
    analyzer: String,
    /// A random id, so a vector file can tell the index it belongs to.
    #[serde(default)]
    index_id: String,
    /// The space of the documents' embeddings, once one was declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vector_space: Option<crate::search::VectorSpace>,
}

#[derive(Clone)]
struct Opened {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// The commit (opstamp) the reader was last reloaded at by this backend (`u64::MAX`: not
    /// yet). A reload opens every segment afresh and empties the doc-store caches, so
    /// [`EmbeddedBackend::fresh_reader`] reloads only when the index is at another commit.
    reloaded_at: Arc<AtomicU64>,
    /// How many times this backend has reloaded the reader (the file watcher's own reloads,
    /// which come on its schedule, are not counted).
    reloads: Arc<AtomicU64>,
}

impl Opened {
    /// Reloads the reader, recording `opstamp` as the commit it now reflects (read before the
    /// reload, so a commit in between is caught by the next check).
    fn reload_at(&self, opstamp: u64) -> tantivy::Result<()> {
        self.reader.reload()?;
        self.reloaded_at.store(opstamp, Ordering::Release);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Default)]
struct State {
    opened: Option<Opened>,
    writer: Option<IndexWriter>,
    /// The vector space declared by [`SearchBackend::set_vector_space`] or read from the marker.
    space: Option<crate::search::VectorSpace>,
}

/// A tantivy index on disk. Cheap to construct: the folder is opened on first use and created on
/// the first [`SearchBackend::index`].
pub struct EmbeddedBackend {
    path: PathBuf,
    state: Mutex<State>,
    /// The vector store, loaded on first use; always locked after `state` when both are held.
    vectors: Mutex<Option<vectors::VectorStore>>,
    /// When the vector file was last saved by this backend, and how long that took (saves are
    /// spaced while indexing).
    saved_at: Mutex<Option<(std::time::Instant, std::time::Duration)>>,
    /// How a graph this backend builds stores its vectors (a loaded one keeps its own).
    storage: vectors::VectorStorage,
}

impl EmbeddedBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedBackend {
            path: path.into(),
            state: Mutex::new(State::default()),
            vectors: Mutex::new(None),
            saved_at: Mutex::new(None),
            storage: vectors::VectorStorage::default(),
        }
    }

    /// The same backend, building its vector graph with `storage` (default f16; `bench search`
    /// measures both). A graph already on disk keeps the storage it was built with.
    pub fn with_vector_storage(mut self, storage: vectors::VectorStorage) -> Self {
        self.storage = storage;
        self
    }

    /// The index folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst an uncommitted writer; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exists(&self) -> bool {
        self.path.join("meta.json").is_file()
    }

    fn describe(&self) -> String {
        format!("the embedded index at {}", self.path.display())
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Search(format!("{}: {what}: {e}", self.describe()))
    }

    /// Opens the index (creating it when `create`), or returns None if it does not exist.
    fn opened(&self, state: &mut State, create: bool) -> Result<Option<Opened>> {
        if let Some(o) = &state.opened {
            if self.exists() {
                return Ok(Some(o.clone()));
            }
            // Dropped or moved away by someone else while open: forget it, and say so rather
            // than quietly starting a new, empty index in the middle of a run.
            state.writer = None;
            state.opened = None;
            return Err(Error::Search(format!(
                "{} disappeared while in use (dropped, moved or unmounted by someone else?); \
                 run the command again",
                self.describe()
            )));
        }
        let (schema, fields) = schema();
        let index = if self.exists() {
            self.check_marker()?;
            let index = Index::open_in_dir(&self.path).map_err(|e| self.err("cannot open", e))?;
            let found = serde_json::to_value(index.schema()).ok();
            if found != serde_json::to_value(&schema).ok() {
                return Err(self.conflict("its schema differs from this capsearch's"));
            }
            index
        } else if create {
            self.create_dir()?;
            let index = Index::create_in_dir(&self.path, schema)
                .map_err(|e| self.err("cannot create", e))?;
            let marker = Marker {
                format: "capsearch embedded index (tantivy)".into(),
                schema_version: SCHEMA_VERSION,
                created_by: format!("capsearch {}", env!("CARGO_PKG_VERSION")),
                analyzer: "english: lowercase, Lucene English stop words, Snowball stemmer".into(),
                index_id: new_index_id(&self.path),
                vector_space: state.space.clone(),
            };
            self.write_marker(&marker)?;
            index
        } else {
            return Ok(None);
        };
        let mut index = index;
        // Search the segments in parallel.
        if let Err(e) = index.set_default_multithread_executor() {
            tracing::debug!("searching segments one by one: {e}");
        }
        index
            .tokenizers()
            .register(ANALYZER_NAME, english_analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e: TantivyError| self.err("cannot read", e))?;
        let opened = Opened {
            index,
            reader,
            fields,
            reloaded_at: Arc::new(AtomicU64::new(u64::MAX)),
            reloads: Arc::new(AtomicU64::new(0)),
        };
        state.opened = Some(opened.clone());
        Ok(Some(opened))
    }

    fn create_dir(&self) -> Result<()> {
        if self.path.exists() {
            let mut entries =
                std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
            if entries.next().is_some() {
                return Err(Error::Search(format!(
                    "{} exists and is not a capsearch index (no meta.json); \
                     pick another --index-path",
                    self.path.display()
                )));
            }
        }
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    fn write_marker(&self, marker: &Marker) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(marker)
            .map_err(|e| self.err("cannot write the marker", e))?;
        crate::util::write_atomic(&self.path.join(MARKER_FILE), &bytes)
    }

    fn read_marker(&self) -> Result<Marker> {
        let marker_path = self.path.join(MARKER_FILE);
        let bytes = std::fs::read(&marker_path).map_err(|e| Error::io(&marker_path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::parse(&marker_path, None, e.to_string()))
    }

    fn check_marker(&self) -> Result<()> {
        let marker_path = self.path.join(MARKER_FILE);
        let bytes = match std::fs::read(&marker_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.conflict(&format!(
                    "it has no {MARKER_FILE}, so capsearch did not write it"
                )));
            }
            Err(e) => return Err(Error::io(marker_path, e)),
        };
        let marker: Marker = serde_json::from_slice(&bytes)
            .map_err(|e| Error::parse(&marker_path, None, e.to_string()))?;
        if marker.schema_version != SCHEMA_VERSION {
            return Err(self.conflict(&format!(
                "it was written by {} with schema version {}, this capsearch uses {SCHEMA_VERSION}",
                marker.created_by, marker.schema_version
            )));
        }
        Ok(())
    }

    fn conflict(&self, why: &str) -> Error {
        Error::Search(format!(
            "{} conflicts with this capsearch: {why}. Drop it with `capsearch index --drop` \
             and index again, or pick another --index-path",
            self.describe()
        ))
    }

    /// Opens (or creates) the index and takes the writer, then runs `f` and commits, then runs
    /// `on_commit` with the commit's opstamp (still holding the state lock, so commits and their
    /// follow-ups keep their order).
    fn write<T>(
        &self,
        f: impl FnOnce(&mut IndexWriter, &Opened) -> Result<T>,
        on_commit: impl FnOnce(&Opened, u64),
    ) -> Result<T> {
        let mut state = self.lock();
        let Some(opened) = self.opened(&mut state, true)? else {
            return Err(missing_index(&self.describe()));
        };
        if state.writer.is_none() {
            let writer = opened
                .index
                .writer(WRITER_MEMORY)
                .map_err(|e| self.writer_error(e))?;
            state.writer = Some(writer);
        }
        let Some(writer) = state.writer.as_mut() else {
            return Err(self.err("cannot write", "no writer"));
        };
        let result = f(writer, &opened).and_then(|value| {
            writer
                .commit()
                .map_err(|e| self.err("cannot commit", e))
                .map(|opstamp| (value, opstamp))
        });
        match result {
            Ok((value, opstamp)) => {
                on_commit(&opened, opstamp);
                opened
                    .reload_at(opstamp)
                    .map_err(|e| self.err("cannot reload", e))?;
                Ok(value)
            }
            Err(e) => {
                // Forget the uncommitted operations; drop the writer (and its lock) if even that fails.
                if writer.rollback().is_err() {
                    state.writer = None;
                }
                Err(e)
            }
        }
    }

    fn writer_error(&self, e: TantivyError) -> Error {
        match e {
            TantivyError::LockFailure(LockError::LockBusy, _) => Error::Search(format!(
                "{} is locked by another writer (is another `capsearch index` running on it?); \
                 wait for it to finish, then run this again",
                self.describe()
            )),
            e => self.err("cannot open a writer", e),
        }
    }

    /// The reader of an existing index, or the "does not exist" error.
    fn reader(&self) -> Result<Opened> {
        let mut state = self.lock();
        self.opened(&mut state, false)?
            .ok_or_else(|| missing_index(&self.describe()))
    }

    /// Like [`Self::reader`], but first catches up with commits of other processes (queries rely
    /// on the reader's file watcher instead, which lags up to about a second). Reloads only when
    /// `meta.json` names another commit than the one the reader was last reloaded at: a merge
    /// keeps the commit and its documents, so a searcher of that commit stays right.
    fn fresh_reader(&self) -> Result<Opened> {
        let opened = self.reader()?;
        let opstamp = self.committed_opstamp(&opened)?;
        if opened.reloaded_at.load(Ordering::Acquire) != opstamp {
            opened
                .reload_at(opstamp)
                .map_err(|e| self.err("cannot reload", e))?;
        }
        Ok(opened)
    }

    /// The opstamp of the index's latest commit, from `meta.json`.
    fn committed_opstamp(&self, opened: &Opened) -> Result<u64> {
        Ok(opened
            .index
            .load_metas()
            .map_err(|e| self.err("cannot read meta.json", e))?
            .opstamp)
    }

    fn count_query(&self, opened: &Opened, query: &dyn Query) -> Result<usize> {
        opened
            .reader
            .searcher()
            .search(query, &Count)
            .map_err(|e| self.err("search failed", e))
    }

    fn size_on_disk(&self) -> Option<u64> {
        let entries = std::fs::read_dir(&self.path).ok()?;
        Some(
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum(),
        )
    }

    /// Whether a file in the index folder is one that tantivy or capsearch wrote.
    fn is_index_file(name: &str) -> bool {
        if matches!(name, "meta.json" | ".managed.json" | MARKER_FILE)
            || vectors::is_vector_file(name)
            || name.starts_with(".tantivy-")
        {
            return true;
        }
        // Segment files: 32 hex digits (the segment id), a dot, an extension.
        let bytes = name.as_bytes();
        bytes.len() > 33 && bytes[..32].iter().all(u8::is_ascii_hexdigit) && bytes[32] == b'.'
    }
}

impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        self.save_vectors_if_changed();
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = state.writer.take()
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!("{}: background merge failed: {e}", self.path.display());
        }
    }
}

/// A fresh index id: a hash of the folder, the time and the process, unique enough to tell two
/// indexes' vector files apart.
fn new_index_id(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{}|{nanos}|{}", path.display(), std::process::id());
    hex::encode(Sha256::digest(seed.as_bytes()))[..32].to_string()
}
