#!/usr/bin/env bash
# Throwaway MariaDB (10.11 on Debian 12) server for tests.
#
#   scripts/mariadb-server.sh start DIR   installs mariadb-server if missing, writes DIR/my.cnf,
#                                         initialises DIR/data (kept and reused if it exists),
#                                         starts mariadbd on 127.0.0.1 on a free non-default port
#                                         (socket DIR/mysqld.sock), creates database `txm` and user
#                                         txm (password txm-secret), writes DIR/pid and DIR/url and
#                                         prints the URL as the last line of stdout:
#                                           mysql://txm:txm-secret@127.0.0.1:PORT/txm
#   scripts/mariadb-server.sh stop DIR    stops the server whose pid is in DIR/pid (SIGTERM =
#                                         clean shutdown, SIGKILL after 30 s); idempotent
#
# Only DIR/my.cnf is read (--defaults-file), so a system MariaDB (its /etc/mysql config, port
# 3306, /run/mysqld socket), running or not, neither matters nor interferes. Server errors go to
# DIR/error.log. Durability is relaxed (innodb_flush_log_at_trx_commit=2): test data only.
#
# User txm may: everything on database txm and on databases named txm_* (suites that want their
# own database), PROCESS (see every thread in SHOW PROCESSLIST), CONNECTION ADMIN (KILL any
# connection; killing its own threads needs no privilege at all) and RELOAD (FLUSH TABLES WITH
# READ LOCK: a test holds COMMIT waiting on the commit lock deterministically).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

usage() { txm_die "usage: $0 start|stop DIR"; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

my_stop() {
    local pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if txm_pid_alive "$pid" && txm_pid_matches "$pid" "$dir/my.cnf"; then
        txm_stop_pid "$pid" TERM 30 || txm_die "MariaDB (pid $pid) did not stop"
    fi
    rm -f "$dir/pid"
}

write_cnf() {
    local port=$1
    cat >"$dir/my.cnf" <<EOF
# Written by scripts/mariadb-server.sh; rewritten at every start.
[client]
socket = $dir/mysqld.sock
port = $port
host = 127.0.0.1

[mariadbd]
datadir = $dir/data
socket = $dir/mysqld.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/error.log
tmpdir = $dir/tmp
port = $port
bind-address = 127.0.0.1
skip-name-resolve
skip-log-bin
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
innodb_lock_wait_timeout = 1
innodb_flush_log_at_trx_commit = 2
innodb-buffer-pool-size = 64M
innodb_log_file_size = 16M
max_connections = 200
EOF
}

# Client on the Unix socket as root (root@localhost has no password here).
as_root_sql() {
    mariadb --defaults-file="$dir/my.cnf" --protocol=socket -uroot --connect-timeout=5 "$@"
}

my_start() {
    [ "$(id -u)" = 0 ] || txm_die "$0 must run as root"
    txm_need_pkgs mariadb-server
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] ||
        txm_die "mariadbd not found after installing mariadb-server"
    local mariadbd
    mariadbd=$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && txm_pid_alive "$(cat "$dir/pid")" &&
        txm_pid_matches "$(cat "$dir/pid")" "$dir/my.cnf" && [ -f "$dir/url" ]; then
        txm_log "MariaDB already running in $dir (pid $(cat "$dir/pid"))"
        cat "$dir/url"
        return 0
    fi
    rm -f "$dir/pid" "$dir/url"
    mkdir -p "$dir/tmp"

    local port
    port=$(txm_free_port)
    write_cnf "$port"
    if [ ! -d "$dir/data/mysql" ]; then
        rm -rf "$dir/data"
        mariadb-install-db --defaults-file="$dir/my.cnf" --user=root \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install-db.log" 2>&1 || {
            cat "$dir/install-db.log" >&2
            txm_die "mariadb-install-db failed (log: $dir/install-db.log)"
        }
    fi

    local attempt pid="" ok=0 i
    for attempt in 1 2 3 4 5; do
        [ "$attempt" = 1 ] || { port=$(txm_free_port); write_cnf "$port"; }
        : >"$dir/error.log"
        # --defaults-file must be the first option. stdin from /dev/null: no TTY needed.
        "$mariadbd" --defaults-file="$dir/my.cnf" --user=root </dev/null >"$dir/mariadbd.out" 2>&1 &
        pid=$!
        for ((i = 0; i < 300; i++)); do
            txm_pid_alive "$pid" || break
            if mariadb-admin --defaults-file="$dir/my.cnf" --protocol=socket -uroot \
                --connect-timeout=2 ping >/dev/null 2>&1; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ "$ok" = 1 ] && break
        if ! txm_pid_alive "$pid" && grep -qi 'bind on tcp/ip port\|address already in use' \
            "$dir/error.log"; then
            txm_log "port $port was taken; retrying (attempt $attempt)"
            continue
        fi
        break
    done
    if [ "$ok" != 1 ]; then
        cat "$dir/error.log" "$dir/mariadbd.out" >&2 || true
        txm_pid_alive "$pid" && txm_stop_pid "$pid" KILL 5 || true
        txm_die "MariaDB did not start within 30 s (log: $dir/error.log)"
    fi
    echo "$pid" >"$dir/pid"

    as_root_sql <<'EOF' || { my_stop; txm_die "creating database/user txm failed"; }
CREATE DATABASE IF NOT EXISTS txm;
CREATE USER IF NOT EXISTS 'txm'@'127.0.0.1' IDENTIFIED BY 'txm-secret';
CREATE USER IF NOT EXISTS 'txm'@'%' IDENTIFIED BY 'txm-secret';
CREATE USER IF NOT EXISTS 'txm'@'localhost' IDENTIFIED BY 'txm-secret';
GRANT ALL PRIVILEGES ON txm.* TO 'txm'@'127.0.0.1', 'txm'@'%', 'txm'@'localhost';
GRANT ALL PRIVILEGES ON `txm\_%`.* TO 'txm'@'127.0.0.1', 'txm'@'%', 'txm'@'localhost';
GRANT PROCESS, CONNECTION ADMIN, RELOAD ON *.* TO 'txm'@'127.0.0.1', 'txm'@'%', 'txm'@'localhost';
-- the secrets test creates a user with a tricky password and lets it use txm (tests/secrets)
GRANT CREATE USER ON *.* TO 'txm'@'127.0.0.1', 'txm'@'%', 'txm'@'localhost';
GRANT ALL PRIVILEGES ON txm.* TO 'txm'@'127.0.0.1', 'txm'@'%', 'txm'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
EOF

    local url="mysql://txm:txm-secret@127.0.0.1:$port/txm"
    echo "$url" >"$dir/url"
    txm_log "MariaDB running: pid $pid, port $port, data $dir/data, log $dir/error.log"
    echo "$url"
}

case "$cmd" in
start) my_start ;;
stop)
    [ -d "$dir" ] || exit 0
    my_stop
    ;;
*) usage ;;
esac
