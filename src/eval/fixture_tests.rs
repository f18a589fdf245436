//! Agreement with the reference implementations, on the fixtures that
//! `tests/fixtures/metrics/generate.py` computed with `pycocoevalcap` 1.2, its Java PTB tokenizer,
//! and NeuralTalk's `multi-bleu.perl`.

use serde::Deserialize;

use super::{bleu, cider, evaluate, rouge, tokenize};

const CASES: &str = include_str!("../../tests/fixtures/metrics/cases.json");
const TOKENIZER: &str = include_str!("../../tests/fixtures/metrics/tokenizer.json");
const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    raw: Case,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    candidates: Vec<String>,
    references: Vec<Vec<String>>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    #[serde(rename = "Bleu")]
    bleu: [f64; 4],
    #[serde(rename = "Bleu_per_image")]
    bleu_per_image: Vec<[f64; 4]>,
    #[serde(rename = "CIDEr")]
    cider: f64,
    #[serde(rename = "CIDEr_per_image")]
    cider_per_image: Vec<f64>,
    #[serde(rename = "ROUGE_L")]
    rouge_l: f64,
    #[serde(rename = "ROUGE_L_per_image")]
    rouge_l_per_image: Vec<f64>,
    multi_bleu: Option<MultiBleuExpected>,
}

#[derive(Deserialize)]
struct MultiBleuExpected {
    bleu: [f64; 4],
    perl_line: String,
}

fn close(case: &str, what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{case}: {what}: got {got}, reference {want}, difference {:e}",
        (got - want).abs()
    );
}

fn split(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

fn check_coco(case: &str, cands: &[Vec<&str>], refs: &[Vec<Vec<&str>>], e: &Expected) {
    let b = bleu::coco_bleu(cands, refs);
    for k in 0..4 {
        close(case, &format!("Bleu_{}", k + 1), b.corpus[k], e.bleu[k]);
    }
    assert_eq!(b.per_image.len(), e.bleu_per_image.len());
    for (i, (got, want)) in b.per_image.iter().zip(&e.bleu_per_image).enumerate() {
        for k in 0..4 {
            close(case, &format!("image {i} Bleu_{}", k + 1), got[k], want[k]);
        }
    }
    let c = cider::cider_d(cands, refs);
    close(case, "CIDEr", c.corpus, e.cider);
    for (i, (got, want)) in c.per_image.iter().zip(&e.cider_per_image).enumerate() {
        close(case, &format!("image {i} CIDEr"), *got, *want);
    }
    let r = rouge::rouge_l(cands, refs);
    close(case, "ROUGE_L", r.corpus, e.rouge_l);
    for (i, (got, want)) in r.per_image.iter().zip(&e.rouge_l_per_image).enumerate() {
        close(case, &format!("image {i} ROUGE_L"), *got, *want);
    }
}

#[test]
fn pycocoevalcap_and_multi_bleu_agree_on_every_case() {
    let fixture: Fixture = serde_json::from_str(CASES).unwrap();
    assert!(fixture.cases.len() >= 10);
    for case in &fixture.cases {
        let cands: Vec<Vec<&str>> = case.candidates.iter().map(|c| split(c)).collect();
        let refs: Vec<Vec<Vec<&str>>> = case
            .references
            .iter()
            .map(|rs| rs.iter().map(|r| split(r)).collect())
            .collect();
        check_coco(&case.name, &cands, &refs, &case.expected);

        let want = case.expected.multi_bleu.as_ref().unwrap();
        let got = bleu::multi_bleu_lines(&case.candidates, &case.references, false);
        for k in 0..4 {
            close(
                &case.name,
                &format!("multi-bleu BLEU-{}", k + 1),
                got.bleu[k],
                want.bleu[k],
            );
        }
        assert_eq!(got.perl_line(), want.perl_line, "{}", case.name);
    }
}

#[test]
fn raw_captions_agree_through_the_tokenizer() {
    let fixture: Fixture = serde_json::from_str(CASES).unwrap();
    let case = &fixture.raw;
    let e = evaluate(&case.candidates, &case.references).unwrap();
    let x = &case.expected;
    let s = e.scores;
    for (k, got) in [s.bleu_1, s.bleu_2, s.bleu_3, s.bleu_4]
        .into_iter()
        .enumerate()
    {
        close(&case.name, &format!("Bleu_{}", k + 1), got, x.bleu[k]);
    }
    close(&case.name, "CIDEr", s.cider, x.cider);
    close(&case.name, "ROUGE_L", s.rouge_l, x.rouge_l);
    for (i, img) in e.per_image.iter().enumerate() {
        close(
            &case.name,
            "CIDEr per image",
            img.cider,
            x.cider_per_image[i],
        );
        close(
            &case.name,
            "ROUGE_L per image",
            img.rouge_l,
            x.rouge_l_per_image[i],
        );
        for k in 0..4 {
            close(
                &case.name,
                "Bleu per image",
                img.bleu[k],
                x.bleu_per_image[i][k],
            );
        }
    }
}

#[derive(Deserialize)]
struct TokenizerFixture {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    ptb: String,
    known_difference: bool,
}

#[test]
fn ptb_fixture_agrees() {
    let fixture: TokenizerFixture = serde_json::from_str(TOKENIZER).unwrap();
    let mut failures = Vec::new();
    for s in fixture.sentences.iter().filter(|s| !s.known_difference) {
        let got = tokenize::ptb_tokenize(&s.text).join(" ");
        if got != s.ptb {
            failures.push(format!(
                "{:?}\n   java: {:?}\n   rust: {:?}",
                s.text, s.ptb, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
