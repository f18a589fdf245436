"""Baseline for `capsearch bench caption`: NeuralTalk's numpy predict(), timed per image.

The generation code is NeuralTalk's (imagernn/lstm_generator.py, LSTMGenerator.predict), as ported
in tests/fixtures/neuraltalk/neuraltalk_reference.py (the one copy, which also produced the test
fixtures' expected.json; `capsearch bench` writes it beside this script): float64, one image at a
time, beam search with Python lists. Weights and features are random (uniform, NeuralTalk's
initialisation scale), so every caption runs the full 20 steps, as in the capsearch measurement.

Prints one JSON line: {"numpy": version, "greedy_ms": [...], "beam5_ms": [...]}, or
{"skipped": why} when numpy is missing.
"""

import argparse
import json
import os
import sys
import time

try:
    import numpy as np
except ImportError:
    print(json.dumps({"skipped": "numpy is not installed for %s (pip install numpy)" % sys.executable}))
    sys.exit(0)

# Beside this script when `capsearch bench` runs it; in the repository, in the fixtures folder.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "neuraltalk"))
from neuraltalk_reference import predict  # noqa: E402


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
            predict(feat, model, True, beam, with_margin=False)
            if i >= a.warmup:
                out.append((time.perf_counter() - t) * 1e3)
        return out

    greedy = timed(1, a.greedy_runs)
    beam = timed(5, a.beam_runs)
    print(json.dumps({"numpy": np.__version__, "greedy_ms": greedy, "beam5_ms": beam}))


if __name__ == "__main__":
    main()
