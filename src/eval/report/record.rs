//! The record of an evaluation: what was decoded, on what, with which scores.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::Skipped;
use crate::error::Result;
use crate::eval::objects::ObjectScores;
use crate::eval::{ImageScores, Scores};

/// An image's identity in results files: COCO's integer id, or the image path for other datasets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageId {
    Number(u64),
    Path(String),
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageId::Number(n) => write!(f, "{n}"),
            ImageId::Path(p) => f.write_str(p),
        }
    }
}

/// How captions were decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeSettings {
    /// 1 is greedy decoding.
    pub beam_size: usize,
    /// Most words in a caption.
    pub max_len: usize,
    /// Weight λ of concept-guided decoding (see `model::guide::ConceptBias`); absent when
    /// captions were decoded without it (and in reports written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concept_weight: Option<f32>,
}

/// Which data was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    pub path: PathBuf,
    /// The format it was read as (`flickr8k`, `coco`, ...).
    pub format: String,
    pub split: String,
    /// Number of images scored.
    pub images: usize,
}

/// Which model was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointIdentity {
    pub path: PathBuf,
    /// Name of the training configuration.
    pub config: String,
    pub epoch: Option<usize>,
}

/// One image's generated caption, references and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    pub image_id: ImageId,
    /// Where the image is on disk, for thumbnails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<PathBuf>,
    pub caption: String,
    pub references: Vec<String>,
    /// Per-image scores (coco-caption conventions; CIDEr-D with the test set's document frequencies).
    pub scores: ImageScores,
}

/// Everything an evaluation produced; the content of `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    /// Corpus metrics of the decoded captions.
    pub metrics: Scores,
    /// Per-word perplexity of the reference captions under the model (teacher-forced), if measured.
    pub perplexity: Option<f64>,
    /// Why `perplexity` is absent, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_note: Option<String>,
    pub decode: DecodeSettings,
    pub dataset: DatasetIdentity,
    pub checkpoint: CheckpointIdentity,
    /// Per-image results, in dataset order.
    pub images: Vec<ImageResult>,
    /// Images of the split that could not be read, and why; they count in no score.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The image-blind baseline scored on the same images, when the dataset has training captions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Object recall and precision of the captions, when the dataset labels the things in its
    /// images and has a kinds lexicon (see [`crate::eval::objects`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectScores>,
    /// The concept head read as a kind classifier (see [`crate::eval::concepts`]), when the model
    /// has a head and the run has object metrics: how far concept-guided decoding can go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concept_probe: Option<crate::eval::concepts::ConceptProbe>,
}

/// A caption that ignores the image, given to every evaluated image and scored like the model's
/// captions: what "the model learned something" is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The caption (tokenized and lower-cased, as the metrics see it).
    pub caption: String,
    /// How it was chosen.
    pub source: String,
    /// Its corpus metrics on the evaluated images.
    pub metrics: Scores,
    /// Its object metrics, when the run has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectScores>,
}

impl Baseline {
    /// One sentence comparing the baseline's BLEU-4 and CIDEr-D with the model's.
    pub fn summary(&self, model: &Scores) -> String {
        format!(
            "Image-blind baseline: {} \"{}\", given to every image, scores Bleu_4 {:.4} and CIDEr {:.4}; the model scores {:.4} ({:.2}×) and {:.4} ({:.2}×).",
            self.source,
            self.caption,
            self.metrics.bleu_4,
            self.metrics.cider,
            model.bleu_4,
            ratio(model.bleu_4, self.metrics.bleu_4),
            model.cider,
            ratio(model.cider, self.metrics.cider),
        )
    }
}

/// One row of the object table: whose captions, their BLEU-4 and CIDEr-D, and their object metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow<'a> {
    pub who: &'static str,
    pub bleu_4: f64,
    pub cider: f64,
    pub objects: &'a ObjectScores,
}

/// The rows of the object table (the model's captions, then the image-blind baseline's), empty
/// when the run has no object metrics; and whether seen and unseen recall are reported apart.
pub fn object_rows(run: &EvalRun) -> (Vec<ObjectRow<'_>>, bool) {
    let Some(model) = &run.objects else {
        return (Vec::new(), false);
    };
    let mut rows = vec![ObjectRow {
        who: "model",
        bleu_4: run.metrics.bleu_4,
        cider: run.metrics.cider,
        objects: model,
    }];
    if let Some(b) = &run.baseline
        && let Some(o) = &b.objects
    {
        rows.push(ObjectRow {
            who: "image-blind baseline",
            bleu_4: b.metrics.bleu_4,
            cider: b.metrics.cider,
            objects: o,
        });
    }
    (rows, model.unseen_objects > 0)
}

/// A share for a table cell: four decimals, or "–" when there is nothing to divide.
pub fn share_text(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.4}"))
}

/// What the object columns mean, under the table.
pub const OBJECTS_NOTE: &str = "Object recall: the share of the labelled things in the images whose kind the caption names (by a name of the kind, or a category that covers it). Object precision: the share of the distinct kinds and categories a caption names that fit something in its image. Both micro-averaged over the split; names come from the dataset's kinds lexicon.";

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::INFINITY }
}

/// An image with its generated caption and references, before scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionedImage {
    pub image_id: ImageId,
    pub image_path: Option<PathBuf>,
    pub caption: String,
    pub references: Vec<String>,
}

/// Scores generated captions against their references: corpus metrics and per-image results.
pub fn score_images(images: Vec<CaptionedImage>) -> Result<(Scores, Vec<ImageResult>)> {
    let candidates: Vec<&str> = images.iter().map(|i| i.caption.as_str()).collect();
    let references: Vec<Vec<&str>> = images
        .iter()
        .map(|i| i.references.iter().map(String::as_str).collect())
        .collect();
    let evaluation = crate::eval::evaluate(&candidates, &references)?;
    let results = images
        .into_iter()
        .zip(evaluation.per_image)
        .map(|(i, scores)| ImageResult {
            image_id: i.image_id,
            image_path: i.image_path,
            caption: i.caption,
            references: i.references,
            scores,
        })
        .collect();
    Ok((evaluation.scores, results))
}

/// A COCO results entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    pub image_id: ImageId,
    pub caption: String,
}

/// The run's captions in COCO results format.
pub fn results(run: &EvalRun) -> Vec<ResultEntry> {
    run.images
        .iter()
        .map(|i| ResultEntry {
            image_id: i.image_id.clone(),
            caption: i.caption.clone(),
        })
        .collect()
}
