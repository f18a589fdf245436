//! Tests of `neuraltalk`.

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
