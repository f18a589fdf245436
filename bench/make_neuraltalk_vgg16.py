#!/usr/bin/env python3
"""Writes a full-size NeuralTalk checkpoint and full-size VGG-16 weights with random values, so
that the memory and speed of the NeuralTalk+VGG-16 path can be measured without the real files
(which cannot be downloaded here).

    python3 bench/make_neuraltalk_vgg16.py OUT_DIR      # needs numpy only

Writes OUT_DIR/neuraltalk_sized.p (a Python 3 pickle laid out as NeuralTalk's
flickr8k_cnn_lstm_v1.p: D = H = 512, V = 2,538, 4,096-d features, tanhC_version 1) and
OUT_DIR/vgg16_random.safetensors (torchvision's vgg16() names and shapes, 138 M parameters,
528 MiB). Import them with

    capsearch import-neuraltalk OUT_DIR/neuraltalk_sized.p --vgg16 OUT_DIR/vgg16_random.safetensors \
        --out checkpoints/neuraltalk-sized

Captions of random weights are nonsense; sizes, memory and timings are those of the real model.
"""

import importlib.util
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "vgg16_fixtures", os.path.join(HERE, "..", "tests", "fixtures", "vgg16", "make_fixtures.py"))
_vgg16_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vgg16_fixtures)
write_safetensors = _vgg16_fixtures.write_safetensors

F, D, V = 4096, 512, 2538
VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_weights(r):
    w, idx, c_in = {}, 0, 3
    for step in VGG:
        if step == "M":
            idx += 1
            continue
        w["features.%d.weight" % idx] = (r.standard_normal((step, c_in, 3, 3), dtype=np.float32)
                                         * np.float32(np.sqrt(2.0 / (c_in * 9))))
        w["features.%d.bias" % idx] = np.zeros(step, np.float32)
        idx += 2
        c_in = step
    for i, (n_in, n_out) in zip((0, 3, 6), [(512 * 49, 4096), (4096, 4096), (4096, 1000)]):
        w["classifier.%d.weight" % i] = (r.standard_normal((n_out, n_in), dtype=np.float32)
                                         * np.float32(np.sqrt(2.0 / n_in)))
        w["classifier.%d.bias" % i] = np.zeros(n_out, np.float32)
    return w


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    r = np.random.default_rng(8)
    model = {
        "We": r.standard_normal((F, D)) * 0.02,
        "be": np.zeros((1, D)),
        "Ws": r.standard_normal((V, D)) * 0.1,
        "WLSTM": r.standard_normal((1 + 2 * D, 4 * D)) * 0.05,
        "Wd": r.standard_normal((D, V)) * 0.05,
        "bd": np.zeros((1, V)),
    }
    words = ["w%d" % i for i in range(1, V)]
    params = {"image_encoding_size": D, "word_encoding_size": D, "hidden_size": D,
              "tanhC_version": 1, "generator": "lstm", "dataset": "flickr8k",
              "word_count_threshold": 5}
    wordtoix = {"#START#": 0}
    ixtoword = {0: "."}
    for i, word in enumerate(words):
        wordtoix[word] = i + 1
        ixtoword[i + 1] = word
    ckpt = {"it": 0, "epoch": 0.0, "model": model, "params": params, "perplexity": 0.0,
            "wordtoix": wordtoix, "ixtoword": ixtoword}
    with open(os.path.join(out, "neuraltalk_sized.p"), "wb") as fh:
        pickle.dump(ckpt, fh, protocol=2)
    write_safetensors(os.path.join(out, "vgg16_random.safetensors"), vgg16_weights(r))
    print("wrote", out)


if __name__ == "__main__":
    main()
