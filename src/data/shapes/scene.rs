//! What a scene is (its shapes and background) and how one is drawn at random.
//!
//! A new property of a shape (e.g. an object label) is a field of [`Shape`], set in `place`;
//! the grammar and the renderer read the fields they need.

use rand::seq::IndexedRandom;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

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

    /// The kind's label (the plain singular name).
    pub fn name(self) -> &'static str {
        self.names()[0].0
    }

    /// Names of the kind, (singular, plural), the first being the plain one.
    pub(super) fn names(self) -> &'static [(&'static str, &'static str)] {
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

    pub(super) fn names(self) -> &'static [&'static str] {
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
    pub(super) fn names(self) -> &'static [&'static str] {
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
