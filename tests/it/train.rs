//! Training end to end through the binary: overfitting a handful of images, captioning them,
//! training on two devices, and resuming a run killed with SIGKILL.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{png_bytes, run_in, tempdir, train_run, write};

use crate::common::{CAPTIONS, write_tiny_config};

/// A CSV dataset of four solid-colour images with one caption each; val holds copies of them.
fn tiny_dataset(dir: &Path) {
    let mut csv = String::from("image,caption,split\n");
    for (name, color, caption) in CAPTIONS {
        write(&dir.join("images").join(name), png_bytes(16, 16, color));
        write(&dir.join("val").join(name), png_bytes(16, 16, color));
        csv.push_str(&format!(
            "images/{name},{caption},train\nval/{name},{caption},val\n"
        ));
    }
    write(&dir.join("data.csv"), csv);
    write_tiny_config(&dir.join("tiny.toml"), 5);
}

#[test]
fn overfits_a_handful_of_images_and_captions_them_exactly() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    let out = train_run(d, "data.csv", &[]).ok();
    assert!(
        out.stdout.contains("best validation BLEU-4"),
        "{}",
        out.stdout
    );
    for f in [
        "config.toml",
        "vocab.json",
        "model.json",
        "model.bpk",
        "metrics.csv",
        "last/state.json",
    ] {
        assert!(d.join("run").join(f).exists(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(d.join("run/metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(2)?.parse().ok())
        .collect();
    assert!(losses.len() >= 10, "{metrics}");
    let last = *losses.last().unwrap();
    assert!(
        last < 0.05,
        "final training loss {last} is not near zero:\n{metrics}"
    );

    let lines = caption_tiny_images(d);
    for (line, (name, _, caption)) in lines.iter().zip(CAPTIONS) {
        assert_eq!(line["image"], format!("images/{name}"));
        assert_eq!(line["caption"], caption, "{line}");
        assert!(line["logprob"].as_f64().unwrap() > -1.0, "{line}");
    }
    // beam search agrees on a model this sure of itself
    let out = run_in(
        d,
        &[
            "caption",
            "--model",
            "run",
            "--beam-size",
            "3",
            "images/blue.png",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains("two blue triangles at the top"),
        "{}",
        out.stdout
    );
    // a directory captions every image in it
    let out = run_in(d, &["caption", "--model", "run", "images"]).ok();
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
}

/// Data-parallel training on two CPU devices (burn's flex device twice, each step's images
/// shared out between two workers) overfits the handful of images as one device does.
#[test]
fn trains_on_two_cpu_devices() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    let train = |devices: &str| train_run(d, "data.csv", &["--devices", devices]);
    train("cpu,tpu").fails_with(&["loop.devices", "tpu"]);
    let out = train("cpu,cpu").ok();
    assert!(
        out.stdout.contains("best validation BLEU-4"),
        "{}",
        out.stdout
    );
    // the run's config records the devices
    let config = std::fs::read_to_string(d.join("run/config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(
        config["loop"]["devices"],
        toml::Value::Array(vec!["cpu".into(), "cpu".into()]),
        "{config}"
    );
    let lines = caption_tiny_images(d);
    for (line, (_, _, caption)) in lines.iter().zip(CAPTIONS) {
        assert_eq!(line["caption"], caption, "{line}");
    }
}

/// The original project's job: caption images into an index, then search with an image.
#[test]
fn index_images_with_a_model_then_search_by_image() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    train_run(d, "data.csv", &[]).ok();
    let out = run_in(
        d,
        &[
            "index",
            "--images",
            "images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    assert!(out.stdout.contains("indexed 4 images"), "{}", out.stdout);
    // resumable: a second run indexes nothing new
    let out = run_in(
        d,
        &[
            "index",
            "--images",
            "images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains("indexed 0 images") && out.stdout.contains("4 already indexed"),
        "{}",
        out.stdout
    );
    // an unreadable image is reported, not fatal
    write(&d.join("images/broken.png"), b"not a png");
    let out = run_in(
        d,
        &[
            "index",
            "--images",
            "images",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    assert!(out.stderr.contains("broken.png"), "{}", out.stderr);

    let out = run_in(
        d,
        &[
            "search",
            "val/blue.png",
            "--model",
            "run",
            "--index-path",
            "idx",
            "--json",
        ],
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["caption"], "two blue triangles at the top");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["path"], "images/blue.png", "{}", out.stdout);
    assert_eq!(results[0]["caption"], "two blue triangles at the top");
    // the relative cut keeps only results close to the best
    let out = run_in(
        d,
        &[
            "search",
            "val/blue.png",
            "--model",
            "run",
            "--index-path",
            "idx",
            "--json",
            "--min-relative-score",
            "0.99",
        ],
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "{}", out.stdout);
    run_in(
        d,
        &[
            "search",
            "nothing.png",
            "--model",
            "run",
            "--index-path",
            "idx",
        ],
    )
    .fails_with(&["nothing.png"]);
}

#[test]
fn caption_errors_are_clear() {
    let dir = tempdir();
    let d = dir.path();
    run_in(d, &["caption", "--model", "nowhere", "x.png"])
        .fails_with(&["nowhere", "capsearch train"]);
}

#[test]
fn resumes_a_run_killed_with_sigkill() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    let mut child = Command::new(crate::common::bin())
        .args([
            "train",
            "--config",
            "tiny.toml",
            "--dataset",
            "data.csv",
            "--out",
            "run",
            "--no-tui",
            "--epochs",
            "100000",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = d.join("run/last/state.json");
    let start = Instant::now();
    let killed_at = loop {
        if let Ok(text) = std::fs::read_to_string(&state) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let epoch = v["epoch"].as_u64().unwrap();
            if epoch >= 3 {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break epoch;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training exited early with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // the state on disk after the kill is complete and loadable
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let resumed_from = v["epoch"].as_u64().unwrap();
    assert!(resumed_from >= killed_at);

    // without --resume the run directory is protected
    train_run(d, "data.csv", &[]).fails_with(&["--resume"]);

    let target = resumed_from + 2;
    let out = run_in(
        d,
        &[
            "train",
            "--dataset",
            "data.csv",
            "--out",
            "run",
            "--no-tui",
            "--resume",
            "--epochs",
            &target.to_string(),
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(&format!("{target} epochs")),
        "{}",
        out.stdout
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(v["epoch"].as_u64().unwrap(), target);
    // every epoch appears exactly once in metrics.csv
    let metrics = std::fs::read_to_string(d.join("run/metrics.csv")).unwrap();
    let epoch_rows: Vec<u64> = metrics
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(5).is_some_and(|c| !c.is_empty()))
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(epoch_rows, (1..=target).collect::<Vec<_>>(), "{metrics}");
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len() as u64, target);
}

/// A decoder trained on the frozen CNN of an earlier run: features are cached next to the dataset
/// once, a second run computes nothing, and the model captions images through the stored backbone.
#[test]
fn trains_a_decoder_on_a_frozen_capsearch_backbone_with_a_feature_cache() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    let train = |args: &[&str]| {
        let mut all = vec!["train", "--dataset", "data.csv", "--no-tui"];
        all.extend_from_slice(args);
        run_in(d, &all).ok()
    };
    // the backbone: a small CNN trained end to end first
    train(&["--config", "tiny.toml", "--out", "cnn", "--epochs", "40"]);
    write(
        &d.join("frozen.toml"),
        r#"
[model]
embed_size = 16
hidden_size = 32
dropout = 0.0
[model.encoder]
kind = "frozen"
backbone = "capsearch"
weights = "cnn"
[data]
word_count_threshold = 1
[optim]
lr = 0.01
schedule = "constant"
[loop]
epochs = 150
batch_size = 4
patience = 0
"#,
    );
    let first = train(&["--config", "frozen.toml", "--out", "frozen"]);
    // train and val hold the same four pictures: computed for train, found in the cache for val
    assert!(
        first
            .stderr
            .contains("train: 0 of 4 images cached, 4 to compute")
            && first
                .stderr
                .contains("val: 4 of 4 images cached, 0 to compute")
            && first.stderr.contains("computed 4 train features"),
        "{}",
        first.stderr
    );
    let caches: Vec<_> = std::fs::read_dir(d.join("features"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let cache = &caches[0];
    assert!(
        cache
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("capsearch-cnn-")
    );
    let listing = |p: &Path| {
        let mut v: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().modified().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let files = listing(cache);
    let shards = files.iter().filter(|(n, _)| n.ends_with(".feat")).count();
    assert_eq!(shards, 1, "{files:?}");
    assert!(files.iter().any(|(n, _)| n == "backbone.json"), "{files:?}");
    for f in ["backbone.json", "backbone.bpk", "model.bpk", "model.json"] {
        assert!(d.join("frozen").join(f).exists(), "{f} missing");
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("frozen/model.json")).unwrap())
            .unwrap();
    assert_eq!(
        info["captioner"]["encoder"]["kind"], "precomputed",
        "{info}"
    );
    // the run standardises its embeddings by the train split's feature statistics, as
    // `fit-embedding` would; without concept guidance it fits no guide head
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("frozen/embedding.json")).unwrap()).unwrap();
    assert_eq!(stats["images"], 4, "{stats}");
    assert!(info["captioner"]["guide_head"].is_null(), "{info}");

    // a second run reads every feature from the cache and writes nothing there
    let second = train(&[
        "--config",
        "frozen.toml",
        "--out",
        "frozen2",
        "--epochs",
        "2",
    ]);
    assert!(
        second
            .stderr
            .contains("train: 4 of 4 images cached, 0 to compute")
            && second
                .stderr
                .contains("val: 4 of 4 images cached, 0 to compute")
            && !second.stderr.contains("feature cache: computed"),
        "{}",
        second.stderr
    );
    assert_eq!(listing(cache), files, "the cache is unchanged");

    // --resume continues on the cache; a run refuses to resume on another backbone
    let resumed = train(&["--out", "frozen2", "--resume", "--epochs", "3"]);
    assert!(
        resumed.stdout.contains("3 epochs")
            && resumed.stderr.contains("train: 4 of 4 images cached"),
        "{resumed:#?}"
    );
    let config = std::fs::read_to_string(d.join("frozen2/config.toml")).unwrap();
    assert!(config.contains("weights = \"cnn\""), "{config}");
    // the frozen model's own backbone is the same CNN, but read from another file: a new key
    write(
        &d.join("frozen2/config.toml"),
        config.replace("weights = \"cnn\"", "weights = \"frozen\""),
    );
    let mut args = vec!["train", "--dataset", "data.csv", "--no-tui"];
    args.extend(["--out", "frozen2", "--resume", "--epochs", "4"]);
    run_in(d, &args).fails_with(&["trained on backbone", "choose another --out"]);

    // the model captions images: the stored backbone computes their features
    let mut args = vec!["caption", "--model", "frozen", "--json"];
    let images: Vec<String> = CAPTIONS
        .iter()
        .map(|(n, _, _)| format!("images/{n}"))
        .collect();
    args.extend(images.iter().map(String::as_str));
    let out = run_in(d, &args).ok();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for (line, (_, _, caption)) in lines.iter().zip(CAPTIONS) {
        assert_eq!(line["caption"], caption, "{line}");
    }

    // `fit-guide` adds a guide head to the trained model; unguided captions stay the same, and
    // guided decoding reads the head
    let out = run_in(
        d,
        &[
            "fit-guide",
            "--model",
            "frozen",
            "--dataset",
            "data.csv",
            "--epochs",
            "5",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains("Fitted the guide head"),
        "{}",
        out.stdout
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("frozen/model.json")).unwrap())
            .unwrap();
    assert_eq!(info["captioner"]["guide_head"]["images"], 4, "{info}");
    assert_eq!(
        info["captioner"]["guide_head"]["fit"]["epochs"], 5,
        "{info}"
    );
    for weight in ["0", "1"] {
        let mut args = vec!["caption", "--model", "frozen", "--json", "--concept-weight"];
        args.push(weight);
        args.extend(images.iter().map(String::as_str));
        let out = run_in(d, &args).ok();
        assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
        if weight == "0" {
            for (line, (_, _, caption)) in out.stdout.lines().zip(CAPTIONS) {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(line["caption"], caption, "{line}");
            }
        }
    }
}

/// The VGG-16 backbone from torchvision-named weights (the tiny fixture network): the cache is
/// keyed `vgg16-…`, images are prepared at 224×224 with Caffe's normalisation, and the model
/// captions images through the stored VGG.
#[test]
fn trains_a_decoder_on_a_frozen_vgg16_backbone() {
    let dir = tempdir();
    let d = dir.path();
    tiny_dataset(d);
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg16/vgg16_tiny.safetensors");
    write(
        &d.join("vgg.toml"),
        format!(
            r#"
[model]
embed_size = 8
hidden_size = 16
[model.encoder]
kind = "frozen"
backbone = "vgg16"
weights = {weights:?}
width = 2
hidden = 16
pool = 2
cache_dir = "cache"
[data]
word_count_threshold = 1
[loop]
epochs = 2
batch_size = 4
"#,
            weights = weights.display().to_string()
        ),
    );
    let out = run_in(
        d,
        &[
            "train",
            "--config",
            "vgg.toml",
            "--dataset",
            "data.csv",
            "--out",
            "vgg",
            "--no-tui",
        ],
    )
    .ok();
    assert!(
        out.stderr.contains("computed 4 train features"),
        "{}",
        out.stderr
    );
    let caches: Vec<String> = std::fs::read_dir(d.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        caches.len() == 1 && caches[0].starts_with("vgg16-"),
        "{caches:?}"
    );
    assert!(!d.join("features").exists(), "cache_dir moves the cache");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("vgg/model.json")).unwrap()).unwrap();
    assert_eq!(info["preprocessing"]["image_size"], 224, "{info}");
    assert_eq!(info["preprocessing"]["normalization"], "caffe", "{info}");
    assert_eq!(
        info["captioner"]["encoder"]["backbone"],
        "vgg16-fc7-w2-h16-p2"
    );
    let out = run_in(
        d,
        &[
            "caption",
            "--model",
            "vgg",
            "--json",
            "images/red.png",
            "val/blue.png",
        ],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
}

/// `caption --json` of the tiny dataset's four images with the model in `run`: one JSON line each.
fn caption_tiny_images(d: &std::path::Path) -> Vec<serde_json::Value> {
    let images: Vec<String> = CAPTIONS
        .iter()
        .map(|(n, _, _)| format!("images/{n}"))
        .collect();
    let mut args = vec!["caption", "--model", "run", "--json"];
    args.extend(images.iter().map(String::as_str));
    let out = run_in(d, &args).ok();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    lines
}
