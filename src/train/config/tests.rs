//! Tests of the training config: parsing, validation, defaults, overrides and resume.

use super::*;
use crate::model::pooling::Pooling;
use crate::model::run_dir::RunDir;

/// `--resume` reads the run's own config.toml, not --config; overrides apply on top.
#[test]
fn a_resumed_run_keeps_its_config_and_takes_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given.toml");
    std::fs::write(
        &given,
        "dataset = \"a.csv\"\n[loop]\nepochs = 3\nseed = 1\n",
    )
    .unwrap();
    let run = RunDir::new(dir.path().join("run"));
    std::fs::create_dir_all(run.root()).unwrap();
    let mut saved = TrainConfig::load(&given).unwrap();
    saved.run.epochs = 7;
    saved.run.seed = 9;
    saved.save(&run.config()).unwrap();
    let overrides = ConfigOverrides {
        epochs: Some(12),
        ..Default::default()
    };

    let fresh = run_config(&given, &run, false, &overrides).unwrap();
    assert_eq!((fresh.run.epochs, fresh.run.seed), (12, 1));
    let resumed = run_config(&given, &run, true, &overrides).unwrap();
    assert_eq!((resumed.run.epochs, resumed.run.seed), (12, 9));
    // a run without a config.toml (none yet) resumes from --config
    let other = RunDir::new(dir.path().join("other"));
    assert_eq!(
        run_config(&given, &other, true, &overrides)
            .unwrap()
            .run
            .seed,
        1
    );

    let bad = ConfigOverrides {
        batch_size: Some(0),
        ..Default::default()
    };
    let err = run_config(&given, &run, true, &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loop.batch_size"), "{err}");
    std::fs::write(&given, "[loop]\nepochs = 3\n").unwrap();
    let err = run_config(&given, &other, false, &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no dataset"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
    assert!(parse_duration("10x").is_err());
    assert!(parse_duration("m").is_err());
    assert!(parse_duration("10").is_ok());
}

#[test]
fn shipped_configs_parse() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn errors_name_line_and_field() {
    let err = TrainConfig::from_toml("[loop]\nepochs = 3\nbatch_sise = 2\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("batch_sise"),
        "{msg}"
    );
    let err = TrainConfig::from_toml("[loop]\nbatch_size = 0\n").unwrap_err();
    assert!(err.to_string().contains("loop.batch_size"), "{err}");
    let err = TrainConfig::from_toml("[model]\nconcept_loss = -1\n").unwrap_err();
    assert!(err.to_string().contains("model.concept_loss"), "{err}");
    let c = TrainConfig::from_toml("[model]\nconcept_loss = 0.5\n").unwrap();
    assert_eq!(c.model.concept_loss, 0.5);
    assert_eq!(c.model.concept_weight, 0.0, "guidance is off by default");
    let c = TrainConfig::from_toml("[model]\nconcept_weight = 1.5\n").unwrap();
    assert_eq!(c.model.concept_weight, 1.5);
    for bad in [
        "concept_weight = -1",
        "concept_weight = 1\nconcept_loss = 0",
    ] {
        let err = TrainConfig::from_toml(&format!("[model]\n{bad}\n")).unwrap_err();
        assert!(err.to_string().contains("model.concept_weight"), "{err}");
    }
    assert_eq!(c.model.kind_weight, None);
    assert_eq!((c.model.kind_floor, c.model.relative_weight), (0.0, 0.0));
    assert_eq!(c.model.beam_size, 1, "greedy by default");
    let beam = TrainConfig::from_toml(
        "[model]
beam_size = 3
",
    )
    .unwrap();
    assert_eq!(beam.model.beam_size, 3);
    for bad in ["beam_size = 0", "beam_size = 65"] {
        let err = TrainConfig::from_toml(&format!("[model]\n{bad}\n")).unwrap_err();
        assert!(err.to_string().contains("model.beam_size"), "{err}");
    }
    let c = TrainConfig::from_toml(
        "[model]\nconcept_weight = 1\nkind_weight = 2\nkind_floor = 0.1\nrelative_weight = 0.5\n",
    )
    .unwrap();
    assert_eq!(c.model.kind_weight, Some(2.0));
    assert_eq!((c.model.kind_floor, c.model.relative_weight), (0.1, 0.5));
    for (bad, field) in [
        ("kind_weight = -1", "model.kind_weight"),
        ("kind_floor = 1", "model.kind_floor"),
        ("relative_weight = -0.5", "model.relative_weight"),
    ] {
        let err = TrainConfig::from_toml(&format!("[model]\n{bad}\n")).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn frozen_encoder_parses_and_is_checked() {
    let c = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"vgg16\"\nweights = \"w.pth\"\nwidth = 2\n",
    )
    .unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    assert_eq!(f.backbone, BackboneKind::Vgg16);
    assert_eq!(f.vgg16_config().width, 2);
    assert_eq!(f.vgg16_config().hidden, 4096);
    // round trip through the run directory's config.toml
    let text = toml::to_string_pretty(&c).unwrap();
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    let e = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"capsearch\"\nweights = \"run\"\nhidden = 3\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("vgg16"), "{e}");
    let e = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"alexnet\"\nweights = \"x\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("alexnet"), "{e}");
    for known in BackboneKind::ALL {
        assert!(e.to_string().contains(known), "{known} not listed: {e}");
    }
}

#[test]
fn efficientnet_encoder_parses_and_is_checked() {
    let c = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite2\"\nweights = \"w.pth\"\n",
    )
    .unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    assert_eq!(f.backbone, BackboneKind::EfficientnetLite2);
    assert_eq!(f.efficientnet_config().unwrap().image_size, 260);
    let tiny = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n\
        [model.encoder.efficientnet]\nstem = 8\nhead = 16\nclasses = 10\nimage_size = 32\n\
        stages = [{expand = 1, kernel = 3, stride = 2, out = 8, repeats = 1}]\n";
    let c = TrainConfig::from_toml(tiny).unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    let shape = f.efficientnet_config().unwrap();
    assert_eq!((shape.head, shape.image_size, shape.bn_eps), (16, 32, 1e-3));
    let text = toml::to_string_pretty(&c).unwrap();
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    let e = TrainConfig::from_toml(&tiny.replace("kernel = 3", "kernel = 4")).unwrap_err();
    assert!(e.to_string().contains("kernel must be odd"), "{e}");
    let e = TrainConfig::from_toml(&tiny.replace("efficientnet-lite0", "vgg16")).unwrap_err();
    assert!(e.to_string().contains("model.encoder.efficientnet"), "{e}");
    let e = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w\"\npool = 2\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("[model.encoder.efficientnet]"),
        "{e}"
    );
}

#[test]
fn resnet_encoder_parses_and_is_checked() {
    let c = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet50\"\nweights = \"r.pth\"\n",
    )
    .unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    assert_eq!(f.backbone, BackboneKind::Resnet50);
    assert_eq!(f.resnet_config().unwrap().feature_dim(), 2048);
    let tiny = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet18\"\nweights = \"r.pth\"\n\
        [model.encoder.resnet]\nblock = \"basic\"\nlayers = [2, 1, 1, 1]\nwidth = 4\nclasses = 10\nimage_size = 32\n";
    let c = TrainConfig::from_toml(tiny).unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    assert_eq!(f.resnet_config().unwrap().feature_dim(), 32);
    let text = toml::to_string_pretty(&c).unwrap();
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    let e = TrainConfig::from_toml(&tiny.replace("[2, 1, 1, 1]", "[2, 0, 1, 1]")).unwrap_err();
    assert!(e.to_string().contains("model.encoder.resnet"), "{e}");
    let e = TrainConfig::from_toml(&tiny.replace("\"resnet18\"", "\"vgg16\"")).unwrap_err();
    assert!(e.to_string().contains("model.encoder.resnet"), "{e}");
    let e = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet18\"\nweights = \"w\"\nhidden = 2\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("[model.encoder.resnet]"), "{e}");
}

#[test]
fn train_from_block_is_checked_against_the_network() {
    let base = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n";
    let c = TrainConfig::from_toml(&format!("{base}train_from_block = 15\n")).unwrap();
    let TrainEncoder::Frozen(f) = &c.model.encoder else {
        panic!("{c:?}")
    };
    assert_eq!(f.train_from_block, Some(15));
    let text = toml::to_string_pretty(&c).unwrap();
    assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    for bad in [0, 17] {
        let e = TrainConfig::from_toml(&format!("{base}train_from_block = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train_from_block") && e.contains("16 blocks"),
            "{e}"
        );
    }
    let e = TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"vgg16\"\nweights = \"w\"\ntrain_from_block = 2\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("train_from_block") && e.contains("resnet50"),
        "{e}"
    );
    TrainConfig::from_toml(
        "[model.encoder]\nkind = \"frozen\"\nbackbone = \"resnet50\"\nweights = \"w\"\ntrain_from_block = 13\n",
    )
    .unwrap();
}

#[test]
fn pooling_defaults_by_backbone_and_is_checked() {
    let frozen = |text: &str| match TrainConfig::from_toml(text).map(|c| c.model.encoder) {
        Ok(TrainEncoder::Frozen(f)) => Ok(f),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    };
    let lite = "[model.encoder]\nkind = \"frozen\"\nbackbone = \"efficientnet-lite0\"\nweights = \"w.pth\"\n";
    // absent: the photo default for a whole EfficientNet or ResNet, mean for the rest
    let f = frozen(lite).unwrap();
    assert_eq!(
        (f.pooling, f.pooling()),
        (None, FrozenEncoder::PHOTO_POOLING)
    );
    let resnet = lite.replace("efficientnet-lite0", "resnet18");
    assert_eq!(
        frozen(&resnet).unwrap().pooling(),
        FrozenEncoder::PHOTO_POOLING
    );
    let vgg = lite.replace("efficientnet-lite0", "vgg16");
    assert_eq!(frozen(&vgg).unwrap().pooling(), Pooling::Mean);
    let tail = format!("{lite}train_from_block = 15\n");
    assert_eq!(frozen(&tail).unwrap().pooling(), Pooling::Mean);
    // named: kept, and saved with the config
    for name in Pooling::ALL {
        let f = frozen(&format!("{lite}pooling = \"{name}\"\n")).unwrap();
        assert_eq!(f.pooling(), Pooling::parse(name).unwrap());
        let c = TrainConfig::from_toml(&format!("{lite}pooling = \"{name}\"\n")).unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        assert!(text.contains(&format!("pooling = \"{name}\"")), "{text}");
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    }
    // mean is fine anywhere; another pooling needs a whole network with a map
    assert_eq!(
        frozen(&format!("{vgg}pooling = \"mean\"\n"))
            .unwrap()
            .pooling(),
        Pooling::Mean
    );
    for bad in [
        format!("{vgg}pooling = \"max\"\n"),
        format!("{tail}pooling = \"mean-max\"\n"),
    ] {
        let e = frozen(&bad).unwrap_err();
        assert!(e.contains("model.encoder.pooling"), "{e}");
    }
    let e = frozen(&format!("{lite}pooling = \"avg\"\n")).unwrap_err();
    assert!(e.contains("`avg`") && e.contains("mean-max"), "{e}");
}

#[test]
fn empty_config_is_the_default() {
    assert_eq!(TrainConfig::from_toml("").unwrap(), TrainConfig::default());
}
