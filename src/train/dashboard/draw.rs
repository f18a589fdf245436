//! Rendering: the pure function [`draw`] from a status and the UI state to a frame.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Wrap};

use super::charts::{draw_bleu_chart, draw_loss_chart, placeholder};
use super::keys::UiState;
use crate::train::report::{
    Phase, TrainingStatus, format_bleu, format_bytes, format_duration, format_eta, format_loss,
    format_lr, format_rate,
};

/// Below this size the dashboard shows a compact text summary instead of panels.
const MIN_WIDTH: u16 = 60;
const MIN_HEIGHT: u16 = 18;

pub(super) const TRAIN_COLOR: Color = Color::LightRed;
pub(super) const VALID_COLOR: Color = Color::LightBlue;
pub(super) const BLEU_COLOR: Color = Color::LightYellow;
pub(super) const BEST_COLOR: Color = Color::LightGreen;
const LABEL_STYLE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

fn phase_color(phase: &Phase) -> Color {
    match phase {
        Phase::Training => TRAIN_COLOR,
        Phase::Validating | Phase::Decoding => VALID_COLOR,
        Phase::Saving => Color::LightCyan,
        Phase::Stopping => Color::LightMagenta,
        Phase::Starting | Phase::Ended(_) => Color::Gray,
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
    spans.push(
        Span::from(status.phase.label())
            .fg(phase_color(&status.phase))
            .bold(),
    );
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

fn stat_line(label: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {label:<9}"), LABEL_STYLE),
        Span::from(value),
    ])
}

fn draw_stats(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
    let phase = status.phase.label();
    let lines = vec![
        Line::from(vec![
            Span::styled(format!(" {:<9}", "Phase"), LABEL_STYLE),
            Span::from(phase).fg(phase_color(&status.phase)).bold(),
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
pub(super) fn wrap_words(text: &str, width: usize) -> Vec<String> {
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
    let phase = status.phase.label();
    let mut lines = vec![
        Line::from(vec![
            Span::from("capsearch ").cyan().bold(),
            Span::from(status.run_name.clone()).bold(),
            Span::from(" · "),
            Span::from(phase).fg(phase_color(&status.phase)),
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
