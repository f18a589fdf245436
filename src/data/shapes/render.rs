//! Drawing a scene: background pattern, shapes, colour jitter and pixel noise.

use image::{Rgb, RgbImage};
use rand::{Rng, RngExt};

use super::scene::{Background, Kind, Pattern, Scene, Size};
use crate::data::labels::{LabelledObject, Labels, SizeClass};

fn inside(kind: Kind, u: f32, v: f32) -> bool {
    // (u, v) relative to the centre in units of the radius, v pointing down.
    match kind {
        Kind::Circle => u * u + v * v <= 1.0,
        Kind::Square => u.abs() <= 0.85 && v.abs() <= 0.85,
        Kind::Diamond => u.abs() + v.abs() <= 1.05,
        Kind::Triangle => (-1.0..=0.85).contains(&v) && u.abs() <= (v + 1.0) * 0.55,
        Kind::Cross => (u.abs() <= 0.32 && v.abs() <= 1.0) || (v.abs() <= 0.32 && u.abs() <= 1.0),
    }
}

/// The extent of what [`inside`] covers, `[u_min, v_min, u_max, v_max]` in units of the radius,
/// cut to the square `render` draws in (±1).
fn extent(kind: Kind) -> [f32; 4] {
    match kind {
        Kind::Square => [-0.85, -0.85, 0.85, 0.85],
        Kind::Triangle => [-1.0, -1.0, 1.0, 0.85],
        Kind::Circle | Kind::Diamond | Kind::Cross => [-1.0, -1.0, 1.0, 1.0],
    }
}

/// The scene's labels: each shape's kind, colour, size, grid cell, and its box (tight around the
/// drawn shape, in fractions of the side, three decimals rounded outwards).
pub fn labels(scene: &Scene) -> Labels {
    Labels {
        setting: None,
        setting_photo: None,
        objects: scene
            .shapes
            .iter()
            .map(|s| {
                let [u0, v0, u1, v1] = extent(s.kind);
                let down = |f: f32| ((f * 1000.0).floor() / 1000.0).clamp(0.0, 1.0);
                let up = |f: f32| ((f * 1000.0).ceil() / 1000.0).clamp(0.0, 1.0);
                LabelledObject {
                    kind: s.kind.name().to_string(),
                    stamp: None,
                    color: Some(s.color.names()[0].to_string()),
                    bbox: [
                        down(s.x + u0 * s.radius),
                        down(s.y + v0 * s.radius),
                        up(s.x + u1 * s.radius),
                        up(s.y + v1 * s.radius),
                    ],
                    size: match s.size {
                        Size::Small => SizeClass::Small,
                        Size::Large => SizeClass::Large,
                    },
                    unseen: false,
                    cell: Some([s.cell.0, s.cell.1]),
                }
            })
            .collect(),
    }
}

fn background_pixel(bg: &Background, fx: f32, fy: f32) -> [f32; 3] {
    let base = bg.base.map(f32::from);
    let second = bg.second.map(f32::from);
    let t = match bg.direction {
        0 => fx,
        1 => fy,
        _ => (fx + fy) * 0.5,
    };
    let mix = match bg.pattern {
        Pattern::Plain => 0.0,
        Pattern::Gradient => t,
        Pattern::Stripes => {
            if ((t / bg.period) as i32) % 2 == 0 {
                0.0
            } else {
                1.0
            }
        }
        Pattern::Checks => {
            let cx = (fx / bg.period) as i32;
            let cy = (fy / bg.period) as i32;
            if (cx + cy) % 2 == 0 { 0.0 } else { 1.0 }
        }
    };
    std::array::from_fn(|c| base[c] + (second[c] - base[c]) * mix)
}

/// Draws a scene at `size`×`size` pixels, with 4× supersampled shape edges and pixel noise drawn
/// from `rng`.
pub fn render<R: Rng + ?Sized>(scene: &Scene, size: u32, rng: &mut R) -> RgbImage {
    let n = size.max(1);
    let side = n as f32;
    let mut buf: Vec<[f32; 3]> = Vec::with_capacity((n * n) as usize);
    for y in 0..n {
        for x in 0..n {
            buf.push(background_pixel(
                &scene.background,
                (x as f32 + 0.5) / side,
                (y as f32 + 0.5) / side,
            ));
        }
    }
    const SUB: [f32; 2] = [0.25, 0.75];
    for s in &scene.shapes {
        let rgb = s.rgb.map(f32::from);
        let x0 = (((s.x - s.radius) * side).floor().max(0.0)) as u32;
        let x1 = (((s.x + s.radius) * side).ceil() as u32).min(n);
        let y0 = (((s.y - s.radius) * side).floor().max(0.0)) as u32;
        let y1 = (((s.y + s.radius) * side).ceil() as u32).min(n);
        let r = s.radius * side;
        for py in y0..y1 {
            for px in x0..x1 {
                let mut hits = 0u32;
                for sy in SUB {
                    for sx in SUB {
                        let u = (px as f32 + sx - s.x * side) / r;
                        let v = (py as f32 + sy - s.y * side) / r;
                        if inside(s.kind, u, v) {
                            hits += 1;
                        }
                    }
                }
                if hits > 0 {
                    let a = hits as f32 / 4.0;
                    let p = &mut buf[(py * n + px) as usize];
                    for (pc, rc) in p.iter_mut().zip(rgb) {
                        *pc = *pc * (1.0 - a) + rc * a;
                    }
                }
            }
        }
    }
    let amp = f32::from(scene.noise);
    let mut img = RgbImage::new(n, n);
    for (pixel, value) in img.pixels_mut().zip(buf) {
        let noise: f32 = rng.random_range(-1.0f32..1.0) * amp;
        *pixel = Rgb(value
            .map(|v| (v + noise + rng.random_range(-0.5f32..0.5) * amp).clamp(0.0, 255.0) as u8));
    }
    img
}
