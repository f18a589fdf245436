#!/usr/bin/env bash
# The whole GPU check for capsearch, in one script (about 10 minutes on a CUDA machine):
#   1. build capsearch with `--features cuda` (release),
#   2. run the tests of the CUDA path (the model on the GPU agrees with the CPU: loss, gradients
#      step, greedy captions; then a short real training run and captioning through the binary,
#      and, on a machine with two GPUs or more, a short data-parallel run on two of them),
#   3. run `capsearch bench train` and `bench caption` on the GPU, next to the CPU figures.
#
# Usage: bash bench/gpu-check.sh [OUT_DIR]      (default: reports/gpu)
#
# Needs: an NVIDIA GPU with its driver (the CUDA runtime libraries are loaded at run time).
# Building needs LLVM 23: burn's CUDA path pulls `tracel-llvm-bundler`, whose build script
# downloads it, or takes one already installed (see bench/llvm-from-pip.sh for a machine whose
# only network is the package registries).
#
# On a GPU machine without Rust or network, build elsewhere and pass the binaries:
#   CAPSEARCH_BIN=path/to/capsearch CAPSEARCH_TEST_BIN=path/to/capsearch-lib-tests \
#     bash bench/gpu-check.sh OUT_DIR
# where the test binary is `cargo test --features cuda --lib --no-run`'s output.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/gpu}
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capsearch/target-cuda}
BIN=${CAPSEARCH_BIN:-$CARGO_TARGET_DIR/release/capsearch}
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
if [ -z "${CAPSEARCH_BIN:-}" ]; then
  step "build with --features cuda"
  time cargo build --release --features cuda --bin capsearch
fi

step "tests of the CUDA path"
if [ -n "${CAPSEARCH_TEST_BIN:-}" ]; then
  "$CAPSEARCH_TEST_BIN" cuda_ --nocapture 2>&1 | tee "$OUT/tests.txt"
else
  cargo test --release --features cuda --lib cuda_ -- --nocapture 2>&1 | tee "$OUT/tests.txt"
fi

step "train and caption on the GPU through the binary"
DATA=$OUT/shapes
"$BIN" dataset shapes --out "$DATA" --images 400 --seed 3
"$BIN" train --config configs/shapes.toml --dataset "$DATA/dataset_shapes.json" \
  --out "$OUT/run" --device cuda --epochs 2 --no-tui 2>&1 | tail -5 | tee "$OUT/train.txt"
"$BIN" caption --model "$OUT/run" --device cuda "$DATA/images" --json > "$OUT/captions.jsonl"
head -3 "$OUT/captions.jsonl"

GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
if [ "$GPUS" -ge 2 ]; then
  step "data-parallel training on two GPUs"
  "$BIN" train --config configs/shapes.toml --dataset "$DATA/dataset_shapes.json" \
    --out "$OUT/run-2gpu" --devices cuda:0,cuda:1 --epochs 2 --no-tui 2>&1 | tail -5 | tee "$OUT/train-2gpu.txt"
else
  step "data-parallel training skipped: $GPUS GPU (needs two)"
fi

step "benchmarks, GPU then CPU"
"$BIN" bench train --device cuda --no-baselines --out "$OUT/cuda" | tee "$OUT/bench-cuda.md"
"$BIN" bench caption --device cuda --no-baselines --out "$OUT/cuda" | tee -a "$OUT/bench-cuda.md"
"$BIN" bench train --no-baselines --out "$OUT/cpu" | tee "$OUT/bench-cpu.md"
step "done: figures in $OUT"
