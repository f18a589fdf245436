//! Resumable training state, written atomically.
//!
//! The files are those of a [`RunDir`]: `last/state.json` (the commit point: epoch, iteration,
//! history, best so far) and `last/<tag>/` (the training model's weights and optimizer state).
//! A checkpoint's files are written into a fresh `<tag>` folder first; `state.json` is then
//! replaced atomically to point at it, and older folders are removed. A run killed at any moment
//! (SIGKILL included) therefore resumes from the last complete checkpoint, losing at most the work
//! since then. The shuffling order and dropout seed of an epoch depend only on the run's seed, the
//! epoch and the iteration, so a resumed run continues as the original would have.

use burn::optim::ModuleOptimizer;

use crate::error::{Error, Result};
use crate::model::Captioner;
use crate::model::artifact::{load_weights, save_weights};
use crate::model::run_dir::RunDir;
pub use crate::model::run_dir::{EpochRecord, ResumeState};

/// Writes a checkpoint: weights and optimizer state into a new folder, then the state file.
pub fn save_checkpoint(
    run: &RunDir,
    state: &ResumeState,
    model: &Captioner,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let tag = format!("e{:04}-i{:06}", state.epoch, state.iteration);
    let dir = run.checkpoint(&tag);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    save_weights(model.clone(), &run.checkpoint_weights(&tag))?;
    let optim_path = run.checkpoint_optim(&tag);
    let tmp = optim_path.with_extension("bpk.tmp");
    optim.save(&tmp).map_err(|e| Error::Model {
        path: tmp.clone(),
        message: format!("cannot write optimizer state: {e:?}"),
    })?;
    std::fs::rename(&tmp, &optim_path).map_err(|e| Error::io(&optim_path, e))?;
    let mut state = state.clone();
    state.tag = tag.clone();
    run.save_state(&state)?;
    // the new checkpoint is committed: older ones can go
    if let Ok(entries) = std::fs::read_dir(run.last()) {
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() && entry.file_name().to_string_lossy() != tag {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    Ok(())
}

/// Loads the weights and optimizer state a [`ResumeState`] points at.
pub fn load_checkpoint(
    run: &RunDir,
    state: &ResumeState,
    model: Captioner,
    optim: ModuleOptimizer,
) -> Result<(Captioner, ModuleOptimizer)> {
    let model = load_weights(model, &run.checkpoint_weights(&state.tag))?;
    let optim_path = run.checkpoint_optim(&state.tag);
    let optim = optim.load(&optim_path).map_err(|e| Error::Model {
        path: optim_path.clone(),
        message: format!("cannot read optimizer state: {e:?}"),
    })?;
    Ok((model, optim))
}
