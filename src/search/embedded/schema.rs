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
    /// The image's embedding, unit length, as little-endian f16 ([`super::vectors::Unit`]; stored
    /// only): the truth the vector graph (`vectors.rs`) is built from, and repaired or rebuilt from
    /// when it does not match the index. f16, not f32: 2.5 KB per 1280-d vector, 2.6 GB of
    /// docstore at 1M images instead of 5.1 GB, and exactly what the f16 graph holds.
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
