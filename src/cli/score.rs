//! `capsearch score`: score captions that any system produced against a dataset's references,
//! as `pycocoevalcap` does, without Python or Java.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::dataset_read::DatasetReadArgs;
use crate::data::formats::{self, LoadOptions};
use crate::eval::report::{metric_table_text, score_images};
use crate::eval::results::{declared_integer_ids, match_results, read_results};

/// Score captions from any system (COCO results format) against reference captions.
///
/// Prints BLEU-1..4, CIDEr-D and ROUGE-L as pycocoevalcap computes them (0–1 scale; CIDEr on its
/// ×10 scale), plus BLEU as NeuralTalk's multi-bleu.perl computes it. The images scored are the
/// ones in the results file, each once. Only the captions are read: the references' image files
/// need not be present.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Captions to score: a JSON list of {"image_id", "caption"} (COCO results format). image_id
    /// is the COCO image id, or the image path as the dataset names it (or its file name).
    #[arg(long)]
    pub results: PathBuf,
    /// Dataset holding the reference captions, in any format capsearch loads (Flickr8k token
    /// file, Karpathy or COCO JSON, custom JSON, CSV, or an image folder with .txt captions).
    #[arg(long)]
    pub references: PathBuf,
    #[command(flatten)]
    pub read: DatasetReadArgs,
    /// Print one JSON object keyed as pycocoevalcap names its scores (Bleu_1..Bleu_4, CIDEr,
    /// ROUGE_L), plus NeuralTalk_Bleu_1..4.
    #[arg(long)]
    pub json: bool,
}

/// Runs `capsearch score`.
pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let results = read_results(&args.results)?;
    let opts = LoadOptions {
        captions_only: true,
        ..args.read.options()
    };
    let dataset = formats::load(&args.references, &opts)
        .with_context(|| format!("loading references from {}", args.references.display()))?;
    let ids = declared_integer_ids(&dataset)?;
    let images = match_results(&results, &dataset, &ids)?;
    let count = images.len();
    let (scores, _) = score_images(images)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
    } else {
        println!(
            "Scored {count} captions from {} against the references in {} ({} format).\n",
            args.results.display(),
            dataset.source.display(),
            dataset.format
        );
        print!("{}", metric_table_text(&scores, None));
    }
    Ok(())
}
