//! `capsearch score`: captions in COCO results format scored against references in any format.

use crate::common::*;

/// A COCO captions file with three images (PNG files written beside it).
fn coco_refs(dir: &std::path::Path) -> std::path::PathBuf {
    for name in ["a.png", "b.png", "c.png"] {
        png(&dir.join("images").join(name));
    }
    write(
        &dir.join("captions.json"),
        r#"{"images": [{"id": 11, "file_name": "a.png"}, {"id": 22, "file_name": "b.png"}, {"id": 33, "file_name": "c.png"}],
            "annotations": [
              {"image_id": 11, "caption": "A red square on a white background."},
              {"image_id": 11, "caption": "A red square."},
              {"image_id": 22, "caption": "Two blue circles, side by side."},
              {"image_id": 22, "caption": "A pair of blue circles."},
              {"image_id": 33, "caption": "A green triangle."}
            ]}"#,
    )
}

#[test]
fn scores_match_the_library_and_use_pycocoevalcap_keys() {
    let dir = tempdir();
    let refs = coco_refs(dir.path());
    let results = write(
        &dir.path().join("results.json"),
        r#"[{"image_id": 11, "caption": "a red square on a white background"},
            {"image_id": 22, "caption": "two blue circles"},
            {"image_id": "c.png", "caption": "a green square"}]"#,
    );
    let out = run(&[
        "score",
        "--results",
        s(&results),
        "--references",
        s(&refs),
        "--images",
        s(&dir.path().join("images")),
        "--json",
    ])
    .ok();
    let v = out.json();
    let expected = capsearch::eval::score_all(
        &[
            "a red square on a white background",
            "two blue circles",
            "a green square",
        ],
        &[
            vec!["A red square on a white background.", "A red square."],
            vec!["Two blue circles, side by side.", "A pair of blue circles."],
            vec!["A green triangle."],
        ],
    )
    .unwrap();
    let expected = serde_json::to_value(expected).unwrap();
    for key in [
        "Bleu_1",
        "Bleu_2",
        "Bleu_3",
        "Bleu_4",
        "CIDEr",
        "ROUGE_L",
        "NeuralTalk_Bleu_1",
        "NeuralTalk_Bleu_2",
        "NeuralTalk_Bleu_3",
        "NeuralTalk_Bleu_4",
    ] {
        let got = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {v}"));
        let want = expected[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{key}: {got} vs {want}");
    }
    assert!(v["Bleu_1"].as_f64().unwrap() > 0.5);

    // The plain table names each metric and its scale.
    let out = run(&[
        "score",
        "--results",
        s(&results),
        "--references",
        s(&refs),
        "--images",
        s(&dir.path().join("images")),
    ])
    .ok();
    assert!(out.stdout.contains("Scored 3 captions"), "{}", out.stdout);
    for needle in ["Bleu_4", "CIDEr", "ROUGE_L", "NeuralTalk_Bleu_4", "0–1"] {
        assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
    }
}

#[test]
fn bad_results_are_refused_with_a_reason() {
    let dir = tempdir();
    let refs = coco_refs(dir.path());
    let images = dir.path().join("images");
    let unknown = write(
        &dir.path().join("unknown.json"),
        r#"[{"image_id": 11, "caption": "a"}, {"image_id": 99, "caption": "b"}]"#,
    );
    run(&[
        "score",
        "--results",
        s(&unknown),
        "--references",
        s(&refs),
        "--images",
        s(&images),
    ])
    .fails_with(&["1 of 2 results", "99"]);
    let twice = write(
        &dir.path().join("twice.json"),
        r#"[{"image_id": 11, "caption": "a"}, {"image_id": "a.png", "caption": "b"}]"#,
    );
    run(&[
        "score",
        "--results",
        s(&twice),
        "--references",
        s(&refs),
        "--images",
        s(&images),
    ])
    .fails_with(&["entries 0 and 1"]);
    let malformed = write(&dir.path().join("bad.json"), r#"[{"image_id": 11}]"#);
    run(&[
        "score",
        "--results",
        s(&malformed),
        "--references",
        s(&refs),
        "--images",
        s(&images),
    ])
    .fails_with(&["bad.json", "entry 0", "caption"]);
}

/// The COCO captions of `coco_refs`, without any image file (an annotation file on its own).
fn coco_refs_without_images(dir: &std::path::Path) -> std::path::PathBuf {
    let refs = coco_refs(dir);
    std::fs::remove_dir_all(dir.join("images")).unwrap();
    refs
}

#[test]
fn scoring_reads_captions_only_and_needs_no_image_files() {
    let dir = tempdir();
    let refs = coco_refs_without_images(dir.path());
    let results = write(
        &dir.path().join("results.json"),
        r#"[{"image_id": 11, "caption": "a red square on a white background"},
            {"image_id": "b.png", "caption": "two blue circles"}]"#,
    );
    // Neither the default image folder nor a given one exists.
    for extra in [&[][..], &["--images", "/no/such/folder"][..]] {
        let mut args = vec!["score", "--results", s(&results), "--references", s(&refs)];
        args.extend_from_slice(extra);
        args.push("--json");
        let out = run(&args).ok();
        let v = out.json();
        assert!(v["Bleu_1"].as_f64().unwrap() > 0.5, "{v}");
        assert!(!out.stderr.contains("were found"), "{}", out.stderr);
    }
}

#[test]
fn indexing_captions_without_images_takes_captions_only() {
    let dir = tempdir();
    let refs = coco_refs_without_images(dir.path());
    let index = dir.path().join("index");
    // By default the images must be there, and the error says how to do without them.
    run(&["index", "--dataset", s(&refs), "--index-path", s(&index)])
        .fails_with(&["none of its 3 images were found", "--captions-only"]);
    let out = run(&[
        "index",
        "--dataset",
        s(&refs),
        "--captions-only",
        "--index-path",
        s(&index),
    ])
    .ok();
    assert!(out.stdout.contains("indexed 3 images"), "{}", out.stdout);
    let out = run(&["query", "blue circles", "--json", "--index-path", s(&index)]).ok();
    let hits = out.json();
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("b.png"),
        "{hits}"
    );
    let help = run(&["index", "--help"]).ok();
    assert!(help.stdout.contains("--captions-only"), "{}", help.stdout);
}
