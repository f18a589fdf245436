#!/bin/sh
# Rebuilds DejaVuSans-subset.ttf, the font capsearch embeds to draw text in its PNG plots
# (plotters' ab_glyph backend needs a TrueType font; CI machines may have none installed).
# Source: DejaVu Sans 2.37 (Debian package fonts-dejavu-core), licence in LICENSE-DejaVu.txt.
# The subset keeps ASCII, Latin-1 and a few typographic symbols (22 KiB instead of 742 KiB).
# Needs fonttools: python3 -m venv /tmp/ft && /tmp/ft/bin/pip install fonttools
set -eu
PYFTSUBSET=${PYFTSUBSET:-pyftsubset}
"$PYFTSUBSET" /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  --unicodes="U+0020-007E,U+00A0-00FF,U+2013-2014,U+2018-201D,U+2022,U+2026,U+2212,U+00D7,U+03C3,U+2264,U+2265,U+2248" \
  --layout-features='kern' --no-hinting --desubroutinize \
  --output-file="$(dirname "$0")/DejaVuSans-subset.ttf"
