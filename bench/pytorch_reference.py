"""Baseline for `capsearch bench train`: the `shapes` model in PyTorch on CPU.

The same layers and sizes as capsearch's captioner (src/model/captioner.rs, encoder.rs, lstm.rs):
small CNN (conv 3x3 same, no bias -> batch norm -> ReLU -> max-pool 2x2, channels width, 2w, 4w,
4w...), adaptive average pool to grid x grid, flattened; image projection We/be fed as the first
LSTM input, then START and the words; one fused LSTM matrix [1 + D + H, 4H] (gates i, f, o, g);
dropout 0.2 on LSTM inputs and outputs; output layer Wd/bd; masked cross-entropy; Adam, gradient
norm clipped to 5. Batches: `batch` images x `captions` captions of `seq` words (+1 step).

Measures training images/s (forward, backward, Adam step) and greedy captioning images/s
(CNN + 20 decoding steps, batched), with torch.set_num_threads(threads).

Prints one JSON line, or {"skipped": why} when torch cannot be imported.
"""

import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # ImportError, or a wheel whose CUDA libraries are missing
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(json.dumps({"skipped": "torch cannot be imported by %s (%s)" % (sys.executable, msg[:200])}))
    sys.exit(0)


class Captioner(nn.Module):
    def __init__(self, a):
        super().__init__()
        layers, c_in = [], 3
        for i in range(a.depth):
            c_out = a.width << min(i, 2)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(a.grid), nn.Flatten()]
        self.cnn = nn.Sequential(*layers)
        f, d, h, v = c_in * a.grid * a.grid, a.embed, a.hidden, a.vocab
        self.h = h
        self.we = nn.Linear(f, d)
        self.ws = nn.Embedding(v, d)
        self.wlstm = nn.Parameter(torch.empty(1 + d + h, 4 * h).uniform_(-(d + h) ** -0.5, (d + h) ** -0.5))
        self.wd = nn.Linear(h, v)
        self.drop = nn.Dropout(0.2)

    def step(self, x, h, c):
        hin = torch.cat([torch.ones(x.shape[0], 1), x, h], 1)
        g = hin @ self.wlstm
        i, f, o = torch.sigmoid(g[:, :3 * self.h]).chunk(3, 1)
        c = i * torch.tanh(g[:, 3 * self.h:]) + f * c
        return o * torch.tanh(c), c

    def forward(self, feats, inputs):
        b, t = inputs.shape
        x = torch.cat([self.we(feats).unsqueeze(1), self.ws(inputs)], 1)
        x = self.drop(x)
        h = c = torch.zeros(b, self.h)
        outs = []
        for s in range(t + 1):
            h, c = self.step(x[:, s], h, c)
            outs.append(h)
        hs = self.drop(torch.stack(outs[1:], 1))
        return self.wd(hs)

    @torch.no_grad()
    def greedy(self, images, steps=20):
        feats = self.cnn(images)
        b = feats.shape[0]
        h = c = torch.zeros(b, self.h)
        h, c = self.step(self.we(feats), h, c)
        word = torch.zeros(b, dtype=torch.long)
        out = []
        for _ in range(steps):
            h, c = self.step(self.ws(word), h, c)
            word = F.log_softmax(self.wd(h), 1).argmax(1)
            out.append(word)
        return torch.stack(out, 1)


def batch(a, b, g):
    n = b * a.captions
    images = torch.randn(b, 3, a.image, a.image, generator=g)
    inputs = torch.randint(1, a.vocab, (n, a.seq + 1), generator=g)
    inputs[:, 0] = 0
    targets = torch.roll(inputs, -1, 1)
    targets[:, -1] = 0
    rows = torch.arange(n) // a.captions
    return images, rows, inputs, targets


def train_ips(a, b, warmup, runs):
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(1)
    model = Captioner(a).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    images, rows, inputs, targets = batch(a, b, g)
    out = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        feats = model.cnn(images)[rows]
        logits = model(feats, inputs)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if i >= warmup:
            out.append(b / (time.perf_counter() - t))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    for k, v in [("image", 64), ("width", 16), ("depth", 4), ("grid", 4), ("embed", 128),
                 ("hidden", 256), ("vocab", 40), ("batch", 32), ("captions", 5), ("seq", 16),
                 ("warmup", 2), ("runs", 8), ("threads", 2), ("sweep-runs", 4)]:
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--sweep", default="8,16,32,64")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    result["train_images_per_s"] = train_ips(a, a.batch, a.warmup, a.runs)
    for b in [int(x) for x in a.sweep.split(",") if x]:
        result["sweep_%d" % b] = train_ips(a, b, 1, a.sweep_runs)
    model = Captioner(a).eval()
    images = torch.randn(a.batch, 3, a.image, a.image)
    ips = []
    for i in range(a.warmup + a.runs):
        t = time.perf_counter()
        model.greedy(images)
        if i >= a.warmup:
            ips.append(a.batch / (time.perf_counter() - t))
    result["greedy_images_per_s"] = ips
    print(json.dumps(result))


if __name__ == "__main__":
    main()
