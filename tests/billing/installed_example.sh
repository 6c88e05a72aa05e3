#!/bin/bash
# Installs the build into a temporary prefix (meson install --destdir) and compiles the example of
# docs/billing.md with nothing but `pkg-config --cflags --libs txm-billing`, as a user of the
# installed package would, then runs it on SQLite. Exit 0 pass, 77 skip (no compiler/pkg-config).
set -eu
build=${1:?build dir}
example=${2:?example source}
# shellcheck source=../common/install_lib.sh
. "$(dirname "$0")/../common/install_lib.sh"
txm_require_tools cc pkg-config
tmp=$(mktemp -d /tmp/txm-installed-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
txm_destdir_install "$build" "$tmp"
flags=$(pkg-config --cflags --libs txm-billing)
echo "pkg-config --cflags --libs txm-billing: $flags"
libdir=$(pkg-config --variable=libdir txm-billing)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$example" $flags -Wl,-rpath,"$libdir"
# The example must use the installed libraries, not the build tree's.
txm_check_libs_under "$tmp/example" "$tmp/root"
"$tmp/example" sqlite::memory:
