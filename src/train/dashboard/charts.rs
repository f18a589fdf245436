//! The loss and BLEU-4 plots: Braille line charts, a full-history view averaged down to the
//! plot's resolution and a recent view at full resolution.

use ratatui::Frame;
use ratatui::layout::Alignment;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph, Wrap};

use super::draw::{BEST_COLOR, BLEU_COLOR, TRAIN_COLOR, VALID_COLOR};
use super::keys::{LossView, RECENT_MIN_POINTS};
use crate::train::report::{TrainingStatus, format_bleu, format_loss};

/// Averages `points` down to at most `max` points (equal-count buckets), so that a long history
/// draws as a smooth line at the plot's resolution. Non-finite points are dropped first.
pub(super) fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
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
pub(super) fn recent(points: &[(f64, f64)]) -> &[(f64, f64)] {
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

pub(super) fn placeholder(frame: &mut Frame, area: Rect, text: &str) {
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

pub(super) fn draw_loss_chart(
    frame: &mut Frame,
    area: Rect,
    status: &TrainingStatus,
    view: LossView,
) {
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

pub(super) fn draw_bleu_chart(frame: &mut Frame, area: Rect, status: &TrainingStatus) {
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
