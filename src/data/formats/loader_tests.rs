//! Loader tests: every format from generated fixtures, and the shared rules.

use std::path::{Path, PathBuf};

use super::*;
use crate::data::image::tests::{bomb_png_header, png_bytes};

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

fn png(path: &Path) -> PathBuf {
    write(path, png_bytes(6, 4))
}

fn load_ok(path: &Path) -> Dataset {
    load(path, &LoadOptions::default()).unwrap()
}

fn load_err(path: &Path, opts: &LoadOptions) -> String {
    load(path, opts).unwrap_err().to_string()
}

fn captions_of<'a>(ds: &'a Dataset, path: &str) -> &'a [String] {
    &ds.samples.iter().find(|s| s.path == path).unwrap().captions
}

fn split_of(ds: &Dataset, path: &str) -> Split {
    ds.samples.iter().find(|s| s.path == path).unwrap().split
}

fn flickr8k_fixture(d: &Path) {
    for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"] {
        png(&d.join("Flicker8k_Dataset").join(name));
    }
    let mut token = String::new();
    for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"] {
        for n in 0..5 {
            token.push_str(&format!("{name}#{n}\tA dog number {n} runs on {name} .\n"));
        }
    }
    write(&d.join("Flickr8k.token.txt"), token);
    write(&d.join("Flickr_8k.trainImages.txt"), "a.jpg\nb.jpg\n");
    write(&d.join("Flickr_8k.devImages.txt"), "c.jpg\n");
    write(&d.join("Flickr_8k.testImages.txt"), "d.jpg\nz.jpg\n");
}

#[test]
fn flickr8k_with_split_files() {
    let dir = tempfile::tempdir().unwrap();
    flickr8k_fixture(dir.path());
    // The folder and the token file both work.
    for path in [
        dir.path().to_path_buf(),
        dir.path().join("Flickr8k.token.txt"),
    ] {
        let ds = load_ok(&path);
        assert_eq!(ds.format, Format::Flickr8k);
        assert_eq!(ds.image_root, dir.path().join("Flicker8k_Dataset"));
        assert_eq!(ds.samples.len(), 4);
        assert_eq!(
            [
                ds.count(Split::Train),
                ds.count(Split::Val),
                ds.count(Split::Test)
            ],
            [2, 1, 1]
        );
        assert_eq!(split_of(&ds, "c.jpg"), Split::Val);
        let caps = captions_of(&ds, "a.jpg");
        assert_eq!(caps.len(), 5);
        assert_eq!(caps[2], "A dog number 2 runs on a.jpg .");
        assert_eq!(
            crate::data::text::tokenize(&caps[2]),
            ["a", "dog", "number", "2", "runs", "on", "a", "jpg"]
        );
        let reasons: Vec<String> = ds
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.entry, s.reason))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("e.jpg: not listed in any split file (line 21)"),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("z.jpg: no captions"), "{reasons:?}");
    }
}

#[test]
fn flickr8k_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    flickr8k_fixture(dir.path());
    let token = dir.path().join("Flickr8k.token.txt");
    let mut text = std::fs::read_to_string(&token).unwrap();
    text.push_str("b.jpg#5 no tab here\n");
    std::fs::write(&token, &text).unwrap();
    let e = load_err(dir.path(), &LoadOptions::default());
    assert!(
        e.contains("Flickr8k.token.txt (line 26)") && e.contains("no tab"),
        "{e}"
    );

    text = text.replace("b.jpg#5 no tab here\n", "b.jpg#5\t ... \n");
    std::fs::write(&token, &text).unwrap();
    let e = load_err(dir.path(), &LoadOptions::default());
    assert!(
        e.contains("(line 26)") && e.contains("empty after tokenising"),
        "{e}"
    );

    std::fs::write(&token, text.replace("b.jpg#5\t ... \n", "")).unwrap();
    write(
        &dir.path().join("Flickr_8k.devImages.txt"),
        "c.jpg\na.jpg\n",
    );
    let e = load_err(dir.path(), &LoadOptions::default());
    assert!(
        e.contains("Flickr_8k.devImages.txt (line 2)") && e.contains("one split"),
        "{e}"
    );
}

#[test]
fn flickr8k_without_split_files_gets_a_seeded_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut token = String::new();
    for i in 0..20 {
        png(&d.join("images").join(format!("{i}.jpg")));
        token.push_str(&format!(
            "{i}.jpg#0\ta picture\n{i}.jpg#1\tanother picture\n"
        ));
    }
    write(&d.join("Flickr8k.token.txt"), token);
    let ds = load_ok(d);
    assert_eq!(ds.samples.len(), 20);
    assert_eq!(
        [
            ds.count(Split::Train),
            ds.count(Split::Val),
            ds.count(Split::Test)
        ],
        [16, 2, 2]
    );
    let again = load_ok(d);
    assert_eq!(ds.samples, again.samples);
    let other_seed = load(
        d,
        &LoadOptions {
            split: SplitOptions {
                seed: 7,
                ..SplitOptions::default()
            },
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_ne!(
        ds.samples.iter().map(|s| s.split).collect::<Vec<_>>(),
        other_seed
            .samples
            .iter()
            .map(|s| s.split)
            .collect::<Vec<_>>()
    );
}

fn karpathy_json(entries: &str) -> String {
    format!(r#"{{"dataset": "test", "images": [{entries}]}}"#)
}

#[test]
fn karpathy_splits_paths_and_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("val2014/x.jpg"));
    png(&d.join("y.jpg"));
    png(&d.join("z.jpg"));
    let json = karpathy_json(
        r#"{"filepath": "val2014", "filename": "x.jpg", "split": "restval",
            "sentences": [{"raw": "A man rides.", "tokens": ["a", "man", "rides"]}, {"tokens": ["two", "dogs"]}]},
           {"filename": "y.jpg", "split": "val", "sentences": [{"raw": "A cat."}]},
           {"filename": "z.jpg", "split": "test", "sentences": [{"raw": "A bird."}]},
           {"filename": "gone.jpg", "split": "test", "sentences": [{"raw": "Missing."}]},
           {"filename": "none.jpg", "split": "train", "sentences": []}"#,
    );
    let file = write(&d.join("dataset_test.json"), json);
    let ds = load_ok(&file);
    assert_eq!(ds.format, Format::Karpathy);
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(split_of(&ds, "val2014/x.jpg"), Split::Train);
    assert_eq!(
        captions_of(&ds, "val2014/x.jpg"),
        ["A man rides.", "two dogs"]
    );
    assert_eq!(split_of(&ds, "y.jpg"), Split::Val);
    assert_eq!(ds.skipped.len(), 2);
    assert!(
        ds.skipped
            .iter()
            .any(|s| s.entry == "none.jpg" && s.reason.contains("no captions"))
    );
    assert!(ds.skipped.iter().any(|s| s.entry == "gone.jpg"
        && s.reason.contains("missing")
        && s.reason.contains("images[3]")));

    // Strict refuses the missing image, naming the entry.
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    let e = load_err(&file, &strict);
    assert!(
        e.contains("dataset_test.json (images[3])") && e.contains("not found"),
        "{e}"
    );
}

#[test]
fn karpathy_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("a.jpg"));
    let case = |name: &str, entries: &str| {
        let f = write(&d.join(name), karpathy_json(entries));
        load_err(&f, &LoadOptions::default())
    };
    let e = case(
        "dataset_dup.json",
        r#"{"filename": "a.jpg", "sentences": [{"raw": "x"}]}, {"filename": "./a.jpg", "sentences": [{"raw": "y"}]}"#,
    );
    assert!(
        e.contains("dataset_dup.json (images[1])")
            && e.contains("duplicate entry")
            && e.contains("images[0]"),
        "{e}"
    );
    let e = case(
        "dataset_split.json",
        r#"{"filename": "a.jpg", "split": "holdout", "sentences": [{"raw": "x"}]}"#,
    );
    assert!(
        e.contains("(images[0].split)") && e.contains("holdout"),
        "{e}"
    );
    let e = case("dataset_nofile.json", r#"{"sentences": [{"raw": "x"}]}"#);
    assert!(e.contains("(images[0])") && e.contains("filename"), "{e}");
    let e = case(
        "dataset_empty_cap.json",
        r#"{"filename": "a.jpg", "sentences": [{"raw": "ok"}, {"raw": " - "}]}"#,
    );
    assert!(
        e.contains("(images[0].sentences[1])") && e.contains("empty after tokenising"),
        "{e}"
    );
    let e = case(
        "dataset_escape.json",
        r#"{"filename": "../../etc/passwd", "sentences": [{"raw": "x"}]}"#,
    );
    assert!(
        e.contains("(images[0])") && e.contains("escapes the image root"),
        "{e}"
    );
    let e = case(
        "dataset_abs.json",
        r#"{"filename": "/etc/passwd", "sentences": [{"raw": "x"}]}"#,
    );
    assert!(e.contains("escapes the image root"), "{e}");
    let e = case("dataset_empty.json", "");
    assert!(e.contains("has no entries"), "{e}");
    let f = write(
        &d.join("dataset_bad.json"),
        "{\"images\": [\n  {\"filename\": \"a.jpg\",,}\n]}",
    );
    let e = load_err(&f, &LoadOptions::default());
    assert!(
        e.contains("dataset_bad.json (line 2, column") && e.contains("malformed JSON"),
        "{e}"
    );
    let f = write(&d.join("dataset_shape.json"), "{\"images\": {\"a\": 1}}");
    let e = load_err(&f, &LoadOptions::default());
    assert!(
        e.contains("(line 1, column") && e.contains("not a valid Karpathy"),
        "{e}"
    );
}

#[test]
fn coco_groups_annotations_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for i in 0..10 {
        png(&d.join("train2014").join(format!("COCO_{i}.jpg")));
        images.push(format!(
            r#"{{"id": {}, "file_name": "COCO_{i}.jpg", "width": 6}}"#,
            100 + i
        ));
        for k in 0..(1 + i % 3) {
            anns.push(format!(
                r#"{{"id": {}, "image_id": {}, "caption": "thing {k} of {i}"}}"#,
                anns.len(),
                100 + i
            ));
        }
    }
    let json = format!(
        r#"{{"info": {{}}, "images": [{}], "licenses": [], "annotations": [{}]}}"#,
        images.join(","),
        anns.join(",")
    );
    let file = write(&d.join("annotations/captions_train2014.json"), &json);
    // The image folder is found next to annotations/.
    let ds = load_ok(&file);
    assert_eq!(ds.format, Format::Coco);
    assert_eq!(ds.image_root, d.join("train2014"));
    assert_eq!(ds.samples.len(), 10);
    assert_eq!(
        ds.samples.iter().map(|s| s.captions.len()).sum::<usize>(),
        anns.len()
    );
    assert_eq!(
        captions_of(&ds, "COCO_5.jpg"),
        ["thing 0 of 5", "thing 1 of 5", "thing 2 of 5"]
    );
    assert_eq!(
        [
            ds.count(Split::Train),
            ds.count(Split::Val),
            ds.count(Split::Test)
        ],
        [8, 1, 1]
    );

    let bad = json.replace(r#""image_id": 105"#, r#""image_id": 999"#);
    let f = write(&d.join("annotations/captions_bad.json"), bad);
    let e = load_err(
        &f,
        &LoadOptions {
            images: Some(d.join("train2014")),
            ..LoadOptions::default()
        },
    );
    assert!(
        e.contains("captions_bad.json (annotations[") && e.contains("999"),
        "{e}"
    );
    let dup = json.replace(
        r#""id": 101, "file_name": "COCO_1.jpg""#,
        r#""id": 100, "file_name": "COCO_1.jpg""#,
    );
    let f = write(&d.join("annotations/captions_dup.json"), dup);
    let e = load_err(
        &f,
        &LoadOptions {
            images: Some(d.join("train2014")),
            ..LoadOptions::default()
        },
    );
    assert!(
        e.contains("(images[1])") && e.contains("duplicate image id 100"),
        "{e}"
    );
    let nofield = r#"{"images": [{"id": 1}], "annotations": []}"#;
    let f = write(&d.join("captions_x.json"), nofield);
    let e = load_err(&f, &LoadOptions::default());
    assert!(
        e.contains("captions_x.json (line 1") && e.contains("file_name"),
        "{e}"
    );
}

#[test]
fn custom_dataset_and_python_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("static/img/dogs/dog001.jpg"));
    png(&d.join("static/img/cats/cat001.jpg"));
    let file = write(
        &d.join("custom_dataset.json"),
        r#"{"images": [
            {"imgurl": "dogs/dog001.jpg", "description": "A brown dog on grass."},
            {"imgurl": "cats/cat001.jpg", "description": ["A cat.", "A sleeping cat."], "split": "test"}
        ]}"#,
    );
    let ds = load_ok(&file);
    assert_eq!(ds.format, Format::Custom);
    assert_eq!(ds.image_root, d.join("static/img"));
    assert_eq!(
        captions_of(&ds, "dogs/dog001.jpg"),
        ["A brown dog on grass."]
    );
    assert_eq!(captions_of(&ds, "cats/cat001.jpg").len(), 2);
    assert_eq!(split_of(&ds, "cats/cat001.jpg"), Split::Test);
    assert_eq!(split_of(&ds, "dogs/dog001.jpg"), Split::Train);

    let py = write(
        &d.join("py/custom_dataset.json"),
        "{\n    'images': [\n        {'imgurl': 'dogs/dog001.jpg', 'description': 'A dog.'}\n    ]\n}\n",
    );
    let e = load_err(&py, &LoadOptions::default());
    assert!(
        e.contains("custom_dataset.json (line 2, column 5)") && e.contains("Python single quotes"),
        "{e}"
    );
    let dup = write(
        &d.join("dup/custom_dataset.json"),
        r#"{"images": [{"imgurl": "a.jpg", "description": "x"}, {"imgurl": "a.jpg", "description": "y"}]}"#,
    );
    let e = load_err(&dup, &LoadOptions::default());
    assert!(
        e.contains("(images[1])") && e.contains("duplicate entry"),
        "{e}"
    );
}

#[test]
fn csv_rows_merge_and_errors_name_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("img/a.png"));
    png(&d.join("img/b.png"));
    png(&d.join("img/c.png"));
    let file = write(
        &d.join("caps.csv"),
        "Caption,image,split\n\"A dog, running.\",img/a.png,train\nAnother dog,img/a.png,\nA cat,img/b.png,val\nA bird,img/c.png,test\n",
    );
    let ds = load_ok(&file);
    assert_eq!(ds.format, Format::Csv);
    assert_eq!(ds.samples.len(), 3);
    assert_eq!(
        captions_of(&ds, "img/a.png"),
        ["A dog, running.", "Another dog"]
    );
    assert_eq!(split_of(&ds, "img/a.png"), Split::Train);
    assert_eq!(split_of(&ds, "img/b.png"), Split::Val);

    let case =
        |name: &str, text: &str| load_err(&write(&d.join(name), text), &LoadOptions::default());
    let e = case("nocol.csv", "image,text\na.png,x\n");
    assert!(
        e.contains("nocol.csv (line 1 (header))")
            && e.contains("missing column caption")
            && e.contains("image, text"),
        "{e}"
    );
    let e = case("empty.csv", "");
    assert!(
        e.contains("empty.csv") && e.contains("missing columns image, caption"),
        "{e}"
    );
    let e = case(
        "ragged.csv",
        "image,caption\nimg/a.png,x\nimg/b.png,y,extra\n",
    );
    assert!(
        e.contains("ragged.csv (line 3)") && e.contains("3 fields"),
        "{e}"
    );
    let e = case(
        "conflict.csv",
        "image,caption,split\nimg/a.png,x,train\nimg/a.png,y,test\n",
    );
    assert!(
        e.contains("conflict.csv (line 3)") && e.contains("line 2"),
        "{e}"
    );
    let e = case(
        "emptycap.csv",
        "image,caption\nimg/a.png,x\nimg/b.png,\"  ?! \"\n",
    );
    assert!(
        e.contains("emptycap.csv (line 3)") && e.contains("empty after tokenising"),
        "{e}"
    );
    let e = case("noimage.csv", "image,caption\n,x\n");
    assert!(
        e.contains("noimage.csv (line 2)") && e.contains("`image` cell is empty"),
        "{e}"
    );
    let e = case("header.csv", "image,caption\n");
    assert!(e.contains("has no entries"), "{e}");
}

#[test]
fn folder_with_sidecars_and_split_folders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("train/cat.jpg"));
    write(&d.join("train/cat.txt"), "A cat.\n\nA grey cat sleeping.\n");
    png(&d.join("train/dog.png"));
    write(&d.join("train/dog.txt"), "A dog.");
    png(&d.join("test/bird.jpg"));
    write(&d.join("test/bird.txt"), "A bird.");
    png(&d.join("loose/fish.jpg"));
    write(&d.join("loose/fish.txt"), "A fish.");
    png(&d.join("train/nocaption.jpg"));
    let ds = load_ok(d);
    assert_eq!(ds.format, Format::Folder);
    assert_eq!(ds.samples.len(), 4);
    assert_eq!(
        captions_of(&ds, "train/cat.jpg"),
        ["A cat.", "A grey cat sleeping."]
    );
    assert_eq!(split_of(&ds, "train/dog.png"), Split::Train);
    assert_eq!(split_of(&ds, "test/bird.jpg"), Split::Test);
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.skipped[0].entry, "train/nocaption.jpg");
    write(&d.join("train/dog.txt"), "\n  \n");
    let e = load_err(d, &LoadOptions::default());
    assert!(e.contains("dog.txt") && e.contains("empty"), "{e}");
    write(&d.join("train/dog.txt"), "fine\n...\n");
    let e = load_err(d, &LoadOptions::default());
    assert!(
        e.contains("dog.txt (line 2)") && e.contains("empty after tokenising"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_pointing_out_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let secret = png(&outside.path().join("secret.png"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("ok.png"));
    std::os::unix::fs::symlink(&secret, d.join("link.png")).unwrap();
    // A symlink that stays inside is fine.
    std::os::unix::fs::symlink(d.join("ok.png"), d.join("inner.png")).unwrap();
    let file = write(
        &d.join("data.csv"),
        "image,caption\nok.png,fine\ninner.png,also fine\nlink.png,sneaky\n",
    );
    let e = load_err(&file, &LoadOptions::default());
    assert!(
        e.contains("data.csv (line 4)") && e.contains("outside the image root"),
        "{e}"
    );
    write(&file, "image,caption\nok.png,fine\ninner.png,also fine\n");
    assert_eq!(load_ok(&file).samples.len(), 2);
    // resolve_image, used when images are opened later, refuses the same paths.
    assert!(resolve_image(d, "link.png").is_err());
    assert!(resolve_image(d, "../x.png").is_err());
    assert_eq!(resolve_image(d, "ok.png").unwrap(), d.join("ok.png"));
}

#[test]
fn bad_images_are_skipped_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    png(&d.join("good.png"));
    write(&d.join("zero.jpg"), b"");
    write(&d.join("text.jpg"), b"hello, I am text\n");
    let full = png_bytes(32, 32);
    write(&d.join("cut.png"), &full[..full.len() / 2]);
    write(&d.join("bomb.png"), bomb_png_header(50_000, 50_000));
    let file = write(
        &d.join("data.csv"),
        "image,caption\ngood.png,a good one\nzero.jpg,zero\ntext.jpg,text\ncut.png,cut\nbomb.png,bomb\nmissing.png,gone\n",
    );
    // Without decoding only the missing file is noticed.
    let ds = load_ok(&file);
    assert_eq!(ds.samples.len(), 5);
    assert_eq!(ds.skipped.len(), 1);
    let checked = LoadOptions {
        check_images: true,
        ..LoadOptions::default()
    };
    let ds = load(&file, &checked).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.samples[0].path, "good.png");
    let reason = |entry: &str| {
        ds.skipped
            .iter()
            .find(|s| s.entry == entry)
            .unwrap()
            .reason
            .clone()
    };
    assert!(reason("zero.jpg").contains("0 bytes") && reason("zero.jpg").contains("line 3"));
    assert!(reason("text.jpg").contains("not an image"));
    assert!(reason("cut.png").contains("cut.png"));
    assert!(
        reason("bomb.png").contains("refused"),
        "{}",
        reason("bomb.png")
    );
    assert!(reason("missing.png").contains("not found"));
    let strict = LoadOptions {
        strict: true,
        ..checked
    };
    write(&file, "image,caption\ngood.png,a good one\nbomb.png,bomb\n");
    let e = load_err(&file, &strict);
    assert!(
        e.contains("data.csv (line 3)") && e.contains("bomb.png") && e.contains("refused"),
        "{e}"
    );
}

#[test]
fn nothing_usable_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = write(&d.join("data.csv"), "image,caption\na.png,x\nb.png,y\n");
    let e = load_err(&file, &LoadOptions::default());
    assert!(
        e.contains("none of its 2 images were found") && e.contains("--images"),
        "{e}"
    );
    let e = load_err(
        &file,
        &LoadOptions {
            images: Some(d.join("nope")),
            ..LoadOptions::default()
        },
    );
    assert!(
        e.contains("image folder") && e.contains("does not exist"),
        "{e}"
    );
    let e = load_err(&d.join("absent.csv"), &LoadOptions::default());
    assert!(e.contains("absent.csv"), "{e}");
    let e = load_err(&write(&d.join("x.yaml"), "a: b"), &LoadOptions::default());
    assert!(
        e.contains("x.yaml") && e.contains("unknown dataset format"),
        "{e}"
    );
}
