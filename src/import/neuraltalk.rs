//! NeuralTalk checkpoints (`flickr8k_cnn_lstm_v1.p` and the like) as a plain struct.
//!
//! NeuralTalk's `driver.py` pickles a dict with `it`, `epoch`, `perplexity`, `params` (the
//! training options), `wordtoix` (`'#START#'` → 0), `ixtoword` (0 → `'.'`, the END token) and
//! `model`, a dict of numpy arrays. With F the image feature size (4096 for VGG-16), D the word
//! and image encoding size, H the hidden size (NeuralTalk's LSTM needs D = H) and V the vocabulary
//! size (words + START/END):
//!
//! | key | shape | meaning |
//! |---|---|---|
//! | `We`, `be` | (F, D), (1, D) | image projection: `x0 = feat · We + be` |
//! | `Ws` | (V, D) | word embeddings (row 0 is START) |
//! | `WLSTM` | (1 + D + H, 4H) | row 0 bias, then input rows, then hidden rows; columns i, f, o, g |
//! | `Wd`, `bd` | (H, V), (1, V) | output layer (column 0 is END) |
//!
//! [`NeuralTalkCheckpoint::load`] reads the pickle with the code-free reader in
//! [`super::pickle`] and checks every shape against the others.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::pickle::{self, NdArray, Value};
use crate::error::{Error, Result};

/// A 2-D matrix of `f32`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` elements, row-major.
    pub data: Vec<f32>,
}

impl Array2 {
    /// The element at `(r, c)`. Panics when out of range, like slice indexing.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        assert!(r < self.rows && c < self.cols, "index out of range");
        self.data[r * self.cols + c]
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// A 2-D numpy array as an `Array2`; `None` when it is not 2-D.
    pub fn from_ndarray(a: &NdArray) -> Option<Array2> {
        match a.shape[..] {
            [rows, cols] => Some(Array2 {
                rows,
                cols,
                data: a.to_f32(),
            }),
            _ => None,
        }
    }
}

/// Everything in a NeuralTalk checkpoint that capsearch uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuralTalkCheckpoint {
    /// Training iteration the checkpoint was written at.
    pub it: Option<i64>,
    pub epoch: Option<f64>,
    /// Validation perplexity (base-2) at that point.
    pub perplexity: Option<f64>,
    /// The training options, as JSON (`hidden_size`, `tanhC_version`, `word_count_threshold`, ...).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `params['tanhC_version']` (0 when absent, as in NeuralTalk): whether the hidden state is
    /// `o * tanh(c)` rather than `o * c`.
    pub tanhc_version: bool,
    /// Word of each output index; index 0 is END (`'.'`).
    pub ixtoword: Vec<String>,
    /// Index of each input word; `'#START#'` is 0.
    pub wordtoix: BTreeMap<String, usize>,
    /// Image projection (F, D).
    pub we: Array2,
    /// Image projection bias (1, D).
    pub be: Array2,
    /// Word embeddings (V, D).
    pub ws: Array2,
    /// LSTM weights (1 + D + H, 4H): bias row, input rows, hidden rows; gate blocks i, f, o, g.
    pub wlstm: Array2,
    /// Output layer (H, V).
    pub wd: Array2,
    /// Output bias (1, V).
    pub bd: Array2,
}

impl NeuralTalkCheckpoint {
    /// Reads and checks a NeuralTalk checkpoint pickle (protocol 0 to 5, Python 2 or 3).
    pub fn load(path: &Path) -> Result<Self> {
        let value = pickle::load(path)?;
        Self::from_value(&value).map_err(|message| Error::Import {
            path: path.to_path_buf(),
            message: format!("not a NeuralTalk LSTM checkpoint: {message}"),
        })
    }

    /// Maps an unpickled checkpoint dict; the error names the key at fault.
    pub fn from_value(root: &Value) -> std::result::Result<Self, String> {
        if root.as_dict().is_none() {
            return Err(format!(
                "the pickle holds a {}, not a dict",
                root.type_name()
            ));
        }
        let it = optional(root, "it", Value::as_int, "an int")?;
        let epoch = optional(root, "epoch", Value::as_f64, "a number")?;
        let perplexity = optional(root, "perplexity", Value::as_f64, "a number")?;

        let params_value = required(root, "params")?;
        let params = match params_value.to_json() {
            Some(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(format!(
                    "key 'params' must be a dict of options with text keys, found a {}",
                    params_value.type_name()
                ));
            }
        };
        if let Some(generator) = params.get("generator")
            && generator.as_str() != Some("lstm")
        {
            return Err(format!(
                "params['generator'] is {generator}; only NeuralTalk's 'lstm' generator is supported"
            ));
        }
        let tanhc_version = match params.get("tanhC_version") {
            None => false,
            Some(v) => match (v.as_f64(), v.as_bool()) {
                (Some(x), _) => x != 0.0,
                (None, Some(b)) => b,
                _ => return Err(format!("params['tanhC_version'] must be 0 or 1, found {v}")),
            },
        };

        let ixtoword = read_ixtoword(required(root, "ixtoword")?)?;
        let wordtoix = read_wordtoix(required(root, "wordtoix")?)?;

        let model = required(root, "model")?;
        if model.as_dict().is_none() {
            return Err(format!(
                "key 'model' must be a dict of numpy arrays, found a {}",
                model.type_name()
            ));
        }
        let we = matrix(model, "We")?;
        let be = matrix(model, "be")?;
        let ws = matrix(model, "Ws")?;
        let wlstm = matrix(model, "WLSTM")?;
        let wd = matrix(model, "Wd")?;
        let bd = matrix(model, "bd")?;

        let (f, d) = we.shape();
        let h = wd.rows;
        let v = ixtoword.len();
        if d != h {
            return Err(format!(
                "model['We'] gives an encoding size D = {d} but model['Wd'] a hidden size H = {h}; \
                 NeuralTalk's LSTM needs D = H"
            ));
        }
        check_shape(&be, "be", (1, d), "(1, D)")?;
        check_shape(&ws, "Ws", (v, d), "(V, D) with V = len(ixtoword)")?;
        check_shape(&wlstm, "WLSTM", (1 + d + h, 4 * h), "(1 + D + H, 4H)")?;
        check_shape(&wd, "Wd", (h, v), "(H, V)")?;
        check_shape(&bd, "bd", (1, v), "(1, V)")?;
        if f == 0 || d == 0 || v == 0 {
            return Err(format!("model['We'] has an empty shape ({f}, {d})"));
        }

        if wordtoix.len() != v {
            return Err(format!(
                "wordtoix has {} words but ixtoword {v}; they must describe the same vocabulary",
                wordtoix.len()
            ));
        }
        for (word, &ix) in &wordtoix {
            if ix >= v {
                return Err(format!(
                    "wordtoix[{word:?}] = {ix} is outside the vocabulary (size {v})"
                ));
            }
            let start = word == "#START#";
            if start && ix != 0 {
                return Err(format!(
                    "wordtoix['#START#'] must be 0 (the START input), found {ix}"
                ));
            }
            if !start && ixtoword[ix] != *word {
                return Err(format!(
                    "wordtoix[{word:?}] = {ix} but ixtoword[{ix}] = {:?}",
                    ixtoword[ix]
                ));
            }
        }

        Ok(NeuralTalkCheckpoint {
            it,
            epoch,
            perplexity,
            params,
            tanhc_version,
            ixtoword,
            wordtoix,
            we,
            be,
            ws,
            wlstm,
            wd,
            bd,
        })
    }

    /// F: the size of the image features the model takes (4096 for VGG-16 fc7).
    pub fn feature_size(&self) -> usize {
        self.we.rows
    }

    /// D: the word and image encoding size.
    pub fn encoding_size(&self) -> usize {
        self.we.cols
    }

    /// H: the LSTM's hidden size.
    pub fn hidden_size(&self) -> usize {
        self.wd.rows
    }

    /// V: the number of words, START/END included.
    pub fn vocab_size(&self) -> usize {
        self.ixtoword.len()
    }

    /// A human-readable summary: sizes, vocabulary, perplexity and params.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "NeuralTalk LSTM: features F = {}, encoding D = {}, hidden H = {}, vocabulary V = {} \
             (index 0 = END {:?}), tanhC_version = {}",
            self.feature_size(),
            self.encoding_size(),
            self.hidden_size(),
            self.vocab_size(),
            self.ixtoword.first().map(String::as_str).unwrap_or(""),
            u8::from(self.tanhc_version)
        );
        let opt = |x: Option<String>| x.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "iteration {}, epoch {}, validation perplexity {}",
            opt(self.it.map(|i| i.to_string())),
            opt(self.epoch.map(|e| format!("{e:.2}"))),
            opt(self.perplexity.map(|p| format!("{p:.4}")))
        );
        let sample: Vec<&str> = self
            .ixtoword
            .iter()
            .skip(1)
            .take(12)
            .map(String::as_str)
            .collect();
        let _ = writeln!(s, "first words: {}", sample.join(" "));
        let mut keys: Vec<&String> = self.params.keys().collect();
        keys.sort();
        let params: Vec<String> = keys
            .into_iter()
            .map(|k| format!("{k}={}", self.params[k]))
            .collect();
        let _ = writeln!(s, "params: {}", params.join(", "));
        s
    }
}

fn required<'a>(dict: &'a Value, key: &str) -> std::result::Result<&'a Value, String> {
    dict.get(key)
        .ok_or_else(|| format!("the checkpoint has no key '{key}'"))
}

fn optional<T>(
    dict: &Value,
    key: &str,
    convert: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> std::result::Result<Option<T>, String> {
    match dict.get(key) {
        None | Some(Value::None) => Ok(None),
        Some(v) => convert(v)
            .map(Some)
            .ok_or_else(|| format!("key '{key}' must be {what}, found a {}", v.type_name())),
    }
}

fn matrix(model: &Value, key: &str) -> std::result::Result<Array2, String> {
    let value = model
        .get(key)
        .ok_or_else(|| format!("model has no array '{key}'"))?;
    let Value::Array(a) = value else {
        return Err(format!(
            "model['{key}'] must be a numpy array, found a {}",
            value.type_name()
        ));
    };
    Array2::from_ndarray(a)
        .ok_or_else(|| format!("model['{key}'] must be 2-D, found shape {:?}", a.shape))
}

fn check_shape(
    a: &Array2,
    key: &str,
    expected: (usize, usize),
    formula: &str,
) -> std::result::Result<(), String> {
    if a.shape() == expected {
        Ok(())
    } else {
        Err(format!(
            "model['{key}'] has shape {:?}, expected {expected:?} = {formula}",
            a.shape()
        ))
    }
}

fn read_ixtoword(value: &Value) -> std::result::Result<Vec<String>, String> {
    let entries = value.as_dict().ok_or_else(|| {
        format!(
            "key 'ixtoword' must be a dict int -> word, found a {}",
            value.type_name()
        )
    })?;
    let mut words: Vec<Option<String>> = vec![None; entries.len()];
    for (k, w) in entries {
        let ix = k
            .as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| format!("ixtoword has a key {k} that is not a non-negative int"))?;
        let word = w
            .as_text()
            .ok_or_else(|| format!("ixtoword[{ix}] is a {}, not a word", w.type_name()))?;
        let slot = words.get_mut(ix).ok_or_else(|| {
            format!(
                "ixtoword has index {ix} but only {} entries; indices must be 0..{}",
                entries.len(),
                entries.len()
            )
        })?;
        *slot = Some(word.into_owned());
    }
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| w.ok_or_else(|| format!("ixtoword has no index {i}")))
        .collect()
}

fn read_wordtoix(value: &Value) -> std::result::Result<BTreeMap<String, usize>, String> {
    let entries = value.as_dict().ok_or_else(|| {
        format!(
            "key 'wordtoix' must be a dict word -> int, found a {}",
            value.type_name()
        )
    })?;
    let mut out = BTreeMap::new();
    for (k, ix) in entries {
        let word = k
            .as_text()
            .ok_or_else(|| format!("wordtoix has a {} key, not a word", k.type_name()))?
            .into_owned();
        let ix = ix
            .as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| format!("wordtoix[{word:?}] is {ix}, not a non-negative int"))?;
        if out.insert(word.clone(), ix).is_some() {
            return Err(format!("wordtoix has the word {word:?} twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
