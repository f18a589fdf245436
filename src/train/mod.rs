//! Training: the config, the loop, checkpoints, and the dashboard that shows a run.

pub mod checkpoint;
pub mod config;
pub mod dashboard;
pub mod feature_cache;
pub mod fit;
pub mod progress;
