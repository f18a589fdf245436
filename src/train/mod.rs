//! Training: the config, the loop, checkpoints, and the reporters that show a run.
//!
//! # burn-train (issue #16): what capsearch uses of it, and why the loop stays its own
//!
//! Read in burn-train 0.22.1 (paths under `burn-train-0.22.1/src/` unless named otherwise).
//!
//! Used: the captioner is a burn-train model: [`step`] implements `TrainStep` and
//! `InferenceStep` on it (the validation loss goes through `InferenceStep`), and [`parallel`]
//! runs data-parallel steps (`[loop] devices`, `train --devices cuda:0,cuda:1`) through
//! `train::MultiDevicesTrainStep` (`learner/supervised/step/train.rs:70-251`: one thread per
//! device, the model forked there) with the gradients summed on the first device as
//! `MultiDeviceOptim::OptimMainDevice` does (`strategies/multi/epoch.rs:105-106`).
//!
//! Not used, with the reason (`SupervisedTraining` + `Learner` would lose these behaviours):
//! - **Checkpoints inside an epoch, and `q` → confirm → save.** The strategies checkpoint only at
//!   epoch ends (`strategies/single/strategy.rs:123-125`), and a stop breaks out of the epoch
//!   before validation and before any checkpoint (`:87-92`, `:119-121`): the work since the last
//!   epoch end is lost, where capsearch saves at the stop and every `loop.checkpoint_every`.
//!   Resuming is by epoch number only (`paradigm.rs:276-280`; `strategies/base.rs:130`), and an
//!   epoch always restarts its data loader from the beginning (`strategies/single/epoch.rs:91`).
//! - **Atomic checkpoints.** `FileCheckpointer` writes each file in place (`checkpoint/file.rs:39-44`),
//!   and model, optimizer and scheduler are saved by three independent threads
//!   (`paradigm.rs:316-329`, `checkpoint/async_checkpoint.rs:92-101`): nothing commits them
//!   together, so a SIGKILL can leave a model of epoch N beside an optimizer of epoch N-1.
//!   A wrapping `Checkpointer` (`paradigm.rs:333-351`) sees one record at a time and cannot either.
//! - **The same shuffling after a resume.** `DataLoaderBuilder::shuffle` advances one RNG per
//!   `iter()` (`burn-core-0.22.1/src/data/dataloader/batch.rs:79-86`): a run resumed at epoch 5
//!   shuffles as epoch 1 did. capsearch's order depends on (seed, epoch) only (`fit.rs`).
//! - **The dashboard as a `MetricsRenderer`.** A renderer is told metric entries and progress
//!   only (`renderer/base.rs:10-51,105-117`; `logger/progress.rs:28-57`): not the decoded
//!   validation samples or the best checkpoint's path that the dashboard shows, and its `q`
//!   could only `Interrupter::stop`, which loses the epoch (above).
//! - **Ranking and patience.** An exact corpus BLEU-4 *is* possible as a metric: `update`
//!   accumulates, `compute` reports a `NumericEntry::Final` at epoch end
//!   (`metric/base.rs:114-128,255-257`; `metric/processor/metrics.rs:251-283,364-373`), and
//!   ranking reads that final value (`metric/store/aggregate.rs:56-58`). (burn-train's own
//!   `BleuScore` averages batch scores: `metric/bleu.rs:51-60`.) But the best epoch is the first
//!   of equal values (`aggregate.rs:111,117`), where capsearch breaks BLEU ties (common once
//!   captions are perfect) by the lower validation loss, and `MetricEarlyStoppingStrategy` keeps
//!   its best epoch in memory (`learner/early_stopping.rs:49-58`), so patience restarts on resume.
//! - **Errors.** `TrainStep::step` returns no `Result` (`learner/train_val.rs:61`): a diverged loss
//!   or an unreadable input could only panic; the checkpointer `expect`s
//!   (`learner/base.rs:165-184`).
//! - A time budget would fit (an `EarlyStoppingStrategy` is asked after the checkpoint,
//!   `strategies/single/strategy.rs:127-131`), but not alone: the run would still lose the
//!   pieces above.
//!
//! Multi-device: `MultiGradientsParams` and the accumulator *sum* the devices' gradients
//! (`burn-optim-0.22.1/src/optim/base.rs:16-36`), so each device's loss is scaled by its share of
//! the step's tokens (concept loss: of its images), and N devices train as one
//! (`parallel::tests`), but for dropout masks and the small CNN's batch norm, which normalises
//! over each device's part of the batch (its running statistics are averaged over the devices'
//! threads: `burn-core-0.22.1/src/module/param/running.rs:37-47`). Two CPU devices are burn's one flex device twice (`Device::flex()` is a
//! unit device: `burn-tensor-0.22.1/src/device.rs:364-366`): the test checks the mechanics, not
//! a speed-up. `ExecutionStrategy::DistributedDataParallel` is not offered: its collectives exist
//! only on CUDA among the compiled backends (flex: `distributed: false`,
//! `burn-backend-extension-0.22.1/src/catalog.rs:21-34`), and `DistributedConfig` holds only
//! the reduce operation (`burn-std-0.22.1/src/distributed.rs:12-17`), with an in-process sync
//! server (`burn-backend-0.22.1/src/backend/distributed/ops.rs:39-44`): burn 0.22.1 has no
//! multi-machine rendezvous, so there is no multi-machine command to document.
//!
//! Measured: one device trains exactly as before (`shapes`, one epoch: the same `metrics.csv`
//! losses and BLEU-4, the same weights), so the 10-minute `shapes` figures in README.md stand.
//! `src/train` (`wc -l`, dashboard included): 5,293 lines before, 5,820 after, of which
//! this note is 63 and `parallel.rs` 291 (tests included).

pub mod checkpoint;
pub mod config;
pub mod dashboard;
pub mod feature_cache;
pub mod fit;
pub mod guide_fit;
pub mod inputs;
pub mod label_fit;
pub mod memory;
pub mod overview;
pub mod parallel;
pub mod progress;
pub mod report;
pub mod step;
