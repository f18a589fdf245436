//! Evaluating a saved model on a dataset split: what `capsearch eval` does before it writes the
//! report.
//!
//! [`evaluate_model`] decodes every image of the split (in batches, skipping and listing the
//! images it cannot read), scores the captions against the split's references, and measures the
//! teacher-forced perplexity of those references under the model. The result is an
//! [`EvalRun`], which [`super::report::write_report`] turns into `reports/NAME/`.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use indicatif::ProgressBar;

use super::concepts::KindProbe;
use super::objects::{ObjectMatcher, ObjectScores, object_scores};
use super::report::{
    Baseline, CaptionedImage, CheckpointIdentity, DatasetIdentity, DecodeSettings, EvalRun,
    ImageId, score_images,
};
use super::results::declared_integer_ids;
use super::search_variants::ConceptSpace;
use crate::data::batch::{arrange_tokens, images_tensor};
use crate::data::formats::resolve_image;
use crate::data::labels::LabelledObject;
use crate::data::text::tokenize;
use crate::data::{Dataset, Sample, Skipped, Split};
use crate::error::{Error, Result};
use crate::model::decode::DecodeOptions;
use crate::model::inference::CaptionEngine;

/// How [`evaluate_model`] runs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Beam size and step limit of the decoder.
    pub decode: DecodeOptions,
    /// Images per model call.
    pub batch_size: usize,
    /// Evaluate only the first `limit` images of the split (dataset order).
    pub limit: Option<usize>,
    /// Advanced once per image of the split (read or skipped).
    pub progress: Option<ProgressBar>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            decode: DecodeOptions::default(),
            batch_size: 32,
            limit: None,
            progress: None,
        }
    }
}

/// Why a run has no perplexity, when the model cannot compute one.
pub const NO_PERPLEXITY_NOTE: &str = "not measured: this model takes features from a frozen backbone (precomputed or VGG-16), \
     not images through its own CNN, so capsearch does not run the teacher-forced pass";

/// Sums of negative log-likelihood and target tokens, for perplexity.
#[derive(Debug, Clone, Copy, Default)]
struct Nll {
    total: f64,
    tokens: usize,
}

/// One readable image of the split: its sample, path on disk, and prepared pixels.
struct Readable<'a> {
    sample: &'a Sample,
    path: PathBuf,
    pixels: Vec<u8>,
}

/// Decodes and scores `split` of `dataset` with `engine`.
///
/// - Captions are decoded with `options.decode` (greedy when `beam_size` is 1; 0 takes the model's own) and scored with
///   every metric of [`super::Scores`] against all the references of each image.
/// - Images that cannot be found or decoded are skipped (listed in [`EvalRun::skipped`]); they
///   count in no score. Failing on every image is an error.
/// - Perplexity is `exp` of the mean negative log-likelihood per target token (END included) of
///   every reference caption of the scored images, teacher-forced, with the captions encoded by the
///   model's vocabulary (rare words as `<unk>`) and not truncated. It is measured only when the
///   model reads images through its own CNN; otherwise it is `None` and
///   [`EvalRun::perplexity_note`] says why.
/// - Image ids are the COCO ids the dataset file declares (COCO and Karpathy JSON), else the image
///   paths.
///
/// Fails when the split has no images, or when the model cannot caption images at all.
pub fn evaluate_model(
    engine: &CaptionEngine,
    dataset: &Dataset,
    split: Split,
    options: &EvalOptions,
) -> Result<EvalRun> {
    let mut samples: Vec<&Sample> = dataset.split(split).collect();
    if samples.is_empty() {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "the {split} split has no images (train {}, val {}, test {}); choose a split that has some with --split",
                dataset.count(Split::Train),
                dataset.count(Split::Val),
                dataset.count(Split::Test)
            ),
        });
    }
    if let Some(limit) = options.limit {
        samples.truncate(limit.max(1));
    }
    let ids: HashMap<String, u64> = declared_integer_ids(dataset)?
        .into_iter()
        .map(|(id, path)| (path, id))
        .collect();
    let with_perplexity = engine.loaded.model.cnn.is_some();

    let mut captioned = Vec::with_capacity(samples.len());
    // The labelled things of each captioned image (empty when it has no labels).
    let mut things: Vec<&[LabelledObject]> = Vec::with_capacity(samples.len());
    // Each captioned image's embedding, for the concept-head probe.
    let mut embeddings: Vec<Option<Vec<f32>>> = Vec::with_capacity(samples.len());
    let mut skipped = Vec::new();
    let mut nll = Nll::default();
    for chunk in samples.chunks(options.batch_size.max(1)) {
        let mut readable = Vec::with_capacity(chunk.len());
        for &sample in chunk {
            let prepared = resolve_image(&dataset.image_root, &sample.path)
                .and_then(|path| engine.prepare_image(&path).map(|pixels| (path, pixels)));
            match prepared {
                Ok((path, pixels)) => readable.push(Readable {
                    sample,
                    path,
                    pixels,
                }),
                Err(e) => {
                    tracing::warn!("skipping image {}: {e}", sample.path);
                    skipped.push(Skipped {
                        entry: sample.path.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if !readable.is_empty() {
            let pixels: Vec<Vec<u8>> = readable.iter().map(|r| r.pixels.clone()).collect();
            let generated = engine.caption_pixels(&pixels, options.decode)?;
            if generated.len() != readable.len() {
                return Err(Error::Internal(format!(
                    "the decoder returned {} captions for {} images",
                    generated.len(),
                    readable.len()
                )));
            }
            if with_perplexity {
                let batch = reference_nll(engine, &readable)?;
                nll.total += batch.total;
                nll.tokens += batch.tokens;
            }
            for (r, g) in readable.into_iter().zip(generated) {
                embeddings.push(g.embedding);
                things.push(
                    r.sample
                        .labels
                        .as_ref()
                        .map_or(&[][..], |l| l.objects.as_slice()),
                );
                captioned.push(CaptionedImage {
                    image_id: match ids.get(&r.sample.path) {
                        Some(&n) => ImageId::Number(n),
                        None => ImageId::Path(r.sample.path.clone()),
                    },
                    image_path: Some(r.path),
                    caption: g.caption,
                    references: r.sample.captions.clone(),
                });
            }
        }
        if let Some(bar) = &options.progress {
            bar.inc(chunk.len() as u64);
        }
    }
    if captioned.is_empty() {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "none of the {} images of the {split} split could be read; the first failed with: {}",
                samples.len(),
                skipped.first().map(|s| s.reason.as_str()).unwrap_or("?")
            ),
        });
    }
    let count = captioned.len();
    // Object metrics, when the dataset has a kinds lexicon and labels on the evaluated images.
    let matcher = dataset
        .kinds
        .as_ref()
        .filter(|_| things.iter().any(|t| !t.is_empty()))
        .map(|kinds| ObjectMatcher::new(kinds, tokenize));
    let objects_of = |captions: &[&str]| -> Option<ObjectScores> {
        let matcher = matcher.as_ref()?;
        let tokens: Vec<Vec<String>> = captions.iter().map(|c| tokenize(c)).collect();
        Some(object_scores(
            matcher,
            tokens.iter().map(Vec::as_slice).zip(things.iter().copied()),
        ))
    };
    let objects = objects_of(
        &captioned
            .iter()
            .map(|c: &CaptionedImage| c.caption.as_str())
            .collect::<Vec<_>>(),
    );
    let baseline = match most_frequent_train_caption(dataset) {
        Some(caption) => {
            let candidates = vec![caption.as_str(); captioned.len()];
            let references: Vec<Vec<&str>> = captioned
                .iter()
                .map(|c| c.references.iter().map(String::as_str).collect())
                .collect();
            Some(Baseline {
                metrics: super::evaluate(&candidates, &references)?.scores,
                objects: objects_of(&candidates),
                caption,
                source: "the most frequent training caption".into(),
            })
        }
        None => None,
    };
    let concept_probe = match (&dataset.kinds, ConceptSpace::of(engine)) {
        (Some(kinds), Some(space)) if things.iter().any(|t| !t.is_empty()) => {
            let rows: Vec<&[f32]> = embeddings.iter().flatten().map(Vec::as_slice).collect();
            if rows.len() == things.len() {
                let probs = space.words(&rows)?;
                let probe = KindProbe::new(kinds, &engine.loaded.vocab, tokenize);
                Some(probe.probe(probs.iter().map(Vec::as_slice).zip(things.iter().copied())))
            } else {
                None
            }
        }
        _ => None,
    };
    let (metrics, images) = score_images(captioned)?;
    let (perplexity, perplexity_note) = if with_perplexity {
        (
            (nll.tokens > 0).then(|| (nll.total / nll.tokens as f64).exp()),
            None,
        )
    } else {
        (None, Some(NO_PERPLEXITY_NOTE.to_string()))
    };
    let info = &engine.loaded.info;
    Ok(EvalRun {
        metrics,
        perplexity,
        perplexity_note,
        decode: {
            let decode = engine.decode_options(options.decode);
            DecodeSettings {
                beam_size: decode.beam_size,
                max_len: decode.max_steps,
                concept_weight: decode.concept_weight.filter(|&w| w > 0.0),
            }
        },
        dataset: DatasetIdentity {
            path: dataset.source.clone(),
            format: dataset.format.as_str().to_string(),
            split: split.as_str().to_string(),
            images: count,
        },
        checkpoint: CheckpointIdentity {
            path: engine.loaded.dir.clone(),
            config: info.name.clone(),
            epoch: info.epoch,
        },
        images,
        skipped,
        baseline,
        objects,
        concept_probe,
    })
}

/// The most frequent caption of the train split (compared as tokens, lower-cased), ties going to
/// the alphabetically first; `None` when the split has no captions.
pub fn most_frequent_train_caption(dataset: &Dataset) -> Option<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for sample in dataset.split(Split::Train) {
        for caption in &sample.captions {
            let tokens = tokenize(caption);
            if !tokens.is_empty() {
                *counts.entry(tokens.join(" ")).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by(|(a, n), (b, m)| n.cmp(m).then_with(|| b.cmp(a)))
        .map(|(caption, _)| caption)
}

/// Summed teacher-forced negative log-likelihood of every reference caption of `images`, and the
/// number of target tokens (END included). The CNN runs once per image.
fn reference_nll(engine: &CaptionEngine, images: &[Readable<'_>]) -> Result<Nll> {
    let model = &engine.loaded.model;
    let vocab = &engine.loaded.vocab;
    let device = &engine.device;
    let size = engine.loaded.info.preprocessing.image_size;
    let encoded: Vec<Vec<Vec<usize>>> = images
        .iter()
        .map(|r| {
            r.sample
                .captions
                .iter()
                .map(|c| vocab.encode(&tokenize(c)))
                .collect()
        })
        .collect();
    let mut rows = Vec::new();
    let mut captions: Vec<&[usize]> = Vec::new();
    for (pos, caps) in encoded.iter().enumerate() {
        for c in caps {
            rows.push(pos as i64);
            captions.push(c.as_slice());
        }
    }
    if captions.is_empty() {
        return Ok(Nll::default());
    }
    let pixels: Vec<&[u8]> = images.iter().map(|r| r.pixels.as_slice()).collect();
    if pixels.iter().any(|p| p.len() != 3 * size * size) {
        return Err(Error::Internal(
            "image buffer has the wrong size for this model".into(),
        ));
    }
    let tensor = images_tensor(&pixels, size, engine.normalization(), device);
    let features = model.encode(tensor).ok_or_else(|| Error::Model {
        path: engine.loaded.dir.clone(),
        message: "perplexity needs a model with its own image encoder".into(),
    })?;
    let (inputs, targets, mask, steps) = arrange_tokens(&captions);
    let n = captions.len();
    let tokens: usize = captions.iter().map(|c| c.len() + 1).sum();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
    let features = features.select(0, rows);
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [n, steps]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, steps]), device);
    let mean = model
        .loss(features, ints(inputs), ints(targets), mask)
        .into_scalar::<f32>() as f64;
    Ok(Nll {
        total: mean * tokens as f64,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::formats::Format;
    use crate::data::text::Vocabulary;
    use crate::model::artifact::{ModelInfo, Preprocessing, save_model};
    use crate::model::captioner::EncoderConfig;
    use crate::model::encoder::SmallCnnConfig;
    use crate::model::{Captioner, CaptionerConfig};
    use burn::tensor::activation::log_softmax;
    use std::path::Path;

    const CAPTIONS: [(&str, [u8; 3], &[&str]); 4] = [
        ("red.png", [220, 30, 30], &["a red square", "red box"]),
        ("green.png", [30, 200, 40], &["a green circle"]),
        (
            "blue.png",
            [30, 40, 220],
            &["two blue triangles at the top", "blue things", "zebra"],
        ),
        ("white.png", [240, 240, 240], &["a white wall"]),
    ];

    /// A random (untrained) small-CNN model saved in `dir/model`, and a dataset of four solid
    /// images in the test split plus one that is not an image.
    fn fixture(dir: &Path) -> (CaptionEngine, Dataset) {
        let mut samples = Vec::new();
        for (name, color, caps) in CAPTIONS {
            image::RgbImage::from_pixel(12, 12, image::Rgb(color))
                .save(dir.join(name))
                .unwrap();
            samples.push(Sample {
                path: name.into(),
                captions: caps.iter().map(|c| c.to_string()).collect(),
                split: Split::Test,
                labels: None,
            });
        }
        std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
        samples.insert(
            2,
            Sample {
                path: "broken.png".into(),
                captions: vec!["a broken image".into()],
                split: Split::Test,
                labels: None,
            },
        );
        samples.push(Sample {
            path: "red.png".into(),
            captions: vec!["a red square".into()],
            split: Split::Train,
            labels: None,
        });
        // "zebra" is not in the vocabulary: it becomes <unk>.
        let tokens: Vec<Vec<String>> = ["a red square", "a green circle", "two blue triangles"]
            .iter()
            .map(|c| tokenize(c))
            .collect();
        let vocab = Vocabulary::build(tokens.iter().map(|c| c.as_slice()), 1, true);
        let device = Device::flex();
        device.seed(11);
        let config = CaptionerConfig::new(
            EncoderConfig::SmallCnn(
                SmallCnnConfig::new()
                    .with_width(4)
                    .with_depth(2)
                    .with_grid(2),
            ),
            vocab.len(),
        )
        .with_embed_size(8)
        .with_hidden_size(16);
        let model: Captioner = config.init(&device);
        let info = ModelInfo {
            name: "tiny".into(),
            captioner: config,
            preprocessing: Preprocessing {
                image_size: 12,
                normalization: "imagenet".into(),
            },
            produced_by: "test".into(),
            capsearch_version: "0".into(),
            dataset: None,
            epoch: Some(3),
            val_bleu4: None,
        };
        let model_dir = dir.join("model");
        save_model(&model_dir, &info, &vocab, model).unwrap();
        let engine = CaptionEngine::load(&model_dir, device).unwrap();
        let dataset = Dataset {
            format: Format::Csv,
            source: dir.join("data.csv"),
            image_root: dir.to_path_buf(),
            samples,
            skipped: vec![],
            kinds: None,
        };
        (engine, dataset)
    }

    /// Perplexity by hand: one caption at a time through `Captioner::forward`.
    fn perplexity_by_hand(engine: &CaptionEngine, dir: &Path) -> f64 {
        let model = &engine.loaded.model;
        let (mut total, mut tokens) = (0.0f64, 0usize);
        for (name, _, caps) in CAPTIONS {
            let px = engine.prepare_image(&dir.join(name)).unwrap();
            let tensor = images_tensor(&[&px], 12, engine.normalization(), &engine.device);
            let feature = model.encode(tensor).unwrap();
            for c in caps {
                let ids = engine.loaded.vocab.encode(&tokenize(c));
                let mut inputs = vec![0i64];
                inputs.extend(ids.iter().map(|&i| i as i64));
                let mut targets: Vec<usize> = ids.clone();
                targets.push(0);
                let t = inputs.len();
                let inputs =
                    Tensor::<2, Int>::from_data(TensorData::new(inputs, [1, t]), &engine.device);
                let logp = log_softmax(model.forward(feature.clone(), inputs), 2)
                    .to_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                let v = model.vocab_size();
                for (step, &target) in targets.iter().enumerate() {
                    total -= logp[step * v + target] as f64;
                    tokens += 1;
                }
            }
        }
        (total / tokens as f64).exp()
    }

    #[test]
    fn scores_the_split_skips_unreadable_images_and_measures_perplexity() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, dataset) = fixture(dir.path());
        let run = evaluate_model(&engine, &dataset, Split::Test, &EvalOptions::default()).unwrap();
        // Four readable test images, in dataset order; the train image is not evaluated.
        let names: Vec<String> = run.images.iter().map(|i| i.image_id.to_string()).collect();
        assert_eq!(names, ["red.png", "green.png", "blue.png", "white.png"]);
        assert_eq!(run.dataset.images, 4);
        assert_eq!(run.dataset.split, "test");
        assert_eq!(run.dataset.format, "csv");
        assert_eq!(run.checkpoint.config, "tiny");
        assert_eq!(run.checkpoint.epoch, Some(3));
        assert_eq!(run.images[2].references.len(), 3);
        assert_eq!(
            run.images[0].image_path.as_deref(),
            Some(dir.path().join("red.png").as_path())
        );
        assert_eq!(run.skipped.len(), 1);
        assert_eq!(run.skipped[0].entry, "broken.png");
        // The corpus metrics are those of the decoded captions.
        let candidates: Vec<&str> = run.images.iter().map(|i| i.caption.as_str()).collect();
        let references: Vec<Vec<String>> =
            run.images.iter().map(|i| i.references.clone()).collect();
        assert_eq!(
            run.metrics,
            crate::eval::score_all(&candidates, &references).unwrap()
        );
        // Perplexity is exp(mean NLL per target token, END included) over every reference.
        let ppl = run.perplexity.unwrap();
        let expected = perplexity_by_hand(&engine, dir.path());
        assert!(
            (ppl - expected).abs() < 1e-4 * expected,
            "{ppl} vs {expected}"
        );
        // An untrained model is about as unsure as a uniform guess over the vocabulary.
        let v = engine.loaded.vocab.len() as f64;
        assert!(ppl > 0.5 * v && ppl < 2.0 * v, "{ppl} for V = {v}");
        assert!(run.perplexity_note.is_none());
        // The image-blind baseline: the one training caption, scored on the same four images.
        let baseline = run.baseline.as_ref().unwrap();
        assert_eq!(baseline.caption, "a red square");
        assert_eq!(
            baseline.metrics,
            crate::eval::score_all(&["a red square"; 4], &references).unwrap()
        );
        assert!(
            baseline
                .summary(&run.metrics)
                .contains("\"a red square\", given to every image")
        );
    }

    /// Captions are compared as tokens (case and punctuation aside); ties go to the alphabetically
    /// first; only the train split counts.
    #[test]
    fn most_frequent_train_caption_counts_tokens_of_the_train_split() {
        let sample = |caps: &[&str], split| Sample {
            path: "x.png".into(),
            captions: caps.iter().map(|c| c.to_string()).collect(),
            split,
            labels: None,
        };
        let mut dataset = Dataset {
            source: "d.json".into(),
            format: Format::Csv,
            image_root: ".".into(),
            samples: vec![
                sample(&["A dog.", "a cat", "b bird"], Split::Train),
                sample(&["a dog", "b bird"], Split::Train),
                sample(&["a cat", "a cat", "a cat"], Split::Test),
            ],
            skipped: vec![],
            kinds: None,
        };
        assert_eq!(
            most_frequent_train_caption(&dataset).as_deref(),
            Some("a dog")
        );
        dataset.samples[0].captions[0] = "a fish".into();
        assert_eq!(
            most_frequent_train_caption(&dataset).as_deref(),
            Some("b bird")
        );
        dataset.samples.truncate(0);
        assert_eq!(most_frequent_train_caption(&dataset), None);
    }

    #[test]
    fn batch_size_and_beam_do_not_change_what_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, dataset) = fixture(dir.path());
        let one = |batch_size, beam_size| {
            let opts = EvalOptions {
                batch_size,
                decode: DecodeOptions {
                    beam_size,
                    max_steps: 8,
                    concept_weight: None,
                },
                progress: Some(ProgressBar::hidden()),
                ..Default::default()
            };
            let run = evaluate_model(&engine, &dataset, Split::Test, &opts).unwrap();
            assert_eq!(opts.progress.unwrap().position(), 5, "every image counts");
            run
        };
        let a = one(1, 1);
        let b = one(3, 1);
        let c = one(32, 3);
        let caps = |r: &EvalRun| {
            r.images
                .iter()
                .map(|i| i.caption.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(caps(&a), caps(&b));
        let (pa, pb) = (a.perplexity.unwrap(), b.perplexity.unwrap());
        assert!((pa - pb).abs() < 1e-4 * pa, "{pa} vs {pb}");
        assert_eq!(c.decode.beam_size, 3);
        assert_eq!(c.decode.max_len, 8);
        assert!((c.perplexity.unwrap() - pa).abs() < 1e-4 * pa);
    }

    /// Options that leave the beam size to the model (0, the default) decode with the model's
    /// `beam_size` from model.json, else greedily; a size the caller gives wins.
    #[test]
    fn the_models_own_beam_size_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, dataset) = fixture(dir.path());
        let run = |engine: &CaptionEngine, beam_size| {
            let opts = EvalOptions {
                decode: DecodeOptions {
                    beam_size,
                    ..Default::default()
                },
                ..Default::default()
            };
            evaluate_model(engine, &dataset, Split::Test, &opts).unwrap()
        };
        let caps = |r: &EvalRun| {
            r.images
                .iter()
                .map(|i| i.caption.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(EvalOptions::default().decode.beam_size, 0);
        assert_eq!(
            run(&engine, 0).decode.beam_size,
            1,
            "greedy without a setting"
        );
        engine.loaded.info.captioner.beam_size = Some(3);
        let own = run(&engine, 0);
        assert_eq!(own.decode.beam_size, 3);
        assert_eq!(caps(&own), caps(&run(&engine, 3)));
        assert_eq!(
            run(&engine, 1).decode.beam_size,
            1,
            "the caller's size wins"
        );
    }

    #[test]
    fn limit_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, mut dataset) = fixture(dir.path());
        let opts = EvalOptions {
            limit: Some(2),
            ..Default::default()
        };
        let run = evaluate_model(&engine, &dataset, Split::Test, &opts).unwrap();
        assert_eq!(run.dataset.images, 2);

        let e = evaluate_model(&engine, &dataset, Split::Val, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the val split has no images"), "{e}");
        assert!(e.contains("test 5"), "{e}");

        for s in &mut dataset.samples {
            s.path = "broken.png".into();
        }
        let e = evaluate_model(&engine, &dataset, Split::Test, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none of the 2 images"), "{e}");
    }
}
