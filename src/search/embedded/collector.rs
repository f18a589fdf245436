//! `TopScores`: the best `keep` matches of a query, visiting every match, ties broken by path.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, Dictionary};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// The `path` fast field's name (see `schema.rs`).
const PATH_FIELD: &str = "path";

/// A match: its score, its document's path and where it is. Ordered best first: higher score,
/// then lower path (bytewise), so that equal scores come out in the same order whatever the
/// index's segment layout (which commit wrote what, which segments merged).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ranked {
    pub(super) score: Score,
    pub(super) path: String,
    pub(super) address: DocAddress,
}

impl Ranked {
    /// Best first: higher score, then lower path, then lower address (two live documents never
    /// share a path, so the address only orders the deleted-but-unmerged copies).
    fn order(a: &Ranked, b: &Ranked) -> Ordering {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.address.cmp(&b.address))
    }
}

/// A match within one segment: the path is its term ordinal, whose order within a segment is the
/// paths' bytewise order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SegmentRanked {
    score: Score,
    ord: u64,
    doc: DocId,
}

impl Eq for SegmentRanked {}

impl Ord for SegmentRanked {
    /// `a > b` when `a` ranks before `b`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.ord.cmp(&self.ord))
            .then_with(|| other.doc.cmp(&self.doc))
    }
}

impl PartialOrd for SegmentRanked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `keep` best matches, found by scoring every match.
///
/// tantivy's `TopDocs` prunes with block-max WAND, which pays off when a query term is rare.
/// Caption queries are mostly common words, and there WAND loses: on a 1M-caption synthetic shapes
/// corpus it was about 3 times slower than visiting every match. Visiting every match costs time in
/// proportion to the query terms' document frequencies, with no bad cases.
///
/// Measured again for hybrid search's caption half (the top 100, 100k `indexed_caption` documents
/// in 10 segments, 200 queries of about 9 terms each matching 91% of the documents; 2 cores at
/// load 11, so only the ratios mean much): this collector p50 37 ms; `TopDocs` with WAND 24 ms,
/// but it drops documents that tie with the 100th score, so equal scores would no longer come out
/// by path; WAND kept a margin below the 100th score (ties kept), with each candidate then rescored
/// by its terms in clause order (WAND adds them in another order, and the sums differ in the last
/// bits), returned exactly this collector's results at 60 ms: ties at the cut are common on short
/// captions, and every one is a candidate to rescore. So every match is still visited.
///
/// Paths are read late: each segment keeps its best `keep` by score and path ordinal (the
/// ordinals of one segment sort as its paths do), and only the matches at or above the merged
/// top's cut (the `keep`-th best score of all segments) have their path read from the
/// dictionary, to order ties across segments: about `keep` reads instead of `keep` per segment.
///
/// Equal scores are common (short captions, few words) and are ordered by path, read from the
/// `path` fast field, rather than by document address: addresses depend on how commits and merges
/// laid out the segments, so the same documents indexed twice would rank differently.
pub(super) struct TopScores {
    pub(super) keep: usize,
}

pub(super) struct SegmentTopScores {
    keep: usize,
    segment: SegmentOrdinal,
    dictionary: Arc<Dictionary>,
    ords: Column<u64>,
    /// The best so far, worst on top.
    heap: BinaryHeap<Reverse<SegmentRanked>>,
    /// The worst score in a full heap (below it nothing enters), else minus infinity.
    floor: Score,
}

impl Collector for TopScores {
    type Fruit = Vec<Ranked>;
    type Child = SegmentTopScores;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTopScores> {
        let column = reader.fast_fields().str(PATH_FIELD)?.ok_or_else(|| {
            tantivy::TantivyError::SchemaError(format!(
                "the {PATH_FIELD} field is not a fast field"
            ))
        })?;
        let (dictionary, ords) = column.into_parts();
        Ok(SegmentTopScores {
            keep: self.keep,
            segment,
            dictionary,
            ords,
            heap: BinaryHeap::with_capacity(self.keep.min(10_000) + 1),
            floor: Score::NEG_INFINITY,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<SegmentFruit>) -> tantivy::Result<Vec<Ranked>> {
        // The `keep`-th best score of all segments: a match scoring below it has `keep` better
        // ones, so only the matches at or above it need their paths (10 segments' top 100 would
        // otherwise read 1,000 paths from the dictionaries to keep 100).
        let mut scores: Vec<Score> = segments
            .iter()
            .flat_map(|s| s.top.iter().map(|r| r.score))
            .collect();
        let cut = if self.keep > 0 && scores.len() > self.keep {
            let (_, nth, _) = scores.select_nth_unstable_by(self.keep - 1, |a, b| b.total_cmp(a));
            Some(*nth)
        } else {
            None
        };
        let mut all = Vec::with_capacity(self.keep.min(scores.len()));
        let mut bytes = Vec::new();
        for fruit in segments {
            for r in fruit.top {
                if cut.is_some_and(|cut| r.score.total_cmp(&cut) == Ordering::Less) {
                    continue;
                }
                bytes.clear();
                let path = match fruit.dictionary.ord_to_term(r.ord, &mut bytes) {
                    Ok(true) => String::from_utf8_lossy(&bytes).into_owned(),
                    _ => String::new(),
                };
                all.push(Ranked {
                    score: r.score,
                    path,
                    address: DocAddress::new(fruit.segment, r.doc),
                });
            }
        }
        all.sort_unstable_by(Ranked::order);
        all.truncate(self.keep);
        Ok(all)
    }
}

/// A segment's best matches, their paths not read yet (see `merge_fruits`).
pub(super) struct SegmentFruit {
    segment: SegmentOrdinal,
    dictionary: Arc<Dictionary>,
    top: Vec<SegmentRanked>,
}

impl SegmentCollector for SegmentTopScores {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if score < self.floor || self.keep == 0 {
            // Cannot enter: skip the path lookup.
            return;
        }
        let ranked = SegmentRanked {
            score,
            ord: self.ords.first(doc).unwrap_or(u64::MAX),
            doc,
        };
        if self.heap.len() < self.keep {
            self.heap.push(Reverse(ranked));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && ranked > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(ranked));
        } else {
            return;
        }
        if self.heap.len() >= self.keep
            && let Some(Reverse(worst)) = self.heap.peek()
        {
            self.floor = worst.score;
        }
    }

    fn harvest(self) -> SegmentFruit {
        SegmentFruit {
            segment: self.segment,
            dictionary: self.dictionary,
            top: self.heap.into_iter().map(|Reverse(r)| r).collect(),
        }
    }
}
