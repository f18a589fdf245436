//! `capsearch index`: fill a search index, show what it holds, or empty it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::data::Split;
use crate::data::formats::{self, Format, LoadOptions};
use crate::search::shard::Shard;
use crate::search::{self, IndexStats, SearchBackend};

/// Index captions for search, or show (`--stats`) or delete (`--drop`) an index.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["dataset", "images", "stats", "drop"])))]
pub struct IndexArgs {
    /// Index the reference captions of a dataset, in any format capsearch loads (Karpathy JSON,
    /// custom_dataset.json, Flickr8k, COCO, CSV, a folder with .txt captions). One document per
    /// image; indexing again replaces it, never duplicates it.
    #[arg(long, value_name = "PATH")]
    pub dataset: Option<PathBuf>,

    /// Caption every image in this folder with --model and index the captions. Images already
    /// indexed with the same model are skipped, so an interrupted run resumes; unreadable images
    /// are reported at the end.
    #[arg(long, value_name = "DIR", requires = "model")]
    pub images: Option<PathBuf>,

    /// Model directory that captions --images.
    #[arg(long, value_name = "DIR", requires = "images")]
    pub model: Option<PathBuf>,

    /// Compute device for --model.
    #[arg(long, value_enum, default_value_t)]
    pub device: crate::cli::device::DeviceArg,
    /// Precision of the weights in memory for --model (`f16`: half the memory; CPU only).
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<crate::model::precision::Precision>::new(), default_value_t)]
    pub precision: crate::model::precision::Precision,

    /// Read --dataset as this format instead of detecting it.
    #[arg(long, value_parser = crate::cli::choice::ChoiceParser::<Format>::new(), requires = "dataset")]
    pub format: Option<Format>,

    /// Folder the dataset's image paths are relative to (e.g. for custom_dataset.json). Paths
    /// that escape it are refused.
    #[arg(long, value_name = "DIR", requires = "dataset")]
    pub image_root: Option<PathBuf>,

    /// Index the captions of every entry of --dataset without looking for its image files (for
    /// an annotation file whose images are elsewhere or absent); results may then name paths
    /// that do not exist on this machine. Without it, entries whose image is missing under the
    /// image root are skipped, as in training.
    #[arg(long, requires = "dataset")]
    pub captions_only: bool,

    /// Index only this split (train, val or test); default: every image.
    #[arg(long, requires = "dataset")]
    pub split: Option<Split>,

    /// Index only share K of N (K from 1 to N) of the images, chosen by a hash of each image's
    /// path relative to the folder (--images DIR; for --dataset, relative to its image root), so
    /// that N machines, each given its own K, fill one index together with no image missed or
    /// indexed twice. Every machine must name the folder by the same path.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,

    /// Documents per write.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// Print what the index holds: documents, how many per model and dataset, size.
    #[arg(long)]
    pub stats: bool,

    /// Delete the whole index. Asks for confirmation on a terminal; elsewhere needs --yes.
    #[arg(long)]
    pub drop: bool,

    /// Do not ask before --drop.
    #[arg(long, requires = "drop")]
    pub yes: bool,

    /// Print --stats as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub backend: crate::cli::backend::BackendArgs,
}

pub fn run(args: IndexArgs) -> Result<()> {
    let backend = search::open_backend(&args.backend.options())?;
    if let Some(path) = &args.dataset {
        return index_dataset(backend.as_ref(), path, &args);
    }
    if let (Some(dir), Some(model)) = (&args.images, &args.model) {
        return index_images(backend.as_ref(), dir, model, &args);
    }
    if args.stats {
        let stats = backend.stats()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&stats)?);
        } else {
            print_stats(&stats);
        }
        return Ok(());
    }
    if args.drop {
        return drop_index(backend.as_ref(), args.yes);
    }
    bail!("nothing to do: give --dataset, --images with --model, --stats or --drop")
}

fn index_dataset(
    backend: &dyn SearchBackend,
    path: &std::path::Path,
    args: &IndexArgs,
) -> Result<()> {
    let opts = LoadOptions {
        format: args.format,
        images: args.image_root.clone(),
        captions_only: args.captions_only,
        ..LoadOptions::default()
    };
    let dataset = match formats::load(path, &opts) {
        Ok(dataset) => dataset,
        Err(e @ crate::Error::Dataset { .. }) if !args.captions_only => {
            return Err(anyhow::Error::new(e).context(
                "no image of the dataset could be indexed; to index its captions without the image \
                 files, pass --captions-only",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut docs = search::dataset_documents(&dataset, args.split);
    if let Some(shard) = args.shard {
        docs.retain(|d| shard.holds_file(&dataset.image_root, std::path::Path::new(&d.path)));
    }
    if docs.is_empty() {
        bail!(
            "dataset {} has no images{}{} to index",
            path.display(),
            args.split
                .map(|s| format!(" in split {s}"))
                .unwrap_or_default(),
            args.shard
                .map(|s| format!(" in shard {s}"))
                .unwrap_or_default()
        );
    }
    let captions: usize = docs.iter().map(|d| d.captions.len()).sum();
    let images = docs.len();
    let start = Instant::now();
    let bar = search::progress_bar(Some(images as u64), "images");
    let written = search::index_documents(backend, docs, args.batch_size as usize, &bar)
        .with_context(|| {
            format!(
                "indexing {} stopped; the images before the failure are indexed, and running the \
                 same command again completes it without duplicates",
                path.display()
            )
        })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "indexed {written} images ({captions} captions) of {}{} ({}, dataset {:?}) into the {} \
         index at {} in {seconds:.1}s ({:.0} images/s)",
        path.display(),
        args.shard
            .map(|s| format!(" (shard {s})"))
            .unwrap_or_default(),
        dataset.format,
        dataset.name(),
        backend.name(),
        backend.location(),
        written as f64 / seconds.max(1e-9)
    );
    if !dataset.skipped.is_empty() {
        eprintln!("skipped {} entries of the dataset:", dataset.skipped.len());
        for s in dataset.skipped.iter().take(10) {
            eprintln!("  {}: {}", s.entry, s.reason);
        }
        if dataset.skipped.len() > 10 {
            eprintln!("  ... and {} more", dataset.skipped.len() - 10);
        }
    }
    Ok(())
}

fn index_images(
    backend: &dyn SearchBackend,
    dir: &std::path::Path,
    model: &std::path::Path,
    args: &IndexArgs,
) -> Result<()> {
    use crate::model::decode::DecodeOptions;
    use crate::model::inference::CaptionEngine;

    anyhow::ensure!(dir.is_dir(), "--images {}: not a folder", dir.display());
    let engine = CaptionEngine::load_with(model, args.device.device()?, args.precision)?;
    let start = Instant::now();
    let bar = search::progress_bar(Some(0), "images");
    let report = search::indexer::index_folder(
        backend,
        &engine,
        dir,
        DecodeOptions::default(),
        args.shard,
        &bar,
    )
    .with_context(|| {
        format!(
            "indexing {} stopped; what was indexed stays, and running the same command \
                     again continues where it stopped",
            dir.display()
        )
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "indexed {} images of {}{} captioned by {} into the {} index at {} in \
         {seconds:.1}s ({:.1} images/s); {} already indexed with this model",
        report.written,
        dir.display(),
        args.shard
            .map(|s| format!(" (shard {s})"))
            .unwrap_or_default(),
        engine.model_id(),
        backend.name(),
        backend.location(),
        report.written as f64 / seconds.max(1e-9),
        report.already_indexed,
    );
    if !report.failed.is_empty() {
        eprintln!("{} images could not be captioned:", report.failed.len());
        for f in &report.failed {
            eprintln!("  {}: {}", f.path.display(), f.reason);
        }
    }
    Ok(())
}

fn print_stats(stats: &IndexStats) {
    println!("backend    {}", stats.backend);
    println!("location   {}", stats.location);
    println!("documents  {}", stats.documents);
    if let Some(bytes) = stats.size_bytes {
        println!("size       {}", indicatif::HumanBytes(bytes));
    }
    for source in &stats.sources {
        println!(
            "  {:<8} {}: {} documents",
            source.kind, source.source, source.documents
        );
    }
    if let Some(v) = &stats.vectors {
        let count = v.count.map_or("unknown".to_string(), |n| n.to_string());
        println!("vectors    {count} of {} values: {}", v.dims, v.embedder);
        println!("  storage  {}", v.storage);
        if let Some(bytes) = v.size_bytes {
            println!("  file     {}", indicatif::HumanBytes(bytes));
        }
        match (v.in_sync, &v.note) {
            (Some(true), _) => {
                println!("  in sync  yes: the vector file matches the index's commit")
            }
            (Some(false), note) => println!(
                "  in sync  no: {}",
                note.as_deref()
                    .unwrap_or("the vector file does not match the index's commit")
            ),
            (None, _) => println!("  in sync  always: the vectors are fields of the documents"),
        }
    }
}

fn drop_index(backend: &dyn SearchBackend, yes: bool) -> Result<()> {
    let location = backend.location();
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to drop the {} index at {location} without confirmation (stdin is not \
                 a terminal): pass --yes",
                backend.name()
            );
        }
        let what = match backend.count() {
            Ok(n) => format!("its {n} documents"),
            Err(_) => "everything in it".to_string(),
        };
        eprint!(
            "Delete the {} index at {location} and {what}? Type 'yes' to confirm: ",
            backend.name()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y") {
            bail!("not confirmed: the index at {location} was left as it was");
        }
    }
    if backend.drop_index()? {
        println!("dropped the {} index at {location}", backend.name());
    } else {
        println!("there is no index at {location}: nothing to drop");
    }
    Ok(())
}
