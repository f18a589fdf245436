//! Tiny stand-in assets for tests and demos: a few RGBA "stamps" (discs, bars, rings with
//! transparent surroundings) and two setting JPEGs, with their lists, in the layout
//! `datasets/fetch-scenes.sh` produces. CI needs no Debian packages this way.

use std::path::{Path, PathBuf};

use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

use super::assets::{AssetPaths, STAMPS_PACKAGE, STAMPS_SUBDIR};
use crate::error::{Error, Result};

/// Package folder of the fixture setting photos.
pub const SETTINGS_PACKAGE: &str = "fixture-wallpapers";

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// A stamp: `shape` 0 = disc, 1 = bar, 2 = ring; transparent outside.
fn stamp(shape: u8, color: [u8; 3]) -> RgbaImage {
    let (w, h) = if shape == 1 { (30, 12) } else { (24, 24) };
    RgbaImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - 11.5, y as f32 - 11.5);
        let r = (dx * dx + dy * dy).sqrt();
        let inside = match shape {
            0 => r < 10.0,
            1 => (2..28).contains(&x) && (2..10).contains(&y),
            _ => (6.0..10.0).contains(&r),
        };
        if inside {
            Rgba([color[0], color[1], color[2], 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

fn png(img: &RgbaImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|e| Error::Invalid(format!("encoding a fixture stamp: {e}")))?;
    Ok(out)
}

fn jpeg(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Invalid(format!("encoding a fixture setting: {e}")))?;
    Ok(out)
}

/// One fixture stamp: path, kind, caption override, shape, colour, `.txt` description.
pub type FixtureStamp = (
    &'static str,
    &'static str,
    &'static str,
    u8,
    [u8; 3],
    &'static str,
);

/// The fixture's stamps.
pub const STAMPS: [FixtureStamp; 5] = [
    (
        "round/red_disc.png",
        "disc",
        "",
        0,
        [220, 30, 30],
        "A red disc.",
    ),
    (
        "round/blue_disc.png",
        "disc",
        "a blue disc",
        0,
        [30, 60, 230],
        "Blue!",
    ),
    (
        "long/bar.png",
        "bar",
        "",
        1,
        [240, 220, 40],
        "A yellow bar.",
    ),
    (
        "round/green_ring.png",
        "ring",
        "",
        2,
        [30, 200, 60],
        "A green ring.",
    ),
    (
        "round/white_ring.png",
        "ring",
        "",
        2,
        [250, 250, 250],
        "A white ring.",
    ),
];

/// Writes the fixture into `dir` (`dir/lists/*.tsv`, `dir/assets/...`) and returns its paths.
pub fn write_fixture(dir: &Path) -> Result<AssetPaths> {
    let lists = dir.join("lists");
    let assets = dir.join("assets");
    let paths = AssetPaths::fetched(&lists, &assets);
    let mut stamps_tsv = String::from("# fixture stamps\nstamp\tkind\tcaption\n");
    for (path, kind, caption, shape, color, description) in STAMPS {
        let file = paths.stamps.join(path);
        write(&file, &png(&stamp(shape, color))?)?;
        write(
            &file.with_extension("txt"),
            format!("{description}\nfr.utf8=Une chose.\n").as_bytes(),
        )?;
        stamps_tsv.push_str(&format!("{path}\t{kind}\t{caption}\n"));
    }
    write(
        &lists.join(super::assets::STAMPS_LIST),
        stamps_tsv.as_bytes(),
    )?;
    write(
        &lists.join(super::assets::KINDS_LIST),
        b"kind\tsingular\tplural\tcategory\tcategories\ndisc\tdisc\tdiscs\tshape\tshapes\nbar\tbar\tbars\t\t\nring\tring\trings\tshape\tshapes\n",
    )?;
    let mut settings_tsv = String::from("package\tpath\tsetting\tphrases\n");
    for (name, setting, phrases, base) in [
        (
            "meadow.jpg",
            "meadow",
            "in a meadow|on the grass",
            [60u8, 150, 60],
        ),
        ("beach.jpg", "beach", "on a beach", [220, 200, 150]),
    ] {
        let img = RgbImage::from_fn(96, 64, |x, y| {
            Rgb([0, 1, 2].map(|c| base[c].saturating_add(((x + 2 * y) % 24) as u8)))
        });
        write(&assets.join(SETTINGS_PACKAGE).join(name), &jpeg(&img)?)?;
        settings_tsv.push_str(&format!(
            "{SETTINGS_PACKAGE}\t{name}\t{setting}\t{phrases}\n"
        ));
    }
    write(
        &lists.join(super::assets::SETTINGS_LIST),
        settings_tsv.as_bytes(),
    )?;
    Ok(paths)
}

/// Where the fixture's stamps folder is under `dir` (for tests that break it).
pub fn stamps_dir(dir: &Path) -> PathBuf {
    dir.join("assets").join(STAMPS_PACKAGE).join(STAMPS_SUBDIR)
}
