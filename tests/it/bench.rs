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
    assert_eq!(
        names,
        [
            "train",
            "caption",
            "features",
            "search",
            "search-vectors",
            "serve"
        ]
    );
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
    let vectors: Vec<&str> = tables[4]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        vectors.contains(&"visual query, 10000 vectors (size 10)")
            && vectors.contains(&"hybrid query, 1000 vectors (size 10, depth 100)"),
        "{vectors:?}"
    );
    let md = std::fs::read_to_string(dir.path().join("rep/bench.md")).unwrap();
    for heading in [
        "## train",
        "## caption",
        "## features",
        "## search",
        "## search-vectors",
        "## serve",
        "| figure | median |",
    ] {
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

/// `bench train --steps N --batch B`: only the training steps, timed, and no report written.
#[test]
fn train_steps_run_a_fixed_workload_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_in(
        dir.path(),
        &["bench", "train", "--quick", "--steps", "3", "--batch", "2"],
    )
    .ok();
    assert!(
        out.stdout.starts_with("batch 2: 3 steps, median "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ms per step"), "{}", out.stdout);
    assert!(!dir.path().join("reports/bench.md").exists());
    common::run_in(dir.path(), &["bench", "caption", "--steps", "3"])
        .fails_with(&["--steps", "bench train"]);
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

#[test]
fn serve_bench_loads_a_started_server_and_reports_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    crate::serve::train_tiny(dir.path());
    let out = common::run_in(
        dir.path(),
        &[
            "bench",
            "serve",
            "--quick",
            "--json",
            "--model",
            "runs/tiny",
            "--clients",
            "3",
            "--duration",
            "1",
            "--out",
            "rep",
        ],
    )
    .ok();
    let v = out.json();
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "{v}");
    let t = &tables[0];
    assert_eq!(t["name"], "serve");
    let rows = t["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "search by image (POST /api/search)",
            "search by image latency",
            "text query (GET /api/query)",
            "text query latency",
        ]
    );
    for r in rows {
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["runs"].as_u64().unwrap() >= 1, "{r}");
    }
    for latency in [&rows[1], &rows[3]] {
        assert_eq!(latency["unit"], "ms");
        assert_eq!(latency["spread"], "p50–p99");
        assert!(latency["high"].as_f64().unwrap() >= latency["median"].as_f64().unwrap());
    }
    assert_eq!(rows[0]["unit"], "req/s");
    // The server's peak RSS: more than a few MiB (it holds a model and an index).
    assert!(t["peak_rss_bytes"].as_u64().unwrap() > 10 << 20, "{t}");
    let counts: std::collections::HashMap<&str, u64> = t["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["value"].as_u64().unwrap()))
        .collect();
    assert!(counts["POST /api/search: answered 200"] > 0, "{counts:?}");
    assert!(counts["GET /api/query: answered 200"] > 0, "{counts:?}");
    assert_eq!(counts["POST /api/search: other errors"], 0, "{counts:?}");
    assert_eq!(counts["GET /api/query: other errors"], 0, "{counts:?}");
    assert!(t["setup"].to_string().contains("runs/tiny"), "{t}");
    let md = std::fs::read_to_string(dir.path().join("rep/bench.md")).unwrap();
    assert!(md.contains("## serve"), "{md}");
    assert!(md.contains("POST /api/search: 503 busy"), "{md}");
}
