//! `capsearch index`: fill a search index, show what it holds, or empty it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use clap::Args;

use crate::search::{self, BackendOptions, IndexStats, SearchBackend};

/// Index captions for search, or show (`--stats`) or delete (`--drop`) an index.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["stats", "drop"])))]
pub struct IndexArgs {
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
    pub backend: BackendOptions,
}

pub fn run(args: IndexArgs) -> Result<()> {
    let backend = search::open_backend(&args.backend)?;
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
    bail!("nothing to do: give --stats or --drop")
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
