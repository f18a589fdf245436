use std::collections::HashSet;

use super::assets::{self, FETCH_HINT};
use super::compose::{render, sample_scene};
use super::fixture::{STAMPS, stamps_dir, write_fixture};
use super::*;
use crate::data::formats::{self, LoadOptions};
use crate::data::shapes::image_rng;

fn fixture() -> (tempfile::TempDir, AssetPaths) {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_fixture(dir.path()).unwrap();
    (dir, paths)
}

fn options(out: &std::path::Path, paths: &AssetPaths, images: usize) -> ScenesOptions {
    let mut o = ScenesOptions::new(out, paths.clone(), images, 7);
    o.size = 64;
    o
}

#[test]
fn fixture_assets_load_with_held_out_stamps() {
    let (_dir, paths) = fixture();
    let a = assets::load(&paths, 64, 2).unwrap();
    assert_eq!(a.stamps.len(), STAMPS.len());
    assert_eq!(a.settings.len(), 2);
    // The last stamp of each kind with two stamps is held out; the single bar is not.
    let unseen: Vec<&str> = a
        .stamps
        .iter()
        .filter(|s| s.unseen)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(unseen, ["round/blue_disc.png", "round/white_ring.png"]);
    // Phrases: the override, else the English description, else the kind.
    let phrase = |p: &str| {
        a.stamps
            .iter()
            .find(|s| s.path == p)
            .unwrap()
            .phrase
            .clone()
    };
    assert_eq!(phrase("round/blue_disc.png"), "a blue disc");
    assert_eq!(phrase("round/red_disc.png"), "a red disc");
    // Settings are scaled down to about twice the output side.
    assert!(a.settings.iter().all(|s| s.image.height() <= 128));
}

#[test]
fn generation_is_deterministic_and_thread_independent() {
    let (dir, paths) = fixture();
    let a = assets::load(&paths, 64, 2).unwrap();
    let x = generate_one(&a, 3, 11, Split::Train, 64, 5).unwrap();
    let y = generate_one(&a, 3, 11, Split::Train, 64, 5).unwrap();
    assert_eq!(x.jpeg, y.jpeg);
    assert_eq!(x.captions, y.captions);
    assert_eq!(x.labels, y.labels);
    assert_ne!(
        generate_one(&a, 4, 11, Split::Train, 64, 5).unwrap().jpeg,
        x.jpeg
    );
    // The captions draw from their own stream: how many (or which) captions are drawn does not
    // move a pixel, so a grammar change keeps the images and their cached features.
    let one = generate_one(&a, 3, 11, Split::Train, 64, 1).unwrap();
    assert_eq!(one.jpeg, x.jpeg);
    assert_eq!(one.labels, x.labels);
    assert_eq!(one.captions[..], x.captions[..1]);

    let mut o1 = options(&dir.path().join("one"), &paths, 30);
    o1.threads = 1;
    let mut o2 = options(&dir.path().join("three"), &paths, 30);
    o2.threads = 3;
    let s1 = generate(&o1).unwrap();
    generate(&o2).unwrap();
    assert_eq!(s1.splits, [24, 3, 3]);
    assert_eq!(
        (s1.stamps, s1.kinds, s1.settings, s1.unseen_stamps),
        (5, 3, 2, 2)
    );
    for f in [JSON_NAME, "images/scene_00029.jpg"] {
        assert_eq!(
            std::fs::read(o1.out.join(f)).unwrap(),
            std::fs::read(o2.out.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(generate(&ScenesOptions { size: 8, ..o1 }).is_err());
}

#[test]
fn labels_match_pixels() {
    let (_dir, paths) = fixture();
    let a = assets::load(&paths, 64, 2).unwrap();
    let size = 64;
    for i in 0..200 {
        let mut rng = image_rng(1, i);
        let scene = sample_scene(&mut rng, &a, size, i % 2 == 0);
        assert!((1..=3).contains(&scene.things.len()));
        let (img, boxes) = render(&a, &scene, size);
        assert_eq!(img.dimensions(), (size, size));
        let labels = compose::labels(&a, &scene, &boxes);
        assert_eq!(labels.objects.len(), scene.things.len());
        for (n, (p, o)) in scene.things.iter().zip(&labels.objects).enumerate() {
            let b = o.bbox;
            assert!(0.0 <= b[0] && b[0] < b[2] && b[2] <= 1.0, "{b:?}");
            assert!(0.0 <= b[1] && b[1] < b[3] && b[3] <= 1.0, "{b:?}");
            assert_eq!(o.kind, a.kinds[a.stamps[p.stamp].kind].kind);
            // Every pixel the stamp covers (alpha > 0) lies inside its box.
            let stamp = image::imageops::resize(
                &a.stamps[p.stamp].image,
                p.w,
                p.h,
                image::imageops::FilterType::Triangle,
            );
            let s = size as f32;
            for (sx, sy, px) in stamp.enumerate_pixels() {
                if px[3] > 0 {
                    let x = if p.flip { p.w - 1 - sx } else { sx } + p.x;
                    let y = sy + p.y;
                    assert!(
                        x as f32 >= b[0] * s - 0.01
                            && (x + 1) as f32 <= b[2] * s + 0.01
                            && y as f32 >= b[1] * s - 0.01
                            && (y + 1) as f32 <= b[3] * s + 0.01,
                        "image {i} thing {n}: pixel ({x}, {y}) outside {b:?}"
                    );
                }
            }
            // The last thing drawn shows its own colour at an opaque pixel of its stamp.
            if n + 1 == scene.things.len() {
                let (sx, sy, px) = stamp
                    .enumerate_pixels()
                    .find(|(_, _, px)| px[3] == 255)
                    .unwrap();
                let x = if p.flip { p.w - 1 - sx } else { sx } + p.x;
                let got = img.get_pixel(x, sy + p.y);
                for c in 0..3 {
                    let want = (f32::from(px[c]) * p.gain[c]).min(255.0);
                    assert!((f32::from(got[c]) - want).abs() <= 1.0, "{got:?} vs {px:?}");
                }
            }
        }
    }
}

#[test]
fn captions_name_the_setting_and_unseen_stamps_stay_out_of_training() {
    let (dir, paths) = fixture();
    let out = dir.path().join("out");
    let mut o = options(&out, &paths, 200);
    o.split = SplitOptions {
        seed: 0,
        train: 0.5,
        val: 0.1,
        test: 0.4,
    };
    generate(&o).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(JSON_NAME)).unwrap()).unwrap();
    let mut unseen_in_test = 0;
    let mut relations = 0;
    let mut counts = 0;
    let mut by_category = 0;
    let mut sentences_total = 0;
    let mut distinct = HashSet::new();
    for img in v["images"].as_array().unwrap() {
        let labels: Labels = serde_json::from_value(img["labels"].clone()).unwrap();
        let split = img["split"].as_str().unwrap();
        let unseen = labels.objects.iter().filter(|o| o.unseen).count();
        if split == "test" {
            unseen_in_test += unseen;
        } else {
            assert_eq!(unseen, 0, "an unseen stamp in a {split} image: {labels:?}");
        }
        let sentences = img["sentences"].as_array().unwrap();
        assert_eq!(sentences.len(), 5);
        for s in sentences {
            let raw = s["raw"].as_str().unwrap();
            distinct.insert(raw.to_string());
            sentences_total += 1;
            by_category += usize::from(raw.contains("shape"));
            let setting_said = match labels.setting.as_deref() {
                Some("meadow") => raw.contains("in a meadow") || raw.contains("on the grass"),
                Some("beach") => raw.contains("on a beach"),
                other => panic!("unexpected setting {other:?}"),
            };
            assert!(setting_said, "{raw:?} does not name {:?}", labels.setting);
            // Every thing is named: by its kind, its category or its stamp phrase.
            for o in &labels.objects {
                let named = match o.kind.as_str() {
                    "disc" => raw.contains("disc") || raw.contains("shape"),
                    "ring" => raw.contains("ring") || raw.contains("shape"),
                    _ => raw.contains("bar"),
                };
                assert!(named, "{raw:?} does not name the {}", o.kind);
            }
            if [
                "left of", "right of", "above", "below", "under", "next to", "beside",
            ]
            .iter()
            .any(|r| raw.contains(r))
            {
                relations += 1;
            }
            let repeated = labels
                .objects
                .iter()
                .any(|o| labels.objects.iter().filter(|p| p.kind == o.kind).count() > 1);
            let says_count = raw.split(' ').any(|w| w == "two" || w == "three");
            assert!(!says_count || repeated, "{raw:?} counts without repeats");
            counts += usize::from(says_count);
        }
    }
    assert!(unseen_in_test > 10, "{unseen_in_test}");
    assert!(relations > 20, "{relations}");
    assert!(counts > 20, "{counts}");
    assert!(distinct.len() > 400, "{}", distinct.len());
    // Things are mostly named by their kind; a category ("a shape") is a variant.
    assert!(
        by_category > 0 && by_category * 3 < sentences_total,
        "{by_category} of {sentences_total} captions use a category"
    );

    // The Karpathy loader reads the labels back into the samples.
    let ds = formats::load(&out.join(JSON_NAME), &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.len(), 200);
    let first = v["images"][0]["labels"].clone();
    let labels = ds.samples[0].labels.clone().expect("labels read back");
    assert_eq!(labels, serde_json::from_value::<Labels>(first).unwrap());
    assert!(ds.samples.iter().all(|s| s.labels.is_some()));
    // And the top-level kinds lexicon into the dataset: every labelled kind has its names.
    let kinds = ds.kinds.clone().expect("kinds read back");
    assert_eq!(
        kinds,
        serde_json::from_value::<Lexicon>(v["kinds"].clone()).unwrap()
    );
    for s in &ds.samples {
        for o in &s.labels.as_ref().unwrap().objects {
            let names = &kinds.kinds[&o.kind].names;
            assert!(names.len() >= 2, "{}: {names:?}", o.kind);
        }
    }
}

#[test]
fn bad_assets_are_clear_errors() {
    // Missing asset folders name the fetch script.
    let (dir, paths) = fixture();
    let missing = AssetPaths::fetched(&paths.lists, &dir.path().join("nowhere"));
    let e = assets::load(&missing, 64, 1).unwrap_err().to_string();
    assert!(
        e.contains("fetch-scenes.sh") && e.contains(FETCH_HINT),
        "{e}"
    );

    // A stamps folder with none of the listed photographs.
    let empty = dir.path().join("empty_stamps");
    std::fs::create_dir_all(empty.join("round")).unwrap();
    std::fs::write(empty.join("round/other.png"), b"x").unwrap();
    let no_photos = AssetPaths {
        stamps: empty,
        ..paths.clone()
    };
    let e = assets::load(&no_photos, 64, 1).unwrap_err().to_string();
    assert!(e.contains("none of the 5 photographic stamps"), "{e}");

    // A setting photo that does not decode.
    let (dir2, paths2) = fixture();
    let bad = dir2
        .path()
        .join("assets")
        .join(fixture::SETTINGS_PACKAGE)
        .join("beach.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    let e = assets::load(&paths2, 64, 1).unwrap_err().to_string();
    assert!(e.contains("beach.jpg"), "{e}");

    // A missing list.
    std::fs::remove_file(paths.lists.join(assets::KINDS_LIST)).unwrap();
    let e = assets::load(&paths, 64, 1).unwrap_err().to_string();
    assert!(e.contains("kinds.tsv"), "{e}");
    let _ = stamps_dir(dir.path());
}
