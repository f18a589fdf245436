//! Format detection from a path and its content.
//!
//! A file is recognised by its content first (JSON keys, the token file's `image#n<TAB>` lines)
//! and its name second (`dataset_*.json`, `captions_*.json`, `custom_dataset.json`,
//! `*.token.txt`, `*.csv`). A folder is recognised by the dataset file it holds, or, failing
//! that, by images with sidecar `.txt` caption files.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::Format;
use crate::data::image_files::is_image_name;
use crate::error::{Error, Result};

/// A detected format and the file (or folder, for [`Format::Folder`]) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub format: Format,
    pub file: PathBuf,
}

/// The Flickr8k token file's distributed name.
pub const FLICKR8K_TOKEN_FILE: &str = "Flickr8k.token.txt";
/// The original project's custom dataset file name.
pub const CUSTOM_FILE: &str = "custom_dataset.json";

const EXPECTED: &str = "expected Flickr8k.token.txt, a Karpathy dataset_*.json, a COCO captions_*.json, \
    custom_dataset.json, a .csv file, or a folder of images with .txt caption files; \
    pass --format to say which";

/// Detects the format of a dataset file or folder.
pub fn detect(path: &Path) -> Result<Detected> {
    if path.is_dir() {
        detect_dir(path)
    } else {
        detect_file(path)
    }
}

/// Finds the file to read for a format given on the command line: the path itself when it is a
/// file, or the format's file inside a folder.
pub fn resolve(format: Format, path: &Path) -> Result<PathBuf> {
    if format == Format::Folder {
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        return Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            message: "the folder format needs a folder of images with .txt caption files".into(),
        });
    }
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let names = file_names(path)?;
    let matching: Vec<&String> = names
        .iter()
        .filter(|n| name_suggests(n) == Some(format))
        .collect();
    match matching.as_slice() {
        [one] => Ok(path.join(one)),
        [] => Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            message: format!(
                "no {format} file in this folder ({}); give the file itself",
                expected_name(format)
            ),
        }),
        many => Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            message: format!(
                "several {format} files in this folder ({}); give the one to read",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn expected_name(format: Format) -> &'static str {
    match format {
        Format::Flickr8k => FLICKR8K_TOKEN_FILE,
        Format::Karpathy => "dataset_*.json",
        Format::Coco => "captions_*.json",
        Format::Custom => CUSTOM_FILE,
        Format::Csv => "*.csv",
        Format::Folder => "images with .txt files",
    }
}

/// The format a file name suggests, if any.
fn name_suggests(name: &str) -> Option<Format> {
    let lower = name.to_ascii_lowercase();
    if lower == FLICKR8K_TOKEN_FILE.to_ascii_lowercase() {
        Some(Format::Flickr8k)
    } else if lower == CUSTOM_FILE {
        Some(Format::Custom)
    } else if lower.starts_with("dataset_") && lower.ends_with(".json") {
        Some(Format::Karpathy)
    } else if lower.starts_with("captions_") && lower.ends_with(".json") {
        Some(Format::Coco)
    } else if lower.ends_with(".csv") {
        Some(Format::Csv)
    } else if lower.ends_with(".token.txt") && !lower.contains("lemma") {
        Some(Format::Flickr8k)
    } else {
        None
    }
}

fn file_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn detect_dir(dir: &Path) -> Result<Detected> {
    let names = file_names(dir)?;
    // In order of how specific the name is.
    for format in [
        Format::Flickr8k,
        Format::Custom,
        Format::Karpathy,
        Format::Coco,
        Format::Csv,
    ] {
        let matching: Vec<&String> = names
            .iter()
            .filter(|n| name_suggests(n) == Some(format))
            .collect();
        match matching.as_slice() {
            [] => continue,
            [one] => {
                return Ok(Detected {
                    format,
                    file: dir.join(one),
                });
            }
            many => {
                return Err(Error::UnknownFormat {
                    path: dir.to_path_buf(),
                    message: format!(
                        "several {format} files in this folder ({}); give the one to read",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    if has_sidecar_pair(dir) {
        return Ok(Detected {
            format: Format::Folder,
            file: dir.to_path_buf(),
        });
    }
    Err(Error::UnknownFormat {
        path: dir.to_path_buf(),
        message: format!("found no dataset in this folder: {EXPECTED}"),
    })
}

/// True when some image within two levels has a sidecar `.txt` file.
fn has_sidecar_pair(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .max_depth(3)
        .into_iter()
        .filter_map(|e| e.ok())
        .any(|e| {
            let p = e.path();
            is_image_name(p) && p.with_extension("txt").is_file()
        })
}

fn read_prefix(path: &Path, n: u64) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    file.take(n)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn has_key(text: &str, key: &str) -> bool {
    text.contains(&format!("\"{key}\"")) || text.contains(&format!("'{key}'"))
}

fn detect_file(file: &Path) -> Result<Detected> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let by_name = name_suggests(&name);
    let lower = name.to_ascii_lowercase();
    let found = |format| {
        Ok(Detected {
            format,
            file: file.to_path_buf(),
        })
    };
    if lower.ends_with(".json") {
        let head = read_prefix(file, 1 << 20)?;
        if has_key(&head, "imgurl") {
            return found(Format::Custom);
        }
        if has_key(&head, "file_name") || has_key(&head, "annotations") {
            return found(Format::Coco);
        }
        if has_key(&head, "sentences") || has_key(&head, "filename") {
            return found(Format::Karpathy);
        }
        if let Some(f) = by_name {
            return found(f);
        }
        return Err(Error::UnknownFormat {
            path: file.to_path_buf(),
            message: "cannot tell which JSON dataset this is: expected Karpathy \
                      (images[].filename + sentences), COCO (images[].file_name + annotations[]) \
                      or custom (images[].imgurl + description); pass --format"
                .into(),
        });
    }
    if lower.ends_with(".csv") {
        return found(Format::Csv);
    }
    if lower.ends_with(".txt") {
        if by_name == Some(Format::Flickr8k) {
            return found(Format::Flickr8k);
        }
        let head = read_prefix(file, 64 * 1024)?;
        let first = head.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if let Some((image, _)) = first.split_once('\t')
            && image
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return found(Format::Flickr8k);
        }
    }
    Err(Error::UnknownFormat {
        path: file.to_path_buf(),
        message: format!("unknown dataset format: {EXPECTED}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_files_by_content_then_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let w = |name: &str, text: &str| {
            std::fs::write(d.join(name), text).unwrap();
            d.join(name)
        };
        let k = w(
            "whatever.json",
            r#"{"images": [{"filename": "a.jpg", "sentences": []}]}"#,
        );
        assert_eq!(detect(&k).unwrap().format, Format::Karpathy);
        let c = w(
            "x.json",
            r#"{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}"#,
        );
        assert_eq!(detect(&c).unwrap().format, Format::Coco);
        let p = w(
            "y.json",
            "{'images': [{'imgurl': 'a.jpg', 'description': 'x'}]}",
        );
        assert_eq!(detect(&p).unwrap().format, Format::Custom);
        let t = w("captions.txt", "a.jpg#0\tA dog.\n");
        assert_eq!(detect(&t).unwrap().format, Format::Flickr8k);
        let named = w("dataset_empty.json", "{}");
        assert_eq!(detect(&named).unwrap().format, Format::Karpathy);
        let unknown = w("z.json", "{}");
        let e = detect(&unknown).unwrap_err().to_string();
        assert!(e.contains("z.json") && e.contains("--format"), "{e}");
        let other = w("notes.md", "# hi");
        assert!(detect(&other).unwrap_err().to_string().contains("notes.md"));
    }

    #[test]
    fn detects_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = detect(d).unwrap_err().to_string();
        assert!(e.contains("found no dataset"), "{e}");
        std::fs::write(d.join("cat.jpg"), b"x").unwrap();
        std::fs::write(d.join("cat.txt"), b"a cat").unwrap();
        assert_eq!(detect(d).unwrap().format, Format::Folder);
        std::fs::write(d.join("data.csv"), b"image,caption\n").unwrap();
        let found = detect(d).unwrap();
        assert_eq!(
            (found.format, found.file),
            (Format::Csv, d.join("data.csv"))
        );
        std::fs::write(d.join("other.csv"), b"image,caption\n").unwrap();
        assert!(detect(d).unwrap_err().to_string().contains("several csv"));
        assert_eq!(resolve(Format::Folder, d).unwrap(), d);
        assert!(
            resolve(Format::Coco, d)
                .unwrap_err()
                .to_string()
                .contains("captions_*.json")
        );
    }
}
