//! The command line: one file per command, each with a clap argument struct and a `run`.

pub mod backend;
pub mod bench;
pub mod caption;
pub mod choice;
pub mod dataset;
pub mod dataset_read;
pub mod device;
pub mod eval;
pub mod fit_embedding;
pub mod fit_guide;
pub mod fit_labels;
pub mod import;
pub mod index;
pub mod logging;
pub mod query;
pub mod score;
pub mod search;
pub mod serve;
pub mod train;

use clap::{Parser, Subcommand};

/// Train and evaluate image captioners, and search images by their captions.
#[derive(Debug, Parser)]
#[command(name = "capsearch", version, about, long_about = None)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate and check datasets.
    Dataset(dataset::DatasetArgs),
    Train(train::TrainArgs),
    Caption(caption::CaptionArgs),
    ImportNeuraltalk(import::ImportArgs),
    Eval(eval::EvalArgs),
    /// Fit the statistics that standardise a model's image embeddings for visual search.
    FitEmbedding(fit_embedding::FitEmbeddingArgs),
    /// Fit a model's guide head (the word classifier that concept-guided decoding reads) on a
    /// dataset's cached backbone features.
    FitGuide(fit_guide::FitGuideArgs),
    /// Fit a model's label head: its image embeddings become the probabilities of a labelled
    /// dataset's labels, for visual and hybrid search.
    FitLabels(fit_labels::FitLabelsArgs),
    /// Score captions from any system (COCO results format) against a dataset's references.
    Score(score::ScoreArgs),
    /// Index captions for search, or show (--stats) or delete (--drop) an index.
    Index(index::IndexArgs),
    /// Find indexed images whose captions best match a text.
    Query(query::QueryArgs),
    /// Serve the web app and JSON API: caption an uploaded image, find images with similar captions.
    Serve(serve::ServeArgs),
    /// Reverse image search: caption an image, then find indexed images with similar captions.
    Search(search::SearchArgs),
    /// Measure training, captioning and search against PyTorch and NeuralTalk, and `serve` under load.
    Bench(bench::BenchArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dataset(args) => dataset::run(args),
        Command::Train(args) => train::run(args),
        Command::Caption(args) => caption::run(args),
        Command::ImportNeuraltalk(args) => import::run(args),
        Command::Eval(args) => eval::run(args),
        Command::FitEmbedding(args) => fit_embedding::run(args),
        Command::FitGuide(args) => fit_guide::run(args),
        Command::FitLabels(args) => fit_labels::run(args),
        Command::Score(args) => score::run(args),
        Command::Index(args) => index::run(args),
        Command::Query(args) => query::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Search(args) => search::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
