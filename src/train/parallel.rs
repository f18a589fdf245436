//! Data-parallel training steps on several devices (`[loop] devices`, `train --devices`).
//!
//! A step's images are shared out between the devices; burn-train's `MultiDevicesTrainStep`
//! runs the captioner's [`TrainStep`] on each in its own thread (the model forked there), and
//! the gradients are brought to the first device, summed and applied there, as burn-train's
//! `MultiDeviceOptim::OptimMainDevice` does. Each device's loss is scaled by its share of the
//! step's target tokens, so the summed gradients are those of the whole step on one device: the
//! run is the same whatever the number of devices, up to float rounding, dropout masks, and the
//! small CNN's batch norm (each device normalises over its own part of the batch).
//! On one device the step runs in place, without threads.

use burn::data::dataloader::{DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::optim::{GradientsAccumulator, ModuleOptimizer};
use burn::prelude::*;
use burn::train::TrainStep;
use burn::train::train::MultiDevicesTrainStep;

use super::inputs::SplitInputs;
use super::step::{Selection, StepLoss};
use crate::error::{Error, Result};
use crate::model::Captioner;
use crate::util::on_pool;

/// The devices a run trains on; the first one holds the model and the optimizer state, and
/// validates.
pub struct DataParallel {
    devices: Vec<Device>,
    workers: Option<MultiDevicesTrainStep<Captioner>>,
}

impl DataParallel {
    /// Training on `devices` (made autodiff devices); at least one.
    pub fn new(devices: Vec<Device>) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::Internal(
                "data-parallel training without a device".into(),
            ));
        }
        let devices: Vec<Device> = devices
            .into_iter()
            .map(|d| if d.is_autodiff() { d } else { d.autodiff() })
            .collect();
        let workers = (devices.len() > 1).then(|| MultiDevicesTrainStep::new(&devices));
        Ok(DataParallel { devices, workers })
    }

    /// The device that holds the model.
    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// Seeds every device's random numbers (dropout).
    pub fn seed(&self, seed: u64) {
        for device in &self.devices {
            device.seed(seed);
        }
    }

    /// One optimizer step on the images at `images` (the captions `pick` chooses of each):
    /// returns the updated model and the step's caption loss.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        model: Captioner,
        optim: &mut ModuleOptimizer,
        lr: f64,
        store: &SplitInputs,
        captions: &[Vec<Vec<usize>>],
        images: &[usize],
        pick: impl Fn(usize, usize) -> Vec<usize>,
        concept_weight: f64,
    ) -> Result<(Captioner, StepLoss)> {
        let Some(workers) = &self.workers else {
            let selection = Selection::new(captions, images, pick);
            let size = (selection.tokens, images.len());
            let batch =
                selection.batch(&model, store, captions, concept_weight, size, self.main())?;
            return Ok(on_pool(|| {
                let out = TrainStep::step(&model, batch);
                (optim.step(lr, model, out.grads), out.item)
            }));
        };
        let part = images.len().div_ceil(self.devices.len()).max(1);
        let selections: Vec<Selection> = images
            .chunks(part)
            .map(|part| Selection::new(captions, part, &pick))
            .collect();
        let size = (selections.iter().map(|s| s.tokens).sum(), images.len());
        // every device gets an iterator; one left without images (a short last step) ends at once
        let mut batches: Vec<Box<dyn DataLoaderIterator<_>>> =
            Vec::with_capacity(self.devices.len());
        for (i, device) in self.devices.iter().enumerate() {
            let batch = match selections.get(i) {
                Some(s) => Some(s.batch(&model, store, captions, concept_weight, size, device)?),
                None => None,
            };
            batches.push(Box::new(OneBatch(batch)));
        }
        let (outputs, _) = workers
            .step(&mut batches, &model)
            .map_err(|e| Error::Thread {
                name: "data-parallel training".into(),
                message: e.to_string(),
            })?;
        let mut grads = GradientsAccumulator::new();
        let mut loss = StepLoss {
            loss: 0.0,
            tokens: 0,
        };
        for out in outputs {
            grads.accumulate(&model, out.output.grads.to_device(self.main(), &model));
            let item = out.output.item;
            loss.loss += item.loss * item.tokens as f64 / size.0.max(1) as f64;
            loss.tokens += item.tokens;
        }
        Ok((optim.step(lr, model, grads.grads()), loss))
    }
}

/// Parses a device name of `[loop] devices` / `--devices`: `cpu` (burn's flex backend),
/// `cuda` or `cuda:N` (GPU N, in a build with `--features cuda`).
pub fn parse_device(name: &str) -> Result<Device> {
    let bad = |message: String| Error::Config {
        field: "loop.devices".into(),
        message,
    };
    match name.trim() {
        "cpu" => Ok(Device::flex()),
        gpu if gpu == "cuda" || gpu.starts_with("cuda:") => {
            let index = match gpu.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    bad(format!(
                        "{name:?}: the GPU index must be a number, e.g. cuda:1"
                    ))
                })?,
                None => 0,
            };
            cuda(index).ok_or_else(|| {
                bad(format!(
                    "{name:?}: this capsearch was built without CUDA: rebuild with `cargo build --release --features cuda`"
                ))
            })
        }
        other => Err(bad(format!(
            "unknown device {other:?}: use cpu, cuda or cuda:N"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Option<Device> {
    Some(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Option<Device> {
    None
}

/// One device's part of a step, as the single item of the data-loader iterator burn-train's
/// `MultiDevicesTrainStep` takes from each device.
struct OneBatch<T>(Option<T>);

impl<T> Iterator for OneBatch<T> {
    type Item = std::result::Result<T, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.take().map(Ok)
    }
}

impl<T> DataLoaderIterator<T> for OneBatch<T> {
    fn progress(&self) -> Progress {
        let done = usize::from(self.0.is_none());
        Progress::new(done, 1, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Sample, Split};
    use crate::model::{CaptionerConfig, EncoderConfig};
    use crate::train::feature_cache::SplitFeatures;
    use burn::optim::SgdConfig;

    /// Steps on two CPU devices (burn's flex device twice: two workers, each with its share of
    /// the images) train the model exactly as steps on one: same losses, same weights.
    #[test]
    fn two_cpu_devices_train_as_one() {
        let dim = 6;
        let images = 5;
        let samples = (0..images)
            .map(|i| Sample {
                path: format!("{i}.png"),
                captions: vec!["x".into()],
                split: Split::Train,
                labels: None,
            })
            .collect();
        let values = (0..images * dim)
            .map(|k| ((k * 7 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let store = SplitInputs::Features(SplitFeatures {
            dim,
            samples,
            values,
            ..Default::default()
        });
        // images with one to three captions of different lengths
        let captions: Vec<Vec<Vec<usize>>> = vec![
            vec![vec![1, 2, 3]],
            vec![vec![4, 5], vec![6, 7, 8, 1]],
            vec![vec![2]],
            vec![vec![3, 3, 4], vec![5], vec![8, 7]],
            vec![vec![6, 1, 2, 3, 4]],
        ];
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim,
                backbone: "test".into(),
            },
            9,
        )
        .with_embed_size(8)
        .with_hidden_size(12)
        .with_dropout(0.0)
        .with_concept_head(Some(true));
        let cpu = Device::flex().autodiff();
        cpu.seed(3);
        let start = config.init(&cpu);
        let run = |devices: Vec<Device>| {
            let parallel = DataParallel::new(devices).unwrap();
            // plain SGD: the weights move by the gradients themselves, so any difference in
            // them shows (Adam's normalisation would hide a mis-weighted part)
            let mut optim = SgdConfig::new().init();
            let mut model = start.clone();
            let mut losses = Vec::new();
            for _ in 0..3 {
                let all = |_: usize, count: usize| (0..count).collect();
                let (next, step) = parallel
                    .step(
                        model,
                        &mut optim,
                        0.5,
                        &store,
                        &captions,
                        &[0, 1, 2, 3, 4],
                        all,
                        0.5,
                    )
                    .unwrap();
                model = next;
                losses.push(step);
            }
            (
                losses,
                model.we.val().into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let (one, one_we) = run(vec![Device::flex()]);
        let (two, two_we) = run(vec![Device::flex(), Device::flex()]);
        assert!(
            one[0].loss > one[2].loss,
            "training lowers the loss: {one:?}"
        );
        for (a, b) in one.iter().zip(&two) {
            assert_eq!(a.tokens, b.tokens);
            assert!((a.loss - b.loss).abs() < 2e-6, "{one:?} vs {two:?}");
        }
        let gap = one_we
            .iter()
            .zip(&two_we)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(gap < 2e-6, "the weights differ by {gap}");
    }

    #[test]
    fn device_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::flex());
        let err = parse_device("tpu:0").unwrap_err().to_string();
        assert!(
            err.contains("loop.devices") && err.contains("cuda:N"),
            "{err}"
        );
        if cfg!(not(feature = "cuda")) {
            let err = parse_device("cuda:1").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        assert!(parse_device("cuda:x").is_err());
    }
}
