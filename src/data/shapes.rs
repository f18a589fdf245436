//! The procedural `shapes` dataset: scenes of 1–3 coloured shapes on varied backgrounds, each
//! with 5 different true captions, written as PNGs plus a Karpathy-style `dataset_shapes.json`.
//!
//! A scene varies in everything a caption talks about, so a captioner has to look at the image:
//! shape kind (5), colour (7), size (small, large), count (1–3, with repeated kinds and colours so
//! that "two red circles" happens), position (a 3×3 grid: "in the top left corner") and spatial
//! relation ("to the left of", "above"). Backgrounds vary in tone, hue and pattern (plain,
//! gradient, stripes, checks), and pixel noise and colour jitter are added. Captions come from
//! varied templates and synonyms, and say different subsets of the truth, the way human
//! references disagree.
//!
//! Everything is deterministic for a seed: image `i` draws from its own RNG seeded by
//! `(seed, i)`, so the output does not depend on the number of threads.
//!
//! The caption grammar is public ([`sample_scene`], [`captions`], [`random_caption`]) so other
//! parts (the search benchmark) can draw synthetic caption corpora from the same distribution.

use std::path::{Path, PathBuf};

use image::{ImageEncoder, Rgb, RgbImage};
use rand::seq::IndexedRandom;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Split;
use super::formats::{SplitOptions, split_counts};
use super::text::tokenize;
use crate::error::{Error, Result};

/// Kinds of shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Circle,
        Kind::Square,
        Kind::Triangle,
        Kind::Diamond,
        Kind::Cross,
    ];

    /// Names of the kind, (singular, plural), the first being the plain one.
    fn names(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Circle => &[
                ("circle", "circles"),
                ("disk", "disks"),
                ("round shape", "round shapes"),
            ],
            Kind::Square => &[("square", "squares"), ("box", "boxes"), ("block", "blocks")],
            Kind::Triangle => &[("triangle", "triangles")],
            Kind::Diamond => &[("diamond", "diamonds"), ("rhombus", "rhombuses")],
            Kind::Cross => &[
                ("cross", "crosses"),
                ("plus sign", "plus signs"),
                ("plus shape", "plus shapes"),
            ],
        }
    }
}

/// Colours of shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    White,
}

impl Color {
    pub const ALL: [Color; 7] = [
        Color::Red,
        Color::Green,
        Color::Blue,
        Color::Yellow,
        Color::Purple,
        Color::Orange,
        Color::White,
    ];

    fn names(self) -> &'static [&'static str] {
        match self {
            Color::Red => &["red"],
            Color::Green => &["green"],
            Color::Blue => &["blue"],
            Color::Yellow => &["yellow"],
            Color::Purple => &["purple", "violet"],
            Color::Orange => &["orange"],
            Color::White => &["white"],
        }
    }

    fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 35, 35],
            Color::Green => [40, 190, 60],
            Color::Blue => [45, 85, 235],
            Color::Yellow => [240, 220, 40],
            Color::Purple => [150, 55, 200],
            Color::Orange => [250, 140, 20],
            Color::White => [245, 245, 245],
        }
    }
}

/// Sizes of shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    fn names(self) -> &'static [&'static str] {
        match self {
            Size::Small => &["small", "little", "tiny"],
            Size::Large => &["large", "big"],
        }
    }
}

/// Background pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Plain,
    Gradient,
    Stripes,
    Checks,
}

/// Background brightness. Light backgrounds never carry white or yellow shapes (too little contrast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Dark,
    Light,
}

/// A scene's background.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Background {
    pub tone: Tone,
    pub pattern: Pattern,
    /// Base colour and the pattern's second colour.
    pub base: [u8; 3],
    pub second: [u8; 3],
    /// Pattern period in fractions of the image side, and direction (0 = vertical bands,
    /// 1 = horizontal, 2 = diagonal).
    pub period: f32,
    pub direction: u8,
}

/// One shape of a scene. Coordinates are fractions of the image side, (0, 0) top left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub kind: Kind,
    pub color: Color,
    pub size: Size,
    pub x: f32,
    pub y: f32,
    /// Half the shape's extent.
    pub radius: f32,
    /// Grid cell (row, column) in a 3×3 grid; what position words describe.
    pub cell: (u8, u8),
    /// The colour actually drawn (the named colour with jitter).
    pub rgb: [u8; 3],
}

/// A scene: 1–3 shapes on a background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub background: Background,
    pub shapes: Vec<Shape>,
    /// Pixel noise amplitude (0..255 scale).
    pub noise: u8,
}

fn jitter<R: Rng + ?Sized>(rng: &mut R, rgb: [u8; 3], amount: i32) -> [u8; 3] {
    rgb.map(|c| (i32::from(c) + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

fn sample_background<R: Rng + ?Sized>(rng: &mut R) -> Background {
    let tone = if rng.random_bool(0.7) {
        Tone::Dark
    } else {
        Tone::Light
    };
    let (lo, hi) = match tone {
        Tone::Dark => (15, 85),
        Tone::Light => (165, 225),
    };
    let level = rng.random_range(lo..=hi);
    // A muted tint: each channel within ±18 of the level.
    let base = [0; 3].map(|_: u8| (level + rng.random_range(-18..=18)).clamp(0, 255) as u8);
    let pattern = *[
        Pattern::Plain,
        Pattern::Gradient,
        Pattern::Stripes,
        Pattern::Checks,
    ]
    .choose(rng)
    .unwrap_or(&Pattern::Plain);
    let delta = match tone {
        Tone::Dark => rng.random_range(15..=35),
        Tone::Light => -rng.random_range(15..=35),
    };
    let second = base.map(|c| (i32::from(c) + delta).clamp(0, 255) as u8);
    Background {
        tone,
        pattern,
        base,
        second,
        period: rng.random_range(0.06f32..0.2),
        direction: rng.random_range(0..3u8),
    }
}

/// Draws a random scene.
pub fn sample_scene<R: Rng + ?Sized>(rng: &mut R) -> Scene {
    let background = sample_background(rng);
    let colors: Vec<Color> = Color::ALL
        .iter()
        .copied()
        .filter(|c| background.tone == Tone::Dark || !matches!(c, Color::White | Color::Yellow))
        .collect();
    let count = *[1usize, 1, 2, 2, 3, 3].choose(rng).unwrap_or(&1);
    let mut specs: Vec<(Kind, Color, Size)> = Vec::with_capacity(count);
    for i in 0..count {
        let size = if rng.random_bool(0.5) {
            Size::Large
        } else {
            Size::Small
        };
        // Repeat an earlier kind and/or colour now and then, so counts and shared attributes occur.
        let (kind, color) = if i > 0 && rng.random_bool(0.35) {
            let (k, c, _) = specs[rng.random_range(0..i)];
            match rng.random_range(0..3) {
                0 => (k, c),
                1 => (k, *colors.choose(rng).unwrap_or(&c)),
                _ => (*Kind::ALL.choose(rng).unwrap_or(&k), c),
            }
        } else {
            (
                *Kind::ALL.choose(rng).unwrap_or(&Kind::Circle),
                *colors.choose(rng).unwrap_or(&Color::Red),
            )
        };
        specs.push((kind, color, size));
    }
    let shapes = place(rng, &specs);
    Scene {
        background,
        shapes,
        noise: rng.random_range(3..=14),
    }
}

fn radius_of<R: Rng + ?Sized>(rng: &mut R, size: Size) -> f32 {
    match size {
        Size::Small => rng.random_range(0.075f32..0.1),
        Size::Large => rng.random_range(0.15f32..0.18),
    }
}

/// Puts the shapes in distinct grid cells without overlap. Large shapes that cannot fit become
/// small ones (the caption follows what is drawn).
fn place<R: Rng + ?Sized>(rng: &mut R, specs: &[(Kind, Color, Size)]) -> Vec<Shape> {
    let mut sizes: Vec<Size> = specs.iter().map(|s| s.2).collect();
    for attempt in 0..200 {
        if attempt > 0 && attempt % 40 == 0 {
            // Make the largest remaining large shape small and try again.
            if let Some(s) = sizes.iter_mut().rev().find(|s| **s == Size::Large) {
                *s = Size::Small;
            }
        }
        let mut cells: Vec<(u8, u8)> = (0..9u8).map(|c| (c / 3, c % 3)).collect();
        let mut shapes: Vec<Shape> = Vec::with_capacity(specs.len());
        let mut ok = true;
        for (i, &(kind, color, _)) in specs.iter().enumerate() {
            let size = sizes[i];
            let Some(&cell) = cells.choose(rng) else {
                ok = false;
                break;
            };
            cells.retain(|&c| c != cell);
            let radius = radius_of(rng, size);
            let margin = radius + 0.02;
            let centre = |k: u8| (f32::from(k) + 0.5) / 3.0;
            let x = (centre(cell.1) + rng.random_range(-0.04f32..0.04)).clamp(margin, 1.0 - margin);
            let y = (centre(cell.0) + rng.random_range(-0.04f32..0.04)).clamp(margin, 1.0 - margin);
            if shapes
                .iter()
                .any(|s| ((s.x - x).powi(2) + (s.y - y).powi(2)).sqrt() < s.radius + radius + 0.03)
            {
                ok = false;
                break;
            }
            shapes.push(Shape {
                kind,
                color,
                size,
                x,
                y,
                radius,
                cell,
                rgb: jitter(rng, color.rgb(), 18),
            });
        }
        if ok {
            return shapes;
        }
    }
    // Unreachable in practice (three small shapes in distinct cells always fit); fall back to
    // the first shape alone rather than loop.
    let (kind, color, _) = specs[0];
    vec![Shape {
        kind,
        color,
        size: Size::Small,
        x: 0.5,
        y: 0.5,
        radius: 0.09,
        cell: (1, 1),
        rgb: color.rgb(),
    }]
}

// ---------------------------------------------------------------------------------------------
// Captions

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or("")
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn with_article(phrase: String) -> String {
    format!("{} {phrase}", article(&phrase))
}

fn kind_word<R: Rng + ?Sized>(rng: &mut R, kind: Kind, plural: bool) -> &'static str {
    let names = kind.names();
    // The plain name most of the time, a synonym otherwise.
    let (s, p) = if rng.random_bool(0.6) {
        names[0]
    } else {
        *names.choose(rng).unwrap_or(&names[0])
    };
    if plural { p } else { s }
}

/// "large red circle" (with the size when `with_size`), no article.
fn noun_phrase<R: Rng + ?Sized>(rng: &mut R, s: &Shape, with_size: bool) -> String {
    let color = pick(rng, s.color.names());
    let kind = kind_word(rng, s.kind, false);
    if with_size {
        format!("{} {color} {kind}", pick(rng, s.size.names()))
    } else {
        format!("{color} {kind}")
    }
}

fn position_phrase<R: Rng + ?Sized>(rng: &mut R, cell: (u8, u8)) -> String {
    let options: &[&str] = match cell {
        (0, 0) => &[
            "in the top left corner",
            "at the top left",
            "in the upper left",
        ],
        (0, 1) => &["at the top", "near the top", "at the top of the image"],
        (0, 2) => &[
            "in the top right corner",
            "at the top right",
            "in the upper right",
        ],
        (1, 0) => &["on the left", "on the left side", "near the left edge"],
        (1, 1) => &[
            "in the center",
            "in the middle",
            "in the center of the image",
        ],
        (1, 2) => &["on the right", "on the right side", "near the right edge"],
        (2, 0) => &[
            "in the bottom left corner",
            "at the bottom left",
            "in the lower left",
        ],
        (2, 1) => &[
            "at the bottom",
            "near the bottom",
            "at the bottom of the image",
        ],
        _ => &[
            "in the bottom right corner",
            "at the bottom right",
            "in the lower right",
        ],
    };
    pick(rng, options).to_string()
}

fn background_phrase<R: Rng + ?Sized>(rng: &mut R, bg: &Background) -> String {
    let tone = match bg.tone {
        Tone::Dark => pick(rng, &["dark", "black", "dark gray"]),
        Tone::Light => pick(rng, &["light", "pale", "light gray"]),
    };
    let pattern = match bg.pattern {
        Pattern::Plain => pick(rng, &["", "plain"]),
        Pattern::Gradient => pick(rng, &["shaded", "gradient"]),
        Pattern::Stripes => pick(rng, &["striped"]),
        Pattern::Checks => pick(rng, &["checkered", "checked"]),
    };
    let noun = pick(rng, &["background", "backdrop"]);
    let preposition = pick(rng, &["on", "against"]);
    let words: Vec<&str> = [tone, pattern]
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    let adjectives = words.join(" ");
    format!(
        "{preposition} {}",
        with_article(format!("{adjectives} {noun}"))
    )
}

/// Relation of `a` to `b` ("to the left of", "above", ...), from the centres.
fn relation<R: Rng + ?Sized>(rng: &mut R, a: &Shape, b: &Shape) -> &'static str {
    let dx = a.x - b.x;
    let dy = a.y - b.y;
    let horizontal = if dx.abs() > dy.abs() + 0.05 {
        true
    } else if dy.abs() > dx.abs() + 0.05 {
        false
    } else {
        rng.random_bool(0.5)
    };
    if horizontal {
        if dx < 0.0 {
            pick(rng, &["to the left of", "left of", "beside"])
        } else {
            pick(rng, &["to the right of", "right of", "next to"])
        }
    } else if dy < 0.0 {
        pick(rng, &["above", "over"])
    } else {
        pick(rng, &["below", "under", "beneath"])
    }
}

fn number_word(n: usize) -> &'static str {
    match n {
        1 => "one",
        2 => "two",
        _ => "three",
    }
}

/// Shapes grouped by (colour, kind), in first-seen order: "two red circles", "a blue square".
fn group_phrases<R: Rng + ?Sized>(rng: &mut R, shapes: &[Shape]) -> Vec<String> {
    let mut groups: Vec<(Kind, Color, Vec<&Shape>)> = Vec::new();
    for s in shapes {
        match groups.iter_mut().find(|g| g.0 == s.kind && g.1 == s.color) {
            Some(g) => g.2.push(s),
            None => groups.push((s.kind, s.color, vec![s])),
        }
    }
    groups
        .into_iter()
        .map(|(kind, color, members)| {
            let same_size = members.iter().all(|m| m.size == members[0].size);
            let size = if same_size && rng.random_bool(0.5) {
                format!("{} ", pick(rng, members[0].size.names()))
            } else {
                String::new()
            };
            let color = pick(rng, color.names());
            if members.len() == 1 {
                with_article(format!("{size}{color} {}", kind_word(rng, kind, false)))
            } else {
                format!(
                    "{} {size}{color} {}",
                    number_word(members.len()),
                    kind_word(rng, kind, true)
                )
            }
        })
        .collect()
}

fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn one_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let s = &scene.shapes[0];
    let np = with_article(noun_phrase(rng, s, true));
    let np_plain = with_article(noun_phrase(rng, s, false));
    let pos = position_phrase(rng, s.cell);
    match rng.random_range(0..9) {
        0 => format!("{np} {pos}"),
        1 => format!("there is {np} {pos}"),
        2 => format!("{np} {}", background_phrase(rng, &scene.background)),
        3 => format!("{pos} there is {np_plain}"),
        4 => format!("a single {} {pos}", noun_phrase(rng, s, true)),
        5 => format!("one {} {pos}", noun_phrase(rng, s, false)),
        6 => format!("{np} {pos} {}", background_phrase(rng, &scene.background)),
        7 => format!(
            "{np_plain} {} {pos}",
            pick(rng, &["placed", "sitting", "drawn"])
        ),
        _ => format!("an image of {np}"),
    }
}

fn two_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let (a, b) = (&scene.shapes[0], &scene.shapes[1]);
    let same = a.kind == b.kind && a.color == b.color;
    let with_size = rng.random_bool(0.6);
    let np_a = with_article(noun_phrase(rng, a, with_size));
    let np_b = with_article(noun_phrase(rng, b, with_size));
    let rel = relation(rng, a, b);
    let choice = rng.random_range(0..if same { 9 } else { 7 });
    match choice {
        0 => format!("{np_a} {rel} {np_b}"),
        1 => format!("{np_b} {} {np_a}", relation(rng, b, a)),
        2 => format!("{np_a} and {np_b}"),
        3 => format!("two shapes: {np_a} and {np_b}"),
        4 => format!(
            "{np_a} {rel} {np_b} {}",
            background_phrase(rng, &scene.background)
        ),
        5 => format!("there is {np_a} {rel} {np_b}"),
        6 => format!(
            "{np_a} {} and {np_b} {}",
            position_phrase(rng, a.cell),
            position_phrase(rng, b.cell)
        ),
        _ => {
            let color = pick(rng, a.color.names());
            let kinds = kind_word(rng, a.kind, true);
            let horizontal = (a.x - b.x).abs() >= (a.y - b.y).abs();
            let arrangement = if horizontal {
                pick(rng, &["side by side", "next to each other"])
            } else {
                pick(rng, &["one above the other", "stacked vertically"])
            };
            if choice == 7 {
                format!("two {color} {kinds} {arrangement}")
            } else {
                format!(
                    "{} {color} {kinds} {}",
                    pick(rng, &["a pair of", "two"]),
                    background_phrase(rng, &scene.background)
                )
            }
        }
    }
}

fn three_shape_caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let groups = group_phrases(rng, &scene.shapes);
    let list = join_list(&groups);
    let (a, b, c) = (&scene.shapes[0], &scene.shapes[1], &scene.shapes[2]);
    match rng.random_range(0..7) {
        0 => list,
        1 => format!("three shapes: {list}"),
        2 => format!("{list} {}", background_phrase(rng, &scene.background)),
        3 => format!("there are three shapes, {list}"),
        4 => format!(
            "{} {} {} and {} {}",
            with_article(noun_phrase(rng, a, false)),
            relation(rng, a, b),
            with_article(noun_phrase(rng, b, false)),
            with_article(noun_phrase(rng, c, true)),
            position_phrase(rng, c.cell)
        ),
        5 => format!(
            "{} {}, {} and {}",
            with_article(noun_phrase(rng, a, true)),
            position_phrase(rng, a.cell),
            with_article(noun_phrase(rng, b, false)),
            with_article(noun_phrase(rng, c, false))
        ),
        _ => format!(
            "{list} {}",
            pick(rng, &["together", "in a picture", "scattered around"])
        ),
    }
}

/// One true caption of a scene, from a randomly chosen template.
pub fn caption<R: Rng + ?Sized>(rng: &mut R, scene: &Scene) -> String {
    let raw = match scene.shapes.len() {
        0 => "an empty background".to_string(),
        1 => one_shape_caption(rng, scene),
        2 => two_shape_caption(rng, scene),
        _ => three_shape_caption(rng, scene),
    };
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `n` different true captions of a scene (fewer only if the templates cannot produce `n`
/// different ones in many tries, which does not happen for `n` ≤ 5).
pub fn captions<R: Rng + ?Sized>(rng: &mut R, scene: &Scene, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(n);
    for _ in 0..n * 40 {
        if out.len() == n {
            break;
        }
        let c = caption(rng, scene);
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A caption of a fresh random scene: a draw from the dataset's caption distribution.
pub fn random_caption<R: Rng + ?Sized>(rng: &mut R) -> String {
    let scene = sample_scene(rng);
    caption(rng, &scene)
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn inside(kind: Kind, u: f32, v: f32) -> bool {
    // (u, v) relative to the centre in units of the radius, v pointing down.
    match kind {
        Kind::Circle => u * u + v * v <= 1.0,
        Kind::Square => u.abs() <= 0.85 && v.abs() <= 0.85,
        Kind::Diamond => u.abs() + v.abs() <= 1.05,
        Kind::Triangle => (-1.0..=0.85).contains(&v) && u.abs() <= (v + 1.0) * 0.55,
        Kind::Cross => (u.abs() <= 0.32 && v.abs() <= 1.0) || (v.abs() <= 0.32 && u.abs() <= 1.0),
    }
}

fn background_pixel(bg: &Background, fx: f32, fy: f32) -> [f32; 3] {
    let base = bg.base.map(f32::from);
    let second = bg.second.map(f32::from);
    let t = match bg.direction {
        0 => fx,
        1 => fy,
        _ => (fx + fy) * 0.5,
    };
    let mix = match bg.pattern {
        Pattern::Plain => 0.0,
        Pattern::Gradient => t,
        Pattern::Stripes => {
            if ((t / bg.period) as i32) % 2 == 0 {
                0.0
            } else {
                1.0
            }
        }
        Pattern::Checks => {
            let cx = (fx / bg.period) as i32;
            let cy = (fy / bg.period) as i32;
            if (cx + cy) % 2 == 0 { 0.0 } else { 1.0 }
        }
    };
    std::array::from_fn(|c| base[c] + (second[c] - base[c]) * mix)
}

/// Draws a scene at `size`×`size` pixels, with 4× supersampled shape edges and pixel noise drawn
/// from `rng`.
pub fn render<R: Rng + ?Sized>(scene: &Scene, size: u32, rng: &mut R) -> RgbImage {
    let n = size.max(1);
    let side = n as f32;
    let mut buf: Vec<[f32; 3]> = Vec::with_capacity((n * n) as usize);
    for y in 0..n {
        for x in 0..n {
            buf.push(background_pixel(
                &scene.background,
                (x as f32 + 0.5) / side,
                (y as f32 + 0.5) / side,
            ));
        }
    }
    const SUB: [f32; 2] = [0.25, 0.75];
    for s in &scene.shapes {
        let rgb = s.rgb.map(f32::from);
        let x0 = (((s.x - s.radius) * side).floor().max(0.0)) as u32;
        let x1 = (((s.x + s.radius) * side).ceil() as u32).min(n);
        let y0 = (((s.y - s.radius) * side).floor().max(0.0)) as u32;
        let y1 = (((s.y + s.radius) * side).ceil() as u32).min(n);
        let r = s.radius * side;
        for py in y0..y1 {
            for px in x0..x1 {
                let mut hits = 0u32;
                for sy in SUB {
                    for sx in SUB {
                        let u = (px as f32 + sx - s.x * side) / r;
                        let v = (py as f32 + sy - s.y * side) / r;
                        if inside(s.kind, u, v) {
                            hits += 1;
                        }
                    }
                }
                if hits > 0 {
                    let a = hits as f32 / 4.0;
                    let p = &mut buf[(py * n + px) as usize];
                    for (pc, rc) in p.iter_mut().zip(rgb) {
                        *pc = *pc * (1.0 - a) + rc * a;
                    }
                }
            }
        }
    }
    let amp = f32::from(scene.noise);
    let mut img = RgbImage::new(n, n);
    for (pixel, value) in img.pixels_mut().zip(buf) {
        let noise: f32 = rng.random_range(-1.0f32..1.0) * amp;
        *pixel = Rgb(value
            .map(|v| (v + noise + rng.random_range(-0.5f32..0.5) * amp).clamp(0.0, 255.0) as u8));
    }
    img
}

// ---------------------------------------------------------------------------------------------
// Dataset generation

/// What `dataset shapes` generates.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesOptions {
    /// Output folder: gets `images/` and `dataset_shapes.json`.
    pub out: PathBuf,
    pub images: usize,
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    /// Captions per image.
    pub captions_per_image: usize,
    /// Worker threads.
    pub threads: usize,
    /// Split ratios (the seed is not used: images are independent draws, so the first share is
    /// train, the next val, the rest test).
    pub split: SplitOptions,
}

impl ShapesOptions {
    pub fn new(out: impl Into<PathBuf>, images: usize, seed: u64) -> Self {
        ShapesOptions {
            out: out.into(),
            images,
            seed,
            size: DEFAULT_SIZE,
            captions_per_image: 5,
            threads: super::parallel::default_threads(),
            split: SplitOptions::default(),
        }
    }
}

/// Default image side.
pub const DEFAULT_SIZE: u32 = 64;
/// Name of the JSON file written next to `images/`.
pub const JSON_NAME: &str = "dataset_shapes.json";

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesSummary {
    pub json: PathBuf,
    pub images: usize,
    pub splits: [usize; 3],
}

#[derive(Serialize)]
struct JsonFile<'a> {
    dataset: &'static str,
    generator: Generator,
    images: Vec<JsonImage<'a>>,
}

#[derive(Serialize)]
struct Generator {
    name: &'static str,
    version: u32,
    seed: u64,
    size: u32,
    images: usize,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    imgid: usize,
    filepath: &'static str,
    filename: &'a str,
    split: &'static str,
    sentids: Vec<usize>,
    sentences: Vec<JsonSentence<'a>>,
    scene: &'a Scene,
}

#[derive(Serialize)]
struct JsonSentence<'a> {
    raw: &'a str,
    tokens: Vec<String>,
    imgid: usize,
    sentid: usize,
}

/// The RNG of image `index` for a seed: independent streams, so output is the same on any
/// number of threads.
pub fn image_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// One generated image: scene, captions, PNG bytes.
pub struct Generated {
    pub scene: Scene,
    pub captions: Vec<String>,
    pub png: Vec<u8>,
}

/// Generates image `index` for a seed.
pub fn generate_one(seed: u64, index: usize, size: u32, n_captions: usize) -> Result<Generated> {
    let mut rng = image_rng(seed, index);
    let scene = sample_scene(&mut rng);
    let captions = captions(&mut rng, &scene, n_captions);
    let img = render(&scene, size, &mut rng);
    let mut png = Vec::with_capacity((size * size) as usize * 2);
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(img.as_raw(), size, size, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Invalid(format!("encoding shapes image {index}: {e}")))?;
    Ok(Generated {
        scene,
        captions,
        png,
    })
}

/// Writes the dataset: `out/images/shape_NNNNN.png` and `out/dataset_shapes.json`.
pub fn generate(opts: &ShapesOptions) -> Result<ShapesSummary> {
    if opts.images == 0 {
        return Err(Error::Invalid("--images must be at least 1".into()));
    }
    if !(16..=1024).contains(&opts.size) {
        return Err(Error::Invalid(format!(
            "--size {} is out of range: use 16 to 1024 pixels",
            opts.size
        )));
    }
    if opts.captions_per_image == 0 {
        return Err(Error::Invalid(
            "captions per image must be at least 1".into(),
        ));
    }
    opts.split.validate()?;
    let image_dir = opts.out.join("images");
    std::fs::create_dir_all(&image_dir).map_err(|e| Error::io(&image_dir, e))?;
    let digits = opts.images.saturating_sub(1).to_string().len().max(5);
    let names: Vec<String> = (0..opts.images)
        .map(|i| format!("shape_{i:0digits$}.png"))
        .collect();

    let bar = super::parallel::progress_bar(opts.images as u64, "drawing shapes");
    let indices: Vec<usize> = (0..opts.images).collect();
    let results = super::parallel::map_parallel(&indices, opts.threads, Some(&bar), |&i| {
        let g = generate_one(opts.seed, i, opts.size, opts.captions_per_image)?;
        let path = image_dir.join(&names[i]);
        std::fs::write(&path, &g.png).map_err(|e| Error::io(&path, e))?;
        Ok::<_, Error>((g.scene, g.captions))
    });
    bar.finish_and_clear();
    let generated: Vec<(Scene, Vec<String>)> = results.into_iter().collect::<Result<_>>()?;

    let counts = split_counts(opts.images, &opts.split);
    let split_of = |i: usize| {
        if i < counts[0] {
            Split::Train
        } else if i < counts[0] + counts[1] {
            Split::Val
        } else {
            Split::Test
        }
    };
    let mut sentid = 0;
    let images = generated
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, ((scene, caps), name))| {
            let sentences: Vec<JsonSentence> = caps
                .iter()
                .map(|raw| {
                    sentid += 1;
                    JsonSentence {
                        raw,
                        tokens: tokenize(raw),
                        imgid: i,
                        sentid: sentid - 1,
                    }
                })
                .collect();
            JsonImage {
                imgid: i,
                filepath: "images",
                filename: name,
                split: split_of(i).as_str(),
                sentids: sentences.iter().map(|s| s.sentid).collect(),
                sentences,
                scene,
            }
        })
        .collect();
    let file = JsonFile {
        dataset: "shapes",
        generator: Generator {
            name: "capsearch dataset shapes",
            version: 1,
            seed: opts.seed,
            size: opts.size,
            images: opts.images,
        },
        images,
    };
    let json_path = opts.out.join(JSON_NAME);
    let json = serde_json::to_vec(&file).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::util::write_atomic(&json_path, &json)?;
    Ok(ShapesSummary {
        json: json_path,
        images: opts.images,
        splits: counts,
    })
}

/// True when `path` looks like a shapes dataset folder (holds [`JSON_NAME`]).
pub fn is_shapes_dir(path: &Path) -> bool {
    path.join(JSON_NAME).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
