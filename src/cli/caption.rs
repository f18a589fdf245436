//! `capsearch caption`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::device::DeviceArg;
use crate::model::decode::{DecodeOptions, MAX_STEPS};
use crate::model::inference::CaptionEngine;
use crate::model::precision::Precision;

/// Caption images (or precomputed feature vectors) with a trained model.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Model directory (from `capsearch train` or `capsearch import-neuraltalk`).
    #[arg(long)]
    pub model: PathBuf,
    /// Images to caption; a directory captions every image in it.
    pub images: Vec<PathBuf>,
    /// Caption the rows of a `[N, D]` float32/float64 .npy file of feature vectors instead of images.
    #[arg(long, conflicts_with = "images")]
    pub features: Option<PathBuf>,
    /// Beam size (1 = greedy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub beam_size: u16,
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
    #[arg(long, value_enum, default_value_t)]
    pub precision: Precision,
}

fn is_image_name(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "jpg" | "jpeg" | "png" | "gif" | "bmp" | "webp"
        )
    })
}

/// Expands directories into their image files (sorted).
pub fn expand_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .sort_by_file_name()
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_image_name(e.path()))
                .map(|e| e.into_path())
                .collect();
            out.append(&mut found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
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
        beam_size: args.beam_size as usize,
        max_steps: MAX_STEPS,
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
    let paths = expand_images(&args.images)?;
    anyhow::ensure!(!paths.is_empty(), "no images found in {:?}", args.images);
    let mut failed = 0;
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
            paths.len()
        ))
        .context("see the errors above");
    }
    Ok(())
}
