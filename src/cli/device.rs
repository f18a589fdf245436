//! `--device`: which burn backend runs the model.

use burn::prelude::Device;

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceArg {
    /// burn's `flex` CPU backend (multi-threaded, SIMD).
    #[default]
    Cpu,
    /// burn's CUDA backend, GPU 0 (needs a build with `--features cuda`).
    Cuda,
    /// burn's deprecated `ndarray` CPU backend, for comparison (needs a build with
    /// `--features ndarray`).
    Ndarray,
}

impl DeviceArg {
    pub fn device(self) -> anyhow::Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceArg::Cuda => Ok(Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            DeviceArg::Cuda => anyhow::bail!(
                "this capsearch was built without CUDA: rebuild with `cargo build --release --features cuda`"
            ),
            // deprecated in burn, and measured here only to compare it with flex
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            DeviceArg::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            DeviceArg::Ndarray => anyhow::bail!(
                "this capsearch was built without the ndarray backend: rebuild with `cargo build --release --features ndarray`"
            ),
        }
    }
}
