//! Splitting one folder (or dataset) among N machines that fill one index:
//! `capsearch index --images DIR --shard K/N`.
//!
//! Each image belongs to exactly one of the shards `1..=N` (numbered from 1, so `--shard 1/2` and
//! `--shard 2/2` are the two halves), chosen by a hash of its path relative to the folder: the
//! first 8 bytes of the SHA-256 of that path (UTF-8, `/` between components), read big-endian,
//! modulo N, plus 1. The hash does not depend on the machine, the operating system, the Rust
//! version or the order in which files are listed, so N machines that see the same folder under
//! different mount points split it the same way, and together index every image exactly once. An
//! image keeps its shard while others are added or removed (its own path alone decides).
//!
//! Document ids stay the image paths as indexed ([`super::doc_id`]): the N machines must name the
//! folder the same way (the same mount point) for their documents to meet in one index without
//! duplicates, as they must without sharding.

use std::fmt;
use std::path::{Component, Path};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::data::image_files::ImageList;
use crate::error::{Error, Result};

/// One share of a folder: shard `number` of `count` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    number: u32,
    count: u32,
}

impl Shard {
    /// Shard `number` of `count`; `number` runs from 1 to `count`.
    pub fn new(number: u32, count: u32) -> Result<Self> {
        if count == 0 {
            return Err(Error::option(
                "--shard",
                format!("{number}/{count}: N, the number of shards, must be at least 1"),
            ));
        }
        if number == 0 || number > count {
            return Err(Error::option(
                "--shard",
                format!(
                    "{number}/{count}: K must be between 1 and {count} (shards are numbered from \
                     1: --shard 1/{count} ... --shard {count}/{count})"
                ),
            ));
        }
        Ok(Shard { number, count })
    }

    /// This shard's number, 1 to [`Shard::count`].
    pub fn number(&self) -> u32 {
        self.number
    }

    /// How many shards the folder is split into.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The shard (1-based) of the image whose path relative to the folder is `key` (see
    /// [`relative_key`]), when the folder is split into `count` shards (at least 1).
    pub fn of_key(key: &str, count: u32) -> u32 {
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32 + 1
    }

    /// Whether the image at relative path `key` is in this shard.
    pub fn holds(&self, key: &str) -> bool {
        Self::of_key(key, self.count) == self.number
    }

    /// Whether the image file `path`, found in the folder `dir`, is in this shard.
    pub fn holds_file(&self, dir: &Path, path: &Path) -> bool {
        self.holds(&relative_key(dir, path))
    }

    /// Keeps only this shard's share of a folder listing: its images, and the unreadable entries
    /// that would have been its images (so that each is reported by one machine only).
    pub fn retain(&self, dir: &Path, list: &mut ImageList) {
        list.images.retain(|p| self.holds_file(dir, p));
        list.unreadable.retain(|u| self.holds_file(dir, &u.path));
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `K/N`, e.g. `2/4` for the second of four machines.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::option(
                "--shard",
                format!(
                    "{text:?} is not K/N: give this machine's shard and the number of shards, \
                     e.g. 1/4 for the first of four machines"
                ),
            )
        };
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.count)
    }
}

/// The path of `path` relative to `dir`, its components joined by `/` (non-UTF-8 bytes replaced),
/// which is what a shard is chosen by; `path` as a whole (same joining) when it is not in `dir`.
pub fn relative_key(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            Component::RootDir | Component::Prefix(_) | Component::CurDir => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;
    use crate::data::image_files::Unreadable;
    use crate::search::embedded::EmbeddedBackend;
    use crate::search::{Document, SearchBackend};

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        let s: Shard = "2/4".parse().unwrap();
        assert_eq!((s.number(), s.count()), (2, 4));
        assert_eq!(s.to_string(), "2/4");
        assert_eq!(" 1/1 ".parse::<Shard>().unwrap(), Shard::new(1, 1).unwrap());
        for (text, needle) in [
            ("3/2", "K must be between 1 and 2"),
            ("0/2", "K must be between 1 and 2"),
            ("1/0", "at least 1"),
            ("1", "is not K/N"),
            ("a/2", "is not K/N"),
            ("1/-2", "is not K/N"),
            ("", "is not K/N"),
        ] {
            let err = text.parse::<Shard>().unwrap_err().to_string();
            assert!(
                err.starts_with("--shard") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn the_shard_of_a_path_is_pinned() {
        // Machines running different capsearch builds must agree: these values are part of
        // the format. sha256("a.png") starts 7f071235805fbf58 (Python's hashlib agrees).
        assert_eq!(
            Sha256::digest(b"a.png")[..8],
            [0x7f, 0x07, 0x12, 0x35, 0x80, 0x5f, 0xbf, 0x58]
        );
        assert_eq!(Shard::of_key("a.png", 2), 1);
        assert_eq!(Shard::of_key("a.png", 1), 1);
        let pinned: Vec<u32> = ["a.png", "b/c.jpg", "img/0001.png", "img/0002.png"]
            .iter()
            .map(|k| Shard::of_key(k, 7))
            .collect();
        assert_eq!(pinned, PINNED_OF_7);
    }

    /// `Shard::of_key(_, 7)` of the four keys above, computed with Python's hashlib:
    /// `int.from_bytes(sha256(key).digest()[:8], "big") % 7 + 1`.
    const PINNED_OF_7: [u32; 4] = [2, 2, 4, 6];

    #[test]
    fn relative_keys_use_slashes_and_ignore_the_mount_point() {
        let a = relative_key(
            Path::new("/mnt/x/photos"),
            Path::new("/mnt/x/photos/2024/a.png"),
        );
        let b = relative_key(Path::new("photos"), Path::new("photos/2024/a.png"));
        assert_eq!(a, "2024/a.png");
        assert_eq!(a, b);
        assert_eq!(
            relative_key(Path::new("/elsewhere"), Path::new("/x/a.png")),
            "x/a.png"
        );
    }

    #[test]
    fn every_path_is_in_exactly_one_shard_and_shares_are_balanced() {
        let keys: Vec<String> = (0..3000).map(|i| format!("img/{i:05}.png")).collect();
        for n in [1u32, 2, 3, 8] {
            let shards: Vec<Shard> = (1..=n).map(|k| Shard::new(k, n).unwrap()).collect();
            let mut sizes = vec![0usize; n as usize];
            for key in &keys {
                let holders: Vec<usize> = shards
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.holds(key))
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(holders.len(), 1, "{key} in {holders:?} of {n}");
                sizes[holders[0]] += 1;
            }
            let expected = keys.len() as f64 / n as f64;
            for size in sizes {
                // Binomial spread: within 5 standard deviations of N/n.
                let sd = (expected * (1.0 - 1.0 / n as f64)).sqrt();
                assert!(
                    (size as f64 - expected).abs() <= 5.0 * sd + 1.0,
                    "{size} vs {expected} of {n}"
                );
            }
        }
    }

    #[test]
    fn retain_keeps_one_share_of_a_listing() {
        let dir = Path::new("/data/imgs");
        let list = ImageList {
            images: (0..40).map(|i| dir.join(format!("{i}.png"))).collect(),
            unreadable: (0..10)
                .map(|i| Unreadable {
                    path: dir.join(format!("bad{i}.heic")),
                    reason: "HEIC".into(),
                })
                .collect(),
        };
        let mut images = HashSet::new();
        let mut unreadable = 0;
        for k in 1..=3 {
            let mut share = list.clone();
            Shard::new(k, 3).unwrap().retain(dir, &mut share);
            for p in share.images {
                assert!(images.insert(p), "an image in two shards");
            }
            unreadable += share.unreadable.len();
        }
        assert_eq!(images, list.images.iter().cloned().collect());
        assert_eq!(unreadable, 10);
    }

    #[test]
    fn two_shards_fill_one_embedded_index_without_loss_or_doubles() {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from("/photos");
        let all: Vec<PathBuf> = (0..200).map(|i| root.join(format!("{i:03}.png"))).collect();
        for k in 1..=2 {
            // Each "machine" opens the index itself, as two processes would one after the other.
            let backend = EmbeddedBackend::new(dir.path().join("index"));
            let shard = Shard::new(k, 2).unwrap();
            let docs: Vec<Document> = all
                .iter()
                .filter(|p| shard.holds_file(&root, p))
                .map(|p| Document::from_model(p.to_string_lossy(), "a shape", "m"))
                .collect();
            assert!(!docs.is_empty() && docs.len() < all.len());
            backend.index(&docs).unwrap();
            backend.finish().unwrap();
        }
        let backend = EmbeddedBackend::new(dir.path().join("index"));
        assert_eq!(backend.count().unwrap(), 200);
        let listed: Vec<String> = backend
            .list(1000, 0)
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect();
        let expected: Vec<String> = all.iter().map(|p| p.to_string_lossy().into()).collect();
        assert_eq!(listed, expected);
    }
}
