//! `capsearch eval` end to end: train a tiny model that reproduces its captions, evaluate it on a
//! test split, check every report file and the exact metric values, compare two reports, and the
//! error cases.

use std::path::Path;

use base64::Engine as _;

use crate::common::{png_bytes, run_in, tempdir, train_run, write};

use crate::common::{CAPTIONS, write_tiny_config};

/// Four solid-colour images with one caption each, copied into train, val and test, plus a test
/// image that is not a PNG at all (eval skips and lists it). `notest.csv` has no test split.
fn tiny_dataset(dir: &Path) {
    let mut csv = String::from("image,caption,split\n");
    let mut notest = csv.clone();
    for (name, color, caption) in CAPTIONS {
        for split in ["train", "val", "test"] {
            write(&dir.join(split).join(name), png_bytes(16, 16, color));
            csv.push_str(&format!("{split}/{name},{caption},{split}\n"));
            if split != "test" {
                notest.push_str(&format!("{split}/{name},{caption},{split}\n"));
            }
        }
    }
    write(&dir.join("test/broken.png"), b"this is not a png");
    csv.push_str("test/broken.png,a broken picture,test\n");
    write(&dir.join("data.csv"), csv);
    write(&dir.join("notest.csv"), notest);
    write_tiny_config(&dir.join("tiny.toml"), 5);
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn close(value: &serde_json::Value, expected: f64, what: &str) {
    let v = value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"));
    assert!(
        (v - expected).abs() < 1e-6,
        "{what} = {v}, expected {expected}"
    );
}

#[test]
fn evaluates_a_model_that_reproduces_its_captions() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    train_run(d, "data.csv", &[]).ok();

    let out = run_in(
        d,
        &[
            "eval",
            "--model",
            "run",
            "--dataset",
            "data.csv",
            "--split",
            "test",
        ],
    )
    .ok();
    let report = d.join("reports/run");
    assert!(
        out.stdout.contains("Report written to reports/run"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Bleu_4"), "{}", out.stdout);
    assert!(out.stdout.contains("perplexity"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Skipped 1 unreadable images") && out.stdout.contains("broken.png"),
        "{}",
        out.stdout
    );
    for f in [
        "eval.json",
        "eval.md",
        "results.json",
        "loss.png",
        "perplexity.png",
        "bleu4.png",
        "index.html",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }

    // eval.json: every metric, exactly what a perfect captioner scores with one reference each.
    let json = read_json(&report.join("eval.json"));
    let m = &json["metrics"];
    for key in [
        "Bleu_1",
        "Bleu_2",
        "Bleu_3",
        "Bleu_4",
        "ROUGE_L",
        "NeuralTalk_Bleu_1",
        "NeuralTalk_Bleu_2",
        "NeuralTalk_Bleu_3",
        "NeuralTalk_Bleu_4",
    ] {
        close(&m[key], 1.0, key);
    }
    // CIDEr-D (×10): 10 for each caption, except "a green circle", which has no 4-gram, so its
    // 4-gram similarity is 0: (10 + 7.5 + 10 + 10) / 4.
    close(&m["CIDEr"], 9.375, "CIDEr");
    let ppl = json["perplexity"].as_f64().unwrap();
    assert!((1.0..1.2).contains(&ppl), "perplexity {ppl}");
    // The image-blind baseline: the four training captions tie, the alphabetically first wins,
    // and it is right for one test image in four.
    assert_eq!(json["baseline"]["caption"], "a green circle");
    let blind = json["baseline"]["metrics"]["ROUGE_L"].as_f64().unwrap();
    assert!(blind > 0.25 && blind < 0.6, "baseline ROUGE_L {blind}");
    assert!(
        out.stdout.contains(
            "Image-blind baseline: the most frequent training caption \"a green circle\""
        ),
        "{}",
        out.stdout
    );
    assert_eq!(json["decode"]["beam_size"], 1);
    assert_eq!(json["dataset"]["split"], "test");
    assert_eq!(json["dataset"]["format"], "csv");
    assert_eq!(json["dataset"]["images"], 4);
    assert!(
        json["dataset"]["path"]
            .as_str()
            .unwrap()
            .ends_with("data.csv")
    );
    assert_eq!(json["checkpoint"]["path"], "run");
    assert!(json["checkpoint"]["epoch"].as_u64().unwrap() >= 1);
    assert_eq!(json["skipped"][0]["entry"], "test/broken.png");
    assert!(
        json["metric_notes"]["Bleu_4"]
            .as_str()
            .unwrap()
            .contains("pycocoevalcap")
    );
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), 4);
    for (img, (name, _, caption)) in images.iter().zip(CAPTIONS) {
        assert_eq!(img["image_id"], format!("test/{name}"));
        assert_eq!(img["caption"], caption);
    }

    // results.json: COCO results format.
    let results = read_json(&report.join("results.json"));
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (r, (name, _, caption)) in results.iter().zip(CAPTIONS) {
        assert_eq!(r.as_object().unwrap().len(), 2, "{r}");
        assert_eq!(r["image_id"], format!("test/{name}"));
        assert_eq!(r["caption"], caption);
    }
    // ... which `capsearch score` reads and scores the same way.
    let scored = run_in(
        d,
        &[
            "score",
            "--results",
            "reports/run/results.json",
            "--references",
            "data.csv",
            "--json",
        ],
    )
    .ok()
    .json();
    close(&scored["CIDEr"], 9.375, "score CIDEr");

    // The curves are real PNGs.
    for f in ["loss.png", "perplexity.png", "bleu4.png"] {
        let img = image::open(report.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!((img.width(), img.height()), (800, 450), "{f}");
    }

    let md = std::fs::read_to_string(report.join("eval.md")).unwrap();
    assert!(md.starts_with("# Evaluation: run"), "{md}");
    assert!(md.contains("| Bleu_4 | 1.0000 | 100.0 |"), "{md}");
    assert!(md.contains("| CIDEr | 9.3750 |"), "{md}");
    assert!(md.contains("| perplexity |"), "{md}");
    assert!(md.contains("## Skipped images (1)"), "{md}");
    assert!(md.contains("![Loss](loss.png)"), "{md}");

    // index.html: self-contained (no external resources), with curves and thumbnails inline.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for needle in ["src=\"http", "href=", "<link", "<script", "url("] {
        assert!(!html.contains(needle), "index.html contains {needle:?}");
    }
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    assert!(html.contains("two blue triangles at the top"));
    let start = html.find("data:image/jpeg;base64,").unwrap() + "data:image/jpeg;base64,".len();
    let len = html[start..].find('"').unwrap();
    let thumb = base64::engine::general_purpose::STANDARD
        .decode(&html[start..start + len])
        .unwrap();
    image::load_from_memory(&thumb).unwrap();

    // A second report with beam search, then the comparison.
    let out = run_in(
        d,
        &[
            "eval",
            "--model",
            "run",
            "--dataset",
            "data.csv",
            "--beam-size",
            "3",
            "--limit",
            "2",
            "--out",
            "reports/beam3",
        ],
    )
    .ok();
    assert!(out.stdout.contains("beam size 3"), "{}", out.stdout);
    let beam = read_json(&d.join("reports/beam3/eval.json"));
    assert_eq!(beam["decode"]["beam_size"], 3);
    assert_eq!(beam["dataset"]["images"], 2);
    let cmp = run_in(d, &["eval", "--compare", "reports/run", "reports/beam3"]).ok();
    let text = cmp.stdout;
    assert!(text.contains("A: reports/run"), "{text}");
    assert!(text.contains("B: reports/beam3"), "{text}");
    assert!(
        text.contains("warning: the reports scored different data"),
        "{text}"
    );
    let bleu4 = text
        .lines()
        .find(|l| l.starts_with("Bleu_4 "))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = bleu4.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1.0000", "1.0000", "+0.0000"], "{text}");
    let beams = text.lines().find(|l| l.starts_with("beam size")).unwrap();
    assert_eq!(
        beams.split_whitespace().collect::<Vec<_>>()[2..],
        ["1", "3"]
    );

    // Errors that need a model: a split without images, a report folder that is a file.
    run_in(
        d,
        &[
            "eval",
            "--model",
            "run",
            "--dataset",
            "notest.csv",
            "--out",
            "reports/x",
        ],
    )
    .fails_with(&["notest.csv", "the test split has no images", "--split"]);
    write(&d.join("reports/file"), "not a folder");
    run_in(
        d,
        &[
            "eval",
            "--model",
            "run",
            "--dataset",
            "data.csv",
            "--out",
            "reports/file",
        ],
    )
    .fails_with(&["reports/file", "is a file"]);
}

#[test]
fn eval_errors_are_clear() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    run_in(d, &["eval", "--model", "nowhere", "--dataset", "data.csv"])
        .fails_with(&["nowhere", "not a model directory"]);
    run_in(
        d,
        &[
            "eval",
            "--model",
            "nowhere",
            "--dataset",
            "data.csv",
            "--split",
            "bogus",
        ],
    )
    .fails_with(&["unknown split \"bogus\"", "train, val or test"]);
    run_in(d, &["eval", "--dataset", "data.csv"]).fails_with(&["--model"]);
    run_in(d, &["eval", "--compare", "reports/a", "reports/b"]).fails_with(&[
        "reports/a",
        "eval.json",
        "does not exist",
    ]);
}

/// On a generated shapes set (labelled things, a kinds lexicon), `eval.json`, `eval.md` and
/// `index.html` carry object recall and precision for the model and the image-blind baseline.
#[test]
fn eval_reports_object_metrics_on_labelled_shapes() {
    let dir = tempdir();
    let d = dir.path();
    run_in(
        d,
        &[
            "dataset", "shapes", "--out", "shapes", "--images", "24", "--size", "16", "--seed", "5",
        ],
    )
    .ok();
    write_tiny_config(&d.join("tiny.toml"), 5);
    let config = std::fs::read_to_string(d.join("tiny.toml"))
        .unwrap()
        .replace("epochs = 150", "epochs = 3");
    write(&d.join("tiny.toml"), config);
    train_run(d, "shapes", &[]).ok();
    run_in(
        d,
        &[
            "eval",
            "--model",
            "run",
            "--dataset",
            "shapes",
            "--split",
            "train",
            "--out",
            "reports/shapes",
        ],
    )
    .ok();
    let report = d.join("reports/shapes");
    let json = read_json(&report.join("eval.json"));
    for (who, objects) in [
        ("model", &json["objects"]),
        ("baseline", &json["baseline"]["objects"]),
    ] {
        assert!(
            objects["objects"].as_u64().unwrap() >= 20,
            "{who}: {objects}"
        );
        for key in ["recall", "precision"] {
            // Precision is absent only when the captions name no shape at all.
            if objects[key].is_null() && key == "precision" {
                assert_eq!(objects["mentions"], 0, "{who}: {objects}");
                continue;
            }
            let v = objects[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{who} {key}: {objects}"));
            assert!((0.0..=1.0).contains(&v), "{who} {key} = {v}");
        }
        // Shapes have no unseen exemplars: no seen/unseen split.
        assert!(objects.get("unseen_recall").is_none(), "{who}: {objects}");
    }
    let md = std::fs::read_to_string(report.join("eval.md")).unwrap();
    assert!(md.contains("## Objects"), "{md}");
    assert!(md.contains("| image-blind baseline |"), "{md}");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("<th>object recall</th>"));
}
