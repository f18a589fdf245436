//! `TopScores`: the best `keep` matches of a query, visiting every match.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

/// A match: its score and where it is. Ordered best first: higher score, then lower address (so
/// ties come out in index order, deterministically).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Ranked {
    pub(super) score: Score,
    pub(super) address: DocAddress,
}

impl Eq for Ranked {}

impl Ord for Ranked {
    /// `a > b` when `a` ranks before `b`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.address.cmp(&self.address))
    }
}

impl PartialOrd for Ranked {
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
pub(super) struct TopScores {
    pub(super) keep: usize,
}

pub(super) struct SegmentTopScores {
    pub(super) keep: usize,
    pub(super) segment: SegmentOrdinal,
    /// The best so far, worst on top.
    pub(super) heap: BinaryHeap<Reverse<Ranked>>,
}

impl Collector for TopScores {
    type Fruit = Vec<Ranked>;
    type Child = SegmentTopScores;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        _reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTopScores> {
        Ok(SegmentTopScores {
            keep: self.keep,
            segment,
            heap: BinaryHeap::with_capacity(self.keep.min(10_000) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<Vec<Ranked>>) -> tantivy::Result<Vec<Ranked>> {
        let mut all: Vec<Ranked> = segments.into_iter().flatten().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(self.keep);
        Ok(all)
    }
}

impl SegmentCollector for SegmentTopScores {
    type Fruit = Vec<Ranked>;

    fn collect(&mut self, doc: DocId, score: Score) {
        let ranked = Ranked {
            score,
            address: DocAddress::new(self.segment, doc),
        };
        if self.heap.len() < self.keep {
            self.heap.push(Reverse(ranked));
        } else if let Some(Reverse(worst)) = self.heap.peek()
            && ranked > *worst
        {
            self.heap.pop();
            self.heap.push(Reverse(ranked));
        }
    }

    fn harvest(self) -> Vec<Ranked> {
        self.heap.into_iter().map(|Reverse(r)| r).collect()
    }
}
