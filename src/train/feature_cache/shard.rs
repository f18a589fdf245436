//! One shard file of the feature cache: `b"CSFEAT01" | header length (u64 LE) | header JSON |
//! features (f32 LE, images × dim)`, written atomically and checked whole when read (the layout
//! and the rules are in the module documentation of `train::feature_cache`).

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// First bytes of a shard file.
pub const MAGIC: &[u8; 8] = b"CSFEAT01";
/// Extension of shard files.
pub const SHARD_EXT: &str = "feat";

#[derive(serde::Serialize, serde::Deserialize)]
struct ShardHeader {
    key: String,
    dim: usize,
    images: Vec<String>,
    data_sha256: String,
}

/// Writes a shard atomically.
pub fn write_shard(
    path: &Path,
    key: &str,
    dim: usize,
    entries: &[(String, Vec<f32>)],
) -> Result<()> {
    let mut data = Vec::with_capacity(entries.len() * dim * 4);
    for (_, feature) in entries {
        if feature.len() != dim {
            return Err(Error::Invalid(format!(
                "feature of {} values in a cache of {dim}",
                feature.len()
            )));
        }
        for v in feature {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let header = ShardHeader {
        key: key.to_string(),
        dim,
        images: entries.iter().map(|(h, _)| h.clone()).collect(),
        data_sha256: hex::encode(Sha256::digest(&data)),
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut bytes = Vec::with_capacity(16 + header.len() + data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    crate::util::write_atomic(path, &bytes)
}

/// Reads and checks a shard; the error is the reason it is not trusted.
pub fn read_shard(
    path: &Path,
    key: &str,
    dim: usize,
) -> std::result::Result<Vec<(String, Vec<f32>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a capsearch feature shard (bad magic)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let header_len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let header_end = 16usize
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or("truncated header")?;
    let header: ShardHeader = serde_json::from_slice(&bytes[16..header_end])
        .map_err(|e| format!("unreadable header: {e}"))?;
    if header.key != key {
        return Err(format!("written for backbone {}, not {key}", header.key));
    }
    if header.dim != dim {
        return Err(format!(
            "features of {} values, the backbone gives {dim}",
            header.dim
        ));
    }
    let data = &bytes[header_end..];
    let want = header.images.len() * dim * 4;
    if data.len() != want {
        return Err(format!(
            "{} bytes of features where {} images need {want} (truncated or padded)",
            data.len(),
            header.images.len()
        ));
    }
    if hex::encode(Sha256::digest(data)) != header.data_sha256 {
        return Err("checksum mismatch (the features are corrupt)".into());
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(header
        .images
        .into_iter()
        .zip(values.chunks_exact(dim.max(1)))
        .map(|(h, f)| (h, f.to_vec()))
        .collect())
}
