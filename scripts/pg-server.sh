#!/usr/bin/env bash
# Throwaway PostgreSQL 15 server for tests.
#
#   scripts/pg-server.sh start DIR   installs postgresql-15 if missing, creates a cluster in DIR
#                                    (kept and reused if it exists), starts it on 127.0.0.1 on a
#                                    free non-default port (Unix socket in DIR), creates role and
#                                    database `txm` (password txm-secret), writes DIR/pid and
#                                    DIR/url, prints the URL as the last line of stdout:
#                                      postgresql://txm:txm-secret@127.0.0.1:PORT/txm
#   scripts/pg-server.sh stop DIR    stops the server whose pid is in DIR/pid (SIGINT = fast
#                                    shutdown, SIGKILL after 30 s); idempotent
#
# Runs as root (the server itself runs as user postgres through runuser). The server log is
# DIR/server.log. Durability is off (fsync, synchronous_commit, full_page_writes): test data only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
usage() { txm_die "usage: $0 start|stop DIR"; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

as_pg() { runuser -u postgres -- "$@"; }

pg_stop() {
    local pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if txm_pid_alive "$pid" && txm_pid_matches "$pid" postgres; then
        txm_stop_pid "$pid" INT 30 || txm_die "PostgreSQL (pid $pid) did not stop"
    fi
    rm -f "$dir/pid"
}

pg_start() {
    [ "$(id -u)" = 0 ] || txm_die "$0 must run as root (it runs the server as user postgres)"
    txm_need_pkgs postgresql-15
    [ -x "$PGBIN/postgres" ] || txm_die "$PGBIN/postgres not found after installing postgresql-15"
    id postgres >/dev/null 2>&1 || txm_die "user postgres does not exist"

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && txm_pid_alive "$(cat "$dir/pid")" &&
        txm_pid_matches "$(cat "$dir/pid")" postgres && [ -f "$dir/url" ]; then
        txm_log "PostgreSQL already running in $dir (pid $(cat "$dir/pid"))"
        cat "$dir/url"
        return 0
    fi
    rm -f "$dir/pid" "$dir/url"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    as_pg test -w "$dir" ||
        txm_die "user postgres cannot write $dir: every parent directory must be searchable (chmod o+x)"

    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir/data"
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
            --auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions \
            >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            txm_die "initdb failed (log: $dir/initdb.log)"
        }
    fi

    # Pick a port, try to start; if another process grabbed the port in between, try another.
    local port attempt pid="" ok=0
    for attempt in 1 2 3 4 5; do
        port=$(txm_free_port)
        : >"$dir/server.log"
        chown postgres:postgres "$dir/server.log"
        if as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -s \
            -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c deadlock_timeout=20ms -c max_connections=100 -c max_prepared_transactions=10" \
            start >>"$dir/server.log" 2>&1; then
            ok=1
            break
        fi
        if grep -qi 'could not bind\|address already in use\|could not create any TCP/IP sockets' \
            "$dir/server.log"; then
            txm_log "port $port was taken; retrying (attempt $attempt)"
            as_pg "$PGBIN/pg_ctl" -D "$dir/data" -s -m immediate stop >/dev/null 2>&1 || true
            continue
        fi
        break
    done
    if [ "$ok" != 1 ]; then
        cat "$dir/server.log" >&2
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -s -m immediate stop >/dev/null 2>&1 || true
        txm_die "PostgreSQL did not start (log: $dir/server.log)"
    fi
    pid=$(head -n1 "$dir/data/postmaster.pid")
    echo "$pid" >"$dir/pid"

    # pg_ctl -w returned after the server accepted connections; confirm and create role and db.
    local i
    for ((i = 0; i < 300; i++)); do
        as_pg "$PGBIN/pg_isready" -q -h "$dir" -p "$port" -d postgres && break
        txm_pid_alive "$pid" || break
        sleep 0.1
    done
    as_pg "$PGBIN/pg_isready" -q -h "$dir" -p "$port" -d postgres || {
        cat "$dir/server.log" >&2
        pg_stop
        txm_die "PostgreSQL did not become ready within 30 s"
    }
    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres)
    if [ "$(as_pg "${psql[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'txm'")" != 1 ]; then
        as_pg "${psql[@]}" -c "CREATE ROLE txm LOGIN CREATEDB PASSWORD 'txm-secret'" >/dev/null
    fi
    # CREATEROLE: the secrets test creates a role with a tricky password (tests/secrets).
    as_pg "${psql[@]}" -c "ALTER ROLE txm CREATEROLE" >/dev/null
    if [ "$(as_pg "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'txm'")" != 1 ]; then
        as_pg "${psql[@]}" -c "CREATE DATABASE txm OWNER txm" >/dev/null
    fi

    local url="postgresql://txm:txm-secret@127.0.0.1:$port/txm"
    echo "$url" >"$dir/url"
    txm_log "PostgreSQL 15 running: pid $pid, port $port, data $dir/data, log $dir/server.log"
    echo "$url"
}

case "$cmd" in
start) pg_start ;;
stop)
    [ -d "$dir" ] || exit 0
    pg_stop
    ;;
*) usage ;;
esac
