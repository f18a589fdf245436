//! The terminal dashboard of a training run.
//!
//! The training loop hands a [`TrainingStatus`] to a [`TrainingReporter`] (both in
//! [`super::report`]). [`reporter`] picks the implementation: the ratatui [`Dashboard`] when stdout
//! is a terminal, otherwise the plain-log [`LogReporter`].
//!
//! The dashboard follows burn-train's own TUI (whose pieces are crate-private, so they are rebuilt
//! here in the same spirit): Braille line plots with a full-history view (down-sampled, so the
//! lines stay smooth) and a recent view at full resolution, switched with ↑/↓; a task gauge coloured
//! by phase above a whole-run gauge, each with its ETA; a stop popup that asks before acting; a
//! redraw rate capped at 10 frames per second; and a terminal that is restored on finish, on drop and
//! on panic (a panic hook restores it before the default hook prints). On top of that it shows
//! BLEU-4, throughput, memory, the fixed validation samples and the best checkpoint, and it keeps
//! `tracing` lines from scribbling over the screen (see [`log_writer`]).
//!
//! Rendering is the pure function [`draw`], so it is tested on ratatui's `TestBackend`.
//!
//! The pieces, as burn-train splits its renderer: [`keys`] (UI state and key handling),
//! [`draw`] and `charts` (rendering), [`logs`] (capturing `tracing` lines while the screen is
//! owned), and `terminal` (raw mode, the alternate screen, the panic hook, the redraw loop).

use std::io::{self, IsTerminal};

mod charts;
pub mod draw;
pub mod keys;
pub mod logs;
mod terminal;
#[cfg(test)]
mod tests;

pub use super::progress::LogReporter;
use super::report::TrainingReporter;
pub use draw::draw;
pub use keys::{LossView, RECENT_MIN_POINTS, UiState};
pub use logs::{LogWriter, log_writer};
pub use terminal::Dashboard;

/// The reporter for a training run: the [`Dashboard`] when stdout is a terminal and `no_tui` is
/// false, otherwise (or when the terminal cannot be set up) a [`LogReporter`].
pub fn reporter(no_tui: bool) -> Box<dyn TrainingReporter> {
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    if !no_tui && !dumb && io::stdout().is_terminal() {
        match Dashboard::new() {
            Ok(dashboard) => return Box::new(dashboard),
            Err(err) => tracing::warn!(
                "cannot start the training dashboard ({err}); reporting progress as log lines"
            ),
        }
    }
    Box::new(LogReporter::new())
}
