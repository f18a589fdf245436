//! The one integration-test binary: each module tests one area through the real `capsearch` binary.

mod bench;
mod browser;
mod common;
mod dataset;
mod efficientnet;
mod eval;
mod image_search;
mod logging;
mod neuraltalk;
mod resnet;
mod scenes;
mod score;
mod search;
mod serve;
mod train;
mod vectors;
