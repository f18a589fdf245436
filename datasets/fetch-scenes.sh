#!/bin/sh
# Fetches the assets of `capsearch dataset scenes` from Debian's archive into datasets/assets/
# (git-ignored): the photographic stamps of tuxpaint-stamps-default (GPL-2.0+) and the setting
# photos of the wallpaper packages named in datasets/scenes/settings.tsv (CC-BY/CC-BY-SA/CC0/GPL;
# see each package's copyright file under datasets/assets/<package>/usr/share/doc/). Nothing
# downloaded here enters the repository.
#
# Usage: datasets/fetch-scenes.sh [ASSETS_DIR]   (default: datasets/assets next to this script)
#
# Needs apt-get (with Debian bookworm or newer sources; run `apt-get update` first if the package
# lists are empty) and dpkg-deb. No root is needed: `apt-get download` only fetches .deb files.
# Without apt-get: get the .deb files of the packages below any other way and unpack each with
# `dpkg-deb -x FILE.deb ASSETS_DIR/PACKAGE` (or `ar x` + `tar xf data.tar.*`), or give the folders
# directly: `capsearch dataset scenes --stamps DIR/usr/share/tuxpaint/stamps --settings DIR`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
assets=${1:-"$here/assets"}
packages="tuxpaint-stamps-default lomiri-wallpapers-16.04 mate-backgrounds plasma-workspace-wallpapers"

for tool in apt-get dpkg-deb; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fetch-scenes.sh: $tool is not installed." >&2
        echo "  On Debian/Ubuntu: it comes with apt (apt-get) and dpkg (dpkg-deb)." >&2
        echo "  Elsewhere: download the .deb files of: $packages" >&2
        echo "  from Debian's package archive, unpack each into $assets/PACKAGE (dpkg-deb -x, or ar x + tar)," >&2
        echo "  or run capsearch dataset scenes --stamps DIR --settings DIR with folders you already have." >&2
        exit 2
    fi
done

mkdir -p "$assets/debs"
cd "$assets/debs"
for p in $packages; do
    if ! ls "${p}"_*.deb >/dev/null 2>&1; then
        if ! apt-get download "$p"; then
            echo "fetch-scenes.sh: apt-get could not download $p; run 'apt-get update' (as root) and retry," >&2
            echo "  or check that your apt sources include Debian bookworm (main)." >&2
            exit 2
        fi
    fi
done
for p in $packages; do
    if [ ! -d "$assets/$p" ]; then
        dpkg-deb -x "$(ls "${p}"_*.deb | head -n 1)" "$assets/$p.tmp"
        mv "$assets/$p.tmp" "$assets/$p"
    fi
done
echo "assets ready in $assets; now run: capsearch dataset scenes"
