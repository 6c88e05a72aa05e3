#!/usr/bin/env bash
# One bounded fuzz run of a txm fuzz target, with a summary line.
#
#   scripts/fuzz.sh BUILD TARGET SECONDS [WORKDIR]
#
# TARGET: sql (core/sql.c: placeholder scanner and control-statement detector), url (core/url.c),
# errparse (drivers/mysql_errparse.c: MySQL/MariaDB error messages). BUILD is a build tree; the
# libFuzzer binaries exist in a clang tree (CC=clang meson setup build-fuzz; scripts/test.sh makes
# one), fuzz-mysql-errparse in any tree where clang's -fsanitize=fuzzer links.
#
# With libFuzzer (ASan + UBSan): a fresh corpus directory WORKDIR/corpus-TARGET seeded with a copy
# of the target's seed corpus (the checked-in seeds are never written), artifacts (crash-*, leak-*,
# timeout-*) in WORKDIR/artifacts-TARGET/, -max_total_time=SECONDS, libFuzzer's final stats.
# Without libFuzzer (gcc-only machine): the target's replay driver over the seeds plus
# deterministic mutants, or the standalone mutation loop for errparse, for about as long.
# WORKDIR defaults to BUILD/fuzz-runs. The last line on stdout is the summary:
#   fuzz sql: libFuzzer 25 s, 23456 execs (938/s), coverage 260 edges / 1445 features, corpus 25 -> 300, 0 findings
# Exit status: 0 when the run found nothing, 1 on a finding (the input is in the artifacts
# directory: replay it with the binary, minimise it with -minimize_crash=1, add it to the seeds),
# 2 on usage errors.
#
# A longer run (docs/placeholders.md records the figures): scripts/fuzz.sh build-fuzz sql 600
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 BUILD sql|url|errparse SECONDS [WORKDIR]" >&2; exit 2; }
cd "$(dirname "$0")/.."
build=$1 target=$2 secs=$3 work=${4:-$1/fuzz-runs}

case "$target" in
sql | url)
    bin=$build/tests/fuzz/fuzz-$target
    replay=$build/tests/fuzz/fuzz-replay-$target
    seeds=tests/fuzz/corpus/$target
    extra=()
    ;;
errparse)
    bin=$build/tests/mysql/fuzz-mysql-errparse
    replay=""
    seeds=tests/mysql/fuzz-seeds
    extra=(-max_len=1024)
    ;;
*)
    echo "fuzz.sh: unknown target '$target' (sql, url, errparse)" >&2
    exit 2
    ;;
esac

is_libfuzzer() { [ -x "$1" ] && grep -q LLVMFuzzerRunDriver "$1" 2>/dev/null; }

mkdir -p "$work"
log=$work/$target.log
nseeds=$(find "$seeds" -maxdepth 1 -type f | wc -l)

if is_libfuzzer "$bin"; then
    corpus=$work/corpus-$target
    arts=$work/artifacts-$target
    rm -rf "$corpus" "$arts"
    mkdir -p "$corpus" "$arts"
    cp "$seeds"/* "$corpus"/
    rc=0
    "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$arts/" "${extra[@]}" "$corpus" \
        >"$log" 2>&1 || rc=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    findings=$(find "$arts" -type f | wc -l)
    tail -n 12 "$log" >&2
    if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then
        findings=1 # libFuzzer stopped on a finding it could not write, or crashed itself
    fi
    printf 'fuzz %s: libFuzzer %s s, %s execs (%s/s), coverage %s edges / %s features, corpus %s -> %s, %s findings\n' \
        "$target" "$secs" "${execs:-0}" "${rate:-0}" "${cov:-?}" "${ft:-?}" "$nseeds" \
        "$(find "$corpus" -type f | wc -l)" "$findings"
    [ "$findings" -eq 0 ] && [ "$rc" -eq 0 ]
    exit $?
fi

# Fallbacks without libFuzzer.
rc=0
if [ "$target" = errparse ]; then
    if [ ! -x "$bin" ]; then
        echo "fuzz errparse: no fuzz-mysql-errparse in $build (MySQL driver not built): skipped"
        exit 0
    fi
    "$bin" "$secs" >"$log" 2>&1 || rc=$?
    tail -n 3 "$log" >&2
    printf 'fuzz errparse: standalone mutation loop %s s (no libFuzzer), %s\n' "$secs" \
        "$([ "$rc" -eq 0 ] && echo "0 findings" || echo "FAILED (exit $rc)")"
else
    [ -x "$replay" ] || { echo "fuzz.sh: neither $bin nor $replay exists (build $build first)" >&2; exit 2; }
    # About 8,000 mutants per second keeps the replay near the requested time on this project's
    # machine; the count, not the time, is what is reported.
    muts=$((secs * 8000 / (nseeds > 0 ? nseeds : 1) + 400))
    "$replay" --mutations "$muts" --seed "$RANDOM" "$seeds" >"$log" 2>&1 || rc=$?
    tail -n 3 "$log" >&2
    printf 'fuzz %s: replay driver (no libFuzzer), %s seeds x %s mutants, %s\n' "$target" "$nseeds" "$muts" \
        "$([ "$rc" -eq 0 ] && echo "0 findings" || echo "FAILED (exit $rc)")"
fi
[ "$rc" -eq 0 ]
