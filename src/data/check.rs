//! `dataset check`: a summary of a loaded dataset, and whether it can be trained on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::formats::Format;
use super::text::{Vocabulary, tokenize};
use super::{Dataset, Skipped, Split};
use crate::util::percentile;

/// Minimum, maximum and mean of a count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    pub min: usize,
    pub max: usize,
    pub mean: f64,
}

/// Caption lengths in tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    pub min: usize,
    pub max: usize,
    pub mean: f64,
    pub median: usize,
    pub p90: usize,
    /// Length → number of captions.
    pub histogram: BTreeMap<usize, usize>,
}

/// What `dataset check` reports. Serialised as the `--json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub format: Format,
    pub source: PathBuf,
    pub image_root: PathBuf,
    /// Usable images.
    pub images: usize,
    /// Captions of the usable images.
    pub captions: usize,
    pub captions_per_image: Spread,
    /// Split name → number of images (every split listed, empty ones as 0).
    pub splits: BTreeMap<String, usize>,
    /// Vocabulary size built from the training captions at `threshold`, boundary and `<unk>`
    /// included (what training would use).
    pub vocabulary: usize,
    pub threshold: usize,
    pub caption_length: LengthStats,
    /// Entries left out (missing or unreadable images, images without captions, ...).
    pub skipped: Vec<Skipped>,
    /// Why the dataset cannot be trained on; empty when it can.
    pub problems: Vec<String>,
}

impl Summary {
    /// True when nothing stops training on this dataset.
    pub fn trainable(&self) -> bool {
        self.problems.is_empty()
    }

    /// The human-readable summary `dataset check` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let split_list = Split::ALL
            .iter()
            .map(|sp| {
                format!(
                    "{} {}",
                    sp,
                    self.splits.get(sp.as_str()).copied().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(s, "dataset     {}", self.source.display());
        let _ = writeln!(s, "format      {}", self.format);
        let _ = writeln!(s, "image root  {}", self.image_root.display());
        let _ = writeln!(s, "images      {} ({split_list})", self.images);
        let _ = writeln!(
            s,
            "captions    {} ({:.2} per image, min {}, max {})",
            self.captions,
            self.captions_per_image.mean,
            self.captions_per_image.min,
            self.captions_per_image.max
        );
        let _ = writeln!(
            s,
            "vocabulary  {} entries at threshold {} (training captions; <eos> and <unk> included)",
            self.vocabulary, self.threshold
        );
        let l = &self.caption_length;
        let _ = writeln!(
            s,
            "caption length (tokens): min {}, median {}, mean {:.2}, p90 {}, max {}",
            l.min, l.median, l.mean, l.p90, l.max
        );
        let peak = l.histogram.values().copied().max().unwrap_or(1).max(1);
        for (len, count) in &l.histogram {
            let bar = (count * 40).div_ceil(peak);
            let _ = writeln!(s, "  {len:>3} | {:<40} {count}", "#".repeat(bar));
        }
        let _ = writeln!(s, "skipped     {}", self.skipped.len());
        for k in self.skipped.iter().take(20) {
            let _ = writeln!(s, "  {}: {}", k.entry, k.reason);
        }
        if self.skipped.len() > 20 {
            let _ = writeln!(
                s,
                "  ... and {} more (--json lists all)",
                self.skipped.len() - 20
            );
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "ok: the dataset can be trained on");
        } else {
            for p in &self.problems {
                let _ = writeln!(s, "problem: {p}");
            }
        }
        s
    }
}

/// Summarises a dataset; the vocabulary is built from the training captions at `threshold`.
pub fn summarize(dataset: &Dataset, threshold: usize) -> Summary {
    let mut splits: BTreeMap<String, usize> = Split::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut lengths = Vec::new();
    let mut train_tokens: Vec<Vec<String>> = Vec::new();
    let mut per_image = Vec::with_capacity(dataset.samples.len());
    for sample in &dataset.samples {
        *splits.entry(sample.split.as_str().to_string()).or_default() += 1;
        per_image.push(sample.captions.len());
        for c in &sample.captions {
            let toks = tokenize(c);
            lengths.push(toks.len());
            if sample.split == Split::Train {
                train_tokens.push(toks);
            }
        }
    }
    let vocab = Vocabulary::build(train_tokens.iter().map(|t| t.as_slice()), threshold, true);
    lengths.sort_unstable();
    let mut histogram = BTreeMap::new();
    for &l in &lengths {
        *histogram.entry(l).or_default() += 1;
    }
    let mean = |v: &[usize]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<usize>() as f64 / v.len() as f64
        }
    };
    let caption_length = LengthStats {
        min: lengths.first().copied().unwrap_or(0),
        max: lengths.last().copied().unwrap_or(0),
        mean: mean(&lengths),
        median: percentile(&lengths, 50.0),
        p90: percentile(&lengths, 90.0),
        histogram,
    };

    let mut problems = Vec::new();
    let train = splits.get("train").copied().unwrap_or(0);
    if dataset.samples.is_empty() {
        problems.push("the dataset has no usable images".to_string());
    } else if train == 0 {
        problems.push(
            "no images in the train split; give some entries split `train` (or none, for a seeded split)"
                .to_string(),
        );
    }
    let real_words = vocab.len().saturating_sub(2);
    if train > 0 && real_words == 0 {
        problems.push(format!(
            "no word appears at least {threshold} times in the training captions; lower --threshold"
        ));
    }
    Summary {
        format: dataset.format,
        source: dataset.source.clone(),
        image_root: dataset.image_root.clone(),
        images: dataset.samples.len(),
        captions: lengths.len(),
        captions_per_image: Spread {
            min: per_image.iter().copied().min().unwrap_or(0),
            max: per_image.iter().copied().max().unwrap_or(0),
            mean: mean(&per_image),
        },
        splits,
        vocabulary: vocab.len(),
        threshold,
        caption_length,
        skipped: dataset.skipped.clone(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Sample;

    fn dataset(samples: Vec<Sample>) -> Dataset {
        Dataset {
            format: Format::Csv,
            source: "x.csv".into(),
            image_root: ".".into(),
            samples,
            skipped: vec![Skipped {
                entry: "gone.jpg".into(),
                reason: "missing".into(),
            }],
            kinds: None,
        }
    }

    fn sample(path: &str, caps: &[&str], split: Split) -> Sample {
        Sample {
            path: path.into(),
            captions: caps.iter().map(|s| s.to_string()).collect(),
            split,
            labels: None,
        }
    }

    #[test]
    fn counts_lengths_and_vocabulary() {
        let ds = dataset(vec![
            sample("a", &["a dog", "a dog runs"], Split::Train),
            sample("b", &["a cat sits here now"], Split::Train),
            sample("c", &["a bird"], Split::Test),
        ]);
        let s = summarize(&ds, 2);
        assert_eq!(s.images, 3);
        assert_eq!(s.captions, 4);
        assert_eq!(s.splits["train"], 2);
        assert_eq!(s.splits["val"], 0);
        assert_eq!(s.splits["test"], 1);
        // Train words seen twice or more: "a" (3), "dog" (2); plus <eos> and <unk>.
        assert_eq!(s.vocabulary, 4);
        assert_eq!(s.caption_length.min, 2);
        assert_eq!(s.caption_length.max, 5);
        assert_eq!(s.caption_length.median, 2);
        assert_eq!(s.caption_length.histogram[&2], 2);
        assert_eq!(s.captions_per_image.max, 2);
        assert!(s.trainable(), "{:?}", s.problems);
        let text = s.to_text();
        assert!(text.contains("train 2, val 0, test 1"), "{text}");
        assert!(text.contains("gone.jpg: missing"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "format",
            "images",
            "captions",
            "splits",
            "vocabulary",
            "skipped",
            "caption_length",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["format"], "csv");
        assert_eq!(json["splits"]["train"], 2);
    }

    #[test]
    fn untrainable_datasets_say_why() {
        let no_train = summarize(&dataset(vec![sample("a", &["a dog"], Split::Test)]), 1);
        assert!(!no_train.trainable());
        assert!(no_train.problems[0].contains("train split"));
        let rare = summarize(&dataset(vec![sample("a", &["a dog"], Split::Train)]), 5);
        assert!(
            rare.problems[0].contains("--threshold"),
            "{:?}",
            rare.problems
        );
        assert!(!summarize(&dataset(vec![]), 5).trainable());
    }
}
