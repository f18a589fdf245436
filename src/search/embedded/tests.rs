use tantivy::Term;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;

use super::collector::*;
use super::*;
use crate::search::analysis::analyze;
use crate::search::{DocKind, Document, SearchBackend, SourceCount};

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
                crate::data::shapes::indexed_caption(i),
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
        // Best first; equal scores by path.
        assert!(ours.windows(2).all(
            |w| w[0].score > w[1].score || (w[0].score == w[1].score && w[0].path < w[1].path)
        ));
        // Only the paths that can make the top are read: every `keep` gives the same prefix as
        // reading them all, ties at the cut included.
        let every = searcher
            .search(&query, &TopScores { keep: 10_000 })
            .unwrap();
        for keep in [1, 7, 50, 100, 700, 2999] {
            let top = searcher.search(&query, &TopScores { keep }).unwrap();
            assert_eq!(
                top,
                every[..keep.min(every.len())].to_vec(),
                "{q}: keep {keep}"
            );
        }
        // Paging is slicing.
        let page = backend.query(q, 10, 20).unwrap();
        let all = backend.query(q, 30, 0).unwrap();
        assert_eq!(page, all[20..30].to_vec());
    }
}

/// Equal scores are ordered by path, so the same documents rank the same however commits and
/// merges laid out the segments.
#[test]
fn ties_rank_the_same_whatever_the_segment_layout() {
    let dir = tempfile::tempdir().unwrap();
    let all = docs(60);
    // One commit, in path order.
    let one = EmbeddedBackend::new(dir.path().join("one"));
    one.index(&all).unwrap();
    // Many commits, in reverse order: another layout. (Not a replaced document: its deleted copy
    // would still count in the term statistics until a merge, and move the scores.)
    let many = EmbeddedBackend::new(dir.path().join("many"));
    let mut reversed = all.clone();
    reversed.reverse();
    for chunk in reversed.chunks(7) {
        many.index(chunk).unwrap();
    }
    assert!(
        many.reader()
            .unwrap()
            .reader
            .searcher()
            .segment_readers()
            .len()
            > 1
    );
    for q in ["red circle", "blue", "square"] {
        let a = one.query(q, 40, 0).unwrap();
        let b = many.query(q, 40, 0).unwrap();
        assert!(!a.is_empty(), "{q}");
        assert_eq!(a, b, "{q}");
        assert!(
            a.windows(2).any(|w| w[0].score == w[1].score),
            "{q}: the fixture should have ties"
        );
        assert!(
            a.windows(2)
                .all(|w| w[0].score > w[1].score || w[0].path < w[1].path),
            "{q}"
        );
    }
}

/// The reader reloads (reopening every segment and emptying its doc-store caches) only when the
/// index is at another commit: repeated searches reuse it, and another writer's commit is still
/// seen at once. Counts the backend's own reloads: the searcher generation also moves when
/// tantivy's file watcher makes its first poll, whenever its thread gets to run.
#[test]
fn the_reader_reloads_only_for_a_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let writer = EmbeddedBackend::new(&path);
    writer.index(&docs(10)).unwrap();
    let reader = EmbeddedBackend::new(&path);
    let reloads = |b: &EmbeddedBackend| b.reader().unwrap().reloads.load(Ordering::Relaxed);
    assert_eq!(reader.count().unwrap(), 10);
    let first = reloads(&reader);
    assert_eq!(first, 1, "the first count catches up with the commit once");
    assert_eq!(reader.count().unwrap(), 10);
    assert_eq!(reader.list(5, 0).unwrap().len(), 5);
    assert_eq!(reloads(&reader), first, "the same commit: not reloaded");
    // Another backend (as another process would) commits: the next count sees it.
    writer.index(&docs(15)[10..]).unwrap();
    assert_eq!(reader.count().unwrap(), 15);
    assert_eq!(reloads(&reader), first + 1);
    assert_eq!(reader.count().unwrap(), 15);
    assert_eq!(reloads(&reader), first + 1, "still that commit");
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
    assert!(EmbeddedBackend::is_index_file("vectors.bin"));
    assert!(EmbeddedBackend::is_index_file(".capsearch-vectors-a1B2c3"));
    assert!(!EmbeddedBackend::is_index_file("notes.txt"));
    assert!(!EmbeddedBackend::is_index_file("0123.store"));
}

fn space4() -> crate::search::VectorSpace {
    crate::search::VectorSpace {
        dims: 4,
        embedder: "test embedder".into(),
    }
}

fn with_vector(path: &str, v: [f32; 4]) -> Document {
    let mut doc = Document::from_model(path, format!("caption of {path}"), "m");
    doc.embedding = Some(v.to_vec());
    doc
}

fn vector_docs() -> Vec<Document> {
    vec![
        with_vector("a.png", [1.0, 0.0, 0.0, 0.0]),
        with_vector("b.png", [0.0, 1.0, 0.0, 0.0]),
        with_vector("c.png", [0.0, 0.0, 1.0, 0.1]),
    ]
}

fn nearest_paths(backend: &EmbeddedBackend, v: [f32; 4], n: usize) -> Vec<String> {
    backend
        .nearest(&v, n, 0)
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect()
}

#[test]
fn visual_search_finds_replaces_and_removes_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::new(dir.path().join("idx"));
    assert_eq!(backend.vector_space().unwrap(), None);
    // Embeddings need their space declared first.
    assert!(backend.index(&vector_docs()).is_err());
    assert!(backend.set_vector_space(&space4()).unwrap());
    backend.index(&vector_docs()).unwrap();
    assert_eq!(backend.vector_space().unwrap(), Some(space4()));
    let hits = backend.nearest(&[0.9, 0.1, 0.0, 0.0], 2, 0).unwrap();
    assert_eq!(hits[0].path, "a.png");
    assert_eq!(hits[0].caption, "caption of a.png");
    assert_eq!(hits[0].visual_score, Some(hits[0].score));
    assert_eq!(hits[0].caption_score, None);
    assert!(hits[0].score > 0.99 && hits[1].score < 0.2, "{hits:?}");
    assert_eq!(
        nearest_paths(&backend, [0.0, 1.0, 0.0, 0.0], 3)[1..].len(),
        2
    );
    assert_eq!(
        backend.nearest(&[0.0, 1.0, 0.0, 0.0], 2, 1).unwrap().len(),
        2,
        "offset skips the best"
    );

    // Re-indexing an image replaces its vector.
    backend
        .index(&[with_vector("a.png", [0.0, 1.0, 0.0, 0.0])])
        .unwrap();
    assert_eq!(backend.count().unwrap(), 3);
    assert_eq!(nearest_paths(&backend, [1.0, 0.0, 0.0, 0.0], 1).len(), 1);
    let near_b = nearest_paths(&backend, [0.0, 1.0, 0.0, 0.0], 2);
    assert!(near_b.contains(&"a.png".to_string()) && near_b.contains(&"b.png".to_string()));
    // Deleting one removes its vector; re-indexing one without an embedding too.
    backend.delete(&["b.png".to_string()]).unwrap();
    backend
        .index(&[Document::from_model("c.png", "no vector now", "m")])
        .unwrap();
    assert_eq!(nearest_paths(&backend, [0.0, 0.0, 1.0, 0.0], 5), ["a.png"]);

    // Wrong lengths and other spaces are refused with a message.
    let err = backend
        .index(&[Document {
            embedding: Some(vec![1.0; 3]),
            ..with_vector("d.png", [1.0; 4])
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 values") && err.contains('4'), "{err}");
    assert!(backend.nearest(&[1.0; 5], 1, 0).is_err());
    let other = crate::search::VectorSpace {
        dims: 4,
        embedder: "another backbone".into(),
    };
    let err = backend.set_vector_space(&other).unwrap_err().to_string();
    assert!(
        err.contains("another backbone") && err.contains("test embedder"),
        "{err}"
    );

    // Dropping the index removes the vector file with it.
    backend.finish().unwrap();
    assert!(backend.path().join(vectors::VECTOR_FILE).is_file());
    assert!(backend.drop_index().unwrap());
    assert!(!backend.path().exists());
}

#[test]
fn an_index_without_vectors_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::new(dir.path().join("idx"));
    backend.index(&docs(2)).unwrap();
    let err = backend.nearest(&[1.0; 4], 1, 0).unwrap_err().to_string();
    assert!(err.contains("holds no image vectors"), "{err}");
}

#[test]
fn a_vector_file_that_does_not_match_the_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let file = path.join(vectors::VECTOR_FILE);
    {
        let backend = EmbeddedBackend::new(&path);
        backend.set_vector_space(&space4()).unwrap();
        backend.index(&vector_docs()[..2]).unwrap();
        backend.finish().unwrap();
    }
    let older = std::fs::read(&file).unwrap();
    {
        // A run that commits c.png to tantivy but is killed before the vector file is saved:
        // put the older file back, as a crash would have left it.
        let backend = EmbeddedBackend::new(&path);
        backend.set_vector_space(&space4()).unwrap();
        backend.index(&vector_docs()[2..]).unwrap();
        backend.finish().unwrap();
    }
    std::fs::write(&file, &older).unwrap();
    let stale = vectors::VectorStore::load(&file).unwrap();
    assert_eq!(stale.len(), 2);
    let backend = EmbeddedBackend::new(&path);
    assert_eq!(
        nearest_paths(&backend, [0.0, 0.0, 1.0, 0.0], 1),
        ["c.png"],
        "rebuilt from tantivy's stored embeddings"
    );
    // ...and saved again, matching the index's commit.
    let repaired = vectors::VectorStore::load(&file).unwrap();
    assert_eq!(repaired.len(), 3);
    drop(backend);

    // A truncated file, and one from another index, are rebuilt too.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let backend = EmbeddedBackend::new(&path);
    assert_eq!(nearest_paths(&backend, [1.0, 0.0, 0.0, 0.0], 1), ["a.png"]);
    drop(backend);
    let other_path = dir.path().join("other");
    {
        let other = EmbeddedBackend::new(&other_path);
        other.set_vector_space(&space4()).unwrap();
        other
            .index(&[with_vector("z.png", [1.0, 0.0, 0.0, 0.0])])
            .unwrap();
        other.finish().unwrap();
    }
    std::fs::copy(other_path.join(vectors::VECTOR_FILE), &file).unwrap();
    let backend = EmbeddedBackend::new(&path);
    assert_eq!(nearest_paths(&backend, [1.0, 0.0, 0.0, 0.0], 1), ["a.png"]);
    assert_eq!(vectors::VectorStore::load(&file).unwrap().len(), 3);
}

#[test]
fn a_stale_vector_file_is_repaired_with_the_replaced_and_dropped_vectors() {
    // A run killed between tantivy's commit and the graph's save leaves a file of an older
    // commit: here a.png was re-indexed with another vector, b.png dropped and d.png added
    // after the file was saved.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let file = path.join(vectors::VECTOR_FILE);
    {
        let backend = EmbeddedBackend::new(&path);
        backend.set_vector_space(&space4()).unwrap();
        backend.index(&vector_docs()).unwrap();
        backend.finish().unwrap();
    }
    let older = std::fs::read(&file).unwrap();
    {
        let backend = EmbeddedBackend::new(&path);
        backend
            .index(&[
                with_vector("a.png", [0.0, 0.0, 0.0, 1.0]),
                with_vector("d.png", [0.0, 1.0, 1.0, 0.0]),
            ])
            .unwrap();
        backend.delete(&["b.png".to_string()]).unwrap();
        backend.finish().unwrap();
    }
    std::fs::write(&file, &older).unwrap();
    let stale = vectors::VectorStore::summary(&file).unwrap();
    assert_eq!(stale.count, 3);
    let backend = EmbeddedBackend::new(&path);
    let v = backend.stats().unwrap().vectors.unwrap();
    assert_eq!(v.in_sync, Some(false));
    assert!(v.note.unwrap().contains("matches commit"));
    let hits = backend.nearest(&[0.0, 0.0, 0.0, 1.0], 4, 0).unwrap();
    assert_eq!(hits[0].path, "a.png", "the re-indexed vector: {hits:?}");
    assert!(hits[0].score > 0.99, "{hits:?}");
    let mut paths: Vec<String> = hits.into_iter().map(|h| h.path).collect();
    paths.sort();
    assert_eq!(paths, ["a.png", "c.png", "d.png"], "b.png was dropped");
    // ...and saved again, matching the index's commit.
    let v = backend.stats().unwrap().vectors.unwrap();
    assert_eq!((v.count, v.in_sync), (Some(3), Some(true)));
}

#[test]
fn a_vector_file_of_another_length_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let file = path.join(vectors::VECTOR_FILE);
    let backend = EmbeddedBackend::new(&path);
    backend.set_vector_space(&space4()).unwrap();
    backend.index(&vector_docs()).unwrap();
    backend.finish().unwrap();
    let summary = vectors::VectorStore::summary(&file).unwrap();
    drop(backend);
    // Same index and commit, but vectors of 8 values.
    let space8 = crate::search::VectorSpace {
        dims: 8,
        ..space4()
    };
    let mut wrong = vectors::VectorStore::new(
        space8,
        vectors::VectorStorage::F16,
        &summary.index_id,
        summary.opstamp,
    )
    .unwrap();
    wrong.upsert("a.png", &[1.0; 8]).unwrap();
    wrong.save(&file).unwrap();
    let backend = EmbeddedBackend::new(&path);
    let v = backend.stats().unwrap().vectors.unwrap();
    assert_eq!(v.in_sync, Some(false));
    assert_eq!(nearest_paths(&backend, [0.0, 1.0, 0.0, 0.0], 1), ["b.png"]);
    let repaired = vectors::VectorStore::summary(&file).unwrap();
    assert_eq!((repaired.space.dims, repaired.count), (4, 3));
}

#[test]
fn embeddings_are_stored_as_unit_f16() {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::new(dir.path().join("idx"));
    backend.set_vector_space(&space4()).unwrap();
    backend
        .index(&[with_vector("a.png", [3.0, 4.0, 0.0, 0.0])])
        .unwrap();
    let opened = backend.reader().unwrap();
    let searcher = opened.reader.searcher();
    let doc: tantivy::TantivyDocument = searcher.doc(tantivy::DocAddress::new(0, 0)).unwrap();
    use tantivy::schema::Value;
    let bytes = doc
        .get_first(opened.fields.embedding)
        .and_then(|v| v.as_bytes())
        .unwrap();
    assert_eq!(bytes.len(), 4 * 2, "2 bytes per value");
    let unit = vectors::Unit::from_bytes(bytes).unwrap().to_f32();
    assert!(
        (unit[0] - 0.6).abs() < 1e-3 && (unit[1] - 0.8).abs() < 1e-3,
        "{unit:?}"
    );
    // A zero vector has no direction: refused before anything is written.
    let err = backend
        .index(&[with_vector("z.png", [0.0; 4])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no direction"), "{err}");
    assert_eq!(backend.count().unwrap(), 1);
}

/// Hybrid search reads captions only for the page it keeps (`query_ranked`, `nearest_ranked`,
/// `fill_captions`): its pages must be exactly those of fusing the full `query` and `nearest`
/// lists, captions included (several captions per image, so the best-matching one and the
/// first differ), over several segments with deleted documents.
#[test]
fn hybrid_pages_equal_the_fusion_of_the_full_lists() {
    use crate::model::inference::Generated;
    use crate::search::Hit;
    use crate::search::fusion::{
        FUSION_DEPTH, FusionMethod, FusionWeights, ImageSearch, SearchMode, fuse, search_generated,
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::new(dir.path().join("idx"));
    backend.set_vector_space(&space4()).unwrap();
    let colours = ["red", "blue", "green", "white"];
    let kinds = ["circle", "square", "triangle"];
    let doc = |i: usize| {
        let c = colours[i % 4];
        let k = kinds[i % 3];
        let mut d = Document::from_dataset(
            format!("img/{:04}.png", (i * 37) % 1000),
            vec![
                format!("a small {} shape", colours[(i / 4) % 4]),
                format!("a {c} {k}"),
                format!(
                    "a {c} {k} beside a {} {}",
                    colours[(i / 3) % 4],
                    kinds[i % 2]
                ),
            ],
            "shapes",
        );
        let x = i as f32;
        d.embedding = Some(vec![
            (x * 0.37).sin(),
            (x * 0.11).cos(),
            1.0,
            (i % 7) as f32,
        ]);
        d
    };
    // Several commits (segments), then replacements and deletions.
    for chunk in (0..240).collect::<Vec<_>>().chunks(60) {
        let docs: Vec<Document> = chunk.iter().map(|&i| doc(i)).collect();
        backend.index(&docs).unwrap();
    }
    backend
        .index(&(0..20).map(|i| doc(i * 5)).collect::<Vec<_>>())
        .unwrap();
    let gone: Vec<String> = (0..15).map(|i| doc(i * 7 + 1).path).collect();
    backend.delete(&gone).unwrap();

    let weights = [
        FusionWeights::default(),
        FusionWeights {
            caption: 1.0,
            visual: 1.0,
            method: FusionMethod::CombsumZ,
        },
    ];
    let queries = [
        "a red circle",
        "a blue square beside a white triangle",
        "green",
    ];
    for (q, text) in queries.iter().enumerate() {
        let vector = vec![(q as f32).sin(), 0.5, 1.0, q as f32];
        let caption = backend.query(text, FUSION_DEPTH, 0).unwrap();
        let visual = backend.nearest(&vector, FUSION_DEPTH, 0).unwrap();
        // Ranked lists: the same hits, captions aside.
        let blank = |hits: &[Hit]| -> Vec<Hit> {
            hits.iter()
                .map(|h| Hit {
                    caption: String::new(),
                    ..h.clone()
                })
                .collect()
        };
        let mut ranked = backend.query_ranked(text, FUSION_DEPTH, 0).unwrap();
        assert_eq!(blank(&ranked), blank(&caption));
        backend.fill_captions(text, &mut ranked).unwrap();
        assert_eq!(ranked, caption);
        let every = backend.nearest(&vector, 300, 0).unwrap();
        assert!(
            caption.iter().any(|h| every
                .iter()
                .any(|v| v.path == h.path && v.caption != h.caption)),
            "the test needs hits whose best caption is not their first"
        );
        let mut ranked = backend.nearest_ranked(&vector, FUSION_DEPTH, 0).unwrap();
        assert_eq!(blank(&ranked), blank(&visual));
        backend.fill_captions(text, &mut ranked).unwrap();
        assert_eq!(ranked, visual);
        let generated = Generated {
            caption: text.to_string(),
            logprob: 0.0,
            embedding: Some(vector.clone()),
        };
        for weights in weights {
            for (size, offset) in [(10, 0), (5, 20), (40, 90), (150, 0)] {
                let depth = (size + offset).max(FUSION_DEPTH);
                let expected: Vec<Hit> = fuse(
                    &backend.query(text, depth, 0).unwrap(),
                    &backend.nearest(&vector, depth, 0).unwrap(),
                    weights,
                )
                .into_iter()
                .skip(offset)
                .take(size)
                .collect();
                let request = ImageSearch {
                    mode: Some(SearchMode::Hybrid),
                    size,
                    offset,
                    weights,
                };
                let got = search_generated(&backend, &generated, &space4(), &request).unwrap();
                assert_eq!(got.hits, expected, "{text:?} {weights:?} {size}+{offset}");
                assert!(!got.hits.is_empty());
                assert!(got.hits.iter().all(|h| !h.caption.is_empty()));
            }
        }
    }
}
