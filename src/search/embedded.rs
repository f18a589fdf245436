//! The embedded backend: a tantivy index in a folder (`--index-path`, default `./index/`).
//!
//! Schema: `caption` (English-analysed text, stored, one value per caption), `path` (raw string,
//! stored; the document's key), `kind`, `model` and `dataset` (raw strings, stored) and `timestamp`
//! (stored i64, ms since the epoch). The folder also holds `capsearch-index.json`, which says what
//! wrote it; capsearch refuses to write into, or delete, a folder without it.
//!
//! Writes take tantivy's writer lock, held from the first write until [`SearchBackend::finish`] (or
//! until the backend is dropped), so two processes cannot index into one folder at once (the second
//! gets an error saying so). Readers never take it: the web server can search while
//! `capsearch index` runs. A backend sees its own writes at once; another process's commits
//! reach its queries within about a second (tantivy's file watcher), and its `count`, `stats`
//! and `indexed_paths` at once (they reload first).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::directory::error::LockError;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value,
};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score,
    SegmentOrdinal, SegmentReader, TERMINATED, TantivyDocument, TantivyError, Term,
};

use super::analysis::{ANALYZER_NAME, analyze, best_caption, english_analyzer};
use super::{
    DocKind, Document, Health, Hit, IndexStats, SearchBackend, SourceCount, missing_index,
};
use crate::error::{Error, Result};

/// The file that marks a folder as a capsearch index.
pub const MARKER_FILE: &str = "capsearch-index.json";
/// Bumped when the schema changes; an index with another version is refused.
const SCHEMA_VERSION: u32 = 1;
/// Memory the writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 96 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    schema_version: u32,
    created_by: String,
    analyzer: String,
}

#[derive(Clone, Copy)]
struct Fields {
    path: Field,
    caption: Field,
    kind: Field,
    model: Field,
    dataset: Field,
    timestamp: Field,
}

impl Fields {
    fn source(&self, kind: DocKind) -> Field {
        match kind {
            DocKind::Model => self.model,
            DocKind::Dataset => self.dataset,
        }
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let caption_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER_NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        path: b.add_text_field("path", STRING | STORED),
        caption: b.add_text_field("caption", caption_options),
        kind: b.add_text_field("kind", STRING | STORED),
        model: b.add_text_field("model", STRING | STORED),
        dataset: b.add_text_field("dataset", STRING | STORED),
        timestamp: b.add_i64_field("timestamp", INDEXED | STORED),
    };
    (b.build(), fields)
}

/// A match: its score and where it is. Ordered best first: higher score, then lower address (so
/// ties come out in index order, deterministically).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ranked {
    score: Score,
    address: DocAddress,
}

impl Eq for Ranked {}

impl Ord for Ranked {
    /// `a > b` when `a` ranks before `b`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.address.cmp(&self.address))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `keep` best matches, found by scoring every match.
///
/// tantivy's `TopDocs` prunes with block-max WAND, which pays off when a query term is rare.
/// Caption queries are mostly common words, and there WAND loses: on a 1M-caption synthetic shapes
/// corpus it was about 3 times slower than visiting every match. Visiting every match costs time in
/// proportion to the query terms' document frequencies, with no bad cases.
struct TopScores {
    keep: usize,
}

struct SegmentTopScores {
    keep: usize,
    segment: SegmentOrdinal,
    /// The best so far, worst on top.
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl Collector for TopScores {
    type Fruit = Vec<Ranked>;
    type Child = SegmentTopScores;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTopScores> {
        Ok(SegmentTopScores {
            keep: self.keep,
            segment,
            heap: BinaryHeap::with_capacity(self.keep.min(10_000) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<Vec<Ranked>>) -> tantivy::Result<Vec<Ranked>> {
        let mut all: Vec<Ranked> = segments.into_iter().flatten().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(self.keep);
        Ok(all)
    }
}

impl SegmentCollector for SegmentTopScores {
    type Fruit = Vec<Ranked>;

    fn collect(&mut self, doc: DocId, score: Score) {
        let ranked = Ranked {
            score,
            address: DocAddress::new(self.segment, doc),
        };
        if self.heap.len() < self.keep {
            self.heap.push(Reverse(ranked));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && ranked > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(ranked));
        }
    }

    fn harvest(self) -> Vec<Ranked> {
        self.heap.into_iter().map(|Reverse(r)| r).collect()
    }
}

#[derive(Clone)]
struct Opened {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

#[derive(Default)]
struct State {
    opened: Option<Opened>,
    writer: Option<IndexWriter>,
}

/// A tantivy index on disk. Cheap to construct: the folder is opened on first use and created on
/// the first [`SearchBackend::index`].
pub struct EmbeddedBackend {
    path: PathBuf,
    state: Mutex<State>,
}

impl EmbeddedBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedBackend {
            path: path.into(),
            state: Mutex::new(State::default()),
        }
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
            };
            let bytes = serde_json::to_vec_pretty(&marker)
                .map_err(|e| self.err("cannot write the marker", e))?;
            crate::util::write_atomic(&self.path.join(MARKER_FILE), &bytes)?;
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

    /// Opens (or creates) the index and takes the writer, then runs `f` and commits.
    fn write<T>(&self, f: impl FnOnce(&mut IndexWriter, &Opened) -> Result<T>) -> Result<T> {
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
                .map(|_| value)
        });
        match result {
            Ok(value) => {
                opened
                    .reader
                    .reload()
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
    /// on the reader's file watcher instead, which lags up to about a second).
    fn fresh_reader(&self) -> Result<Opened> {
        let opened = self.reader()?;
        opened
            .reader
            .reload()
            .map_err(|e| self.err("cannot reload", e))?;
        Ok(opened)
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
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = state.writer.take()
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!("{}: background merge failed: {e}", self.path.display());
        }
    }
}

impl SearchBackend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn health(&self) -> Result<Health> {
        let mut state = self.lock();
        let exists = self.opened(&mut state, false)?.is_some();
        Ok(Health {
            backend: self.name().to_string(),
            location: self.location(),
            status: "green".to_string(),
            index_exists: exists,
        })
    }

    fn index(&self, docs: &[Document]) -> Result<usize> {
        for doc in docs {
            doc.validate()?;
        }
        if docs.is_empty() {
            return Ok(0);
        }
        self.write(|writer, opened| {
            let f = opened.fields;
            for doc in docs {
                writer.delete_term(Term::from_field_text(f.path, &doc.path));
                let mut d = TantivyDocument::default();
                d.add_text(f.path, &doc.path);
                for caption in doc.captions.iter().filter(|c| !c.trim().is_empty()) {
                    d.add_text(f.caption, caption);
                }
                d.add_text(f.kind, doc.kind.as_str());
                d.add_text(f.source(doc.kind), &doc.source);
                d.add_i64(f.timestamp, doc.timestamp);
                writer
                    .add_document(d)
                    .map_err(|e| self.err(&format!("cannot add {:?}", doc.path), e))?;
            }
            Ok(docs.len())
        })
    }

    fn delete(&self, paths: &[String]) -> Result<usize> {
        if paths.is_empty() || !self.exists() {
            return Ok(0);
        }
        self.write(|writer, opened| {
            let mut existing = 0;
            let unique: HashSet<&String> = paths.iter().collect();
            for path in unique {
                let term = Term::from_field_text(opened.fields.path, path);
                let query = TermQuery::new(term.clone(), IndexRecordOption::Basic);
                existing += self.count_query(opened, &query)?;
                writer.delete_term(term);
            }
            Ok(existing)
        })
    }

    fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        let opened = self.reader()?;
        let mut terms = analyze(text);
        terms.sort();
        terms.dedup();
        if terms.is_empty() || size == 0 {
            return Ok(Vec::new());
        }
        let f = opened.fields;
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q = TermQuery::new(
                    Term::from_field_text(f.caption, t),
                    IndexRecordOption::WithFreqs,
                );
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = opened.reader.searcher();
        let top = searcher
            .search(
                &query,
                &TopScores {
                    keep: offset.saturating_add(size),
                },
            )
            .map_err(|e| self.err("search failed", e))?;
        let mut hits = Vec::with_capacity(size);
        for Ranked { score, address } in top.into_iter().skip(offset) {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| self.err("cannot read a document", e))?;
            let path = doc
                .get_first(f.path)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let captions: Vec<String> = doc
                .get_all(f.caption)
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            hits.push(Hit {
                path,
                caption: best_caption(text, &captions),
                score,
            });
        }
        Ok(hits)
    }

    fn count(&self) -> Result<u64> {
        Ok(self.fresh_reader()?.reader.searcher().num_docs())
    }

    fn list(&self, size: usize, offset: usize) -> Result<Vec<Hit>> {
        let opened = self.fresh_reader()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let f = opened.fields;
        let searcher = opened.reader.searcher();
        // The path field's term dictionaries are sorted: walk them for the live documents'
        // paths (terms of deleted documents linger until a merge), then read only the page.
        let mut live: Vec<(Vec<u8>, DocAddress)> = Vec::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted = segment
                .inverted_index(f.path)
                .map_err(|e| self.err("cannot read the paths", e))?;
            let mut stream = inverted
                .terms()
                .stream()
                .map_err(|e| self.err("cannot read the paths", e))?;
            while stream.advance() {
                let mut postings = inverted
                    .read_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)
                    .map_err(|e| self.err("cannot read the paths", e))?;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if !segment.is_deleted(doc) {
                        live.push((
                            stream.key().to_vec(),
                            DocAddress::new(ordinal as SegmentOrdinal, doc),
                        ));
                        break;
                    }
                    doc = postings.advance();
                }
            }
        }
        live.sort_unstable();
        live.dedup_by(|a, b| a.0 == b.0);
        let mut hits = Vec::with_capacity(size.min(live.len()));
        for (_, address) in live.into_iter().skip(offset).take(size) {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| self.err("cannot read a document", e))?;
            let path = doc
                .get_first(f.path)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let caption = doc
                .get_first(f.caption)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            hits.push(Hit {
                path,
                caption,
                score: 0.0,
            });
        }
        Ok(hits)
    }

    fn indexed_paths(
        &self,
        paths: &[String],
        kind: DocKind,
        source: &str,
    ) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        if !self.exists() {
            return Ok(found);
        }
        let opened = self.fresh_reader()?;
        let f = opened.fields;
        let source_term = Term::from_field_text(f.source(kind), source);
        for path in paths {
            if found.contains(path) {
                continue;
            }
            let query = BooleanQuery::new(vec![
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.path, path),
                        IndexRecordOption::Basic,
                    )) as Box<dyn Query>,
                ),
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        source_term.clone(),
                        IndexRecordOption::Basic,
                    )),
                ),
            ]);
            if self.count_query(&opened, &query)? > 0 {
                found.insert(path.clone());
            }
        }
        Ok(found)
    }

    fn stats(&self) -> Result<IndexStats> {
        let opened = self.fresh_reader()?;
        let searcher = opened.reader.searcher();
        let mut sources = Vec::new();
        for kind in [DocKind::Dataset, DocKind::Model] {
            let field = opened.fields.source(kind);
            // Terms of deleted documents linger until a merge, so count live documents per term.
            let mut names = BTreeMap::new();
            for segment in searcher.segment_readers() {
                let inverted = segment
                    .inverted_index(field)
                    .map_err(|e| self.err("cannot read the terms", e))?;
                let mut stream = inverted
                    .terms()
                    .stream()
                    .map_err(|e| self.err("cannot read the terms", e))?;
                while stream.advance() {
                    names.insert(String::from_utf8_lossy(stream.key()).into_owned(), ());
                }
            }
            for name in names.into_keys() {
                let query = TermQuery::new(
                    Term::from_field_text(field, &name),
                    IndexRecordOption::Basic,
                );
                let documents = self.count_query(&opened, &query)? as u64;
                if documents > 0 {
                    sources.push(SourceCount {
                        kind,
                        source: name,
                        documents,
                    });
                }
            }
        }
        Ok(IndexStats {
            backend: self.name().to_string(),
            location: self.location(),
            documents: searcher.num_docs(),
            sources,
            size_bytes: self.size_on_disk(),
        })
    }

    fn finish(&self) -> Result<()> {
        let writer = self.lock().writer.take();
        match writer {
            Some(writer) => writer
                .wait_merging_threads()
                .map_err(|e| self.err("background merge failed", e)),
            None => Ok(()),
        }
    }

    fn drop_index(&self) -> Result<bool> {
        let mut state = self.lock();
        state.opened = None;
        if !self.path.join(MARKER_FILE).is_file() {
            if self.exists() {
                return Err(Error::Search(format!(
                    "{} has no {MARKER_FILE}, so capsearch did not write it: not deleting it",
                    self.describe()
                )));
            }
            return Ok(false);
        }
        // Refuse while another process writes to it: take the writer lock ourselves. (Opened
        // without the schema check: an index of another schema version can be dropped too.)
        if state.writer.is_none()
            && self.exists()
            && let Ok(index) = Index::open_in_dir(&self.path)
        {
            let writer: IndexWriter = index
                .writer_with_num_threads(1, 20_000_000)
                .map_err(|e| self.writer_error(e))?;
            state.writer = Some(writer);
        }
        if let Some(writer) = state.writer.take() {
            // Waits for merges, then releases the lock.
            let _ = writer.wait_merging_threads();
        }
        let entries = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut kept = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() && Self::is_index_file(&name) {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            } else {
                kept.push(name);
            }
        }
        if kept.is_empty() {
            std::fs::remove_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        } else {
            tracing::warn!(
                "{}: removed the index, kept files capsearch did not write: {}",
                self.path.display(),
                kept.join(", ")
            );
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize) -> Vec<Document> {
        (0..n)
            .map(|i| {
                Document::from_dataset(
                    format!("img/{i:04}.png"),
                    vec![
                        format!("a red circle number {i}"),
                        "a small blue square above".to_string(),
                    ],
                    "shapes",
                )
            })
            .collect()
    }

    #[test]
    fn schema_has_an_english_caption_and_raw_keys() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        backend.index(&docs(1)).unwrap();
        let index = Index::open_in_dir(backend.path()).unwrap();
        let schema = index.schema();
        let caption = schema.get_field_entry(schema.get_field("caption").unwrap());
        let tantivy::schema::FieldType::Str(opts) = caption.field_type() else {
            panic!("caption is not text")
        };
        let indexing = opts.get_indexing_options().unwrap();
        assert_eq!(indexing.tokenizer(), ANALYZER_NAME);
        assert!(opts.is_stored());
        for key in ["path", "kind", "model", "dataset"] {
            let entry = schema.get_field_entry(schema.get_field(key).unwrap());
            let tantivy::schema::FieldType::Str(opts) = entry.field_type() else {
                panic!("{key} is not a string")
            };
            assert_eq!(opts.get_indexing_options().unwrap().tokenizer(), "raw");
            assert!(opts.is_stored(), "{key} is stored");
        }
        assert!(backend.path().join(MARKER_FILE).is_file());
    }

    #[test]
    fn reindexing_replaces_and_delete_removes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        assert_eq!(backend.index(&docs(50)).unwrap(), 50);
        assert_eq!(backend.index(&docs(50)).unwrap(), 50);
        assert_eq!(backend.count().unwrap(), 50);
        let paths = vec!["img/0001.png".to_string(), "nope.png".to_string()];
        assert_eq!(backend.delete(&paths).unwrap(), 1);
        assert_eq!(backend.count().unwrap(), 49);
        assert!(
            backend
                .query("number 1", 100, 0)
                .unwrap()
                .iter()
                .all(|h| h.path != "img/0001.png")
        );
    }

    #[test]
    fn another_writer_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = EmbeddedBackend::new(dir.path().join("idx"));
        let b = EmbeddedBackend::new(dir.path().join("idx"));
        a.index(&docs(3)).unwrap();
        let err = b.index(&docs(3)).unwrap_err().to_string();
        assert!(err.contains("locked by another writer"), "{err}");
        // Readers are not blocked.
        assert_eq!(b.count().unwrap(), 3);
        drop(a);
        assert_eq!(b.index(&docs(4)).unwrap(), 4);
        assert_eq!(b.count().unwrap(), 4);
    }

    #[test]
    fn a_foreign_folder_is_neither_written_nor_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let backend = EmbeddedBackend::new(dir.path());
        let err = backend.index(&docs(1)).unwrap_err().to_string();
        assert!(err.contains("not a capsearch index"), "{err}");
        assert!(!backend.drop_index().unwrap());
        assert!(dir.path().join("notes.txt").is_file());
    }

    #[test]
    fn drop_keeps_files_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let backend = EmbeddedBackend::new(&path);
        backend.index(&docs(5)).unwrap();
        std::fs::write(path.join("notes.txt"), "mine").unwrap();
        assert!(backend.drop_index().unwrap());
        assert!(path.join("notes.txt").is_file());
        assert!(!path.join("meta.json").exists());
        let err = backend.count().unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        // And it can be created again (the folder now only holds the user's file: refused).
        let err = backend.index(&docs(1)).unwrap_err().to_string();
        assert!(err.contains("not a capsearch index"), "{err}");
    }

    #[test]
    fn stats_count_live_documents_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        backend.index(&docs(10)).unwrap();
        backend
            .index(&[Document::from_model("img/0000.png", "a red circle", "m1")])
            .unwrap();
        let stats = backend.stats().unwrap();
        assert_eq!(stats.documents, 10);
        assert_eq!(
            stats.sources,
            vec![
                SourceCount {
                    kind: DocKind::Dataset,
                    source: "shapes".into(),
                    documents: 9
                },
                SourceCount {
                    kind: DocKind::Model,
                    source: "m1".into(),
                    documents: 1
                },
            ]
        );
        assert!(stats.size_bytes.unwrap() > 0);
    }

    #[test]
    fn top_scores_agrees_with_tantivy_top_docs() {
        use tantivy::collector::TopDocs;
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        let docs: Vec<Document> = (0..3000)
            .map(|i| {
                Document::from_model(
                    format!("{i}.png"),
                    crate::search::bench::shapes_caption(i),
                    "m",
                )
            })
            .collect();
        // Several commits: several segments.
        for chunk in docs.chunks(700) {
            backend.index(chunk).unwrap();
        }
        let opened = backend.reader().unwrap();
        let searcher = opened.reader.searcher();
        assert!(searcher.segment_readers().len() > 1);
        for q in [
            "small red circle above a blue square",
            "star",
            "green hexagon background",
        ] {
            let terms: Vec<(Occur, Box<dyn Query>)> = analyze(q)
                .into_iter()
                .map(|t| {
                    let term = Term::from_field_text(opened.fields.caption, &t);
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect();
            let query = BooleanQuery::new(terms);
            let ours = searcher.search(&query, &TopScores { keep: 50 }).unwrap();
            let theirs = searcher
                .search(&query, &TopDocs::with_limit(50).order_by_score())
                .unwrap();
            assert_eq!(ours.len(), theirs.len());
            // Same scores in the same order (tied documents may differ).
            for (a, (score, _)) in ours.iter().zip(&theirs) {
                assert!(
                    (a.score - score).abs() < 1e-5,
                    "{q}: {} vs {score}",
                    a.score
                );
            }
            assert!(ours.windows(2).all(|w| w[0] >= w[1]));
            // Paging is slicing.
            let page = backend.query(q, 10, 20).unwrap();
            let all = backend.query(q, 30, 0).unwrap();
            assert_eq!(page, all[20..30].to_vec());
        }
    }

    #[test]
    fn list_pages_through_live_documents_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::new(dir.path().join("idx"));
        // Two commits (two segments), a replaced document and a deleted one.
        backend.index(&docs(30)).unwrap();
        backend
            .index(&[Document::from_model("img/0003.png", "a green star", "m")])
            .unwrap();
        backend.delete(&["img/0007.png".to_string()]).unwrap();
        assert_eq!(backend.count().unwrap(), 29);
        let mut all = Vec::new();
        for page in 0..4 {
            let hits = backend.list(8, page * 8).unwrap();
            assert!(hits.len() <= 8);
            all.extend(hits);
        }
        let paths: Vec<&str> = all.iter().map(|h| h.path.as_str()).collect();
        let mut expected: Vec<String> = (0..30)
            .filter(|&i| i != 7)
            .map(|i| format!("img/{i:04}.png"))
            .collect();
        expected.sort();
        assert_eq!(paths, expected);
        let replaced = all.iter().find(|h| h.path == "img/0003.png").unwrap();
        assert_eq!(replaced.caption, "a green star");
        assert_eq!(all[0].caption, "a red circle number 0");
        assert!(backend.list(8, 100).unwrap().is_empty());
        assert!(backend.list(0, 0).unwrap().is_empty());
        let missing = EmbeddedBackend::new(dir.path().join("none"));
        let err = missing.list(5, 0).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn index_file_names() {
        assert!(EmbeddedBackend::is_index_file("meta.json"));
        assert!(EmbeddedBackend::is_index_file(".tantivy-writer.lock"));
        assert!(EmbeddedBackend::is_index_file(
            "0123456789abcdef0123456789abcdef.store"
        ));
        assert!(EmbeddedBackend::is_index_file(
            "0123456789abcdef0123456789abcdef.12.del"
        ));
        assert!(!EmbeddedBackend::is_index_file("notes.txt"));
        assert!(!EmbeddedBackend::is_index_file("0123.store"));
    }
}
