//! The tantivy schema: what each field is and how it is indexed.

use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
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
        path: b.add_text_field("path", STRING | STORED),
        caption: b.add_text_field("caption", caption_options),
        kind: b.add_text_field("kind", STRING | STORED),
        model: b.add_text_field("model", STRING | STORED),
        dataset: b.add_text_field("dataset", STRING | STORED),
        timestamp: b.add_i64_field("timestamp", INDEXED | STORED),
    };
    (b.build(), fields)
}
