//! What the user has done on the dashboard, and the keys that change it.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Which part of the training-loss history the loss plot shows (↑/↓ switch, as in burn-train).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LossView {
    /// The whole run, averaged down to the plot's resolution.
    #[default]
    Full,
    /// The last epoch (at least the last [`RECENT_MIN_POINTS`] points), every logged point.
    Recent,
}

/// Points shown at least by [`LossView::Recent`].
pub const RECENT_MIN_POINTS: usize = 20;

/// What the user has done on the screen; [`super::draw`] reads it, [`UiState::handle_key`] changes it.
#[derive(Debug, Clone, Default)]
pub struct UiState {
    /// The "Stop training?" popup is open.
    pub confirm_stop: bool,
    /// The user confirmed the stop; stays true.
    pub stop_requested: bool,
    pub loss_view: LossView,
    /// Recent log lines (newest last); the newest is shown above the help line.
    pub messages: Vec<String>,
}

impl UiState {
    /// Applies one key press. Returns true when the screen should be redrawn.
    ///
    /// `q`, Esc or ctrl-c open the stop popup; there `y` (or Enter, or a second ctrl-c) confirms and
    /// `n` or Esc cancels. ↑/↓ (or `v`) switch the loss plot between full history and last epoch.
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        if key.kind == KeyEventKind::Release || self.stop_requested {
            return false;
        }
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if self.confirm_stop {
            if ctrl_c {
                self.confirm_stop = false;
                self.stop_requested = true;
                return true;
            }
            match key.code {
                KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                    self.confirm_stop = false;
                    self.stop_requested = true;
                    true
                }
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.confirm_stop = false;
                    true
                }
                _ => false,
            }
        } else {
            if ctrl_c {
                self.confirm_stop = true;
                return true;
            }
            match key.code {
                KeyCode::Char('q' | 'Q') | KeyCode::Esc => {
                    self.confirm_stop = true;
                    true
                }
                KeyCode::Up | KeyCode::Down | KeyCode::Char('v') => {
                    self.loss_view = match self.loss_view {
                        LossView::Full => LossView::Recent,
                        LossView::Recent => LossView::Full,
                    };
                    true
                }
                _ => false,
            }
        }
    }
}
