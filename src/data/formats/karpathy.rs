//! Karpathy's split JSON (`dataset_flickr8k.json`, `dataset_coco.json`, `dataset_flickr30k.json`):
//! `images[].{filename, filepath?, split, sentences[].{raw, tokens}}`. `restval` counts as train.
//! The image path is `filepath/filename` (COCO's entries carry `filepath: "val2014"`), relative
//! to `--images` or, by default, the JSON file's folder. An image's optional `labels` (ground truth
//! written by `dataset scenes` and `dataset shapes`, see [`crate::data::labels`]) is read into
//! `Sample::labels`, and the file's top-level `kinds` lexicon into `Dataset::kinds`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Duplicates, Raw, RawCaption, RawEntry, clean_relative, parent_dir, parse_json, read_file,
};
use crate::data::Split;
use crate::data::labels::{Labels, Lexicon};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct File {
    images: Vec<Image>,
    #[serde(default)]
    kinds: Option<Lexicon>,
}

#[derive(Deserialize)]
struct Image {
    filename: Option<String>,
    #[serde(default)]
    filepath: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    sentences: Vec<Sentence>,
    #[serde(default)]
    labels: Option<Labels>,
}

#[derive(Deserialize)]
struct Sentence {
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

/// Reads the file; each image's `labels`, when present, go into `labels` keyed by the image's
/// clean relative path (the key `Sample::path` will have); the file's `kinds`, when present, into
/// `kinds`.
pub(crate) fn read(
    file: &Path,
    images: Option<&Path>,
    labels: &mut HashMap<String, Labels>,
    kinds: &mut Option<Lexicon>,
) -> Result<Raw> {
    let bytes = read_file(file)?;
    let parsed: File = parse_json(
        file,
        &bytes,
        "Karpathy split file (images[].filename, sentences)",
    )?;
    *kinds = parsed.kinds;
    let image_root = images
        .map(Path::to_path_buf)
        .unwrap_or_else(|| parent_dir(file));
    let mut entries = Vec::with_capacity(parsed.images.len());
    for (i, image) in parsed.images.into_iter().enumerate() {
        let location = format!("images[{i}]");
        let Some(filename) = image.filename.filter(|f| !f.trim().is_empty()) else {
            return Err(Error::parse(
                file,
                Some(location),
                "entry has no `filename`; every image needs one",
            ));
        };
        let path = match image.filepath.as_deref().map(str::trim) {
            Some(dir) if !dir.is_empty() => format!("{dir}/{filename}"),
            _ => filename,
        };
        let split = match image.split.as_deref() {
            None => None,
            Some(s) => Some(Split::parse(s).ok_or_else(|| {
                Error::parse(
                    file,
                    Some(format!("{location}.split")),
                    format!("unknown split {s:?}; expected train, restval, val or test"),
                )
            })?),
        };
        if let (Some(l), Some(clean)) = (image.labels, clean_relative(&path)) {
            labels.insert(clean, l);
        }
        let captions = image
            .sentences
            .into_iter()
            .enumerate()
            .map(|(j, s)| RawCaption {
                text: s.raw.unwrap_or_else(|| s.tokens.join(" ")),
                location: format!("{location}.sentences[{j}]"),
                file: None,
            })
            .collect();
        entries.push(RawEntry {
            path,
            captions,
            split,
            location,
        });
    }
    Ok(Raw {
        image_root,
        entries,
        skipped: Vec::new(),
        duplicates: Duplicates::Refuse,
    })
}
// ---- Writing: the one home of the layout the generators (`shapes`, `scenes`) write ----

/// One image of a generated dataset, for [`write_generated`]: stored as `images/FILENAME`.
pub struct GeneratedImage<'a, E> {
    pub filename: &'a str,
    pub split: Split,
    pub captions: &'a [String],
    /// Fields written after `sentences` (flattened), e.g. `labels`.
    pub extra: E,
}

#[derive(serde::Serialize)]
struct OutFile<'a, G, E> {
    dataset: &'a str,
    generator: &'a G,
    /// How captions name each kind (see [`Lexicon`](crate::data::labels::Lexicon)).
    kinds: &'a crate::data::labels::Lexicon,
    images: Vec<OutImage<'a, E>>,
}

#[derive(serde::Serialize)]
struct OutImage<'a, E> {
    imgid: usize,
    filepath: &'static str,
    filename: &'a str,
    split: &'static str,
    sentids: Vec<usize>,
    sentences: Vec<OutSentence<'a>>,
    #[serde(flatten)]
    extra: &'a E,
}

#[derive(serde::Serialize)]
struct OutSentence<'a> {
    raw: &'a str,
    tokens: Vec<String>,
    imgid: usize,
    sentid: usize,
}

/// Writes a generated dataset as Karpathy's split JSON (atomically): `dataset`, the `generator`'s
/// description, the `kinds` lexicon, and the images with their captions (tokenized as the loader
/// does), numbered in order, and each image's `extra` fields.
pub fn write_generated<G: serde::Serialize, E: serde::Serialize>(
    path: &Path,
    dataset: &str,
    generator: &G,
    kinds: &crate::data::labels::Lexicon,
    images: &[GeneratedImage<'_, E>],
) -> Result<()> {
    let mut sentid = 0;
    let images = images
        .iter()
        .enumerate()
        .map(|(imgid, image)| {
            let sentences: Vec<OutSentence> = image
                .captions
                .iter()
                .map(|raw| {
                    sentid += 1;
                    OutSentence {
                        raw,
                        tokens: crate::data::text::tokenize(raw),
                        imgid,
                        sentid: sentid - 1,
                    }
                })
                .collect();
            OutImage {
                imgid,
                filepath: "images",
                filename: image.filename,
                split: image.split.as_str(),
                sentids: sentences.iter().map(|s| s.sentid).collect(),
                sentences,
                extra: &image.extra,
            }
        })
        .collect();
    let file = OutFile {
        dataset,
        generator,
        kinds,
        images,
    };
    let json = serde_json::to_vec(&file).map_err(|e| Error::serialize(path, e))?;
    crate::util::write_atomic(path, &json)
}
