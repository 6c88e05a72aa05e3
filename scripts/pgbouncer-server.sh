#!/usr/bin/env bash
# Throwaway PgBouncer in front of a test PostgreSQL (scripts/pg-server.sh), in TRANSACTION pooling.
#
#   scripts/pgbouncer-server.sh start DIR PG_URL
#                                    installs pgbouncer if missing, writes DIR/pgbouncer.ini and
#                                    DIR/userlist.txt (the user and password of PG_URL), starts
#                                    pgbouncer on 127.0.0.1 on a free non-default port
#                                    (pool_mode=transaction, no Unix socket), writes DIR/pid and
#                                    DIR/url, prints the URL through the pooler as the last line:
#                                      postgresql://txm:txm-secret@127.0.0.1:PORT/txm
#   scripts/pgbouncer-server.sh stop DIR
#                                    stops the pgbouncer whose pid is in DIR/pid (SIGINT, SIGKILL
#                                    after 30 s); idempotent
#
# PgBouncer refuses to run as root: it runs as user postgres (through runuser). It authenticates
# clients with SCRAM against the userlist (plain-text password, so that it can log in to the
# server with SCRAM too, as pg-server.sh's pg_hba requires). The log is DIR/pgbouncer.log.
# A system pgbouncer service (the Debian package's, port 6432) is neither used nor touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() { txm_die "usage: $0 start DIR PG_URL | stop DIR"; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$2

as_pg() { runuser -u postgres -- "$@"; }

bouncer_stop() {
    local pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if txm_pid_alive "$pid" && txm_pid_matches "$pid" pgbouncer; then
        txm_stop_pid "$pid" INT 30 || txm_die "pgbouncer (pid $pid) did not stop"
    fi
    rm -f "$dir/pid"
}

bouncer_start() {
    local url=$1 re user pass host port db
    [ "$(id -u)" = 0 ] || txm_die "$0 must run as root (it runs pgbouncer as user postgres)"
    re='^postgres(ql)?://([^:@/]+):([^@/]*)@([^:/]+):([0-9]+)/([^?]+)$'
    [[ $url =~ $re ]] || txm_die "PG_URL must look like postgresql://USER:PASSWORD@HOST:PORT/DB"
    user=${BASH_REMATCH[2]} pass=${BASH_REMATCH[3]} host=${BASH_REMATCH[4]} port=${BASH_REMATCH[5]}
    db=${BASH_REMATCH[6]}
    case "$user$pass$db" in *[\"\ %]*) txm_die "user, password and database must not contain '\"', '%' or blanks" ;; esac
    txm_need_pkgs pgbouncer
    [ -x /usr/sbin/pgbouncer ] || txm_die "/usr/sbin/pgbouncer not found after installing pgbouncer"
    id postgres >/dev/null 2>&1 || txm_die "user postgres does not exist"

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && txm_pid_alive "$(cat "$dir/pid")" &&
        txm_pid_matches "$(cat "$dir/pid")" pgbouncer && [ -f "$dir/url" ]; then
        txm_log "pgbouncer already running in $dir (pid $(cat "$dir/pid"))"
        cat "$dir/url"
        return 0
    fi
    rm -f "$dir/pid" "$dir/url" "$dir/pgbouncer.pid"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    as_pg test -w "$dir" ||
        txm_die "user postgres cannot write $dir: every parent directory must be searchable (chmod o+x)"
    printf '"%s" "%s"\n' "$user" "$pass" >"$dir/userlist.txt"
    chown postgres:postgres "$dir/userlist.txt"
    chmod 600 "$dir/userlist.txt"

    local lport attempt ok=0 i pid=""
    for attempt in 1 2 3 4 5; do
        lport=$(txm_free_port)
        cat >"$dir/pgbouncer.ini" <<EOF
[databases]
$db = host=$host port=$port dbname=$db

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $lport
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 300
default_pool_size = 40
max_db_connections = 60
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
        chown postgres:postgres "$dir/pgbouncer.ini"
        : >"$dir/pgbouncer.log"
        chown postgres:postgres "$dir/pgbouncer.log"
        # -d: daemonize once the listening socket is bound (a bind failure exits non-zero).
        if as_pg /usr/sbin/pgbouncer -d -q "$dir/pgbouncer.ini" >>"$dir/pgbouncer.log" 2>&1; then
            for ((i = 0; i < 100; i++)); do
                [ -s "$dir/pgbouncer.pid" ] && break
                sleep 0.1
            done
            if [ -s "$dir/pgbouncer.pid" ]; then
                ok=1
                break
            fi
        fi
        if grep -qi 'address already in use\|could not bind' "$dir/pgbouncer.log"; then
            txm_log "port $lport was taken; retrying (attempt $attempt)"
            continue
        fi
        break
    done
    if [ "$ok" != 1 ]; then
        cat "$dir/pgbouncer.log" >&2
        txm_die "pgbouncer did not start (log: $dir/pgbouncer.log)"
    fi
    pid=$(cat "$dir/pgbouncer.pid")
    echo "$pid" >"$dir/pid"
    # Ready when it accepts TCP connections.
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$lport") 2>/dev/null && break
        txm_pid_alive "$pid" || break
        sleep 0.1
    done
    txm_pid_alive "$pid" || {
        cat "$dir/pgbouncer.log" >&2
        rm -f "$dir/pid"
        txm_die "pgbouncer exited right after starting (log: $dir/pgbouncer.log)"
    }
    local out="postgresql://$user:$pass@127.0.0.1:$lport/$db"
    echo "$out" >"$dir/url"
    chmod 600 "$dir/url"
    txm_log "pgbouncer (transaction pooling) running: pid $pid, port $lport -> $host:$port, log $dir/pgbouncer.log"
    echo "$out"
}

case "$cmd" in
start)
    [ $# -eq 3 ] || usage
    bouncer_start "$3"
    ;;
stop)
    [ $# -eq 2 ] || usage
    [ -d "$dir" ] || exit 0
    bouncer_stop
    ;;
*) usage ;;
esac
