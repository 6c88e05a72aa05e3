#!/usr/bin/env bash
# Everything the tests need, from a fresh Debian 12 machine (as root) to one summary line:
#
#   1. installs the packages the build and tests need (apt-get update only if one is missing)
#   2. builds build/ (debugoptimized)
#   3. starts throwaway PostgreSQL 15 and MariaDB servers on 127.0.0.1 (free non-default ports,
#      data in a mktemp directory), PgBouncer in transaction pooling in front of the PostgreSQL
#      (scripts/pgbouncer-server.sh), and exports TXM_TEST_PG_URL, TXM_TEST_MYSQL_URL and
#      TXM_TEST_PGBOUNCER_URL
#   4. runs every meson test suite in build/ (this includes the allocation sweep, suite 'alloc'),
#      then the PostgreSQL conformance suite once more through PgBouncer
#   5. builds build-sanitize/ (-Dbuildtype=debug: -O0, where -Wformat-truncation once broke the
#      werror build) with -Db_sanitize=address,undefined and runs every suite again
#   6. builds build-tsan/ with -Db_sanitize=thread and runs the threaded tests there (suites
#      'tsan-local' and 'tsan-server': tests/tsan/meson.build selects them)
#   7. builds the libFuzzer targets in build-fuzz/ (clang) and runs each fuzzer for a bounded
#      time (scripts/fuzz.sh: SQL scanner, URL parser, MySQL error messages; replay drivers
#      when libFuzzer does not link); each run counts as one test
#   8. stops the servers by pid (a trap does it on failure and interrupt too) and prints the
#      figures (allocation sites failed, fuzz executions), the phase timings and
#      "N passed, N failed, N skipped" over every tree, counting individual Criterion tests
#
# Output: short phase lines on stderr; the build chatter (apt-get, meson setup, ninja, meson test,
# fuzzers) goes to log files in a log directory, one per step (its path is printed at the start
# and, on failure, with the tail of the log that failed). The skipped tests are listed on stderr
# (test: reason) and in LOGDIR/skipped.txt. The last line of stdout (its only line) is
# "N passed, N failed, N skipped". The log directory is removed after a successful run unless
# TXM_TEST_KEEP=1; after a failure it is kept.
#
# Exit status: 0 only if every test passed in every tree and both servers started.
#
# Concurrency: tests in suites 'postgresql' and 'mysql' share one database per server, so they
# run one meson test at a time (--num-processes 1; each Criterion binary also runs --jobs 1).
# Everything else (SQLite, unit, fake driver) runs first with --num-processes 2. A test that
# talks to a server must therefore carry suite 'postgresql' or 'mysql'.
#
# Environment: TXM_TEST_KEEP=1 keeps the temporary directory (server data and logs);
# TXM_TEST_SKIP_SANITIZE=1, TXM_TEST_SKIP_TSAN=1, TXM_TEST_SKIP_FUZZ=1 skip steps 5, 6, 7 (local
# use only: CI runs everything); TXM_TEST_FUZZ_SECONDS (default 20) per fuzzer;
# TXM_TEST_TIMEOUT_MULTIPLIER (default 3), TXM_TEST_SANITIZE_TIMEOUT_MULTIPLIER (default 6) and
# TXM_TEST_TSAN_TIMEOUT_MULTIPLIER (default 6).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=lib.sh
. scripts/lib.sh

# Packages: build, tests, servers. The fuzz harness's needs are added here as they are requested.
PKGS=(meson ninja-build pkg-config gcc libc6-dev python3 clang libcriterion-dev
    libclang-rt-14-dev libpq-dev libmariadb-dev libsqlite3-dev postgresql-15 mariadb-server locales pgbouncer
    gnuplot-nox libzdb-dev) # gnuplot: tests/bench/quick.sh draws `txm-bench --plot` (without it, only the message is tested); libzdb: txm-bench's libzdb subject

t_start=$SECONDS
t_phase=$SECONDS
timings=()
phase_done() {
    local secs=$((SECONDS - t_phase))
    timings+=("$1: ${secs}s")
    printf '== %s done in %ss\n' "$1" "$secs" >&2
    t_phase=$SECONDS
}
section() {
    current=$*
    printf '\n========== %s ==========\n' "$*" >&2
}

# The run's logs (docs/testing.md, "Output"): created first, so that every step has one.
logdir=$(mktemp -d "${TMPDIR:-/tmp}/txm-test-log.XXXXXX")
chmod 755 "$logdir"
current_log=""
printf 'logs: %s\n' "$logdir" >&2

# run_logged NAME CMD...: runs CMD (a program or a function) with stdout and stderr appended to
# LOGDIR/NAME.log and returns its status; on failure prints the log's path and last lines on
# stderr. current_log names the log of the step running, for the failure message of cleanup.
run_logged() {
    local name=$1 rc=0
    shift
    current_log=$logdir/$name.log
    printf '$ %s\n' "$*" >>"$current_log"
    "$@" >>"$current_log" 2>&1 </dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'error: `%s` exited %s; last lines of %s:\n' "$*" "$rc" "$current_log" >&2
        tail -n 30 "$current_log" | sed 's/^/  | /' >&2
    fi
    return "$rc"
}

tmp=""
current="start"
summary_printed=0
total_pass=0
total_fail=0
total_skip=0
servers_ok=0

# After a failure: the servers' logs are copied into the log directory (kept); their last lines
# are printed only if the servers did not start (after a test failure they are noise).
print_server_logs() {
    local f
    for f in "$tmp/pg/server.log" "$tmp/mysql/error.log" "$tmp/mysql/mariadbd.out" "$tmp/pgbouncer/pgbouncer.log"; do
        [ -s "$f" ] || continue
        cp "$f" "$logdir/server-$(basename "$(dirname "$f")")-$(basename "$f")" 2>/dev/null || true
        [ "$servers_ok" = 1 ] && continue
        printf '\n---- last lines of %s ----\n' "$f" >&2
        tail -n 40 "$f" >&2 || true
    done
}

# stop_server SCRIPT DIR WORD: the server's own stop command; if that fails (even if the script
# is gone), SIGKILL the pid recorded in DIR/pid, if it is still that server (cmdline has WORD).
stop_server() {
    local script=$1 dir=$2 word=$3 pid
    [ -d "$dir" ] || return 0
    bash "$script" stop "$dir" >&2 && return 0
    pid=$(cat "$dir/pid" 2>/dev/null) || return 0
    if txm_pid_alive "$pid" && txm_pid_matches "$pid" "$word"; then
        echo "stopping $word (pid $pid) with SIGKILL" >&2
        txm_stop_pid "$pid" KILL 10
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$tmp" ]; then
        stop_server "$root/scripts/pgbouncer-server.sh" "$tmp/pgbouncer" pgbouncer
        stop_server "$root/scripts/pg-server.sh" "$tmp/pg" postgres
        stop_server "$root/scripts/mariadb-server.sh" "$tmp/mysql" "$tmp/mysql/my.cnf"
        [ "$rc" -ne 0 ] && print_server_logs
    fi
    if [ -n "$tmp" ]; then
        if [ "${TXM_TEST_KEEP:-0}" = 1 ]; then
            echo "kept $tmp" >&2
        else
            rm -rf "$tmp"
        fi
    fi
    if [ "$rc" -ne 0 ] || [ "${TXM_TEST_KEEP:-0}" = 1 ]; then
        echo "logs kept in $logdir${current_log:+ (last step: $current_log)}" >&2
    else
        rm -rf "$logdir"
    fi
    if [ "$summary_printed" = 0 ]; then
        # Stopped early (a step failed, or interrupted): the failed step counts as one failure.
        echo "error: scripts/test.sh stopped during: $current (exit $rc)" >&2
        [ "$rc" -ne 0 ] || rc=1
        echo "$total_pass passed, $((total_fail + 1)) failed, $total_skip skipped"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# ---- 1. packages ---------------------------------------------------------------------------
section "packages"
run_logged packages txm_need_pkgs "${PKGS[@]}"
# A decimal-comma locale, so the tests that check number formatting ignores LC_NUMERIC run.
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
    if [ "$(id -u)" = 0 ]; then
        run_logged packages localedef -i de_DE -f UTF-8 de_DE.UTF-8 || echo "warning: localedef de_DE.UTF-8 failed" >&2
    else
        echo "warning: no de_DE.UTF-8 locale (not root): the decimal-comma tests will skip" >&2
    fi
fi
phase_done "install packages"

# ---- 2. build ------------------------------------------------------------------------------
# configure DIR [meson options]: a fresh setup, or a reconfigure of an existing tree, then the
# build; both logged to LOGDIR/build-DIR.log.
configure() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        run_logged "build-$dir" meson setup --reconfigure "$dir" "$@"
    else
        [ -d "$dir/meson-private" ] && rm -rf "$dir"
        run_logged "build-$dir" meson setup "$dir" "$@"
    fi
    run_logged "build-$dir" ninja -C "$dir"
}

section "build (build/)"
configure build -Dwerror=true
phase_done "build"

# ---- 3. servers ----------------------------------------------------------------------------
section "servers"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/txm-test.XXXXXX")
chmod 755 "$tmp" # user postgres must reach $tmp/pg
pg_url=$(bash scripts/pg-server.sh start "$tmp/pg" | tail -n 1) || {
    echo "error: PostgreSQL did not start" >&2
    exit 1
}
my_url=$(bash scripts/mariadb-server.sh start "$tmp/mysql" | tail -n 1) || {
    echo "error: MariaDB did not start" >&2
    exit 1
}
case "$pg_url" in postgresql://*) ;; *) echo "error: bad PostgreSQL URL" >&2; exit 1 ;; esac
case "$my_url" in mysql://*) ;; *) echo "error: bad MariaDB URL" >&2; exit 1 ;; esac
export TXM_TEST_PG_URL=$pg_url
export TXM_TEST_MYSQL_URL=$my_url
# PgBouncer (transaction pooling) in front of that PostgreSQL, on a port of its own (never a
# system pgbouncer's 6432): tests/pg/test_pgbouncer.c and the extra conformance run below.
pgb_url=$(bash scripts/pgbouncer-server.sh start "$tmp/pgbouncer" "$pg_url" | tail -n 1) || {
    echo "error: PgBouncer did not start" >&2
    exit 1
}
case "$pgb_url" in postgresql://*) ;; *) echo "error: bad PgBouncer URL" >&2; exit 1 ;; esac
# PgBouncer 1.18 does not track named prepared statements in transaction pooling: the driver's
# statement cache is off through it (docs/driver-postgresql.md, "Behind PgBouncer").
case "$pgb_url" in *\?*) pgb_url="$pgb_url&txm_statement_cache=off" ;; *) pgb_url="$pgb_url?txm_statement_cache=off" ;; esac
export TXM_TEST_PGBOUNCER_URL=$pgb_url
servers_ok=1
phase_done "start servers"

# ---- 4/5. tests ----------------------------------------------------------------------------
# run_tree DIR LABEL MULTIPLIER [LOCAL-SUITE SERVER-SUITE]: two meson test runs (local suites in
# parallel, server suites one at a time), then counts. Without suite names: every suite, split
# into 'postgresql'/'mysql' and the rest; with them, only those two suites. Sets run_rc non-zero
# if meson reported a failure.
run_rc=0
run_tree() {
    local dir=$1 label=$2 mult=$3 rc counts p f s
    local common=(-C "$dir" --no-rebuild --print-errorlogs --timeout-multiplier "$mult")
    local local_sel=(--no-suite postgresql --no-suite mysql) server_sel=(--suite postgresql --suite mysql)
    if [ $# -ge 5 ]; then
        local_sel=(--suite "$4")
        server_sel=(--suite "$5")
    fi
    rm -f "$dir"/meson-logs/testlog-local.* "$dir"/meson-logs/testlog-servers.*
    section "tests: $label, local suites"
    rc=0
    run_logged "test-$dir-local" meson test "${common[@]}" --num-processes 2 "${local_sel[@]}" \
        --logbase testlog-local || rc=$?
    [ "$rc" -eq 0 ] || run_rc=1
    section "tests: $label, server suites (one at a time)"
    rc=0
    run_logged "test-$dir-servers" meson test "${common[@]}" --num-processes 1 "${server_sel[@]}" \
        --logbase testlog-servers || rc=$?
    [ "$rc" -eq 0 ] || run_rc=1
    local logs=()
    for f in "$dir/meson-logs/testlog-local.txt" "$dir/meson-logs/testlog-servers.txt"; do
        [ -f "$f" ] && logs+=("$f")
    done
    if [ "${#logs[@]}" -eq 0 ]; then
        echo "error: $label: no meson test log was written" >&2
        run_rc=1
        return 0
    fi
    counts=$(bash scripts/count-tests.sh --skips "$logdir/skipped-$dir.txt" "${logs[@]}")
    read -r p f s <<<"$counts"
    printf '%s: %s passed, %s failed, %s skipped\n' "$label" "$p" "$f" "$s" >&2
    sed "s|^|$dir: |" "$logdir/skipped-$dir.txt" >>"$logdir/skipped.txt"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    total_skip=$((total_skip + s))
}

run_tree build "plain build" "${TXM_TEST_TIMEOUT_MULTIPLIER:-3}"
phase_done "tests (plain)"

# The PostgreSQL conformance suite once more, through PgBouncer in transaction pooling. The tests
# that need a server session of their own skip with "needs session pooling"
# (docs/driver-postgresql.md, "Behind PgBouncer").
section "tests: PostgreSQL conformance through PgBouncer (transaction pooling)"
rm -f build/meson-logs/testlog-pgbouncer.*
rc=0
# The URL goes in as a prefix assignment, not as `env URL=...`: run_logged writes its command line
# into the log (and on failure to stderr), and the URL carries the password.
TXM_TEST_PG_URL=$pgb_url TXM_CONFORMANCE_POOLER=transaction run_logged test-pgbouncer \
    meson test -C build --no-rebuild --print-errorlogs \
    --timeout-multiplier "${TXM_TEST_TIMEOUT_MULTIPLIER:-3}" --num-processes 1 conformance-postgresql \
    --logbase testlog-pgbouncer || rc=$?
[ "$rc" -eq 0 ] || run_rc=1
if [ -f build/meson-logs/testlog-pgbouncer.txt ]; then
    read -r p f s <<<"$(bash scripts/count-tests.sh --skips "$logdir/skipped-pgbouncer.txt" \
        build/meson-logs/testlog-pgbouncer.txt)"
    printf 'conformance through PgBouncer: %s passed, %s failed, %s skipped\n' "$p" "$f" "$s" >&2
    sed "s|^|pgbouncer: |" "$logdir/skipped-pgbouncer.txt" >>"$logdir/skipped.txt"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    total_skip=$((total_skip + s))
else
    echo "error: the PgBouncer conformance run wrote no meson test log" >&2
    run_rc=1
fi
phase_done "tests (PgBouncer)"

if [ "${TXM_TEST_SKIP_SANITIZE:-0}" != 1 ]; then
    section "build (build-sanitize/: ASan + UBSan)"
    configure build-sanitize -Dbuildtype=debug -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
    phase_done "build (sanitizers)"
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
    # Criterion records a verdict before the test's process exits: a leak (or a UBSan report)
    # found at exit would leave the test "passing". abort_on_error turns it into a crash that
    # Criterion names ("crashed during its setup or teardown"); count-tests.sh counts those and
    # every sanitizer report beyond the tests already failed.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1
    run_tree build-sanitize "ASan+UBSan build" "${TXM_TEST_SANITIZE_TIMEOUT_MULTIPLIER:-6}"
    unset UBSAN_OPTIONS ASAN_OPTIONS
    phase_done "tests (sanitizers)"
fi

# ---- 6. ThreadSanitizer -------------------------------------------------------------------------
# The threaded tests only (tests/tsan/meson.build): concurrent txm_retry under contention,
# txm_cancel from another thread, deadlocks between threads' connections, killed sessions, the
# driver registry under concurrent first txm_open and txm_driver_register. No suppressions: the
# client libraries (libpq, Connector/C, SQLite) are not instrumented, and nothing in them has been
# reported; a report stops the test (halt_on_error) and counts as a failure (count-tests.sh).
if [ "${TXM_TEST_SKIP_TSAN:-0}" != 1 ]; then
    section "build (build-tsan/: ThreadSanitizer)"
    configure build-tsan -Dwerror=true -Db_sanitize=thread
    phase_done "build (tsan)"
    export TSAN_OPTIONS=halt_on_error=1:abort_on_error=1:second_deadlock_stack=1
    run_tree build-tsan "TSan build" "${TXM_TEST_TSAN_TIMEOUT_MULTIPLIER:-6}" tsan-local tsan-server
    unset TSAN_OPTIONS
    phase_done "tests (tsan)"
fi

# ---- 7. fuzzers ----------------------------------------------------------------------------------
fuzz_lines=()
fuzz_execs=0
if [ "${TXM_TEST_SKIP_FUZZ:-0}" != 1 ]; then
    section "build (build-fuzz/: clang, libFuzzer targets)"
    if [ -f build-fuzz/build.ninja ]; then
        run_logged build-build-fuzz meson setup --reconfigure build-fuzz -Dwerror=true
    else
        rm -rf build-fuzz
        run_logged build-build-fuzz env CC=clang meson setup build-fuzz -Dwerror=true
    fi
    # Only the fuzz targets (and the replay drivers, the fallback when libFuzzer does not link).
    fuzz_targets=()
    all_targets=$(ninja -C build-fuzz -t targets all)
    for t in tests/fuzz/fuzz-sql tests/fuzz/fuzz-url tests/mysql/fuzz-mysql-errparse \
        tests/fuzz/fuzz-replay-sql tests/fuzz/fuzz-replay-url; do
        if grep -q "^$t:" <<<"$all_targets"; then fuzz_targets+=("$t"); fi
    done
    run_logged build-build-fuzz ninja -C build-fuzz "${fuzz_targets[@]}"
    phase_done "build (fuzz)"
    for t in sql url errparse; do
        section "fuzz: $t (${TXM_TEST_FUZZ_SECONDS:-20} s)"
        rc=0
        current_log=$logdir/fuzz-$t.log
        line=$(bash scripts/fuzz.sh build-fuzz "$t" "${TXM_TEST_FUZZ_SECONDS:-20}" 2>"$current_log" | tail -n 1) || rc=$?
        echo "$line" >&2
        if [ "$rc" -ne 0 ]; then
            printf 'error: fuzzer %s failed (exit %s); last lines of %s:\n' "$t" "$rc" "$current_log" >&2
            tail -n 30 "$current_log" | sed 's/^/  | /' >&2
        fi
        fuzz_lines+=("$line")
        if [ "$rc" -eq 0 ]; then
            total_pass=$((total_pass + 1))
        else
            total_fail=$((total_fail + 1))
        fi
        n=$(sed -n 's/.*, \([0-9]*\) execs .*/\1/p' <<<"$line")
        fuzz_execs=$((fuzz_execs + ${n:-0}))
    done
    phase_done "fuzz"
fi

# ---- 8. stop servers and summarise ---------------------------------------------------------
stop_server "$root/scripts/pgbouncer-server.sh" "$tmp/pgbouncer" pgbouncer
stop_server "$root/scripts/pg-server.sh" "$tmp/pg" postgres
stop_server "$root/scripts/mariadb-server.sh" "$tmp/mysql" "$tmp/mysql/my.cnf"
phase_done "stop servers"

# Figures of the allocation sweep (tests/alloc), from the sanitizer tree's logs when it ran
# (LeakSanitizer checked every step there), else the plain tree's.
sweep_tree=build
[ "${TXM_TEST_SKIP_SANITIZE:-0}" != 1 ] && sweep_tree=build-sanitize
sweep_summary=$(cat "$sweep_tree"/meson-logs/testlog-local.txt "$sweep_tree"/meson-logs/testlog-servers.txt \
    2>/dev/null | awk '
    /^alloc sweep [a-z]+ .*allocation sites failed/ {
        n = $0; sub(/.*: /, "", n); sub(/ allocation sites.*/, "", n)
        sites[$3] += n; total += n; runs++
        l = $0; sub(/.* crashes, /, "", l); sub(/ leaks.*/, "", l); leaks += l
    }
    /\[FAIL\] sweep::.*CRASH/ { crashes++ }
    END {
        if (!runs) exit
        printf "allocation sweep (%s): %d allocation sites failed in %d scenario runs (", tree, total, runs
        sep = ""
        for (e in sites) { printf "%s%s %d", sep, e, sites[e]; sep = ", " }
        printf "), %d crashes, %d leaks\n", crashes, leaks
    }' tree="$sweep_tree")

{
    echo
    [ -z "$sweep_summary" ] || echo "$sweep_summary"
    if [ "${#fuzz_lines[@]}" -gt 0 ]; then
        printf '%s\n' "${fuzz_lines[@]}"
        echo "fuzzing: $fuzz_execs executions in total"
    fi
    echo "timings: ${timings[*]/%/;} total: $((SECONDS - t_start))s"
    if [ -s "$logdir/skipped.txt" ]; then
        echo "skipped tests ($total_skip; test: reason):"
        sed 's/^/  /' "$logdir/skipped.txt"
    fi
    if [ "$run_rc" -ne 0 ]; then
        echo "meson test reported failures (meson test output: $logdir/test-*.log; each test's" \
            "full output: TREE/meson-logs/testlog-local.txt and testlog-servers.txt):"
        grep -h -E '^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT|ERROR) ' "$logdir"/test-*.log 2>/dev/null | sed 's/^ */  /' | sort -u || true
        # Criterion's assertion messages of the failed tests (meson prints their logs).
        grep -h -E '^\[(----|FAIL)\] .*[^ ]' "$logdir"/test-*.log 2>/dev/null | head -n 20 | sed 's/^/    /' || true
    fi
} >&2
if [ "$total_pass" -eq 0 ] && [ "$total_fail" -eq 0 ]; then
    echo "error: no test ran" >&2
    total_fail=1
fi
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
summary_printed=1
[ "$servers_ok" = 1 ] && [ "$run_rc" -eq 0 ] && [ "$total_fail" -eq 0 ]
