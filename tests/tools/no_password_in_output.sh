#!/bin/sh
# The `txm` command never prints a password: it shows URLs as the core redacts them. Runs the
# demo and the conformance launcher on URLs that cannot connect (port 1), with the password in
# each form the core knows, and fails if the password appears in anything printed.
#   no_password_in_output.sh PATH-TO-txm PATH-TO-txm-conformance
set -u
txm=$1
conf=$2
secret='Sx7Secret'
fail=0
for url in \
    "postgresql://txm:$secret@127.0.0.1:1/txm" \
    "postgres:host=127.0.0.1 port=1 password=$secret dbname=x" \
    "postgresql:host=127.0.0.1 port=1 password='$secret' dbname=x" \
    "postgresql://txm@127.0.0.1:1/txm?password=$secret" \
    "postgresql://txm@127.0.0.1:1/txm?pass%77ord=$secret" \
    "mysql://txm:$secret@127.0.0.1:1/txm" \
    "mysql:password=$secret" \
    "fault+postgresql://txm:$secret@127.0.0.1:1/txm?fault=deadlock"
do
    for cmd in demo conformance; do
        if [ "$cmd" = demo ]; then
            out=$("$txm" demo --url "$url" 2>&1)
        else
            # A few conformance tests: each fails to connect and reports why.
            out=$(TXM_CONFORMANCE_BIN=$conf "$txm" conformance "$url" --filter 'conn/*' 2>&1)
        fi
        case "$out" in
        *"$secret"*)
            echo "FAIL: 'txm $cmd' printed the password for a URL of the form ${url%%:*}:..." >&2
            printf '%s\n' "$out" | sed "s/$secret/<PASSWORD>/g" >&2
            fail=1
            ;;
        esac
    done
done
[ "$fail" = 0 ] && echo "txm demo/conformance: no password in the output of 16 failing runs"
exit "$fail"
