#!/usr/bin/env bash
# Counts individual tests in meson test logs (meson-logs/<logbase>.txt).
#
#   scripts/count-tests.sh [--skips FILE] LOG...
#                                    prints "PASSED FAILED SKIPPED" (three integers) on stdout and,
#                                    on stderr, one line per test that failed only in a way
#                                    Criterion does not count (see below). With --skips, writes
#                                    the skipped tests to FILE, one line per test and reason:
#                                    "NAME: REASON" (a skipped meson test: its first output line)
#                                    or "NAME: [N x ][SKIP] REASON" (Criterion tests of one
#                                    executable skipped with the same reason)
#
# Per meson test block:
#  - A Criterion executable prints "Synthesis: Tested: T | Passing: P | Failing: F | Crashing: C".
#    Criterion's "Failing" already includes the crashed tests (Tested = Passing + Failing, seen
#    with Criterion 2.4), so passed += P and failed += T - P.
#  - Criterion records a test's verdict before its worker process exits, so a LeakSanitizer report
#    at the worker's exit, or a crash in .fini ("crashed during its setup or teardown"), leaves
#    the test "passing". Sanitizer reports (ERROR: LeakSanitizer / AddressSanitizer, UBSan's
#    "runtime error:", WARNING: ThreadSanitizer) beyond the number of tests Criterion failed, or
#    teardown crashes, whichever is larger, move that many tests from passed to failed. test.sh runs the sanitizer tree with
#    abort_on_error=1, so every report after a verdict also shows up as a named teardown crash.
#    Every report is printed on stderr with the test executable's name.
#  - If the executable failed (non-zero exit, signal, timeout) but no test was counted as failed,
#    one failure is added: something went wrong outside any test.
#  - Criterion leaves skipped tests out of "Tested"; lines starting "[SKIP]" (printed by tests
#    that skip, or by Criterion with --verbose) are counted as skipped, for information only.
#  - A block without a Synthesis line is one test judged by meson's result: exit status 0 passes,
#    77 is skipped, anything else fails.
set -euo pipefail
skips=/dev/null
if [ "${1:-}" = --skips ]; then
    skips=${2:?--skips FILE}
    shift 2
    : >"$skips"
fi
[ $# -ge 1 ] || { echo "usage: $0 [--skips FILE] MESON-TESTLOG.txt..." >&2; exit 2; }

awk '
function flush(   extra, surplus) {
    if (!inblock) return
    if (syn) {
        # Reports beyond the tests Criterion already failed belong to tests it counted passing.
        surplus = reports - (t - p)
        extra = (teardown > surplus) ? teardown : surplus
        if (extra < 0) extra = 0
        if (extra > p) extra = p
        P += p - extra
        F += (t - p) + extra
        if (res != "exit status 0" && t - p + extra == 0) {
            F++
            printf "FAILED outside any test: %s (%s)\n", name, res > "/dev/stderr"
        }
    } else if (res == "exit status 0") {
        P++
    } else if (res == "exit status 77" || res ~ /^SKIP/) {
        S++
        printf "%s: %s\n", short(name), (firstout != "" ? firstout : res) > skips
    } else {
        F++
    }
    for (r in skipped) {
        printf "%s: %s%s\n", short(name), (skipped[r] > 1 ? skipped[r] " x " : ""), r > skips
        delete skipped[r]
    }
    inblock = 0
}
# "txm:suite+suite / name" -> "name"
function short(s) { sub(/^.* \/ /, "", s); return s }
function num(s) { gsub(/[^0-9]/, "", s); return s + 0 }
{ gsub(/\033\[[0-9;]*m/, "") }
/^=+ [0-9]+\/[0-9]+ =+$/ {
    flush()
    inblock = 1; syn = 0; t = 0; p = 0; reports = 0; teardown = 0; res = ""; name = ""
    firstout = ""; inout = 0
    next
}
!inblock { next }
/^Summary of Failures:/ { flush(); next }
/^test: / && name == "" { name = $0; sub(/^test: */, "", name); next }
/^result: / && res == "" { res = $0; sub(/^result: */, "", res); next }
/Synthesis: Tested:/ {
    s = $0; sub(/.*Synthesis: */, "", s)
    n = split(s, a, "|")
    for (i = 1; i <= n; i++) {
        if (a[i] ~ /Tested/) t += num(a[i])
        else if (a[i] ~ /Passing/) p += num(a[i])
    }
    syn = 1
    next
}
/^-+ std(out|err) -+$/ { inout = 1; next }
inout && firstout == "" && NF { firstout = $0; sub(/^(skip|SKIP)[: ]*/, "", firstout) }
/^\[SKIP\]/ { S++; skipped[$0]++; next }
/ERROR: (LeakSanitizer|AddressSanitizer|ThreadSanitizer):|WARNING: ThreadSanitizer:|: runtime error: / {
    reports++
    printf "SANITIZER in %s: %s\n", name, $0 > "/dev/stderr"
    next
}
/crashed during its setup or teardown/ {
    teardown++
    printf "%s: %s\n", name, $0 > "/dev/stderr"
    next
}
END { flush(); printf "%d %d %d\n", P, F, S }
' skips="$skips" "$@"
