//! The terminal's lifecycle: raw mode and the alternate screen from [`Dashboard::new`] until finish,
//! drop or panic, and the redraw loop capped at ten frames per second.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEvent};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};

use super::draw::draw;
use super::keys::UiState;
use super::logs::{recent_logs, release_logs, start_capturing_logs};
use crate::error::{Error, Result};
use crate::train::report::{Phase, TrainingReporter, TrainingStatus, summary_line};

/// Redraws at most this often (10 frames per second), except after a key or a phase change.
const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// The drawing loop, generic over the backend so that tests run it on `TestBackend`.
pub(super) struct Screen<B: Backend> {
    pub(super) terminal: Terminal<B>,
    pub(super) ui: UiState,
    last_draw: Option<Instant>,
    last_phase: Phase,
}

impl<B: Backend> Screen<B> {
    pub(super) fn new(terminal: Terminal<B>) -> Self {
        Self {
            terminal,
            ui: UiState::default(),
            last_draw: None,
            last_phase: Phase::default(),
        }
    }

    /// Applies `keys`, then redraws if a key or the phase changed something, or if the last frame
    /// is older than [`MIN_FRAME_INTERVAL`]. Returns whether it drew.
    pub(super) fn update(
        &mut self,
        status: &TrainingStatus,
        keys: impl IntoIterator<Item = KeyEvent>,
        force: bool,
        now: Instant,
    ) -> Result<bool, B::Error> {
        let mut changed = force;
        for key in keys {
            changed |= self.ui.handle_key(key);
        }
        if status.phase != self.last_phase {
            self.last_phase.clone_from(&status.phase);
            changed = true;
        }
        let due = self
            .last_draw
            .is_none_or(|last| now.saturating_duration_since(last) >= MIN_FRAME_INTERVAL);
        if !(changed || due) {
            return Ok(false);
        }
        let ui = &self.ui;
        self.terminal.draw(|frame| draw(frame, status, ui))?;
        self.last_draw = Some(now);
        Ok(true)
    }
}

/// True while a dashboard has the terminal in raw mode on the alternate screen.
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen (once), then replays the captured log lines.
fn restore_terminal(from_panic_hook: bool) {
    if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
        // Raw mode first: it has more side effects than the alternate screen.
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
        release_logs(from_panic_hook);
    }
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The ratatui training dashboard on stdout. It owns the terminal from [`Dashboard::new`] until
/// [`TrainingReporter::finish`] or drop, and restores it on panic too. One at a time.
///
/// Keys are read (without blocking) and the screen redrawn only inside `update`, so the loop
/// should call `update` during long phases too (every few validation or decoding batches).
pub struct Dashboard {
    screen: Screen<CrosstermBackend<Stdout>>,
    previous_hook: Option<Arc<PanicHook>>,
    draw_failed: bool,
}

impl Dashboard {
    /// Enters raw mode and the alternate screen, and installs the panic hook that restores them.
    pub fn new() -> Result<Self> {
        let terminal_error = |err| Error::io("stdout (terminal)", err);
        let previous_hook: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let chained = Arc::clone(&previous_hook);
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal(true);
            chained(info);
        }));
        let mut dashboard_hook = Some(previous_hook);
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            TERMINAL_ACTIVE.store(true, Ordering::SeqCst);
            enable_raw_mode()?;
            execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => {
                start_capturing_logs();
                Ok(Self {
                    screen: Screen::new(terminal),
                    previous_hook: dashboard_hook,
                    draw_failed: false,
                })
            }
            Err(err) => {
                restore_terminal(false);
                reinstall_hook(&mut dashboard_hook);
                Err(terminal_error(err))
            }
        }
    }

    /// The current UI state (popup, loss view, stop request).
    pub fn ui(&self) -> &UiState {
        &self.screen.ui
    }

    fn restore(&mut self) {
        if std::thread::panicking() {
            // The hook has restored the terminal; the hook itself cannot be swapped while panicking.
            restore_terminal(true);
        } else {
            restore_terminal(false);
            reinstall_hook(&mut self.previous_hook);
        }
    }
}

/// Puts back the panic hook that was there before the dashboard's.
fn reinstall_hook(previous: &mut Option<Arc<PanicHook>>) {
    if let Some(previous) = previous.take() {
        // Dropping our hook drops its clone of the Arc, so `into_inner` then succeeds.
        drop(std::panic::take_hook());
        if let Some(hook) = Arc::into_inner(previous) {
            std::panic::set_hook(hook);
        }
    }
}

/// Key presses waiting in the terminal, read without blocking. Also reports a resize.
fn pending_keys() -> (Vec<KeyEvent>, bool) {
    let mut keys = Vec::new();
    let mut resized = false;
    // Bounded, so that a flood of input cannot hold up training.
    for _ in 0..256 {
        match event::poll(Duration::ZERO) {
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) => keys.push(key),
                Ok(Event::Resize(..)) => resized = true,
                Ok(_) => {}
                Err(_) => break,
            },
            _ => break,
        }
    }
    (keys, resized)
}

impl TrainingReporter for Dashboard {
    fn update(&mut self, status: &TrainingStatus) {
        let (keys, resized) = pending_keys();
        self.screen.ui.messages = recent_logs(1);
        match self.screen.update(status, keys, resized, Instant::now()) {
            Ok(_) => self.draw_failed = false,
            Err(err) => {
                if !self.draw_failed {
                    tracing::warn!("cannot draw the training dashboard: {err}");
                }
                self.draw_failed = true;
            }
        }
    }

    fn stop_requested(&mut self) -> bool {
        self.screen.ui.stop_requested
    }

    fn finish(&mut self, status: &TrainingStatus) {
        self.restore();
        println!("{}", summary_line(status, self.screen.ui.stop_requested));
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.restore();
    }
}
