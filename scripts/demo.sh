#!/usr/bin/env bash
# Builds txm and runs its demo, from a fresh Debian 12 machine (as root):
#
#   bash scripts/demo.sh [--url URL]
#
# Installs the build dependencies that are missing (apt-get update only if something must be
# installed), configures and builds build/, runs `build/tools/txm demo` (an embedded SQLite file
# in a fresh temporary directory unless --url names a server) and exits with its status.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. scripts/lib.sh

# All three client libraries, so every driver is built.
txm_need_pkgs meson ninja-build pkg-config gcc libc6-dev libsqlite3-dev libpq-dev libmariadb-dev

if [ ! -f build/build.ninja ]; then
    [ -d build/meson-private ] && rm -rf build # a setup that failed half-way
    meson setup build >&2
fi
ninja -C build tools/txm >&2
exec build/tools/txm demo "$@"
