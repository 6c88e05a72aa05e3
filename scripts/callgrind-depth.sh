#!/usr/bin/env bash
# Instructions txm itself executes per nesting level, by depth (docs/bench.md, "depth").
# Builds bench/depth_probe.c against BUILD's libtxm.so, runs one transaction of each depth on
# sqlite::memory: under callgrind (only that transaction is collected) and prints, per depth,
# the instructions of libtxm.so and of libsqlite3 per level. txm's column must stay flat.
#   scripts/callgrind-depth.sh [BUILD] [DEPTHS...]     (defaults: build-rel 10 100 1000 10000)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-rel}
shift || true
depths=("$@")
[ ${#depths[@]} -gt 0 ] || depths=(10 100 1000 10000)
command -v valgrind >/dev/null || { echo "callgrind-depth: valgrind is not installed" >&2; exit 1; }
[ -e "$build/libtxm.so" ] || { echo "callgrind-depth: $build/libtxm.so not found (build it first)" >&2; exit 1; }
lib=$(cd "$build" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -I"$here/include" -I"$lib" "$here/bench/depth_probe.c" -o "$tmp/probe" -L"$lib" -ltxm -Wl,-rpath,"$lib"
printf "%8s %14s %14s %14s %14s\n" depth "txm Ir/level" "sqlite Ir/lvl" "other Ir/lvl" "total Ir/lvl"
for d in "${depths[@]}"; do
    valgrind --tool=callgrind --toggle-collect=measured --callgrind-out-file="$tmp/cg.$d" "$tmp/probe" "$d" \
        >/dev/null 2>&1
    callgrind_annotate --inclusive=no "$tmp/cg.$d" 2>/dev/null | awk -v d="$d" '
        /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
        /libtxm\.so/ { gsub(",", "", $1); txm += $1 }
        /libsqlite3/ { gsub(",", "", $1); sq += $1 }
        END { printf "%8d %14.0f %14.0f %14.0f %14.0f\n", d, txm / d, sq / d, (total - txm - sq) / d, total / d }'
done
