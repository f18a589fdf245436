//! The assets of `dataset scenes`: the committed lists (`stamps.tsv`, `kinds.tsv`,
//! `settings.tsv` in `datasets/scenes/`) and the fetched pictures they name (under
//! `datasets/assets/`, written by `datasets/fetch-scenes.sh`), decoded once and scaled down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{RgbImage, RgbaImage, imageops};

use crate::data::image::{ImageLimits, decode};
use crate::error::{Error, Result};

/// Names of the list files in the lists folder.
pub const STAMPS_LIST: &str = "stamps.tsv";
pub const KINDS_LIST: &str = "kinds.tsv";
pub const SETTINGS_LIST: &str = "settings.tsv";
/// The package the stamps come from, and where the stamps lie inside it.
pub const STAMPS_PACKAGE: &str = "tuxpaint-stamps-default";
pub const STAMPS_SUBDIR: &str = "usr/share/tuxpaint/stamps";
/// What to run when assets are missing.
pub const FETCH_HINT: &str = "run datasets/fetch-scenes.sh (it needs apt-get and dpkg-deb), or give the folders with --stamps and --settings";

/// How a kind of thing is named.
#[derive(Debug, Clone, PartialEq)]
pub struct KindInfo {
    pub kind: String,
    /// Singular and plural names, without article ("pair of cherries", "pairs of cherries").
    pub singular: String,
    pub plural: String,
    /// A wider name a caption may use instead ("bird", "birds"), when there is one.
    pub category: Option<(String, String)>,
}

/// One photographic stamp, decoded: RGBA, trimmed to its visible pixels.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Path under the stamps folder (the label's `stamp`).
    pub path: String,
    /// Index into [`Assets::kinds`].
    pub kind: usize,
    /// Singular noun phrase with its article ("a granny smith apple").
    pub phrase: String,
    /// Kept out of training images (the held-out exemplar of its kind).
    pub unseen: bool,
    pub image: RgbaImage,
}

/// One setting photograph, decoded and scaled so that its shorter side is about twice the output size.
#[derive(Debug, Clone)]
pub struct Setting {
    /// `package/path`, the label's `setting_photo`.
    pub photo: String,
    /// The label ("meadow").
    pub setting: String,
    /// Ways to say it, with their preposition ("in a meadow").
    pub phrases: Vec<String>,
    pub image: RgbImage,
}

/// Everything a scene is drawn from.
#[derive(Debug, Clone)]
pub struct Assets {
    pub kinds: Vec<KindInfo>,
    pub stamps: Vec<Stamp>,
    pub settings: Vec<Setting>,
}

/// Where the lists and pictures are.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetPaths {
    /// Folder with `stamps.tsv`, `kinds.tsv`, `settings.tsv`.
    pub lists: PathBuf,
    /// Folder the stamp paths are relative to (`.../usr/share/tuxpaint/stamps`).
    pub stamps: PathBuf,
    /// Folder holding one folder per wallpaper package (`<package>/<path>`).
    pub settings: PathBuf,
}

impl AssetPaths {
    /// The layout `fetch-scenes.sh` writes: `assets/<package>/...`.
    pub fn fetched(lists: impl Into<PathBuf>, assets: &Path) -> Self {
        AssetPaths {
            lists: lists.into(),
            stamps: assets.join(STAMPS_PACKAGE).join(STAMPS_SUBDIR),
            settings: assets.to_path_buf(),
        }
    }
}

/// Rows of a tab-separated list: comments (`#`) and blank lines skipped, the header row checked.
fn read_rows(path: &Path, header: &str, columns: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    let mut seen_header = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_header {
            if line.split('\t').next() != Some(header) {
                return Err(Error::parse(
                    path,
                    Some(format!("line {line_no}")),
                    format!("expected the header row starting with {header:?}"),
                ));
            }
            seen_header = true;
            continue;
        }
        let mut cells: Vec<String> = line.split('\t').map(|c| c.trim().to_string()).collect();
        if cells.len() > columns || cells.len() < 2 || cells[0].is_empty() {
            return Err(Error::parse(
                path,
                Some(format!("line {line_no}")),
                format!(
                    "expected {columns} tab-separated columns, found {}",
                    cells.len()
                ),
            ));
        }
        cells.resize(columns, String::new());
        rows.push((line_no, cells));
    }
    Ok(rows)
}

/// The English description of a stamp: the first line of its `.txt` that is not a translation
/// (`xx.utf8=...`), as a noun phrase ("A “Fuji” apple." → "a fuji apple"), or `None` when that is
/// not a plain noun phrase (a sentence, a name).
pub fn description_phrase(txt: &str) -> Option<String> {
    let line = txt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains(".utf8="))?;
    let cleaned: String = line
        .trim_end_matches(['.', '!'])
        .chars()
        .filter(|c| !matches!(c, '“' | '”' | '"'))
        .map(|c| if c == '’' { '\'' } else { c })
        .collect::<String>()
        .to_lowercase();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let plain = words.len() >= 2
        && words.len() <= 6
        && matches!(words[0], "a" | "an")
        && cleaned
            .chars()
            .all(|c| c.is_ascii_lowercase() || matches!(c, ' ' | '-' | '\''));
    plain.then(|| words.join(" "))
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "a frog", "an apple".
pub fn with_article(noun: &str) -> String {
    format!("{} {noun}", article(noun))
}

fn read_kinds(path: &Path) -> Result<Vec<KindInfo>> {
    read_rows(path, "kind", 5)?
        .into_iter()
        .map(|(line, c)| {
            if c[1].is_empty() || c[2].is_empty() {
                return Err(Error::parse(
                    path,
                    Some(format!("line {line}")),
                    "a kind needs its singular and plural names",
                ));
            }
            let category = (!c[3].is_empty()).then(|| (c[3].clone(), c[4].clone()));
            Ok(KindInfo {
                kind: c[0].clone(),
                singular: c[1].clone(),
                plural: c[2].clone(),
                category,
            })
        })
        .collect()
}

/// Decodes a stamp: RGBA, trimmed to the pixels with alpha, longest side at most `max_side`.
fn load_stamp(path: &Path, max_side: u32) -> Result<Option<RgbaImage>> {
    let img = decode(path, &ImageLimits::default())?.to_rgba8();
    let (w, h) = img.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[3] > 0 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    if x1 <= x0 || y1 <= y0 {
        return Ok(None);
    }
    let trimmed = imageops::crop_imm(&img, x0, y0, x1 - x0, y1 - y0).to_image();
    let (tw, th) = trimmed.dimensions();
    let longest = tw.max(th);
    if longest <= max_side {
        return Ok(Some(trimmed));
    }
    let scale = max_side as f32 / longest as f32;
    let nw = ((tw as f32 * scale).round() as u32).max(1);
    let nh = ((th as f32 * scale).round() as u32).max(1);
    Ok(Some(imageops::resize(
        &trimmed,
        nw,
        nh,
        imageops::FilterType::Triangle,
    )))
}

/// Loads the lists and decodes every picture they name, for output images of side `size`.
/// Errors (exit 2 at the CLI): a missing list or asset folder (naming the fetch script), no
/// listed stamp present, a picture that does not decode.
pub fn load(paths: &AssetPaths, size: u32, threads: usize) -> Result<Assets> {
    let list = |name: &str| paths.lists.join(name);
    for name in [STAMPS_LIST, KINDS_LIST, SETTINGS_LIST] {
        if !list(name).is_file() {
            return Err(Error::Dataset {
                path: list(name),
                message: format!(
                    "the scenes list {name} is missing from {}; give the folder holding stamps.tsv, kinds.tsv and settings.tsv with --lists (the repository's is datasets/scenes)",
                    paths.lists.display()
                ),
            });
        }
    }
    for (dir, what) in [(&paths.stamps, "stamps"), (&paths.settings, "settings")] {
        if !dir.is_dir() {
            return Err(Error::Dataset {
                path: dir.clone(),
                message: format!("the {what} folder does not exist; {FETCH_HINT}"),
            });
        }
    }
    let kinds = read_kinds(&list(KINDS_LIST))?;
    let kind_index: HashMap<&str, usize> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (k.kind.as_str(), i))
        .collect();

    // Stamps: the listed ones that are present.
    let stamps_list = list(STAMPS_LIST);
    let mut wanted = Vec::new();
    for (line, c) in read_rows(&stamps_list, "stamp", 3)? {
        let Some(&kind) = kind_index.get(c[1].as_str()) else {
            return Err(Error::parse(
                &stamps_list,
                Some(format!("line {line}")),
                format!("kind {:?} is not in {KINDS_LIST}", c[1]),
            ));
        };
        wanted.push((c[0].clone(), kind, c[2].clone()));
    }
    let present: Vec<(String, usize, String)> = wanted
        .iter()
        .filter(|(p, _, _)| paths.stamps.join(p).is_file())
        .cloned()
        .collect();
    if present.is_empty() {
        return Err(Error::Dataset {
            path: paths.stamps.clone(),
            message: format!(
                "none of the {} photographic stamps listed in {} is in this folder (no photographs to compose); {FETCH_HINT}",
                wanted.len(),
                stamps_list.display()
            ),
        });
    }
    if present.len() < wanted.len() {
        tracing::warn!(
            missing = wanted.len() - present.len(),
            "some listed stamps are not in {}; using the {} present",
            paths.stamps.display(),
            present.len()
        );
    }
    let max_side = size.saturating_mul(2).max(32);
    let decoded = crate::data::parallel::map_parallel(&present, threads, None, |(p, _, _)| {
        let file = paths.stamps.join(p);
        let txt = std::fs::read_to_string(file.with_extension("txt")).unwrap_or_default();
        load_stamp(&file, max_side).map(|img| (img, description_phrase(&txt)))
    });
    let mut stamps = Vec::with_capacity(present.len());
    for ((path, kind, caption), result) in present.into_iter().zip(decoded) {
        let (image, description) = result?;
        let Some(image) = image else {
            tracing::warn!(stamp = %path, "stamp has no visible pixels; left out");
            continue;
        };
        let phrase = if !caption.is_empty() {
            caption
        } else {
            description.unwrap_or_else(|| with_article(&kinds[kind].singular))
        };
        stamps.push(Stamp {
            path,
            kind,
            phrase,
            unseen: false,
            image,
        });
    }
    // The last stamp of each kind with two or more is held out of training.
    let mut last_of_kind: HashMap<usize, (usize, usize)> = HashMap::new();
    for (i, s) in stamps.iter().enumerate() {
        let e = last_of_kind.entry(s.kind).or_insert((0, i));
        e.0 += 1;
        e.1 = i;
    }
    for (count, last) in last_of_kind.into_values() {
        if count >= 2 {
            stamps[last].unseen = true;
        }
    }

    // Settings: every listed one must be present and decode.
    let settings_list = list(SETTINGS_LIST);
    let rows = read_rows(&settings_list, "package", 4)?;
    if rows.is_empty() {
        return Err(Error::parse(
            &settings_list,
            None,
            "lists no setting photos",
        ));
    }
    let min_side = size.saturating_mul(2);
    let decoded = crate::data::parallel::map_parallel(&rows, threads, None, |(line, c)| {
        let file = paths.settings.join(&c[0]).join(&c[1]);
        if !file.is_file() {
            return Err(Error::Dataset {
                path: file,
                message: format!(
                    "setting photo listed at {}:{line} is missing; {FETCH_HINT}",
                    settings_list.display()
                ),
            });
        }
        let img = decode(&file, &ImageLimits::default())?.to_rgb8();
        let (w, h) = img.dimensions();
        let short = w.min(h);
        if short <= min_side {
            return Ok(img);
        }
        let scale = min_side as f32 / short as f32;
        Ok(imageops::resize(
            &img,
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
            imageops::FilterType::Triangle,
        ))
    });
    let mut settings = Vec::with_capacity(rows.len());
    for ((line, c), image) in rows.into_iter().zip(decoded) {
        let phrases: Vec<String> = c[3]
            .split('|')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if c[2].is_empty() || phrases.is_empty() {
            return Err(Error::parse(
                &settings_list,
                Some(format!("line {line}")),
                "a setting needs its label and at least one phrase",
            ));
        }
        settings.push(Setting {
            photo: format!("{}/{}", c[0], c[1]),
            setting: c[2].clone(),
            phrases,
            image: image?,
        });
    }
    Ok(Assets {
        kinds,
        stamps,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_become_noun_phrases_or_nothing() {
        let txt = "A “Fuji” apple.\nfr.utf8=Une pomme.\n";
        assert_eq!(description_phrase(txt).as_deref(), Some("a fuji apple"));
        assert_eq!(description_phrase("A frog.").as_deref(), Some("a frog"));
        assert_eq!(description_phrase("Eat your broccoli!"), None);
        assert_eq!(description_phrase("Hibiscus"), None);
        assert_eq!(
            description_phrase("A US 5 cent piece ($.05) called a nickel."),
            None
        );
        assert_eq!(description_phrase(""), None);
        assert_eq!(with_article("owl"), "an owl");
    }
}
