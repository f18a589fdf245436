//! The embedded backend's vector index: the image embeddings of an index in a `usearch` HNSW
//! graph (cosine), saved in `vectors.bin` beside the tantivy files.
//!
//! tantivy has no vector field, so the vectors live twice: each document stores its embedding in
//! tantivy (the `embedding` bytes field, the truth: the unit-length vector in f16, [`Unit`]), and
//! the graph holds them all for fast search. The file records which tantivy commit (opstamp) of
//! which index (the marker's `index_id`) it matches. When it does not match, the backend brings
//! it back in line and says so in the log ([`super::vector_sync`]): a file of an older commit of
//! the same index (a run killed between tantivy's commit and the file's save) is repaired by
//! comparing it with tantivy's stored vectors (adding, replacing and removing only what
//! differs); a file of another index or vector space, or one that is truncated or unreadable, is
//! rebuilt from the stored vectors. The two never disagree in what a search returns.
//!
//! **Storage**: f16 ([`VectorStorage::F16`], the default), measured against i8 at 100k 1280-d
//! vectors by `capsearch bench vectors --vector-storage f16,i8` (`bench::search_vectors`):
//! recall@10 against exact f32 search 0.980 (f16) vs 0.956 (i8), visual p99 11 vs 16 ms, both
//! built in about 5 min on 2 contended cores.
//! Both hold the f16 vector tantivy stores (i8 scales each vector by its own largest value, which
//! cosine ignores), so a graph rebuilt from tantivy holds the same values bit for bit.
//!
//! **Search**: an index of fewer than [`EXACT_BELOW`] vectors is scanned exactly (usearch's
//! brute-force search over the stored vectors: every vector scored, recall 1, a few ms); larger
//! ones search the graph (M = [`CONNECTIVITY`], ef_add [`EXPANSION_ADD`], ef
//! [`EXPANSION_SEARCH`], raised to the number of hits wanted). Results are ordered by similarity,
//! ties by path.
//!
//! **Memory**: the graph lives in memory: 2 bytes × dims per vector in f16 (2.6 GB for 1M
//! 1280-d vectors; 1 byte in i8) plus the graph's links (about 150 bytes per vector at M = 16)
//! and the paths. There is no f32 copy: an earlier version kept every vector as f32 in memory and
//! in this file (5.1 GB at 1M) and scanned them all (158 ms per query at 50k).
//!
//! The file (written to a temporary file in the folder, then renamed over `vectors.bin`):
//!
//! ```text
//! usearch graph         as usearch's Index::save writes it (its vectors, then the links)
//! header                JSON: format, index_id, opstamp, space, storage, graph_bytes,
//!                       paths (the path of usearch key k is paths[k]; "" for a removed key)
//! u64 LE                length of the header
//! "CAPSEARCH-GRAPH\n"   end marker (a file cut short has none)
//! ```

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::search::VectorSpace;

/// The vector file in an index folder.
pub const VECTOR_FILE: &str = "vectors.bin";
/// Temporary files of a save in progress start with this (left behind only by a killed run).
const TEMP_PREFIX: &str = ".capsearch-vectors-";
const MAGIC: &[u8; 16] = b"CAPSEARCH-GRAPH\n";
const FORMAT: u32 = 2;
/// Below this many vectors a search scans them all (exact); from it on, it walks the graph.
/// usearch's SIMD scan of 10k 1280-d f16 vectors takes a few ms (see `bench::search_vectors`),
/// no slower than the graph at that size, and is exact.
pub const EXACT_BELOW: usize = 10_000;
/// Links per node (HNSW's M).
pub const CONNECTIVITY: usize = 16;
/// Candidates kept while inserting (ef_construction).
pub const EXPANSION_ADD: usize = 128;
/// Candidates kept while searching (ef), at least the number of hits asked for.
pub const EXPANSION_SEARCH: usize = 128;
/// Extra hits fetched beyond those asked for, so that ties at the cut are ordered by path.
const TIE_SLACK: usize = 8;
/// Vectors added to the graph per parallel batch while syncing.
pub const ADD_BATCH: usize = 4096;

/// How the graph stores each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    /// IEEE half precision: 2 bytes per value.
    #[default]
    F16,
    /// 8-bit integers, each vector scaled so that its largest magnitude is 127: 1 byte per value.
    I8,
}

impl VectorStorage {
    pub fn as_str(self) -> &'static str {
        match self {
            VectorStorage::F16 => "f16",
            VectorStorage::I8 => "i8",
        }
    }

    fn scalar(self) -> ScalarKind {
        match self {
            VectorStorage::F16 => ScalarKind::F16,
            VectorStorage::I8 => ScalarKind::I8,
        }
    }
}

impl std::fmt::Display for VectorStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VectorStorage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f16" => Ok(VectorStorage::F16),
            "i8" => Ok(VectorStorage::I8),
            other => Err(format!("unknown vector storage {other:?} (f16 or i8)")),
        }
    }
}

/// A unit-length vector in IEEE half precision (the bits, as `i16`, the way usearch takes them):
/// what tantivy's `embedding` field stores and what the graph is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit(Vec<i16>);

impl Unit {
    /// `vector` scaled to length 1, in f16; `None` when it is zero or holds a value that is not a
    /// finite number.
    pub fn new(vector: &[f32]) -> Option<Unit> {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        (norm.is_finite() && norm > 0.0).then(|| {
            Unit(
                vector
                    .iter()
                    .map(|x| half::f16::from_f32(x / norm).to_bits() as i16)
                    .collect(),
            )
        })
    }

    /// Values in the vector.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes tantivy stores: each value's f16 bits, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The vector in bytes written by [`Unit::to_bytes`] (`None` when their length is odd).
    pub fn from_bytes(bytes: &[u8]) -> Option<Unit> {
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        Some(Unit(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ))
    }

    /// The values as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.0
            .iter()
            .map(|&b| half::f16::from_bits(b as u16).to_f32())
            .collect()
    }

    fn f16(&self) -> &[usearch::f16] {
        usearch::f16::from_i16s(&self.0)
    }

    /// The vector in i8, scaled so that its largest magnitude is 127 (cosine ignores the scale).
    fn to_i8(&self) -> Vec<i8> {
        let values = self.to_f32();
        let max = values.iter().fold(0f32, |m, x| m.max(x.abs()));
        if max == 0.0 {
            return vec![0; values.len()];
        }
        values
            .iter()
            .map(|x| (x * 127.0 / max).round().clamp(-127.0, 127.0) as i8)
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    index_id: String,
    opstamp: u64,
    space: VectorSpace,
    storage: VectorStorage,
    /// Length of the usearch part at the start of the file.
    graph_bytes: u64,
    /// The path of usearch key `k` is `paths[k]` (`""` when that key's vector was removed).
    paths: Vec<String>,
}

/// What a vector file's header says, read without its graph ([`VectorStore::summary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorFileSummary {
    pub index_id: String,
    pub opstamp: u64,
    pub space: VectorSpace,
    pub storage: VectorStorage,
    /// Vectors the header lists.
    pub count: usize,
}

/// Whether `name` is a file of this module's in an index folder (the vector file, or a
/// temporary file a killed save left behind).
pub fn is_vector_file(name: &str) -> bool {
    name == VECTOR_FILE || name.starts_with(TEMP_PREFIX)
}

/// The graph of one index's vectors, in memory.
pub struct VectorStore {
    pub space: VectorSpace,
    /// The marker's id of the index these vectors belong to.
    pub index_id: String,
    /// The tantivy commit these vectors match.
    pub opstamp: u64,
    pub storage: VectorStorage,
    graph: Index,
    /// The path of key `k` is `paths[k]` (`""` once removed).
    paths: Vec<String>,
    keys: HashMap<String, u64>,
    /// Changed since it was loaded or saved.
    pub dirty: bool,
}

fn graph_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Search(format!("the vector graph: {what}: {e}"))
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

impl VectorStore {
    /// An empty store for vectors of `space`.
    pub fn new(
        space: VectorSpace,
        storage: VectorStorage,
        index_id: &str,
        opstamp: u64,
    ) -> Result<Self> {
        let graph = Self::new_graph(&space, storage)?;
        graph
            .reserve_capacity_and_threads(64, threads())
            .map_err(|e| graph_error("cannot reserve memory", e))?;
        Ok(VectorStore {
            space,
            index_id: index_id.to_string(),
            opstamp,
            storage,
            graph,
            paths: Vec::new(),
            keys: HashMap::new(),
            dirty: false,
        })
    }

    fn new_graph(space: &VectorSpace, storage: VectorStorage) -> Result<Index> {
        let options = IndexOptions {
            dimensions: space.dims,
            metric: MetricKind::Cos,
            quantization: storage.scalar(),
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        Index::new(&options).map_err(|e| graph_error("cannot create it", e))
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `path` has a vector.
    pub fn contains(&self, path: &str) -> bool {
        self.keys.contains_key(path)
    }

    /// The key of `path`'s vector.
    pub fn key(&self, path: &str) -> Option<u64> {
        self.keys.get(path).copied()
    }

    /// One more than the largest key handed out so far.
    pub fn key_bound(&self) -> u64 {
        self.paths.len() as u64
    }

    /// Memory the graph holds (vectors and links), in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_usage()
    }

    /// Whether the graph holds exactly `unit` (as stored) for `path`.
    pub fn holds(&self, path: &str, unit: &Unit) -> bool {
        let Some(key) = self.key(path) else {
            return false;
        };
        if unit.len() != self.space.dims {
            return false;
        }
        match self.storage {
            VectorStorage::F16 => {
                let mut found = vec![usearch::f16::from_i16s(&[0])[0]; self.space.dims];
                matches!(self.graph.get(key, found.as_mut_slice()), Ok(1))
                    && usearch::f16::to_i16s(&found) == unit.0.as_slice()
            }
            VectorStorage::I8 => {
                let mut found = vec![0i8; self.space.dims];
                matches!(self.graph.get(key, found.as_mut_slice()), Ok(1)) && found == unit.to_i8()
            }
        }
    }

    /// Adds the vector of `path`, replacing the one it had.
    pub fn upsert(&mut self, path: &str, vector: &[f32]) -> Result<()> {
        let unit = self.unit(vector, &format!("the embedding of {path}"))?;
        self.upsert_units(&[(path, &unit)])
    }

    /// `vector` as a [`Unit`] of this store's length, or an error about `what`.
    pub fn unit(&self, vector: &[f32], what: &str) -> Result<Unit> {
        self.space.ensure_dims(vector, what)?;
        Unit::new(vector).ok_or_else(|| {
            Error::Search(format!(
                "{what} is zero or holds a value that is not a finite number: it has no direction"
            ))
        })
    }

    /// Adds each path's vector, replacing those they had (the last of a path given twice wins).
    /// The graph insertions run on every rayon thread.
    pub fn upsert_units(&mut self, items: &[(&str, &Unit)]) -> Result<()> {
        let mut batch: Vec<(u64, &Unit)> = Vec::with_capacity(items.len());
        let mut position: HashMap<u64, usize> = HashMap::new();
        for &(path, unit) in items {
            if unit.len() != self.space.dims {
                return Err(Error::Search(format!(
                    "the embedding of {path} has {} values, but the index's vectors ({}) have {}",
                    unit.len(),
                    self.space.embedder,
                    self.space.dims
                )));
            }
            let key = match self.keys.get(path) {
                Some(&key) => {
                    if !position.contains_key(&key) {
                        self.graph
                            .remove(key)
                            .map_err(|e| graph_error(&format!("cannot remove {path}"), e))?;
                    }
                    key
                }
                None => {
                    let key = self.paths.len() as u64;
                    self.paths.push(path.to_string());
                    self.keys.insert(path.to_string(), key);
                    key
                }
            };
            match position.get(&key) {
                Some(&i) => batch[i].1 = unit,
                None => {
                    position.insert(key, batch.len());
                    batch.push((key, unit));
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.reserve(batch.len())?;
        let storage = self.storage;
        let graph = &self.graph;
        batch.par_iter().try_for_each(|&(key, unit)| {
            let added = match storage {
                VectorStorage::F16 => graph.add(key, unit.f16()),
                VectorStorage::I8 => graph.add(key, unit.to_i8().as_slice()),
            };
            added.map_err(|e| graph_error("cannot add a vector", e))
        })
    }

    /// Room for `more` vectors (grown by half again, so that growing stays cheap).
    fn reserve(&self, more: usize) -> Result<()> {
        let needed = self.graph.size() + more;
        if needed > self.graph.capacity() {
            let capacity = needed.max(self.graph.capacity() * 3 / 2).max(64);
            self.graph
                .reserve_capacity_and_threads(capacity, threads())
                .map_err(|e| graph_error("cannot reserve memory", e))?;
        }
        Ok(())
    }

    /// Removes the vector of `path`. Returns whether it had one.
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let Some(key) = self.keys.remove(path) else {
            return Ok(false);
        };
        self.graph
            .remove(key)
            .map_err(|e| graph_error(&format!("cannot remove {path}"), e))?;
        self.paths[key as usize].clear();
        self.dirty = true;
        Ok(true)
    }

    /// Removes every vector whose key below `seen.len()` is not marked in `seen`. Returns how
    /// many it removed.
    pub fn remove_unseen(&mut self, seen: &[bool]) -> Result<usize> {
        let gone: Vec<String> = self
            .paths
            .iter()
            .zip(seen)
            .filter(|(path, seen)| !path.is_empty() && !**seen)
            .map(|(path, _)| path.clone())
            .collect();
        for path in &gone {
            self.remove(path)?;
        }
        Ok(gone.len())
    }

    /// The `count` paths whose vectors are nearest to `vector`, with their cosine similarity,
    /// most similar first (ties by path): an exact scan below [`EXACT_BELOW`] vectors, the graph
    /// from there on.
    pub fn nearest(&self, vector: &[f32], count: usize) -> Result<Vec<(String, f32)>> {
        self.nearest_by(vector, count, self.len() < EXACT_BELOW)
    }

    /// [`VectorStore::nearest`] by an exact scan (`exact`) or the graph, whatever the size.
    pub fn nearest_by(
        &self,
        vector: &[f32],
        count: usize,
        exact: bool,
    ) -> Result<Vec<(String, f32)>> {
        let query = self.unit(vector, "the query image's embedding")?;
        if count == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.search(&query, count.saturating_add(TIE_SLACK), exact)?;
        let mut hits: Vec<(String, f32)> = found
            .into_iter()
            .filter_map(|(key, distance)| {
                let path = self.paths.get(key as usize)?;
                (!path.is_empty()).then(|| (path.clone(), 1.0 - distance))
            })
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hits.truncate(count);
        Ok(hits)
    }

    /// The keys nearest to `query` and their cosine distances: an exact scan, or the graph.
    pub fn search(&self, query: &Unit, count: usize, exact: bool) -> Result<Vec<(u64, f32)>> {
        let count = count.min(self.len());
        if !exact && self.graph.expansion_search() < count.max(EXPANSION_SEARCH) {
            self.graph
                .change_expansion_search(count.max(EXPANSION_SEARCH));
        }
        let matches = match (self.storage, exact) {
            (VectorStorage::F16, false) => self.graph.search(query.f16(), count),
            (VectorStorage::F16, true) => self.graph.exact_search(query.f16(), count),
            (VectorStorage::I8, false) => self.graph.search(query.to_i8().as_slice(), count),
            (VectorStorage::I8, true) => self.graph.exact_search(query.to_i8().as_slice(), count),
        }
        .map_err(|e| graph_error("search failed", e))?;
        Ok(matches.keys.into_iter().zip(matches.distances).collect())
    }

    /// Writes the store to `file` atomically: the graph and the header go to a temporary file in
    /// the same folder, which is synced and then renamed over `file`.
    pub fn save(&mut self, file: &Path) -> Result<()> {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let tmp_path = tmp.path().to_path_buf();
        let tmp_name = tmp_path
            .to_str()
            .ok_or_else(|| Error::Search(format!("{} is not UTF-8", tmp_path.display())))?;
        self.graph
            .save(tmp_name)
            .map_err(|e| graph_error(&format!("cannot save to {}", tmp_path.display()), e))?;
        let graph_bytes = std::fs::metadata(&tmp_path)
            .map_err(|e| Error::io(&tmp_path, e))?
            .len();
        let header = Header {
            format: FORMAT,
            index_id: self.index_id.clone(),
            opstamp: self.opstamp,
            space: self.space.clone(),
            storage: self.storage,
            graph_bytes,
            paths: self.paths.clone(),
        };
        let header = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
        let f = tmp.as_file_mut();
        let write = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.seek(SeekFrom::End(0))?;
            let mut out = std::io::BufWriter::new(f);
            out.write_all(&header)?;
            out.write_all(&(header.len() as u64).to_le_bytes())?;
            out.write_all(MAGIC)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        write(f).map_err(|e| Error::io(&tmp_path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io(&tmp_path, e))?;
        }
        tmp.persist(file).map_err(|e| Error::io(file, e.error))?;
        self.dirty = false;
        Ok(())
    }

    /// Reads the header of a file written by [`VectorStore::save`] and checks that the file is
    /// as long as the header says.
    fn read_header(file: &Path) -> Result<Header> {
        let bad = |message: &str| Error::parse(file, None, message.to_string());
        let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let total = f.metadata().map_err(|e| Error::io(file, e))?.len();
        let tail = 8 + MAGIC.len() as u64;
        let mut end = [0u8; 24];
        if total < tail
            || f.seek(SeekFrom::Start(total - tail)).is_err()
            || f.read_exact(&mut end).is_err()
            || &end[8..] != MAGIC
        {
            return Err(bad(
                "not a capsearch vector file, or cut short (it lacks the end marker)",
            ));
        }
        let header_len = u64::from_le_bytes(end[..8].try_into().unwrap_or_default());
        if header_len > total - tail {
            return Err(bad("its header is longer than the file"));
        }
        let mut header = vec![0u8; header_len as usize];
        f.seek(SeekFrom::Start(total - tail - header_len))
            .and_then(|_| f.read_exact(&mut header))
            .map_err(|e| Error::io(file, e))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|e| bad(&format!("unreadable header: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(&format!(
                "format {} (this capsearch reads {FORMAT})",
                header.format
            )));
        }
        let expected = header.graph_bytes + header_len + tail;
        if total != expected {
            return Err(bad(&format!(
                "its header says it should be {expected} bytes, but it is {total}"
            )));
        }
        Ok(header)
    }

    /// What the header of a file written by [`VectorStore::save`] says, without reading the
    /// graph.
    pub fn summary(file: &Path) -> Result<VectorFileSummary> {
        let header = Self::read_header(file)?;
        Ok(VectorFileSummary {
            count: header.paths.iter().filter(|p| !p.is_empty()).count(),
            index_id: header.index_id,
            opstamp: header.opstamp,
            space: header.space,
            storage: header.storage,
        })
    }

    /// Reads a store written by [`VectorStore::save`]. A file that is not one, is cut short or
    /// does not hold what its header says is an error naming the file and what is wrong.
    pub fn load(file: &Path) -> Result<Self> {
        let bad = |message: &str| Error::parse(file, None, message.to_string());
        let header = Self::read_header(file)?;
        let name = file
            .to_str()
            .ok_or_else(|| Error::Search(format!("{} is not UTF-8", file.display())))?;
        let graph = Self::new_graph(&header.space, header.storage)?;
        graph
            .load(name)
            .map_err(|e| bad(&format!("unreadable graph: {e}")))?;
        if graph.dimensions() != header.space.dims {
            return Err(bad(&format!(
                "its graph holds vectors of {} values, its header says {}",
                graph.dimensions(),
                header.space.dims
            )));
        }
        let mut keys = HashMap::with_capacity(header.paths.len());
        for (key, path) in header.paths.iter().enumerate() {
            if path.is_empty() {
                continue;
            }
            if keys.insert(path.clone(), key as u64).is_some() {
                return Err(bad(&format!("its header lists {path} twice")));
            }
            if !graph.contains(key as u64) {
                return Err(bad(&format!("its graph lacks the vector of {path}")));
            }
        }
        if graph.size() != keys.len() {
            return Err(bad(&format!(
                "its graph holds {} vectors, its header lists {}",
                graph.size(),
                keys.len()
            )));
        }
        graph
            .reserve_capacity_and_threads(graph.capacity().max(64), threads())
            .map_err(|e| graph_error("cannot reserve memory", e))?;
        graph.change_expansion_add(EXPANSION_ADD);
        graph.change_expansion_search(EXPANSION_SEARCH);
        Ok(VectorStore {
            space: header.space,
            index_id: header.index_id,
            opstamp: header.opstamp,
            storage: header.storage,
            graph,
            paths: header.paths,
            keys,
            dirty: false,
        })
    }
}

#[cfg(test)]
mod tests;
