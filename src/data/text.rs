//! Tokenizer and vocabulary.
//!
//! The tokenizer follows Karpathy's caption preprocessing: lowercase, split on anything that is not
//! a letter or digit, and keep an apostrophe only when it sits between two letters or digits
//! (`dog's` stays one token, `'quoted'` loses its quotes).
//!
//! The vocabulary follows NeuralTalk: index 0 is the sentence boundary, fed as the START word and
//! predicted as END; words seen fewer than `word_count_threshold` times are rare. Rare words map to
//! `<unk>` when the vocabulary has one, and are dropped otherwise (NeuralTalk's behaviour, used by
//! imported models).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Index of the boundary token: START when fed, END when predicted.
pub const BOUNDARY: usize = 0;
/// Name of the boundary token in capsearch's own vocabularies.
pub const BOUNDARY_WORD: &str = "<eos>";
/// Name of the unknown-word token.
pub const UNK_WORD: &str = "<unk>";
/// NeuralTalk's default minimum word count.
pub const DEFAULT_WORD_COUNT_THRESHOLD: usize = 5;

/// Splits a caption into lowercase tokens.
///
/// ```
/// use capsearch::data::text::tokenize;
/// assert_eq!(tokenize("A dog's ball, 'red'!"), ["a", "dog's", "ball", "red"]);
/// ```
pub fn tokenize(caption: &str) -> Vec<String> {
    let chars: Vec<char> = caption.chars().collect();
    let mut tokens = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if (c == '\'' || c == '\u{2019}')
            && !current.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        {
            current.push('\'');
        } else if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// A word ↔ index mapping with NeuralTalk's boundary convention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "VocabularyFile", into = "VocabularyFile")]
pub struct Vocabulary {
    words: Vec<String>,
    unk: Option<usize>,
    word_count_threshold: usize,
    index: HashMap<String, usize>,
}

/// On-disk form of a [`Vocabulary`] (`vocab.json`).
#[derive(Serialize, Deserialize)]
struct VocabularyFile {
    /// Index → word. Index 0 is the boundary token.
    words: Vec<String>,
    /// Index of the unknown-word token, if the vocabulary has one.
    unk: Option<usize>,
    word_count_threshold: usize,
}

impl From<VocabularyFile> for Vocabulary {
    fn from(f: VocabularyFile) -> Self {
        Vocabulary::from_words(f.words, f.unk, f.word_count_threshold)
    }
}

impl From<Vocabulary> for VocabularyFile {
    fn from(v: Vocabulary) -> Self {
        VocabularyFile {
            words: v.words,
            unk: v.unk,
            word_count_threshold: v.word_count_threshold,
        }
    }
}

impl Vocabulary {
    /// Builds a vocabulary from tokenised captions: the boundary, `<unk>` (when `with_unk`), then
    /// every word seen at least `threshold` times, most frequent first (ties alphabetical), so the
    /// result does not depend on caption order.
    pub fn build<'a, I>(captions: I, threshold: usize, with_unk: bool) -> Self
    where
        I: IntoIterator<Item = &'a [String]>,
    {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for caption in captions {
            for w in caption {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
        let mut kept: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(w, c)| c >= threshold.max(1) && w != BOUNDARY_WORD && w != UNK_WORD)
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut words = vec![BOUNDARY_WORD.to_string()];
        let unk = with_unk.then(|| {
            words.push(UNK_WORD.to_string());
            1
        });
        words.extend(kept.into_iter().map(|(w, _)| w.to_string()));
        Self::from_words(words, unk, threshold)
    }

    /// Builds a vocabulary from an index → word list (index 0 must be the boundary).
    pub fn from_words(words: Vec<String>, unk: Option<usize>, word_count_threshold: usize) -> Self {
        let index = words
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Vocabulary {
            words,
            unk,
            word_count_threshold,
            index,
        }
    }

    /// Number of entries, boundary (and `<unk>`) included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the vocabulary holds nothing but the boundary token.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= 1
    }

    pub fn word_count_threshold(&self) -> usize {
        self.word_count_threshold
    }

    /// Index of the unknown-word token, if any.
    pub fn unk(&self) -> Option<usize> {
        self.unk
    }

    /// Index → word list.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The index of a word, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }

    /// The word at an index.
    pub fn word(&self, id: usize) -> Option<&str> {
        self.words.get(id).map(String::as_str)
    }

    /// Token ids of a tokenised caption, without boundaries. Rare words become `<unk>` or are dropped.
    pub fn encode(&self, tokens: &[String]) -> Vec<usize> {
        tokens
            .iter()
            .filter_map(|t| self.id(t).or(self.unk))
            .collect()
    }

    /// The caption text of a sequence of ids, stopping at the first boundary.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .take_while(|&&i| i != BOUNDARY)
            .filter_map(|&i| self.word(i))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Writes `vocab.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::serialize(path, e))?;
        crate::util::write_atomic(path, json.as_bytes())
    }

    /// Reads `vocab.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let vocab: Vocabulary = serde_json::from_str(&text).map_err(|e| {
            Error::parse(
                path,
                Some(format!("line {}, column {}", e.line(), e.column())),
                e.to_string(),
            )
        })?;
        if vocab.words.is_empty() {
            return Err(Error::parse(path, None, "vocabulary has no words"));
        }
        if vocab.unk.is_some_and(|u| u >= vocab.words.len()) {
            return Err(Error::parse(
                path,
                Some("field unk".into()),
                "unk index out of range",
            ));
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn tokenizer_matches_karpathy_rules() {
        assert_eq!(toks("A Dog runs."), ["a", "dog", "runs"]);
        assert_eq!(toks("  two-dogs,play  "), ["two", "dogs", "play"]);
        assert_eq!(
            toks("the girl's hat isn't red"),
            ["the", "girl's", "hat", "isn't", "red"]
        );
        assert_eq!(toks("'quoted' dogs' toys"), ["quoted", "dogs", "toys"]);
        assert_eq!(toks("Ünïcode café NAÏVE"), ["ünïcode", "café", "naïve"]);
        assert_eq!(toks("!!! ..."), Vec::<String>::new());
        assert_eq!(toks("3 dogs"), ["3", "dogs"]);
    }

    #[test]
    fn vocabulary_threshold_order_and_roundtrip() {
        let caps: Vec<Vec<String>> = ["a red dog", "a red cat", "a dog", "zebra"]
            .iter()
            .map(|s| toks(s))
            .collect();
        let v = Vocabulary::build(caps.iter().map(|c| c.as_slice()), 2, true);
        assert_eq!(v.words(), ["<eos>", "<unk>", "a", "dog", "red"]);
        assert_eq!(v.encode(&toks("a zebra dog")), [2, 1, 3]);
        assert_eq!(v.decode(&[2, 4, 3, 0, 2]), "a red dog");
        let no_unk = Vocabulary::build(caps.iter().map(|c| c.as_slice()), 2, false);
        assert_eq!(no_unk.encode(&toks("a zebra dog")), [1, 2]);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        v.save(&p).unwrap();
        assert_eq!(Vocabulary::load(&p).unwrap(), v);
    }

    #[test]
    fn corrupt_vocabulary_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        std::fs::write(&p, "{\n \"words\": [1,\n").unwrap();
        let err = Vocabulary::load(&p).unwrap_err().to_string();
        assert!(err.contains("vocab.json") && err.contains("line"), "{err}");
    }
}
