"""Which summary of EfficientNet-Lite0's 7x7 head map tells which things are in a `scenes` image?

Issue 17 asks whether the average-pooled vector (what capsearch feeds its decoder) is enough for
captions that name the small things composited into a scene, or whether another pooling or a small
learned projection of the 7x7 grid does better. This script measures that with cheap probes,
outside the captioner:

1. `extract`: runs EfficientNet-Lite0 (the PyTorch port in bench/pytorch_features.py, on the same
   .pth) over every image of dataset_scenes.json and saves the head's map before pooling,
   [N, 49, 1280] float16, to --grid (git-ignored; ~630 MB for 5,000 images).
2. `probe`: trains, on the train split, a multi-label classifier "which kinds are in this image"
   on each summary of the map, and scores it on the test split: for an image with n distinct kinds,
   the n top-scoring kinds are its guess; recall is the share of labelled things whose kind is in
   the guess (micro-averaged), given apart for things from seen and from unseen stamps (the labels'
   `unseen`), with mAP over kinds. The summaries:
     mean        the 1280-d average pool (capsearch today)
     max         the 1280-d max pool
     gem3        generalised mean, p = 3
     mean+max    both, 2560-d
     avg2x2      adaptive 2x2 average pool, 5120-d
     avg3x3      adaptive 3x3 average pool, 11520-d
     proj-max    learned: 1x1 conv 1280->W, ReLU, max over the 49 cells, linear
     proj-attn   learned: 1x1 conv 1280->W, ReLU, attention-weighted sum over the cells, linear
   Linear probes use the same recipe (standardised inputs, Adam, fixed epochs, weight decay).

Needs torch, numpy and Pillow (`pip install pillow`). Prints one JSON line per summary and a
Markdown table at the end.

    python3 bench/scenes_pooling_probe.py extract --dataset DIR/dataset_scenes.json \
        --weights datasets/weights/efficientnet-lite0.pth --grid /tmp/scenes-grid.npy
    python3 bench/scenes_pooling_probe.py probe --dataset DIR/dataset_scenes.json \
        --grid /tmp/scenes-grid.npy
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_features import Lite0  # noqa: E402


def head_map(model, x):
    """The head's activations [B, 1280, 7, 7], before the average pool."""
    x = F.relu6(model._bn0(model._conv_stem(x)))
    for b in model._blocks:
        x = b(x)
    return F.relu6(model._bn1(model._conv_head(x)))


def load_image(path, size):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    return (a.transpose(2, 0, 1) - 127.0) / 128.0


def extract(a):
    torch.set_num_threads(a.threads)
    d = json.load(open(a.dataset))
    root = os.path.dirname(os.path.abspath(a.dataset))
    model = Lite0().eval()
    state = torch.load(a.weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=False)
    images = d["images"]
    out = np.lib.format.open_memmap(a.grid, mode="w+", dtype=np.float16,
                                    shape=(len(images), 49, 1280))
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(images), a.batch):
            chunk = images[i:i + a.batch]
            x = torch.from_numpy(np.stack([
                load_image(os.path.join(root, im["filepath"], im["filename"]), 224)
                for im in chunk]))
            m = head_map(model, x)  # [B, 1280, 7, 7]
            out[i:i + len(chunk)] = m.flatten(2).transpose(1, 2).numpy().astype(np.float16)
            if (i // a.batch) % 20 == 0:
                print("%d/%d images, %.1f s" % (i + len(chunk), len(images), time.time() - t0),
                      file=sys.stderr)
    out.flush()
    print(json.dumps({"images": len(images), "seconds": round(time.time() - t0, 1),
                      "threads": a.threads}))


def labels(d):
    kinds = sorted(d["kinds"])
    index = {k: i for i, k in enumerate(kinds)}
    split, y, things = [], np.zeros((len(d["images"]), len(kinds)), np.float32), []
    for n, im in enumerate(d["images"]):
        split.append(im["split"])
        objs = im["labels"]["objects"]
        for o in objs:
            y[n, index[o["kind"]]] = 1.0
        things.append([(index[o["kind"]], bool(o.get("unseen", False))) for o in objs])
    return kinds, np.array(split), y, things


FIXED = ["mean", "max", "gem3", "mean+max", "avg2x2", "avg3x3"]


def summary(g, name):
    """A fixed (unlearned) summary of the [N, 49, C] float map, [N, D]."""
    n, _, c = g.shape
    if name == "mean":
        return g.mean(1)
    if name == "max":
        return g.amax(1)
    if name == "gem3":
        return g.clamp(min=1e-6).pow(3).mean(1).pow(1 / 3)
    if name == "mean+max":
        return torch.cat([g.mean(1), g.amax(1)], 1)
    side = {"avg2x2": 2, "avg3x3": 3}[name]
    return F.adaptive_avg_pool2d(g.transpose(1, 2).reshape(n, c, 7, 7), side).flatten(1)


def score(logits, y, things):
    """Top-n recall at each image's true kind count (seen / unseen things apart), and mAP."""
    hit = {False: 0, True: 0}
    tot = {False: 0, True: 0}
    for s, yi, th in zip(logits, y, things):
        n = int(yi.sum())
        top = set(np.argsort(-s)[:n].tolist())
        for k, unseen in th:
            tot[unseen] += 1
            hit[unseen] += int(k in top)
    aps = []
    for j in range(y.shape[1]):
        pos = y[:, j].sum()
        if pos == 0:
            continue
        order = np.argsort(-logits[:, j])
        rel = y[order, j]
        prec = np.cumsum(rel) / (np.arange(len(rel)) + 1)
        aps.append(float((prec * rel).sum() / pos))
    r = lambda h, t: round(h / t, 4) if t else None  # noqa: E731
    return {"recall": r(hit[False] + hit[True], tot[False] + tot[True]),
            "seen": r(hit[False], tot[False]), "unseen": r(hit[True], tot[True]),
            "mAP": round(float(np.mean(aps)), 4), "things": tot[False] + tot[True],
            "unseen_things": tot[True]}


def train_probe(model, xtr, ytr, epochs, lr, wd, batch, seed):
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    n = xtr.shape[0]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = F.binary_cross_entropy_with_logits(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


class Linear(nn.Module):
    def __init__(self, d, k, mu, sd, dropout):
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("sd", sd)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return self.fc(self.drop((x - self.mu) / self.sd))


class Projected(nn.Module):
    """1x1 conv of the grid to `width`, ReLU, then max or attention pooling, then linear."""

    def __init__(self, c, width, k, pool, mu, sd, dropout):
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("sd", sd)
        self.proj = nn.Linear(c, width)
        self.attn = nn.Linear(width, 1) if pool == "attn" else None
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, k)

    def forward(self, g):  # [B, 49, C]
        h = F.relu(self.proj((g.float() - self.mu) / self.sd))
        if self.attn is None:
            v = h.amax(1)
        else:
            w = torch.softmax(self.attn(h), 1)
            v = (w * h).sum(1)
        return self.fc(self.drop(v))


def probe(a):
    torch.set_num_threads(a.threads)
    d = json.load(open(a.dataset))
    kinds, split, y, things = labels(d)
    grid = np.load(a.grid, mmap_mode="r")
    tr, te = split == "train", split == "test"
    ytr = torch.from_numpy(y[tr])
    things_te = [t for t, s in zip(things, split) if s == "test"]
    results = []
    only = set(a.only.split(",")) if a.only else None
    g = torch.from_numpy(np.array(grid))
    for name in FIXED:
        if only and name not in only:
            continue
        t0 = time.time()
        x = summary(g.float(), name).numpy()
        xtr = torch.from_numpy(x[tr])
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
        m = train_probe(Linear(x.shape[1], len(kinds), mu, sd, a.dropout), xtr, ytr, a.epochs,
                        a.lr, a.wd, 64, a.seed)
        with torch.no_grad():
            logits = m(torch.from_numpy(x[te])).numpy()
        res = {"summary": name, "dim": x.shape[1], **score(logits, y[te], things_te),
               "seconds": round(time.time() - t0, 1)}
        print(json.dumps(res), flush=True)
        results.append(res)
    gtr = g[torch.from_numpy(tr)]
    flat = gtr.float().reshape(-1, gtr.shape[2])
    mu, sd = flat.mean(0), flat.std(0) + 1e-3
    del flat
    for pool in ("max", "attn"):
        name = "proj-%s" % pool
        if only and name not in only:
            continue
        t0 = time.time()
        m = train_probe(Projected(g.shape[2], a.width, len(kinds), pool, mu, sd, a.dropout), gtr,
                        ytr, a.proj_epochs, a.lr, a.wd, 64, a.seed)
        with torch.no_grad():
            logits = m(g[torch.from_numpy(te)]).numpy()
        res = {"summary": name, "dim": a.width, **score(logits, y[te], things_te),
               "seconds": round(time.time() - t0, 1)}
        print(json.dumps(res), flush=True)
        results.append(res)
    print("\n| summary | dim | recall | seen | unseen | mAP |\n|---|---:|---:|---:|---:|---:|")
    for r in results:
        print("| %s | %d | %.3f | %.3f | %s | %.3f |" % (
            r["summary"], r["dim"], r["recall"], r["seen"],
            "%.3f" % r["unseen"] if r["unseen"] is not None else "-", r["mAP"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--dataset", required=True)
    e.add_argument("--weights", required=True)
    e.add_argument("--grid", required=True, help="output .npy, [N, 49, 1280] float16")
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("probe")
    p.add_argument("--dataset", required=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--proj-epochs", type=int, default=15)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=1e-2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated summaries to run")
    a = ap.parse_args()
    extract(a) if a.cmd == "extract" else probe(a)


if __name__ == "__main__":
    main()
