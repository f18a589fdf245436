//! Throughput-against-batch-size plots, drawn like the evaluation plots (plotters, the embedded
//! DejaVu Sans subset, so the PNG has text on machines without fonts).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::eval::plot::{FAMILY, register_font};

const SIZE: (u32, u32) = (800, 450);
const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 115, 0),
    RGBColor(44, 160, 44),
];

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Report {
        path: path.to_path_buf(),
        message: format!("drawing the plot failed: {e}"),
    }
}

/// Draws one line per series of (batch size, value) points on a log2 batch axis and writes a PNG.
pub fn draw_sweep(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    register_font();
    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        let xs = || {
            series
                .iter()
                .flat_map(|s| s.1.iter().map(|p| p.0.max(1.0).log2()))
        };
        let x0 = xs().fold(f64::INFINITY, f64::min);
        let x1 = xs().fold(f64::NEG_INFINITY, f64::max);
        let (x0, x1) = if x0.is_finite() && x1 > x0 {
            (x0 - 0.25, x1 + 0.25)
        } else {
            (-0.5, 0.5)
        };
        let y1 = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.12;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 22).into_font().color(&BLACK))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| plot_error(path, e))?;
        let x_fmt = |x: &f64| {
            let r = x.round();
            if (x - r).abs() < 1e-6 && r >= 0.0 {
                format!("{}", 2u64.pow(r as u32))
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(232, 232, 232))
            .x_labels(((x1 - x0).ceil() as usize * 2 + 1).clamp(2, 24))
            .x_label_formatter(&x_fmt)
            .x_desc("batch size (log scale)")
            .y_desc(y_desc)
            .label_style((FAMILY, 15).into_font().color(&RGBColor(60, 60, 60)))
            .axis_desc_style((FAMILY, 16).into_font().color(&RGBColor(60, 60, 60)))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.0.max(1.0).log2(), p.1)).collect();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| plot_error(path, e))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| plot_error(path, e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FAMILY, 15).into_font().color(&BLACK))
            .draw()
            .map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| plot_error(path, "pixel buffer has the wrong size"))?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| plot_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.png");
        draw_sweep(
            &path,
            "Training throughput",
            "images/s",
            &[(
                "capsearch".into(),
                vec![(8.0, 10.0), (16.0, 18.0), (64.0, 30.0)],
            )],
        )
        .unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), SIZE);
    }
}
