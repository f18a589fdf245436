//! Splits for entries that have none: the seeded assignment every format shares, and the counts
//! the generators lay their images out by.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::Pending;
use crate::data::Split;
use crate::error::{Error, Result};

/// How entries without a split are divided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// Seed of the shuffle that assigns splits.
    pub seed: u64,
    /// Relative share of the training split.
    pub train: f64,
    /// Relative share of the validation split.
    pub val: f64,
    /// Relative share of the test split.
    pub test: f64,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            seed: 42,
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
    }
}

impl SplitOptions {
    /// Checks that the ratios are finite, non-negative and not all zero.
    pub fn validate(&self) -> Result<()> {
        let r = [self.train, self.val, self.test];
        if r.iter().any(|x| !x.is_finite() || *x < 0.0) || r.iter().sum::<f64>() <= 0.0 {
            return Err(Error::Config {
                field: "split ratios".into(),
                message: format!(
                    "train/val/test ratios {}/{}/{} must be non-negative numbers, not all zero",
                    self.train, self.val, self.test
                ),
            });
        }
        Ok(())
    }
}

/// Keeps given splits; gives the others a split from a seeded shuffle of their paths (sorted
/// first, so the result does not depend on entry order).
pub(super) fn assign_splits(items: &[Pending], opts: &SplitOptions) -> Vec<Split> {
    let mut out: Vec<Option<Split>> = items.iter().map(|p| p.split).collect();
    let mut free: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    if free.is_empty() {
        return out.into_iter().map(|s| s.unwrap_or(Split::Train)).collect();
    }
    free.sort_by(|&a, &b| items[a].path.cmp(&items[b].path));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    free.shuffle(&mut rng);
    let split = split_counts(free.len(), opts);
    for (k, &i) in free.iter().enumerate() {
        out[i] = Some(if k < split[0] {
            Split::Train
        } else if k < split[0] + split[1] {
            Split::Val
        } else {
            Split::Test
        });
    }
    out.into_iter().map(|s| s.unwrap_or(Split::Train)).collect()
}

/// The split of item `i` when the first `counts[0]` items train, the next `counts[1]` validate and
/// the rest test (how the generators lay out their images).
pub fn split_of_index(i: usize, counts: [usize; 3]) -> Split {
    if i < counts[0] {
        Split::Train
    } else if i < counts[0] + counts[1] {
        Split::Val
    } else {
        Split::Test
    }
}

/// Train/val/test counts for `n` items: rounded shares, at least one training item when there is
/// any item and a non-zero training share.
pub fn split_counts(n: usize, opts: &SplitOptions) -> [usize; 3] {
    let total = opts.train + opts.val + opts.test;
    let share = |r: f64| ((n as f64) * r / total).round() as usize;
    let mut val = share(opts.val).min(n);
    let mut test = share(opts.test).min(n - val);
    if n > 0 && opts.train > 0.0 && val + test == n {
        // val + test == n > 0, so the larger of the two is positive.
        if test >= val {
            test -= 1;
        } else {
            val -= 1;
        }
    }
    [n - val - test, val, test]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_round_and_keep_a_train_item() {
        let o = SplitOptions::default();
        assert_eq!(split_counts(100, &o), [80, 10, 10]);
        assert_eq!(split_counts(10, &o), [8, 1, 1]);
        assert_eq!(split_counts(1, &o), [1, 0, 0]);
        assert_eq!(split_counts(0, &o), [0, 0, 0]);
        let odd = SplitOptions {
            train: 0.0,
            val: 1.0,
            test: 1.0,
            seed: 1,
        };
        assert_eq!(split_counts(4, &odd), [0, 2, 2]);
        assert!(SplitOptions { train: -1.0, ..o }.validate().is_err());
    }
}
