//! The search backends' behaviour: the same tests run on the embedded index and on Elasticsearch.
//!
//! Elasticsearch tests need a server: `ES_URL` (e.g. from `../shared/es-test-server.sh start`).
//! Without it they print that they were skipped and pass, except in CI (`CI` set), where a
//! missing `ES_URL` fails them. Each test uses its own index, deleted at the end. The "server
//! down" test starts a private server with `ES_TEST_SERVER_SCRIPT` (default
//! `../shared/es-test-server.sh`) on a free port with its own `ES_HOME`, so stopping it does not
//! disturb the other tests.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use capsearch::search::elastic::{ElasticBackend, ElasticConfig};
use capsearch::search::embedded::{EmbeddedBackend, MARKER_FILE};
use capsearch::search::{
    BackendKind, BackendOptions, DocKind, Document, Hit, SearchBackend, SourceCount,
    index_documents, open_backend,
};
use indicatif::ProgressBar;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Embedded,
    Elastic,
}

/// A fresh, empty index for one test, removed when dropped.
pub(super) struct Fixture {
    pub(super) backend: Box<dyn SearchBackend>,
    pub(super) opts: BackendOptions,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Replaces the backend with a fresh one, so that the embedded writer lock (held from a
    /// backend's first write until it is dropped) is free for another process.
    pub(super) fn reopen(&mut self) {
        self.backend = open_backend(&self.opts).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.opts.backend == BackendKind::Elasticsearch {
            let _ = self.backend.drop_index();
        }
    }
}

fn es_url() -> Option<String> {
    match std::env::var("ES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("ES_URL is not set: CI must run the Elasticsearch tests against a server");
            }
            None
        }
    }
}

/// Says a test was skipped, on the real stderr (the test harness captures `eprintln!`).
fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test} on Elasticsearch: ES_URL is not set \
         (start a server with ../shared/es-test-server.sh start, export ES_URL=http://127.0.0.1:9200)"
    );
}

fn unique_index(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "capsearch-it-{}-{}-{}",
        test.replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh backend of `kind`, or None (after saying so) when Elasticsearch is not available.
pub(super) fn fixture(kind: Kind, test: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let opts = match kind {
        Kind::Embedded => BackendOptions {
            backend: BackendKind::Embedded,
            index_path: dir.path().join("index"),
            ..BackendOptions::default()
        },
        Kind::Elastic => {
            let Some(url) = es_url() else {
                skipped(test);
                return None;
            };
            BackendOptions {
                backend: BackendKind::Elasticsearch,
                es_url: Some(url),
                es_index: unique_index(test),
                ..BackendOptions::default()
            }
        }
    };
    Some(Fixture {
        backend: open_backend(&opts).unwrap(),
        opts,
        _dir: dir,
    })
}

fn doc(path: &str, captions: &[&str]) -> Document {
    Document::from_dataset(path, captions.iter().map(|c| c.to_string()).collect(), "it")
}

/// `n` documents `img/NNNN.png`, each with a unique word `itemN` and a colour word.
fn corpus(n: usize, colour: &str) -> Vec<Document> {
    (0..n)
        .map(|i| {
            doc(
                &format!("img/{i:04}.png"),
                &[
                    &format!("a {colour} shape called item{i}"),
                    "a picture of geometric shapes",
                ],
            )
        })
        .collect()
}

fn paths(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.path.as_str()).collect()
}

/// Runs each behaviour test on both backends.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $test() { super::$test(super::Kind::Embedded) } )*
        }
        mod elasticsearch {
            $( #[test] fn $test() { super::$test(super::Kind::Elastic) } )*
        }
    };
}

on_both_backends!(
    mapping_is_english_text_and_exact_keys,
    a_conflicting_mapping_is_refused,
    bulk_indexes_1000_documents,
    reindexing_replaces_and_never_duplicates,
    queries_rank_page_and_pick_the_matching_caption,
    a_missing_index_says_to_run_index_first,
    an_interrupted_run_fails_clearly_and_a_rerun_completes,
    cli_query_stats_and_drop,
    cli_indexes_datasets_once_and_refuses_escaping_paths,
    lists_every_document_by_path_in_pages,
    equal_scores_rank_by_path_whatever_the_layout,
);

/// Documents with equal scores come out by path, the same in an index filled in one batch and in
/// one filled in many batches in the reverse order (another segment layout), so that `eval
/// search` figures do not change between identical runs.
fn equal_scores_rank_by_path_whatever_the_layout(kind: Kind) {
    let (Some(one), Some(many)) = (fixture(kind, "ties-one"), fixture(kind, "ties-many")) else {
        return;
    };
    // Every caption matches "red square" alike: all scores tie.
    let docs: Vec<Document> = (0..40)
        .map(|i| doc(&format!("img/{:04}.png", (i * 17) % 40), &["a red square"]))
        .collect();
    one.backend.index(&docs).unwrap();
    let mut reversed = docs.clone();
    reversed.reverse();
    for batch in reversed.chunks(6) {
        many.backend.index(batch).unwrap();
    }
    let a = one.backend.query("red square", 25, 0).unwrap();
    let b = many.backend.query("red square", 25, 0).unwrap();
    assert_eq!(a.len(), 25);
    assert!(a.windows(2).all(|w| w[0].score == w[1].score), "{a:?}");
    let expected: Vec<String> = (0..25).map(|i| format!("img/{i:04}.png")).collect();
    assert_eq!(paths(&a), expected);
    assert_eq!(paths(&b), expected);
    // Pages are slices of the same order.
    assert_eq!(
        paths(&many.backend.query("red square", 5, 10).unwrap()),
        expected[10..15]
    );
}

fn lists_every_document_by_path_in_pages(kind: Kind) {
    let Some(fx) = fixture(kind, "list") else {
        return;
    };
    let b = &fx.backend;
    let err = b.list(10, 0).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    // Indexed out of order, in two writes; one replaced, one deleted.
    let mut docs = corpus(25, "red");
    docs.reverse();
    b.index(&docs[..12]).unwrap();
    b.index(&docs[12..]).unwrap();
    b.index(&[doc("img/0004.png", &["a green star", "a second caption"])])
        .unwrap();
    assert_eq!(b.delete(&["img/0010.png".to_string()]).unwrap(), 1);
    assert_eq!(b.count().unwrap(), 24);
    let mut listed = Vec::new();
    for page in 0..5 {
        let hits = b.list(7, page * 7).unwrap();
        assert!(hits.len() <= 7, "{hits:?}");
        assert!(hits.iter().all(|h| h.score == 0.0), "{hits:?}");
        listed.extend(hits);
    }
    let expected: Vec<String> = (0..25)
        .filter(|&i| i != 10)
        .map(|i| format!("img/{i:04}.png"))
        .collect();
    assert_eq!(paths(&listed), expected);
    assert_eq!(listed[4].caption, "a green star");
    assert_eq!(listed[0].caption, "a red shape called item0");
    // The same page twice is the same page.
    assert_eq!(b.list(5, 10).unwrap(), listed[10..15].to_vec());
    assert!(b.list(5, 24).unwrap().is_empty());
    if kind == Kind::Elastic {
        let err = b.list(10, 9_995).unwrap_err().to_string();
        assert!(err.contains("10000"), "{err}");
    }
}

fn mapping_is_english_text_and_exact_keys(kind: Kind) {
    let Some(fx) = fixture(kind, "mapping") else {
        return;
    };
    let b = &fx.backend;
    b.index(&[
        doc("a.png", &["Two dogs are running on the grass"]),
        doc("dir with space/b.png", &["A cat sleeps"]),
    ])
    .unwrap();
    // Stemming and lower-casing.
    assert_eq!(paths(&b.query("dog runs", 10, 0).unwrap()), ["a.png"]);
    assert_eq!(paths(&b.query("DOGS", 10, 0).unwrap()), ["a.png"]);
    assert_eq!(
        paths(&b.query("sleeping cats", 10, 0).unwrap()),
        ["dir with space/b.png"]
    );
    // Stop words match nothing.
    assert!(b.query("the are on", 10, 0).unwrap().is_empty());
    // The path is an exact key, not analysed text.
    let all = vec![
        "dir with space/b.png".to_string(),
        "dir with space".to_string(),
    ];
    let found = b.indexed_paths(&all, DocKind::Dataset, "it").unwrap();
    assert_eq!(found, HashSet::from(["dir with space/b.png".to_string()]));
    assert!(
        b.indexed_paths(&all, DocKind::Model, "it")
            .unwrap()
            .is_empty()
    );
    assert!(b.contains("a.png", DocKind::Dataset, "it").unwrap());
    assert!(!b.contains("a.png", DocKind::Dataset, "other").unwrap());
    assert!(
        b.query("space", 10, 0).unwrap().is_empty(),
        "paths are not searched"
    );

    match kind {
        Kind::Embedded => {
            let marker = fx.opts.index_path.join(MARKER_FILE);
            let marker: Value = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
            assert_eq!(marker["schema_version"], 4);
        }
        Kind::Elastic => {
            let url = format!(
                "{}/{}/_mapping",
                fx.opts.es_url.as_ref().unwrap(),
                fx.opts.es_index
            );
            let body: Value = reqwest::blocking::get(url).unwrap().json().unwrap();
            let mapping = &body[&fx.opts.es_index]["mappings"];
            assert_eq!(mapping["dynamic"], "strict", "{body}");
            let p = &mapping["properties"];
            assert_eq!(p["caption"]["type"], "text");
            assert_eq!(p["caption"]["analyzer"], "english");
            for key in ["path", "kind", "model", "dataset"] {
                assert_eq!(p[key]["type"], "keyword", "{key}: {body}");
            }
            assert_eq!(p["timestamp"]["type"], "date");
        }
    }
}

fn a_conflicting_mapping_is_refused(kind: Kind) {
    let Some(mut fx) = fixture(kind, "conflict") else {
        return;
    };
    match kind {
        Kind::Embedded => {
            // An index written by a capsearch with an older schema (3: embeddings were stored
            // as f32, and vectors.bin was a flat list, not a graph).
            fx.backend.index(&corpus(3, "red")).unwrap();
            fx.reopen();
            let marker = fx.opts.index_path.join(MARKER_FILE);
            let text = std::fs::read_to_string(&marker).unwrap();
            std::fs::write(
                &marker,
                text.replace("\"schema_version\": 4", "\"schema_version\": 3"),
            )
            .unwrap();
        }
        Kind::Elastic => {
            // An index someone created with `caption` as a keyword.
            let url = format!("{}/{}", fx.opts.es_url.as_ref().unwrap(), fx.opts.es_index);
            let response = reqwest::blocking::Client::new()
                .put(url)
                .json(&serde_json::json!({"mappings": {"properties": {
                    "caption": {"type": "keyword"}, "path": {"type": "keyword"}}}}))
                .send()
                .unwrap();
            assert!(response.status().is_success());
        }
    }
    let fresh = open_backend(&fx.opts).unwrap();
    let err = fresh.index(&corpus(3, "red")).unwrap_err().to_string();
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains("--drop"), "{err}");
    if kind == Kind::Elastic {
        assert!(err.contains("`caption` is \"keyword\""), "{err}");
    }
    // Dropping it makes room for a fresh index.
    assert!(fresh.drop_index().unwrap());
    let again = open_backend(&fx.opts).unwrap();
    assert_eq!(again.index(&corpus(3, "red")).unwrap(), 3);
    assert_eq!(again.count().unwrap(), 3);
}

fn bulk_indexes_1000_documents(kind: Kind) {
    let Some(fx) = fixture(kind, "bulk") else {
        return;
    };
    // Elasticsearch: small bulk batches, so 1,000 documents take several requests.
    let small_batches;
    let b: &dyn SearchBackend = if kind == Kind::Elastic {
        small_batches = ElasticBackend::new(ElasticConfig {
            url: fx.opts.es_url.clone().unwrap(),
            index: fx.opts.es_index.clone(),
            batch_docs: 128,
            ..ElasticConfig::default()
        })
        .unwrap();
        &small_batches
    } else {
        fx.backend.as_ref()
    };
    let written = index_documents(b, corpus(1000, "red"), 300, &ProgressBar::hidden()).unwrap();
    assert_eq!(written, 1000);
    assert_eq!(b.count().unwrap(), 1000);
    for i in [0, 1, 421, 999] {
        let hits = b.query(&format!("item{i}"), 10, 0).unwrap();
        assert_eq!(paths(&hits), [format!("img/{i:04}.png")], "item{i}");
        assert_eq!(hits[0].caption, format!("a red shape called item{i}"));
    }
    let stats = b.stats().unwrap();
    assert_eq!(stats.documents, 1000);
    assert_eq!(
        stats.sources,
        [SourceCount {
            kind: DocKind::Dataset,
            source: "it".into(),
            documents: 1000
        }]
    );
    assert_eq!(b.query("red", 10_000, 0).unwrap().len(), 1000);
}

fn reindexing_replaces_and_never_duplicates(kind: Kind) {
    let Some(fx) = fixture(kind, "reindex") else {
        return;
    };
    let b = &fx.backend;
    b.index(&corpus(1000, "red")).unwrap();
    // Again, with new captions, plus 200 new images.
    let mut second = corpus(1200, "green");
    // A path twice in one batch keeps its last document.
    second.push(doc("img/0007.png", &["a lonely octagon"]));
    index_documents(b.as_ref(), second, 500, &ProgressBar::hidden()).unwrap();
    assert_eq!(b.count().unwrap(), 1200);
    assert!(
        b.query("red", 100, 0).unwrap().is_empty(),
        "old captions are gone"
    );
    assert_eq!(b.query("green", 10_000, 0).unwrap().len(), 1199);
    assert_eq!(paths(&b.query("octagon", 10, 0).unwrap()), ["img/0007.png"]);
    assert_eq!(
        b.query("item7", 10, 0).unwrap().len(),
        0,
        "replaced, not added"
    );
    let all: Vec<String> = (0..1200).map(|i| format!("img/{i:04}.png")).collect();
    assert_eq!(
        b.indexed_paths(&all, DocKind::Dataset, "it").unwrap().len(),
        1200
    );
    // A model caption replaces the dataset document of the same image.
    b.index(&[Document::from_model("img/0001.png", "a red star", "m1")])
        .unwrap();
    assert_eq!(b.count().unwrap(), 1200);
    assert!(b.contains("img/0001.png", DocKind::Model, "m1").unwrap());
    assert!(!b.contains("img/0001.png", DocKind::Dataset, "it").unwrap());
    // Deleting.
    let gone = vec!["img/0001.png".to_string(), "img/9999.png".to_string()];
    assert_eq!(b.delete(&gone).unwrap(), 1);
    assert_eq!(b.count().unwrap(), 1199);
}

fn queries_rank_page_and_pick_the_matching_caption(kind: Kind) {
    let Some(fx) = fixture(kind, "queries") else {
        return;
    };
    let b = &fx.backend;
    b.index(&[
        doc("both.png", &["a dog runs on the grass"]),
        doc("dog.png", &["a dog sits on a sofa near a lamp"]),
        doc("grass.png", &["green grass in a field with trees"]),
        doc(
            "multi.png",
            &[
                "a cat on a windowsill",
                "a brown dog playing fetch",
                "a sunny room",
            ],
        ),
        doc("none.png", &["a bowl of soup"]),
    ])
    .unwrap();
    let hits = b.query("dog grass", 10, 0).unwrap();
    assert_eq!(hits[0].path, "both.png");
    let found: HashSet<&str> = paths(&hits).into_iter().collect();
    assert_eq!(
        found,
        HashSet::from(["both.png", "dog.png", "grass.png", "multi.png"])
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| h.score > 0.0));
    let multi = hits.iter().find(|h| h.path == "multi.png").unwrap();
    assert_eq!(multi.caption, "a brown dog playing fetch");
    // Pages are consecutive slices of the same ranking.
    let first = b.query("dog grass", 2, 0).unwrap();
    let second = b.query("dog grass", 2, 2).unwrap();
    assert_eq!(paths(&first), paths(&hits)[..2]);
    assert_eq!(paths(&second), paths(&hits)[2..4]);
    assert!(b.query("dog grass", 10, 4).unwrap().is_empty());
    // No searchable term: nothing.
    assert!(b.query("", 10, 0).unwrap().is_empty());
    assert!(b.query("submarine", 10, 0).unwrap().is_empty());
    // The JSON the CLI and web server print.
    let json = serde_json::to_value(&hits[..1]).unwrap();
    let keys: Vec<&String> = json[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["caption", "caption_score", "path", "score"]);
}

fn a_missing_index_says_to_run_index_first(kind: Kind) {
    let Some(fx) = fixture(kind, "missing") else {
        return;
    };
    let b = &fx.backend;
    let message = "does not exist: run `capsearch index` first";
    for err in [
        b.count().unwrap_err(),
        b.query("dog", 10, 0).unwrap_err(),
        b.stats().unwrap_err(),
    ] {
        assert!(err.to_string().contains(message), "{err}");
    }
    let health = b.health().unwrap();
    assert!(!health.index_exists);
    assert!(
        b.indexed_paths(&["a.png".into()], DocKind::Model, "m")
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.delete(&["a.png".into()]).unwrap(), 0);
    assert!(!b.drop_index().unwrap());
    // Writing creates it.
    b.index(&corpus(2, "red")).unwrap();
    assert!(b.health().unwrap().index_exists);
    assert!(b.drop_index().unwrap());
    assert!(b.count().unwrap_err().to_string().contains(message));
}

/// Stops the storage after `at` documents have been read from the iterator.
struct StopAfter<I, F: FnMut()> {
    inner: I,
    seen: usize,
    at: usize,
    stop: Option<F>,
}

impl<I: Iterator, F: FnMut()> Iterator for StopAfter<I, F> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        if self.seen == self.at
            && let Some(mut stop) = self.stop.take()
        {
            stop();
        }
        self.seen += 1;
        self.inner.next()
    }
}

fn an_interrupted_run_fails_clearly_and_a_rerun_completes(kind: Kind) {
    match kind {
        Kind::Embedded => interrupted_embedded(),
        Kind::Elastic => interrupted_elastic(),
    }
}

/// The embedded analogue of a server going down: the index folder disappears mid-run (an
/// unmounted disk), then comes back.
fn interrupted_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let away = dir.path().join("away");
    let backend = EmbeddedBackend::new(&path);
    let docs = corpus(1000, "red");
    let stop = || std::fs::rename(&path, &away).unwrap();
    let run = StopAfter {
        inner: docs.clone().into_iter(),
        seen: 0,
        at: 500,
        stop: Some(stop),
    };
    let err = index_documents(&backend, run, 100, &ProgressBar::hidden())
        .unwrap_err()
        .to_string();
    eprintln!("the interrupted run said: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    drop(backend);
    std::fs::rename(&away, &path).unwrap();
    check_rerun(&EmbeddedBackend::new(&path), docs);
}

/// After an interrupted run: the first 500 documents survived, and running all 1,000 again
/// completes with each exactly once.
fn check_rerun(backend: &dyn SearchBackend, docs: Vec<Document>) {
    assert_eq!(
        backend.count().unwrap(),
        500,
        "batches before the failure are kept"
    );
    assert_eq!(
        index_documents(backend, docs, 100, &ProgressBar::hidden()).unwrap(),
        1000
    );
    assert_eq!(backend.count().unwrap(), 1000);
    for i in (0..1000).step_by(37) {
        assert_eq!(
            backend.query(&format!("item{i}"), 10, 0).unwrap().len(),
            1,
            "item{i}"
        );
    }
    assert_eq!(backend.query("red", 10_000, 0).unwrap().len(), 1000);
}

fn interrupted_elastic() {
    if es_url().is_none() {
        return skipped("an_interrupted_run_fails_clearly_and_a_rerun_completes");
    }
    let Some(server) = PrivateServer::start() else {
        return;
    };
    let url = server.url();
    let backend = ElasticBackend::new(ElasticConfig {
        url: url.clone(),
        index: "capsearch-interrupted".into(),
        max_retries: 1,
        initial_backoff: Duration::from_millis(50),
        ..ElasticConfig::default()
    })
    .unwrap();
    let docs = corpus(1000, "red");
    let run = StopAfter {
        inner: docs.clone().into_iter(),
        seen: 0,
        at: 500,
        stop: Some(|| server.stop()),
    };
    let err = index_documents(&backend, run, 100, &ProgressBar::hidden())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("Elasticsearch is not reachable at {url}")),
        "{err}"
    );
    eprintln!("the interrupted run said: {err}");
    let err = backend.query("red", 10, 0).unwrap_err().to_string();
    assert!(err.contains("not reachable"), "{err}");
    server.restart_keeping_data();
    check_rerun(&backend, docs);
}

/// A test server of our own, on a free port with its own ES_HOME.
struct PrivateServer {
    script: PathBuf,
    home: tempfile::TempDir,
    port: u16,
    restarted: std::sync::Mutex<Option<Child>>,
}

impl PrivateServer {
    fn start() -> Option<PrivateServer> {
        let script = std::env::var_os("ES_TEST_SERVER_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/es-test-server.sh")
            });
        if !script.is_file() {
            if std::env::var_os("CI").is_some() {
                panic!("{} not found: set ES_TEST_SERVER_SCRIPT", script.display());
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped the server-down test: {} not found (set ES_TEST_SERVER_SCRIPT)",
                script.display()
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateServer {
            script,
            home: tempfile::tempdir().unwrap(),
            port,
            restarted: std::sync::Mutex::new(None),
        };
        // Reuse the binary the shared server was installed with, instead of downloading it again.
        let bin = server.home.path().join("bin/noida-db");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        let installed = std::env::var_os("ES_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/es-test"))
            .join("bin/noida-db");
        if installed.is_file() {
            std::fs::copy(&installed, &bin).unwrap();
        }
        let out = server.script("start");
        assert!(
            out.status.success(),
            "starting a private test server failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .env("ES_HOME", self.home.path())
            .env("ES_PORT", self.port.to_string())
            .current_dir(self.home.path())
            .output()
            .unwrap()
    }

    fn stop(&self) {
        let out = self.script("stop");
        assert!(out.status.success(), "{out:?}");
    }

    /// Starts the server again on the same data (the script's `start` would wipe it).
    fn restart_keeping_data(&self) {
        let log = std::fs::File::create(self.home.path().join("restart.log")).unwrap();
        let child = Command::new(self.home.path().join("bin/noida-db"))
            .args(["start", "--data-dir"])
            .arg(self.home.path().join("data"))
            .args(["--host", "127.0.0.1", "--only", "elasticsearch"])
            .args(["--elasticsearch-port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.restarted.lock().unwrap() = Some(child);
        let health = format!("{}/_cluster/health", self.url());
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(&health).is_err() {
            assert!(
                Instant::now() < deadline,
                "the restarted server never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.restarted.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.script("stop");
    }
}

pub(super) fn capsearch(args: &[&str], opts: &BackendOptions) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capsearch"));
    cmd.args(args).env_remove("ES_URL").env_remove("ES_INDEX");
    match opts.backend {
        BackendKind::Embedded => {
            cmd.arg("--index-path").arg(&opts.index_path);
        }
        BackendKind::Elasticsearch => {
            cmd.args(["--backend", "elasticsearch"])
                .args(["--es-url", opts.es_url.as_deref().unwrap()])
                .args(["--es-index", &opts.es_index]);
        }
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cli_query_stats_and_drop(kind: Kind) {
    let Some(mut fx) = fixture(kind, "cli") else {
        return;
    };
    let out = capsearch(&["query", "dog"], &fx.opts);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not exist: run `capsearch index` first"),
        "{}",
        text(&out.stderr)
    );

    fx.backend
        .index(&[
            doc("both.png", &["a dog runs on the grass"]),
            doc(
                "multi.png",
                &["a cat on a windowsill", "a brown dog playing fetch"],
            ),
            doc("none.png", &["a bowl of soup"]),
        ])
        .unwrap();
    fx.reopen();
    let out = capsearch(
        &["query", "dog on grass", "--json", "--size", "5"],
        &fx.opts,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Vec<Hit> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, fx.backend.query("dog on grass", 5, 0).unwrap());
    assert_eq!(printed.len(), 2);
    let out = capsearch(
        &["query", "dog on grass", "--size", "1", "--offset", "1"],
        &fx.opts,
    );
    assert!(
        text(&out.stdout).contains("multi.png  a brown dog playing fetch"),
        "{}",
        text(&out.stdout)
    );

    let out = capsearch(&["index", "--stats", "--json"], &fx.opts);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["documents"], 3);
    assert_eq!(stats["sources"][0]["source"], "it");
    let out = capsearch(&["index", "--stats"], &fx.opts);
    assert!(
        text(&out.stdout).contains("documents  3"),
        "{}",
        text(&out.stdout)
    );

    // Not a terminal and no --yes: refused, nothing deleted.
    let out = capsearch(&["index", "--drop"], &fx.opts);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pass --yes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fx.backend.count().unwrap(), 3);
    let out = capsearch(&["index", "--drop", "--yes"], &fx.opts);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dropped"));
    let out = capsearch(&["query", "dog", "--json"], &fx.opts);
    assert_eq!(out.status.code(), Some(2));
    let out = capsearch(&["index", "--drop", "--yes"], &fx.opts);
    assert!(
        text(&out.stdout).contains("nothing to drop"),
        "{}",
        text(&out.stdout)
    );
}

/// Both backends return the same paths and captions for the same corpus and queries.
#[test]
fn both_backends_return_the_same_results() {
    let Some(es) = fixture(Kind::Elastic, "parity") else {
        return;
    };
    let embedded = fixture(Kind::Embedded, "parity").unwrap();
    let mut docs = corpus(300, "blue");
    docs.extend([
        doc("both.png", &["a dog runs on the grass"]),
        doc(
            "multi.png",
            &["a cat on a windowsill", "brown dogs playing fetch"],
        ),
        doc("none.png", &["a bowl of soup"]),
    ]);
    for fx in [&es, &embedded] {
        fx.backend.index(&docs).unwrap();
    }
    for query in [
        "dog grass",
        "dogs playing",
        "item42",
        "blue shapes",
        "soup",
        "the",
        "zebra",
    ] {
        let [a, b] = [&es, &embedded].map(|fx| {
            let mut hits: Vec<(String, String)> = fx
                .backend
                .query(query, 1000, 0)
                .unwrap()
                .into_iter()
                .map(|h| (h.path, h.caption))
                .collect();
            hits.sort();
            hits
        });
        assert_eq!(a, b, "{query}");
    }
}

/// Writes a 2x2 PNG.
pub(super) fn png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(2, 2, image::Rgb([200, 30, 30]))
        .save(path)
        .unwrap();
}

fn cli_indexes_datasets_once_and_refuses_escaping_paths(kind: Kind) {
    let Some(fx) = fixture(kind, "dataset") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("static/img");
    for name in ["dogs/dog1.png", "dogs/dog2.png", "cats/cat1.png"] {
        png(&root.join(name));
    }
    // The original project's custom_dataset.json, paths relative to --image-root.
    let custom = dir.path().join("custom_dataset.json");
    std::fs::write(
        &custom,
        r#"{"images": [
            {"imgurl": "dogs/dog1.png", "description": "a dog runs on the grass"},
            {"imgurl": "dogs/dog2.png", "description": ["a puppy sleeps", "a small dog asleep on a rug"]},
            {"imgurl": "cats/cat1.png", "description": "a cat on a sofa"}
        ]}"#,
    )
    .unwrap();
    let root_arg = root.to_str().unwrap();
    let index = |path: &Path| {
        capsearch(
            &[
                "index",
                "--dataset",
                path.to_str().unwrap(),
                "--image-root",
                root_arg,
            ],
            &fx.opts,
        )
    };
    for _ in 0..2 {
        let out = index(&custom);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("indexed 3 images (4 captions)"),
            "{}",
            text(&out.stdout)
        );
    }
    assert_eq!(fx.backend.count().unwrap(), 3, "indexed twice, stored once");
    let out = capsearch(&["query", "small dogs", "--json"], &fx.opts);
    let hits: Vec<Hit> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits[0].path, root.join("dogs/dog2.png").to_string_lossy());
    assert_eq!(hits[0].caption, "a small dog asleep on a rug");
    let stats = fx.backend.stats().unwrap();
    assert_eq!(
        stats.sources,
        [SourceCount {
            kind: DocKind::Dataset,
            source: "custom_dataset".into(),
            documents: 3
        }]
    );

    // A path that leaves the image root is refused, and nothing of that file is indexed.
    let escaping = dir.path().join("escaping.json");
    png(&dir.path().join("static/secret.png"));
    std::fs::write(
        &escaping,
        r#"{"images": [
            {"imgurl": "dogs/dog1.png", "description": "a boat"},
            {"imgurl": "../secret.png", "description": "a secret"}
        ]}"#,
    )
    .unwrap();
    let out = index(&escaping);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("escapes the image root"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fx.backend.count().unwrap(), 3);
    assert!(fx.backend.query("boat secret", 10, 0).unwrap().is_empty());

    // A generated Karpathy-style dataset (the README's shapes) indexes into the same index.
    let shapes = dir.path().join("shapes");
    let out = Command::new(env!("CARGO_BIN_EXE_capsearch"))
        .args(["dataset", "shapes", "--images", "12", "--out"])
        .arg(&shapes)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = capsearch(
        &[
            "index",
            "--dataset",
            shapes.join("dataset_shapes.json").to_str().unwrap(),
            "--split",
            "train",
        ],
        &fx.opts,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = fx.backend.stats().unwrap();
    let shapes_docs = stats
        .sources
        .iter()
        .find(|s| s.source == "dataset_shapes")
        .unwrap();
    assert!(
        shapes_docs.documents > 0 && shapes_docs.documents < 12,
        "{stats:?}"
    );
    assert_eq!(stats.documents, 3 + shapes_docs.documents);
}
