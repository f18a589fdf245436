//! Training curves as PNG, drawn with `plotters` from a run's `metrics.csv`.
//!
//! `metrics.csv` is read by [`crate::model::metrics`]: per-iteration rows carry the training loss,
//! per-epoch rows the validation numbers; columns may come in any order, and extra columns are
//! ignored.
//!
//! Text is drawn with a subset of DejaVu Sans embedded in the binary
//! (`assets/fonts/DejaVuSans-subset.ttf`, 22 KiB, ASCII and Latin-1), so plots look the same on
//! machines without fonts.

use std::io::Cursor;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
pub use crate::model::metrics::{
    MetricsRow, parse_metrics as parse_metrics_csv, read_metrics as read_metrics_csv,
};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// The family the embedded font is registered under; see [`register_font`].
pub const FAMILY: &str = "sans-serif";
/// Size of every plot, in pixels.
pub const PLOT_SIZE: (u32, u32) = (800, 450);

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TRAIN_RAW: RGBColor = RGBColor(166, 199, 232);
const VAL: RGBColor = RGBColor(230, 115, 0);
const GRID: RGBColor = RGBColor(232, 232, 232);
const AXIS_TEXT: RGBColor = RGBColor(60, 60, 60);

/// Registers the embedded font with plotters (once per process), so every plot (these curves,
/// `capsearch bench`'s) has text on machines without fonts.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FAMILY, style, FONT).is_err() {
                tracing::warn!("the embedded plot font could not be loaded; plots will lack text");
            }
        }
    });
}

/// A rendered plot: its file name in a report folder, a title, and PNG bytes.
#[derive(Debug, Clone)]
pub struct Curve {
    pub file_name: &'static str,
    pub title: String,
    pub png: Vec<u8>,
}

/// One series of points with a legend label.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    markers: bool,
}

/// Draws the curves that `rows` has data for: loss (train and validation), validation perplexity,
/// and validation BLEU-4. A curve without data is left out.
pub fn render_curves(rows: &[MetricsRow]) -> Result<Vec<Curve>> {
    let mut curves = Vec::new();
    if let Some(c) = loss_curve(rows)? {
        curves.push(c);
    }
    let per_epoch = |f: fn(&MetricsRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.epoch, v)))
            .collect()
    };
    let ppl = per_epoch(|r| r.val_perplexity);
    if !ppl.is_empty() {
        let png = draw(
            "perplexity.png",
            "Validation perplexity per epoch (lower is better)",
            "epoch",
            "perplexity",
            true,
            &[Series {
                label: "validation".into(),
                points: ppl,
                color: VAL,
                width: 2,
                markers: true,
            }],
        )?;
        curves.push(Curve {
            file_name: "perplexity.png",
            title: "Validation perplexity".into(),
            png,
        });
    }
    let bleu = per_epoch(|r| r.val_bleu4);
    if !bleu.is_empty() {
        // capsearch's trainer logs coco-caption BLEU-4 ×100; a file on the 0–1 scale is labelled so.
        let y_desc = if bleu.iter().any(|p| p.1 > 1.0) {
            "BLEU-4 (×100)"
        } else {
            "BLEU-4 (0–1)"
        };
        let png = draw(
            "bleu4.png",
            "Validation BLEU-4 per epoch, as logged in metrics.csv",
            "epoch",
            y_desc,
            true,
            &[Series {
                label: "validation".into(),
                points: bleu,
                color: VAL,
                width: 2,
                markers: true,
            }],
        )?;
        curves.push(Curve {
            file_name: "bleu4.png",
            title: "Validation BLEU-4".into(),
            png,
        });
    }
    Ok(curves)
}

fn loss_curve(rows: &[MetricsRow]) -> Result<Option<Curve>> {
    // x is the global iteration when the file has one; validation rows without an iteration sit
    // at the last iteration seen before them. Without iterations, x is the epoch.
    let by_iteration = rows.iter().any(|r| r.iteration.is_some());
    let is_step_row = |r: &MetricsRow| r.train_loss.is_some() && !r.is_epoch();
    let has_step_rows = rows.iter().any(is_step_row);
    let mut train = Vec::new();
    let mut val = Vec::new();
    let mut last_iteration = 0.0;
    for r in rows {
        let x = if by_iteration {
            if let Some(it) = r.iteration {
                last_iteration = it;
            }
            last_iteration
        } else {
            r.epoch
        };
        if let Some(l) = r.train_loss.filter(|l| l.is_finite()) {
            // With per-step rows present, an epoch row's train_loss (an epoch mean) is left out.
            if !has_step_rows || is_step_row(r) {
                train.push((x, l));
            }
        }
        if let Some(l) = r.val_loss.filter(|l| l.is_finite()) {
            val.push((x, l));
        }
    }
    if train.is_empty() && val.is_empty() {
        return Ok(None);
    }
    let mut series = Vec::new();
    if train.len() > 60 {
        let window = (train.len() / 40).max(2);
        series.push(Series {
            label: "train (each logged step)".into(),
            points: train.clone(),
            color: TRAIN_RAW,
            width: 1,
            markers: false,
        });
        series.push(Series {
            label: format!("train (mean of {window} steps)"),
            points: moving_average(&train, window),
            color: TRAIN,
            width: 2,
            markers: false,
        });
    } else if !train.is_empty() {
        series.push(Series {
            label: "train".into(),
            points: train,
            color: TRAIN,
            width: 2,
            markers: true,
        });
    }
    if !val.is_empty() {
        series.push(Series {
            label: "validation".into(),
            points: val,
            color: VAL,
            width: 2,
            markers: true,
        });
    }
    let x_desc = if by_iteration { "iteration" } else { "epoch" };
    let png = draw(
        "loss.png",
        "Cross-entropy loss per word",
        x_desc,
        "loss",
        !by_iteration,
        &series,
    )?;
    Ok(Some(Curve {
        file_name: "loss.png",
        title: "Loss".into(),
        png,
    }))
}

/// Trailing moving average (the first points average what is available).
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= window {
            sum -= points[i - window].1;
        }
        out.push((x, sum / (i + 1).min(window) as f64));
    }
    out
}

/// A range that contains every value, padded, and never empty.
fn padded_range(values: impl Iterator<Item = f64>, pad_frac: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * pad_frac
    } else {
        (hi.abs() * 0.1).max(0.5)
    };
    (lo - pad, hi + pad)
}

fn plot_error(file: &str, e: impl std::fmt::Display) -> Error {
    Error::Report {
        path: file.into(),
        message: format!("drawing the plot failed: {e}"),
    }
}

/// Draws series into a PNG.
fn draw(
    file: &str,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    integer_x: bool,
    series: &[Series],
) -> Result<Vec<u8>> {
    register_font();
    let (w, h) = PLOT_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(file, e))?;
        let (x0, x1) = padded_range(
            series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
            0.03,
        );
        let (y0, y1) = padded_range(
            series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
            0.08,
        );
        let (x0, x1) = if integer_x {
            (
                (x0 - 0.25).floor().max(x0 - 0.5),
                (x1 + 0.25).ceil().min(x1 + 0.5),
            )
        } else {
            (x0, x1)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FAMILY, 22).into_font().color(&BLACK))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_error(file, e))?;
        let x_fmt = |x: &f64| -> String {
            if integer_x {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            } else {
                format_tick(*x)
            }
        };
        let y_fmt = |y: &f64| format_tick(*y);
        let n_x_labels = if integer_x {
            ((x1 - x0).round() as usize + 1).clamp(2, 12)
        } else {
            8
        };
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(n_x_labels)
            .y_labels(8)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FAMILY, 15).into_font().color(&AXIS_TEXT))
            .axis_desc_style((FAMILY, 16).into_font().color(&AXIS_TEXT))
            .draw()
            .map_err(|e| plot_error(file, e))?;
        for s in series {
            let color = s.color;
            let style = color.stroke_width(s.width);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(|e| plot_error(file, e))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
            if s.markers && s.points.len() <= 200 {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| plot_error(file, e))?;
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FAMILY, 15).into_font().color(&BLACK))
                .draw()
                .map_err(|e| plot_error(file, e))?;
        }
        root.present().map_err(|e| plot_error(file, e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| plot_error(file, "pixel buffer has the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| plot_error(file, e))?;
    Ok(png)
}

/// Short tick labels: no trailing zeros, at most 4 significant decimals.
fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CSV: &str = "epoch,iteration,train_loss,val_loss,val_perplexity,val_bleu4,lr,images_per_sec,elapsed_s\n\
        1,1,5.0,,,,0.001,100,1\n\
        1,2,4.5,,,,0.001,100,2\n\
        1,2,4.7,4.6,99.5,0.05,,,\n\
        2,3,4.0,,,,0.001,100,3\n\
        2,4,3.5,,,,0.001,100,4\n\
        2,4,3.8,3.9,49.4,0.11,,,\n";

    #[test]
    fn parses_rows_with_empty_cells() {
        let rows = parse_metrics_csv(CSV.as_bytes(), Path::new("metrics.csv")).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].train_loss, Some(5.0));
        assert_eq!(rows[0].val_loss, None);
        assert_eq!(rows[2].val_perplexity, Some(99.5));
        assert_eq!(rows[5].val_bleu4, Some(0.11));
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let err = parse_metrics_csv("epoch,train_loss\n1,abc\n".as_bytes(), Path::new("m.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("train_loss"),
            "{err}"
        );
        let err = parse_metrics_csv("iteration\n1\n".as_bytes(), Path::new("m.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch"), "{err}");
    }

    #[test]
    fn renders_pngs_for_available_curves() {
        let rows = parse_metrics_csv(CSV.as_bytes(), Path::new("metrics.csv")).unwrap();
        let curves = render_curves(&rows).unwrap();
        let names: Vec<_> = curves.iter().map(|c| c.file_name).collect();
        assert_eq!(names, ["loss.png", "perplexity.png", "bleu4.png"]);
        for c in &curves {
            let img = image::load_from_memory(&c.png).unwrap();
            assert_eq!((img.width(), img.height()), PLOT_SIZE);
        }
        // Only training loss: one curve.
        let rows = vec![MetricsRow {
            epoch: 1.0,
            train_loss: Some(2.0),
            ..Default::default()
        }];
        assert_eq!(render_curves(&rows).unwrap().len(), 1);
        assert!(render_curves(&[]).unwrap().is_empty());
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(format_tick(2.50), "2.5");
        assert_eq!(format_tick(12.0), "12");
        assert_eq!(format_tick(0.125), "0.125");
        assert_eq!(format_tick(1500.0), "1500");
    }
}
