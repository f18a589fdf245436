//! Tests of backbones: keys, fixtures that load, save and reload.

use super::*;
use crate::data::image::{Normalization, ResizeMode};
use crate::model::artifact::{ModelInfo, Preprocessing};
use crate::model::encoder::SmallCnnConfig;
use crate::model::precision::Precision;
use crate::model::resnet::ResNetConfig;
use crate::model::vgg16::Vgg16Config;

fn info() -> BackboneInfo {
    BackboneInfo {
        name: "capsearch-cnn:x".into(),
        network: BackboneNetwork::SmallCnn(SmallCnnConfig::new().with_width(2).with_depth(1)),
        preprocessing: Preprocessing {
            image_size: 16,
            normalization: "imagenet".into(),
        },
        resize: ResizeMode::Squash,
        source: "a/b".into(),
        weights_sha256: "00".into(),
        until_block: None,
        pooling: Default::default(),
    }
}

#[test]
fn key_follows_network_preprocessing_and_weights_only() {
    let base = info();
    let key = base.key();
    assert!(
        key.starts_with("capsearch-cnn-") && key.len() == 14 + 16,
        "{key}"
    );
    let mut same = base.clone();
    same.name = "other".into();
    same.source = "elsewhere/c".into();
    assert_eq!(same.key(), key, "name and source do not key the cache");
    let mut c = base.clone();
    c.weights_sha256 = "01".into();
    assert_ne!(c.key(), key, "other weights");
    let mut c = base.clone();
    c.preprocessing.image_size = 32;
    assert_ne!(c.key(), key, "other image size");
    let mut c = base.clone();
    c.preprocessing.normalization = "caffe".into();
    assert_ne!(c.key(), key, "other normalisation");
    let mut c = base.clone();
    c.resize = ResizeMode::ShorterSideCenterCrop;
    assert_ne!(c.key(), key, "other resize");
    let mut c = base.clone();
    c.network = BackboneNetwork::SmallCnn(SmallCnnConfig::new().with_width(4).with_depth(1));
    assert_ne!(c.key(), key, "other shape");
    let mut c = base;
    c.network = BackboneNetwork::Vgg16(Vgg16Config::new());
    assert!(c.key().starts_with("vgg16-"));
}

/// The tiny ResNet-50-shaped network of `tests/fixtures/resnet` (made by its
/// `make_fixtures.py`), and that folder.
fn tiny_resnet50() -> (ResNetConfig, std::path::PathBuf) {
    let config = ResNetConfig {
        layers: [1, 2, 1, 1],
        width: 4,
        classes: 10,
        image_size: 32,
        ..ResNetConfig::resnet50()
    };
    let fixtures =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet");
    (config, fixtures)
}

#[test]
fn resnet_fixture_loads_saves_and_reloads_with_its_own_key() {
    let device = Device::flex();
    let (config, fixtures) = tiny_resnet50();
    let backbone =
        Backbone::resnet(config.clone(), &fixtures.join("resnet50_tiny.pth"), &device).unwrap();
    assert_eq!(backbone.info.name, "resnet-custom-bottleneck-w4-l1211");
    assert_eq!(backbone.info.resize, ResizeMode::TorchvisionCenterCrop);
    assert_eq!(
        backbone.info.normalization().unwrap(),
        Normalization::Imagenet
    );
    assert_eq!(backbone.feature_dim(), 128);
    let key = backbone.info.key();
    assert!(key.starts_with("resnet-"), "{key}");
    // the same tensors in the other format key the same network apart (other file hash)
    let other =
        Backbone::resnet(config, &fixtures.join("resnet50_tiny.safetensors"), &device).unwrap();
    assert_ne!(other.info.key(), key);
    let x = Tensor::<4>::ones([1, 3, 32, 32], &device);
    let want: Vec<f32> = backbone
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let got: Vec<f32> = other
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(got, want);
    let dir = tempfile::tempdir().unwrap();
    backbone.save(dir.path()).unwrap();
    let model_info = ModelInfo {
        name: "m".into(),
        captioner: crate::model::CaptionerConfig::new(backbone.info.encoder_config(), 3),
        preprocessing: backbone.info.preprocessing.clone(),
        produced_by: "test".into(),
        capsearch_version: "0".into(),
        dataset: None,
        epoch: None,
        val_bleu4: None,
    };
    let (again, _) = Backbone::of_model_dir(dir.path(), &model_info, &device, Precision::F32)
        .unwrap()
        .unwrap();
    assert_eq!(again.info, backbone.info);
    let got: Vec<f32> = again.forward(x).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(got, want);
}

/// A pooling other than mean keys its own cache, names the features apart and is written to
/// backbone.json; mean keeps the key and the file of backbones made before pooling existed.
#[test]
fn pooling_keys_names_and_round_trips() {
    let device = Device::flex();
    let (config, fixtures) = tiny_resnet50();
    let mean =
        Backbone::resnet(config.clone(), &fixtures.join("resnet50_tiny.pth"), &device).unwrap();
    let json = serde_json::to_value(&mean.info).unwrap();
    assert!(json.get("pooling").is_none(), "mean is not written: {json}");
    // a backbone.json from before pooling existed reads as mean, with the same key
    let old: BackboneInfo = serde_json::from_value(json).unwrap();
    assert_eq!((old.pooling, old.key()), (Pooling::Mean, mean.info.key()));
    let same = mean.clone().with_pooling(Pooling::Mean).unwrap();
    assert_eq!(same.info, mean.info);

    let max = mean.clone().with_pooling(Pooling::MeanMax).unwrap();
    assert_eq!(max.info.name, "resnet-custom-bottleneck-w4-l1211-mean-max");
    assert_ne!(max.info.key(), mean.info.key());
    assert_eq!(max.feature_dim(), 2 * mean.feature_dim());
    let x = Tensor::<4>::random(
        [2, 3, 32, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let m: Vec<f32> = mean
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let both: Vec<f32> = max
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let d = mean.feature_dim();
    assert_eq!(both.len(), 4 * d);
    for i in 0..2 {
        assert_eq!(both[2 * i * d..(2 * i + 1) * d], m[i * d..(i + 1) * d]);
        // each channel's largest cell is at least its average
        let maxima = &both[(2 * i + 1) * d..(2 * i + 2) * d];
        assert!(maxima.iter().zip(&m[i * d..]).all(|(a, b)| a >= b));
    }
    let dir = tempfile::tempdir().unwrap();
    max.save(dir.path()).unwrap();
    let saved = Backbone::saved_info(dir.path()).unwrap().unwrap();
    assert_eq!(saved, max.info);
    assert_eq!(saved.pooling, Pooling::MeanMax);
    assert_eq!(saved.encoder_config().feature_dim(), 2 * d);
    // twice, or on a network without a map, is refused
    assert!(max.with_pooling(Pooling::Max).is_err());
    let cnn = Backbone {
        info: info(),
        net: BackboneNet::SmallCnn(
            SmallCnnConfig::new()
                .with_width(2)
                .with_depth(1)
                .init(&device),
        ),
        fast: None,
    };
    let err = cnn.with_pooling(Pooling::Max).unwrap_err().to_string();
    assert!(err.contains("model.encoder.pooling"), "{err}");
}

#[test]
fn vgg16_fixture_loads_saves_and_reloads() {
    let device = Device::flex();
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vgg16/vgg16_tiny.safetensors");
    let config = Vgg16Config::new()
        .with_width(2)
        .with_hidden(16)
        .with_pool(2);
    let backbone = Backbone::vgg16(config, &fixture, &device).unwrap();
    assert_eq!(backbone.info.name, "vgg16-fc7-w2-h16-p2");
    assert_eq!(backbone.info.preprocessing.image_size, 224);
    assert_eq!(backbone.info.normalization().unwrap(), Normalization::Caffe);
    assert_eq!(backbone.info.weights_sha256, sha256_file(&fixture).unwrap());
    let x = Tensor::<4>::ones([1, 3, 64, 64], &device);
    let want: Vec<f32> = backbone
        .forward(x.clone())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(want.len(), 16);

    let dir = tempfile::tempdir().unwrap();
    backbone.save(dir.path()).unwrap();
    let model_info: ModelInfo = ModelInfo {
        name: "m".into(),
        captioner: crate::model::CaptionerConfig::new(backbone.info.encoder_config(), 3),
        preprocessing: backbone.info.preprocessing.clone(),
        produced_by: "test".into(),
        capsearch_version: "0".into(),
        dataset: None,
        epoch: None,
        val_bleu4: None,
    };
    let (again, weights) = Backbone::of_model_dir(dir.path(), &model_info, &device, Precision::F32)
        .unwrap()
        .unwrap();
    assert_eq!(weights, dir.path().join(BACKBONE_WEIGHTS));
    assert_eq!(again.info, backbone.info);
    let got: Vec<f32> = again.forward(x).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(got, want);
    assert_eq!(
        Backbone::saved_info(dir.path()).unwrap().unwrap().key(),
        backbone.info.key()
    );
}
