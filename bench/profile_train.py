"""Summarise `perf script` output of `capsearch bench train --steps N --batch B` by operation.

Reads perf script text (fields comm,tid,time,period,ip,sym, with call chains) on stdin and prints each
category's share of the CPU time sampled in the training steps (setup excluded). Used by
bench/profile-train.sh; see there.
"""

import re
import sys
from collections import Counter

BACKWARD = re.compile(r"::(\w+) as burn_autodiff::ops::backward::Backward")
ALLOC = re.compile(
    r"^(malloc|_int_malloc|_int_free|cfree|free|__libc_free|__GI___libc_free|__GI___libc_malloc|"
    r"unlink_chunk|malloc_consolidate|_int_realloc|realloc|sysmalloc|__memmove\w*|__memset\w*|"
    r"__memcpy\w*|memcpy|memset|__mmap|__munmap|alloc::alloc::\w+|burn_flex::tensor::copy_2d_tiled)"
)
KERNEL_FAULT = re.compile(r"page_fault|handle_mm_fault|clear_page|do_anonymous_page|__munmap|unmap|mmap")
SYNC = re.compile(
    r"rayon_core::sleep|rayon_core::registry::WorkerThread::wait_until|crossbeam|sched_yield|"
    r"futex|__lll_lock|pthread_cond|finish_task_switch|schedule|rayon_core::latch"
)

# capsearch's own ops (src/model/ops/): module, function → category, read off any thread's stack
CUSTOM_OP = re.compile(r"capsearch::model::ops::(\w+)::(\w+)")
CUSTOM_NAMES = {
    ("conv", "conv_forward"): "conv fwd",
    ("conv", "im2col"): "conv fwd",
    ("conv", "weight_grad"): "conv bwd, weight grad",
    ("conv", "input_grad"): "conv bwd, input grad",
    ("conv", "col2im"): "conv bwd, input grad",
    ("batch_norm", "statistics"): "batch-norm + relu fwd",
    ("batch_norm", "normalise_relu"): "batch-norm + relu fwd",
    ("batch_norm", "Parts"): "batch-norm + relu bwd",
    ("lstm", "forward"): "LSTM op fwd",
    ("lstm", "backward_gates"): "LSTM op bwd",
    ("lstm", "wh_grad"): "LSTM op bwd",
}
CUSTOM_BWD = {"ConvBackward": "conv bwd, other", "NormBackward": "batch-norm + relu bwd",
              "LstmBackward": "LSTM op bwd"}


def custom_op(text):
    """The category of a sample inside one of capsearch's custom ops (its innermost named
    function), else None."""
    for m in CUSTOM_OP.finditer(text):
        key = (m.group(1), m.group(2))
        if key in CUSTOM_NAMES:
            return CUSTOM_NAMES[key]
    return None


BWD_NAMES = {
    "BatchNormTrainOps": "batch-norm bwd",
    "Matmul": "matmul bwd (LSTM, projections)",
    "MaxPool2D": "max-pool / relu / avg-pool bwd",
    "AdaptiveAvgPool2D": "max-pool / relu / avg-pool bwd",
    "Relu": "max-pool / relu / avg-pool bwd",
}
GATE_BWD = {"Tanh", "Sigmoid", "Mul", "Add", "Sub", "Index", "SliceAssign", "Cat", "ReshapeDim",
            "SwapDim", "PermuteDim", "Neg", "MulScalar", "AddScalar"}
LOSS_BWD = {"Exp", "Log", "LogSoftmax", "Gather", "Sum", "SumDim", "Mean", "MeanDim", "Max",
            "MaxDim", "Div", "DivScalar", "Select", "SelectAssign", "Powf", "Sqrt", "Clamp"}


# The training step's own frames: the benchmark's step closure runs on a rayon worker (`on_pool`),
# so the thread whose stack holds it is the one that starts every op, whichever thread that is.
STEP = "train_throughput"


def classify(frames, by_op=False):
    """frames: symbol names, leaf first; `by_op`: the op, even for allocation and copies."""
    leaf = frames[0] if frames else ""
    text = "\n".join(frames)
    if STEP not in text:
        return None  # setup, argument parsing, exit (main thread)
    if not by_op and (ALLOC.search(leaf) or KERNEL_FAULT.search(leaf)):
        return "allocation / memcpy / layout copies"
    if SYNC.search(leaf) or SYNC.search("\n".join(frames[:4])):
        return "thread sync (rayon, scheduler)"
    mine = custom_op(text)
    if mine:
        return mine
    for f in frames:
        m = BACKWARD.search(f)
        if not m:
            continue
        name = m.group(1)
        if name in CUSTOM_BWD:
            return CUSTOM_BWD[name]
        if name.startswith("Conv2D"):
            if "conv_transpose" in text:
                return "conv bwd, input grad (conv_transpose)"
            if "conv2d_f32" in text or "conv3d" in text:
                return "conv bwd, weight grad (conv2d over the batch)"
            return "conv bwd, bias grad / other"
        if name in BWD_NAMES:
            return BWD_NAMES[name]
        if name in GATE_BWD:
            return "LSTM gate maths bwd (sigmoid/tanh/mul/add/slice)"
        if name in LOSS_BWD:
            return "softmax / CE / reductions bwd"
        return "other bwd (%s)" % name
    if re.search(r"burn_optim|optim::|Adam|GradientsParams|clip", text):
        return "optimizer (Adam, grad clipping)"
    if re.search(r"AutodiffClient>::backward|execute_steps|GraphTraversal|Gradients::register", text):
        return "autograd bookkeeping"
    if re.search(r"Conv2d::forward|conv2d_f32|conv3d_f32|burn_flex::ops::conv::", text):
        return "conv fwd"
    if "BatchNorm" in text:
        return "batch-norm fwd"
    if "FusedLstm" in text:
        if "matmul" in text:
            return "matmul fwd (LSTM)"
        return "LSTM gate maths fwd"
    if re.search(r"MaxPool|max_pool|adaptive_avg|relu", text):
        return "max-pool / relu / avg-pool fwd"
    if "float_matmul" in text or "matmul_gemm" in text:
        return "matmul fwd (projections)"
    if "Captioner::loss" in text:
        return "softmax / CE / embeddings fwd"
    if "sampler" in text.lower() or "train_batch" in text:
        return None
    return "other (%s)" % leaf[:60]


def worker_class(frames):
    """A sample on a rayon worker: its stack names the kernel, not the op that started it."""
    text = "\n".join(frames)
    leaf = frames[0] if frames else ""
    if ALLOC.search(leaf) or KERNEL_FAULT.search(leaf):
        return "allocation / memcpy / layout copies"
    mine = custom_op(text)
    if mine:
        return mine
    if "conv_transpose" in text:
        return "conv bwd, input grad (conv_transpose)"
    if "burn_flex::ops::conv::" in text:
        return "CONV"  # forward or weight grad: the main thread's last conv sample says which
    if "matmul" in text or "gemm" in text:
        return "MATMUL"
    if SYNC.search("\n".join(frames[:4])) or "rayon_core" in leaf:
        return "thread sync (rayon, scheduler)"
    if "rayon" in text:
        return "ELEMENTWISE"  # burn-flex's parallel element-wise kernels
    return "other on a rayon worker (%s)" % leaf[:50]


def main():
    counts = Counter()
    alloc_by_op = Counter()
    setup = 0
    main_tid = None
    last_main = {}  # kernel kind -> (time, class) of the main thread's latest sample
    header = None
    frames = []

    def flush():
        nonlocal setup, main_tid
        if header is None or not frames:
            return
        tid, t = header
        text = "\n".join(frames)
        on_main = "lang_start" in text or "capsearch::main" in text
        if on_main:
            main_tid = tid
        if STEP in text or tid == main_tid or on_main:
            c = classify(frames)
            if c is None:
                setup += 1
                return
            for kind in ("conv", "matmul"):
                if c.startswith(kind) or (kind == "matmul" and "matmul" in c):
                    last_main[kind] = (t, c)
            if not c.startswith(("allocation", "thread sync")):
                last_main["elementwise"] = (t, c)
            counts[c] += 1
            if c.startswith("allocation"):
                alloc_by_op[classify(frames, by_op=True)] += 1
            return
        c = worker_class(frames)
        if c in ("CONV", "MATMUL", "ELEMENTWISE"):
            kind = c.lower()
            prev = last_main.get(kind)
            # a worker runs part of the op the main thread is in: its latest sample names it
            if prev and t - prev[0] < (0.05 if kind != "elementwise" else 0.01):
                c = prev[1]
            else:
                c = "%s on a rayon worker (op unknown)" % kind
        counts[c] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            header, frames = None, []
            continue
        if line.startswith("\t") or line.startswith(" "):
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", parts[1]).replace(" (inlined)", "")
                frames.append(sym)
        else:
            # "comm tid time: period"
            f = line.split()
            try:
                header = (int(f[1]), float(f[2].rstrip(":")))
            except (IndexError, ValueError):
                header = None
            frames = []
    flush()
    total = sum(counts.values())
    print("samples in the training steps: %d (setup, outside them: %d)" % (total, setup))
    print("| category | share |")
    print("|---|---:|")
    for name, n in counts.most_common():
        print("| %s | %.1f%% |" % (name, 100.0 * n / max(total, 1)))
    print()
    print("allocation / memcpy / layout copies on the step's thread, by the op that did them:")
    print("| op | share of all samples |")
    print("|---|---:|")
    for name, n in alloc_by_op.most_common(8):
        print("| %s | %.1f%% |" % (name, 100.0 * n / max(total, 1)))


if __name__ == "__main__":
    main()
