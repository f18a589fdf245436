//! `capsearch query`: find indexed images whose captions match a text.

use anyhow::{Result, bail};
use clap::Args;

use crate::search;

/// Find indexed images whose captions best match a text.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// What to look for, e.g. "a dog runs on the grass".
    pub text: String,

    /// How many results to print.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub size: u32,

    /// Skip this many of the best results (for paging).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,

    /// Print `[{"path", "caption", "score"}]` as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub backend: crate::cli::backend::BackendArgs,
}

pub fn run(args: QueryArgs) -> Result<()> {
    if args.text.trim().is_empty() {
        bail!("the query is empty: give some words to look for, e.g. \"a dog on the grass\"");
    }
    let backend = search::open_backend(&args.backend.options())?;
    let hits = backend.query(&args.text, args.size as usize, args.offset as usize)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no matches for {:?} in {}", args.text, backend.location());
        return Ok(());
    }
    let width = hits
        .iter()
        .map(|h| h.path.chars().count())
        .max()
        .unwrap_or(0);
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>3}. {:>7.3}  {:<width$}  {}",
            args.offset as usize + i + 1,
            hit.score,
            hit.path,
            hit.caption
        );
    }
    Ok(())
}
