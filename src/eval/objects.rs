//! Object metrics for datasets with object labels: does a caption name the things in its image,
//! and are the things it names there?
//!
//! A caption *names* a kind when its tokens contain one of the kind's names from the dataset's
//! [`Lexicon`] (singular, plural, synonym, exemplar phrase), or a category name that covers the
//! kind ("bird" covers every kind whose category it is). Names are matched as token sequences,
//! left to right, longest first, so "sea lion" is one name and not also "lion".
//!
//! - **Object recall**: the share of an image's things (labelled objects, each counted) whose kind
//!   the caption names.
//! - **Object precision**: the share of the distinct names in a caption (a kind, or a category,
//!   each counted once per caption however often or in whichever number it is said) that fit
//!   something in the image; a category fits when any thing present is of a kind it covers.
//!
//! Both are micro-averaged over a split (summed counts, one division). Recall is also reported
//! apart for things drawn from seen and from unseen exemplars (`unseen: true` labels).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::data::labels::{LabelledObject, Lexicon};

/// A name as tokens, and the kinds (indices) it covers.
type Name = (Vec<String>, Vec<usize>);

/// A lexicon made ready for matching token sequences.
#[derive(Debug, Clone)]
pub struct ObjectMatcher {
    /// Kind names, sorted; indices below refer to them.
    kinds: Vec<String>,
    /// First token → names starting with it: (tokens, kinds covered), longest first.
    names: HashMap<String, Vec<Name>>,
}

impl ObjectMatcher {
    /// Prepares `lexicon`, tokenizing each name with `tokenize` (the tokenizer the captions get).
    pub fn new(lexicon: &Lexicon, tokenize: impl Fn(&str) -> Vec<String>) -> Self {
        let kinds: Vec<String> = lexicon.kinds.keys().cloned().collect();
        let mut covered: HashMap<Vec<String>, BTreeSet<usize>> = HashMap::new();
        for (i, names) in lexicon.kinds.values().enumerate() {
            for name in names.names.iter().chain(&names.category) {
                let tokens = tokenize(name);
                if !tokens.is_empty() {
                    covered.entry(tokens).or_default().insert(i);
                }
            }
        }
        let mut names: HashMap<String, Vec<Name>> = HashMap::new();
        for (tokens, kinds) in covered {
            names
                .entry(tokens[0].clone())
                .or_default()
                .push((tokens, kinds.into_iter().collect()));
        }
        for list in names.values_mut() {
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        }
        ObjectMatcher { kinds, names }
    }

    /// The distinct names a caption uses, each as the sorted kinds it covers.
    pub fn mentions(&self, tokens: &[String]) -> BTreeSet<Vec<usize>> {
        let mut found = BTreeSet::new();
        let mut i = 0;
        while i < tokens.len() {
            let hit = self
                .names
                .get(&tokens[i])
                .and_then(|list| list.iter().find(|(name, _)| tokens[i..].starts_with(name)));
            match hit {
                Some((name, kinds)) => {
                    found.insert(kinds.clone());
                    i += name.len();
                }
                None => i += 1,
            }
        }
        found
    }

    /// Counts of one caption (its tokens) against the things of its image.
    pub fn count(&self, tokens: &[String], objects: &[LabelledObject]) -> ObjectCounts {
        let mentions = self.mentions(tokens);
        let named: BTreeSet<usize> = mentions.iter().flatten().copied().collect();
        let present: BTreeSet<usize> = objects
            .iter()
            .filter_map(|o| self.kinds.binary_search(&o.kind).ok())
            .collect();
        let mut c = ObjectCounts {
            mentions: mentions.len(),
            correct_mentions: mentions
                .iter()
                .filter(|m| m.iter().any(|k| present.contains(k)))
                .count(),
            ..ObjectCounts::default()
        };
        for o in objects {
            let hit = self
                .kinds
                .binary_search(&o.kind)
                .is_ok_and(|k| named.contains(&k));
            if o.unseen {
                c.unseen_objects += 1;
                c.unseen_named += usize::from(hit);
            } else {
                c.seen_objects += 1;
                c.seen_named += usize::from(hit);
            }
        }
        c
    }
}

/// Summed counts behind the object metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    pub seen_objects: usize,
    pub seen_named: usize,
    pub unseen_objects: usize,
    pub unseen_named: usize,
    /// Distinct names used by the captions (per caption), and those that fit the image.
    pub mentions: usize,
    pub correct_mentions: usize,
}

impl std::ops::AddAssign for ObjectCounts {
    fn add_assign(&mut self, o: Self) {
        self.seen_objects += o.seen_objects;
        self.seen_named += o.seen_named;
        self.unseen_objects += o.unseen_objects;
        self.unseen_named += o.unseen_named;
        self.mentions += o.mentions;
        self.correct_mentions += o.correct_mentions;
    }
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Object recall and precision of a set of captions, with the counts they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectScores {
    /// Named things / things (0–1); absent when the images have no labelled things.
    pub recall: Option<f64>,
    /// Names that fit / names used (0–1); absent when the captions name nothing.
    pub precision: Option<f64>,
    /// Recall on things from seen and from unseen exemplars; present when there are unseen ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_recall: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen_recall: Option<f64>,
    /// Labelled things, of which unseen, and how many were named.
    pub objects: usize,
    pub named: usize,
    #[serde(default)]
    pub unseen_objects: usize,
    /// Distinct names used (per caption), and how many fit the image.
    pub mentions: usize,
    pub correct_mentions: usize,
}

impl From<ObjectCounts> for ObjectScores {
    fn from(c: ObjectCounts) -> Self {
        let objects = c.seen_objects + c.unseen_objects;
        let named = c.seen_named + c.unseen_named;
        let apart = c.unseen_objects > 0;
        ObjectScores {
            recall: share(named, objects),
            precision: share(c.correct_mentions, c.mentions),
            seen_recall: if apart {
                share(c.seen_named, c.seen_objects)
            } else {
                None
            },
            unseen_recall: if apart {
                share(c.unseen_named, c.unseen_objects)
            } else {
                None
            },
            objects,
            named,
            unseen_objects: c.unseen_objects,
            mentions: c.mentions,
            correct_mentions: c.correct_mentions,
        }
    }
}

/// Micro-averaged object metrics of captions (as tokens) against their images' things.
pub fn object_scores<'a>(
    matcher: &ObjectMatcher,
    captions: impl IntoIterator<Item = (&'a [String], &'a [LabelledObject])>,
) -> ObjectScores {
    let mut total = ObjectCounts::default();
    for (tokens, objects) in captions {
        total += matcher.count(tokens, objects);
    }
    total.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::labels::SizeClass;
    use crate::data::text::tokenize;

    fn lexicon() -> Lexicon {
        let mut l = Lexicon::default();
        l.add("frog", ["frog", "frogs"], ["animal", "animals"]);
        l.add(
            "parrot",
            ["parrot", "parrots"],
            ["bird", "birds", "animal", "animals"],
        );
        l.add("sea lion", ["sea lion", "sea lions"], ["animal", "animals"]);
        l.add("lion", ["lion", "lions"], ["animal", "animals"]);
        l.add(
            "apple",
            ["apple", "apples", "granny smith apple"],
            ["fruit", "fruits"],
        );
        l
    }

    fn thing(kind: &str, unseen: bool) -> LabelledObject {
        LabelledObject {
            kind: kind.into(),
            stamp: None,
            color: None,
            bbox: [0.0, 0.0, 1.0, 1.0],
            size: SizeClass::Small,
            unseen,
            cell: None,
        }
    }

    fn count(caption: &str, things: &[LabelledObject]) -> ObjectCounts {
        ObjectMatcher::new(&lexicon(), tokenize).count(&tokenize(caption), things)
    }

    #[test]
    fn plural_and_singular_name_the_same_kind_once() {
        let things = [
            thing("frog", false),
            thing("frog", false),
            thing("apple", false),
        ];
        let c = count("Two frogs and a frog near apples.", &things);
        assert_eq!((c.seen_objects, c.seen_named), (3, 3));
        assert_eq!((c.mentions, c.correct_mentions), (2, 2));
    }

    #[test]
    fn a_category_covers_its_kinds() {
        let things = [thing("parrot", false), thing("apple", false)];
        let c = count("a bird on a fruit", &things);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (2, 2, 2));
        // "animal" covers the parrot: named, and it fits.
        let c = count("an animal", &things);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (1, 1, 1));
        // "bird" does not fit an image of a frog alone.
        let c = count("a bird", &[thing("frog", false)]);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (0, 1, 0));
    }

    #[test]
    fn multi_word_names_match_as_sequences_longest_first() {
        let c = count("a sea lion on the sand", &[thing("lion", false)]);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (0, 1, 0));
        let c = count("a sea lion on the sand", &[thing("sea lion", false)]);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (1, 1, 1));
        // "sea" alone is no name; "lion" after it is.
        let c = count("the sea and a lion", &[thing("lion", false)]);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (1, 1, 1));
        let c = count("a granny smith apple", &[thing("apple", false)]);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (1, 1, 1));
    }

    #[test]
    fn precision_counts_a_kind_that_is_not_there() {
        let things = [thing("frog", false)];
        let c = count("a frog and a parrot and a lion", &things);
        assert_eq!((c.seen_named, c.mentions, c.correct_mentions), (1, 3, 1));
        let s = ObjectScores::from(c);
        assert_eq!(s.recall, Some(1.0));
        assert_eq!(s.precision, Some(1.0 / 3.0));
    }

    #[test]
    fn an_empty_caption_names_nothing() {
        let c = count("", &[thing("frog", false)]);
        assert_eq!(c.mentions, 0);
        let s = ObjectScores::from(c);
        assert_eq!(s.recall, Some(0.0));
        assert_eq!(s.precision, None);
        assert_eq!(s.objects, 1);
        let none = ObjectScores::from(count("a frog", &[]));
        assert_eq!((none.recall, none.precision), (None, Some(0.0)));
    }

    #[test]
    fn split_scores_are_micro_averaged_with_unseen_apart() {
        let m = ObjectMatcher::new(&lexicon(), tokenize);
        let images = [
            (
                tokenize("a frog"),
                vec![thing("frog", true), thing("apple", false)],
            ),
            (
                tokenize("a parrot and an apple"),
                vec![thing("parrot", false)],
            ),
            (tokenize("a lion"), vec![thing("lion", true)]),
        ];
        let s = object_scores(&m, images.iter().map(|(t, o)| (t.as_slice(), o.as_slice())));
        assert_eq!((s.objects, s.named, s.unseen_objects), (4, 3, 2));
        assert_eq!(s.recall, Some(0.75));
        assert_eq!(s.seen_recall, Some(0.5));
        assert_eq!(s.unseen_recall, Some(1.0));
        assert_eq!((s.mentions, s.correct_mentions), (4, 3));
        assert_eq!(s.precision, Some(0.75));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["recall"], 0.75);
        assert_eq!(json["unseen_recall"], 1.0);
        // Without unseen things, the apart figures are left out.
        let seen = object_scores(&m, [(images[1].0.as_slice(), images[1].1.as_slice())]);
        assert_eq!((seen.seen_recall, seen.unseen_recall), (None, None));
        assert!(
            serde_json::to_value(&seen)
                .unwrap()
                .get("seen_recall")
                .is_none()
        );
    }
}
