#!/bin/bash
# txm as a user gets it (README.md, "Install and use"), from a build tree:
#   1. `meson install` into a temporary prefix; the README example and every docs/cookbook.md
#      example compiled with nothing but `pkg-config --cflags --libs txm` and run (SQLite); the
#      static libtxm.a linked; the installed `txm help`, `txm version` and
#      `txm conformance sqlite::memory:` (the suite installed in LIBEXECDIR/txm) and
#      `txm bench --quick --engine sqlite-mem` (txm-bench, also in LIBEXECDIR/txm) run;
#   2. the README example and the docs/billing.md example compiled against the uninstalled
#      pkg-config files (PKG_CONFIG_PATH=BUILD/meson-uninstalled) and run;
#   3. a parent meson project that uses txm as a subproject (dependency('txm') with the
#      fallback), debug build, -Dwerror=true on the parent, builds and runs the README example;
#   4. `pkg-config --variable=drivers txm` (installed and uninstalled) and `txm version` print
#      the built drivers as a plain space-separated list.
#
# usage: installed.sh SOURCE-ROOT BUILD README-EXAMPLE.c BILLING-EXAMPLE.c "DRIVERS" SANITIZE
# Exit 0 pass, 77 skip (sanitizer tree, or no compiler/pkg-config/meson), anything else fails.
set -eu
src=${1:?source root}
build=$(cd "${2:?build dir}" && pwd)
example=${3:?README example source}
billing_example=${4:?billing example source}
drivers=${5?built drivers}
sanitize=${6:-none}
# shellcheck source=../common/install_lib.sh
. "$(dirname "$0")/../common/install_lib.sh"
if [ "$sanitize" != none ]; then
    # A program built by plain `cc` cannot load libraries built with -fsanitize.
    echo "skip: sanitizer tree (b_sanitize=$sanitize)"
    exit 77
fi
txm_require_tools cc pkg-config meson ninja ldd python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/txm-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)

step() { printf '\n== %s\n' "$*"; }

# check_drivers WHAT VALUE: VALUE must be exactly the built drivers, space-separated.
check_drivers() {
    printf '%s: "%s"\n' "$1" "$2"
    if [ "$2" != "$drivers" ]; then
        echo "FAIL: $1 is \"$2\", expected \"$drivers\" (a plain space-separated list)"
        exit 1
    fi
}

# run_example EXE DIR: runs the README example in DIR (it writes payouts.db to the current
# directory) and checks that its on-commit hook ran.
run_example() {
    local out
    out=$(cd "$2" && "$1")
    printf '%s\n' "$out"
    grep -qx 'paid alice' <<<"$out" || { echo "FAIL: the example did not print 'paid alice'"; exit 1; }
}

# ---- 1. installed ------------------------------------------------------------------------
step "meson install into a temporary prefix"
txm_destdir_install "$build" "$tmp"
prefix=$TXM_ROOT_PREFIX
echo "prefix: $prefix"
flags=$(pkg-config --cflags --libs txm)
echo "pkg-config --cflags --libs txm: $flags"
libdir=$(pkg-config --variable=libdir txm)
mkdir -p "$tmp/run-installed"
# The rpath stands for the user's LD_LIBRARY_PATH or ldconfig (README.md: non-standard prefix).
# shellcheck disable=SC2086
cc "${cflags[@]}" -o "$tmp/example-installed" "$example" $flags -Wl,-rpath,"$libdir"
txm_check_libs_under "$tmp/example-installed" "$tmp/root"
run_example "$tmp/example-installed" "$tmp/run-installed"
# The static library is installed and links too, with the engines' client libraries shared
# (README.md: the packages of Requires.private).
[ -f "$libdir/libtxm.a" ] || { echo "FAIL: libtxm.a was not installed in $libdir"; exit 1; }
client_pcs=$(pkg-config --print-requires-private txm | awk '{print $1}')
# shellcheck disable=SC2046,SC2086
cc "${cflags[@]}" -o "$tmp/example-static" "$example" $(pkg-config --cflags txm) "$libdir/libtxm.a" \
    $(pkg-config --libs $client_pcs) -pthread -lm
if ldd "$tmp/example-static" | grep -q libtxm; then
    echo "FAIL: the static link loads a shared libtxm"; exit 1
fi
run_example "$tmp/example-static" "$tmp/run-installed"
check_drivers "pkg-config --variable=drivers txm (installed)" "$(pkg-config --variable=drivers txm)"

step "the docs/cookbook.md examples against the installed package"
# Each example as a user copies it out of the doc: compiled with the installed pkg-config flags
# only, run on SQLite (tests/cookbook/run_example.sh: a file in a fresh temporary directory).
cookbook=$src/docs/cookbook.md
n_cookbook=0
if [ -f "$cookbook" ]; then
    for name in $(sed -n 's/.*<!-- example: \([A-Za-z0-9_-]*\) -->.*/\1/p' "$cookbook"); do
        python3 "$src/tests/fault/extract_example.py" "$cookbook" "$tmp/cookbook-$name.c" "$name"
        # shellcheck disable=SC2086
        cc "${cflags[@]}" -o "$tmp/cookbook-$name" "$tmp/cookbook-$name.c" $flags -Wl,-rpath,"$libdir"
        if ! bash "$src/tests/cookbook/run_example.sh" sqlite "$tmp/cookbook-$name" >"$tmp/cookbook-$name.log" 2>&1; then
            tail -n 20 "$tmp/cookbook-$name.log"
            echo "FAIL: cookbook example $name, built against the installed package, failed on SQLite"
            exit 1
        fi
        n_cookbook=$((n_cookbook + 1))
    done
fi
echo "$n_cookbook cookbook examples compiled with \`pkg-config --cflags --libs txm\` and run on SQLite"

step "the installed txm command"
"$prefix/bin/txm" help >/dev/null
version=$("$prefix/bin/txm" version)
printf '%s\n' "$version"
check_drivers "txm version" "$(sed -n 's/^drivers: *//p' <<<"$version")"
rc=0
"$prefix/bin/txm" conformance sqlite::memory: >"$tmp/conformance.log" 2>&1 || rc=$?
tail -n 3 "$tmp/conformance.log"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: the installed 'txm conformance sqlite::memory:' exited $rc:"
    head -n 40 "$tmp/conformance.log"
    exit 1
fi
# It ran the suite installed under the temporary prefix, not the build tree's or another one.
grep -q "^txm conformance: $prefix/[^ ]*/txm/txm-conformance against" "$tmp/conformance.log" || {
    echo "FAIL: the installed txm did not run the conformance suite of its own prefix"
    head -n 3 "$tmp/conformance.log"
    exit 1
}
grep -q 'Synthesis: Tested: [1-9]' "$tmp/conformance.log" || { echo "FAIL: no conformance test ran"; exit 1; }
# `txm bench` runs the txm-bench installed in LIBEXECDIR/txm of its own prefix, and its counter
# checks pass (docs/bench.md, "`txm bench`").
rc=0
"$prefix/bin/txm" bench --quick --engine sqlite-mem >"$tmp/bench.log" 2>&1 || rc=$?
grep -E '^# checks|CHECK FAILED' "$tmp/bench.log"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: the installed 'txm bench --quick --engine sqlite-mem' exited $rc:"
    tail -n 40 "$tmp/bench.log"
    exit 1
fi
grep -q "^txm bench: $prefix/[^ ]*/txm/txm-bench\$" "$tmp/bench.log" || {
    echo "FAIL: the installed txm did not run the txm-bench of its own prefix"
    grep '^txm bench:' "$tmp/bench.log"
    exit 1
}
grep -Eq '^# checks +[1-9][0-9]* passed, 0 failed' "$tmp/bench.log" || { echo "FAIL: no benchmark check ran"; exit 1; }

# ---- 2. uninstalled pkg-config files -----------------------------------------------------
step "against the uninstalled pkg-config files ($build/meson-uninstalled)"
export PKG_CONFIG_PATH="$build/meson-uninstalled"
flags=$(pkg-config --cflags --libs txm)
echo "pkg-config --cflags --libs txm: $flags"
# shellcheck disable=SC2086
cc "${cflags[@]}" -o "$tmp/example-uninstalled" "$example" $flags
check_drivers "pkg-config --variable=drivers txm (uninstalled)" "$(pkg-config --variable=drivers txm)"
flags=$(pkg-config --cflags --libs txm-billing)
echo "pkg-config --cflags --libs txm-billing: $flags"
# shellcheck disable=SC2086
cc "${cflags[@]}" -o "$tmp/billing-uninstalled" "$billing_example" $flags
# Uninstalled libraries are found at run time through LD_LIBRARY_PATH (README.md).
ld=$(pkg-config --libs-only-L txm-billing | sed 's/ *-L/:/g; s/^://; s/ *$//')
mkdir -p "$tmp/run-uninstalled"
export LD_LIBRARY_PATH=$ld
txm_check_libs_under "$tmp/example-uninstalled" "$build"
run_example "$tmp/example-uninstalled" "$tmp/run-uninstalled"
"$tmp/billing-uninstalled" sqlite::memory:
unset PKG_CONFIG_PATH LD_LIBRARY_PATH

# ---- 3. meson subproject -----------------------------------------------------------------
step "a parent meson project with txm as a subproject (debug build, -Dwerror=true on the parent)"
parent=$tmp/parent
mkdir -p "$parent/subprojects"
ln -s "$(cd "$src" && pwd)" "$parent/subprojects/txm"
cp "$example" "$parent/app.c"
cat >"$parent/meson.build" <<'MESON'
project('txm-user', 'c', default_options: ['c_std=c11', 'warning_level=3'])
# README.md, "Install and use": an installed txm if pkg-config finds one, else subprojects/txm.
txm_dep = dependency('txm', fallback: 'txm', default_options: ['tests=disabled'])
executable('app', 'app.c', dependencies: txm_dep)
MESON
# --force-fallback-for: the subproject even if this machine has a txm installed.
if ! meson setup "$parent/build" "$parent" -Dbuildtype=debug -Dwerror=true -Dtxm:werror=false \
    --force-fallback-for=txm >"$tmp/parent-setup.log" 2>&1; then
    tail -n 30 "$tmp/parent-setup.log"
    echo "FAIL: meson setup of the parent project failed"
    exit 1
fi
if ! ninja -C "$parent/build" -j 2 app >"$tmp/parent-build.log" 2>&1; then
    grep -E 'error|warning' "$tmp/parent-build.log" | head -n 30
    tail -n 10 "$tmp/parent-build.log"
    echo "FAIL: the parent project did not build"
    exit 1
fi
echo "built the parent project: $(grep -c 'Compiling C object' "$tmp/parent-build.log") C files compiled"
mkdir -p "$tmp/run-subproject"
txm_check_libs_under "$parent/build/app" "$parent/build/subprojects/txm"
run_example "$parent/build/app" "$tmp/run-subproject"
echo
echo "ok: installed, uninstalled and subproject builds of the README example ran; drivers: $drivers"
