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
mod tests {
    use super::*;
    use crate::import::reference::{Reference, load_features};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/neuraltalk")
    }

    fn reference() -> Reference {
        Reference::load(&fixtures().join("expected.json")).expect("expected.json")
    }

    /// Score, indices, hidden and cell state.
    type Beam = (f64, Vec<usize>, Vec<f64>, Vec<f64>);

    /// An independent float64 port of NeuralTalk's predict(), used to check that the import
    /// (array orientation, Fortran order, gate layout, vocabulary) gives NeuralTalk's captions.
    struct Decoder<'a> {
        ck: &'a NeuralTalkCheckpoint,
    }

    impl Decoder<'_> {
        fn tick(&self, x: &[f64], h: &[f64], c: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
            let ck = self.ck;
            let d = ck.hidden_size();
            let hin: Vec<f64> = std::iter::once(1.0)
                .chain(x.iter().copied())
                .chain(h.iter().copied())
                .collect();
            let mut ifog = vec![0.0; 4 * d];
            for (r, &v) in hin.iter().enumerate() {
                for (j, g) in ifog.iter_mut().enumerate() {
                    *g += v * f64::from(ck.wlstm.get(r, j));
                }
            }
            let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
            let mut c1 = vec![0.0; d];
            let mut h1 = vec![0.0; d];
            for k in 0..d {
                let (i, f, o, g) = (
                    sig(ifog[k]),
                    sig(ifog[d + k]),
                    sig(ifog[2 * d + k]),
                    ifog[3 * d + k].tanh(),
                );
                c1[k] = i * g + f * c[k];
                h1[k] = o * if ck.tanhc_version {
                    c1[k].tanh()
                } else {
                    c1[k]
                };
            }
            let v = ck.vocab_size();
            let mut y: Vec<f64> = (0..v).map(|j| f64::from(ck.bd.get(0, j))).collect();
            for (k, &hk) in h1.iter().enumerate() {
                for (j, yj) in y.iter_mut().enumerate() {
                    *yj += hk * f64::from(ck.wd.get(k, j));
                }
            }
            let max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = y.iter().map(|&z| (z - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let scores = e.iter().map(|&z| (1e-20 + z / sum).ln()).collect();
            (scores, h1, c1)
        }

        fn predict(&self, feat: &[f32], beam: usize) -> Vec<(f64, Vec<usize>)> {
            let ck = self.ck;
            let d = ck.hidden_size();
            let xi: Vec<f64> = (0..d)
                .map(|j| {
                    f64::from(ck.be.get(0, j))
                        + feat
                            .iter()
                            .enumerate()
                            .map(|(i, &x)| f64::from(x) * f64::from(ck.we.get(i, j)))
                            .sum::<f64>()
                })
                .collect();
            let zeros = vec![0.0; d];
            let (_, h, c) = self.tick(&xi, &zeros, &zeros);
            let word =
                |ix: usize| -> Vec<f64> { ck.ws.row(ix).iter().map(|&x| f64::from(x)).collect() };
            if beam <= 1 {
                let (mut h, mut c, mut prev, mut lp, mut out) = (h, c, 0usize, 0.0, vec![]);
                loop {
                    let (s, h1, c1) = self.tick(&word(prev), &h, &c);
                    (h, c) = (h1, c1);
                    let best = (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b });
                    out.push(best);
                    lp += s[best];
                    prev = best;
                    if best == 0 || out.len() >= 20 {
                        return vec![(lp, out)];
                    }
                }
            }
            let mut beams: Vec<Beam> = vec![(0.0, vec![], h, c)];
            for _ in 0..20 {
                let mut cands = vec![];
                for (lp, ixs, h, c) in &beams {
                    if ixs.last() == Some(&0) {
                        cands.push((*lp, ixs.clone(), h.clone(), c.clone()));
                        continue;
                    }
                    let (s, h1, c1) = self.tick(&word(*ixs.last().unwrap_or(&0)), h, c);
                    let mut order: Vec<usize> = (0..s.len()).collect();
                    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
                    for &w in &order[..beam] {
                        let mut ixs = ixs.clone();
                        ixs.push(w);
                        cands.push((lp + s[w], ixs, h1.clone(), c1.clone()));
                    }
                }
                cands.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
                cands.truncate(beam);
                beams = cands;
            }
            beams.into_iter().map(|(lp, ixs, _, _)| (lp, ixs)).collect()
        }
    }

    #[test]
    fn every_pickle_of_a_model_reads_the_same() {
        let r = reference();
        assert_eq!(r.models.len(), 2);
        for m in &r.models {
            assert_eq!(m.pickles.len(), 6, "py2 p0/p2 and py3 p2..p5");
            let first = NeuralTalkCheckpoint::load(&r.path(&m.pickles[0].file)).unwrap();
            assert_eq!(first.tanhc_version, m.tanhc_version == 1);
            assert_eq!(first.feature_size(), m.feature_size);
            assert_eq!(first.hidden_size(), m.hidden_size);
            assert_eq!(first.encoding_size(), m.hidden_size);
            assert_eq!(first.vocab_size(), m.vocab_size);
            assert_eq!(first.ixtoword[0], ".");
            assert_eq!(first.wordtoix["#START#"], 0);
            assert_eq!(first.params["generator"], "lstm");
            assert_eq!(first.params["fappend"], "it's a \"test\" run \\ v1");
            assert_eq!(first.params["checkpoint_output_directory"], "cv/karpathy's");
            assert_eq!(first.params["regc"], 1e-8);
            assert_eq!(first.params["hidden_size"], m.hidden_size);
            assert!(first.perplexity.is_some_and(|p| (p - 15.3125).abs() < 2.0));
            for p in &m.pickles[1..] {
                let other = NeuralTalkCheckpoint::load(&r.path(&p.file))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.file));
                assert_eq!(
                    other, first,
                    "{} differs from {}",
                    p.file, m.pickles[0].file
                );
            }
        }
        let tanh1 = NeuralTalkCheckpoint::load(&r.path("tanh1.py2-p0.p")).unwrap();
        for w in [
            "café",
            "naïve",
            "straße",
            "日本",
            "😀",
            "it's",
            "back\\slash",
            "say\"hi\"",
            "jalapeño",
        ] {
            assert!(tanh1.wordtoix.contains_key(w), "{w} missing");
        }
        assert_eq!(tanh1.it, Some(1234));
        assert_eq!(tanh1.epoch, Some(2.5));
        assert_eq!(tanh1.perplexity, Some(15.3125));
        assert!(tanh1.summary().contains("V = 20"));
    }

    #[test]
    fn imported_weights_give_neuraltalk_captions() {
        let r = reference();
        assert_eq!(r.max_steps, 20);
        for m in &r.models {
            let feats = load_features(&r.path(&m.features)).unwrap();
            assert_eq!(feats.cols, m.feature_size);
            // Python 2 protocol 0 and Python 3 protocol 5: the two ends of the format range.
            for file in [&m.pickles[0].file, &m.pickles[5].file] {
                let ck = NeuralTalkCheckpoint::load(&r.path(file)).unwrap();
                let dec = Decoder { ck: &ck };
                for case in &m.cases {
                    let got = dec.predict(feats.row(case.feature), case.beam_size);
                    assert_eq!(got.len(), case.beams.len());
                    for ((lp, ixs), want) in got.iter().zip(&case.beams) {
                        assert_eq!(
                            ixs, &want.indices,
                            "{file} feature {} beam {}",
                            case.feature, case.beam_size
                        );
                        assert!((lp - want.logprob).abs() <= 1e-9 * want.logprob.abs().max(1.0));
                        let words: Vec<&str> = ixs
                            .iter()
                            .filter(|&&i| i > 0)
                            .map(|&i| ck.ixtoword[i].as_str())
                            .collect();
                        assert_eq!(words, want.words);
                    }
                }
            }
        }
    }

    fn checkpoint_value() -> Value {
        pickle::load(&fixtures().join("tanh1.py3-p4.p")).unwrap()
    }

    fn set(root: &mut Value, path: &[&str], new: Value) {
        let mut v = root;
        for key in path {
            let Value::Dict(entries) = v else { panic!() };
            v = &mut entries
                .iter_mut()
                .find(|(k, _)| k.as_text().as_deref() == Some(key))
                .unwrap()
                .1;
        }
        *v = new;
    }

    #[test]
    fn inconsistent_checkpoints_name_the_key() {
        let shape_err = |key: &str, shape: Vec<usize>| {
            let mut v = checkpoint_value();
            let n = shape.iter().product();
            set(
                &mut v,
                &["model", key],
                Value::Array(NdArray {
                    shape,
                    data: pickle::ArrayData::F64(vec![0.0; n]),
                }),
            );
            NeuralTalkCheckpoint::from_value(&v).unwrap_err()
        };
        let e = shape_err("Ws", vec![19, 8]);
        assert!(
            e.contains("model['Ws'] has shape (19, 8), expected (20, 8)"),
            "{e}"
        );
        let e = shape_err("WLSTM", vec![17, 33]);
        assert!(
            e.contains("model['WLSTM'] has shape (17, 33), expected (17, 32)"),
            "{e}"
        );
        let e = shape_err("bd", vec![20]);
        assert!(e.contains("model['bd'] must be 2-D"), "{e}");
        let e = shape_err("Wd", vec![9, 20]);
        assert!(e.contains("D = H"), "{e}");

        let mut v = checkpoint_value();
        set(&mut v, &["params", "generator"], Value::Str("rnn".into()));
        assert!(
            NeuralTalkCheckpoint::from_value(&v)
                .unwrap_err()
                .contains("'lstm'")
        );

        let mut v = checkpoint_value();
        set(&mut v, &["wordtoix", "dog"], Value::Int(3));
        let e = NeuralTalkCheckpoint::from_value(&v).unwrap_err();
        assert!(e.contains("wordtoix[\"dog\"] = 3 but ixtoword[3]"), "{e}");

        let mut v = checkpoint_value();
        set(&mut v, &["model"], Value::List(vec![]));
        assert!(
            NeuralTalkCheckpoint::from_value(&v)
                .unwrap_err()
                .contains("key 'model'")
        );

        let mut v = checkpoint_value();
        let Value::Dict(entries) = &mut v else {
            panic!()
        };
        entries.retain(|(k, _)| k.as_text().as_deref() != Some("ixtoword"));
        assert!(
            NeuralTalkCheckpoint::from_value(&v)
                .unwrap_err()
                .contains("no key 'ixtoword'")
        );

        assert!(
            NeuralTalkCheckpoint::from_value(&Value::List(vec![]))
                .unwrap_err()
                .contains("not a dict")
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil.p");
        std::fs::write(&path, b"cposix\nsystem\n(S'touch /tmp/pwned'\ntR.").unwrap();
        let e = NeuralTalkCheckpoint::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("evil.p") && e.contains("'posix.system' is not allowed"),
            "{e}"
        );
    }

    /// Loads a real checkpoint (e.g. flickr8k_cnn_lstm_v1.p) named by
    /// `CAPSEARCH_NEURALTALK_PICKLE`: `cargo test --lib neuraltalk -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn load_checkpoint_from_env() {
        let Ok(path) = std::env::var("CAPSEARCH_NEURALTALK_PICKLE") else {
            eprintln!("CAPSEARCH_NEURALTALK_PICKLE is not set; nothing to load");
            return;
        };
        let start = std::time::Instant::now();
        let ck = NeuralTalkCheckpoint::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("loaded {path} in {:.2?}\n{}", start.elapsed(), ck.summary());
    }
}
