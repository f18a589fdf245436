use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = capsearch::cli::Cli::parse();
    capsearch::cli::logging::init(cli.verbose);
    match capsearch::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
