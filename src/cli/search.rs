//! `capsearch search`: caption an image, then find the indexed images with the most similar captions.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::device::DeviceArg;
use crate::model::decode::{DecodeOptions, MAX_STEPS};
use crate::model::inference::CaptionEngine;
use crate::model::precision::Precision;
use crate::search::{self, Hit};

/// Reverse image search: caption IMAGE with a model, then query the index with that caption.
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

    /// Beam size for the caption (1 = greedy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: u16,

    /// Print `{"caption", "results": [{"path", "caption", "score"}]}` as JSON.
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
    let engine = CaptionEngine::load_with(&args.model, args.device.device()?, args.precision)?;
    let backend = search::open_backend(&args.backend.options())?;
    let options = DecodeOptions {
        beam_size: args.beam_size as usize,
        max_steps: MAX_STEPS,
    };
    let generated = engine
        .caption_paths(std::slice::from_ref(&args.image), options, 1)
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no caption produced"))??;
    let hits = if generated.caption.trim().is_empty() {
        Vec::new()
    } else {
        backend.query(&generated.caption, args.size as usize, 0)?
    };
    let hits = cut_relative(hits, args.min_relative_score);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"caption": generated.caption, "logprob": generated.logprob, "results": hits})
            )?
        );
        return Ok(());
    }
    println!("caption: {}", generated.caption);
    if hits.is_empty() {
        println!("no similar images in {}", backend.location());
    }
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>3}. {:>7.3}  {}  {}",
            i + 1,
            hit.score,
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
