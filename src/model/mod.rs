//! The captioner: encoders, the fused LSTM cell, the NeuralTalk-arranged decoder, and decoding.

pub mod artifact;
pub mod backbone;
pub mod captioner;
pub mod decode;
pub mod efficientnet;
pub mod embedding_stats;
pub mod encoder;
pub(crate) mod fast_cell;
pub mod fast_cnn;
pub mod fast_decode;
pub mod finetune;
pub(crate) mod gemm;
pub mod guide;
pub mod guide_head;
pub mod inference;
pub mod label_head;
pub mod lstm;
pub mod metrics;
pub mod ops;
pub(crate) mod packed;
pub mod pooling;
pub mod precision;
pub mod resnet;
pub mod run_dir;
pub(crate) mod simd;
pub mod vgg16;

pub use captioner::{Captioner, CaptionerConfig, EncoderConfig};
