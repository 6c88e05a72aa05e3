#!/bin/bash
# Fails if a file of billing/ includes anything but the C library, <txm.h>, <txm/billing.h> and
# its own "internal.h": the billing layer is built on txm's public API only.
set -u
root=${1:?source root}
bad=0
shopt -s nullglob
files=("$root"/billing/*.c "$root"/billing/*.h)
if [ ${#files[@]} -eq 0 ]; then echo "no billing sources under $root/billing"; exit 1; fi
for f in "${files[@]}"; do
    while IFS= read -r line; do
        inc=$(printf '%s' "$line" | sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*//')
        case "$inc" in
            '<txm.h>'|'<txm/billing.h>'|'"internal.h"') ;;
            '<txm/'*|*core/*|*drivers/*|'"'*) echo "$f: forbidden include $inc (billing uses txm's public API only)"; bad=1 ;;
            '<'*'>') ;;
            *) echo "$f: unrecognised include line: $line"; bad=1 ;;
        esac
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include' "$f")
done
[ $bad -eq 0 ] && echo "billing layering ok: ${#files[@]} files include only the public API"
exit $bad
