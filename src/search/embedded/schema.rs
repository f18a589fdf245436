//! The tantivy schema: what each field is and how it is indexed.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::search::DocKind;
use crate::search::analysis::ANALYZER_NAME;

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) path: Field,
    pub(super) caption: Field,
    pub(super) kind: Field,
    pub(super) model: Field,
    pub(super) dataset: Field,
    pub(super) timestamp: Field,
    /// The image's embedding as little-endian `f32`s (stored only): the truth the vector file
    /// (`vectors.rs`) is built from, and rebuilt from when it does not match the index.
    pub(super) embedding: Field,
}

impl Fields {
    pub(super) fn source(&self, kind: DocKind) -> Field {
        match kind {
            DocKind::Model => self.model,
            DocKind::Dataset => self.dataset,
        }
    }
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let caption_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER_NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        // FAST: ties between equal scores are broken by path (`collector.rs`).
        path: b.add_text_field("path", STRING | STORED | FAST),
        caption: b.add_text_field("caption", caption_options),
        kind: b.add_text_field("kind", STRING | STORED),
        model: b.add_text_field("model", STRING | STORED),
        dataset: b.add_text_field("dataset", STRING | STORED),
        timestamp: b.add_i64_field("timestamp", INDEXED | STORED),
        embedding: b.add_bytes_field("embedding", STORED),
    };
    (b.build(), fields)
}

/// An embedding as the bytes the `embedding` field stores.
pub(super) fn embedding_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The embedding in an `embedding` field's bytes (`None` when their length is not whole floats).
pub(super) fn embedding_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}
