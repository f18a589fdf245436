//! `capsearch dataset scenes` through the binary, on the generated fixture assets (no Debian
//! packages needed), then `capsearch dataset check` on the result; and its bad inputs.

use capsearch::data::scenes::fixture::{SETTINGS_PACKAGE, stamps_dir, write_fixture};

use crate::common::{run, run_in, s, tempdir};

#[test]
fn scenes_from_fixture_assets_pass_check_and_carry_labels() {
    let dir = tempdir();
    let paths = write_fixture(dir.path()).unwrap();
    let out = dir.path().join("scenes");
    let args = |out: &std::path::Path, seed: &'static str| {
        vec![
            "dataset".to_string(),
            "scenes".into(),
            "--out".into(),
            s(out).into(),
            "--images".into(),
            "40".into(),
            "--seed".into(),
            seed.into(),
            "--size".into(),
            "48".into(),
            "--lists".into(),
            s(&paths.lists).into(),
            "--assets".into(),
            s(&dir.path().join("assets")).into(),
        ]
    };
    let a = args(&out, "5");
    let o = run(&a.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert!(o.stdout.contains("wrote 40 images"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("5 stamps of 3 kinds (2 held out for test) on 2 settings"),
        "{}",
        o.stdout
    );
    assert!(out.join("images/scene_00039.jpg").is_file());

    let v = run(&["dataset", "check", s(&out), "--json", "--threshold", "1"])
        .ok()
        .json();
    assert_eq!(v["format"], "karpathy");
    assert_eq!(v["images"], 40);
    assert_eq!(v["captions"], 200);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0);
    let text = run(&["dataset", "check", s(&out)]).ok().stdout;
    assert!(text.contains("ok: the dataset can be trained on"), "{text}");

    // The JSON carries the labels; the same seed gives the same bytes.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("dataset_scenes.json")).unwrap()).unwrap();
    let labels = &json["images"][0]["labels"];
    assert!(labels["setting"].is_string(), "{labels}");
    let object = &labels["objects"][0];
    assert!(object["kind"].is_string() && object["box"].as_array().unwrap().len() == 4);
    let again = dir.path().join("again");
    let a = args(&again, "5");
    run(&a.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert_eq!(
        std::fs::read(out.join("dataset_scenes.json")).unwrap(),
        std::fs::read(again.join("dataset_scenes.json")).unwrap()
    );
}

#[test]
fn scenes_bad_assets_exit_2_with_a_clear_message() {
    let dir = tempdir();
    let paths = write_fixture(dir.path()).unwrap();
    let out = dir.path().join("out");
    let lists = s(&paths.lists).to_string();
    // Missing assets: the default --assets folder does not exist here; the message names the script.
    run_in(
        dir.path(),
        &[
            "dataset",
            "scenes",
            "--out",
            s(&out),
            "--images",
            "3",
            "--lists",
            &lists,
        ],
    )
    .fails_with(&["fetch-scenes.sh", "does not exist"]);
    // A stamps folder without the listed photographs.
    let empty = dir.path().join("no_photos");
    std::fs::create_dir_all(&empty).unwrap();
    let assets = dir.path().join("assets");
    run(&[
        "dataset",
        "scenes",
        "--out",
        s(&out),
        "--images",
        "3",
        "--lists",
        &lists,
        "--assets",
        s(&assets),
        "--stamps",
        s(&empty),
    ])
    .fails_with(&["no photographs", "fetch-scenes.sh"]);
    assert!(stamps_dir(dir.path()).is_dir());
    // A setting photo that does not decode.
    let bad = assets.join(SETTINGS_PACKAGE).join("meadow.jpg");
    std::fs::write(&bad, b"\xff\xd8 truncated").unwrap();
    run(&[
        "dataset",
        "scenes",
        "--out",
        s(&out),
        "--images",
        "3",
        "--lists",
        &lists,
        "--assets",
        s(&assets),
    ])
    .fails_with(&["meadow.jpg"]);
}
