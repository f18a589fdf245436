//! How a frozen backbone's last feature map becomes the image's vector (`[model.encoder]
//! pooling`).
//!
//! EfficientNet-Lite and ResNet end in a map of `C` channels over a grid of cells (7×7 for a
//! 224×224 image). The networks were trained with that map averaged over the cells (`mean`, the
//! vector before their classifier); capsearch can also take each channel's largest value over the
//! cells (`max`), both side by side (`mean-max`, `2·C` values), or the generalised mean of exponent
//! 3 (`gem`: `(mean of x³)^(1/3)` per channel, between the average and the maximum). On
//! `scenes`, where the things are small stamps over a large background photo, the average is
//! dominated by the background;
//! `bench/scenes_pooling_probe.py` measures which summary tells the things apart.
//!
//! One home for the arithmetic: [`Pooling::pool_cells`] for maps held cell-major (the
//! EfficientNet fast path's `[cells, C]`), [`Pooling::pool_map`] for burn's `[B, C, H, W]`.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// A pooling of a `[C, H, W]` feature map into a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Each channel's average over the cells (`C` values): the networks' own pooled feature.
    #[default]
    Mean,
    /// Each channel's largest value over the cells (`C` values).
    Max,
    /// The average, then the maximum (`2·C` values).
    MeanMax,
    /// Each channel's generalised mean of exponent [`GEM_P`], `(mean of max(x, ε)^p)^(1/p)`
    /// (`C` values): large cells weigh more than in the average, without the maximum's one
    /// cell (Radenović et al., "Fine-tuning CNN image retrieval with no human annotation").
    Gem,
}

/// The exponent of [`Pooling::Gem`] (the value its authors start from).
pub const GEM_P: f32 = 3.0;

/// What [`Pooling::Gem`] raises instead of values below it (the maps are ReLU outputs, ≥ 0).
const GEM_EPS: f32 = 1e-6;

impl Pooling {
    /// Every pooling, as configs name them.
    pub const ALL: [&'static str; 4] = ["mean", "max", "mean-max", "gem"];

    /// The name configs and `backbone.json` use.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Max => "max",
            Pooling::MeanMax => "mean-max",
            Pooling::Gem => "gem",
        }
    }

    /// A pooling by its name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mean" => Some(Pooling::Mean),
            "max" => Some(Pooling::Max),
            "mean-max" => Some(Pooling::MeanMax),
            "gem" => Some(Pooling::Gem),
            _ => None,
        }
    }

    /// Whether this is [`Pooling::Mean`] (for serde's `skip_serializing_if`: files written
    /// before pooling existed stay as they were).
    pub fn is_mean(&self) -> bool {
        *self == Pooling::Mean
    }

    /// Values per image for a map of `channels` channels.
    pub fn dim(self, channels: usize) -> usize {
        match self {
            Pooling::Mean | Pooling::Max | Pooling::Gem => channels,
            Pooling::MeanMax => 2 * channels,
        }
    }

    /// A map held cell-major, `cells` rows of `channels` values, → `out` ([`Pooling::dim`]
    /// values).
    pub fn pool_cells(self, map: &[f32], channels: usize, out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.dim(channels));
        debug_assert_eq!(map.len() % channels.max(1), 0);
        let cells = map.len() / channels.max(1);
        let (mean, max) = match self {
            Pooling::Gem => return gem_cells(map, channels, cells, out),
            Pooling::Mean => (Some(&mut out[..]), None),
            Pooling::Max => (None, Some(&mut out[..])),
            Pooling::MeanMax => {
                let (a, b) = out.split_at_mut(channels);
                (Some(a), Some(b))
            }
        };
        if let Some(mean) = mean {
            mean.fill(0.0);
            for row in map.chunks_exact(channels) {
                for (o, v) in mean.iter_mut().zip(row) {
                    *o += v;
                }
            }
            let scale = 1.0 / cells.max(1) as f32;
            for o in mean {
                *o *= scale;
            }
        }
        if let Some(max) = max {
            max.fill(if cells == 0 { 0.0 } else { f32::NEG_INFINITY });
            for row in map.chunks_exact(channels) {
                for (o, v) in max.iter_mut().zip(row) {
                    *o = o.max(*v);
                }
            }
        }
    }

    /// Maps `[B, C, H, W]` → vectors `[B, dim(C)]`.
    pub fn pool_map(self, map: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = map.dims();
        let cells = map.reshape([b, c, h * w]);
        match self {
            Pooling::Mean => cells.mean_dim(2).reshape([b, c]),
            Pooling::Max => cells.max_dim(2).reshape([b, c]),
            Pooling::Gem => cells
                .clamp_min(GEM_EPS)
                .powf_scalar(GEM_P)
                .mean_dim(2)
                .powf_scalar(1.0 / GEM_P)
                .reshape([b, c]),
            Pooling::MeanMax => Tensor::cat(
                vec![
                    cells.clone().mean_dim(2).reshape([b, c]),
                    cells.max_dim(2).reshape([b, c]),
                ],
                1,
            ),
        }
    }
}

/// [`Pooling::Gem`] of a cell-major map of `cells` rows of `channels` values into `out`.
fn gem_cells(map: &[f32], channels: usize, cells: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in map.chunks_exact(channels) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v.max(GEM_EPS).powf(GEM_P);
        }
    }
    let scale = 1.0 / cells.max(1) as f32;
    for o in out {
        *o = (*o * scale).powf(1.0 / GEM_P);
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels over three cells, cell-major: channel 0 is 1, 5, 3 and channel 1 is −2, 0, −4.
    const CELLS: [f32; 6] = [1.0, -2.0, 5.0, 0.0, 3.0, -4.0];

    #[test]
    fn cell_major_maps_pool_to_mean_max_or_both() {
        let pooled = |p: Pooling| {
            let mut out = vec![f32::NAN; p.dim(2)];
            p.pool_cells(&CELLS, 2, &mut out);
            out
        };
        assert_eq!(pooled(Pooling::Mean), [3.0, -2.0]);
        assert_eq!(pooled(Pooling::Max), [5.0, 0.0]);
        assert_eq!(pooled(Pooling::MeanMax), [3.0, -2.0, 5.0, 0.0]);
        // (mean of cubes)^(1/3), values below ε raised as ε: (1 + 125 + 27) / 3 = 51
        let gem = pooled(Pooling::Gem);
        assert!((gem[0] - 51f32.cbrt()).abs() < 1e-5, "{gem:?}");
        assert!(gem[1] > 0.0 && gem[1] < 1e-5, "{gem:?}");
    }

    #[test]
    fn burn_maps_pool_as_cell_major_ones_do() {
        let device = Device::flex();
        // [1, 2, 1, 3]: the same map, channel-major.
        let map = Tensor::<1>::from_floats([1.0, 5.0, 3.0, -2.0, 0.0, -4.0], &device)
            .reshape([1, 2, 1, 3]);
        for p in [Pooling::Mean, Pooling::Max, Pooling::MeanMax, Pooling::Gem] {
            let got: Vec<f32> = p.pool_map(map.clone()).into_data().try_to_vec().unwrap();
            let mut want = vec![0.0; p.dim(2)];
            p.pool_cells(&CELLS, 2, &mut want);
            if p == Pooling::Gem {
                // powers and roots round differently in burn's ops
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{p}: {got:?} {want:?}"
                    );
                }
            } else {
                assert_eq!(got, want, "{p}");
            }
            assert_eq!(p.pool_map(map.clone()).dims(), [1, p.dim(2)]);
        }
    }

    #[test]
    fn names_round_trip_and_mean_is_the_default() {
        for name in Pooling::ALL {
            let p = Pooling::parse(name).unwrap();
            assert_eq!(p.name(), name);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Pooling>(&json).unwrap(), p);
        }
        assert_eq!(Pooling::parse("avg"), None);
        assert_eq!(Pooling::default(), Pooling::Mean);
        assert!(Pooling::Mean.is_mean() && !Pooling::Max.is_mean());
    }
}
