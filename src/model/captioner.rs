//! The captioner in NeuralTalk's arrangement.
//!
//! The image feature is projected (`We`, `be`) and fed as the LSTM's first input; then comes the
//! START word's embedding (`Ws[0]`), then the caption's words. The output at the image step is
//! discarded; the output after word `t` scores word `t + 1` (`Wd`, `bd`), with END (index 0) as a
//! word. Parameter names and shapes mirror NeuralTalk's checkpoint, so import is a copy.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

use super::encoder::{SmallCnn, SmallCnnConfig};
use super::finetune::{Tail, TailConfig};
use super::guide_head::GuideHead;
use super::lstm::FusedLstm;
use super::ops::{cross_entropy, dropout};

/// Where the image feature comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderConfig {
    /// A small CNN trained together with the decoder.
    SmallCnn(SmallCnnConfig),
    /// Features computed outside the model (a frozen backbone such as VGG-16 fc7), of length `dim`.
    Precomputed {
        dim: usize,
        /// Name of the backbone that produced the features (for example `vgg16-fc7`).
        backbone: String,
    },
    /// A backbone's frozen part computed outside the model (its output map, cached), and its last
    /// blocks trained with the decoder (the [`Tail`], `train_from_block`). `dim` is the length
    /// of the tail's pooled feature, which `We` projects.
    FineTuned {
        dim: usize,
        backbone: String,
        tail: TailConfig,
    },
}

impl EncoderConfig {
    pub fn feature_dim(&self) -> usize {
        match self {
            EncoderConfig::SmallCnn(c) => c.feature_dim(),
            EncoderConfig::Precomputed { dim, .. } | EncoderConfig::FineTuned { dim, .. } => *dim,
        }
    }
}

/// Sizes and options of a captioner.
#[derive(Config, Debug, PartialEq)]
pub struct CaptionerConfig {
    pub encoder: EncoderConfig,
    /// Vocabulary size V (boundary and `<unk>` included).
    pub vocab_size: usize,
    /// Image and word encoding size D (NeuralTalk's `image_encoding_size` = `word_encoding_size`).
    #[config(default = 256)]
    pub embed_size: usize,
    /// LSTM hidden size H.
    #[config(default = 256)]
    pub hidden_size: usize,
    /// Dropout on the LSTM's inputs and outputs while training.
    #[config(default = 0.2)]
    pub dropout: f64,
    /// NeuralTalk's `tanhC_version`: 1 for `h = o * tanh(c)`, 0 for `h = o * c`.
    #[config(default = 1)]
    pub tanh_c_version: u8,
    /// Add a concept head (`Wc`, `bc`): a training-only layer that predicts, from the projected
    /// image `x0 = f·We + be`, which words the image's captions use. Captioning never reads it.
    /// Absent (as in model files written before it existed) means no head.
    pub concept_head: Option<bool>,
    /// Feed the concept head the image feature `[F]` instead of the projected image `[D]`: a
    /// head of its own, not read through the decoder's projection (and its loss then does not
    /// train the projection). Absent (as in model files written before it existed): the
    /// projected image.
    pub concept_on_feature: Option<bool>,
    /// Weight λ of concept-guided decoding (see [`super::guide::ConceptBias`]) that `caption`,
    /// `eval`, `index`, `search` and `serve` use with this model unless told otherwise. Absent
    /// (as in model files written before it existed) means 0: no guidance.
    pub concept_weight: Option<f32>,
    /// Word ids that the training captions say at most once per caption (see
    /// [`super::guide::said_once_words`]); a concept-guided caption says them once too.
    /// Absent in model files written before it existed: no such rule.
    pub said_once: Option<Vec<usize>>,
    /// Concept guidance's further settings and word lists (see [`super::guide::ConceptGuide`]).
    /// Absent in model files written before it existed: decoding as before.
    pub guide: Option<super::guide::ConceptGuide>,
    /// A guide head fitted on the standardised features (see [`super::guide_head`]): when
    /// present, concept-guided decoding reads it instead of the concept head. Its weights are
    /// `guide_head.weight` and `guide_head.bias` in `model.bpk`. Absent in model files written
    /// before it existed, and in models trained without a frozen backbone: the concept head.
    pub guide_head: Option<super::guide_head::GuideHeadInfo>,
    /// Beam size that `caption`, `eval`, `index`, `search` and `serve` decode with unless told
    /// otherwise (`[model] beam_size` at training). Absent (as in model files written before it
    /// existed): 1, greedy.
    pub beam_size: Option<usize>,
}

impl CaptionerConfig {
    pub fn init(&self, device: &Device) -> Captioner {
        let (f, d, h, v) = (
            self.encoder.feature_dim(),
            self.embed_size,
            self.hidden_size,
            self.vocab_size,
        );
        let uniform = |rows: usize, cols: usize, fan_in: usize| {
            let b = (1.0 / fan_in as f64).sqrt();
            Param::from_tensor(Tensor::<2>::random(
                [rows, cols],
                Distribution::Uniform(-b, b),
                device,
            ))
        };
        Captioner {
            cnn: match &self.encoder {
                EncoderConfig::SmallCnn(c) => Some(c.init(device)),
                EncoderConfig::Precomputed { .. } | EncoderConfig::FineTuned { .. } => None,
            },
            tail: match &self.encoder {
                EncoderConfig::FineTuned { tail, .. } => Some(tail.init(device)),
                _ => None,
            },
            we: uniform(f, d, f),
            be: Param::from_tensor(Tensor::zeros([d], device)),
            ws: Param::from_tensor(Tensor::random(
                [v, d],
                Distribution::Normal(0.0, 0.1),
                device,
            )),
            lstm: FusedLstm::new(d, h, self.tanh_c_version != 0, device),
            wd: uniform(h, v, h),
            bd: Param::from_tensor(Tensor::zeros([v], device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            concept: self.concept_head.unwrap_or(false).then(|| {
                let on_feature = self.concept_on_feature.unwrap_or(false);
                let rows = if on_feature { f } else { d };
                ConceptHead {
                    wc: uniform(rows, v, rows),
                    bc: Param::from_tensor(Tensor::zeros([v], device)),
                    on_feature,
                }
            }),
            guide_head: self
                .guide_head
                .as_ref()
                .map(|_| GuideHead::zeros(f, v, device)),
        }
    }
}

/// The concept head: projected image `[B, D]` (or, `on_feature`, the image feature `[B, F]`) →
/// word logits `[B, V]`.
#[derive(Module, Debug)]
pub struct ConceptHead {
    pub wc: Param<Tensor<2>>,
    pub bc: Param<Tensor<1>>,
    /// Whether the head reads the image feature rather than the projected image.
    pub on_feature: bool,
}

/// CNN (optional) + projection + embeddings + fused LSTM + output layer.
#[derive(Module, Debug)]
pub struct Captioner {
    /// The trained-from-scratch encoder, when there is one; `None` for precomputed features.
    pub cnn: Option<SmallCnn>,
    /// Image projection `[F, D]` (NeuralTalk `We`).
    pub we: Param<Tensor<2>>,
    /// `[D]` (NeuralTalk `be`, stored there as `[1, D]`).
    pub be: Param<Tensor<1>>,
    /// Word embeddings `[V, D]` (NeuralTalk `Ws`).
    pub ws: Param<Tensor<2>>,
    /// The fused LSTM (NeuralTalk `WLSTM`).
    pub lstm: FusedLstm,
    /// Output layer `[H, V]` (NeuralTalk `Wd`).
    pub wd: Param<Tensor<2>>,
    /// `[V]` (NeuralTalk `bd`, stored there as `[1, V]`).
    pub bd: Param<Tensor<1>>,
    pub dropout: Dropout,
    /// Training-only word predictor on the projected image (see [`CaptionerConfig::concept_head`]).
    pub concept: Option<ConceptHead>,
    /// A backbone's fine-tuned last blocks (see [`crate::model::finetune`]); absent in models
    /// without them, including every model file written before they existed.
    pub tail: Option<Tail>,
    /// The guide head fitted on the features (see [`CaptionerConfig::guide_head`]); absent in
    /// models without one, including every model file written before it existed.
    pub guide_head: Option<GuideHead>,
}

impl Captioner {
    /// Vocabulary size V.
    pub fn vocab_size(&self) -> usize {
        self.wd.dims()[1]
    }

    /// Feature length F that [`Captioner::project`] expects.
    pub fn feature_dim(&self) -> usize {
        self.we.dims()[0]
    }

    /// Values per image the model reads from outside: the cached map of a backbone's frozen part
    /// when it has a [`Tail`], otherwise the feature length F.
    pub fn input_dim(&self) -> usize {
        self.tail
            .as_ref()
            .map_or_else(|| self.feature_dim(), Tail::input_dim)
    }

    /// Inputs `[B, input_dim]` → features `[B, F]`: through the [`Tail`] when there is one,
    /// unchanged otherwise.
    pub fn finish(&self, inputs: Tensor<2>) -> Tensor<2> {
        match &self.tail {
            Some(tail) => tail.forward(inputs),
            None => inputs,
        }
    }

    /// Images `[B, 3, H, W]` → features `[B, F]`. `None` when the model has no CNN (precomputed features).
    /// Images are cast to the weights' precision (see [`crate::model::precision`]).
    pub fn encode(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        let dtype = self.we.val().dtype();
        self.cnn.as_ref().map(|cnn| cnn.forward(images.cast(dtype)))
    }

    /// Features `[B, F]` → the LSTM's first input `[B, D]`.
    pub fn project(&self, features: Tensor<2>) -> Tensor<2> {
        let we = self.we.val();
        features.cast(we.dtype()).matmul(we) + self.be.val().unsqueeze_dim(0)
    }

    /// Word ids `[B, T]` → embeddings `[B, T, D]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let d = self.ws.dims()[1];
        self.ws
            .val()
            .select(0, ids.reshape([b * t]))
            .reshape([b, t, d])
    }

    /// Hidden states `[.., H]` → vocabulary scores `[.., V]` (rank 2).
    pub fn scores(&self, hidden: Tensor<2>) -> Tensor<2> {
        hidden.matmul(self.wd.val()) + self.bd.val().unsqueeze_dim(0)
    }

    /// Teacher-forced scores: features `[B, F]`, inputs `[B, T]` (START then words) → `[B, T, V]`.
    /// On flex in training, dropout and the loss run as capsearch's own ops ([`super::ops`]).
    pub fn forward(&self, features: Tensor<2>, inputs: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = inputs.dims();
        let x_img = dropout::forward(&self.dropout, self.project(features)).unsqueeze_dim(1);
        let x_words = dropout::forward(&self.dropout, self.embed(inputs));
        let hidden = self.lstm.forward(Tensor::cat(vec![x_img, x_words], 1));
        let h = self.lstm.hidden_size;
        // drop the image step's output
        let hidden = hidden.narrow(1, 1, t).reshape([b * t, h]);
        let hidden = dropout::forward(&self.dropout, hidden);
        self.scores(hidden).reshape([b, t, self.vocab_size()])
    }

    /// Masked cross-entropy (mean negative log-likelihood per real target token) and the number
    /// of real tokens. `targets` and `mask` are `[B, T]`.
    pub fn loss(
        &self,
        features: Tensor<2>,
        inputs: Tensor<2, Int>,
        targets: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<1> {
        cross_entropy::masked_nll(self.forward(features, inputs), targets, mask)
    }

    /// The concept head's word logits `[B, V]` for features `[B, F]` whose projection (from
    /// [`Captioner::project`]) is `x0` `[B, D]`; the head reads the one it was made for (see
    /// [`CaptionerConfig::concept_on_feature`]). `None` without a concept head.
    pub fn concept_logits(&self, features: Tensor<2>, x0: Tensor<2>) -> Option<Tensor<2>> {
        let head = self.concept.as_ref()?;
        let wc = head.wc.val();
        let input = if head.on_feature { features } else { x0 };
        Some(input.cast(wc.dtype()).matmul(wc) + head.bc.val().unsqueeze_dim(0))
    }

    /// The word logits `[B, V]` that concept-guided decoding reads for features `[B, F]` whose
    /// projection is `x0` `[B, D]`: the guide head's when the model has one, else the concept
    /// head's ([`Captioner::concept_logits`]). `None` with neither.
    pub fn guide_logits(&self, features: Tensor<2>, x0: Tensor<2>) -> Option<Tensor<2>> {
        match &self.guide_head {
            Some(head) => Some(head.logits(features)),
            None => self.concept_logits(features, x0),
        }
    }

    /// Whether concept-guided decoding has a head to read (a concept head or a guide head).
    pub fn can_guide(&self) -> bool {
        self.concept.is_some() || self.guide_head.is_some()
    }

    /// The concept loss: binary cross-entropy between the concept head's word logits for
    /// features `[B, F]` and `targets` `[B, V]` (the share of each image's captions that use each
    /// word), summed over words and averaged over images. `None` without a concept head.
    pub fn concept_loss(&self, features: Tensor<2>, targets: Tensor<2>) -> Option<Tensor<1>> {
        let [b, _] = targets.dims();
        let x0 = self.project(features.clone());
        let logits = self.concept_logits(features, x0)?;
        let targets = targets.cast(logits.dtype());
        let nll = targets.clone() * log_sigmoid(logits.clone())
            + (targets.neg() + 1.0) * log_sigmoid(logits.neg());
        Some(nll.sum().neg() / b.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode::{DecodeOptions, decode};
    use burn::optim::{AdamConfig, GradientsParams};

    /// The model on `device` agrees with the CPU: same loss, same loss after one Adam step from the
    /// same weights, same greedy captions. Run on the CPU here; `cuda_agrees_with_cpu` runs it
    /// on the GPU (bench/gpu-check.sh).
    fn check_device_agrees_with_cpu(device: Device) {
        let cpu = Device::flex();
        cpu.seed(5);
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 6,
                backbone: "test".into(),
            },
            9,
        )
        .with_embed_size(8)
        .with_hidden_size(12)
        .with_dropout(0.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bpk");
        crate::model::artifact::save_weights(config.init(&cpu), &path).unwrap();
        let features = [
            [0.5f32, -1.0, 0.25, 2.0, 0.0, 1.0],
            [1.0, 1.0, -0.5, 0.0, 0.5, -2.0],
        ];
        let run = |dev: Device| {
            let ad = dev.clone().autodiff();
            let model = crate::model::artifact::load_weights(config.init(&ad), &path).unwrap();
            let f = Tensor::<2>::from_floats(features, &ad);
            let inputs = Tensor::<2, Int>::from_ints([[0, 2, 3], [0, 4, 0]], &ad);
            let targets = Tensor::<2, Int>::from_ints([[2, 3, 0], [4, 0, 0]], &ad);
            let mask = Tensor::<2>::from_floats([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], &ad);
            let loss = model.loss(f.clone(), inputs.clone(), targets.clone(), mask.clone());
            let before = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = AdamConfig::new().init().step(0.01, model, grads);
            let after = model.loss(f, inputs, targets, mask).into_scalar::<f32>();
            let ids: Vec<Vec<usize>> = decode(
                &model.valid(),
                Tensor::<2>::from_floats(features, &dev),
                DecodeOptions::default(),
            )
            .into_iter()
            .map(|c| c.ids)
            .collect();
            (before, after, ids)
        };
        let (want_before, want_after, want_ids) = run(cpu);
        let (before, after, ids) = run(device);
        assert!(
            (before - want_before).abs() < 1e-3,
            "{before} vs {want_before}"
        );
        assert!((after - want_after).abs() < 1e-3, "{after} vs {want_after}");
        assert!(after < before);
        assert_eq!(ids, want_ids);
    }

    #[test]
    fn device_check_passes_on_the_cpu() {
        check_device_agrees_with_cpu(Device::flex());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_agrees_with_cpu() {
        check_device_agrees_with_cpu(Device::cuda(0));
    }

    /// Two feature vectors, two captions: the model learns them and greedy decoding gives them back.
    #[test]
    fn overfits_two_captions_and_decodes_them() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 4,
                backbone: "test".into(),
            },
            7,
        )
        .with_embed_size(16)
        .with_hidden_size(32)
        .with_dropout(0.0);
        let mut model = config.init(&device);
        let mut optim = AdamConfig::new().init();
        let features =
            Tensor::<2>::from_floats([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], &device);
        // captions [2,3,4] and [5,6]; inputs start with 0, targets end with 0
        let inputs = Tensor::<2, Int>::from_ints([[0, 2, 3, 4], [0, 5, 6, 0]], &device);
        let targets = Tensor::<2, Int>::from_ints([[2, 3, 4, 0], [5, 6, 0, 0]], &device);
        let mask = Tensor::<2>::from_floats([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]], &device);
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..150 {
            let loss = model.loss(
                features.clone(),
                inputs.clone(),
                targets.clone(),
                mask.clone(),
            );
            last = loss.clone().into_scalar::<f32>();
            first.get_or_insert(last);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.02, model, grads);
        }
        assert!(last < 0.05, "loss went from {first:?} to {last}");
        let valid = model.valid();
        let captions = decode(&valid, features.inner(), DecodeOptions::default());
        assert_eq!(captions[0].ids, [2, 3, 4]);
        assert_eq!(captions[1].ids, [5, 6]);
        for beam_size in [2, 3] {
            let beams = decode(
                &valid,
                Tensor::<2>::from_floats(
                    [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]],
                    &Device::flex(),
                ),
                DecodeOptions {
                    beam_size,
                    max_steps: 20,
                    concept_weight: None,
                },
            );
            assert_eq!(beams[0].ids, [2, 3, 4]);
            assert_eq!(beams[1].ids, [5, 6]);
            assert!(beams[0].logprob <= 0.0 && beams[0].logprob > -1.0);
        }
    }

    /// The concept loss is binary cross-entropy on `x0 · Wc + bc`, summed over words and averaged
    /// over images (checked against the formula in plain f64), its gradient reaches the image
    /// projection `We`, and a model without the head has none.
    #[test]
    fn concept_loss_is_binary_cross_entropy_on_the_projected_image() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 3,
                backbone: "test".into(),
            },
            4,
        )
        .with_embed_size(5)
        .with_hidden_size(6);
        let features = [[0.5f32, -1.0, 2.0], [1.0, 0.25, -0.5]];
        let targets = [[0.0f32, 0.6, 1.0, 0.2], [1.0, 0.0, 0.4, 0.0]];
        let f = || Tensor::<2>::from_floats(features, &device);
        let t = || Tensor::<2>::from_floats(targets, &device);
        assert!(config.init(&device).concept_loss(f(), t()).is_none());
        assert!(
            config
                .clone()
                .with_concept_head(Some(false))
                .init(&device)
                .concept
                .is_none()
        );

        let model = config.with_concept_head(Some(true)).init(&device);
        let loss = model.concept_loss(f(), t()).unwrap();
        let got = loss.clone().into_scalar::<f32>() as f64;
        let logits = {
            let head = model.concept.as_ref().unwrap();
            (model.project(f()).matmul(head.wc.val()) + head.bc.val().unsqueeze_dim(0))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut want = 0.0;
        for (z, y) in logits.iter().zip(targets.iter().flatten()) {
            let (z, y) = (*z as f64, *y as f64);
            want -= y * sigmoid(z).ln() + (1.0 - y) * (1.0 - sigmoid(z)).ln();
        }
        want /= 2.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");

        let grads = loss.backward();
        let we = model.we.val().grad(&grads).expect("We gets a gradient");
        let norm: f32 = we.abs().sum().into_scalar();
        assert!(norm > 0.0);
    }

    /// A head on the feature has `[F, V]` weights, its loss is binary cross-entropy on
    /// `f · Wc + bc`, and it leaves the projection `We` alone.
    #[test]
    fn a_concept_head_on_the_feature_reads_the_feature() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let model = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 3,
                backbone: "test".into(),
            },
            4,
        )
        .with_embed_size(5)
        .with_hidden_size(6)
        .with_concept_head(Some(true))
        .with_concept_on_feature(Some(true))
        .init(&device);
        let head = model.concept.as_ref().unwrap();
        assert!(head.on_feature);
        assert_eq!(head.wc.dims(), [3, 4]);
        let f = || Tensor::<2>::from_floats([[0.5f32, -1.0, 2.0]], &device);
        let t = Tensor::<2>::from_floats([[0.0f32, 1.0, 0.5, 0.0]], &device);
        let logits = model.concept_logits(f(), model.project(f())).unwrap();
        let want = f().matmul(head.wc.val()) + head.bc.val().unsqueeze_dim(0);
        let diff: f32 = (logits - want).abs().sum().into_scalar();
        assert!(diff < 1e-6);
        let grads = model.concept_loss(f(), t).unwrap().backward();
        assert!(model.we.val().grad(&grads).is_none(), "We gets no gradient");
        assert!(head.wc.val().grad(&grads).is_some());
    }

    /// Model files written before the concept head existed have no `concept_head` field; they
    /// still load, as models without the head.
    #[test]
    fn configs_without_a_concept_head_field_still_load() {
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 3,
                backbone: "test".into(),
            },
            4,
        );
        let mut json: serde_json::Value = serde_json::to_value(&config).unwrap();
        json.as_object_mut().unwrap().remove("concept_head");
        json.as_object_mut().unwrap().remove("concept_weight");
        json.as_object_mut().unwrap().remove("beam_size");
        let back: CaptionerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.concept_head, None);
        assert_eq!(back.concept_weight, None);
        assert_eq!(back.beam_size, None);
        assert_eq!(back, config);
        // and the weight round-trips when set
        let guided = config
            .with_concept_head(Some(true))
            .with_concept_weight(Some(1.5));
        let json = serde_json::to_string(&guided).unwrap();
        let back: CaptionerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.concept_weight, Some(1.5));
    }

    /// A guide head saves and loads with the model (`guide_head` in model.json, its weights in
    /// model.bpk); a model.json without the field (written before it existed) loads without a
    /// head, and its model decodes, guided, exactly as it did before saving.
    #[test]
    fn the_guide_head_round_trips_and_models_without_it_decode_as_before() {
        use crate::model::guide_head::{GuideFit, GuideHeadInfo};
        let device = Device::flex();
        device.seed(21);
        let config = CaptionerConfig::new(
            EncoderConfig::Precomputed {
                dim: 5,
                backbone: "test".into(),
            },
            9,
        )
        .with_embed_size(6)
        .with_hidden_size(7)
        .with_concept_head(Some(true))
        .with_concept_weight(Some(1.0));
        let dir = tempfile::tempdir().unwrap();
        let features = || {
            Tensor::<2>::from_floats(
                [[0.5f32, -1.0, 2.0, 0.0, 1.0], [1.0, 0.25, -0.5, 2.0, -1.0]],
                &device,
            )
        };
        let options = DecodeOptions {
            concept_weight: Some(2.0),
            ..DecodeOptions::default()
        };

        // without a head: the field is absent from older files, and decoding is unchanged
        let plain = config.init(&device);
        let before = decode(&plain, features(), options);
        let path = dir.path().join("plain.bpk");
        crate::model::artifact::save_weights(plain, &path).unwrap();
        let mut json = serde_json::to_value(&config).unwrap();
        json.as_object_mut().unwrap().remove("guide_head");
        let old: CaptionerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.guide_head, None);
        let loaded = crate::model::artifact::load_weights(old.init(&device), &path).unwrap();
        assert!(loaded.guide_head.is_none());
        assert_eq!(decode(&loaded, features(), options), before);

        // with a head: config and weights round-trip
        let info = GuideHeadInfo {
            fitted_on: "test".into(),
            images: 2,
            fit: GuideFit::default(),
        };
        let with_head = config.with_guide_head(Some(info.clone()));
        let json = serde_json::to_string(&with_head).unwrap();
        let back: CaptionerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.guide_head, Some(info));
        let mut model = with_head.init(&device);
        let head = model.guide_head.as_mut().unwrap();
        head.weight = Param::from_tensor(Tensor::random(
            [5, 9],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        head.bias =
            Param::from_tensor(Tensor::random([9], Distribution::Normal(0.0, 1.0), &device));
        let want = model
            .guide_logits(features(), model.project(features()))
            .unwrap();
        let path = dir.path().join("head.bpk");
        crate::model::artifact::save_weights(model, &path).unwrap();
        let loaded = crate::model::artifact::load_weights(back.init(&device), &path).unwrap();
        let got = loaded
            .guide_logits(features(), loaded.project(features()))
            .unwrap();
        let diff: f32 = (got - want).abs().sum().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }
}
