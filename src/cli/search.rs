//! `capsearch search`: caption and embed an image, then find the indexed images with the most
//! similar captions, the nearest embeddings, or both fused (`--mode`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::device::DeviceArg;
use crate::model::decode::{DecodeOptions, MAX_STEPS};
use crate::model::inference::CaptionEngine;
use crate::model::precision::Precision;
use crate::search::fusion::{FusionWeights, ImageSearch, SearchMode, search_image};
use crate::search::{self, Hit};

/// Reverse image search: caption and embed IMAGE with a model, then search the index by caption,
/// by embedding (visual), or both fused by reciprocal rank (hybrid).
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The image to search with.
    pub image: PathBuf,

    /// Model directory that captions the image.
    #[arg(long)]
    pub model: PathBuf,

    /// How many results to print.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub size: u32,

    /// Drop results scoring below this fraction of the best score (the original project used 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub min_relative_score: Option<f32>,

    /// Beam size for the caption (1 = greedy) [default: the model's own `beam_size` from model.json, else 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: Option<u16>,

    /// caption: text search with the image's caption; visual: nearest image embeddings;
    /// hybrid: both, fused by reciprocal rank [default: hybrid when the index holds image
    /// vectors, caption otherwise].
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<SearchMode>::new())]
    pub mode: Option<SearchMode>,

    #[command(flatten)]
    pub fusion: FusionArgs,

    /// Print `{"caption", "mode", "results": [{"path", "caption", "score", "caption_score",
    /// "visual_score"}]}` as JSON.
    #[arg(long)]
    pub json: bool,

    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Precision of the weights in memory: `f16` halves the memory the model holds, at a small
    /// cost in caption quality (measure it with `capsearch eval --precision f16`). CPU only.
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<crate::model::precision::Precision>::new(), default_value_t)]
    pub precision: Precision,

    #[command(flatten)]
    pub backend: crate::cli::backend::BackendArgs,
}

/// How hybrid search fuses, and its weights (`search`, `serve`, `eval search`).
#[derive(Debug, Args)]
pub struct FusionArgs {
    /// Weight of the caption list in hybrid search; with --fusion rrf an image scores
    /// caption-weight / (3 + caption rank) + visual-weight / (3 + visual rank). The default, 0.2,
    /// measured at or above 0.1 and visual search alone in `eval search` on every `shapes` and
    /// `scenes` model, with and without its embedding.json (0.3 lost to 0.1 on a weak model); for
    /// a model with a label head (`capsearch fit-labels`) it is 0.1, where 0.2 fell just below
    /// visual search alone.
    #[arg(long, value_name = "W")]
    pub caption_weight: Option<f32>,

    /// Weight of the visual ranks in hybrid search (see --caption-weight).
    #[arg(long, default_value_t = crate::search::fusion::DEFAULT_VISUAL_WEIGHT, value_name = "W")]
    pub visual_weight: f32,

    /// How hybrid search combines the caption and visual lists (weighted by the two weights).
    #[arg(long, default_value_t, value_name = "METHOD",
          value_parser = crate::cli::choice::ChoiceParser::<crate::search::fusion::FusionMethod>::new())]
    pub fusion: crate::search::fusion::FusionMethod,
}

impl FusionArgs {
    /// The weights for the model in `model_dir`, checked (the caption weight's default depends
    /// on the model: [`crate::search::fusion::default_caption_weight`]).
    pub fn weights(&self, model_dir: &std::path::Path) -> crate::error::Result<FusionWeights> {
        let weights = FusionWeights {
            caption: self
                .caption_weight
                .unwrap_or_else(|| crate::search::fusion::default_caption_weight(model_dir)),
            visual: self.visual_weight,
            method: self.fusion,
        };
        weights.validate()?;
        Ok(weights)
    }
}

/// Keeps the hits scoring at least `fraction` of the best one.
pub fn cut_relative(hits: Vec<Hit>, fraction: Option<f32>) -> Vec<Hit> {
    match (fraction, hits.first().map(|h| h.score)) {
        (Some(f), Some(best)) => hits.into_iter().filter(|h| h.score >= best * f).collect(),
        _ => hits,
    }
}

pub fn run(args: SearchArgs) -> Result<()> {
    if let Some(f) = args.min_relative_score {
        anyhow::ensure!(
            (0.0..=1.0).contains(&f),
            "--min-relative-score must be between 0 and 1, got {f}"
        );
    }
    let weights = args.fusion.weights(&args.model)?;
    let engine = CaptionEngine::load_with(&args.model, args.device.device()?, args.precision)?;
    let backend = search::open_backend(&args.backend.options())?;
    let options = DecodeOptions {
        beam_size: args.beam_size.map_or(0, usize::from),
        max_steps: MAX_STEPS,
        concept_weight: None,
    };
    let request = ImageSearch {
        mode: args.mode,
        size: args.size as usize,
        offset: 0,
        weights,
    };
    let (generated, found) =
        search_image(backend.as_ref(), &engine, &args.image, options, &request)?;
    let hits = cut_relative(found.hits, args.min_relative_score);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "caption": generated.caption,
                "logprob": generated.logprob,
                "mode": found.mode,
                "results": hits
            }))?
        );
        return Ok(());
    }
    println!("caption: {}", generated.caption);
    println!("mode:    {}", found.mode);
    if hits.is_empty() {
        println!("no similar images in {}", backend.location());
        return Ok(());
    }
    let score = |s: Option<f32>| s.map_or_else(|| "-".to_string(), |s| format!("{s:.3}"));
    println!(
        "{:>4} {:>8} {:>8} {:>7}  path  caption",
        "", "score", "caption", "visual"
    );
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>3}. {:>8.4} {:>8} {:>7}  {}  {}",
            i + 1,
            hit.score,
            score(hit.caption_score),
            score(hit.visual_score),
            hit.path,
            hit.caption
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(score: f32) -> Hit {
        Hit {
            path: format!("{score}"),
            caption: String::new(),
            score,
            caption_score: Some(score),
            visual_score: None,
        }
    }

    #[test]
    fn relative_cut_keeps_hits_near_the_best() {
        let hits = vec![hit(10.0), hit(6.0), hit(4.9)];
        assert_eq!(cut_relative(hits.clone(), Some(0.5)).len(), 2);
        assert_eq!(cut_relative(hits.clone(), None).len(), 3);
        assert!(cut_relative(Vec::new(), Some(0.5)).is_empty());
    }
}
