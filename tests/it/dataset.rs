//! `capsearch dataset shapes` and `capsearch dataset check`: every format from generated
//! fixtures, and every bad input the foundation issue lists.

use std::path::Path;

use crate::common::{bomb_png, jpeg, png, png_bytes, run, run_in, s, tempdir, write};

fn check_json(path: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["dataset", "check", s(path), "--json", "--threshold", "1"];
    args.extend_from_slice(extra);
    run(&args).ok().json()
}

fn splits(v: &serde_json::Value) -> [u64; 3] {
    ["train", "val", "test"].map(|k| v["splits"][k].as_u64().unwrap())
}

#[test]
fn shapes_output_passes_check_and_is_deterministic() {
    let dir = tempdir();
    let out = dir.path().join("shapes");
    let o = run(&[
        "dataset",
        "shapes",
        "--out",
        s(&out),
        "--images",
        "60",
        "--seed",
        "3",
        "--size",
        "32",
    ])
    .ok();
    assert!(o.stdout.contains("wrote 60 images"), "{}", o.stdout);
    assert!(out.join("images/shape_00059.png").is_file());

    let v = check_json(&out, &[]);
    assert_eq!(v["format"], "karpathy");
    assert_eq!(v["images"], 60);
    assert_eq!(v["captions"], 300);
    assert_eq!(splits(&v), [48, 6, 6]);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0);
    assert_eq!(v["captions_per_image"]["min"], 5);
    let vocab = v["vocabulary"].as_u64().unwrap();
    assert!((30..200).contains(&vocab), "vocabulary {vocab}");

    // The text summary at the default threshold also passes.
    let text = run(&["dataset", "check", s(&out)]).ok().stdout;
    assert!(text.contains("format      karpathy"), "{text}");
    assert!(text.contains("train 48, val 6, test 6"), "{text}");
    assert!(text.contains("ok: the dataset can be trained on"), "{text}");

    // Same seed, same bytes; another seed, other images.
    let again = dir.path().join("again");
    let other = dir.path().join("other");
    for (d, seed) in [(&again, "3"), (&other, "4")] {
        run(&[
            "dataset",
            "shapes",
            "--out",
            s(d),
            "--images",
            "60",
            "--seed",
            seed,
            "--size",
            "32",
            "--threads",
            "1",
        ])
        .ok();
    }
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(
        read(&out, "dataset_shapes.json"),
        read(&again, "dataset_shapes.json")
    );
    assert_eq!(
        read(&out, "images/shape_00017.png"),
        read(&again, "images/shape_00017.png")
    );
    assert_ne!(
        read(&out, "images/shape_00017.png"),
        read(&other, "images/shape_00017.png")
    );

    let json: serde_json::Value =
        serde_json::from_slice(&read(&out, "dataset_shapes.json")).unwrap();
    let first = &json["images"][0];
    assert_eq!(first["filepath"], "images");
    assert_eq!(first["sentences"].as_array().unwrap().len(), 5);
    assert!(first["sentences"][0]["tokens"].as_array().unwrap().len() >= 2);

    run(&["dataset", "shapes", "--out", s(&out), "--images", "0"]).fails_with(&["--images"]);
    run(&["dataset", "shapes", "--out", s(&out), "--size", "4"]).fails_with(&["--size 4"]);
}

#[test]
fn flickr8k_loads_with_its_split_files() {
    let dir = tempdir();
    let d = dir.path();
    let mut token = String::new();
    for (i, name) in ["1000_a.jpg", "1001_b.jpg", "1002_c.jpg", "1003_d.jpg"]
        .iter()
        .enumerate()
    {
        jpeg(&d.join("Flicker8k_Dataset").join(name));
        for n in 0..5 {
            token.push_str(&format!("{name}#{n}\tA dog {i} plays in the park .\n"));
        }
    }
    write(&d.join("Flickr8k.token.txt"), token);
    write(
        &d.join("Flickr_8k.trainImages.txt"),
        "1000_a.jpg\n1001_b.jpg\n",
    );
    write(&d.join("Flickr_8k.devImages.txt"), "1002_c.jpg\n");
    write(&d.join("Flickr_8k.testImages.txt"), "1003_d.jpg\n");
    let v = check_json(d, &[]);
    assert_eq!(v["format"], "flickr8k");
    assert_eq!(v["images"], 4);
    assert_eq!(v["captions"], 20);
    assert_eq!(splits(&v), [2, 1, 1]);
    // Train tokens: a dog 0 1 plays in the park, plus <eos> and <unk>.
    assert_eq!(v["vocabulary"], 10);
    assert_eq!(v["caption_length"]["min"], 7);
    assert_eq!(v["caption_length"]["max"], 7);
}

#[test]
fn karpathy_loads_restval_and_filepaths() {
    let dir = tempdir();
    let d = dir.path();
    png(&d.join("imgs/val2014/a.jpg"));
    png(&d.join("imgs/val2014/b.jpg"));
    png(&d.join("imgs/train2014/c.jpg"));
    let file = write(
        &d.join("dataset_coco.json"),
        r#"{"images": [
          {"filepath": "val2014", "filename": "a.jpg", "split": "restval", "sentences": [{"raw": "A red bus.", "tokens": ["a", "red", "bus"]}, {"raw": "A bus on a road."}]},
          {"filepath": "val2014", "filename": "b.jpg", "split": "val", "sentences": [{"raw": "Two cats."}]},
          {"filepath": "train2014", "filename": "c.jpg", "split": "test", "sentences": [{"raw": "A plate of food."}]}
        ], "dataset": "coco"}"#,
    );
    let v = check_json(&file, &["--images", s(&d.join("imgs"))]);
    assert_eq!(v["format"], "karpathy");
    assert_eq!(v["images"], 3);
    assert_eq!(v["captions"], 4);
    assert_eq!(splits(&v), [1, 1, 1]);
    // Train captions: a red bus / a bus on a road -> a, red, bus, on, road.
    assert_eq!(v["vocabulary"], 7);
    // Without --images nothing is found, and the error says what to do.
    run(&["dataset", "check", s(&file)]).fails_with(&[
        "dataset_coco.json",
        "none of its 3 images",
        "--images",
    ]);
}

#[test]
fn coco_loads_with_a_seeded_split() {
    let dir = tempdir();
    let d = dir.path();
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for i in 0..20 {
        png(&d.join("val2017").join(format!("{i:012}.jpg")));
        images.push(format!(
            r#"{{"id": {i}, "file_name": "{i:012}.jpg", "height": 6, "width": 8}}"#
        ));
        for k in 0..5 {
            anns.push(format!(
                r#"{{"id": {}, "image_id": {i}, "caption": "A photo number {k}."}}"#,
                anns.len()
            ));
        }
    }
    let file = write(
        &d.join("annotations/captions_val2017.json"),
        format!(
            r#"{{"images": [{}], "annotations": [{}]}}"#,
            images.join(","),
            anns.join(",")
        ),
    );
    let v = check_json(&file, &[]);
    assert_eq!(v["format"], "coco");
    assert_eq!(v["images"], 20);
    assert_eq!(v["captions"], 100);
    assert_eq!(splits(&v), [16, 2, 2]);
    // a, photo, number, 0..4 plus <eos>, <unk>.
    assert_eq!(v["vocabulary"], 10);
    let v = check_json(
        &file,
        &["--split-ratios", "0.5,0.25,0.25", "--split-seed", "9"],
    );
    assert_eq!(splits(&v), [10, 5, 5]);
}

#[test]
fn custom_csv_and_folder_load() {
    let dir = tempdir();
    let d = dir.path();
    // custom_dataset.json with the original project's static/img root.
    png(&d.join("custom/static/img/dogs/dog001.jpg"));
    jpeg(&d.join("custom/static/img/dogs/dog002.jpg"));
    write(
        &d.join("custom/custom_dataset.json"),
        r#"{"images": [{"imgurl": "dogs/dog001.jpg", "description": "A black dog."},
                       {"imgurl": "dogs/dog002.jpg", "description": "A white dog."}]}"#,
    );
    let v = check_json(&d.join("custom"), &[]);
    assert_eq!(v["format"], "custom");
    assert_eq!(v["images"], 2);
    assert_eq!(v["captions"], 2);
    assert_eq!(splits(&v), [2, 0, 0]);

    // CSV, several rows per image and a split column.
    for n in ["a", "b", "c"] {
        png(&d.join("csv/pics").join(format!("{n}.png")));
    }
    let csv = write(
        &d.join("csv/captions.csv"),
        "image,caption,split\npics/a.png,A man.,train\npics/a.png,\"A man, smiling.\",train\npics/b.png,A woman.,val\npics/c.png,A child.,test\n",
    );
    let v = check_json(&csv, &[]);
    assert_eq!(v["format"], "csv");
    assert_eq!(v["images"], 3);
    assert_eq!(v["captions"], 4);
    assert_eq!(splits(&v), [1, 1, 1]);
    assert_eq!(v["vocabulary"], 5); // a, man, smiling + <eos>, <unk>

    // Image folder with sidecar captions and split folders.
    for (split, name) in [
        ("train", "cat"),
        ("train", "dog"),
        ("val", "cow"),
        ("test", "owl"),
    ] {
        png(&d.join("folder").join(split).join(format!("{name}.jpg")));
        write(
            &d.join("folder").join(split).join(format!("{name}.txt")),
            format!("A {name}.\nOne {name} here.\n"),
        );
    }
    let v = check_json(&d.join("folder"), &[]);
    assert_eq!(v["format"], "folder");
    assert_eq!(v["images"], 4);
    assert_eq!(v["captions"], 8);
    assert_eq!(splits(&v), [2, 1, 1]);
}

#[test]
fn format_override_and_unknown_formats() {
    let dir = tempdir();
    let d = dir.path();
    png(&d.join("a.png"));
    // A CSV under another extension loads with --format.
    let f = write(&d.join("list.tsvish"), "image,caption\na.png,A thing.\n");
    run(&["dataset", "check", s(&f)]).fails_with(&[
        "list.tsvish",
        "unknown dataset format",
        "--format",
    ]);
    let v = check_json(&f, &["--format", "csv"]);
    assert_eq!(v["format"], "csv");
    assert_eq!(v["images"], 1);
    // An unknown --format value is a usage error (clap's exit code 2).
    run(&["dataset", "check", s(&f), "--format", "xml"]).fails_with(&["xml"]);
    // An empty folder is no dataset.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    run(&["dataset", "check", s(&empty)]).fails_with(&["empty", "found no dataset"]);
    run(&["dataset", "check", s(&d.join("nothing-here"))]).fails_with(&["nothing-here"]);
}

#[test]
fn malformed_files_name_file_and_line() {
    let dir = tempdir();
    let d = dir.path();
    png(&d.join("a.png"));
    let case = |name: &str, text: &str| write(&d.join(name), text);
    let f = case(
        "dataset_bad.json",
        "{\"images\": [\n  {\"filename\": \"a.png\"\n",
    );
    run(&["dataset", "check", s(&f)])
        .fails_with(&["dataset_bad.json (line 3, column", "malformed JSON"]);
    let f = case("ragged.csv", "image,caption\na.png,x\na.png,y,z\n");
    run(&["dataset", "check", s(&f)]).fails_with(&["ragged.csv (line 3)", "3 fields"]);
    let f = case("nocaption.csv", "image,description\na.png,x\n");
    run(&["dataset", "check", s(&f)])
        .fails_with(&["nocaption.csv (line 1 (header))", "missing column caption"]);
    let f = case(
        "Flickr8k.token.txt",
        "a.png#0\tA cat.\na.png#1 A cat without a tab.\n",
    );
    run(&["dataset", "check", s(&f)]).fails_with(&["Flickr8k.token.txt (line 2)", "no tab"]);
    std::fs::create_dir_all(d.join("py")).unwrap();
    let f = write(
        &d.join("py/custom_dataset.json"),
        "{\n    'images': [{'imgurl': 'a.png', 'description': 'A cat.'}]\n}\n",
    );
    run(&["dataset", "check", s(&f)]).fails_with(&[
        "custom_dataset.json (line 2, column 5)",
        "Python single quotes",
    ]);
}

#[test]
fn empty_duplicate_and_untrainable_datasets() {
    let dir = tempdir();
    let d = dir.path();
    png(&d.join("a.png"));
    png(&d.join("b.png"));
    let f = write(&d.join("empty.csv"), "image,caption\n");
    run(&["dataset", "check", s(&f)]).fails_with(&["empty.csv", "has no entries"]);
    let f = write(&d.join("dataset_empty.json"), r#"{"images": []}"#);
    run(&["dataset", "check", s(&f)]).fails_with(&["dataset_empty.json", "has no entries"]);
    let f = write(
        &d.join("dataset_dup.json"),
        r#"{"images": [{"filename": "a.png", "sentences": [{"raw": "x"}]}, {"filename": "a.png", "sentences": [{"raw": "y"}]}]}"#,
    );
    run(&["dataset", "check", s(&f)]).fails_with(&[
        "dataset_dup.json (images[1])",
        "duplicate entry",
        "images[0]",
    ]);
    let f = write(
        &d.join("dupsplit.csv"),
        "image,caption,split\na.png,x,train\na.png,y,val\n",
    );
    run(&["dataset", "check", s(&f)]).fails_with(&["dupsplit.csv (line 3)", "one split"]);
    let f = write(
        &d.join("emptycap.csv"),
        "image,caption\na.png,A cat.\nb.png,\" -- \"\n",
    );
    run(&["dataset", "check", s(&f)])
        .fails_with(&["emptycap.csv (line 3)", "empty after tokenising"]);
    // Loads, but no image is in the train split: the summary is printed, then exit 2.
    let f = write(
        &d.join("testonly.csv"),
        "image,caption,split\na.png,A cat.,test\nb.png,A dog.,val\n",
    );
    let o = run(&["dataset", "check", s(&f), "--threshold", "1"]);
    assert!(o.stdout.contains("images      2"), "{}", o.stdout);
    o.fails_with(&["testonly.csv", "cannot be trained on", "train split"]);
    // A vocabulary with no word at the threshold cannot be trained on either.
    let f = write(
        &d.join("rare.csv"),
        "image,caption\na.png,A cat.\nb.png,One dog.\n",
    );
    run(&["dataset", "check", s(&f), "--split-ratios", "1,0,0"]).fails_with(&["--threshold"]);
}

#[test]
fn paths_escaping_the_image_root_are_refused() {
    let dir = tempdir();
    let root = dir.path().join("root");
    png(&root.join("a.png"));
    let f = write(
        &root.join("up.csv"),
        "image,caption\na.png,A cat.\n../../etc/passwd,A secret.\n",
    );
    run(&["dataset", "check", s(&f)]).fails_with(&[
        "up.csv (line 3)",
        "\"../../etc/passwd\"",
        "escapes the image root",
    ]);
    let f = write(
        &root.join("abs.csv"),
        "image,caption\n/etc/passwd,A secret.\na.png,A cat.\n",
    );
    run(&["dataset", "check", s(&f)]).fails_with(&["abs.csv (line 2)", "escapes the image root"]);
    let f = write(
        &root.join("custom_dataset.json"),
        r#"{"images": [{"imgurl": "../outside.png", "description": "x"}]}"#,
    );
    run(&["dataset", "check", s(&f)])
        .fails_with(&["custom_dataset.json (images[0])", "escapes the image root"]);
    #[cfg(unix)]
    {
        let outside = png(&dir.path().join("outside.png"));
        std::os::unix::fs::symlink(&outside, root.join("link.png")).unwrap();
        let f = write(
            &root.join("link.csv"),
            "image,caption\na.png,A cat.\nlink.png,A secret.\n",
        );
        run(&["dataset", "check", s(&f)])
            .fails_with(&["link.csv (line 3)", "outside the image root"]);
        // In the folder format too.
        let folder = dir.path().join("folder");
        png(&folder.join("ok.png"));
        write(&folder.join("ok.txt"), "A cat.");
        std::os::unix::fs::symlink(&outside, folder.join("evil.png")).unwrap();
        write(&folder.join("evil.txt"), "A secret.");
        run(&["dataset", "check", s(&folder)]).fails_with(&["evil.png", "outside the image root"]);
    }
}

#[test]
fn bad_images_are_skipped_and_reported_or_refused_with_strict() {
    let dir = tempdir();
    let d = dir.path();
    for n in ["good1", "good2", "good3"] {
        png(&d.join(format!("{n}.png")));
    }
    let full = png_bytes(40, 40, [1, 2, 3]);
    write(&d.join("truncated.png"), &full[..full.len() / 2]);
    write(&d.join("zero.jpg"), b"");
    write(&d.join("text.jpg"), b"this is a text file, not a JPEG\n");
    write(&d.join("bomb.png"), bomb_png(50_000, 50_000));
    let mut corrupt = full.clone();
    for b in corrupt.iter_mut().skip(50) {
        *b ^= 0xA5;
    }
    write(&d.join("corrupt.png"), corrupt);
    let rows = [
        ("good1.png", "A red square."),
        ("truncated.png", "A cut image."),
        ("zero.jpg", "An empty file."),
        ("good2.png", "A red square again."),
        ("text.jpg", "A text file."),
        ("bomb.png", "A bomb."),
        ("corrupt.png", "Garbage."),
        ("missing.png", "Nothing."),
        ("good3.png", "A third square."),
    ];
    let mut csv = String::from("image,caption\n");
    for (img, cap) in rows {
        csv.push_str(&format!("{img},{cap}\n"));
    }
    let f = write(&d.join("data.csv"), &csv);

    let v = check_json(&f, &[]);
    assert_eq!(v["images"], 3);
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 6, "{skipped:#?}");
    let reason = |entry: &str| {
        skipped
            .iter()
            .find(|s| s["entry"] == entry)
            .unwrap_or_else(|| panic!("{entry} not skipped"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("truncated.png").contains("line 3"),
        "{}",
        reason("truncated.png")
    );
    assert!(reason("zero.jpg").contains("0 bytes"));
    assert!(reason("text.jpg").contains("not an image"));
    assert!(reason("bomb.png").contains("refused"));
    assert!(reason("corrupt.png").contains("corrupt.png"));
    assert!(reason("missing.png").contains("not found"));

    let text = run(&["dataset", "check", s(&f), "--threshold", "1"])
        .ok()
        .stdout;
    assert!(text.contains("skipped     6"), "{text}");
    assert!(text.contains("bomb.png:"), "{text}");

    // --strict refuses the first bad image, naming the file and line.
    for (img, line) in [
        ("truncated.png", 3),
        ("zero.jpg", 4),
        ("text.jpg", 6),
        ("bomb.png", 7),
        ("missing.png", 9),
    ] {
        let mut body = String::from("image,caption\ngood1.png,A square.\n");
        // Pad with good rows so the bad image sits on line `line`.
        for _ in 3..line {
            body.push_str("good2.png,Another square.\n");
        }
        body.push_str(&format!("{img},Bad.\n"));
        let only = write(&d.join("one.csv"), body);
        run(&["dataset", "check", s(&only), "--strict"])
            .fails_with(&[&format!("one.csv (line {line})"), img]);
    }
    // A dataset whose only image is bad has nothing left: exit 2 even without --strict.
    let lone = write(&d.join("lone.csv"), "image,caption\nbomb.png,A bomb.\n");
    run(&["dataset", "check", s(&lone)]).fails_with(&["lone.csv", "no usable images", "bomb.png"]);
    // --no-decode only checks existence.
    let v = check_json(&f, &["--no-decode"]);
    assert_eq!(v["images"], 8);
}

#[test]
fn run_in_a_folder_uses_relative_paths() {
    let dir = tempdir();
    png(&dir.path().join("pics/a.png"));
    write(
        &dir.path().join("caps.csv"),
        "image,caption\npics/a.png,A thing.\n",
    );
    let v = run_in(
        dir.path(),
        &["dataset", "check", "caps.csv", "--json", "--threshold", "1"],
    )
    .ok()
    .json();
    assert_eq!(v["images"], 1);
}
