//! The English analysis both backends share, and the rule that picks the caption shown for a hit.
//!
//! The embedded index analyses captions with [`english_analyzer`]; Elasticsearch uses its built-in
//! `english` analyzer, which does the same steps (lower-casing, Lucene's 33 English stop words,
//! Porter stemming; tantivy's stemmer is the Snowball "Porter2" variant, which agrees on the words
//! captions use). [`best_caption`] runs on the client for both backends, so the caption a hit shows
//! does not depend on the backend.

use std::cell::RefCell;
use std::collections::HashSet;

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
    TokenStream,
};

/// Name under which the embedded index registers [`english_analyzer`].
pub const ANALYZER_NAME: &str = "capsearch_english";

/// Splits on non-alphanumerics, drops tokens over 40 bytes, lower-cases, removes English stop
/// words and stems.
pub fn english_analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder
            .filter(stop)
            .filter(Stemmer::new(Language::English))
            .build(),
        // tantivy ships the English list with its default features; without it, stem only.
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

thread_local! {
    /// One analyzer per thread: building one (its stop-word set, its stemmer) costs more than
    /// analysing a caption, and a search analyses the caption of every hit.
    static ANALYZER: RefCell<TextAnalyzer> = RefCell::new(english_analyzer());
}

/// The searchable terms of a text, in order (duplicates kept).
pub fn analyze(text: &str) -> Vec<String> {
    ANALYZER.with_borrow_mut(|analyzer| {
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    })
}

/// The neighbouring word pairs of a text: each two analysed words that stood side by side (no
/// stop word or other token between them), as `(analysed, surface)`: the two analysed terms
/// (`["red", "circl"]`, what the embedded index's phrase query takes) and the two words as
/// written, lower-cased (`"red circle"`, what Elasticsearch's `match_phrase` analyses itself).
/// Distinct pairs, in order of first appearance.
pub fn word_pairs(text: &str) -> Vec<([String; 2], String)> {
    let positioned = |mut analyzer: TextAnalyzer| {
        let mut stream = analyzer.token_stream(text);
        let mut out: Vec<(usize, String)> = Vec::new();
        while stream.advance() {
            let token = stream.token();
            out.push((token.position, token.text.clone()));
        }
        out
    };
    let analysed = positioned(english_analyzer());
    // The same steps without the stemmer: the same tokens, one for one.
    let surface = positioned(match StopWordFilter::new(Language::English) {
        Some(stop) => TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(stop)
            .build(),
        None => TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .build(),
    });
    let mut seen = HashSet::new();
    analysed
        .windows(2)
        .zip(surface.windows(2))
        .filter(|(a, _)| a[1].0 == a[0].0 + 1)
        .map(|(a, w)| {
            (
                [a[0].1.clone(), a[1].1.clone()],
                format!("{} {}", w[0].1, w[1].1),
            )
        })
        .filter(|(a, _)| seen.insert(a.clone()))
        .collect()
}

/// The caption of a document that best matches a query: the one containing the most distinct
/// query terms; among equals, the one where they make up the largest share of its terms; then the
/// first. Falls back to the first non-blank caption when none matches.
pub fn best_caption(query: &str, captions: &[String]) -> String {
    let mut shown = captions.iter().filter(|c| !c.trim().is_empty());
    if let (Some(only), None) = (shown.next(), shown.next()) {
        // One caption to show: no need to analyse anything.
        return only.clone();
    }
    let wanted: HashSet<String> = analyze(query).into_iter().collect();
    let mut best: Option<(usize, f64, &String)> = None;
    for caption in captions.iter().filter(|c| !c.trim().is_empty()) {
        let terms: HashSet<String> = analyze(caption).into_iter().collect();
        let matched = terms.intersection(&wanted).count();
        let share = if terms.is_empty() {
            0.0
        } else {
            matched as f64 / terms.len() as f64
        };
        let better = match best {
            None => true,
            Some((m, s, _)) => matched > m || (matched == m && share > s),
        };
        if better {
            best = Some((matched, share, caption));
        }
    }
    best.map(|(_, _, c)| c.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_lowercases_removes_stop_words_and_stems() {
        assert_eq!(
            analyze("The Dogs are RUNNING on the grass."),
            vec!["dog", "run", "grass"]
        );
        assert!(analyze("the a an of").is_empty());
        assert!(analyze("").is_empty());
    }

    #[test]
    fn word_pairs_are_neighbours_without_a_stop_word_between() {
        let pairs = word_pairs("A large Red circle and a blue circle, a large red circle");
        let analysed: Vec<String> = pairs.iter().map(|(a, _)| a.join(" ")).collect();
        assert_eq!(analysed, ["larg red", "red circl", "blue circl"]);
        let surface: Vec<&str> = pairs.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(surface, ["large red", "red circle", "blue circle"]);
        assert!(word_pairs("circle").is_empty());
        assert!(word_pairs("").is_empty());
    }

    #[test]
    fn best_caption_prefers_more_query_terms_then_tighter_captions() {
        let captions = vec![
            "a cat sleeps on a sofa".to_string(),
            "two dogs run across the grass in a park".to_string(),
            "a dog runs on grass".to_string(),
        ];
        assert_eq!(best_caption("dog running grass", &captions), captions[2]);
        assert_eq!(best_caption("sleeping cats", &captions), captions[0]);
        // Nothing matches: the first caption.
        assert_eq!(best_caption("submarine", &captions), captions[0]);
        // Blank captions are never shown.
        assert_eq!(
            best_caption("x", &[" ".to_string(), "a boat".to_string()]),
            "a boat"
        );
        // The one caption there is, whatever the query.
        let one = ["a red circle".to_string(), String::new()];
        assert_eq!(best_caption("a blue square", &one), "a red circle");
        assert_eq!(best_caption("", &one), "a red circle");
        assert_eq!(best_caption("boat", &[" ".to_string()]), "");
    }
}
