//! torchvision's ResNet as a frozen backbone through the binary: training on its cached
//! features, captioning photos through the stored network, and a weights file of the other
//! network refused with the names at fault. The networks are the tiny random-weight fixtures
//! (tests/fixtures/resnet/make_fixtures.py).

use std::path::{Path, PathBuf};

use crate::common::{run_in, tempdir, write};
use crate::efficientnet::photo_dataset;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet")
        .join(name)
}

/// A config training on ResNet-18's code with the tiny fixture's shape and `weights`.
fn config(weights: &Path) -> String {
    format!(
        r#"
[model]
embed_size = 8
hidden_size = 16
[model.encoder]
kind = "frozen"
backbone = "resnet18"
weights = {weights:?}
cache_dir = "cache"
[model.encoder.resnet]
block = "basic"
layers = [2, 1, 1, 1]
width = 4
classes = 10
image_size = 32
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
    write(&dir.join("resnet.toml"), config);
    run_in(
        dir,
        &[
            "train",
            "--config",
            "resnet.toml",
            "--dataset",
            "data.csv",
            "--out",
            "resnet",
            "--no-tui",
        ],
    )
}

#[test]
fn trains_on_a_frozen_resnet_and_refuses_the_other_network() {
    let dir = tempdir();
    let d = dir.path();
    photo_dataset(d);
    let out = train(d, &config(&fixture("resnet18_tiny.pth"))).ok();
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
        caches.len() == 1 && caches[0].starts_with("resnet-"),
        "{caches:?}"
    );
    let backbone: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("resnet").join("backbone.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(backbone["resize"], "torchvision-center-crop", "{backbone}");
    assert_eq!(backbone["network"]["network"], "resnet", "{backbone}");
    assert_eq!(backbone["preprocessing"]["normalization"], "imagenet");
    let out = run_in(
        d,
        &["caption", "--model", "resnet", "--json", "images/red.png"],
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);

    std::fs::remove_dir_all(d.join("resnet")).unwrap();
    train(d, &config(&fixture("resnet50_tiny.pth"))).fails_with(&[
        "resnet50_tiny.pth",
        "missing: layer1.1.bn1.bias",
        "unexpected: layer1.0.bn3.bias",
        "resnet18 or resnet50",
    ]);
}
