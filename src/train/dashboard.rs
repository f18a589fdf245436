//! The terminal dashboard of a training run, and the reporter interface the training loop talks to.
//!
//! The training loop fills a [`TrainingStatus`] and hands it to a [`TrainingReporter`] every few
//! iterations and at each phase change. [`reporter`] picks the implementation: the ratatui
//! [`Dashboard`] when stdout is a terminal, otherwise the plain-log [`LogReporter`].
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

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Clear, Dataset, Gauge, GraphType, LegendPosition, Paragraph, Wrap,
};
use ratatui::{Frame, Terminal};

use crate::error::{Error, Result};

pub use super::progress::LogReporter;

/// Everything the screen shows; the training loop fills it.
#[derive(Debug, Clone, Default)]
pub struct TrainingStatus {
    pub run_name: String,
    /// 1-based current epoch.
    pub epoch: usize,
    /// Planned epochs.
    pub epochs: usize,
    /// Iteration within the epoch (1-based).
    pub iteration: usize,
    pub iterations_per_epoch: usize,
    pub global_iteration: usize,
    /// (fractional epoch, loss), one point per logged iteration.
    pub train_loss: Vec<(f64, f64)>,
    /// (epoch, loss).
    pub val_loss: Vec<(f64, f64)>,
    /// (epoch, BLEU-4 on the 0..100 scale).
    pub val_bleu4: Vec<(f64, f64)>,
    pub learning_rate: f64,
    pub images_per_sec: f64,
    pub tokens_per_sec: f64,
    pub elapsed: Duration,
    /// Time left for the whole run.
    pub eta: Option<Duration>,
    /// Time left in the current epoch.
    pub epoch_eta: Option<Duration>,
    /// Resident set size of this process; see [`current_rss_bytes`].
    pub memory_bytes: Option<u64>,
    /// Fixed validation images: current caption vs one reference, refreshed every epoch.
    pub samples: Vec<SampleCaption>,
    pub best: Option<BestCheckpoint>,
    /// "training", "validating", "decoding", "saving", "stopping"... At `finish`, the way the run
    /// ended ("finished", "stopped: time budget", ...), which the summary line repeats.
    pub phase: String,
    pub time_budget: Option<Duration>,
}

/// One fixed validation image: the caption the model gives it now, and one of its references.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCaption {
    pub image: String,
    pub generated: String,
    pub reference: String,
}

/// The checkpoint kept as best (by validation BLEU-4) so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestCheckpoint {
    pub epoch: usize,
    pub bleu4: f64,
    pub path: PathBuf,
}

impl TrainingStatus {
    /// Share of the current epoch done, in 0..=1.
    pub fn epoch_fraction(&self) -> f64 {
        if self.iterations_per_epoch == 0 {
            return 0.0;
        }
        (self.iteration as f64 / self.iterations_per_epoch as f64).clamp(0.0, 1.0)
    }

    /// Share of the planned run done, in 0..=1 (training iterations only).
    pub fn run_fraction(&self) -> f64 {
        let total = self.epochs.saturating_mul(self.iterations_per_epoch);
        if total == 0 {
            return 0.0;
        }
        let done = self.epoch.saturating_sub(1) * self.iterations_per_epoch
            + self.iteration.min(self.iterations_per_epoch);
        (done as f64 / total as f64).clamp(0.0, 1.0)
    }

    pub fn last_train_loss(&self) -> Option<f64> {
        self.train_loss.last().map(|p| p.1)
    }

    pub fn last_val_loss(&self) -> Option<f64> {
        self.val_loss.last().map(|p| p.1)
    }

    pub fn last_bleu4(&self) -> Option<f64> {
        self.val_bleu4.last().map(|p| p.1)
    }

    /// Validation perplexity, `exp(validation loss)` (the loss is a per-word cross-entropy).
    pub fn val_perplexity(&self) -> Option<f64> {
        self.last_val_loss().map(f64::exp)
    }

    /// Time left of the `--time-budget`, if one was given.
    pub fn budget_left(&self) -> Option<Duration> {
        self.time_budget
            .map(|budget| budget.saturating_sub(self.elapsed))
    }
}

/// What the training loop talks to. `update` is called every few iterations and at each phase change.
pub trait TrainingReporter {
    fn update(&mut self, status: &TrainingStatus);
    /// True once the user asked to stop and confirmed (the loop then saves a checkpoint and exits).
    fn stop_requested(&mut self) -> bool;
    /// Called once at the end (restore the terminal, print a final summary line).
    fn finish(&mut self, status: &TrainingStatus);
}

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

/// Resident set size of this process in bytes, from `/proc/self/statm` (resident pages times the
/// page size). `None` where that file does not exist (not Linux) or cannot be parsed.
pub fn current_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

/// The kernel's page size. `/proc/self/smaps_rollup` does not give it, but `/proc/self/smaps`
/// names it per mapping (`KernelPageSize: 4 kB`); 4 KiB where that cannot be read.
fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        std::fs::File::open("/proc/self/smaps")
            .ok()
            .and_then(|file| {
                use std::io::BufRead;
                io::BufReader::new(file)
                    .lines()
                    .take(64)
                    .map_while(|line| line.ok())
                    .find_map(|line| {
                        let kb = line.strip_prefix("KernelPageSize:")?;
                        kb.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
                    })
            })
            .map_or(4096, |kb| kb * 1024)
    })
}

// ---------------------------------------------------------------------------------------------
// Number formatting, shared with the log reporter.

/// "45s", "4m 12s", "1h 02m", "2d 03h".
pub fn format_duration(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {:02}h", s / 86400, s / 3600 % 24),
    }
}

/// "812 B", "3.4 KiB", "512.3 MiB", "1.24 GiB".
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// A throughput: "7.25", "312.4", "3.12k", "1.20M"; "-" when not known yet (zero or not finite).
pub fn format_rate(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        "-".to_string()
    } else if rate < 10.0 {
        format!("{rate:.2}")
    } else if rate < 1000.0 {
        format!("{rate:.1}")
    } else if rate < 1e6 {
        format!("{:.2}k", rate / 1e3)
    } else {
        format!("{:.2}M", rate / 1e6)
    }
}

pub(crate) fn format_loss(loss: Option<f64>) -> String {
    loss.map_or_else(|| "-".to_string(), |l| format!("{l:.4}"))
}

pub(crate) fn format_bleu(bleu: Option<f64>) -> String {
    bleu.map_or_else(|| "-".to_string(), |b| format!("{b:.2}"))
}

pub(crate) fn format_lr(lr: f64) -> String {
    if lr == 0.0 {
        "-".to_string()
    } else {
        format!("{lr:.2e}")
    }
}

pub(crate) fn format_eta(eta: Option<Duration>) -> String {
    eta.map_or_else(|| "-".to_string(), format_duration)
}

fn format_axis(value: f64) -> String {
    let a = value.abs();
    if a >= 100.0 {
        format!("{value:.0}")
    } else if a >= 10.0 {
        format!("{value:.1}")
    } else if a >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The one line printed when a run ends, by both reporters.
pub fn summary_line(status: &TrainingStatus, stopped_by_user: bool) -> String {
    let ended = if stopped_by_user {
        "stopped by user"
    } else if status.phase.is_empty() {
        "ended"
    } else {
        status.phase.as_str()
    };
    let name = if status.run_name.is_empty() {
        String::new()
    } else {
        format!(" {}", status.run_name)
    };
    let best = match &status.best {
        Some(best) => format!(
            "best epoch {} (BLEU-4 {:.2}) at {}",
            best.epoch,
            best.bleu4,
            best.path.display()
        ),
        None => "no best checkpoint yet".to_string(),
    };
    format!(
        "run{name} {ended}: epoch {}/{} after {} · train loss {} · val loss {} · BLEU-4 {} · {best}",
        status.epoch,
        status.epochs,
        format_duration(status.elapsed),
        format_loss(status.last_train_loss()),
        format_loss(status.last_val_loss()),
        format_bleu(status.last_bleu4()),
    )
}

// ---------------------------------------------------------------------------------------------
// UI state and key handling.

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

/// What the user has done on the screen; [`draw`] reads it, [`UiState::handle_key`] changes it.
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

// ---------------------------------------------------------------------------------------------
// Rendering.

/// Below this size the dashboard shows a compact text summary instead of panels.
const MIN_WIDTH: u16 = 60;
const MIN_HEIGHT: u16 = 18;

const TRAIN_COLOR: Color = Color::LightRed;
const VALID_COLOR: Color = Color::LightBlue;
const BLEU_COLOR: Color = Color::LightYellow;
const BEST_COLOR: Color = Color::LightGreen;
const LABEL_STYLE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

fn phase_color(phase: &str) -> Color {
    match phase {
        "training" => TRAIN_COLOR,
        "validating" | "decoding" => VALID_COLOR,
        "saving" => Color::LightCyan,
        "stopping" => Color::LightMagenta,
        _ => Color::Gray,
    }
}

/// Draws the whole dashboard for `status` into `frame`. Pure: the same inputs give the same screen.
/// Never panics, whatever the size of the frame.
pub fn draw(frame: &mut Frame, status: &TrainingStatus, ui: &UiState) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_compact(frame, area, status, ui);
    } else {
        draw_full(frame, area, status, ui);
    }
    if ui.confirm_stop {
        draw_stop_popup(frame, area);
    }
}

fn draw_full(frame: &mut Frame, area: Rect, status: &TrainingStatus, ui: &UiState) {
    let message_height = u16::from(!ui.messages.is_empty());
    // Short terminals get the progress gauges without a frame, to leave the plots room.
    let framed_progress = area.height >= 30;
    let [header, body, progress, message, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(if framed_progress { 4 } else { 2 }),
        Constraint::Length(message_height),
        Constraint::Length(1),
    ])
    .areas(area);

    // The lower row holds the status, best checkpoint and samples; the plots take the rest.
    let wanted_samples = 3 * status.samples.len() as u16 + 2;
    let lower = wanted_samples
        .clamp(11, 20)
        .min(body.height.saturating_sub(8).max(body.height / 2));
    let [plots, lower] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(lower)]).areas(body);
    let [loss, bleu] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(plots);
    let [left, samples] =
        Layout::horizontal([Constraint::Length(38), Constraint::Min(0)]).areas(lower);
    let [stats, best] = Layout::vertical([Constraint::Min(0), Constraint::Length(4)]).areas(left);

    draw_header(frame, header, status, ui);
    draw_loss_chart(frame, loss, status, ui.loss_view);
    draw_bleu_chart(frame, bleu, status);
    draw_stats(frame, stats, status);
    draw_best(frame, best, status);
    draw_samples(frame, samples, status);
    draw_progress(frame, progress, status, framed_progress);
    if let Some(last) = ui.messages.last() {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::from(" log ").black().on_dark_gray(),
                Span::from(format!(" {last}")).dark_gray(),
            ])),
            message,
        );
    }
    draw_help(frame, help);
}

fn draw_header(frame: &mut Frame, area: Rect, status: &TrainingStatus, ui: &UiState) {
    let mut spans = vec![
        Span::from(" capsearch ").black().on_cyan().bold(),
        Span::from(" "),
    ];
    if !status.run_name.is_empty() {
        spans.push(Span::from(status.run_name.clone()).bold());
        spans.push(Span::from(" · "));
    }
    let phase = if status.phase.is_empty() {
        "starting"
    } else {
        &status.phase
    };
    spans.push(Span::from(phase.to_string()).fg(phase_color(phase)).bold());
    spans.push(Span::from(format!(
        " · elapsed {}",
        format_duration(status.elapsed)
    )));
    if let (Some(budget), Some(left)) = (status.time_budget, status.budget_left()) {
        spans.push(Span::from(format!(
            " · budget {} left of {}",
            format_duration(left),
            format_duration(budget)
        )));
    }
    if ui.stop_requested {
        // First, so that a narrow terminal does not cut it off.
        spans.splice(
            1..1,
            [
                Span::from(" STOP REQUESTED: saving a checkpoint, then exiting ")
                    .white()
                    .on_red()
                    .bold(),
                Span::from(" "),
            ],
        );
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Averages `points` down to at most `max` points (equal-count buckets), so that a long history
/// draws as a smooth line at the plot's resolution. Non-finite points are dropped first.
fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let n = finite.len();
    if max == 0 || n <= max {
        return finite;
    }
    (0..max)
        .map(|bucket| {
            let lo = bucket * n / max;
            let hi = ((bucket + 1) * n / max).max(lo + 1);
            let slice = &finite[lo..hi];
            let len = slice.len() as f64;
            let (sx, sy) = slice
                .iter()
                .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
            (sx / len, sy / len)
        })
        .collect()
}

/// The tail of the training-loss history shown by [`LossView::Recent`].
fn recent(points: &[(f64, f64)]) -> &[(f64, f64)] {
    let Some(&(last_x, _)) = points.last() else {
        return points;
    };
    let by_epoch = points.partition_point(|&(x, _)| x < last_x - 1.0);
    let by_count = points.len().saturating_sub(RECENT_MIN_POINTS);
    &points[by_epoch.min(by_count)..]
}

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Pads a value range by 5% on each side (or by a small amount when it is one value).
fn padded(lo: f64, hi: f64, floor_at_zero: bool) -> [f64; 2] {
    let pad = if hi - lo < 1e-12 {
        lo.abs().max(1.0) * 0.05
    } else {
        (hi - lo) * 0.05
    };
    let mut low = lo - pad;
    if floor_at_zero && lo >= 0.0 {
        low = low.max(0.0);
    }
    [low, hi + pad]
}

fn x_bounds(lo: f64, hi: f64) -> [f64; 2] {
    if hi - lo < 1e-9 {
        [lo - 0.5, hi + 0.5]
    } else {
        [lo, hi]
    }
}

fn x_labels(bounds: [f64; 2]) -> Vec<Span<'static>> {
    let [lo, hi] = bounds;
    let fmt = |x: f64| {
        if hi - lo >= 10.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    };
    vec![
        Span::from(fmt(lo)),
        Span::from(fmt((lo + hi) / 2.0)),
        Span::from(fmt(hi)),
    ]
}

fn y_labels(bounds: [f64; 2]) -> Vec<Span<'static>> {
    let [lo, hi] = bounds;
    vec![
        Span::from(format_axis(lo)),
        Span::from(format_axis((lo + hi) / 2.0)),
        Span::from(format_axis(hi)),
    ]
}

fn chart_axis(bounds: [f64; 2], labels: Vec<Span<'static>>) -> Axis<'static> {
    Axis::default()
        .style(Style::default().fg(Color::DarkGray))
        .bounds(bounds)
        .labels(labels)
}

fn placeholder(frame: &mut Frame, area: Rect, text: &str) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    // Centre the (wrapped) text vertically.
    let lines = (text.chars().count() as u16)
        .div_ceil(area.width.max(1))
        .min(area.height);
    let middle = Rect {
        y: area.y + (area.height - lines) / 2,
        height: lines,
        ..area
    };
    frame.render_widget(
        Paragraph::new(Span::from(text.to_string()).dark_gray().italic())
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        middle,
    );
}

fn draw_loss_chart(frame: &mut Frame, area: Rect, status: &TrainingStatus, view: LossView) {
    let view_name = match view {
        LossView::Full => " full history ",
        LossView::Recent => " last epoch ",
    };
    let title = Line::from(vec![
        Span::from(" Loss ").bold(),
        Span::from("train ").fg(TRAIN_COLOR),
        Span::from(format_loss(status.last_train_loss())).bold(),
        Span::from(" · "),
        Span::from("val ").fg(VALID_COLOR),
        Span::from(format_loss(status.last_val_loss())).bold(),
        Span::from(" "),
    ]);
    let fits = title.width() + view_name.len() + 3 <= area.width as usize;
    let mut block = Block::bordered().title(title);
    if fits {
        block = block.title_top(Line::from(view_name).right_aligned().dark_gray());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let train: Vec<(f64, f64)> = match view {
        // Braille gives two dots per cell horizontally.
        LossView::Full => downsample(&status.train_loss, 2 * inner.width as usize),
        LossView::Recent => downsample(recent(&status.train_loss), usize::MAX),
    };
    let x_range = finite_range(train.iter().map(|p| p.0));
    let val: Vec<(f64, f64)> = status
        .val_loss
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .filter(|(x, _)| match (view, x_range) {
            (LossView::Recent, Some((lo, _))) => *x >= lo,
            _ => true,
        })
        .collect();
    let xs = train.iter().chain(&val).map(|p| p.0);
    let ys = train.iter().chain(&val).map(|p| p.1);
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (finite_range(xs), finite_range(ys)) else {
        placeholder(frame, inner, "waiting for the first logged iteration…");
        return;
    };
    let x_bounds = x_bounds(
        if view == LossView::Full {
            x_lo.min(0.0)
        } else {
            x_lo
        },
        x_hi,
    );
    let y_bounds = padded(y_lo, y_hi, true);

    let datasets = vec![
        Dataset::default()
            .name("train")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(TRAIN_COLOR))
            .data(&train),
        Dataset::default()
            .name("val")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(VALID_COLOR))
            .data(&val),
        // A lone validation point draws no line: mark every one.
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(VALID_COLOR).bold())
            .data(&val),
    ];
    let chart = Chart::new(datasets)
        .x_axis(chart_axis(x_bounds, x_labels(x_bounds)))
        .y_axis(chart_axis(y_bounds, y_labels(y_bounds)))
        .legend_position(Some(LegendPosition::TopRight));
    frame.render_widget(chart, inner);
}

fn best_point(status: &TrainingStatus) -> Option<(f64, f64)> {
    status
        .val_bleu4
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .fold(None, |best: Option<(f64, f64)>, p| match best {
            Some(b) if b.1 >= p.1 => Some(b),
            _ => Some(p),
        })
}

fn draw_bleu_chart(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
    let best = best_point(status);
    let block = Block::bordered().title(Line::from(vec![
        Span::from(" BLEU-4 (val) ").bold(),
        Span::from("last ").fg(BLEU_COLOR),
        Span::from(format_bleu(status.last_bleu4())).bold(),
        Span::from(" · "),
        Span::from("best ").fg(BEST_COLOR),
        Span::from(format_bleu(best.map(|b| b.1))).bold(),
        Span::from(" "),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let points: Vec<(f64, f64)> = status
        .val_bleu4
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (Some((x_lo, x_hi)), Some((_, y_hi))) = (
        finite_range(points.iter().map(|p| p.0)),
        finite_range(points.iter().map(|p| p.1)),
    ) else {
        placeholder(frame, inner, "BLEU-4 appears after the first validation");
        return;
    };
    let x_bounds = x_bounds(x_lo.min(0.0), x_hi);
    let y_bounds = [0.0, (y_hi * 1.1).max(1.0)];
    let best_data: Vec<(f64, f64)> = best.into_iter().collect();
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(BLEU_COLOR))
            .data(&points),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(BLEU_COLOR).bold())
            .data(&points),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(BEST_COLOR).bold())
            .data(&best_data),
    ];
    let chart = Chart::new(datasets)
        .x_axis(chart_axis(x_bounds, x_labels(x_bounds)))
        .y_axis(chart_axis(y_bounds, y_labels(y_bounds)));
    frame.render_widget(chart, inner);
}

fn stat_line(label: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {label:<9}"), LABEL_STYLE),
        Span::from(value),
    ])
}

fn draw_stats(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
    let phase = if status.phase.is_empty() {
        "starting".to_string()
    } else {
        status.phase.clone()
    };
    let lines = vec![
        Line::from(vec![
            Span::styled(format!(" {:<9}", "Phase"), LABEL_STYLE),
            Span::from(phase.clone()).fg(phase_color(&phase)).bold(),
        ]),
        stat_line("LR", format_lr(status.learning_rate)),
        stat_line(
            "Speed",
            format!(
                "{} img/s · {} tok/s",
                format_rate(status.images_per_sec),
                format_rate(status.tokens_per_sec)
            ),
        ),
        stat_line(
            "Memory",
            status
                .memory_bytes
                .map_or_else(|| "-".to_string(), format_bytes),
        ),
        stat_line(
            "Val ppl",
            status
                .val_perplexity()
                .filter(|p| p.is_finite())
                .map_or_else(|| "-".to_string(), |p| format!("{p:.2}")),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Status ".bold())),
        area,
    );
}

fn draw_best(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
    let lines = match &status.best {
        Some(best) => vec![
            Line::from(vec![
                Span::from(format!(" epoch {}", best.epoch)).bold(),
                Span::from(" · BLEU-4 "),
                Span::from(format!("{:.2}", best.bleu4))
                    .fg(BEST_COLOR)
                    .bold(),
            ]),
            Line::from(Span::from(format!(" {}", best.path.display())).dark_gray()),
        ],
        None => vec![Line::from(
            Span::from(" none yet (kept by val BLEU-4)")
                .dark_gray()
                .italic(),
        )],
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Best checkpoint ".bold())),
        area,
    );
}

fn draw_samples(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
    let mut block = Block::bordered().title(" Validation samples ".bold());
    if area.width >= 64 {
        block = block.title_top(
            Line::from(" generated caption vs one reference ")
                .right_aligned()
                .dark_gray(),
        );
    }
    if status.samples.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        placeholder(
            frame,
            inner,
            "captions of fixed validation images appear after the first validation",
        );
        return;
    }
    let inner = block.inner(area);
    // Captions wrap under themselves, past the "gen"/"ref" labels.
    const INDENT: &str = "       ";
    let text_width = (inner.width as usize).saturating_sub(INDENT.len()).max(8);
    let mut lines = Vec::with_capacity(3 * status.samples.len());
    for sample in &status.samples {
        let exact = sample.generated.trim() == sample.reference.trim();
        let mut title = vec![Span::from(format!(" {}", sample.image)).cyan().bold()];
        if exact {
            title.push(Span::from("  ✓ matches").fg(BEST_COLOR));
        }
        lines.push(Line::from(title));
        let generated_style = if exact {
            Style::default().fg(BEST_COLOR)
        } else {
            Style::default().fg(Color::White)
        };
        let generated = if sample.generated.trim().is_empty() {
            vec![Span::from("(empty caption)").dark_gray().italic()]
        } else {
            wrap_words(&sample.generated, text_width)
                .into_iter()
                .map(|l| Span::styled(l, generated_style))
                .collect()
        };
        let reference = wrap_words(&sample.reference, text_width)
            .into_iter()
            .map(|l| Span::from(l).gray())
            .collect();
        for (label, parts) in [("   gen ", generated), ("   ref ", reference)] {
            for (i, part) in parts.into_iter().enumerate() {
                let lead = if i == 0 { label } else { INDENT };
                lines.push(Line::from(vec![Span::from(lead).dark_gray(), part]));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Greedy word wrap to `width` columns; a word longer than the width is cut.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let word: String = word.chars().take(width).collect();
        let needed =
            current.chars().count() + usize::from(!current.is_empty()) + word.chars().count();
        if !current.is_empty() && needed > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

fn draw_progress(frame: &mut Frame, area: Rect, status: &TrainingStatus, framed: bool) {
    let inner = if framed {
        let block = Block::bordered().title(" Progress ".bold());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        inner
    } else {
        area
    };
    let [epoch_row, run_row] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);

    let phase_color = phase_color(&status.phase);
    let epoch_label = format!(" Epoch {}/{}", status.epoch, status.epochs);
    let epoch_gauge = format!(
        "it {}/{} · {:.0}%",
        status.iteration,
        status.iterations_per_epoch,
        100.0 * status.epoch_fraction()
    );
    gauge_row(
        frame,
        epoch_row,
        epoch_label,
        epoch_gauge,
        status.epoch_fraction(),
        phase_color,
        format_eta(status.epoch_eta),
    );
    let run_gauge = format!(
        "{:.0}% · iteration {}",
        100.0 * status.run_fraction(),
        status.global_iteration
    );
    gauge_row(
        frame,
        run_row,
        " Run".to_string(),
        run_gauge,
        status.run_fraction(),
        Color::Yellow,
        format_eta(status.eta),
    );
}

fn gauge_row(
    frame: &mut Frame,
    area: Rect,
    label: String,
    gauge_label: String,
    ratio: f64,
    color: Color,
    eta: String,
) {
    let [label_area, _, gauge_area, eta_area] = Layout::horizontal([
        Constraint::Length(14),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(16),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(Span::styled(label, LABEL_STYLE)), label_area);
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(color).bg(Color::Black))
            .use_unicode(true)
            .ratio(ratio.clamp(0.0, 1.0))
            .label(Span::from(gauge_label).bold()),
        gauge_area,
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::from(" ETA ").dark_gray(),
            Span::from(eta).italic(),
        ])),
        eta_area,
    );
}

fn key(text: &str) -> Span<'static> {
    Span::from(format!(" {text} ")).black().on_gray()
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let line = Line::from(vec![
        key("q"),
        Span::from(" stop (asks, then saves a checkpoint)  ").dark_gray(),
        key("↑↓"),
        Span::from(" loss plot: full / last epoch").dark_gray(),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// The screen for terminals too small for the panels: the key numbers as wrapped text.
fn draw_compact(frame: &mut Frame, area: Rect, status: &TrainingStatus, ui: &UiState) {
    let phase = if status.phase.is_empty() {
        "starting"
    } else {
        &status.phase
    };
    let mut lines = vec![
        Line::from(vec![
            Span::from("capsearch ").cyan().bold(),
            Span::from(status.run_name.clone()).bold(),
            Span::from(" · "),
            Span::from(phase.to_string()).fg(phase_color(phase)),
        ]),
        Line::from(format!(
            "epoch {}/{} it {}/{} · ETA {}",
            status.epoch,
            status.epochs,
            status.iteration,
            status.iterations_per_epoch,
            format_eta(status.eta)
        )),
        Line::from(format!(
            "loss {} · val {} · BLEU-4 {}",
            format_loss(status.last_train_loss()),
            format_loss(status.last_val_loss()),
            format_bleu(status.last_bleu4())
        )),
    ];
    if let Some(best) = &status.best {
        lines.push(Line::from(format!(
            "best: epoch {} · BLEU-4 {:.2}",
            best.epoch, best.bleu4
        )));
    }
    if ui.stop_requested {
        lines.push(
            Line::from("STOP REQUESTED: saving a checkpoint")
                .red()
                .bold(),
        );
    } else {
        lines.push(Line::from("q: stop · enlarge the terminal for plots").dark_gray());
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}

fn draw_stop_popup(frame: &mut Frame, area: Rect) {
    let width = 52.min(area.width);
    let height = 7.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines = vec![
        Line::from(""),
        Line::from("Stop training? A checkpoint is saved first.").bold(),
        Line::from("Resume it later with --resume.").dark_gray(),
        Line::from(""),
        Line::from(vec![
            Span::from("[y]").green().bold(),
            Span::from(" stop    "),
            Span::from("[n]").red().bold(),
            Span::from(" keep training"),
        ]),
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .block(
                Block::bordered()
                    .title(Line::from(" Stop training? ").bold().centered())
                    .border_style(Style::default().fg(Color::Yellow)),
            ),
        popup,
    );
}

// ---------------------------------------------------------------------------------------------
// Log capture: tracing lines written while the dashboard owns the screen.

/// Log lines kept while the dashboard is shown, replayed on stderr when it closes.
const MAX_CAPTURED_LINES: usize = 1000;

#[derive(Default)]
struct LogSink {
    /// True while the dashboard owns the terminal.
    capturing: bool,
    partial: Vec<u8>,
    lines: VecDeque<String>,
    dropped: usize,
}

impl LogSink {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if self.lines.len() == MAX_CAPTURED_LINES {
                self.lines.pop_front();
                self.dropped += 1;
            }
            self.lines.push_back(line);
        }
    }

    /// The last `n` lines, without terminal escape sequences, for display.
    fn recent(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|l| strip_ansi(l))
            .collect()
    }

    /// Stops capturing and returns what was captured, as it was written.
    fn release(&mut self) -> (Vec<String>, usize) {
        self.capturing = false;
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            self.push(&[]);
        }
        let dropped = std::mem::take(&mut self.dropped);
        (self.lines.drain(..).collect(), dropped)
    }
}

static LOG_SINK: Mutex<LogSink> = Mutex::new(LogSink {
    capturing: false,
    partial: Vec::new(),
    lines: VecDeque::new(),
    dropped: 0,
});

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, and two-byte `ESC x`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// A writer for `tracing_subscriber::fmt().with_writer(log_writer)`: writes to stderr, except while
/// a [`Dashboard`] owns the terminal, when lines are kept (the newest is shown on the dashboard)
/// and written to stderr when the dashboard closes, so that nothing is lost and nothing scribbles
/// over the screen.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut sink) = LOG_SINK.lock()
            && sink.capturing
        {
            sink.push(buf);
            return Ok(buf.len());
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn start_capturing_logs() {
    if let Ok(mut sink) = LOG_SINK.lock() {
        sink.capturing = true;
    }
}

fn recent_logs(n: usize) -> Vec<String> {
    LOG_SINK
        .lock()
        .map(|sink| sink.recent(n))
        .unwrap_or_default()
}

/// Stops capturing and writes the captured lines to stderr. In the panic hook the lock is only
/// tried: the panicking thread may hold it.
fn release_logs(from_panic_hook: bool) {
    let released = if from_panic_hook {
        LOG_SINK.try_lock().ok().map(|mut sink| sink.release())
    } else {
        LOG_SINK.lock().ok().map(|mut sink| sink.release())
    };
    if let Some((lines, dropped)) = released {
        let mut stderr = io::stderr().lock();
        if dropped > 0 {
            let _ = writeln!(stderr, "({dropped} earlier log lines were dropped)");
        }
        for line in lines {
            let _ = writeln!(stderr, "{line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal dashboard.

/// Redraws at most this often (10 frames per second), except after a key or a phase change.
const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// The drawing loop, generic over the backend so that tests run it on `TestBackend`.
struct Screen<B: Backend> {
    terminal: Terminal<B>,
    ui: UiState,
    last_draw: Option<Instant>,
    last_phase: String,
}

impl<B: Backend> Screen<B> {
    fn new(terminal: Terminal<B>) -> Self {
        Self {
            terminal,
            ui: UiState::default(),
            last_draw: None,
            last_phase: String::new(),
        }
    }

    /// Applies `keys`, then redraws if a key or the phase changed something, or if the last frame
    /// is older than [`MIN_FRAME_INTERVAL`]. Returns whether it drew.
    fn update(
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

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;

    fn status() -> TrainingStatus {
        TrainingStatus {
            run_name: "shapes-small".into(),
            epoch: 3,
            epochs: 20,
            iteration: 45,
            iterations_per_epoch: 120,
            global_iteration: 285,
            train_loss: (1..=57)
                .map(|i| (i as f64 * 5.0 / 120.0, 4.0 / (1.0 + i as f64 / 10.0)))
                .collect(),
            val_loss: vec![(1.0, 2.9), (2.0, 2.1)],
            val_bleu4: vec![(1.0, 8.5), (2.0, 17.25)],
            learning_rate: 1e-3,
            images_per_sec: 312.44,
            tokens_per_sec: 3120.0,
            elapsed: Duration::from_secs(252),
            eta: Some(Duration::from_secs(1390)),
            epoch_eta: Some(Duration::from_secs(62)),
            memory_bytes: Some(537_214_976),
            samples: vec![
                SampleCaption {
                    image: "val/00017.png".into(),
                    generated: "a red circle above a blue square".into(),
                    reference: "a red circle above a blue square".into(),
                },
                SampleCaption {
                    image: "val/00042.png".into(),
                    generated: "a green triangle".into(),
                    reference: "a small green triangle left of a yellow circle".into(),
                },
            ],
            best: Some(BestCheckpoint {
                epoch: 2,
                bleu4: 17.25,
                path: PathBuf::from("checkpoints/shapes-small/best"),
            }),
            phase: "training".into(),
            time_budget: Some(Duration::from_secs(600)),
        }
    }

    fn buffer_text(backend: &TestBackend) -> String {
        let buffer = backend.buffer();
        let width = buffer.area.width as usize;
        let mut out = String::new();
        for row in buffer.content.chunks(width.max(1)) {
            for cell in row {
                out.push_str(cell.symbol());
            }
            out.push('\n');
        }
        out
    }

    fn render(status: &TrainingStatus, ui: &UiState, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, status, ui)).unwrap();
        buffer_text(terminal.backend())
    }

    fn dump(text: &str) {
        if std::env::var_os("DASHBOARD_DUMP").is_some() {
            println!("{text}");
        }
    }

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn full_screen_shows_every_panel() {
        let text = render(&status(), &UiState::default(), 120, 40);
        // `DASHBOARD_DUMP=1 cargo test --lib dashboard -- --nocapture` prints the screens.
        dump(&text);
        for expected in [
            "capsearch",
            "shapes-small",
            "training",
            "elapsed 4m 12s",
            "budget 5m 48s left of 10m 00s",
            " Loss train 0.5970 · val 2.1000",
            "full history",
            "BLEU-4 (val) last 17.25 · best 17.25",
            "LR       1.00e-3",
            "Speed    312.4 img/s · 3.12k tok/s",
            "Memory   512.3 MiB",
            "Val ppl  8.17",
            "Best checkpoint",
            "epoch 2 · BLEU-4 17.25",
            "checkpoints/shapes-small/best",
            "val/00017.png  ✓ matches",
            "gen a green triangle",
            "ref a small green triangle left of a yellow circle",
            "Epoch 3/20",
            "it 45/120 · 38%",
            "ETA 1m 02s",
            "iteration 285",
            "ETA 23m 10s",
            "stop (asks, then saves a checkpoint)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            !text.contains("Stop training?"),
            "no popup before q\n{text}"
        );
        // The plots drew something (Braille dots).
        assert!(text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)));
    }

    #[test]
    fn q_opens_the_popup_and_y_confirms() {
        let mut ui = UiState::default();
        assert!(ui.handle_key(press(KeyCode::Char('q'))));
        assert!(ui.confirm_stop && !ui.stop_requested);
        let text = render(&status(), &ui, 100, 30);
        dump(&text);
        assert!(
            text.contains("Stop training? A checkpoint is saved first."),
            "{text}"
        );
        assert!(text.contains("[y] stop    [n] keep training"), "{text}");

        assert!(
            !ui.handle_key(press(KeyCode::Char('x'))),
            "other keys do nothing"
        );
        assert!(ui.confirm_stop);
        assert!(ui.handle_key(press(KeyCode::Char('y'))));
        assert!(ui.stop_requested && !ui.confirm_stop);
        let text = render(&status(), &ui, 100, 30);
        assert!(!text.contains("[y] stop"), "{text}");
        assert!(text.contains("STOP REQUESTED"), "{text}");
        // Once requested, keys change nothing.
        assert!(!ui.handle_key(press(KeyCode::Char('q'))));
        assert!(!ui.confirm_stop);
    }

    #[test]
    fn n_and_esc_cancel_and_ctrl_c_twice_confirms() {
        let mut ui = UiState::default();
        ui.handle_key(press(KeyCode::Esc));
        assert!(ui.confirm_stop);
        ui.handle_key(press(KeyCode::Char('n')));
        assert!(!ui.confirm_stop && !ui.stop_requested);

        ui.handle_key(press(KeyCode::Char('q')));
        ui.handle_key(press(KeyCode::Esc));
        assert!(!ui.confirm_stop && !ui.stop_requested);

        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        ui.handle_key(ctrl_c);
        assert!(ui.confirm_stop);
        ui.handle_key(ctrl_c);
        assert!(ui.stop_requested);
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut ui = UiState::default();
        let mut release = press(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert!(!ui.handle_key(release));
        assert!(!ui.confirm_stop);
    }

    #[test]
    fn arrows_switch_the_loss_view() {
        let mut ui = UiState::default();
        ui.handle_key(press(KeyCode::Down));
        assert_eq!(ui.loss_view, LossView::Recent);
        let text = render(&status(), &ui, 80, 24);
        dump(&text);
        assert!(text.contains("last epoch"), "{text}");
        // The recent view starts at the last epoch's points, so the x axis starts above 0.
        ui.handle_key(press(KeyCode::Up));
        assert_eq!(ui.loss_view, LossView::Full);
    }

    #[test]
    fn empty_status_draws_placeholders() {
        let text = render(&TrainingStatus::default(), &UiState::default(), 80, 24);
        dump(&text);
        assert!(
            text.contains("waiting for the first logged iteration"),
            "{text}"
        );
        assert!(text.contains("BLEU-4 appears after the first"), "{text}");
        assert!(text.contains("none yet"), "{text}");
        assert!(
            text.contains("captions of fixed validation images"),
            "{text}"
        );
        assert!(text.contains("starting"), "{text}");
    }

    #[test]
    fn single_points_and_nan_losses_do_not_break_the_plots() {
        let mut s = status();
        s.train_loss = vec![(0.1, 3.0)];
        s.val_loss = vec![(1.0, f64::NAN)];
        s.val_bleu4 = vec![(1.0, 0.0)];
        let text = render(&s, &UiState::default(), 120, 40);
        assert!(text.contains("val NaN"), "{text}");
        s.train_loss = vec![(0.1, f64::INFINITY), (0.2, f64::NAN)];
        s.val_loss.clear();
        let text = render(&s, &UiState::default(), 120, 40);
        assert!(
            text.contains("waiting for the first logged iteration"),
            "{text}"
        );
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        let mut ui = UiState {
            confirm_stop: true,
            messages: vec!["a log line".into()],
            ..UiState::default()
        };
        for status in [status(), TrainingStatus::default()] {
            for width in 0..=70 {
                for height in 0..=22 {
                    render(&status, &ui, width, height);
                }
            }
            ui.confirm_stop = false;
        }
        let text = render(&status(), &UiState::default(), 40, 10);
        dump(&text);
        assert!(text.contains("epoch 3/20 it 45/120"), "{text}");
        assert!(text.contains("best: epoch 2"), "{text}");
    }

    #[test]
    fn captions_wrap_by_words() {
        assert_eq!(
            wrap_words("a small green triangle left of a yellow circle", 20),
            vec!["a small green", "triangle left of a", "yellow circle"]
        );
        assert_eq!(wrap_words("", 10), vec![""]);
        assert_eq!(wrap_words("abcdefghijkl x", 5), vec!["abcde", "x"]);
        let mut s = status();
        s.samples[1].reference = "a small green triangle left of a yellow circle ".repeat(3);
        let text = render(&s, &UiState::default(), 80, 30);
        dump(&text);
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains("   ref a small green triangle"))
            .expect("reference shown");
        // The continuation lines start under the caption, not under the label.
        let column = lines[at]
            .split("   ref a small")
            .next()
            .map_or(0, |head| head.chars().count());
        let continued: String = lines[at + 1].chars().skip(column).collect();
        assert!(
            continued.starts_with("       ")
                && continued.trim_start().starts_with(char::is_alphabetic),
            "{text}"
        );
    }

    #[test]
    fn long_histories_are_averaged_down() {
        let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 2) as f64)).collect();
        let down = downsample(&points, 100);
        assert_eq!(down.len(), 100);
        for (_, y) in &down {
            assert!((y - 0.5).abs() < 1e-9, "alternating 0/1 averages to 0.5");
        }
        assert_eq!(downsample(&points[..50], 100).len(), 50);
        let tail = recent(&points);
        assert_eq!(tail.len(), RECENT_MIN_POINTS);
    }

    #[test]
    fn the_log_line_shows_when_there_is_one() {
        let ui = UiState {
            messages: vec!["WARN capsearch: feature cache is stale".into()],
            ..UiState::default()
        };
        let text = render(&status(), &ui, 120, 40);
        assert!(
            text.contains(" log  WARN capsearch: feature cache is stale"),
            "{text}"
        );
    }

    #[test]
    fn screen_redraws_at_most_ten_times_a_second_unless_something_changed() {
        let mut screen = Screen::new(Terminal::new(TestBackend::new(100, 30)).unwrap());
        let t0 = Instant::now();
        let s = status();
        assert!(screen.update(&s, [], false, t0).unwrap(), "first frame");
        let soon = t0 + Duration::from_millis(20);
        assert!(!screen.update(&s, [], false, soon).unwrap(), "too soon");
        assert!(
            screen
                .update(&s, [press(KeyCode::Char('q'))], false, soon)
                .unwrap(),
            "a key that opens the popup redraws at once"
        );
        assert!(buffer_text(screen.terminal.backend()).contains("Stop training?"));
        let mut validating = s.clone();
        validating.phase = "validating".into();
        assert!(
            screen.update(&validating, [], false, soon).unwrap(),
            "phase change"
        );
        assert!(
            screen
                .update(&validating, [], false, t0 + Duration::from_millis(200))
                .unwrap(),
            "interval passed"
        );
        assert!(
            screen
                .update(&validating, [press(KeyCode::Char('y'))], false, soon)
                .unwrap()
        );
        assert!(screen.ui.stop_requested);
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(
            format_duration(Duration::from_secs(2 * 86400 + 3 * 3600)),
            "2d 03h"
        );
        assert_eq!(format_bytes(812), "812 B");
        assert_eq!(format_bytes(537_214_976), "512.3 MiB");
        assert_eq!(format_bytes(1_331_439_862), "1.24 GiB");
        assert_eq!(format_rate(7.254), "7.25");
        assert_eq!(format_rate(312.44), "312.4");
        assert_eq!(format_rate(3120.0), "3.12k");
        assert_eq!(format_rate(f64::NAN), "-");
        assert_eq!(format_lr(3e-4), "3.00e-4");
    }

    #[test]
    fn summary_line_names_the_outcome_and_the_best_checkpoint() {
        let mut s = status();
        s.phase = "finished".into();
        assert_eq!(
            summary_line(&s, false),
            "run shapes-small finished: epoch 3/20 after 4m 12s · train loss 0.5970 · \
             val loss 2.1000 · BLEU-4 17.25 · best epoch 2 (BLEU-4 17.25) at \
             checkpoints/shapes-small/best"
        );
        assert!(summary_line(&s, true).starts_with("run shapes-small stopped by user: "));
        let empty = summary_line(&TrainingStatus::default(), false);
        assert!(empty.contains("no best checkpoint yet"), "{empty}");
    }

    #[test]
    fn rss_is_read_from_proc() {
        if std::path::Path::new("/proc/self/statm").exists() {
            let rss = current_rss_bytes().expect("statm parses");
            // A test binary is bigger than 1 MiB and smaller than 64 GiB.
            assert!(rss > 1 << 20 && rss < 64 << 30, "{rss}");
            assert!(page_size().is_power_of_two());
        }
    }

    #[test]
    fn log_sink_keeps_lines_and_strips_colours_for_display() {
        let mut sink = LogSink {
            capturing: true,
            ..LogSink::default()
        };
        sink.push(b"\x1b[33m WARN\x1b[0m first\nsec");
        sink.push(b"ond\n");
        assert_eq!(sink.recent(5), vec![" WARN first", "second"]);
        sink.push(b"partial");
        let (lines, dropped) = sink.release();
        assert_eq!(
            lines,
            vec!["\x1b[33m WARN\x1b[0m first", "second", "partial"]
        );
        assert_eq!(dropped, 0);
        assert!(!sink.capturing);

        let mut sink = LogSink::default();
        for i in 0..MAX_CAPTURED_LINES + 5 {
            sink.push(format!("line {i}\n").as_bytes());
        }
        let (lines, dropped) = sink.release();
        assert_eq!((lines.len(), dropped), (MAX_CAPTURED_LINES, 5));
        assert_eq!(lines[0], "line 5");
    }
}
