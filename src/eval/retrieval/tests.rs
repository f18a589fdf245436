//! Tests of the retrieval metrics: relevance from labels and judgements, each metric on hand-made
//! rankings, and the random baseline against brute-force enumeration.

use super::*;
use crate::data::Split;
use crate::data::labels::{LabelledObject, SizeClass};

fn object(kind: &str, color: Option<&str>) -> LabelledObject {
    LabelledObject {
        kind: kind.into(),
        stamp: None,
        color: color.map(Into::into),
        bbox: [0.0, 0.0, 1.0, 1.0],
        size: SizeClass::Small,
        unseen: false,
        cell: None,
    }
}

fn sample(path: &str, objects: &[(&str, Option<&str>)]) -> Sample {
    Sample {
        path: path.into(),
        captions: vec!["x".into()],
        split: Split::Train,
        labels: Some(Labels {
            setting: Some("meadow".into()),
            setting_photo: None,
            objects: objects.iter().map(|(k, c)| object(k, *c)).collect(),
        }),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn assert_metrics(got: Metrics, want: Metrics) {
    for ((name, g), (_, w)) in got.rows().into_iter().zip(want.rows()) {
        assert!(close(g, w), "{name}: got {g}, want {w}");
    }
}

#[test]
fn label_sets_pair_colour_and_kind_and_leave_the_setting_out() {
    let shapes = sample(
        "a.png",
        &[
            ("circle", Some("red")),
            ("square", Some("blue")),
            ("circle", Some("red")),
        ],
    );
    let set = label_set(shapes.labels.as_ref().unwrap());
    assert_eq!(
        set.into_iter().collect::<Vec<_>>(),
        ["blue square", "red circle"]
    );
    let scenes = sample("b.jpg", &[("frog", None), ("apple", None), ("frog", None)]);
    let set = label_set(scenes.labels.as_ref().unwrap());
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["apple", "frog"]);
}

#[test]
fn jaccard_and_the_relevance_threshold() {
    assert!(close(jaccard(&[1, 2], &[1, 2]), 1.0));
    assert!(close(jaccard(&[1, 2], &[2, 3]), 1.0 / 3.0));
    assert!(close(jaccard(&[1, 2], &[1]), 0.5));
    assert!(close(jaccard::<u32>(&[], &[]), 0.0));
    assert!(close(jaccard(&[1], &[]), 0.0));
    assert!(close(overlap_gain(&[1, 2], &[1]), 0.5), "0.5 is relevant");
    assert!(close(overlap_gain(&[1, 2, 3], &[1, 2]), 2.0 / 3.0));
    assert!(close(overlap_gain(&[1, 2], &[2, 3]), 0.0), "1/3 is not");
}

#[test]
fn label_relevance_uses_the_samples_labels() {
    let samples = [
        sample(
            "q.png",
            &[("circle", Some("red")), ("square", Some("blue"))],
        ),
        sample(
            "same.png",
            &[("square", Some("blue")), ("circle", Some("red"))],
        ),
        sample("half.png", &[("circle", Some("red"))]),
        sample("colour.png", &[("circle", Some("green"))]),
        sample(
            "third.png",
            &[("circle", Some("red")), ("star", Some("red"))],
        ),
    ];
    let relevance = Relevance::from_labels(&samples, Path::new("d.json")).unwrap();
    assert!(close(relevance.gain("q.png", "same.png"), 1.0));
    assert!(close(relevance.gain("q.png", "half.png"), 0.5));
    assert!(close(relevance.gain("q.png", "colour.png"), 0.0));
    assert!(close(relevance.gain("q.png", "third.png"), 0.0));
    assert!(close(relevance.gain("q.png", "q.png"), 0.0), "never itself");
    assert!(close(relevance.gain("q.png", "unknown.png"), 0.0));

    let mut unlabelled = sample("x.png", &[]);
    unlabelled.labels = None;
    let err = Relevance::from_labels([&unlabelled], Path::new("flickr.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("flickr.json") && err.contains("--relevance"),
        "{err}"
    );
}

#[test]
fn judgements_parse_and_answer_gains() {
    let text = "# query\tgallery\tgain\n\na.jpg\tb.jpg\t1\na.jpg\tc.jpg\t0.25\r\nb.jpg\ta.jpg\t0\n";
    let j = Judgements::parse(text, Path::new("rel.tsv")).unwrap();
    assert!(close(j.gain("a.jpg", "b.jpg"), 1.0));
    assert!(close(j.gain("a.jpg", "c.jpg"), 0.25));
    assert!(close(j.gain("b.jpg", "a.jpg"), 0.0));
    assert!(close(j.gain("a.jpg", "zzz.jpg"), 0.0));
    let mut queries: Vec<_> = j.queries().collect();
    queries.sort();
    assert_eq!(queries, ["a.jpg", "b.jpg"]);
    let relevance = Relevance::Judged(j);
    assert!(close(relevance.gain("a.jpg", "c.jpg"), 0.25));
}

#[test]
fn judgement_errors_name_the_file_and_line() {
    let cases = [
        ("a\tb\n", "line 1", "3 tab-separated fields"),
        ("a\tb\t1\n# c\na\tc\tlots\n", "line 3", "not a number"),
        ("a\tb\t-1\n", "line 1", "≥ 0"),
        ("a\tb\tNaN\n", "line 1", "finite"),
        (
            "a\tb\t1\n\na\tb\t0.5\n",
            "line 3",
            "already judged on line 1",
        ),
        ("a\ta\t1\n", "line 1", "against itself"),
        ("\tb\t1\n", "line 1", "path is empty"),
        ("# nothing\n", "rel.tsv", "no judgement"),
    ];
    for (text, location, message) in cases {
        let err = Judgements::parse(text, Path::new("rel.tsv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("rel.tsv") && err.contains(location) && err.contains(message),
            "{text:?}: {err}"
        );
    }
    let err = Judgements::read(Path::new("/nonexistent/rel.tsv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/rel.tsv"), "{err}");
}

#[test]
fn metrics_of_a_ranking_by_hand() {
    // Gallery: three relevant images (gains 1, 0.5, 0.75) among six.
    let gallery = [1.0, 0.0, 0.5, 0.0, 0.75, 0.0];
    // Ranked: irrelevant, 1.0, irrelevant, 0.5; the 0.75 image is not returned.
    let ranked = [0.0, 1.0, 0.0, 0.5];
    let m = query_metrics(&ranked, &gallery).unwrap();
    let dcg = 1.0 / 3f64.log2() + 0.5 / 5f64.log2();
    let idcg = 1.0 + 0.75 / 3f64.log2() + 0.5 / 2.0;
    assert_metrics(
        m,
        Metrics {
            p_at_1: 0.0,
            p_at_10: 0.2,
            map_at_10: (1.0 / 2.0 + 2.0 / 4.0) / 3.0,
            ndcg_at_10: dcg / idcg,
        },
    );
    // The ideal ranking scores 1 everywhere but P@10 (three relevant images at most).
    let ideal = query_metrics(&[1.0, 0.75, 0.5], &gallery).unwrap();
    assert_metrics(
        ideal,
        Metrics {
            p_at_1: 1.0,
            p_at_10: 0.3,
            map_at_10: 1.0,
            ndcg_at_10: 1.0,
        },
    );
    assert_eq!(query_metrics(&[0.0], &[0.0, 0.0]), None);
    // Only the first K results count.
    let mut long = vec![0.0; K];
    long.push(1.0);
    let m = query_metrics(&long, &gallery).unwrap();
    assert!(close(m.p_at_10, 0.0) && close(m.ndcg_at_10, 0.0));
}

/// Every ordering of `gains`, to average metrics over exhaustively.
fn permutations(gains: &[f64]) -> Vec<Vec<f64>> {
    if gains.len() <= 1 {
        return vec![gains.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..gains.len() {
        let mut rest = gains.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            all.push(tail);
        }
    }
    all
}

#[test]
fn random_expectation_is_the_exact_mean_over_every_ordering() {
    let galleries: [&[f64]; 5] = [
        &[1.0, 0.0, 0.5, 0.0, 0.75, 0.0, 0.0],
        &[1.0, 0.6, 0.0, 0.0, 0.0, 0.0],
        &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        &[1.0, 1.0, 1.0],
        &[0.5],
    ];
    for gallery in galleries {
        for k in [1, 2, 3, 10] {
            let orders = permutations(gallery);
            let mut mean = Metrics::default();
            for order in &orders {
                let m = metrics_at(k, order, gallery).unwrap();
                mean.p_at_1 += m.p_at_1;
                mean.p_at_10 += m.p_at_10;
                mean.map_at_10 += m.map_at_10;
                mean.ndcg_at_10 += m.ndcg_at_10;
            }
            let n = orders.len() as f64;
            mean.p_at_1 /= n;
            mean.p_at_10 /= n;
            mean.map_at_10 /= n;
            mean.ndcg_at_10 /= n;
            let exact = random_at(k, gallery).unwrap();
            for ((name, e), (_, m)) in exact.rows().into_iter().zip(mean.rows()) {
                assert!(
                    (e - m).abs() < 1e-9,
                    "{gallery:?} k={k} {name}: closed form {e}, exhaustive {m}"
                );
            }
        }
    }
    assert_eq!(random_expectation(&[0.0, 0.0]), None);
}

#[test]
fn judge_query_excludes_the_query_and_repeats() {
    let samples = [
        sample("q.png", &[("circle", Some("red"))]),
        sample("a.png", &[("circle", Some("red"))]),
        sample("b.png", &[("square", Some("red"))]),
        sample("c.png", &[("circle", Some("red"))]),
    ];
    let relevance = Relevance::from_labels(&samples, Path::new("d.json")).unwrap();
    let gallery: Vec<String> = samples.iter().map(|s| s.path.clone()).collect();
    let ranked: Vec<String> = ["q.png", "a.png", "a.png", "b.png", "c.png"]
        .map(String::from)
        .to_vec();
    let outcome = judge_query(&relevance, "q.png", &ranked, &gallery);
    assert_eq!(outcome.relevant, 2);
    // Ranking as judged: a (relevant), b, c (relevant).
    let m = outcome.metrics.unwrap();
    assert!(close(m.p_at_1, 1.0));
    assert!(close(m.p_at_10, 0.2));
    assert!(close(m.map_at_10, (1.0 + 2.0 / 3.0) / 2.0));
    let r = outcome.random.unwrap();
    assert!(close(r.p_at_1, 2.0 / 3.0), "gallery of 3 without the query");
}

#[test]
fn summaries_average_over_queries_with_a_relevant_image() {
    let m = |p| Metrics {
        p_at_1: p,
        p_at_10: p / 10.0,
        map_at_10: p,
        ndcg_at_10: p,
    };
    let outcomes = [
        QueryOutcome {
            query: "a".into(),
            relevant: 1,
            metrics: Some(m(1.0)),
            random: Some(m(0.5)),
        },
        QueryOutcome {
            query: "b".into(),
            relevant: 3,
            metrics: Some(m(0.0)),
            random: Some(m(0.1)),
        },
        QueryOutcome {
            query: "c".into(),
            relevant: 0,
            metrics: None,
            random: None,
        },
    ];
    let summary = summarise(&outcomes);
    assert_eq!(summary.queries, 3);
    assert_eq!(summary.without_relevant, 1);
    assert_metrics(summary.mean, m(0.5));
    assert_metrics(summary.random, m(0.3));
    let json = serde_json::to_value(summary.mean).unwrap();
    assert!(
        json.get("nDCG@10").is_some() && json.get("P@1").is_some(),
        "{json}"
    );
    assert_eq!(summarise(&[]).mean, Metrics::default());
}
