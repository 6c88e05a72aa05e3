# Shared helpers for the scripts in this directory. Source it; do not run it.
#
#   txm_need_pkgs PKG...   installs the Debian packages that are missing (apt-get update once,
#                          only if something must be installed); no-op when all are present
#   txm_free_port          prints a TCP port nobody listens on (random, 20000-59999)
#   txm_pid_alive PID      0 if PID is a live process (zombies count as dead)
#   txm_stop_pid PID SIG SECONDS
#                          sends SIG, waits up to SECONDS for the process to go, then SIGKILL
#
# Nothing here depends on python3 or procps: a fresh Debian 12 image has neither.

txm_log() { printf '%s\n' "$*" >&2; }
txm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get update is run at most once per process tree that sources this file.
_TXM_APT_UPDATED=${_TXM_APT_UPDATED:-0}

_txm_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# While we install, keep Debian's maintainer scripts from starting system services (a system
# PostgreSQL on 5432 or MariaDB on 3306): our servers neither need nor want them. If the machine
# already has a policy (Docker images often do), it is left alone.
_txm_policy_added=0
_txm_block_services() {
    # A file carrying our marker is a leftover of an interrupted run: ours to reuse and remove.
    if [ ! -e /usr/sbin/policy-rc.d ] || grep -q 'added by txm scripts' /usr/sbin/policy-rc.d; then
        printf '#!/bin/sh\n# added by txm scripts/lib.sh during apt-get install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        _txm_policy_added=1
    fi
}
_txm_unblock_services() {
    if [ "$_txm_policy_added" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
        _txm_policy_added=0
    fi
}

txm_need_pkgs() {
    local missing=() p
    for p in "$@"; do
        _txm_pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            txm_die "missing packages (${missing[*]}) and not root: install them or run as root"
        sudo=(sudo)
    fi
    txm_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$_TXM_APT_UPDATED" != 1 ]; then
        "${sudo[@]}" apt-get update -q >&2 || txm_die "apt-get update failed"
        _TXM_APT_UPDATED=1
        export _TXM_APT_UPDATED
    fi
    local rc=0
    if [ "${#sudo[@]}" -eq 0 ]; then _txm_block_services; fi
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 || rc=$?
    _txm_unblock_services
    [ "$rc" -eq 0 ] || txm_die "apt-get install ${missing[*]} failed (exit $rc)"
}

# Ports in LISTEN state on any address, from /proc (hex local port of rows whose state is 0A).
_txm_listening_ports() {
    local f table
    for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        # Read the table in one go: bash's `read` from a /proc file reads one byte per system
        # call and /proc regenerates the table for each, which takes minutes when the machine
        # holds thousands of TIME_WAIT sockets (other test sessions).
        table=$(cat "$f") || continue
        while read -r _ local _ st _; do
            [ "$st" = 0A ] && printf '%d\n' "0x${local##*:}"
        done <<<"$table"
    done
}

txm_free_port() {
    local used port i
    used=" $(_txm_listening_ports | tr '\n' ' ') "
    for i in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        case "$used" in *" $port "*) continue ;; esac
        # Belt and braces: nothing answers on it either.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    txm_die "could not find a free TCP port"
}

txm_pid_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$state" != X ]
}

# txm_pid_matches PID WORD: the process's command line contains WORD (guards against a pid that
# was recycled after the server died).
txm_pid_matches() {
    local pid=$1 word=$2
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$word"
}

txm_stop_pid() {
    local pid=$1 sig=$2 secs=$3 i
    txm_pid_alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        txm_pid_alive "$pid" || return 0
        sleep 0.1
    done
    txm_log "pid $pid still running after ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        txm_pid_alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}
