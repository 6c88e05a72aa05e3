#!/bin/bash
# Installs the build into a temporary prefix (meson install --destdir) and compiles the example of
# docs/billing.md with nothing but `pkg-config --cflags --libs txm-billing`, as a user of the
# installed package would, then runs it on SQLite. Exit 0 pass, 77 skip (no compiler/pkg-config).
set -eu
build=${1:?build dir}
example=${2:?example source}
for tool in cc pkg-config; do
    command -v "$tool" >/dev/null || { echo "skip: $tool is not installed"; exit 77; }
done
tmp=$(mktemp -d /tmp/txm-installed-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >/dev/null
pc=$(find "$tmp/root" -name txm-billing.pc | head -1)
[ -n "$pc" ] || { echo "txm-billing.pc was not installed"; exit 1; }
# The .pc files name the configured prefix; a user who installs there finds them as they are.
# Here the tree sits under a temporary root: point copies of them at it.
mkdir -p "$tmp/pc"
for f in "$(dirname "$pc")"/txm*.pc; do
    prefix=$(sed -n 's/^prefix=//p' "$f")
    sed "s|^prefix=.*|prefix=$tmp/root$prefix|" "$f" > "$tmp/pc/$(basename "$f")"
done
export PKG_CONFIG_PATH="$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# meson test points LD_LIBRARY_PATH at the build tree; a user's program does not have that.
unset LD_LIBRARY_PATH
flags=$(pkg-config --cflags --libs txm-billing)
echo "pkg-config --cflags --libs txm-billing: $flags"
libdir=$(pkg-config --variable=libdir txm-billing)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$example" $flags -Wl,-rpath,"$libdir"
# The example must use the installed libraries, not the build tree's.
ldd "$tmp/example" | grep -E 'libtxm(-billing)?\.so' | tee "$tmp/ldd"
if grep -v "$tmp/root" "$tmp/ldd" | grep -q libtxm; then
    echo "the example linked a libtxm outside the temporary prefix"; exit 1
fi
"$tmp/example" sqlite::memory:
