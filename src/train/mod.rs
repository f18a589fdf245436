//! Training: the config, the loop, checkpoints, and the reporters that show a run.

pub mod checkpoint;
pub mod config;
pub mod dashboard;
pub mod feature_cache;
pub mod fit;
pub mod inputs;
pub mod overview;
pub mod progress;
pub mod report;
pub mod step;
