//! Fitting a model's guide head (see [`crate::model::guide_head`]) on a split's cached features:
//! at the start of training (frozen backbones), and afterwards for an existing model
//! (`capsearch fit-guide`, [`add_guide_head`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;

use super::feature_cache::{self, ExtractOptions, FeatureCache, SplitFeatures};
use crate::data::labels::Lexicon;
use crate::data::text::{Vocabulary, tokenize};
use crate::data::{Dataset, Sample, Split};
use crate::error::{Error, Result};
use crate::model::artifact::{self, load_model};
use crate::model::backbone::Backbone;
use crate::model::captioner::EncoderConfig;
use crate::model::guide_head::{
    FittedHead, GuideFit, GuideHead, GuideHeadInfo, KindTargets, fit_guide_head, word_shares,
};
use crate::model::precision::Precision;

/// Fits a guide head on a split's cached features and each image's captions (word ids, in the
/// features' sample order) as ids of `words`; with the dataset's `lexicon`, the kind nouns as
/// `fit.kind_targets` says.
pub fn fit_on_features(
    features: &SplitFeatures,
    captions: &[Vec<Vec<usize>>],
    words: &Vocabulary,
    lexicon: Option<&Lexicon>,
    fit: &GuideFit,
    fitted_on: &str,
) -> Result<(FittedHead, GuideHeadInfo)> {
    if captions.len() != features.len() {
        return Err(Error::Internal(format!(
            "guide head: {} images of captions for {} features",
            captions.len(),
            features.len()
        )));
    }
    let started = Instant::now();
    let vocab = words.len();
    let mut targets = word_shares(captions, vocab);
    if let Some(lexicon) = lexicon {
        set_kind_targets(
            &mut targets,
            &features.samples,
            lexicon,
            words,
            fit.kind_targets,
        );
    }
    let head = fit_guide_head(
        &features.values,
        features.dim,
        &targets,
        vocab,
        fit,
        fitted_on,
    )?;
    tracing::info!(
        images = features.len(),
        epochs = fit.epochs,
        loss = head.loss,
        seconds = started.elapsed().as_secs_f64(),
        "fitted the guide head on the standardised features"
    );
    let info = GuideHeadInfo {
        fitted_on: fitted_on.to_string(),
        images: features.len(),
        fit: fit.clone(),
    };
    Ok((head, info))
}

/// With [`KindTargets::Presence`], sets the target of the last word of each of a labelled
/// thing's kind names to 1; images without labels, and names whose last word the vocabulary
/// lacks, keep the caption shares.
fn set_kind_targets(
    targets: &mut [f32],
    samples: &[Sample],
    lexicon: &Lexicon,
    words: &Vocabulary,
    mode: KindTargets,
) {
    let vocab = words.len();
    if mode == KindTargets::Shares || vocab == 0 {
        return;
    }
    let names: std::collections::BTreeMap<&str, Vec<usize>> = lexicon
        .kinds
        .iter()
        .map(|(kind, k)| {
            let mut ids: Vec<usize> = k
                .names
                .iter()
                .filter_map(|name| words.id(tokenize(name).last()?))
                .filter(|&w| w < vocab)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            (kind.as_str(), ids)
        })
        .collect();
    for (row, sample) in targets.chunks_exact_mut(vocab).zip(samples) {
        let Some(labels) = &sample.labels else {
            continue;
        };
        for thing in &labels.objects {
            for &w in names.get(thing.kind.as_str()).into_iter().flatten() {
                row[w] = 1.0;
            }
        }
    }
}

/// What [`add_guide_head`] did.
#[derive(Debug, Clone)]
pub struct AddedGuideHead {
    pub info: GuideHeadInfo,
    /// The last epoch's mean loss.
    pub loss: f64,
    pub seconds: f64,
    /// The feature cache read.
    pub cache: PathBuf,
}

/// Fits a guide head for the model in `dir` on the `split` images of `dataset` (their features
/// from the dataset's feature cache of the model's backbone, `cache_root` or the default beside
/// the dataset; computed and cached when missing) and saves it in the model (`model.bpk` and
/// `guide_head` in model.json), replacing one fitted before. Only models on a whole frozen
/// backbone (precomputed features, no fine-tuned blocks) can have one.
pub fn add_guide_head(
    dir: &Path,
    dataset: &Dataset,
    split: Split,
    cache_root: Option<&Path>,
    fit: &GuideFit,
    device: &Device,
) -> Result<AddedGuideHead> {
    let started = Instant::now();
    let mut loaded = load_model(dir, device)?;
    if !matches!(
        loaded.info.captioner.encoder,
        EncoderConfig::Precomputed { .. }
    ) {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "a guide head reads a frozen backbone's features; this model trains its own CNN or fine-tunes backbone blocks".into(),
        });
    }
    let Some((backbone, _)) = Backbone::of_model_dir(dir, &loaded.info, device, Precision::F32)?
    else {
        return Err(Error::Model {
            path: dir.to_path_buf(),
            message: "the model folder has no backbone (backbone.json) to compute features with"
                .into(),
        });
    };
    let root = cache_root.map_or_else(|| feature_cache::default_root(dataset), Path::to_path_buf);
    let mut cache = FeatureCache::open(&root, &backbone)?;
    let samples: Vec<&Sample> = dataset.split(split).collect();
    let features = cache.features(
        &backbone,
        dataset,
        &samples,
        &split.to_string(),
        &ExtractOptions::default(),
        device,
    )?;
    if features.len() < 2 {
        return Err(Error::Dataset {
            path: dataset.source.clone(),
            message: format!(
                "the {split} split has {} readable images; a guide head needs at least 2",
                features.len()
            ),
        });
    }
    let vocab = &loaded.vocab;
    let captions: Vec<Vec<Vec<usize>>> = features
        .samples
        .iter()
        .map(|s| {
            s.captions
                .iter()
                .map(|c| vocab.encode(&tokenize(c)))
                .collect()
        })
        .collect();
    let fitted_on = format!("{} ({split} split)", dataset.source.display());
    let (head, info) = fit_on_features(
        &features,
        &captions,
        vocab,
        dataset.kinds.as_ref(),
        fit,
        &fitted_on,
    )?;
    loaded.model.guide_head = Some(GuideHead::from_fit(&head, device));
    loaded.info.captioner.guide_head = Some(info.clone());
    artifact::save_weights(loaded.model, &dir.join(artifact::WEIGHTS))?;
    loaded.info.save(dir)?;
    Ok(AddedGuideHead {
        info,
        loss: head.loss,
        seconds: started.elapsed().as_secs_f64(),
        cache: cache.dir().to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::{LabelledObject, Labels, SizeClass};

    fn thing(kind: &str) -> LabelledObject {
        LabelledObject {
            kind: kind.into(),
            stamp: None,
            color: None,
            bbox: [0.0, 0.0, 0.5, 0.5],
            size: SizeClass::Large,
            unseen: false,
            cell: None,
        }
    }

    /// Presence targets give the last word of each name of a kind that is there 1, and leave
    /// every other word (and unlabelled images) with its caption share.
    #[test]
    fn presence_targets_mark_the_kind_nouns_of_the_things_there() {
        let words: Vec<String> = [
            "<end>", "a", "pair", "of", "scissors", "owl", "owls", "bird", "red",
        ]
        .map(String::from)
        .to_vec();
        let vocab = Vocabulary::from_words(words, None, 1);
        let v = vocab.len();
        let mut lexicon = Lexicon::default();
        lexicon.add("scissors", ["pair of scissors", "scissors"], []);
        lexicon.add("owl", ["owl", "owls", "red owl"], ["bird"]);
        let sample = |objects: Option<Vec<LabelledObject>>| Sample {
            path: "x.jpg".into(),
            captions: vec!["a bird".into()],
            split: Split::Train,
            labels: objects.map(|objects| Labels {
                objects,
                ..Default::default()
            }),
        };
        let samples = [
            sample(Some(vec![thing("owl")])),
            sample(Some(vec![thing("scissors"), thing("unknown kind")])),
            sample(None),
        ];
        let shares = vec![0.25f32; 3 * v];
        let id = |w: &str| vocab.id(w).unwrap();
        let mut targets = shares.clone();
        set_kind_targets(
            &mut targets,
            &samples,
            &lexicon,
            &vocab,
            KindTargets::Shares,
        );
        assert_eq!(targets, shares, "shares: unchanged");
        set_kind_targets(
            &mut targets,
            &samples,
            &lexicon,
            &vocab,
            KindTargets::Presence,
        );
        let ones = |row: usize| -> Vec<&str> {
            (0..v)
                .filter(|&w| targets[row * v + w] == 1.0)
                .map(|w| vocab.word(w).unwrap())
                .collect()
        };
        assert_eq!(ones(0), ["owl", "owls"], "red owl's last word is owl");
        assert_eq!(ones(1), ["scissors"], "not pair, not of");
        assert!(ones(2).is_empty(), "no labels: shares");
        assert_eq!(targets[id("bird")], 0.25, "a category keeps its share");
        assert_eq!(targets[v + id("pair")], 0.25);
    }
}
