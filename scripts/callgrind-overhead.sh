#!/usr/bin/env bash
# txm's own instructions per transaction on SQLite :memory:, counted by callgrind (exact and
# repeatable on a busy machine, unlike wall time).
#
#   scripts/callgrind-overhead.sh [BUILD] [--shape LIST] [--iterations N] [--keep DIR] [--max-own N]
#
# For each shape (default insert1,nested-only,nested3) it runs `txm-bench --group overhead --engine
# sqlite-mem --impl txm` and `--impl floor` (prepared raw sqlite3 calls, the minimal statements) under
# valgrind --tool=callgrind with a fixed --iterations N (default 5000), and reads from callgrind's
# output the inclusive instruction count of the bench's per-transaction function (txm_iter, raw_iter)
# at its timed call site only: that site runs exactly N transactions, after the warm-up prepared
# every statement, so the count per transaction is exact and the same on every run. Prints per shape:
#
#   shape         txm Ir/tx  floor Ir/tx   txm own  txm/floor
#   insert1           12345        11100      1245      1.112
#
# "txm own" = txm minus the floor: the instructions txm adds to a hand-written prepared loop on the
# same SQLite library. BUILD defaults to build-rel (a release tree: meson setup build-rel
# -Dbuildtype=release). --keep DIR keeps the callgrind files (cg-SHAPE-SUBJECT.out) for a
# per-function breakdown:
#   callgrind_annotate --inclusive=yes DIR/cg-insert1-txm.out | head -40
# --max-own N: exit status 1 when txm's own instructions per transaction exceed N on a shape.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-rel shapes=insert1,nested-only,nested3 iters=5000 keep= max_own=
while [ $# -gt 0 ]; do
    case "$1" in
    --shape) shapes=$2; shift 2 ;;
    --iterations) iters=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --max-own) max_own=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
case "$iters" in '' | *[!0-9]*) echo "--iterations wants a positive integer" >&2; exit 2 ;; esac
[ "$iters" -gt 0 ] || { echo "--iterations wants a positive integer" >&2; exit 2; }
bench=$build/bench/txm-bench
[ -x "$bench" ] || { echo "no $bench: build it first (meson setup $build -Dbuildtype=release && ninja -C $build)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${keep:-$work}
mkdir -p "$out"

# Inclusive Ir of every call site of function $2 whose call count is exactly $3 (the timed loop),
# divided by $3. --compress-strings=no keeps function names on every cfn= line.
per_tx() {
    awk -v fn="$2" -v n="$3" '
        /^cfn=/ { cur = substr($0, 5); next }
        /^calls=/ { split(substr($0, 7), a, " "); pending = (cur == fn && a[1] == n); next }
        pending { ir += $2; found = 1; pending = 0; next }
        END { if (!found) exit 1; printf "%.0f\n", ir / n }' "$1"
}

measure() { # shape subject function -> Ir per transaction
    local f=$out/cg-$1-$2.out
    valgrind --tool=callgrind --callgrind-out-file="$f" --compress-strings=no --compress-pos=no \
        "$bench" --group overhead --engine sqlite-mem --shape "$1" --impl "$2" --reps 1 \
        --iterations "$iters" >"$out/bench-$1-$2.txt" 2>"$out/valgrind-$1-$2.txt" ||
        { cat "$out/valgrind-$1-$2.txt" "$out/bench-$1-$2.txt" >&2; echo "txm-bench failed under valgrind" >&2; exit 1; }
    per_tx "$f" "$3" "$iters" ||
        { echo "no call of $3 with $iters calls in $f (did the bench's loop change?)" >&2; exit 1; }
}

status=0
printf '# callgrind, SQLite :memory:, %s transactions per subject, instructions (Ir) per transaction\n' "$iters"
printf '%-14s %11s %12s %9s %10s\n' shape "txm Ir/tx" "floor Ir/tx" "txm own" "txm/floor"
IFS=, read -r -a list <<<"$shapes"
for s in "${list[@]}"; do
    t=$(measure "$s" txm txm_iter)
    f=$(measure "$s" floor raw_iter)
    printf '%-14s %11d %12d %9d %10.3f\n' "$s" "$t" "$f" $((t - f)) "$(awk -v a="$t" -v b="$f" 'BEGIN { print a / b }')"
    if [ -n "$max_own" ] && [ $((t - f)) -gt "$max_own" ]; then
        echo "  $s: txm's own instructions per transaction $((t - f)) > --max-own $max_own" >&2
        status=1
    fi
done
[ -z "$keep" ] || echo "# callgrind files in $keep (callgrind_annotate --inclusive=yes $keep/cg-SHAPE-txm.out)"
exit $status
