//! NeuralTalk's own outputs, to check an imported model against.
//!
//! A reference file is JSON written by a run of NeuralTalk's `predict()` (for the repository's
//! fixtures, by `tests/fixtures/neuraltalk/make_fixtures.py`, whose numpy port of `predict()` is
//! `neuraltalk_reference.py`): for each model, the pickles that hold it, a `.npy` of image
//! features, and for each feature row and beam size the beams NeuralTalk returns, best first,
//! with their summed `log(1e-20 + softmax)`.
//!
//! ```json
//! {"max_steps": 20, "models": [{"name": "tanh1", "tanhC_version": 1, "feature_size": 12,
//!   "hidden_size": 8, "vocab_size": 20, "features": "tanh1.features.npy", "min_margin": 0.01,
//!   "pickles": [{"file": "tanh1.py2-p0.p", "python": 2, "protocol": 0}],
//!   "cases": [{"feature": 0, "beam_size": 1,
//!              "beams": [{"logprob": -9.2, "indices": [4, 7, 0], "words": ["a", "dog"]}]}]}]}
//! ```
//! `indices` are NeuralTalk's output indices, END (0) included when the caption ended;
//! `words` leave END out, as NeuralTalk's `predict_on_images.py` prints them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::neuraltalk::Array2;
use crate::error::{Error, Result};

/// A reference file: the expected outputs of NeuralTalk's `predict()` for a few models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Decoding steps: greedy stops after this many words, beam search runs exactly this many.
    pub max_steps: usize,
    pub models: Vec<ReferenceModel>,
    /// The folder the reference file is in; the file names inside are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// One model and its expected captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceModel {
    pub name: String,
    #[serde(rename = "tanhC_version")]
    pub tanhc_version: u8,
    pub feature_size: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    /// The same checkpoint pickled in several ways.
    pub pickles: Vec<PickleFile>,
    /// `.npy` file of image features, one row per image (float32).
    pub features: String,
    /// Smallest log-probability gap behind any choice the decoder made (between a chosen and a
    /// rejected word or beam, or between two ranked beams): how much numerical error the
    /// reference tolerates before a word could change.
    pub min_margin: f64,
    pub cases: Vec<ReferenceCase>,
}

/// One pickle of a reference model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickleFile {
    pub file: String,
    /// 2 or 3: the Python that wrote it.
    pub python: u8,
    /// Pickle protocol, 0 to 5.
    pub protocol: u8,
}

/// The expected output for one feature row and beam size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCase {
    /// Row of the features file.
    pub feature: usize,
    /// 1 is greedy decoding.
    pub beam_size: usize,
    /// NeuralTalk's predictions, best first (one for greedy, `beam_size` for beam search).
    pub beams: Vec<ReferenceBeam>,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceBeam {
    /// Sum of `log(1e-20 + p)` over the predicted indices.
    pub logprob: f64,
    /// Output indices, END (0) included when predicted.
    pub indices: Vec<usize>,
    /// The caption's words (END left out).
    pub words: Vec<String>,
}

impl Reference {
    /// Reads a reference JSON file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut reference: Reference = serde_json::from_str(&text).map_err(|e| {
            Error::parse(
                path,
                Some(format!("line {}, column {}", e.line(), e.column())),
                e.to_string(),
            )
        })?;
        reference.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(reference)
    }

    /// The path of a file named in the reference.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Reads a 2-D `.npy` of float32 or float64 (little-endian, C or Fortran order) as an [`Array2`]
/// (float64 rounded to float32).
pub fn load_features(path: &Path) -> Result<Array2> {
    let bad = |message: String| Error::Import {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let (rows, cols) = match *npy.shape() {
        [r, c] => (r as usize, c as usize),
        ref other => return Err(bad(format!("expected a 2-D array, found shape {other:?}"))),
    };
    let fortran = matches!(npy.order(), npyz::Order::Fortran);
    let dtype = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => return Err(bad(format!("unsupported dtype {other:?}"))),
    };
    let raw: Vec<f32> = match dtype.as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(|e| bad(e.to_string()))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        other => {
            return Err(bad(format!(
                "dtype {other} is not supported: features must be little-endian float32 or float64"
            )));
        }
    };
    if raw.len() != rows * cols {
        return Err(bad(format!(
            "shape ({rows}, {cols}) but {} elements",
            raw.len()
        )));
    }
    let data = if fortran {
        let mut data = vec![0f32; raw.len()];
        for c in 0..cols {
            for r in 0..rows {
                data[r * cols + c] = raw[c * rows + r];
            }
        }
        data
    } else {
        raw
    };
    Ok(Array2 { rows, cols, data })
}
