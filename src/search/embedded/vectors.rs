//! The embedded backend's vector index: the image embeddings of an index, searchable by cosine
//! similarity, in `vectors.bin` beside the tantivy files.
//!
//! tantivy has no vector field, so the vectors live twice: each document stores its embedding in
//! tantivy (the `embedding` bytes field, the truth), and this file holds them all, unit-normalised
//! and contiguous, for fast search. The file records which tantivy commit (opstamp) of which index
//! (the marker's `index_id`) it matches. When it does not match (a run killed between tantivy's
//! commit and the file's save, a file copied from another index, a truncated file), the backend
//! rebuilds it from tantivy's stored embeddings and says so in the log
//! ([`super::vector_sync`]): the two never disagree in what a search returns.
//!
//! Search is exact (every vector is scored; recall 1), which is plenty at the sizes `eval search`
//! and a folder of photos reach (a scan of 10k 1280-d vectors is ~13M multiply-adds). An
//! approximate graph was measured first: `usearch` 2.26.6 (f16, M = 16, ef_add 128, ef 64) on
//! 10k clustered random 1280-d vectors built in 35 s and answered in 2.1 ms/query with recall@10
//! 0.999 (2 shared cores, contended), but its `cxx-build` dependency re-unifies `syn`'s features
//! and so rebuilds the whole dependency tree, burn included. It is the candidate for the
//! 100k–1M scale target; this file's format keeps the paths and vectors, so a graph can be built
//! from it. `capsearch bench search` (its `search-vectors` table) times it: p50 / p99 of a visual
//! query (size 10) 7 / 70 ms at 1k 1280-d vectors, 79 / 262 ms at 10k, 158 / 520 ms at 50k; a
//! hybrid query 22 / 94, 98 / 908 and 210 / 591 ms (a dev build, on 2 cores shared with three
//! other helpers' builds: heavily contended, so the figures are upper bounds and noisy).
//!
//! The file is written atomically (a temporary file renamed over it):
//!
//! ```text
//! "CAPSEARCH-VECTORS\n"  magic
//! u64 LE                 length of the header
//! header                 JSON: format, index_id, opstamp, space, paths (one per vector, in order)
//! u64 LE                 length of the vectors in bytes
//! vectors                paths.len() × space.dims little-endian f32, each of length 1
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::search::VectorSpace;

/// The vector file in an index folder.
pub const VECTOR_FILE: &str = "vectors.bin";
const MAGIC: &[u8] = b"CAPSEARCH-VECTORS\n";
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    index_id: String,
    opstamp: u64,
    space: VectorSpace,
    /// The path of each stored vector, in the order of the vectors.
    paths: Vec<String>,
}

/// What a vector file's header says, read without its vectors ([`VectorStore::summary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorFileSummary {
    pub index_id: String,
    pub opstamp: u64,
    pub space: VectorSpace,
    /// Vectors the header lists.
    pub count: usize,
}

/// The vectors of one index, in memory.
pub struct VectorStore {
    pub space: VectorSpace,
    /// The marker's id of the index these vectors belong to.
    pub index_id: String,
    /// The tantivy commit these vectors match.
    pub opstamp: u64,
    /// Row `i` (of `space.dims` values, unit length) is the vector of `paths[i]`.
    data: Vec<f32>,
    paths: Vec<String>,
    rows: HashMap<String, usize>,
    /// Changed since it was loaded or saved.
    pub dirty: bool,
}

impl VectorStore {
    /// An empty store for vectors of `space`.
    pub fn new(space: VectorSpace, index_id: &str, opstamp: u64) -> Result<Self> {
        Ok(VectorStore {
            space,
            index_id: index_id.to_string(),
            opstamp,
            data: Vec::new(),
            paths: Vec::new(),
            rows: HashMap::new(),
            dirty: false,
        })
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether `path` has a vector.
    pub fn contains(&self, path: &str) -> bool {
        self.rows.contains_key(path)
    }

    /// Adds the vector of `path`, replacing the one it had.
    pub fn upsert(&mut self, path: &str, vector: &[f32]) -> Result<()> {
        self.space
            .ensure_dims(vector, &format!("the embedding of {path}"))?;
        let unit = normalised(vector).ok_or_else(|| {
            Error::Search(format!(
                "the embedding of {path} is zero or holds a value that is not a finite number"
            ))
        })?;
        let d = self.space.dims;
        match self.rows.get(path) {
            Some(&row) => self.data[row * d..(row + 1) * d].copy_from_slice(&unit),
            None => {
                self.rows.insert(path.to_string(), self.paths.len());
                self.paths.push(path.to_string());
                self.data.extend_from_slice(&unit);
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Removes the vector of `path` (the last row takes its place). Returns whether it had one.
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let Some(row) = self.rows.remove(path) else {
            return Ok(false);
        };
        let d = self.space.dims;
        let last = self.paths.len() - 1;
        if row != last {
            self.data.copy_within(last * d..(last + 1) * d, row * d);
            self.paths.swap(row, last);
            self.rows.insert(self.paths[row].clone(), row);
        }
        self.paths.pop();
        self.data.truncate(last * d);
        self.dirty = true;
        Ok(true)
    }

    /// The `count` paths whose vectors are nearest to `vector`, with their cosine similarity,
    /// most similar first (ties by path).
    pub fn nearest(&self, vector: &[f32], count: usize) -> Result<Vec<(String, f32)>> {
        self.space
            .ensure_dims(vector, "the query image's embedding")?;
        if count == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let query = normalised(vector).ok_or_else(|| {
            Error::Search(
                "the query image's embedding is zero or not finite: it has no direction".into(),
            )
        })?;
        let mut scored: Vec<(f32, usize)> = self
            .data
            .chunks_exact(self.space.dims)
            .map(|row| row.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>())
            .zip(0..)
            .collect();
        let order = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.paths[a.1].cmp(&self.paths[b.1]))
        };
        if count < scored.len() {
            scored.select_nth_unstable_by(count - 1, order);
            scored.truncate(count);
        }
        scored.sort_unstable_by(order);
        Ok(scored
            .into_iter()
            .map(|(similarity, row)| (self.paths[row].clone(), similarity))
            .collect())
    }

    /// Writes the store to `file` atomically.
    pub fn save(&mut self, file: &Path) -> Result<()> {
        let header = Header {
            format: FORMAT,
            index_id: self.index_id.clone(),
            opstamp: self.opstamp,
            space: self.space.clone(),
            paths: self.paths.clone(),
        };
        let header = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 16 + header.len() + self.data.len() * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&(self.data.len() as u64 * 4).to_le_bytes());
        for x in &self.data {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        crate::util::write_atomic(file, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// Reads the header of a store written by [`VectorStore::save`] and checks that the file is
    /// as long as the header says, without reading the vectors.
    pub fn summary(file: &Path) -> Result<VectorFileSummary> {
        use std::io::Read;
        let bad = |message: &str| Error::parse(file, None, message.to_string());
        let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let total = f.metadata().map_err(|e| Error::io(file, e))?.len();
        let mut magic = vec![0u8; MAGIC.len()];
        let mut len = [0u8; 8];
        if f.read_exact(&mut magic).is_err() || magic != MAGIC {
            return Err(bad("not a capsearch vector file (wrong magic)"));
        }
        f.read_exact(&mut len)
            .map_err(|_| bad("cut short in its header"))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > total {
            return Err(bad("cut short in its header"));
        }
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header)
            .map_err(|_| bad("cut short in its header"))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|e| bad(&format!("unreadable header: {e}")))?;
        let expected = (MAGIC.len() as u64 + 16 + header_len)
            + (header.paths.len() * header.space.dims * 4) as u64;
        if total != expected {
            return Err(bad(&format!(
                "its header lists {} vectors of {} values, so it should be {expected} bytes, \
                 but it is {total}",
                header.paths.len(),
                header.space.dims
            )));
        }
        Ok(VectorFileSummary {
            index_id: header.index_id,
            opstamp: header.opstamp,
            space: header.space,
            count: header.paths.len(),
        })
    }

    /// Reads a store written by [`VectorStore::save`]. A file that is not one, is cut short or
    /// does not hold what its header says is an error naming the file and what is wrong.
    pub fn load(file: &Path) -> Result<Self> {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let bad = |message: &str| Error::parse(file, None, message.to_string());
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a capsearch vector file (wrong magic)"))?;
        let (header, rest) = take_block(rest).ok_or_else(|| bad("cut short in its header"))?;
        let header: Header =
            serde_json::from_slice(header).map_err(|e| bad(&format!("unreadable header: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(&format!(
                "format {} (this capsearch reads {FORMAT})",
                header.format
            )));
        }
        let (vectors, rest) = take_block(rest).ok_or_else(|| bad("cut short in its vectors"))?;
        if !rest.is_empty() {
            return Err(bad("has bytes after its vectors"));
        }
        let expected = header.paths.len() * header.space.dims * 4;
        if vectors.len() != expected {
            return Err(bad(&format!(
                "its header lists {} vectors of {} values ({expected} bytes) but it holds {} bytes",
                header.paths.len(),
                header.space.dims,
                vectors.len()
            )));
        }
        let data = vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows: HashMap<String, usize> = header
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        if rows.len() != header.paths.len() {
            return Err(bad("its header lists a path twice"));
        }
        Ok(VectorStore {
            space: header.space,
            index_id: header.index_id,
            opstamp: header.opstamp,
            data,
            paths: header.paths,
            rows,
            dirty: false,
        })
    }
}

/// `vector` scaled to length 1, or `None` when it is zero or not finite.
fn normalised(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| vector.iter().map(|x| x / norm).collect())
}

/// Splits a `u64 LE` length and that many bytes off the front of `bytes`.
fn take_block(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_at_checked(8)?;
    let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(dims: usize) -> VectorSpace {
        VectorSpace {
            dims,
            embedder: "test".into(),
        }
    }

    fn unit(i: usize, dims: usize) -> Vec<f32> {
        let mut v = vec![0.01; dims];
        v[i % dims] = 1.0;
        v
    }

    #[test]
    fn nearest_finds_the_vector_itself_and_replaces_and_removes() {
        let mut store = VectorStore::new(space(8), "id", 1).unwrap();
        for i in 0..8 {
            store.upsert(&format!("{i}.png"), &unit(i, 8)).unwrap();
        }
        let hits = store.nearest(&unit(3, 8), 3).unwrap();
        assert_eq!(hits[0].0, "3.png");
        assert!(hits[0].1 > 0.99, "{hits:?}");
        // Re-indexing a path replaces its vector: 3.png now points where 5.png does, and
        // nothing is near its old direction any more.
        store.upsert("3.png", &unit(5, 8)).unwrap();
        assert_eq!(store.len(), 8);
        let hits = store.nearest(&unit(3, 8), 1).unwrap();
        assert!(hits[0].1 < 0.5, "{hits:?}");
        let hits = store.nearest(&unit(5, 8), 2).unwrap();
        let mut near: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
        near.sort();
        assert_eq!(near, ["3.png", "5.png"]);
        assert!(store.remove("5.png").unwrap());
        assert!(!store.remove("5.png").unwrap());
        let hits = store.nearest(&unit(5, 8), 1).unwrap();
        assert_eq!(hits[0].0, "3.png");
        assert_eq!(store.len(), 7);
        assert!(store.upsert("x.png", &[1.0; 3]).is_err());
        assert!(store.nearest(&[1.0; 3], 1).is_err());
    }

    #[test]
    fn saves_and_loads_and_names_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(VECTOR_FILE);
        let mut store = VectorStore::new(space(64), "abc", 7).unwrap();
        for i in 0..40 {
            store.upsert(&format!("{i}.png"), &unit(i, 64)).unwrap();
        }
        store.save(&file).unwrap();
        assert!(!store.dirty);
        let loaded = VectorStore::load(&file).unwrap();
        assert_eq!((loaded.opstamp, loaded.index_id.as_str()), (7, "abc"));
        assert_eq!(loaded.space, space(64));
        assert_eq!(loaded.len(), 40);
        assert_eq!(loaded.nearest(&unit(2, 64), 1).unwrap()[0].0, "2.png");
        let summary = VectorStore::summary(&file).unwrap();
        assert_eq!(
            summary,
            VectorFileSummary {
                index_id: "abc".into(),
                opstamp: 7,
                space: space(64),
                count: 40
            }
        );

        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
        let err = VectorStore::summary(&file).err().unwrap().to_string();
        assert!(err.contains("should be"), "{err}");
        let err = VectorStore::load(&file).err().unwrap().to_string();
        assert!(
            err.contains("cut short") && err.contains(VECTOR_FILE),
            "{err}"
        );
        std::fs::write(&file, b"something else").unwrap();
        let err = VectorStore::load(&file).err().unwrap().to_string();
        assert!(err.contains("not a capsearch vector file"), "{err}");
    }
}
