//! `import-neuraltalk` and `caption --features` reproduce NeuralTalk's `predict()` exactly: the
//! same words, and log-probabilities within 1e-5 relative, greedy and beam sizes 2, 3 and 5, for
//! checkpoints pickled by Python 2 (protocols 0 and 2) and Python 3 (protocols 2 to 5).
//! The expected outputs come from `tests/fixtures/neuraltalk/neuraltalk_reference.py`.

use std::path::{Path, PathBuf};

use capsearch::import::reference::Reference;

use crate::common::{run_in, tempdir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/neuraltalk")
}

#[test]
fn imported_models_decode_exactly_as_neuraltalk() {
    let reference = Reference::load(&fixtures().join("expected.json")).unwrap();
    let dir = tempdir();
    let mut checked = 0;
    for model in &reference.models {
        let features = reference.path(&model.features);
        for pickle in &model.pickles {
            let out = dir.path().join(format!("{}-{}", model.name, pickle.file));
            let pickle_path = reference.path(&pickle.file);
            let imported = run_in(
                dir.path(),
                &[
                    "import-neuraltalk",
                    "--pickle",
                    pickle_path.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ],
            )
            .ok();
            assert!(
                imported.stdout.contains(&model.vocab_size.to_string()),
                "{}",
                imported.stdout
            );
            // decoding is the same for every pickle of a model: check all beam sizes on two of them
            let full = pickle.protocol == 0 || pickle.protocol == 5;
            for beam_size in [1usize, 2, 3, 5] {
                if !full && beam_size > 1 {
                    continue;
                }
                let output = run_in(
                    dir.path(),
                    &[
                        "caption",
                        "--model",
                        out.to_str().unwrap(),
                        "--features",
                        features.to_str().unwrap(),
                        "--beam-size",
                        &beam_size.to_string(),
                        "--json",
                    ],
                )
                .ok();
                let lines: Vec<serde_json::Value> = output
                    .stdout
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                for case in model.cases.iter().filter(|c| c.beam_size == beam_size) {
                    let got = &lines[case.feature];
                    let want = &case.beams[0];
                    assert_eq!(
                        got["caption"].as_str().unwrap(),
                        want.words.join(" "),
                        "{} {} feature {} beam {beam_size}",
                        model.name,
                        pickle.file,
                        case.feature
                    );
                    let lp = got["logprob"].as_f64().unwrap();
                    let rel = (lp - want.logprob).abs() / want.logprob.abs().max(1e-12);
                    assert!(
                        rel < 1e-5,
                        "{} {} feature {} beam {beam_size}: logprob {lp} vs {}",
                        model.name,
                        pickle.file,
                        case.feature,
                        want.logprob
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} cases checked");
}

#[test]
fn hostile_or_foreign_pickles_are_refused_clearly() {
    let dir = tempdir();
    let d = dir.path();
    // a pickle that would run os.system if unpickled by Python
    std::fs::write(d.join("evil.p"), b"cos\nsystem\n(S'echo pwned'\ntR.").unwrap();
    run_in(
        d,
        &["import-neuraltalk", "--pickle", "evil.p", "--out", "m"],
    )
    .fails_with(&["evil.p", "os.system"]);
    std::fs::write(d.join("trunc.p"), b"(dp0\nS'model'\np1\n(dp2").unwrap();
    run_in(
        d,
        &["import-neuraltalk", "--pickle", "trunc.p", "--out", "m"],
    )
    .fails_with(&["trunc.p"]);
    run_in(
        d,
        &["import-neuraltalk", "--pickle", "missing.p", "--out", "m"],
    )
    .fails_with(&["missing.p"]);
    assert!(
        !d.join("m").exists(),
        "nothing is written for a refused pickle"
    );
}

#[test]
fn features_of_the_wrong_size_are_refused() {
    let reference = Reference::load(&fixtures().join("expected.json")).unwrap();
    let dir = tempdir();
    let d = dir.path();
    let a = &reference.models[0];
    let pickle = reference.path(&a.pickles[0].file);
    run_in(
        d,
        &[
            "import-neuraltalk",
            "--pickle",
            pickle.to_str().unwrap(),
            "--out",
            "m",
        ],
    )
    .ok();
    // a [2, F + 1] float32 .npy
    let cols = a.feature_size + 1;
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend(std::iter::repeat_n(0u8, 2 * cols * 4));
    std::fs::write(d.join("wrong.npy"), npy).unwrap();
    run_in(d, &["caption", "--model", "m", "--features", "wrong.npy"])
        .fails_with(&["features", &a.feature_size.to_string()]);
    std::fs::write(d.join("text.npy"), "not numpy").unwrap();
    run_in(d, &["caption", "--model", "m", "--features", "text.npy"])
        .fails_with(&["text.npy", ".npy"]);
    // an imported model without VGG-16 says how to caption images
    let png = d.join("x.png");
    std::fs::write(&png, crate::common::png_bytes(8, 8, [1, 2, 3])).unwrap();
    run_in(d, &["caption", "--model", "m", "x.png"]).fails_with(&["--features", "--vgg16"]);
}
