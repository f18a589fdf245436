#!/usr/bin/env bash
# Where a training step of the default `shapes` model spends its time, op by op, at batch 8 and 64
# (issue 15, item 1). Needs `perf` (Debian: apt-get install linux-perf) and a built capsearch.
#
#   bash bench/profile-train.sh [OUT_DIR]        # default OUT_DIR: target/profile-train
#
# For each batch size it runs `capsearch bench train --steps N --batch B` under
# `perf record --call-graph dwarf` twice: with RAYON_NUM_THREADS=1 (every op's stack is whole, so
# the table attributes ops cleanly) and with the default threads (what `bench train` measures;
# rayon workers' samples are attributed to the op the main thread was in). bench/profile_train.py
# turns `perf script` into the share of CPU samples per op; OUT_DIR/summary.txt collects them.
# Set CAPSEARCH to pick the binary (default: $CARGO_TARGET_DIR or target, debug profile).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-target/profile-train}
bin=${CAPSEARCH:-${CARGO_TARGET_DIR:-target}/debug/capsearch}
[ -x "$bin" ] || { echo "no capsearch at $bin: cargo build --bin capsearch, or set CAPSEARCH" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
if [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -gt 1 ]; then
    echo -1 > /proc/sys/kernel/perf_event_paranoid 2>/dev/null ||
        echo "perf_event_paranoid > 1 and not settable: perf may refuse; run as root" >&2
fi
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
for threads in 1 default; do
    for batch in 8 64; do
        steps=$([ "$batch" -le 8 ] && echo 40 || echo 12)
        tag="b$batch-threads-$threads"
        echo "== batch $batch, rayon threads: $threads, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$summary"
        env $([ "$threads" = default ] || echo RAYON_NUM_THREADS=$threads) \
            perf record -q -F 499 --call-graph dwarf,32768 -o "$out/$tag.data" -- \
            "$bin" bench train --steps "$steps" --batch "$batch" | tee -a "$summary"
        perf script -i "$out/$tag.data" -F comm,tid,time,period,ip,sym 2>/dev/null |
            python3 "$here/profile_train.py" | tee -a "$summary"
        echo | tee -a "$summary"
    done
done
echo "wrote $summary"
