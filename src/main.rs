use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = capsearch::cli::Cli::parse();
    let filter = match cli.verbose {
        0 => "capsearch=info",
        1 => "capsearch=debug",
        _ => "capsearch=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(capsearch::train::dashboard::log_writer)
        .init();
    match capsearch::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
