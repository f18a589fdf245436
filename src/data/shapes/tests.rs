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
