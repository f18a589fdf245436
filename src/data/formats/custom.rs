//! The original project's `custom_dataset.json`:
//! `{"images": [{"imgurl": "dogs/dog001.jpg", "description": "..."}]}`, with `imgurl` relative
//! to an image root. `description` may also be a list of captions. The image root is `--images`,
//! else the original project's `static/img/` next to the file when it exists, else the file's
//! folder. The original sample file used Python single quotes; that gets its own error.

use std::path::Path;

use serde::Deserialize;

use super::{Duplicates, Raw, RawCaption, RawEntry, parent_dir, parse_json, read_file};
use crate::data::Split;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct File {
    images: Vec<Image>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Description {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Image {
    imgurl: Option<String>,
    description: Option<Description>,
    #[serde(default)]
    split: Option<String>,
}

pub(crate) fn read(file: &Path, images: Option<&Path>) -> Result<Raw> {
    let bytes = read_file(file)?;
    let parsed: File = parse_json(
        file,
        &bytes,
        "custom dataset (images[].{imgurl, description})",
    )?;
    let dir = parent_dir(file);
    let image_root = match images {
        Some(p) => p.to_path_buf(),
        None => {
            let static_img = dir.join("static").join("img");
            if static_img.is_dir() { static_img } else { dir }
        }
    };
    let mut entries = Vec::with_capacity(parsed.images.len());
    for (i, image) in parsed.images.into_iter().enumerate() {
        let location = format!("images[{i}]");
        let Some(path) = image.imgurl else {
            return Err(Error::parse(
                file,
                Some(location),
                "entry has no `imgurl`; every image needs one",
            ));
        };
        let texts = match image.description {
            Some(Description::One(s)) => vec![s],
            Some(Description::Many(v)) => v,
            None => {
                return Err(Error::parse(
                    file,
                    Some(location),
                    "entry has no `description`; every image needs a caption",
                ));
            }
        };
        let split = match image.split.as_deref() {
            None => None,
            Some(s) => Some(Split::parse(s).ok_or_else(|| {
                Error::parse(
                    file,
                    Some(format!("{location}.split")),
                    format!("unknown split {s:?}; expected train, val or test"),
                )
            })?),
        };
        let single = texts.len() == 1;
        let captions = texts
            .into_iter()
            .enumerate()
            .map(|(j, text)| RawCaption {
                text,
                location: if single {
                    format!("{location}.description")
                } else {
                    format!("{location}.description[{j}]")
                },
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
