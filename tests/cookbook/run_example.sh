#!/bin/bash
# Runs one docs/cookbook.md example on one engine: SQLite on a file in a fresh temporary directory
# (removed afterwards), PostgreSQL / MariaDB on TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL (exit 77,
# skipped, when the variable is not set). The example's exit status is the test's.
set -u
engine=${1:?engine}
example=${2:?example executable}
case "$engine" in
sqlite)
    tmp=$(mktemp -d /tmp/txm-cookbook-XXXXXX) || exit 1
    trap 'rm -rf "$tmp"' EXIT
    "$example" "sqlite:$tmp/cookbook.db"
    ;;
postgresql)
    [ -n "${TXM_TEST_PG_URL:-}" ] || { echo "skip: TXM_TEST_PG_URL is not set"; exit 77; }
    exec "$example" "$TXM_TEST_PG_URL"
    ;;
mysql)
    [ -n "${TXM_TEST_MYSQL_URL:-}" ] || { echo "skip: TXM_TEST_MYSQL_URL is not set"; exit 77; }
    exec "$example" "$TXM_TEST_MYSQL_URL"
    ;;
*)
    echo "unknown engine $engine"; exit 1
    ;;
esac
