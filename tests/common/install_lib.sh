# Shared by the tests that use txm as an installed package (tests/install/installed.sh,
# tests/billing/installed_example.sh). Source it; it defines:
#
#   txm_destdir_install BUILD TMP
#       installs BUILD into TMP/root (meson install --destdir), writes copies of the installed
#       .pc files into TMP/pc with their prefix pointed at TMP/root/PREFIX, puts TMP/pc first in
#       PKG_CONFIG_PATH and unsets LD_LIBRARY_PATH (meson test points it at the build tree; a
#       user's program does not have that). Sets TXM_ROOT_PREFIX to TMP/root/PREFIX.
#   txm_require_tools TOOL...
#       exits 77 (skipped, with the reason) if a tool is missing
#   txm_check_libs_under EXE DIR
#       prints the libtxm* libraries EXE loads and fails if one comes from outside DIR
#
# The .pc files name the configured prefix; a user who installs there finds them as they are.
# The tests install under a temporary root instead, which is why the copies are needed.

txm_require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "skip: $tool is not installed"; exit 77; }
    done
}

txm_destdir_install() {
    local build=$1 tmp=$2 pc f prefix
    meson install -C "$build" --no-rebuild --destdir "$tmp/root" --quiet >/dev/null
    pc=$(find "$tmp/root" -name txm.pc | head -n 1)
    [ -n "$pc" ] || { echo "txm.pc was not installed"; return 1; }
    mkdir -p "$tmp/pc"
    for f in "$(dirname "$pc")"/txm*.pc; do
        prefix=$(sed -n 's/^prefix=//p' "$f")
        sed "s|^prefix=.*|prefix=$tmp/root$prefix|" "$f" >"$tmp/pc/$(basename "$f")"
    done
    TXM_ROOT_PREFIX=$tmp/root$(sed -n 's/^prefix=//p' "$pc")
    export PKG_CONFIG_PATH="$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    unset LD_LIBRARY_PATH
}

txm_check_libs_under() {
    local exe=$1 dir=$2 libs
    libs=$(ldd "$exe" | grep -E 'libtxm(-billing)?\.so') || { echo "$exe loads no libtxm"; return 1; }
    printf '%s\n' "$libs"
    if grep -v -F "$dir" <<<"$libs" | grep -q libtxm; then
        echo "$exe loads a libtxm from outside $dir"
        return 1
    fi
}
