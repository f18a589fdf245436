//! Scoring captions that any system produced: COCO results files (`[{"image_id", "caption"}]`)
//! matched against the reference captions of a dataset in any format capsearch loads.
//!
//! A result's `image_id` finds its image by, in order:
//! - a string: the image path as the dataset names it (`val2014/x.jpg`), else its file name
//!   (`x.jpg`), else its file name without extension (`x`), when that names one image;
//! - an integer: the COCO id (`images[].id` of a COCO captions file, `images[].cocoid` of a
//!   Karpathy split file), else the number that ends the file name (`COCO_val2014_000000391895.jpg`
//!   is 391895), when that names one image.
//!
//! As in `pycocoevalcap`, the images scored are those of the results file, each exactly once.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::report::{CaptionedImage, ImageId, ResultEntry};
use crate::data::formats::{Format, clean_relative};
use crate::data::{Dataset, Sample};
use crate::error::{Error, Result};

/// Reads a COCO results file: a JSON list of `{"image_id": int or string, "caption": string}`.
/// Other fields (`score`, ...) are ignored.
pub fn read_results(path: &Path) -> Result<Vec<ResultEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            path,
            Some(format!("line {}, column {}", e.line(), e.column())),
            format!("not JSON: {e}"),
        )
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(Error::parse(
            path,
            None,
            "a results file is a JSON list of {\"image_id\", \"caption\"} objects (COCO results format)",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let entry: ResultEntry = serde_json::from_value(item).map_err(|e| {
            Error::parse(
                path,
                Some(format!("entry {i}")),
                format!("{e}; each entry needs \"image_id\" (integer or string) and \"caption\" (string)"),
            )
        })?;
        out.push(entry);
    }
    if out.is_empty() {
        return Err(Error::parse(
            path,
            None,
            "the results list is empty: nothing to score",
        ));
    }
    Ok(out)
}

/// Integer image ids a dataset file declares: COCO's `images[].id` and Karpathy's
/// `images[].cocoid`, mapped to image paths as the loader names them.
pub fn declared_integer_ids(dataset: &Dataset) -> Result<HashMap<u64, String>> {
    #[derive(Deserialize)]
    struct CocoFile {
        images: Vec<CocoImage>,
    }
    #[derive(Deserialize)]
    struct CocoImage {
        id: u64,
        file_name: String,
    }
    #[derive(Deserialize)]
    struct KarpathyFile {
        images: Vec<KarpathyImage>,
    }
    #[derive(Deserialize)]
    struct KarpathyImage {
        cocoid: Option<u64>,
        filename: Option<String>,
        #[serde(default)]
        filepath: Option<String>,
    }
    let read = || -> Result<String> {
        std::fs::read_to_string(&dataset.source).map_err(|e| Error::io(&dataset.source, e))
    };
    let bad = |e: serde_json::Error| {
        Error::parse(
            &dataset.source,
            Some(format!("line {}, column {}", e.line(), e.column())),
            format!("reading image ids: {e}"),
        )
    };
    let mut ids = HashMap::new();
    match dataset.format {
        Format::Coco => {
            let f: CocoFile = serde_json::from_str(&read()?).map_err(bad)?;
            for img in f.images {
                if let Some(p) = clean_relative(&img.file_name) {
                    ids.insert(img.id, p);
                }
            }
        }
        Format::Karpathy => {
            let f: KarpathyFile = serde_json::from_str(&read()?).map_err(bad)?;
            for img in f.images {
                let (Some(id), Some(name)) = (img.cocoid, img.filename) else {
                    continue;
                };
                let path = match img.filepath.as_deref().map(str::trim) {
                    Some(dir) if !dir.is_empty() => format!("{dir}/{name}"),
                    _ => name,
                };
                if let Some(p) = clean_relative(&path) {
                    ids.insert(id, p);
                }
            }
        }
        _ => {}
    }
    Ok(ids)
}

/// A lookup key that names one image, or several (then it cannot be used).
#[derive(Clone, Copy)]
enum Slot {
    One(usize),
    Ambiguous,
}

fn insert<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Slot>, key: K, i: usize) {
    map.entry(key)
        .and_modify(|s| {
            if !matches!(s, Slot::One(j) if *j == i) {
                *s = Slot::Ambiguous
            }
        })
        .or_insert(Slot::One(i));
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn file_stem(path: &str) -> &str {
    let name = file_name(path);
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

fn trailing_number(path: &str) -> Option<u64> {
    let stem = file_stem(path);
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    stem[stem.len() - digits..].parse().ok()
}

/// Pairs each result with its image's references. Fails, naming the first few, when results name
/// images the dataset does not have, or name an image twice.
pub fn match_results(
    results: &[ResultEntry],
    dataset: &Dataset,
    integer_ids: &HashMap<u64, String>,
) -> Result<Vec<CaptionedImage>> {
    let samples: &[Sample] = &dataset.samples;
    let mut by_path: HashMap<&str, Slot> = HashMap::new();
    let mut by_name: HashMap<&str, Slot> = HashMap::new();
    let mut by_stem: HashMap<&str, Slot> = HashMap::new();
    let mut by_number: HashMap<u64, Slot> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        insert(&mut by_path, s.path.as_str(), i);
        insert(&mut by_name, file_name(&s.path), i);
        insert(&mut by_stem, file_stem(&s.path), i);
        if let Some(n) = trailing_number(&s.path) {
            insert(&mut by_number, n, i);
        }
    }
    let one = |slot: Option<&Slot>| match slot {
        Some(Slot::One(i)) => Some(*i),
        _ => None,
    };
    let find = |id: &ImageId| -> Option<usize> {
        match id {
            ImageId::Path(p) => {
                let p = clean_relative(p).unwrap_or_else(|| p.clone());
                one(by_path.get(p.as_str()))
                    .or_else(|| one(by_name.get(file_name(&p))))
                    .or_else(|| one(by_stem.get(file_stem(&p))))
            }
            ImageId::Number(n) => integer_ids
                .get(n)
                .and_then(|p| one(by_path.get(p.as_str())))
                .or_else(|| one(by_number.get(n))),
        }
    };

    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut unmatched = Vec::new();
    let mut out = Vec::with_capacity(results.len());
    for (k, r) in results.iter().enumerate() {
        let Some(i) = find(&r.image_id) else {
            unmatched.push(r.image_id.to_string());
            continue;
        };
        if let Some(first) = seen.insert(i, k) {
            return Err(Error::Invalid(format!(
                "results entries {first} and {k} both caption image {} ({}); give one caption per image",
                r.image_id, samples[i].path
            )));
        }
        let sample = &samples[i];
        out.push(CaptionedImage {
            image_id: r.image_id.clone(),
            image_path: Some(dataset.image_path(sample)),
            caption: r.caption.clone(),
            references: sample.captions.clone(),
        });
    }
    if !unmatched.is_empty() {
        let first: Vec<&str> = unmatched.iter().take(5).map(String::as_str).collect();
        let skipped = if dataset.skipped.is_empty() {
            String::new()
        } else {
            format!(
                "; {} entries of the dataset were skipped while loading (missing images? give the image folder with --images DIR)",
                dataset.skipped.len()
            )
        };
        return Err(Error::Invalid(format!(
            "{} of {} results name images that are not in {} (first: {}); image_id must be the COCO id or the image path the dataset uses{skipped}",
            unmatched.len(),
            results.len(),
            dataset.source.display(),
            first.join(", ")
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn dataset(paths: &[&str]) -> Dataset {
        Dataset {
            format: Format::Csv,
            source: "refs.csv".into(),
            image_root: "/data".into(),
            samples: paths
                .iter()
                .map(|p| Sample {
                    path: p.to_string(),
                    captions: vec![format!("caption of {p}")],
                    split: Split::Test,
                    labels: None,
                })
                .collect(),
            skipped: Vec::new(),
            kinds: None,
        }
    }

    fn entry(id: ImageId) -> ResultEntry {
        ResultEntry {
            image_id: id,
            caption: "x".into(),
        }
    }

    #[test]
    fn ids_match_by_path_name_stem_and_number() {
        let d = dataset(&[
            "val2014/COCO_val2014_000000391895.jpg",
            "a/dog.jpg",
            "b/dog.png",
            "cat.jpg",
        ]);
        let ids = HashMap::from([(7u64, "cat.jpg".to_string())]);
        let results = vec![
            entry(ImageId::Number(391895)),
            entry(ImageId::Path("a/dog.jpg".into())),
            entry(ImageId::Number(7)),
        ];
        let m = match_results(&results, &d, &ids).unwrap();
        assert_eq!(
            m[0].references,
            ["caption of val2014/COCO_val2014_000000391895.jpg"]
        );
        assert_eq!(m[1].references, ["caption of a/dog.jpg"]);
        assert_eq!(m[2].references, ["caption of cat.jpg"]);
        assert_eq!(m[2].image_path.as_deref(), Some(Path::new("/data/cat.jpg")));
        // "dog" is ambiguous by stem, "dog.png" is not by name.
        assert!(match_results(&[entry(ImageId::Path("dog".into()))], &d, &ids).is_err());
        let m = match_results(&[entry(ImageId::Path("dog.png".into()))], &d, &ids).unwrap();
        assert_eq!(m[0].references, ["caption of b/dog.png"]);
    }

    #[test]
    fn unknown_and_duplicate_ids_are_errors() {
        let d = dataset(&["a.jpg", "b.jpg"]);
        let none = HashMap::new();
        let err = match_results(&[entry(ImageId::Path("zzz.jpg".into()))], &d, &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 of 1 results") && err.contains("zzz.jpg"),
            "{err}"
        );
        let err = match_results(
            &[
                entry(ImageId::Path("a.jpg".into())),
                entry(ImageId::Path("a".into())),
            ],
            &d,
            &none,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("entries 0 and 1"), "{err}");
    }

    #[test]
    fn reads_results_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, r#"[{"image_id": 1, "caption": "a"}, {"image_id": "x.jpg", "caption": "b", "score": 0.5}]"#).unwrap();
        let r = read_results(&p).unwrap();
        assert_eq!(r[0].image_id, ImageId::Number(1));
        assert_eq!(r[1].image_id, ImageId::Path("x.jpg".into()));
        std::fs::write(&p, r#"[{"image_id": 1}]"#).unwrap();
        let err = read_results(&p).unwrap_err().to_string();
        assert!(err.contains("entry 0") && err.contains("caption"), "{err}");
        std::fs::write(&p, r#"{"image_id": 1}"#).unwrap();
        assert!(
            read_results(&p)
                .unwrap_err()
                .to_string()
                .contains("JSON list")
        );
        std::fs::write(&p, "[]").unwrap();
        assert!(read_results(&p).is_err());
    }
}
