#!/bin/bash
# `txm-bench --quick` as a test (docs/bench.md, "`txm bench`"): the smoke run checks counters,
# never times, and its exit status says whether they held.
#   1. `txm-bench --quick --engine ENGINES` exits 0, ran at least one check and failed none, and
#      the CSV carries the checks (metric check:*, 1 = passed);
#   2. with TXM_BENCH_BREAK_CHECKS=1 (every check expects one more than the right value) the
#      same kind of run exits 1 and prints CHECK FAILED: a wrong counter fails the run;
#   3. (sqlite only) `txm bench` in the build tree runs this build's txm-bench (TXM_BENCH_BIN
#      overrides it; naming no file is exit 127 and a message naming it); --plot draws
#      the contention group's curves when gnuplot is on PATH, and so does --plot-from with the
#      run's CSV and with ledger-group results (4 panels: engine x hot/spread, a line per design); without gnuplot on PATH the run still exits 0, says so, and writes no file.
#
# usage: quick.sh TXM-BENCH TXM ENGINES [URL-VAR]
# Exit 0 pass, 77 skip (URL-VAR unset), anything else fails.
set -u
bench=${1:?txm-bench}
txm=${2:?txm}
engines=${3:?engines}
urlvar=${4:-}
if [ -n "$urlvar" ] && [ -z "${!urlvar:-}" ]; then
    echo "skip: $urlvar is not set"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/txm-bench-test-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# ---- 1. a quick run passes its checks ------------------------------------------------------
rc=0
"$bench" --quick --engine "$engines" --csv "$tmp/q.csv" >"$tmp/q.out" 2>"$tmp/q.err" || rc=$?
grep -E '^# checks|CHECK FAILED' "$tmp/q.out"
[ "$rc" -eq 0 ] || { tail -n 30 "$tmp/q.out" "$tmp/q.err"; fail "txm-bench --quick --engine $engines exited $rc"; }
grep -Eq '^# checks +[1-9][0-9]* passed, 0 failed' "$tmp/q.out" || fail "no check ran, or one failed"
passed=$(grep -c ',check:[a-z_]*,1\.0000$' "$tmp/q.csv")
failed=$(grep -c ',check:[a-z_]*,0\.0000$' "$tmp/q.csv")
echo "CSV: $passed checks passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ] || fail "the CSV does not carry the passed checks"
# every engine asked for was measured (a silently skipped engine would pass every check)
for e in ${engines//,/ }; do
    grep -q "^overhead,$e,insert1,txm,check:round_trips_per_tx,1\.0000$" "$tmp/q.csv" ||
        fail "no round-trip check of txm on $e"
done

# ---- 2. a wrong counter fails the run --------------------------------------------------------
rc=0
TXM_BENCH_BREAK_CHECKS=1 "$bench" --quick --engine "$engines" --group overhead,contention --shape insert1 \
    --ct-writers 2 --ct-tx 10 >"$tmp/b.out" 2>&1 || rc=$?
grep -E '^# checks|CHECK FAILED' "$tmp/b.out" | head -n 5
[ "$rc" -eq 1 ] || fail "with TXM_BENCH_BREAK_CHECKS=1 txm-bench exited $rc, expected 1"
grep -q 'CHECK FAILED: overhead' "$tmp/b.out" || fail "no CHECK FAILED line for the overhead group"
grep -Eq '^# checks +0 passed, [1-9][0-9]* failed' "$tmp/b.out" || fail "the failed checks were not counted"

case ",$engines," in *,sqlite-mem,*|*,sqlite-file,*) ;; *) echo "ok"; exit 0 ;; esac

# ---- 3. `txm bench`, --plot ------------------------------------------------------------------
rc=0
"$txm" bench --quick --engine sqlite-mem --group overhead --shape insert1 >"$tmp/t.out" 2>"$tmp/t.err" || rc=$?
head -n 1 "$tmp/t.err"
[ "$rc" -eq 0 ] || { cat "$tmp/t.err"; fail "txm bench --quick exited $rc"; }
ran=$(sed -n 's/^txm bench: //p' "$tmp/t.err" | head -n 1)
[ -n "$ran" ] && [ "$(realpath "$ran")" = "$(realpath "$bench")" ] ||
    fail "txm bench ran '$ran', not this build's txm-bench ($(realpath "$bench"))"
grep -q '^== overhead | sqlite-mem' "$tmp/t.out" || fail "txm bench did not run the harness"
rc=0
TXM_BENCH_BIN=$tmp/no-such-bench "$txm" bench --quick >"$tmp/x.out" 2>&1 || rc=$?
head -n 1 "$tmp/x.out"
[ "$rc" -eq 127 ] && grep -q "no-such-bench (TXM_BENCH_BIN)" "$tmp/x.out" ||
    fail "txm bench with TXM_BENCH_BIN naming no file exited $rc without naming it"

plot_args=(--quick --engine sqlite-file --group contention --ct-writers 1,2 --ct-tx 10)
if command -v gnuplot >/dev/null; then
    rc=0
    "$bench" "${plot_args[@]}" --plot "$tmp/c.svg" --csv "$tmp/c.csv" >"$tmp/p.out" 2>&1 || rc=$?
    grep '^# plot' "$tmp/p.out"
    [ "$rc" -eq 0 ] || { tail -n 20 "$tmp/p.out"; fail "--plot exited $rc"; }
    grep -q '<svg' "$tmp/c.svg" 2>/dev/null || fail "--plot wrote no SVG"
    grep -q 'contention | sqlite-file' "$tmp/c.svg" || fail "the SVG has no contention | sqlite-file panel"
    grep -q '>default([0-9/]*)<' "$tmp/c.svg" || fail "the SVG has no line for the default policy"
    # the same curves from the CSV file, measuring nothing
    rc=0
    "$bench" --plot-from "$tmp/c.csv" --plot "$tmp/f.svg" >"$tmp/f.out" 2>&1 || rc=$?
    cat "$tmp/f.out"
    [ "$rc" -eq 0 ] || fail "--plot-from exited $rc"
    grep -q 'contention | sqlite-file' "$tmp/f.svg" && grep -q '>default([0-9/]*)<' "$tmp/f.svg" ||
        fail "--plot-from did not draw the contention curves of the CSV"
    ! grep -q '^== ' "$tmp/f.out" || fail "--plot-from measured something"
    # the ledger group's results (bench_record "ledger", case hot/w<N> or spread/w<N>, one impl per
    # design, metric commits_per_s): one panel per engine and case, one line per design
    {
        echo "group,engine,case,impl,metric,value"
        echo "meta,,,,date,2026-12-03"
        for e in postgresql mysql; do
            for c in hot spread; do
                for d in txm naive lock-last lock-table update-floor; do
                    for w in 1 2 4 8 16; do
                        echo "ledger,$e,$c/w$w,$d,commits_per_s,$((w * 100 + ${#d})).5"
                        echo "ledger,$e,$c/w$w,$d,p99_ms,3.0"
                    done
                done
            done
        done
    } >"$tmp/ledger.csv"
    rc=0
    "$bench" --plot-from "$tmp/ledger.csv" --plot "$tmp/l.svg" >"$tmp/l.out" 2>&1 || rc=$?
    cat "$tmp/l.out"
    [ "$rc" -eq 0 ] || fail "--plot-from of ledger results exited $rc"
    grep -q '(4 panels, 100 points)' "$tmp/l.out" || fail "the ledger results did not make 4 panels of 100 points"
    for t in 'ledger | postgresql | hot' 'ledger | mysql | spread' '>txm<' '>naive<' '>lock-last<' \
        '>lock-table<' '>update-floor<'; do
        grep -qF "$t" "$tmp/l.svg" || fail "the ledger plot has no '$t'"
    done
else
    echo "gnuplot is not on PATH: the drawing itself is not tested here"
fi
rc=0
PATH=/nonexistent "$bench" "${plot_args[@]}" --plot "$tmp/n.svg" >"$tmp/n.out" 2>&1 || rc=$?
grep '^# plot' "$tmp/n.out"
[ "$rc" -eq 0 ] || fail "--plot without gnuplot exited $rc (a missing gnuplot must not fail the run)"
grep -q 'gnuplot not found on PATH' "$tmp/n.out" || fail "--plot without gnuplot did not say so"
[ ! -e "$tmp/n.svg" ] || fail "--plot without gnuplot left a file"
echo "ok"
