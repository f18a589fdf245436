//! The [`SearchBackend`] operations of [`EmbeddedBackend`].

use std::collections::{BTreeMap, HashSet};

use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocSet, Index, IndexWriter, SegmentOrdinal, TERMINATED, TantivyDocument, Term,
};

use super::collector::{Ranked, TopScores};
use super::vectors::Unit;
use super::{EmbeddedBackend, MARKER_FILE};
use crate::error::{Error, Result};
use crate::search::analysis::{analyze, best_caption};
use crate::search::{
    DocKind, Document, Health, Hit, IndexStats, SearchBackend, SourceCount, VectorSpace,
};

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
        // Each embedding as the unit-length f16 vector that tantivy stores and the graph holds.
        let mut units: Vec<Option<Unit>> = vec![None; docs.len()];
        if docs.iter().any(|d| d.embedding.is_some()) {
            let declared = self.lock().space.clone();
            let space = match declared {
                Some(space) => space,
                None => self.marker_space()?.ok_or_else(|| {
                    Error::Search(format!(
                        "{}: documents with embeddings need their vector space declared first \
                         (SearchBackend::set_vector_space)",
                        self.describe()
                    ))
                })?,
            };
            for (doc, unit) in docs.iter().zip(&mut units) {
                if let Some(vector) = &doc.embedding {
                    let what = format!("the embedding of {}", doc.path);
                    space.ensure_dims(vector, &what)?;
                    *unit = Some(Unit::new(vector).ok_or_else(|| {
                        Error::Document {
                            path: doc.path.clone(),
                            message: "its embedding is zero or holds a value that is not a finite \
                                  number: it has no direction"
                                .into(),
                        }
                    })?);
                }
            }
        }
        let written = self.write(
            |writer, opened| {
                // The vectors must match the commit before this one, so this one's changes apply.
                drop(self.synced_vectors(opened)?);
                let f = opened.fields;
                for (doc, unit) in docs.iter().zip(&units) {
                    writer.delete_term(Term::from_field_text(f.path, &doc.path));
                    let mut d = TantivyDocument::default();
                    d.add_text(f.path, &doc.path);
                    for caption in doc.captions.iter().filter(|c| !c.trim().is_empty()) {
                        d.add_text(f.caption, caption);
                    }
                    d.add_text(f.kind, doc.kind.as_str());
                    d.add_text(f.source(doc.kind), &doc.source);
                    d.add_i64(f.timestamp, doc.timestamp);
                    if let Some(unit) = unit {
                        d.add_bytes(f.embedding, &unit.to_bytes());
                    }
                    writer
                        .add_document(d)
                        .map_err(|e| self.err(&format!("cannot add {:?}", doc.path), e))?;
                }
                Ok(docs.len())
            },
            |_, opstamp| self.apply_commit(docs, &units, &[], opstamp),
        )?;
        Ok(written)
    }

    fn delete(&self, paths: &[String]) -> Result<usize> {
        if paths.is_empty() || !self.exists() {
            return Ok(0);
        }
        self.write(
            |writer, opened| {
                drop(self.synced_vectors(opened)?);
                let mut existing = 0;
                let unique: HashSet<&String> = paths.iter().collect();
                for path in unique {
                    let term = Term::from_field_text(opened.fields.path, path);
                    let query = TermQuery::new(term.clone(), IndexRecordOption::Basic);
                    existing += self.count_query(opened, &query)?;
                    writer.delete_term(term);
                }
                Ok(existing)
            },
            |_, opstamp| self.apply_commit(&[], &[], paths, opstamp),
        )
    }

    fn query(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.caption_hits(text, size, offset, true)
    }

    fn query_ranked(&self, text: &str, size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.caption_hits(text, size, offset, false)
    }

    fn nearest_ranked(&self, vector: &[f32], size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.vector_hits(vector, size, offset, false)
    }

    fn fill_captions(&self, text: &str, hits: &mut [Hit]) -> Result<()> {
        if hits.is_empty() {
            return Ok(());
        }
        let opened = self.reader()?;
        let f = opened.fields;
        let searcher = opened.reader.searcher();
        for hit in hits {
            // A document deleted since it was ranked keeps an empty caption.
            let Some(address) = self.live_doc(&searcher, f.path, &hit.path)? else {
                continue;
            };
            let captions = self.stored_captions(&searcher, f.caption, address)?;
            hit.caption = if hit.caption_score.is_some() {
                best_caption(text, &captions)
            } else {
                captions.into_iter().next().unwrap_or_default()
            };
        }
        Ok(())
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
            let path = stored_text(&doc, f.path);
            let caption = stored_text(&doc, f.caption);
            hits.push(Hit {
                path,
                caption,
                score: 0.0,
                caption_score: None,
                visual_score: None,
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
            vectors: self.vector_stats(&opened)?,
        })
    }

    fn nearest(&self, vector: &[f32], size: usize, offset: usize) -> Result<Vec<Hit>> {
        self.vector_hits(vector, size, offset, true)
    }

    fn vector_space(&self) -> Result<Option<VectorSpace>> {
        if !self.exists() {
            return Ok(None);
        }
        self.marker_space()
    }

    fn set_vector_space(&self, space: &VectorSpace) -> Result<bool> {
        self.declare_space(space)?;
        Ok(true)
    }

    fn finish(&self) -> Result<()> {
        self.save_vectors_if_changed();
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
        state.space = None;
        *self.lock_vectors() = None;
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

impl EmbeddedBackend {
    /// `query`, with each hit's caption read from the docstore when `captions` (else empty).
    fn caption_hits(
        &self,
        text: &str,
        size: usize,
        offset: usize,
        captions: bool,
    ) -> Result<Vec<Hit>> {
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
        for Ranked {
            score,
            path,
            address,
        } in top.into_iter().skip(offset)
        {
            let caption = if captions {
                best_caption(text, &self.stored_captions(&searcher, f.caption, address)?)
            } else {
                String::new()
            };
            hits.push(Hit {
                path,
                caption,
                score,
                caption_score: Some(score),
                visual_score: None,
            });
        }
        Ok(hits)
    }

    /// `nearest`, with each hit's first caption read from the docstore when `captions` (else
    /// empty).
    fn vector_hits(
        &self,
        vector: &[f32],
        size: usize,
        offset: usize,
        captions: bool,
    ) -> Result<Vec<Hit>> {
        let opened = self.fresh_reader()?;
        let found = {
            let guard = self.synced_vectors(&opened)?;
            let Some(store) = guard.as_ref() else {
                return Err(Error::Search(format!(
                    "{} holds no image vectors: index images with a model (`capsearch index \
                     --images DIR --model DIR`) to search by image, or search by caption",
                    self.describe()
                )));
            };
            if size == 0 {
                return Ok(Vec::new());
            }
            store.nearest(vector, offset.saturating_add(size))?
        };
        let f = opened.fields;
        let searcher = opened.reader.searcher();
        let mut hits = Vec::with_capacity(size);
        for (path, similarity) in found.into_iter().skip(offset) {
            // A document deleted since the vectors were synced is left out.
            let Some(address) = self.live_doc(&searcher, f.path, &path)? else {
                continue;
            };
            let caption = if captions {
                let doc: TantivyDocument = searcher
                    .doc(address)
                    .map_err(|e| self.err("cannot read a document", e))?;
                stored_text(&doc, f.caption)
            } else {
                String::new()
            };
            hits.push(Hit {
                path,
                caption,
                score: similarity,
                caption_score: None,
                visual_score: Some(similarity),
            });
        }
        Ok(hits)
    }

    /// The stored values of the `caption` field of the document at `address`.
    fn stored_captions(
        &self,
        searcher: &tantivy::Searcher,
        caption: tantivy::schema::Field,
        address: DocAddress,
    ) -> Result<Vec<String>> {
        let doc: TantivyDocument = searcher
            .doc(address)
            .map_err(|e| self.err("cannot read a document", e))?;
        Ok(doc
            .get_all(caption)
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    /// The live document whose `path` is `path`: a direct look-up in each segment's term
    /// dictionary (a `searcher.search` per hit costs a round through the thread pool each).
    fn live_doc(
        &self,
        searcher: &tantivy::Searcher,
        field: tantivy::schema::Field,
        path: &str,
    ) -> Result<Option<DocAddress>> {
        let term = Term::from_field_text(field, path);
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted = segment
                .inverted_index(field)
                .map_err(|e| self.err("cannot read the paths", e))?;
            let Some(mut postings) = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| self.err("cannot read the paths", e))?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    return Ok(Some(DocAddress::new(ordinal as SegmentOrdinal, doc)));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }
}

/// A stored text field of a document (`""` when absent).
fn stored_text(doc: &TantivyDocument, field: tantivy::schema::Field) -> String {
    doc.get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}
