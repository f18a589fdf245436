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
//!
//! | file | holds |
//! |---|---|
//! | `scene.rs` | what a scene is ([`Scene`], its shapes and background) and how one is drawn at random |
//! | `grammar.rs` | the caption grammar: true captions of a scene |
//! | `render.rs` | a scene as pixels |
//! | `corpus.rs` | [`indexed_caption`]: a fast, deterministic caption corpus for benchmarks |
//! | `generate.rs` | the dataset on disk: PNGs and `dataset_shapes.json` |

mod corpus;
mod generate;
mod grammar;
mod render;
mod scene;

#[cfg(test)]
mod tests;

pub use corpus::indexed_caption;
pub use generate::{
    DEFAULT_SIZE, Generated, JSON_NAME, ShapesOptions, ShapesSummary, generate, generate_one,
    image_rng, is_shapes_dir, lexicon,
};
pub use grammar::{caption, captions, random_caption};
pub use render::{labels, render};
pub use scene::{Background, Color, Kind, Pattern, Scene, Shape, Size, Tone, sample_scene};
