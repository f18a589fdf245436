//! Tests of the feature cache: shards, resuming, keys, corruption.

use super::*;
use crate::data::Split;
use crate::data::formats::Format;
use crate::data::image::ResizeMode;
use crate::model::artifact::Preprocessing;
use crate::model::backbone::{BackboneInfo, BackboneNet, BackboneNetwork};
use crate::model::encoder::SmallCnnConfig;
use image::{ImageEncoder, Rgb, RgbImage};

fn write_png(path: &Path, color: [u8; 3]) {
    let img = RgbImage::from_fn(8, 8, |x, y| {
        if (x + y) % 3 == 0 {
            Rgb(color)
        } else {
            Rgb([color[1], color[2], color[0]])
        }
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), 8, 8, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(path, out).unwrap();
}

const COLORS: [[u8; 3]; 3] = [[250, 10, 10], [10, 250, 10], [10, 10, 250]];

/// Three images (and a missing one) in a CSV dataset in `dir`.
fn dataset(dir: &Path) -> Dataset {
    for (i, c) in COLORS.iter().enumerate() {
        write_png(&dir.join(format!("{i}.png")), *c);
    }
    let sample = |p: &str| Sample {
        path: p.into(),
        captions: vec!["a thing".into()],
        split: Split::Train,
        labels: None,
    };
    Dataset {
        format: Format::Csv,
        source: dir.join("data.csv"),
        image_root: dir.to_path_buf(),
        samples: vec![
            sample("0.png"),
            sample("1.png"),
            sample("gone.png"),
            sample("2.png"),
        ],
        skipped: vec![],
        kinds: None,
    }
}

fn backbone(weights_sha256: &str, device: &Device) -> Backbone {
    device.seed(1);
    let config = SmallCnnConfig::new()
        .with_width(2)
        .with_depth(1)
        .with_grid(1);
    let cnn = config.init(device);
    Backbone::from_parts(
        BackboneInfo {
            name: "test".into(),
            network: BackboneNetwork::SmallCnn(config),
            preprocessing: Preprocessing {
                image_size: 8,
                normalization: "unit".into(),
            },
            resize: ResizeMode::Squash,
            source: "test".into(),
            weights_sha256: weights_sha256.into(),
            until_block: None,
            pooling: Default::default(),
        },
        BackboneNet::SmallCnn(cnn),
    )
    .unwrap()
}

fn run(root: &Path, b: &Backbone, ds: &Dataset) -> (FeatureCache, SplitFeatures) {
    let mut cache = FeatureCache::open(root, b).unwrap();
    let samples: Vec<&Sample> = ds.samples.iter().collect();
    let f = cache
        .features(
            b,
            ds,
            &samples,
            "test",
            &ExtractOptions {
                batch_size: 1,
                flush_every: 2,
                ..Default::default()
            },
            &Device::flex(),
        )
        .unwrap();
    (cache, f)
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == SHARD_EXT))
        .collect();
    v.sort();
    v
}

#[test]
fn computes_once_then_hits_and_recomputes_a_changed_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let device = Device::flex();
    let b = backbone("aa", &device);
    let root = default_root(&ds);
    assert_eq!(root, tmp.path().join("features"));

    let (mut cache, first) = run(&root, &b, &ds);
    assert_eq!((first.hits, first.computed), (0, 3));
    assert_eq!(first.len(), 3);
    assert_eq!(first.dim, 2);
    assert_eq!(first.failed.len(), 1, "the missing image is skipped");
    assert_eq!(first.failed[0].entry, "gone.png");
    assert_eq!(first.samples[2].path, "2.png", "sample order is kept");
    // flush_every = 2: two shards, merged into one
    assert_eq!(shard_files(cache.dir()).len(), 2);
    cache.compact().unwrap();
    assert_eq!(shard_files(cache.dir()).len(), 1);
    assert!(cache.dir().join(BACKBONE_INFO).exists());

    let (_, second) = run(&root, &b, &ds);
    assert_eq!((second.hits, second.computed), (3, 0));
    assert_eq!(
        second.values, first.values,
        "cached features read back exactly"
    );

    // change one image: only it is computed again, and its feature changes
    write_png(&tmp.path().join("1.png"), [120, 120, 0]);
    let (_, third) = run(&root, &b, &ds);
    assert_eq!((third.hits, third.computed), (2, 1));
    assert_eq!(third.row(0), first.row(0));
    assert_ne!(third.row(1), first.row(1));
    assert_eq!(third.row(2), first.row(2));
}

/// A run killed after its first shard: the next run computes only what is missing.
#[test]
fn an_interrupted_run_is_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let device = Device::flex();
    let b = backbone("aa", &device);
    let root = default_root(&ds);
    let mut cache = FeatureCache::open(&root, &b).unwrap();
    let first_two: Vec<&Sample> = ds.samples.iter().take(2).collect();
    let opts = ExtractOptions {
        flush_every: 1,
        ..Default::default()
    };
    let part = cache
        .features(&b, &ds, &first_two, "test", &opts, &device)
        .unwrap();
    assert_eq!(part.computed, 2);
    drop(cache); // no compaction: as if killed here
    let (_, all) = run(&root, &b, &ds);
    assert_eq!((all.hits, all.computed), (2, 1));
}

#[test]
fn another_backbone_gets_its_own_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let device = Device::flex();
    let root = default_root(&ds);
    let a = backbone("aa", &device);
    let (cache_a, _) = run(&root, &a, &ds);
    let b = backbone("bb", &device);
    let (cache_b, f) = run(&root, &b, &ds);
    assert_ne!(cache_a.dir(), cache_b.dir());
    assert_eq!((f.hits, f.computed), (0, 3), "new weights: nothing reused");
}

#[test]
fn corrupt_or_truncated_shards_are_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path());
    let device = Device::flex();
    let b = backbone("aa", &device);
    let root = default_root(&ds);
    let (mut cache, first) = run(&root, &b, &ds);
    cache.compact().unwrap();
    let dir = cache.dir().to_path_buf();
    let shard = shard_files(&dir).pop().unwrap();
    let good = std::fs::read(&shard).unwrap();

    // one flipped bit in the features
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    std::fs::write(&shard, &bad).unwrap();
    let (mut cache, f) = run(&root, &b, &ds);
    assert_eq!(cache.rejected.len(), 1);
    assert!(
        cache.rejected[0].1.contains("checksum"),
        "{:?}",
        cache.rejected
    );
    assert!(!shard.exists(), "the corrupt shard is deleted");
    assert_eq!((f.hits, f.computed), (0, 3));
    assert_eq!(f.values, first.values);
    cache.compact().unwrap();

    // a truncated shard, a stray file with the extension, and an unfinished temporary file
    let shard = shard_files(&dir).pop().unwrap();
    let good = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &good[..good.len() - 5]).unwrap();
    std::fs::write(dir.join("junk.feat"), b"hello").unwrap();
    std::fs::write(dir.join(".tmpXYZ"), &good[..20]).unwrap();
    let (cache, f) = run(&root, &b, &ds);
    let reasons: Vec<&str> = cache.rejected.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("truncated")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("magic")), "{reasons:?}");
    assert_eq!((f.hits, f.computed), (0, 3));

    // a shard of another backbone copied in is refused too
    let other = backbone("cc", &device);
    let path = dir.join("foreign.feat");
    write_shard(
        &path,
        &other.info.key(),
        2,
        &[("00".into(), vec![1.0, 2.0])],
    )
    .unwrap();
    let err = read_shard(&path, &b.info.key(), 2).unwrap_err();
    assert!(err.contains("written for backbone"), "{err}");
}

#[test]
fn shard_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.feat");
    let entries = vec![
        ("ab".to_string(), vec![1.5f32, -2.0, 0.0]),
        ("cd".to_string(), vec![f32::MAX, 1e-30, 3.0]),
    ];
    write_shard(&path, "k", 3, &entries).unwrap();
    assert_eq!(read_shard(&path, "k", 3).unwrap(), entries);
    assert!(read_shard(&path, "k", 4).unwrap_err().contains("values"));
    assert!(write_shard(&path, "k", 2, &entries).is_err());
}
