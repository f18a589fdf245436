//! EfficientNet-Lite as a frozen backbone through the binary: training on its cached features,
//! captioning photos of any size and aspect, and the errors for wrong, broken or unknown weights.
//! The network is the tiny random-weight fixture (tests/fixtures/efficientnet/make_fixtures.py);
//! the real Lite0 is checked in `model::efficientnet`'s unit tests.

use std::path::{Path, PathBuf};

use crate::common::{CAPTIONS, png_bytes, run_in, tempdir, write};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet/effnet_tiny.pth")
}

/// A CSV dataset of four solid-colour images of different sizes and aspects, one caption each;
/// val holds copies of them.
pub(crate) fn photo_dataset(dir: &Path) {
    let sizes = [(40, 24), (24, 40), (33, 33), (90, 17)];
    let mut csv = String::from("image,caption,split\n");
    for ((name, color, caption), (w, h)) in CAPTIONS.into_iter().zip(sizes) {
        write(&dir.join("images").join(name), png_bytes(w, h, color));
        write(&dir.join("val").join(name), png_bytes(h, w, color));
        csv.push_str(&format!(
            "images/{name},{caption},train\nval/{name},{caption},val\n"
        ));
    }
    write(&dir.join("data.csv"), csv);
}

/// A config training on EfficientNet-Lite0's code with the fixture's shape and `weights`.
fn config(backbone: &str, weights: &Path) -> String {
    format!(
        r#"
[model]
embed_size = 8
hidden_size = 16
[model.encoder]
kind = "frozen"
backbone = "{backbone}"
weights = {weights:?}
cache_dir = "cache"
[model.encoder.efficientnet]
stem = 8
head = 16
classes = 10
image_size = 32
stages = [
  {{ expand = 1, kernel = 3, stride = 1, out = 8, repeats = 1 }},
  {{ expand = 6, kernel = 3, stride = 2, out = 8, repeats = 2 }},
  {{ expand = 6, kernel = 5, stride = 2, out = 16, repeats = 1 }},
  {{ expand = 2, kernel = 5, stride = 1, out = 16, repeats = 2 }},
]
[data]
word_count_threshold = 1
[loop]
epochs = 2
batch_size = 4
"#,
        weights = weights.display().to_string()
    )
}

fn train(dir: &Path, config: &str) -> crate::common::Output {
    write(&dir.join("effnet.toml"), config);
    run_in(
        dir,
        &[
            "train",
            "--config",
            "effnet.toml",
            "--dataset",
            "data.csv",
            "--out",
            "effnet",
            "--no-tui",
        ],
    )
}

/// Features cached under an `efficientnet-lite-…` key, images centre-cropped to the network's
/// size with `(x − 127) / 128`, and the model captions photos through the stored network.
#[test]
fn trains_a_decoder_on_a_frozen_efficientnet_backbone() {
    let dir = tempdir();
    let d = dir.path();
    photo_dataset(d);
    let out = train(d, &config("efficientnet-lite0", &fixture())).ok();
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
        caches.len() == 1 && caches[0].starts_with("efficientnet-lite-"),
        "{caches:?}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("effnet").join(name)).unwrap())
            .unwrap()
    };
    let info = read("model.json");
    assert_eq!(info["preprocessing"]["image_size"], 32, "{info}");
    assert_eq!(info["preprocessing"]["normalization"], "efficientnet");
    assert_eq!(
        info["captioner"]["encoder"]["backbone"],
        "efficientnet-lite0-custom-s8-h16-i32"
    );
    assert_eq!(info["captioner"]["encoder"]["dim"], 16);
    let backbone = read("backbone.json");
    assert_eq!(backbone["resize"], "shorter-side-center-crop", "{backbone}");
    assert_eq!(
        backbone["network"]["network"], "efficient-net",
        "{backbone}"
    );

    // A second run finds every feature in the cache.
    let again = run_in(
        d,
        &[
            "train",
            "--config",
            "effnet.toml",
            "--dataset",
            "data.csv",
            "--out",
            "effnet2",
            "--no-tui",
        ],
    )
    .ok();
    assert!(
        again.stderr.contains("train: 4 of 4 images cached"),
        "{}",
        again.stderr
    );
    let out = run_in(
        d,
        &[
            "caption",
            "--model",
            "effnet",
            "--json",
            "images/red.png",
            "images/white.png",
        ],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
}

/// `pooling = "mean-max"`: its own cache beside the mean one, twice the values, recorded in
/// backbone.json and in the features' name, and captioning pools the same way (a decoder fed
/// features of another length would refuse them).
#[test]
fn a_pooling_gets_its_own_cache_and_captions_pool_alike() {
    let dir = tempdir();
    let d = dir.path();
    photo_dataset(d);
    train(d, &config("efficientnet-lite0", &fixture())).ok();
    let pooled = config("efficientnet-lite0", &fixture()).replace(
        "cache_dir = \"cache\"\n",
        "cache_dir = \"cache\"\npooling = \"mean-max\"\n",
    );
    write(&d.join("pooled.toml"), &pooled);
    let out = run_in(
        d,
        &[
            "train",
            "--config",
            "pooled.toml",
            "--dataset",
            "data.csv",
            "--out",
            "pooled",
            "--no-tui",
        ],
    )
    .ok();
    assert!(
        out.stderr.contains("computed 4 train features"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(d.join("cache")).unwrap().count(), 2);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("pooled").join(name)).unwrap())
            .unwrap()
    };
    let info = read("model.json");
    let encoder = &info["captioner"]["encoder"];
    assert_eq!(encoder["dim"], 32, "{info}");
    assert_eq!(
        encoder["backbone"],
        "efficientnet-lite0-custom-s8-h16-i32-mean-max"
    );
    assert_eq!(read("backbone.json")["pooling"], "mean-max");
    let config = std::fs::read_to_string(d.join("pooled").join("config.toml")).unwrap();
    assert!(config.contains("pooling = \"mean-max\""), "{config}");
    let out = run_in(
        d,
        &["caption", "--model", "pooled", "--json", "images/red.png"],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

/// Weights of another network, a broken file and an unknown backbone: exit 2 with a message that
/// says what is wrong, no panic.
#[test]
fn wrong_broken_or_unknown_weights_exit_2_with_a_message() {
    let dir = tempdir();
    let d = dir.path();
    photo_dataset(d);

    let vgg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vgg16/vgg16_tiny.pth");
    train(d, &config("efficientnet-lite0", &vgg)).fails_with(&[
        "vgg16_tiny.pth",
        "97 missing: blocks.0.bn1.beta",
        "32 unexpected: classifier.0.bias",
    ]);

    let bytes = std::fs::read(fixture()).unwrap();
    let cut = write(&d.join("cut.pth"), &bytes[..bytes.len() / 2]);
    train(d, &config("efficientnet-lite0", &cut)).fails_with(&["cut.pth"]);
    let junk = write(&d.join("junk.pth"), "<html>not found</html>");
    train(d, &config("efficientnet-lite0", &junk))
        .fails_with(&["junk.pth", "not a PyTorch checkpoint"]);

    train(d, &config("resnet101", &fixture())).fails_with(&[
        "effnet.toml",
        "resnet101",
        "efficientnet-lite0",
        "efficientnet-lite2",
        "vgg16",
        "capsearch",
    ]);
}

/// A feature extraction killed (SIGKILL) after it wrote its first shards: the next run reads
/// those shards and computes only the images they lack, then trains.
#[test]
fn a_killed_feature_extraction_resumes_without_recomputing_finished_shards() {
    const IMAGES: usize = 2000;
    let dir = tempdir();
    let d = dir.path();
    // Distinct images (features are keyed by content), enough for several 256-image shards.
    let mut csv = String::from("image,caption,split\n");
    for i in 0..IMAGES {
        let name = format!("images/{i:04}.png");
        let color = [(i % 256) as u8, (i / 256) as u8 * 16, 7];
        write(&d.join(&name), png_bytes(8, 8, color));
        csv.push_str(&format!("{name},a thing number {},train\n", i % 7));
    }
    for (name, color, caption) in CAPTIONS {
        write(&d.join("val").join(name), png_bytes(8, 8, color));
        csv.push_str(&format!("val/{name},{caption},val\n"));
    }
    write(&d.join("data.csv"), csv);
    let toml = config("efficientnet-lite0", &fixture())
        .replace("epochs = 2\nbatch_size = 4", "epochs = 1\nbatch_size = 64");
    write(&d.join("effnet.toml"), toml);
    let args = [
        "train",
        "--config",
        "effnet.toml",
        "--dataset",
        "data.csv",
        "--out",
        "effnet",
        "--no-tui",
    ];
    let shards = |cache: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(cache)
            .into_iter()
            .flatten()
            .flat_map(|e| std::fs::read_dir(e.unwrap().path()).into_iter().flatten())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "feat"))
            .collect()
    };

    // Kill the run as soon as a shard is on disk, then run it again. When the kill landed after
    // the extraction had finished (a very loaded machine), there was nothing to resume: try again
    // with an empty cache.
    let flush = capsearch::train::feature_cache::ExtractOptions::default().flush_every;
    let mut resumed = None;
    for _attempt in 0..5 {
        let _ = std::fs::remove_dir_all(d.join("cache"));
        let _ = std::fs::remove_dir_all(d.join("effnet"));
        let mut child = std::process::Command::new(crate::common::bin())
            .args(args)
            .current_dir(d)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while shards(&d.join("cache")).is_empty()
            && child.try_wait().unwrap().is_none()
            && started.elapsed().as_secs() < 120
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let kept = shards(&d.join("cache"));
        assert!(!kept.is_empty(), "no shard written before the kill");

        let out = run_in(d, &args).ok();
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("train: ") && l.contains("images cached"))
            .unwrap_or_else(|| panic!("no cache line:\n{}", out.stderr))
            .to_string();
        let cached: usize = line
            .split("train: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        if cached < IMAGES {
            resumed = Some((out, line, cached));
            break;
        }
    }
    let (out, line, cached) = resumed.expect("the run was never killed mid-extraction in 5 tries");
    // Whole shards were kept and read back; only the images they lack were computed.
    assert!(cached > 0 && cached % flush == 0, "{line}");
    let rest = IMAGES - cached;
    assert!(
        line.contains(&format!(
            "{cached} of {IMAGES} images cached, {rest} to compute"
        )),
        "{line}"
    );
    assert!(
        out.stderr
            .contains(&format!("computed {rest} train features")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("ignoring"), "{}", out.stderr);
    assert!(d.join("effnet/model.bpk").is_file());
}

/// `train_from_block`: the cache holds the frozen part's maps under their own key, the model
/// carries the fine-tuned blocks, and captions photos through frozen part then tail.
#[test]
fn fine_tunes_the_last_blocks_and_captions_with_them() {
    let dir = tempdir();
    let d = dir.path();
    photo_dataset(d);
    let config = config("efficientnet-lite0", &fixture()).replace(
        "cache_dir = \"cache\"",
        "cache_dir = \"cache\"\ntrain_from_block = 5",
    );
    let out = train(d, &config).ok();
    assert!(
        out.stderr
            .contains("fine-tuning the backbone's last blocks"),
        "{}",
        out.stderr
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("effnet").join(name)).unwrap())
            .unwrap()
    };
    let info = read("model.json");
    let encoder = &info["captioner"]["encoder"];
    assert_eq!(encoder["kind"], "fine-tuned", "{info}");
    assert_eq!(encoder["dim"], 16, "{info}");
    assert_eq!(encoder["tail"]["from_block"], 5, "{info}");
    assert_eq!(read("backbone.json")["until_block"], 5);
    // block 4 outputs 16 channels at 32 / 2 / 2 / 2 = 4 pixels a side
    let caches: Vec<String> = std::fs::read_dir(d.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let out = run_in(
        d,
        &[
            "caption",
            "--model",
            "effnet",
            "--json",
            "images/red.png",
            "images/white.png",
        ],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);

    let bad = config.replace("train_from_block = 5", "train_from_block = 7");
    std::fs::remove_dir_all(d.join("effnet")).unwrap();
    train(d, &bad).fails_with(&["train_from_block", "6 blocks"]);
}

/// `fit-labels --scale 2`: the label head reads the network on each image enlarged to twice the
/// model's size, computed (the cache holds the model's own size), and so does every embedding
/// the model gives afterwards: the index's vector space names the scale, and an image finds
/// itself. So does `--pooling gem`. The small CNN, which reads one size and has no map to pool, is
/// refused in `image_search.rs`.
#[test]
fn a_label_head_reads_the_backbone_at_twice_the_size() {
    let dir = tempdir();
    let d = dir.path();
    run_in(
        d,
        &[
            "dataset", "shapes", "--out", "shapes", "--images", "40", "--seed", "3",
        ],
    )
    .ok();
    write(
        &d.join("effnet.toml"),
        config("efficientnet-lite0", &fixture()),
    );
    let dataset = "shapes/dataset_shapes.json";
    run_in(
        d,
        &[
            "train",
            "--config",
            "effnet.toml",
            "--dataset",
            dataset,
            "--out",
            "effnet",
            "--no-tui",
        ],
    )
    .ok();
    let fit = |extra: &[&str]| {
        let mut args = vec!["fit-labels", "--model", "effnet", "--dataset", dataset];
        args.extend_from_slice(extra);
        let out = run_in(d, &args).ok();
        let head: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("effnet/labels.json")).unwrap()).unwrap();
        (out, head)
    };
    let (plain_out, plain) = fit(&[]);
    assert!(
        plain_out.stderr.contains("to compute") && plain["scale"].is_null(),
        "{}\n{plain}",
        plain_out.stderr
    );
    let (_, head) = fit(&["--scale", "2", "--values", "probability"]);
    assert_eq!(head["scale"], 2, "{head}");
    assert_eq!(head["values"], "probability", "{head}");
    assert_ne!(head["weight"], plain["weight"], "features at 2× are others");
    assert!(head["pooling"].is_null(), "{head}");
    // the map pooled another way for the head: computed, not read from the cache
    let (gem_out, gem) = fit(&["--pooling", "gem"]);
    assert_eq!(gem["pooling"], "gem", "{gem}");
    assert!(gem["scale"].is_null(), "{gem}");
    assert_eq!(gem["features"], plain["features"], "{gem}");
    assert_ne!(
        gem["weight"], plain["weight"],
        "the gem-pooled features are others"
    );
    assert!(!gem_out.stderr.contains("to compute"), "{}", gem_out.stderr);
    let (_, both) = fit(&[
        "--scale",
        "2",
        "--values",
        "probability",
        "--pooling",
        "gem",
    ]);
    assert_eq!(
        (&both["scale"], &both["pooling"]),
        (&head["scale"], &gem["pooling"])
    );

    run_in(
        d,
        &[
            "index",
            "--images",
            "shapes/images",
            "--model",
            "effnet",
            "--index-path",
            "idx",
        ],
    )
    .ok();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("idx/capsearch-index.json")).unwrap())
            .unwrap();
    let embedder = marker["vector_space"]["embedder"].as_str().unwrap();
    assert!(
        embedder.contains("label probabilities, the image read at 2× size, the map pooled by gem")
            && !embedder.contains("square roots"),
        "{marker}"
    );
    let query = "shapes/images/shape_00005.png";
    crate::common::assert_finds_itself(d, "effnet", "idx", query);
}
