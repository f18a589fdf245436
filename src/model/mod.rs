//! The captioner: encoders, the fused LSTM cell, the NeuralTalk-arranged decoder, and decoding.

pub mod artifact;
pub mod captioner;
pub mod decode;
pub mod encoder;
// pub mod inference;
pub mod lstm;

pub use captioner::{Captioner, CaptionerConfig, EncoderConfig};
