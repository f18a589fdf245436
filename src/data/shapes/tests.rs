use super::generate::*;
use super::grammar::*;
use super::render::*;
use super::scene::*;
use crate::data::text::tokenize;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

#[test]
fn scenes_vary_in_every_attribute() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut kinds = HashSet::new();
    let mut colors = HashSet::new();
    let mut sizes = HashSet::new();
    let mut counts = HashSet::new();
    let mut cells = HashSet::new();
    let mut repeated = 0;
    for _ in 0..500 {
        let s = sample_scene(&mut rng);
        assert!((1..=3).contains(&s.shapes.len()));
        counts.insert(s.shapes.len());
        for (i, a) in s.shapes.iter().enumerate() {
            kinds.insert(a.kind);
            colors.insert(a.color);
            sizes.insert(a.size);
            cells.insert(a.cell);
            assert!(a.x - a.radius >= 0.0 && a.x + a.radius <= 1.0);
            for b in &s.shapes[i + 1..] {
                let d = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
                assert!(d >= a.radius + b.radius, "overlap in {s:?}");
                if a.kind == b.kind && a.color == b.color {
                    repeated += 1;
                }
            }
            if s.background.tone == Tone::Light {
                assert!(!matches!(a.color, Color::White | Color::Yellow));
            }
        }
    }
    assert_eq!(kinds.len(), 5);
    assert_eq!(colors.len(), 7);
    assert_eq!(sizes.len(), 2);
    assert_eq!(counts.len(), 3);
    assert_eq!(cells.len(), 9);
    assert!(repeated > 10, "too few repeated shapes: {repeated}");
}

#[test]
fn captions_are_different_and_true() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..300 {
        let scene = sample_scene(&mut rng);
        let caps = captions(&mut rng, &scene, 5);
        assert_eq!(caps.len(), 5, "{scene:?}");
        let unique: HashSet<_> = caps.iter().collect();
        assert_eq!(unique.len(), 5);
        for c in &caps {
            let toks = tokenize(c);
            // Every caption names the colour of every shape it describes; at least one
            // colour of the scene appears, and no colour that is not in the scene.
            let named: HashSet<&str> = Color::ALL
                .iter()
                .flat_map(|col| col.names().iter().copied())
                .filter(|w| toks.iter().any(|t| t == w))
                .collect();
            let present: HashSet<&str> = scene
                .shapes
                .iter()
                .flat_map(|s| s.color.names().iter().copied())
                .collect();
            assert!(!named.is_empty(), "{c}");
            assert!(
                named.iter().all(|w| present.contains(w)),
                "{c} vs {scene:?}"
            );
            // Counts are never wrong: "two"/"three" only with that many shapes.
            if toks.iter().any(|t| t == "three") {
                assert_eq!(scene.shapes.len(), 3, "{c}");
            }
            if toks.iter().any(|t| t == "two" || t == "pair") {
                assert!(scene.shapes.len() >= 2, "{c}");
            }
        }
    }
}

#[test]
fn single_shape_position_words_follow_the_cell() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut checked = 0;
    while checked < 200 {
        let scene = sample_scene(&mut rng);
        if scene.shapes.len() != 1 {
            continue;
        }
        let s = scene.shapes[0];
        for c in captions(&mut rng, &scene, 5) {
            let toks = tokenize(&c);
            let has = |w: &str| toks.iter().any(|t| t == w);
            if has("left") {
                assert_eq!(s.cell.1, 0, "{c} {s:?}");
                assert!(s.x < 0.4);
            }
            if has("right") {
                assert_eq!(s.cell.1, 2, "{c} {s:?}");
                assert!(s.x > 0.6);
            }
            if has("top") || has("upper") {
                assert!(s.y < 0.4, "{c} {s:?}");
            }
            if has("bottom") || has("lower") {
                assert!(s.y > 0.6, "{c} {s:?}");
            }
        }
        checked += 1;
    }
}

#[test]
fn rendering_draws_the_colour_where_the_shape_is() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..50 {
        let scene = sample_scene(&mut rng);
        let img = render(&scene, 64, &mut rng);
        assert_eq!(img.dimensions(), (64, 64));
        for s in &scene.shapes {
            let p = img.get_pixel((s.x * 64.0) as u32, (s.y * 64.0) as u32).0;
            let d: i32 = (0..3)
                .map(|c| (i32::from(p[c]) - i32::from(s.rgb[c])).abs())
                .sum();
            assert!(d <= 5 * i32::from(scene.noise) + 6, "{p:?} vs {:?}", s.rgb);
        }
    }
}

#[test]
fn generation_is_deterministic_and_thread_independent() {
    let a = generate_one(9, 17, 32, 5).unwrap();
    let b = generate_one(9, 17, 32, 5).unwrap();
    assert_eq!(a.png, b.png);
    assert_eq!(a.captions, b.captions);
    assert_ne!(generate_one(10, 17, 32, 5).unwrap().png, a.png);

    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let mut o1 = ShapesOptions::new(d1.path(), 12, 4);
    o1.threads = 1;
    o1.size = 24;
    let mut o2 = o1.clone();
    o2.out = d2.path().to_path_buf();
    o2.threads = 3;
    let s1 = generate(&o1).unwrap();
    generate(&o2).unwrap();
    assert_eq!(s1.splits, [10, 1, 1]);
    assert_eq!(
        std::fs::read(d1.path().join(JSON_NAME)).unwrap(),
        std::fs::read(d2.path().join(JSON_NAME)).unwrap()
    );
    assert_eq!(
        std::fs::read(d1.path().join("images/shape_00011.png")).unwrap(),
        std::fs::read(d2.path().join("images/shape_00011.png")).unwrap()
    );
    assert!(
        generate(&ShapesOptions {
            size: 8,
            ..o1.clone()
        })
        .is_err()
    );
}

#[test]
fn random_captions_cover_the_grammar() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let corpus: Vec<String> = (0..2000).map(|_| random_caption(&mut rng)).collect();
    let words: HashSet<String> = corpus.iter().flat_map(|c| tokenize(c)).collect();
    for w in [
        "circle",
        "square",
        "triangle",
        "diamond",
        "cross",
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "orange",
        "white",
        "small",
        "large",
        "two",
        "three",
        "left",
        "right",
        "above",
        "below",
        "top",
        "bottom",
        "background",
    ] {
        assert!(words.contains(w), "missing {w}");
    }
    let distinct: HashSet<&String> = corpus.iter().collect();
    assert!(distinct.len() > 1500, "{}", distinct.len());
}

/// Each shape's drawn pixels lie inside its label's box, and the box is tight (within a pixel of
/// the drawn extent); kind, colour, size and cell are the scene's.
#[test]
fn labels_match_the_pixels() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let side = 96u32;
    for _ in 0..60 {
        let scene = sample_scene(&mut rng);
        let l = labels(&scene);
        assert_eq!(l.objects.len(), scene.shapes.len());
        let quiet = |shapes: Vec<Shape>| {
            let s = Scene {
                shapes,
                noise: 0,
                ..scene.clone()
            };
            render(&s, side, &mut ChaCha8Rng::seed_from_u64(0))
        };
        let empty = quiet(vec![]);
        for (s, o) in scene.shapes.iter().zip(&l.objects) {
            assert_eq!(o.kind, s.kind.name());
            assert_eq!(o.color.as_deref(), Some(s.color.names()[0]));
            assert_eq!(o.size.as_str(), s.size.names()[0]);
            assert_eq!(o.cell, Some([s.cell.0, s.cell.1]));
            let alone = quiet(vec![*s]);
            let (mut x0, mut y0, mut x1, mut y1) = (side, side, 0, 0);
            for (x, y, p) in alone.enumerate_pixels() {
                if *p != *empty.get_pixel(x, y) {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
            assert!(x1 > x0, "{s:?} drew nothing");
            let f = side as f32;
            let [bx0, by0, bx1, by1] = o.bbox;
            // Every changed pixel overlaps the box...
            assert!(x0 as f32 / f >= bx0 - 1.0 / f && (x1 as f32) / f <= bx1 + 1.0 / f);
            assert!(y0 as f32 / f >= by0 - 1.0 / f && (y1 as f32) / f <= by1 + 1.0 / f);
            assert!(
                (x0 as f32 + 1.0) / f > bx0 && (x1 as f32 - 1.0) / f < bx1,
                "{s:?} {o:?}"
            );
            assert!(
                (y0 as f32 + 1.0) / f > by0 && (y1 as f32 - 1.0) / f < by1,
                "{s:?} {o:?}"
            );
            // ...and the box is tight: its sides are within two pixels of the drawn extent.
            for (drawn, labelled) in [(x0, bx0), (y0, by0), (x1, bx1), (y1, by1)] {
                assert!(
                    (drawn as f32 / f - labelled).abs() <= 2.0 / f,
                    "{s:?}: drawn {drawn}/{side} vs box {o:?}"
                );
            }
        }
    }
}

#[test]
fn dataset_file_carries_labels_and_the_kinds_lexicon() {
    let d = tempfile::tempdir().unwrap();
    let mut o = ShapesOptions::new(d.path(), 6, 3);
    o.size = 24;
    o.threads = 1;
    generate(&o).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join(JSON_NAME)).unwrap()).unwrap();
    assert_eq!(
        v["kinds"]["circle"]["names"],
        serde_json::json!([
            "circle",
            "circles",
            "disk",
            "disks",
            "round shape",
            "round shapes"
        ])
    );
    assert_eq!(v["kinds"].as_object().unwrap().len(), 5);
    let ds = crate::data::formats::load(
        &d.path().join(JSON_NAME),
        &crate::data::formats::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ds.kinds, Some(lexicon()));
    for (i, s) in ds.samples.iter().enumerate() {
        let l = s.labels.as_ref().expect("labels read back");
        let scene: Scene = serde_json::from_value(v["images"][i]["scene"].clone()).unwrap();
        assert_eq!(*l, labels(&scene));
        assert!(
            l.objects
                .iter()
                .all(|o| o.bbox[0] < o.bbox[2] && o.cell.is_some())
        );
    }
}
