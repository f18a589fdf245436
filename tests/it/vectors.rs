//! Image vectors in the search backends: the same behaviour tests on the embedded index and on
//! Elasticsearch (gated on `ES_URL` as in `search.rs`), and sharded indexing (`--shard K/N`) into
//! one index.

use capsearch::search::{Document, Hit, VectorSpace};
use serde_json::json;

use crate::search::{Kind, capsearch, fixture, text};

/// Runs each vector test on both backends.
macro_rules! vector_tests_on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $( #[test]
               fn $test() { super::$test(super::Kind::Embedded) } )*
        }
        mod elasticsearch {
            $( #[test] fn $test() { super::$test(super::Kind::Elastic) } )*
        }
    };
}

vector_tests_on_both_backends!(
    nearest_returns_the_closest_by_cosine,
    a_reindexed_document_replaces_its_vector,
    a_deleted_document_disappears,
    another_space_or_length_is_refused,
    an_index_of_captions_gains_vectors,
    stats_show_the_vectors,
);

/// Two shards into one index, on both backends (nothing here needs s5-a).
mod sharded {
    #[test]
    fn embedded() {
        super::two_shards_fill_one_index(super::Kind::Embedded)
    }
    #[test]
    fn elasticsearch() {
        super::two_shards_fill_one_index(super::Kind::Elastic)
    }
}

fn space() -> VectorSpace {
    VectorSpace {
        dims: 3,
        embedder: "test vectors 3-d".into(),
    }
}

fn doc(path: &str, caption: &str, embedding: Option<[f32; 3]>) -> Document {
    let mut d = Document::from_model(path, caption, "m");
    d.embedding = embedding.map(|v| v.to_vec());
    d
}

/// a, b, c, d with vectors; e without. The vectors have no negative component, like pooled
/// (ReLU) image features: the test server's int8 quantisation (noida-db 0.2.3) loses negative
/// components, so that an anti-parallel vector scores as an orthogonal one there.
fn corpus() -> Vec<Document> {
    vec![
        doc("a.png", "a red circle", Some([1.0, 0.0, 0.0])),
        doc("b.png", "a blue square", Some([0.6, 0.8, 0.0])),
        doc("c.png", "a green star", Some([0.0, 0.0, 1.0])),
        doc("d.png", "a red square", Some([0.0, 0.6, 0.8])),
        doc("e.png", "a red triangle", None),
    ]
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn paths(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.path.as_str()).collect()
}

/// Elasticsearch quantises vectors to int8 by default, so its similarities are approximate.
const TOLERANCE: f32 = 0.02;

/// A backend holding [`corpus`] with its vectors, or None when the backend is not available.
fn filled(kind: Kind, test: &str) -> Option<crate::search::Fixture> {
    let fx = fixture(kind, test)?;
    assert!(
        fx.backend.set_vector_space(&space()).unwrap(),
        "the {} backend must store vectors",
        fx.backend.name()
    );
    assert_eq!(fx.backend.index(&corpus()).unwrap(), 5);
    Some(fx)
}

const QUERY: [f32; 3] = [1.0, 0.1, 0.0];

fn nearest_returns_the_closest_by_cosine(kind: Kind) {
    let Some(fx) = filled(kind, "vec-nearest") else {
        return;
    };
    let b = fx.backend.as_ref();
    assert_eq!(b.vector_space().unwrap(), Some(space()));
    let hits = b.nearest(&QUERY, 10, 0).unwrap();
    assert_eq!(
        paths(&hits),
        ["a.png", "b.png", "d.png", "c.png"],
        "e has no vector"
    );
    let docs = corpus();
    for hit in &hits {
        let doc = docs.iter().find(|d| d.path == hit.path).unwrap();
        let expected = cosine(&QUERY, doc.embedding.as_ref().unwrap());
        assert!(
            (hit.score - expected).abs() < TOLERANCE,
            "{}: score {} is not the cosine {expected}",
            hit.path,
            hit.score
        );
        assert_eq!(hit.visual_score, Some(hit.score));
        assert_eq!(hit.caption_score, None);
        assert_eq!(hit.caption, doc.captions[0]);
    }
    assert_eq!(paths(&b.nearest(&QUERY, 2, 1).unwrap()), ["b.png", "d.png"]);
    assert_eq!(paths(&b.nearest(&QUERY, 1, 0).unwrap()), ["a.png"]);
    assert!(b.nearest(&QUERY, 0, 0).unwrap().is_empty());
    // Text search is unchanged by the vectors.
    assert_eq!(paths(&b.query("triangle", 10, 0).unwrap()), ["e.png"]);
}

/// `index --stats` shows the vector part: count, length, space and, on the embedded backend, the
/// vector file's size and whether it matches the tantivy commit.
fn stats_show_the_vectors(kind: Kind) {
    let Some(mut fx) = filled(kind, "vec-stats") else {
        return;
    };
    // Searching once writes the vector file (embedded); then free the writer for the CLI.
    fx.backend.nearest(&QUERY, 1, 0).unwrap();
    fx.backend.finish().unwrap();
    fx.reopen();
    let out = capsearch(&["index", "--stats", "--json"], &fx.opts);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &stats["vectors"];
    assert_eq!(v["dims"], 3, "{stats}");
    assert_eq!(v["embedder"], "test vectors 3-d");
    assert!(v["storage"].as_str().unwrap().contains("cosine"));
    match kind {
        Kind::Embedded => {
            assert_eq!(v["count"], 4, "e has no vector: {stats}");
            assert_eq!(v["in_sync"], true, "{stats}");
            assert!(v["size_bytes"].as_u64().unwrap() > 4 * 3 * 4);
        }
        Kind::Elastic => {
            // Counted with an `exists` query on the vector field.
            assert_eq!(v["count"], 4, "e has no vector: {stats}");
            assert!(
                v["in_sync"].is_null(),
                "vectors are document fields: {stats}"
            );
        }
    }
    let out = capsearch(&["index", "--stats"], &fx.opts);
    let printed = text(&out.stdout);
    assert!(
        printed.contains("of 3 values: test vectors 3-d"),
        "{printed}"
    );
    if kind == Kind::Embedded {
        assert!(printed.contains("in sync  yes"), "{printed}");
        // A vector file of an older commit is reported as such (and rebuilt on use).
        fx.backend
            .index(&[doc("f.png", "a blue circle", Some([0.0, 1.0, 0.0]))])
            .unwrap();
        fx.backend.finish().unwrap();
        let stats = fx.backend.stats().unwrap();
        let v = stats.vectors.unwrap();
        if v.in_sync == Some(false) {
            assert!(v.note.unwrap().contains("rebuilt"));
        }
        fx.backend.nearest(&QUERY, 1, 0).unwrap();
        fx.backend.finish().unwrap();
        let v = fx.backend.stats().unwrap().vectors.unwrap();
        assert_eq!((v.count, v.in_sync), (Some(5), Some(true)));
    } else {
        assert!(printed.contains("in sync  always"), "{printed}");
    }
}

fn a_reindexed_document_replaces_its_vector(kind: Kind) {
    let Some(fx) = filled(kind, "vec-reindex") else {
        return;
    };
    let b = fx.backend.as_ref();
    // a moves from [1,0,0] to [0,1,0]: b is now the nearest, a far behind.
    b.index(&[doc("a.png", "a red circle", Some([0.0, 1.0, 0.0]))])
        .unwrap();
    assert_eq!(b.count().unwrap(), 5, "replaced, not added");
    let hits = b.nearest(&QUERY, 10, 0).unwrap();
    assert_eq!(paths(&hits), ["b.png", "a.png", "d.png", "c.png"]);
    let a = &hits[1];
    let expected = cosine(&QUERY, &[0.0, 1.0, 0.0]);
    assert!(
        (a.score - expected).abs() < TOLERANCE,
        "{a:?} vs {expected}"
    );
    // Indexed again without a vector, it leaves visual search but stays in text search.
    b.index(&[doc("a.png", "a red circle", None)]).unwrap();
    assert_eq!(
        paths(&b.nearest(&QUERY, 10, 0).unwrap()),
        ["b.png", "d.png", "c.png"]
    );
    assert_eq!(paths(&b.query("circle", 10, 0).unwrap()), ["a.png"]);
}

fn a_deleted_document_disappears(kind: Kind) {
    let Some(fx) = filled(kind, "vec-delete") else {
        return;
    };
    let b = fx.backend.as_ref();
    assert_eq!(b.delete(&["a.png".into(), "zzz.png".into()]).unwrap(), 1);
    assert_eq!(b.count().unwrap(), 4);
    assert_eq!(
        paths(&b.nearest(&QUERY, 10, 0).unwrap()),
        ["b.png", "d.png", "c.png"]
    );
}

fn another_space_or_length_is_refused(kind: Kind) {
    let Some(fx) = filled(kind, "vec-refuse") else {
        return;
    };
    let b = fx.backend.as_ref();
    // The same space again is fine (every machine of a sharded run declares it).
    assert!(b.set_vector_space(&space()).unwrap());
    let other = VectorSpace {
        dims: 3,
        embedder: "another model".into(),
    };
    let err = b.set_vector_space(&other).unwrap_err().to_string();
    assert!(
        err.contains("another model") && err.contains("test vectors 3-d"),
        "{err}"
    );
    let longer = VectorSpace {
        dims: 4,
        embedder: "test vectors 3-d".into(),
    };
    assert!(b.set_vector_space(&longer).is_err());
    let err = b.nearest(&[1.0, 0.0], 10, 0).unwrap_err().to_string();
    assert!(err.contains("2 values"), "{err}");
    let mut wrong = doc("x.png", "a shape", None);
    wrong.embedding = Some(vec![1.0, 0.0]);
    let err = b.index(&[wrong]).unwrap_err().to_string();
    assert!(err.contains("x.png") && err.contains("2 values"), "{err}");
    assert_eq!(
        b.count().unwrap(),
        5,
        "nothing of the refused batch is written"
    );
    assert_eq!(
        b.vector_space().unwrap(),
        Some(space()),
        "the space is kept"
    );
}

fn an_index_of_captions_gains_vectors(kind: Kind) {
    let Some(fx) = fixture(kind, "vec-gain") else {
        return;
    };
    let b = fx.backend.as_ref();
    let err = b.nearest(&QUERY, 10, 0).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    b.index(&[doc("old.png", "an old yellow circle", None)])
        .unwrap();
    assert_eq!(b.vector_space().unwrap(), None);
    assert!(b.nearest(&QUERY, 10, 0).is_err(), "no vectors yet");
    assert!(b.set_vector_space(&space()).unwrap());
    assert_eq!(b.vector_space().unwrap(), Some(space()));
    b.index(&corpus()).unwrap();
    assert_eq!(b.count().unwrap(), 6);
    assert_eq!(b.nearest(&QUERY, 1, 0).unwrap()[0].path, "a.png");
    assert_eq!(
        paths(&b.query("yellow", 10, 0).unwrap()),
        ["old.png"],
        "documents indexed before the vectors are still searchable by text"
    );
}

/// `index --dataset --shard 1/2` then `--shard 2/2` into one index: every image once. (The same
/// shard function splits `--images DIR`.)
fn two_shards_fill_one_index(kind: Kind) {
    let Some(fx) = fixture(kind, "shards") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    let entries: Vec<_> = (0..60)
        .map(|i| json!({"imgurl": format!("set{}/{i:03}.png", i % 3), "description": format!("shape number {i}")}))
        .collect();
    let dataset = dir.path().join("custom_dataset.json");
    std::fs::write(&dataset, json!({ "images": entries }).to_string()).unwrap();
    let index = |shard: &str| {
        capsearch(
            &[
                "index",
                "--dataset",
                dataset.to_str().unwrap(),
                "--image-root",
                root.to_str().unwrap(),
                "--captions-only",
                "--shard",
                shard,
            ],
            &fx.opts,
        )
    };
    let out = index("3/2");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("K must be between 1 and 2"),
        "{}",
        text(&out.stderr)
    );
    let mut written = Vec::new();
    for shard in ["1/2", "2/2"] {
        let out = index(shard);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("(shard {shard})")), "{stdout}");
        let n: usize = stdout
            .strip_prefix("indexed ")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        written.push(n);
    }
    assert!(written.iter().all(|n| *n > 0), "{written:?}");
    assert_eq!(written.iter().sum::<usize>(), 60, "{written:?}");
    assert_eq!(fx.backend.count().unwrap(), 60, "none lost, none doubled");
    let mut listed: Vec<String> = fx
        .backend
        .list(100, 0)
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect();
    listed.dedup();
    assert_eq!(listed.len(), 60);
    // Indexing a shard again replaces its documents.
    assert!(index("1/2").status.success());
    assert_eq!(fx.backend.count().unwrap(), 60);
}

/// What the Elasticsearch mapping holds before and after the vector space is declared, and a
/// foreign `embedding` field refused (Elasticsearch only: the embedded index has no mapping).
#[test]
fn elasticsearch_mapping_gains_a_cosine_vector_field() {
    let Some(fx) = fixture(Kind::Elastic, "vec-mapping") else {
        return;
    };
    let url = format!("{}/{}", fx.opts.es_url.as_ref().unwrap(), fx.opts.es_index);
    let http = reqwest::blocking::Client::new();
    let mapping = || -> serde_json::Value {
        let body: serde_json::Value = http
            .get(format!("{url}/_mapping"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        body.as_object().unwrap().values().next().unwrap()["mappings"].clone()
    };
    fx.backend
        .index(&[doc("old.png", "a yellow circle", None)])
        .unwrap();
    assert!(mapping()["properties"].get("embedding").is_none());
    assert!(fx.backend.set_vector_space(&space()).unwrap());
    let m = mapping();
    let field = &m["properties"]["embedding"];
    assert_eq!(field["type"], "dense_vector", "{m}");
    assert_eq!(field["similarity"], "cosine", "{m}");
    assert_eq!(field["dims"], 3, "{m}");
    assert_eq!(field["index"], true, "{m}");
    assert_eq!(
        m["_meta"]["vector_space"],
        json!({"dims": 3, "embedder": "test vectors 3-d"})
    );
    // Another process reads the space back from `_meta`.
    let fresh = capsearch::search::open_backend(&fx.opts).unwrap();
    assert_eq!(fresh.vector_space().unwrap(), Some(space()));

    // An index someone created with an l2_norm `embedding` and no capsearch `_meta`.
    fx.backend.drop_index().unwrap();
    let created = http
        .put(&url)
        .json(&json!({"mappings": {"properties": {
            "path": {"type": "keyword"},
            "caption": {"type": "text", "analyzer": "english"},
            "kind": {"type": "keyword"},
            "model": {"type": "keyword"},
            "dataset": {"type": "keyword"},
            "timestamp": {"type": "date", "format": "epoch_millis"},
            "embedding": {"type": "dense_vector", "dims": 3, "similarity": "l2_norm"}}}}))
        .send()
        .unwrap();
    assert!(created.status().is_success());
    let fresh = capsearch::search::open_backend(&fx.opts).unwrap();
    let err = fresh
        .index(&[doc("x.png", "a shape", None)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conflict") && err.contains("`embedding`") && err.contains("--drop"),
        "{err}"
    );
}

/// `index --images DIR --model M --shard K/N` on two "machines" into one index: every image
/// captioned, embedded and indexed once, on both backends.
#[test]
fn images_in_two_shards_fill_one_index() {
    use crate::common::{CAPTIONS, png_bytes, train_run, write, write_tiny_config};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("image,caption,split\n");
    for (name, color, caption) in CAPTIONS {
        write(&d.join("train").join(name), png_bytes(16, 16, color));
        write(&d.join("val").join(name), png_bytes(16, 16, color));
        csv.push_str(&format!(
            "train/{name},{caption},train\nval/{name},{caption},val\n"
        ));
    }
    write(&d.join("data.csv"), csv);
    write_tiny_config(&d.join("tiny.toml"), 5);
    let trained = train_run(d, "data.csv", &[]);
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    // 24 images in two folders: 6 copies of each colour.
    let images = d.join("photos");
    for i in 0..24 {
        let (_, color, _) = CAPTIONS[i % 4];
        write(
            &images.join(format!("set{}/{i:02}.png", i % 2)),
            png_bytes(16, 16, color),
        );
    }
    let model = d.join("run");
    for kind in [Kind::Embedded, Kind::Elastic] {
        let Some(fx) = fixture(kind, "image-shards") else {
            continue;
        };
        let mut written = 0;
        for shard in ["1/2", "2/2"] {
            let out = capsearch(
                &[
                    "index",
                    "--images",
                    images.to_str().unwrap(),
                    "--model",
                    model.to_str().unwrap(),
                    "--shard",
                    shard,
                ],
                &fx.opts,
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            let stdout = text(&out.stdout);
            let n: usize = stdout
                .strip_prefix("indexed ")
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{stdout}"));
            assert!(n > 0 && n < 24, "{shard}: {stdout}");
            written += n;
        }
        assert_eq!(written, 24, "{kind:?}");
        assert_eq!(
            fx.backend.count().unwrap(),
            24,
            "{kind:?}: none lost, none doubled"
        );
        assert!(
            fx.backend.vector_space().unwrap().is_some(),
            "{kind:?}: the shards are embedded too"
        );
        let out = capsearch(
            &[
                "index",
                "--images",
                images.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--shard",
                "3/2",
            ],
            &fx.opts,
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }
}
