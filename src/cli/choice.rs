//! Library enums as flag values. The library types know nothing of clap: each one is offered on
//! the command line through [`Choice`] (its names and a line of help per value, shown by
//! `--help` exactly as clap's `ValueEnum` would) and parsed by [`ChoiceParser`]
//! (`#[arg(value_parser = ChoiceParser::<T>::new())]`). A `default_value_t` uses the type's
//! `Display`, which prints the same names.

use std::ffi::OsStr;
use std::marker::PhantomData;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::bench::BenchKind;
use crate::data::formats::Format;
use crate::model::label_head::LabelValues;
use crate::model::pooling::Pooling;
use crate::model::precision::Precision;
use crate::search::BackendKind;
use crate::search::fusion::{FusionMethod, SearchMode};

/// A library enum that can be a flag value.
pub trait Choice: Copy + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const ALL: &'static [Self];
    /// The value's name on the command line.
    fn name(self) -> &'static str;
    /// One line of help for the value.
    fn help(self) -> &'static str;
}

/// Parses a flag value into a [`Choice`]; lists the values (with their help) in `--help` and in
/// the error for an unknown value.
#[derive(Debug)]
pub struct ChoiceParser<T>(PhantomData<T>);

impl<T> Clone for ChoiceParser<T> {
    fn clone(&self) -> Self {
        ChoiceParser(PhantomData)
    }
}

impl<T: Choice> ChoiceParser<T> {
    pub fn new() -> Self {
        ChoiceParser(PhantomData)
    }

    fn values() -> impl Iterator<Item = PossibleValue> {
        T::ALL
            .iter()
            .map(|v| PossibleValue::new(v.name()).help(v.help()))
    }
}

impl<T: Choice> Default for ChoiceParser<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let name = PossibleValuesParser::new(Self::values()).parse_ref(cmd, arg, value)?;
        T::ALL
            .iter()
            .copied()
            .find(|v| v.name() == name)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Self::values()))
    }
}

impl Choice for Format {
    const ALL: &'static [Self] = &[
        Format::Flickr8k,
        Format::Karpathy,
        Format::Coco,
        Format::Custom,
        Format::Csv,
        Format::Folder,
    ];
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn help(self) -> &'static str {
        match self {
            Format::Flickr8k => {
                "Flickr8k as distributed: `Flickr8k.token.txt` + `Flickr_8k.{train,dev,test}Images.txt`"
            }
            Format::Karpathy => {
                "Karpathy's split JSON (`dataset_flickr8k.json`, `dataset_coco.json`, ...)"
            }
            Format::Coco => "COCO captions JSON (`captions_train2014.json`, ...)",
            Format::Custom => {
                "The original project's `custom_dataset.json` (`images[].{imgurl, description}`)"
            }
            Format::Csv => "CSV with a header `image,caption[,split]`",
            Format::Folder => "An image folder with a sidecar `.txt` caption file per image",
        }
    }
}

impl Choice for Precision {
    const ALL: &'static [Self] = &[Precision::F32, Precision::F16];
    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
    fn help(self) -> &'static str {
        match self {
            Precision::F32 => "32-bit floats, as trained",
            Precision::F16 => {
                "16-bit floats: half the memory for the weights, at a small cost in accuracy"
            }
        }
    }
}

impl Choice for Pooling {
    const ALL: &'static [Self] = &[Pooling::Mean, Pooling::Max, Pooling::MeanMax, Pooling::Gem];
    fn name(self) -> &'static str {
        Pooling::name(self)
    }
    fn help(self) -> &'static str {
        match self {
            Pooling::Mean => "each channel's average over the cells (the networks' own feature)",
            Pooling::Max => "each channel's largest value over the cells",
            Pooling::MeanMax => "the average and the largest value side by side (twice the values)",
            Pooling::Gem => "each channel's generalised mean of exponent 3 over the cells",
        }
    }
}

impl Choice for LabelValues {
    const ALL: &'static [Self] = &[LabelValues::SquareRoot, LabelValues::Probability];
    fn name(self) -> &'static str {
        LabelValues::name(self)
    }
    fn help(self) -> &'static str {
        match self {
            LabelValues::SquareRoot => {
                "the square root of each label's probability: unlikely labels weigh more"
            }
            LabelValues::Probability => "each label's probability",
        }
    }
}

impl Choice for BackendKind {
    const ALL: &'static [Self] = &[BackendKind::Embedded, BackendKind::Elasticsearch];
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn help(self) -> &'static str {
        match self {
            BackendKind::Embedded => {
                "A tantivy index in a folder (`--index-path`); needs no server"
            }
            BackendKind::Elasticsearch => "An Elasticsearch 8 cluster (`--es-url`, `--es-index`)",
        }
    }
}

impl Choice for SearchMode {
    const ALL: &'static [Self] = &SearchMode::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn help(self) -> &'static str {
        match self {
            SearchMode::Caption => "Text search with the image's caption over the indexed captions",
            SearchMode::Visual => "Nearest image embeddings (cosine similarity)",
            SearchMode::Hybrid => {
                "Caption and visual search fused (--fusion; the default when the index holds vectors)"
            }
        }
    }
}

impl Choice for FusionMethod {
    const ALL: &'static [Self] = &FusionMethod::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn help(self) -> &'static str {
        match self {
            FusionMethod::Rrf => "Weighted reciprocal rank (k = 3): only the ranks count",
            FusionMethod::CombsumMinmax => "Weighted sum of the min-max normalised scores",
            FusionMethod::CombsumZ => "Weighted sum of the z-normalised scores",
            FusionMethod::CombmnzMinmax => {
                "Min-max CombSUM times the number of lists the image is in"
            }
            FusionMethod::CombmnzZ => "z-score CombSUM times the number of lists the image is in",
        }
    }
}

impl Choice for BenchKind {
    const ALL: &'static [Self] = &[
        BenchKind::Train,
        BenchKind::Caption,
        BenchKind::Features,
        BenchKind::Search,
        BenchKind::Vectors,
        BenchKind::Serve,
        BenchKind::All,
    ];
    fn name(self) -> &'static str {
        match self {
            BenchKind::Train => "train",
            BenchKind::Caption => "caption",
            BenchKind::Features => "features",
            BenchKind::Search => "search",
            BenchKind::Vectors => "vectors",
            BenchKind::Serve => "serve",
            BenchKind::All => "all",
        }
    }
    fn help(self) -> &'static str {
        match self {
            BenchKind::Train => "Training images/s on the `shapes` model, and a batch-size sweep",
            BenchKind::Caption => {
                "NeuralTalk-sized caption latency and throughput, and VGG-16's forward pass"
            }
            BenchKind::Features => {
                "EfficientNet-Lite0 photo features (images/s at 224×224, batch 1 and 16) against PyTorch on the same weights"
            }
            BenchKind::Search => {
                "Embedded search: indexing docs/s, query latency, index size; then `vectors`"
            }
            BenchKind::Vectors => {
                "Embedded visual and hybrid search over 1280-d vectors (--vectors, --vector-storage): build time, peak RSS, p50/p99 latency, recall@10"
            }
            BenchKind::Serve => {
                "`capsearch serve` under load: requests/s, p50/p99 latency, errors and the server's peak RSS on `POST /api/search` (images) and `GET /api/query`"
            }
            BenchKind::All => "All of the above",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_round_trip<T: Choice + std::fmt::Display + PartialEq + std::fmt::Debug>() {
        for v in T::ALL {
            assert_eq!(v.to_string(), v.name(), "Display must print the flag name");
            let cmd = clap::Command::new("t");
            let parsed = ChoiceParser::<T>::new()
                .parse_ref(&cmd, None, OsStr::new(v.name()))
                .unwrap();
            assert_eq!(parsed, *v);
        }
        let cmd = clap::Command::new("t");
        assert!(
            ChoiceParser::<T>::new()
                .parse_ref(&cmd, None, OsStr::new("nope"))
                .is_err()
        );
    }

    #[test]
    fn every_choice_parses_its_own_names() {
        names_round_trip::<Format>();
        names_round_trip::<Precision>();
        names_round_trip::<BackendKind>();
        names_round_trip::<SearchMode>();
    }
}
