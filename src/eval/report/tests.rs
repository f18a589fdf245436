use std::fmt::Write as _;

use base64::Engine as _;

use super::markdown::md_escape;
use super::*;
use crate::data::Skipped;

/// A synthetic run: images drawn as coloured squares, captions scored for real.
fn sample_run(dir: &Path, n: usize) -> EvalRun {
    let colours = [
        ("red", [220u8, 40, 40]),
        ("green", [40, 180, 60]),
        ("blue", [40, 80, 220]),
        ("yellow", [240, 210, 40]),
    ];
    let shapes = ["circle", "square", "triangle"];
    let mut images = Vec::new();
    for i in 0..n {
        let (colour, rgb) = colours[i % colours.len()];
        let shape = shapes[i % shapes.len()];
        let path = dir.join(format!("img{i:03}.png"));
        let mut img = image::RgbImage::from_pixel(96, 64, image::Rgb([245, 245, 245]));
        for y in 16..48 {
            for x in 32..64 {
                img.put_pixel(x, y, image::Rgb(rgb));
            }
        }
        img.save(&path).unwrap();
        let caption = match i % 5 {
            0 => format!("a {colour} {shape} on a white background"),
            1 => format!("a {shape}"),
            2 => format!("a big {colour} {shape} <b>&amp;</b> \"quoted\""),
            3 => String::new(),
            _ => format!("two {colour} shapes next to each other"),
        };
        images.push(CaptionedImage {
            image_id: ImageId::Path(format!("img{i:03}.png")),
            image_path: Some(path),
            caption,
            references: vec![
                format!("a {colour} {shape} on a white background."),
                format!("A {colour} {shape}."),
                format!("There is one {shape} | it is {colour}."),
            ],
        });
    }
    // One image whose file is missing: the page shows a placeholder.
    images.push(CaptionedImage {
        image_id: ImageId::Number(42),
        image_path: Some(dir.join("missing.jpg")),
        caption: "a missing image".into(),
        references: vec!["an image that is not there".into()],
    });
    let (metrics, images) = score_images(images).unwrap();
    EvalRun {
        metrics,
        perplexity: Some(7.25),
        perplexity_note: None,
        decode: DecodeSettings {
            beam_size: 3,
            max_len: 16,
            concept_weight: None,
        },
        dataset: DatasetIdentity {
            path: PathBuf::from("data/shapes.json"),
            format: "karpathy".into(),
            split: "test".into(),
            images: images.len(),
        },
        checkpoint: CheckpointIdentity {
            path: PathBuf::from("checkpoints/shapes"),
            config: "shapes".into(),
            epoch: Some(12),
        },
        images,
        skipped: vec![Skipped {
            entry: "gone.png".into(),
            reason: "gone.png: no such file".into(),
        }],
        baseline: None,
        objects: None,
        concept_probe: None,
    }
}

fn metrics_csv(path: &Path) {
    let mut s = String::from(
        "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s\n",
    );
    let mut it = 0;
    for epoch in 1..=12 {
        for _ in 0..25 {
            it += 1;
            let x = it as f64;
            let loss = 1.6 + 3.0 * (-x / 90.0).exp() + 0.15 * ((x * 1.7).sin());
            let _ = writeln!(s, "{epoch},{it},{loss:.4},,,,0.001,850,{:.1}", x * 0.4);
        }
        let e = epoch as f64;
        let val = 1.9 + 2.6 * (-e / 3.2).exp();
        let _ = writeln!(
            s,
            "{epoch},{it},,{val:.4},{:.3},{:.4},,,",
            val.exp(),
            32.0 * (1.0 - (-e / 4.0).exp())
        );
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn writes_every_file_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sample_run(tmp.path(), 30);
    let csv = tmp.path().join("metrics.csv");
    metrics_csv(&csv);
    let out = tmp.path().join("reports/shapes");
    let written = write_report(
        &run,
        &out,
        &ReportOptions {
            metrics_csv: Some(csv),
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<String> = written
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in [
        "eval.json",
        "results.json",
        "loss.png",
        "perplexity.png",
        "bleu4.png",
        "eval.md",
        "index.html",
    ] {
        assert!(names.contains(&f.to_string()), "{f} in {names:?}");
        assert!(out.join(f).is_file());
    }
    // eval.json reads back to the same run (floats to within parsing precision), and keys
    // follow pycocoevalcap.
    let back = read_eval_json(&out).unwrap();
    assert_eq!(back.checkpoint, run.checkpoint);
    assert_eq!(back.dataset, run.dataset);
    assert_eq!(back.decode, run.decode);
    assert_eq!(back.perplexity, run.perplexity);
    assert_eq!(back.skipped, run.skipped);
    assert!((back.metrics.cider - run.metrics.cider).abs() < 1e-12);
    assert!((back.metrics.neuraltalk_bleu_4 - run.metrics.neuraltalk_bleu_4).abs() < 1e-12);
    assert_eq!(back.images.len(), run.images.len());
    for (x, y) in back.images.iter().zip(&run.images) {
        assert_eq!(
            (&x.image_id, &x.image_path, &x.caption, &x.references),
            (&y.image_id, &y.image_path, &y.caption, &y.references)
        );
        assert!((x.scores.cider - y.scores.cider).abs() < 1e-12);
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert!(json["metrics"]["Bleu_4"].is_f64());
    assert!(json["metrics"]["NeuralTalk_Bleu_4"].is_f64());
    assert!(
        json["metric_notes"]["CIDEr"]
            .as_str()
            .unwrap()
            .contains("σ = 6")
    );
    // results.json is COCO results format.
    let res: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(res.len(), run.images.len());
    assert_eq!(res[0]["image_id"], "img000.png");
    assert_eq!(res[30]["image_id"], 42);
    assert!(res[0]["caption"].is_string());

    let md = std::fs::read_to_string(out.join("eval.md")).unwrap();
    assert!(md.starts_with("# Evaluation: shapes, epoch 12 on shapes (test split)"));
    assert!(md.contains("| Bleu_4 |"));
    assert!(md.contains("| perplexity | 7.25 |"));
    assert!(md.contains("## Best 10 captions"));
    assert!(md.contains("## Worst 10 captions"));
    assert!(md.contains("\\| it is"), "pipes in captions are escaped");
    assert!(md.contains("![Loss](loss.png)"));
    assert!(md.contains("## Skipped images (1)"));
    assert!(md.contains("| gone.png | gone.png: no such file |"));

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    assert!(html.contains("data:image/jpeg;base64,"));
    assert!(html.contains("image not available"));
    assert!(html.contains("Skipped images (1)"));
    assert!(html.contains("Images of the test split"));
    let start = html.find("data:image/jpeg;base64,").unwrap() + "data:image/jpeg;base64,".len();
    let len = html[start..].find('"').unwrap();
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(&html[start..start + len])
        .unwrap();
    let thumb = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        (thumb.width(), thumb.height()),
        (96, 64),
        "small images are not enlarged"
    );
    assert!(!html.contains("<b>&amp;</b>"), "captions are escaped");
    assert!(html.contains("&lt;b&gt;&amp;amp;&lt;/b&gt; &quot;quoted&quot;"));
    assert!(!html.contains("src=\"http"), "no external resources");
    assert!(!html.contains("href=\"http"), "no external resources");

    // A copy for looking at by hand: CAPSEARCH_KEEP_REPORT=dir.
    if let Ok(keep) = std::env::var("CAPSEARCH_KEEP_REPORT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for f in &written.files {
            std::fs::copy(f, keep.join(f.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn ranking_puts_best_cider_first() {
    let tmp = tempfile::tempdir().unwrap();
    let run = sample_run(tmp.path(), 12);
    let order = ranking(&run);
    for w in order.windows(2) {
        assert!(run.images[w[0]].scores.cider >= run.images[w[1]].scores.cider);
    }
    let (best, worst) = best_and_worst(&run, 3);
    assert_eq!(best.len(), 3);
    assert_eq!(worst[0], *order.last().unwrap());
}

#[test]
fn compare_shows_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let run_a = sample_run(tmp.path(), 8);
    let mut run_b = run_a.clone();
    run_b.metrics.bleu_4 += 0.05;
    run_b.decode.beam_size = 5;
    run_b.dataset.split = "val".into();
    let (da, db) = (tmp.path().join("A"), tmp.path().join("B"));
    let opts = ReportOptions::default();
    write_report(&run_a, &da, &opts).unwrap();
    write_report(&run_b, &db, &opts).unwrap();
    let text = compare(&da, &db).unwrap().to_string();
    assert!(text.contains("Bleu_4"), "{text}");
    assert!(text.contains("+0.0500"), "{text}");
    assert!(
        text.contains("warning: the reports scored different data"),
        "{text}"
    );
    let e = compare(&da, &tmp.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
    // Differences too small to print are shown as +0, never -0.
    let mut run_c = run_a.clone();
    run_c.metrics.bleu_1 -= 1e-9;
    let dc = tmp.path().join("C");
    write_report(&run_c, &dc, &opts).unwrap();
    let text = compare(&da, &dc).unwrap().to_string();
    assert!(!text.contains("-0.0000"), "{text}");
}

#[test]
fn escaping() {
    assert_eq!(
        html_escape("<a href='x'>&\"</a>"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
    );
    assert_eq!(md_escape("a|b*c\nd"), "a\\|b\\*c d");
}

#[test]
fn object_metrics_appear_in_every_report_file_only_when_measured() {
    use crate::eval::objects::ObjectScores;
    let dir = tempfile::tempdir().unwrap();
    let mut run = sample_run(dir.path(), 3);
    let plain = markdown(&run, &[], 2);
    assert!(!plain.contains("## Objects"), "{plain}");
    let scores = |named, correct| ObjectScores {
        recall: Some(named as f64 / 8.0),
        precision: Some(correct as f64 / 5.0),
        seen_recall: Some(0.5),
        unseen_recall: Some(0.25),
        objects: 8,
        named,
        unseen_objects: 4,
        mentions: 5,
        correct_mentions: correct,
    };
    run.objects = Some(scores(6, 4));
    run.baseline = Some(Baseline {
        caption: "a red circle".into(),
        source: "the most frequent training caption".into(),
        metrics: run.metrics,
        objects: Some(scores(2, 1)),
    });
    let md = markdown(&run, &[], 2);
    assert!(md.contains("## Objects"), "{md}");
    assert!(md.contains("| model | "), "{md}");
    assert!(md.contains("| 0.7500 | 0.8000 | 0.5000 | 0.2500 |"), "{md}");
    assert!(md.contains("| image-blind baseline | "), "{md}");
    assert!(md.contains("| 0.2500 | 0.2000 |"), "{md}");
    assert!(
        md.contains("8 things labelled (4 from unseen exemplars)"),
        "{md}"
    );
    let out = dir.path().join("report");
    write_report(&run, &out, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<th>unseen recall</th>"), "{html}");
    assert!(html.contains("<td class=\"num\">0.7500</td>"));
    let back = read_eval_json(&out.join("eval.json")).unwrap();
    assert_eq!(back.objects, run.objects);
    assert_eq!(back.baseline.unwrap().objects, Some(scores(2, 1)));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["objects"]["recall"], 0.75);
    assert!(json["metric_notes"]["objects"].is_string());
}
