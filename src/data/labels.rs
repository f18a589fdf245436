//! Per-image ground truth of generated datasets: which things an image shows, where, and in what
//! setting. Written into the Karpathy JSON as each image's `labels` field by the generators, read
//! back into [`Sample::labels`](super::Sample::labels) by the Karpathy loader, so that evaluation
//! and search can score by kind, size or position, and report seen and unseen exemplars apart.
//!
//! The JSON shape (every optional field is left out when absent):
//!
//! ```json
//! "labels": {
//!   "setting": "meadow",
//!   "setting_photo": "lomiri-wallpapers-16.04/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
//!   "objects": [
//!     {"kind": "frog", "stamp": "animals/amphibians/frog.png", "box": [0.12, 0.40, 0.45, 0.71],
//!      "size": "large", "unseen": true},
//!     {"kind": "circle", "color": "red", "box": [0.5, 0.5, 0.7, 0.7], "size": "small"}
//!   ]
//! }
//! ```
//!
//! `box` is `[x_min, y_min, x_max, y_max]` in fractions of the image's width and height, (0, 0)
//! top left, tight around the thing's visible pixels. Shapes also carry `"cell": [row, column]`,
//! the 3×3 grid cell their position words describe.
//!
//! Beside the images, the file's top-level `kinds` field is the [`Lexicon`]: for each kind, the
//! words and phrases a caption may use for it (`names`: singular, plural, synonyms, exemplar
//! phrases) and the wider names that also cover it (`category`), which object metrics match
//! captions against:
//!
//! ```json
//! "kinds": {
//!   "frog": {"names": ["frog", "frogs"], "category": ["amphibian", "amphibians"]},
//!   "circle": {"names": ["circle", "circles", "disk", "disks", "round shape", "round shapes"]}
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The ground truth of one image.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Labels {
    /// The scene's setting ("meadow", "beach", "room"), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// Which photograph the setting was cut from (`package/path`), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting_photo: Option<String>,
    /// The things in the image, in drawing order (later ones may cover earlier ones).
    #[serde(default)]
    pub objects: Vec<LabelledObject>,
}

/// One thing in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledObject {
    /// What it is, as a plain noun ("frog", "apple", "circle"): the unit of per-kind metrics.
    pub kind: String,
    /// The exemplar drawn (for scenes, the stamp's path under the stamps folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// Its colour name, where the generator chose one (shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// `[x_min, y_min, x_max, y_max]`, fractions of the image side, (0, 0) top left.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub size: SizeClass,
    /// True when the exemplar never appears in training images (a held-out stamp of its kind).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unseen: bool,
    /// `[row, column]` of the 3×3 grid cell it stands in, where the generator places things on
    /// a grid (shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<[u8; 2]>,
}

/// How captions name each kind: the Karpathy JSON's top-level `kinds` field, kind → names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lexicon {
    pub kinds: BTreeMap<String, KindNames>,
}

/// The words and phrases a caption may use for one kind, as written (lower case, no article).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KindNames {
    /// Names of the kind itself: singular, plural, synonyms, exemplar phrases ("granny smith apple").
    pub names: Vec<String>,
    /// Wider names that cover this kind and others ("bird", "birds").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
}

impl Labels {
    /// The image's label set: one element per distinct labelled thing, `colour kind` when the
    /// object has a colour (`shapes`), its kind otherwise (`scenes`); the setting is left out.
    /// What retrieval relevance compares (`eval::retrieval`) and what a label head predicts
    /// (`model::label_head`).
    pub fn label_set(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .map(|o| match &o.color {
                Some(colour) => format!("{colour} {}", o.kind),
                None => o.kind.clone(),
            })
            .collect()
    }
}

impl Lexicon {
    /// Adds names (and category names) of a kind, keeping each name once, in first-seen order.
    pub fn add<'a>(
        &mut self,
        kind: &str,
        names: impl IntoIterator<Item = &'a str>,
        category: impl IntoIterator<Item = &'a str>,
    ) {
        let entry = self.kinds.entry(kind.to_string()).or_default();
        let push = |list: &mut Vec<String>, name: &str| {
            let name = name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if !name.is_empty() && !list.contains(&name) {
                list.push(name);
            }
        };
        for n in names {
            push(&mut entry.names, n);
        }
        for c in category {
            push(&mut entry.category, c);
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How big a thing is drawn, as captions say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeClass {
    Small,
    Large,
}

impl SizeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            SizeClass::Small => "small",
            SizeClass::Large => "large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_stable_and_round_trips() {
        let labels = Labels {
            setting: Some("meadow".into()),
            setting_photo: None,
            objects: vec![LabelledObject {
                kind: "frog".into(),
                stamp: Some("animals/amphibians/frog.png".into()),
                color: None,
                bbox: [0.25, 0.5, 0.75, 1.0],
                size: SizeClass::Large,
                unseen: true,
                cell: None,
            }],
        };
        let json = serde_json::to_string(&labels).unwrap();
        assert_eq!(
            json,
            r#"{"setting":"meadow","objects":[{"kind":"frog","stamp":"animals/amphibians/frog.png","box":[0.25,0.5,0.75,1.0],"size":"large","unseen":true}]}"#
        );
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), labels);
        let shape: LabelledObject = serde_json::from_str(
            r#"{"kind":"circle","color":"red","box":[0,0,1,1],"size":"small"}"#,
        )
        .unwrap();
        assert!(!shape.unseen);
        assert_eq!(shape.color.as_deref(), Some("red"));
        assert_eq!(shape.cell, None);
        let placed: LabelledObject = serde_json::from_str(
            r#"{"kind":"circle","box":[0,0,1,1],"size":"small","cell":[2,0]}"#,
        )
        .unwrap();
        assert_eq!(placed.cell, Some([2, 0]));
    }

    #[test]
    fn lexicon_json_shape_and_add() {
        let mut lexicon = Lexicon::default();
        lexicon.add(
            "frog",
            ["frog", "frogs", "Frog", " green  frog "],
            ["amphibian"],
        );
        lexicon.add("circle", ["circle", "circles"], []);
        let json = serde_json::to_string(&lexicon).unwrap();
        assert_eq!(
            json,
            r#"{"circle":{"names":["circle","circles"]},"frog":{"names":["frog","frogs","green frog"],"category":["amphibian"]}}"#
        );
        assert_eq!(serde_json::from_str::<Lexicon>(&json).unwrap(), lexicon);
    }
}
