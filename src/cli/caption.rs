//! `capsearch caption`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::device::DeviceArg;
use super::eval::parse_concept_weight;
use crate::model::decode::{DecodeOptions, MAX_STEPS};
use crate::model::inference::CaptionEngine;
use crate::model::precision::Precision;

/// Caption images (or precomputed feature vectors) with a trained model.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Model directory (from `capsearch train` or `capsearch import-neuraltalk`).
    #[arg(long)]
    pub model: PathBuf,
    /// Images to caption; a directory captions every image in it (.jpg, .jpeg, .png, .gif, .bmp,
    /// .webp, in subfolders too). Entries of a directory that cannot be read are reported.
    pub images: Vec<PathBuf>,
    /// Caption the rows of a `[N, D]` float32/float64 .npy file of feature vectors instead of images.
    #[arg(long, conflicts_with = "images")]
    pub features: Option<PathBuf>,
    /// Beam size (1 = greedy) [default: the model's own `beam_size` from model.json, else 1].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: Option<u16>,
    /// Weight λ of concept-guided decoding (each word's score gets λ · log σ of the concept
    /// head's logit): overrides the model's own `concept_weight` from model.json; 0 turns it off.
    /// Models without a concept head ignore it.
    #[arg(long, value_name = "LAMBDA", value_parser = parse_concept_weight)]
    pub concept_weight: Option<f32>,
    /// Print JSON lines {"image", "caption", "logprob"}.
    #[arg(long)]
    pub json: bool,
    /// Images per model call.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceArg,
    /// Precision of the weights in memory: `f16` halves the memory the model holds, at a small
    /// cost in caption quality (measure it with `capsearch eval --precision f16`). CPU only.
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<crate::model::precision::Precision>::new(), default_value_t)]
    pub precision: Precision,
}

fn print(json: bool, image: &str, caption: &str, logprob: f64) {
    if json {
        println!(
            "{}",
            serde_json::json!({"image": image, "caption": caption, "logprob": logprob})
        );
    } else {
        println!("{image}\t{caption}");
    }
}

pub fn run(args: CaptionArgs) -> anyhow::Result<()> {
    let engine = CaptionEngine::load_with(&args.model, args.device.device()?, args.precision)?;
    let options = DecodeOptions {
        beam_size: args.beam_size.map_or(0, usize::from),
        max_steps: MAX_STEPS,
        concept_weight: args.concept_weight,
    };
    if let Some(path) = &args.features {
        let (data, rows) = crate::util::read_npy_matrix(path)?;
        let generated = engine.caption_features(data, rows, options)?;
        for (i, g) in generated.iter().enumerate() {
            print(
                args.json,
                &format!("{}#{i}", path.display()),
                &g.caption,
                g.logprob,
            );
        }
        return Ok(());
    }
    anyhow::ensure!(
        !args.images.is_empty(),
        "give at least one image or directory, or --features FILE.npy"
    );
    let listed = crate::data::image_files::list_images(&args.images)?;
    for u in &listed.unreadable {
        eprintln!("error: {}: {}", u.path.display(), u.reason);
    }
    let paths = listed.images;
    anyhow::ensure!(
        !paths.is_empty(),
        "no images found in {:?}{}",
        args.images,
        if listed.unreadable.is_empty() {
            String::new()
        } else {
            format!(" ({} entries could not be read)", listed.unreadable.len())
        }
    );
    let mut failed = listed.unreadable.len();
    for (path, result) in paths
        .iter()
        .zip(engine.caption_paths(&paths, options, args.batch_size))
    {
        match result {
            Ok(g) => print(
                args.json,
                &path.display().to_string(),
                &g.caption,
                g.logprob,
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!(
            "{failed} of {} images could not be captioned",
            paths.len() + listed.unreadable.len()
        ))
        .context("see the errors above");
    }
    Ok(())
}
