//! Log output of the command line: `tracing` lines on stderr, in colour only where a person
//! reads them.

use std::io::IsTerminal;

/// Installs the log subscriber. `verbose` counts `-v` flags (0: info, 1: debug, 2+: trace);
/// `RUST_LOG` overrides it. Lines are coloured only when stderr is a terminal and `NO_COLOR` is
/// unset or empty (<https://no-color.org>), so a log redirected to a file or a pipe is plain text.
pub fn init(verbose: u8) {
    let filter = match verbose {
        0 => "capsearch=info",
        1 => "capsearch=debug",
        _ => "capsearch=trace",
    };
    let color = color_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_ansi(color)
        .with_writer(crate::train::dashboard::log_writer)
        .init();
}

/// Whether log lines get ANSI colours: on a terminal, unless `NO_COLOR` holds a non-empty value.
pub fn color_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(color_wanted(true, Some(OsStr::new(""))));
        assert!(!color_wanted(true, Some(OsStr::new("1"))));
        assert!(!color_wanted(false, None));
        assert!(!color_wanted(false, Some(OsStr::new(""))));
    }
}
