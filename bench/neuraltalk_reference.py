"""Baseline for `capsearch bench caption`: NeuralTalk's numpy predict(), timed per image.

The generation code is NeuralTalk's (imagernn/lstm_generator.py, LSTMGenerator.predict), as ported
in tests/fixtures/neuraltalk/neuraltalk_reference.py: float64, one image at a time, beam search
with Python lists. Weights and features are random (uniform, NeuralTalk's initialisation scale),
so every caption runs the full 20 steps, as in the capsearch measurement.

Prints one JSON line: {"numpy": version, "greedy_ms": [...], "beam5_ms": [...]}, or
{"skipped": why} when numpy is missing.
"""

import argparse
import json
import sys
import time

try:
    import numpy as np
except ImportError:
    print(json.dumps({"skipped": "numpy is not installed for %s (pip install numpy)" % sys.executable}))
    sys.exit(0)

MAX_STEPS = 20


def lstm_tick(x, h_prev, c_prev, model, tanhc):
    wlstm, wd, bd = model["WLSTM"], model["Wd"], model["bd"]
    d = wd.shape[0]
    hin = np.zeros(wlstm.shape[0])
    hin[0] = 1.0
    hin[1:1 + x.shape[0]] = x
    hin[1 + x.shape[0]:] = h_prev
    ifog = hin.dot(wlstm)
    ifogf = np.empty_like(ifog)
    ifogf[:3 * d] = 1.0 / (1.0 + np.exp(-ifog[:3 * d]))
    ifogf[3 * d:] = np.tanh(ifog[3 * d:])
    c = ifogf[:d] * ifogf[3 * d:] + ifogf[d:2 * d] * c_prev
    h = ifogf[2 * d:3 * d] * (np.tanh(c) if tanhc else c)
    y = h.dot(wd) + bd.ravel()
    return y, h, c


def word_scores(y):
    e = np.exp(y - np.amax(y))
    p = e / np.sum(e)
    return np.log(1e-20 + p)


def predict(feat, model, tanhc, beam_size):
    """NeuralTalk's predict(): [(logprob, [indices])], best first."""
    xi = (feat.reshape(1, -1).dot(model["We"]) + model["be"]).ravel()
    d = model["Wd"].shape[0]
    ws = model["Ws"]
    _, h, c = lstm_tick(xi, np.zeros(d), np.zeros(d), model, tanhc)
    if beam_size > 1:
        beams = [(0.0, [], h, c)]
        for _ in range(MAX_STEPS):
            candidates = []
            for score, ixs, bh, bc in beams:
                if ixs and ixs[-1] == 0:
                    candidates.append((score, ixs, bh, bc))
                    continue
                prev = ixs[-1] if ixs else 0
                y, h1, c1 = lstm_tick(ws[prev], bh, bc, model, tanhc)
                s = word_scores(y)
                top = np.argsort(-s)
                for i in range(beam_size):
                    w = int(top[i])
                    candidates.append((score + s[w], ixs + [w], h1, c1))
            candidates.sort(key=lambda b: (b[0], b[1]), reverse=True)
            beams = candidates[:beam_size]
        return [(b[0], b[1]) for b in beams]
    prev, ixs, logprob = 0, [], 0.0
    while True:
        y, h, c = lstm_tick(ws[prev], h, c, model, tanhc)
        s = word_scores(y)
        prev = int(np.argmax(s))
        ixs.append(prev)
        logprob += s[prev]
        if prev == 0 or len(ixs) >= MAX_STEPS:
            break
    return [(logprob, ixs)]


def random_model(f, d, h, v, rng):
    # NeuralTalk's initw: uniform in +-1/sqrt(fan-in)... scaled like capsearch's random init.
    def u(rows, cols, fan):
        b = 1.0 / np.sqrt(fan)
        return rng.uniform(-b, b, size=(rows, cols))
    return {
        "We": u(f, d, f),
        "be": np.zeros((1, d)),
        "Ws": rng.normal(0.0, 0.1, size=(v, d)),
        "WLSTM": u(1 + d + h, 4 * h, d + h),
        "Wd": u(h, v, h),
        "bd": np.zeros((1, v)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--feature", type=int, default=4096)
    ap.add_argument("--embed", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=2538)
    ap.add_argument("--greedy-runs", type=int, default=20)
    ap.add_argument("--beam-runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    if a.embed != a.hidden:
        # NeuralTalk's lstm_tick sizes the hidden state from Wd; it needs D == H
        print(json.dumps({"skipped": "NeuralTalk needs embed == hidden"}))
        return
    rng = np.random.default_rng(0)
    model = random_model(a.feature, a.embed, a.hidden, a.vocab, rng)

    def timed(beam, runs):
        out = []
        for i in range(a.warmup + runs):
            feat = rng.uniform(0.0, 1.0, size=a.feature)
            t = time.perf_counter()
            predict(feat, model, True, beam)
            if i >= a.warmup:
                out.append((time.perf_counter() - t) * 1e3)
        return out

    greedy = timed(1, a.greedy_runs)
    beam = timed(5, a.beam_runs)
    print(json.dumps({"numpy": np.__version__, "greedy_ms": greedy, "beam5_ms": beam}))


if __name__ == "__main__":
    main()
