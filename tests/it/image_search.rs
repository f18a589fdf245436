//! Visual and hybrid search, and `eval search`, on a small generated `shapes` set with a briefly
//! trained tiny model.

use std::path::Path;

use crate::common::*;

/// A 60-image `shapes` set (16 px) and a tiny model trained on it for a few epochs.
fn shapes_and_model(d: &Path) {
    run_in(
        d,
        &[
            "dataset", "shapes", "--out", "shapes", "--images", "60", "--size", "16", "--seed", "3",
        ],
    )
    .ok();
    write_tiny_config(&d.join("tiny.toml"), 50);
    train_run(d, "shapes/dataset_shapes.json", &["--epochs", "3"]).ok();
}

#[test]
fn visual_search_finds_the_image_itself_and_eval_search_reports_every_mode() {
    let dir = tempdir();
    let d = dir.path();
    shapes_and_model(d);
    run_in(
        d,
        &[
            "index",
            "--images",
            "shapes/images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("idx").join("capsearch-index.json")).unwrap())
            .unwrap();
    let embedder = marker["vector_space"]["embedder"].as_str().unwrap();
    assert!(embedder.contains("projected image vector"), "{marker}");
    assert!(d.join("idx/vectors.bin").is_file());

    let query = "shapes/images/shape_00007.png";
    let out = run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx",
            "--mode",
            "visual",
            "--json",
        ],
    )
    .ok();
    let v = out.json();
    assert_eq!(v["mode"], "visual");
    let first = &v["results"][0];
    assert_eq!(first["path"], query, "{}", out.stdout);
    assert!(first["visual_score"].as_f64().unwrap() > 0.999, "{first}");
    // The default on an index with vectors is hybrid, and every hit has its fused score.
    let out = run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx",
            "--json",
        ],
    )
    .ok();
    let v = out.json();
    assert_eq!(v["mode"], "hybrid");
    assert_eq!(v["results"][0]["path"], query, "{}", out.stdout);
    assert!(v["results"][0]["visual_score"].is_number());
    // Plain output prints both component scores.
    let out = run_in(
        d,
        &["search", query, "--model", "run", "--index-path", "idx"],
    )
    .ok();
    assert!(
        out.stdout.contains("mode:    hybrid") && out.stdout.contains("visual"),
        "{}",
        out.stdout
    );
    // A vector file cut short (a crash, a full disk) is rebuilt from the index's stored
    // embeddings, with a message, and the search goes on.
    let file = d.join("idx/vectors.bin");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx",
            "--mode",
            "visual",
            "--json",
        ],
    )
    .ok();
    assert_eq!(out.json()["results"][0]["path"], query, "{}", out.stdout);
    assert!(
        out.stderr.contains("cut short") && out.stderr.contains("rebuilt"),
        "{}",
        out.stderr
    );
    assert!(std::fs::read(&file).unwrap().len() > bytes.len() / 2);
    // Bad weights and an index without vectors fail with a message (exit 2).
    run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx",
            "--caption-weight",
            "0",
            "--visual-weight",
            "0",
        ],
    )
    .fails_with(&["weights"]);
    run_in(
        d,
        &[
            "index",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--index-path",
            "refs",
        ],
    )
    .ok();
    run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "refs",
            "--mode",
            "visual",
        ],
    )
    .fails_with(&["no image vectors", "--mode caption"]);

    let out = run_in(
        d,
        &[
            "eval",
            "search",
            "--model",
            "run",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--out",
            "report",
        ],
    )
    .ok();
    assert!(out.stdout.contains("| hybrid |"), "{}", out.stdout);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("report/eval_search.json")).unwrap()).unwrap();
    let modes: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes,
        ["caption", "visual", "hybrid", "references", "random"]
    );
    for row in report["rows"].as_array().unwrap() {
        let p10 = row["summary"]["mean"]["P@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p10), "{row}");
    }
    let md = std::fs::read_to_string(d.join("report/eval_search.md")).unwrap();
    assert!(
        md.contains("| visual |") && md.contains("| random |"),
        "{md}"
    );

    // Other fusions and the diagnostic rows, from the same lists; a bad fusion is refused.
    let out = run_in(
        d,
        &[
            "eval",
            "search",
            "--model",
            "run",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--out",
            "report2",
            "--fusion",
            "combsum-z",
            "--compare-fusion",
            "rrf:0.3,combmnz-minmax:1",
            "--diagnostics",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains("| hybrid combmnz-minmax c1 v1 |"),
        "{}",
        out.stdout
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("report2/eval_search.json")).unwrap())
            .unwrap();
    assert_eq!(report["weights"]["method"], "combsum-z");
    let modes: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes,
        [
            "caption",
            "visual",
            "hybrid",
            "references",
            "hybrid rrf c0.3 v1",
            "hybrid combmnz-minmax c1 v1",
            "caption (query refs)",
            "hybrid (query refs)",
            "visual (concept)",
            "hybrid (concept)",
            "random"
        ]
    );
    run_in(
        d,
        &[
            "eval",
            "search",
            "--model",
            "run",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--compare-fusion",
            "borda:1",
        ],
    )
    .fails_with(&["borda"]);

    // Standardised embeddings: `fit-embedding` writes embedding.json into the model; the index
    // built before holds vectors of the old space and refuses the model's queries; a new index
    // takes the standardised vectors, and an image still finds itself first.
    let out = run_in(
        d,
        &[
            "fit-embedding",
            "--model",
            "run",
            "--dataset",
            "shapes/dataset_shapes.json",
        ],
    )
    .ok();
    assert!(out.stdout.contains("embedding.json"), "{}", out.stdout);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run/embedding.json")).unwrap()).unwrap();
    assert!(stats["images"].as_u64().unwrap() >= 2, "{stats}");
    run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx",
            "--mode",
            "visual",
        ],
    )
    .fails_with(&["standardised", "--drop"]);
    // Indexing the same folder into the old index is refused too, though every image in it is
    // indexed with this model already (not "0 indexed, all already there").
    run_in(
        d,
        &[
            "index",
            "--images",
            "shapes/images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .fails_with(&["standardised", "--drop"]);
    run_in(
        d,
        &[
            "index",
            "--images",
            "shapes/images",
            "--model",
            "run",
            "--index-path",
            "idx-std",
        ],
    )
    .ok();
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join("idx-std").join("capsearch-index.json")).unwrap(),
    )
    .unwrap();
    let embedder = marker["vector_space"]["embedder"].as_str().unwrap();
    assert!(
        embedder.contains("standardised by embedding.json"),
        "{marker}"
    );
    let out = run_in(
        d,
        &[
            "search",
            query,
            "--model",
            "run",
            "--index-path",
            "idx-std",
            "--mode",
            "visual",
            "--json",
        ],
    )
    .ok();
    assert_eq!(out.json()["results"][0]["path"], query, "{}", out.stdout);
    // Statistics of another length are refused with the file named.
    std::fs::write(
        d.join("run/embedding.json"),
        r#"{"fitted_on":"x","images":2,"mean":[0.0],"scale":[1.0]}"#,
    )
    .unwrap();
    run_in(
        d,
        &["search", query, "--model", "run", "--index-path", "idx-std"],
    )
    .fails_with(&["embedding.json", "fit-embedding"]);
}

#[test]
fn a_label_head_makes_the_embeddings_label_probabilities() {
    let dir = tempdir();
    let d = dir.path();
    shapes_and_model(d);
    let fit = |extra: &[&str]| {
        let mut args = vec!["fit-labels", "--model", "run"];
        args.extend_from_slice(extra);
        run_in(d, &args)
    };
    // A dataset without labels is refused, naming why.
    std::fs::write(
        d.join("plain.csv"),
        "image,caption\nshape_00001.png,a red circle\nshape_00002.png,a blue square\n",
    )
    .unwrap();
    fit(&["--dataset", "plain.csv", "--images", "shapes/images"])
        .fails_with(&["object labels", "plain.csv"]);
    assert!(!d.join("run/labels.json").exists());

    // The small CNN reads one image size only.
    fit(&["--dataset", "shapes/dataset_shapes.json", "--scale", "2"])
        .fails_with(&["scale 2", "EfficientNet-Lite or ResNet"]);
    // ...and has no map to pool another way.
    fit(&[
        "--dataset",
        "shapes/dataset_shapes.json",
        "--pooling",
        "gem",
    ])
    .fails_with(&["pooled by gem", "EfficientNet-Lite or ResNet"]);
    assert!(!d.join("run/labels.json").exists());

    let out = fit(&["--dataset", "shapes/dataset_shapes.json"]).ok();
    assert!(out.stdout.contains("labels.json"), "{}", out.stdout);
    let head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run/labels.json")).unwrap()).unwrap();
    let labels: Vec<&str> = head["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    // shapes' labels are colour-kind pairs
    assert!(labels.len() >= 2, "{labels:?}");
    assert!(
        labels.iter().all(|l| l.split(' ').count() >= 2),
        "{labels:?}"
    );

    // The index's vectors are the label probabilities: one value per label.
    run_in(
        d,
        &[
            "index",
            "--images",
            "shapes/images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("idx").join("capsearch-index.json")).unwrap())
            .unwrap();
    let space = &marker["vector_space"];
    assert!(
        space["embedder"].as_str().unwrap().contains("label head"),
        "{marker}"
    );
    assert_eq!(space["dims"].as_u64().unwrap() as usize, labels.len());
    let query = "shapes/images/shape_00007.png";
    crate::common::assert_finds_itself(d, "run", "idx", query);

    // eval search reports the label embedding as its visual mode.
    run_in(
        d,
        &[
            "eval",
            "search",
            "--model",
            "run",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--out",
            "report",
        ],
    )
    .ok();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("report/eval_search.json")).unwrap()).unwrap();
    assert!(
        report["embedder"].as_str().unwrap().contains("label head"),
        "{report}"
    );

    // A damaged head is refused with the file named and the fix.
    let mut bad = head.clone();
    bad["bias"] = serde_json::json!([0.5]);
    std::fs::write(d.join("run/labels.json"), bad.to_string()).unwrap();
    run_in(
        d,
        &["search", query, "--model", "run", "--index-path", "idx"],
    )
    .fails_with(&["labels.json", "fit-labels"]);
    // A well-formed head of another feature length is refused when the model loads.
    let mut other = head.clone();
    other["features"] = serde_json::json!(1);
    other["weight"] = serde_json::json!(vec![0.0; labels.len()]);
    std::fs::write(d.join("run/labels.json"), other.to_string()).unwrap();
    let err = run_in(
        d,
        &["search", query, "--model", "run", "--index-path", "idx"],
    )
    .fails_with(&["labels.json", "reads 1-d features", "fit-labels"]);
    assert!(!err.contains("fit  "), "{err}");
    // A head that reads the image at 2× cannot be used by a small CNN's model.
    let mut scaled = head.clone();
    scaled["scale"] = serde_json::json!(2);
    std::fs::write(d.join("run/labels.json"), scaled.to_string()).unwrap();
    run_in(
        d,
        &["search", query, "--model", "run", "--index-path", "idx"],
    )
    .fails_with(&["labels.json", "2× size", "without --scale"]);
}

/// On a whole frozen backbone, `fit-labels` reads the features training cached (none computed),
/// and the head is the one computing them again gives.
#[test]
fn a_label_head_on_a_frozen_backbone_reads_the_feature_cache() {
    let dir = tempdir();
    let d = dir.path();
    shapes_and_model(d);
    std::fs::write(
        d.join("frozen.toml"),
        r#"
[model]
embed_size = 16
hidden_size = 32
[model.encoder]
kind = "frozen"
backbone = "capsearch"
weights = "run"
[data]
word_count_threshold = 1
[loop]
epochs = 2
batch_size = 8
"#,
    )
    .unwrap();
    run_in(
        d,
        &[
            "train",
            "--config",
            "frozen.toml",
            "--dataset",
            "shapes/dataset_shapes.json",
            "--out",
            "frozen",
            "--no-tui",
        ],
    )
    .ok();
    let fit = |cache: Option<&str>| {
        let mut args = vec![
            "fit-labels",
            "--model",
            "frozen",
            "--dataset",
            "shapes/dataset_shapes.json",
        ];
        if let Some(c) = cache {
            args.extend(["--cache-dir", c]);
        }
        let out = run_in(d, &args).ok();
        let head = std::fs::read(d.join("frozen/labels.json")).unwrap();
        (out, head)
    };
    let (cached, head) = fit(None);
    assert!(
        cached.stderr.contains("images cached, 0 to compute")
            && !cached.stderr.contains("feature cache: computed"),
        "{}",
        cached.stderr
    );
    let (computed, again) = fit(Some("elsewhere"));
    assert!(
        computed.stderr.contains("0 of") && computed.stderr.contains("to compute"),
        "{}",
        computed.stderr
    );
    assert_eq!(
        head, again,
        "the cached and the computed features make one head"
    );
}
