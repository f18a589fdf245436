#!/usr/bin/env bash
# Peak resident memory (VmHWM) of `capsearch search` and `capsearch serve` with a model, at f32 and f16.
#
#   bash bench/memory.sh MODEL_DIR IMAGE [CAPSEARCH]
#
# `search`: one image searched against an embedded index of that image (index built first, not
# measured). `serve`: the server started, one POST /api/search with IMAGE answered, then VmHWM read from
# /proc/<pid>/status. Prints one Markdown row per (command, precision), and the model's file sizes.
# f16 runs twice: the first load writes the half-precision copy of the weights (model.f16.bpk, ...),
# the second loads it, which is what every later f16 run does; both are printed.
set -euo pipefail
MODEL=$1
IMAGE=$2
BIN=${3:-capsearch}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
mkdir -p "$WORK/images"
cp "$IMAGE" "$WORK/images/"
"$BIN" index --images "$WORK/images" --model "$MODEL" --index-path "$WORK/index" >/dev/null 2>&1

peak_search() {
  /usr/bin/time -f '%M' "$BIN" search "$IMAGE" --model "$MODEL" --index-path "$WORK/index" \
    --precision "$1" 2>&1 >/dev/null | tail -1
}

peak_serve() {
  "$BIN" serve --model "$MODEL" --index-path "$WORK/index" --image-root "$WORK/images" \
    --addr 127.0.0.1:0 --precision "$1" >"$WORK/serve.out" 2>/dev/null &
  PID=$!
  for _ in $(seq 1 600); do
    grep -q "serving on" "$WORK/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  URL=$(sed -n 's/.*serving on \(http[^ ]*\).*/\1/p' "$WORK/serve.out" | head -1)
  curl -sf -F "image=@$IMAGE" "${URL%/}/api/search" >/dev/null
  awk '/VmHWM/ {print $2}' "/proc/$PID/status"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}

echo "| command | precision | peak RSS |"
echo "|---|---|---:|"
for p in f32 f16 f16; do
  printf '| search | %s | %.0f MiB |\n' "$p" "$(echo "$(peak_search $p) / 1024" | bc -l)"
done
rm -f "$MODEL"/*.f16.bpk
for p in f32 f16 f16; do
  printf '| serve | %s | %.0f MiB |\n' "$p" "$(echo "$(peak_serve $p) / 1024" | bc -l)"
done
echo
echo "model files:"
ls -l "$MODEL" | awk 'NR > 1 {printf "  %s %.1f MiB\n", $9, $5 / 1048576}'
