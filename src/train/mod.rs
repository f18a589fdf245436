//! Training: the loop, checkpoints, and the dashboard that shows a run.

pub mod dashboard;
pub mod progress;
