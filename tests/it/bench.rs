//! `capsearch bench all --quick --json`: the harness runs end to end and reports every table.

use crate::common;

#[test]
fn quick_bench_reports_every_table_and_writes_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_in(
        dir.path(),
        &["bench", "all", "--quick", "--json", "--out", "rep"],
    )
    .ok();
    let v = out.json();
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(v["machine"]["backend"], "burn flex (CPU)");
    assert_eq!(v["quick"], true);
    let tables = v["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["train", "caption", "search"]);
    let mut baselines = 0;
    for t in tables {
        let rows = t["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{t}");
        for r in rows {
            let median = r["median"].as_f64().unwrap();
            assert!(median > 0.0, "row {r}");
            assert!(r["low"].as_f64().unwrap() <= median + 1e-9, "row {r}");
            assert!(r["high"].as_f64().unwrap() >= median - 1e-9, "row {r}");
            if let Some(b) = r["baseline"].as_object() {
                baselines += 1;
                // either a measured ratio or the reason the baseline did not run
                let measured = b["ratio"].as_f64().is_some_and(|x| x > 0.0)
                    && b["speedup"].as_f64().is_some_and(|x| x > 0.0);
                let skipped = b["skipped"].as_str().is_some_and(|s| !s.is_empty());
                assert!(measured ^ skipped, "baseline {b:?}");
            }
        }
        assert!(t["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    assert!(baselines >= 4, "{baselines} rows with baselines");
    let caption = &tables[1];
    assert!(
        caption["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"].as_str().unwrap().starts_with("beam-5"))
    );
    let md = std::fs::read_to_string(dir.path().join("rep/bench.md")).unwrap();
    for heading in ["## train", "## caption", "## search", "| figure | median |"] {
        assert!(md.contains(heading), "bench.md lacks {heading}:\n{md}");
    }
    for png in ["bench_train_batch.png", "bench_caption_batch.png"] {
        let img = image::open(dir.path().join("rep").join(png)).unwrap();
        assert!(img.width() > 100);
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rep/bench.json")).unwrap())
            .unwrap();
    assert_eq!(json["tables"], v["tables"]);
}

#[test]
fn a_missing_python_is_reported_as_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_in(
        dir.path(),
        &[
            "bench",
            "caption",
            "--quick",
            "--json",
            "--python",
            "/nonexistent/python3",
        ],
    )
    .ok();
    let v = out.json();
    let rows = v["tables"][0]["rows"].as_array().unwrap();
    let skipped = rows[0]["baseline"]["skipped"].as_str().unwrap();
    assert!(skipped.contains("could not be started"), "{skipped}");
    assert!(dir.path().join("reports/bench.md").exists());
}
