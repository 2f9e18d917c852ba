#!/usr/bin/env bash
# Local infrastructure bootstrap: RabbitMQ + PostgreSQL for development and tests.
#
#   scripts/infra.sh up       make both reachable, write .run/infra.env, print a summary
#   scripts/infra.sh down     stop what `up` started
#   scripts/infra.sh status   show mode, ports, pids
#   scripts/infra.sh env      print .run/infra.env   (use: source .run/infra.env)
#   scripts/infra.sh restart-rabbitmq | stop-rabbitmq | start-rabbitmq | restart-postgres
#                             fault injection for chaos runs (local and docker mode only)
#
# `up` picks the first mode that applies:
#   external  RABBITMQ_URL and DATABASE_URL are both set: use them as they are.
#   local     otherwise: install missing Debian packages and run both servers as
#             plain processes, with their state in the git-ignored .run/ folder.
#   docker    only when asked (INFRA_MODE=docker): rabbitmq and postgres of
#             deploy/compose.yaml (scripts/compose.sh up rabbitmq postgres). A Docker
#             engine that answers does not change the default: the chaos runs and the
#             benchmarks are measured on the local servers, and make compose-up is the
#             way to run everything under compose.
# INFRA_MODE=external|docker|local forces a mode. (.run/infra.env exports INFRA_MODE,
# so `up` after `source .run/infra.env` keeps the recorded mode instead of
# mistaking the exported URLs for external services.)
#
# Local-mode settings (environment): INFRA_AMQP_PORT (5672), INFRA_MGMT_PORT (15672),
# INFRA_PROM_PORT (15692), INFRA_PG_PORT (5432). Everything listens on 127.0.0.1 only.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
RUN_DIR="$ROOT/.run"
ENV_FILE="$RUN_DIR/infra.env"

# shellcheck source-path=SCRIPTDIR source=lib/rabbitmq-env.sh
source "$SCRIPT_DIR/lib/rabbitmq-env.sh"

PG_PORT="${INFRA_PG_PORT:-5432}"
PG_BASE="$RUN_DIR/postgres"         # always exists; holds the data unless we must fall back
PG_DB=admissions
PG_PASSWORD=postgres

RMQ_START_TIMEOUT=90
EXTERNAL_TIMEOUT=60

log()  { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die()  { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

# True if something accepts TCP connections on host:port (bash /dev/tcp, so no
# nc/curl dependency; `timeout` guards against filtered ports).
tcp_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# True if the pid exists and is not a zombie. `kill -0` alone is not enough:
# when PID 1 of a container does not reap orphans, a dead server lingers as a
# zombie and `kill -0` still succeeds.
pid_alive() {
    local pid=$1 state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z && "$state" != X ]]
}

# Close every inherited file descriptor above 2. Used in a subshell right before
# exec'ing a long-running server: a server that keeps some caller's pipe open
# (a CI runner's, our own lock on fd 9) makes whoever waits on it wait forever.
close_extra_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
            exec {fd}>&- 2>/dev/null || true
        fi
    done
}

read_pid() { [[ -r "$1" ]] && head -n1 "$1" | tr -dc '0-9' || true; }

# Wait until `pid` is gone, up to `secs` seconds.
wait_pid_gone() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 5; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    ! pid_alive "$pid"
}

hash_of_root() { printf '%s' "$ROOT" | sha256sum | cut -c1-12; }

# Write a file atomically (readers never see a half-written env file).
write_atomic() {
    local dest=$1 tmp
    tmp="$(mktemp "$dest.XXXXXX")"
    cat >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dest"
}

# Serialise concurrent `up`/`down` runs (e.g. parallel test jobs) so they do not
# start two nodes on the same data. Servers are launched with close_extra_fds,
# otherwise the long-running server would hold the lock forever.
take_lock() {
    mkdir -p "$RUN_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$RUN_DIR/.lock"
        flock -w 300 9 || die "another infra.sh is still running (lock $RUN_DIR/.lock)"
    fi
}

# ---------------------------------------------------------------------------
# Env file
# ---------------------------------------------------------------------------

# write_env MODE AMQP_URL DB_URL MGMT_URL MGMT_USER MGMT_PASSWORD
write_env() {
    local i name value
    local -a names=(INFRA_MODE RABBITMQ_URL DATABASE_URL RABBITMQ_MANAGEMENT_URL
                    RABBITMQ_MANAGEMENT_USER RABBITMQ_MANAGEMENT_PASSWORD)
    local -a values=("$@")
    {
        echo "# Written by scripts/infra.sh up on $(date -u '+%Y-%m-%dT%H:%M:%SZ'). Use: source .run/infra.env"
        for i in "${!names[@]}"; do
            name=${names[$i]}
            value=${values[$i]}
            # POSIX single quotes ('\'' for a quote): the file is also sourced
            # by /bin/sh (dash) from the Makefile, which knows no $'...' quoting.
            printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
        done
    } | write_atomic "$ENV_FILE"
}

# Value of one variable from the env file, evaluated in a subshell.
env_file_get() {
    [[ -r "$ENV_FILE" ]] || return 0
    # shellcheck disable=SC1090
    ( source "$ENV_FILE" >/dev/null 2>&1; printf '%s' "${!1:-}" )
}

print_summary() {
    local mode=$1 amqp=$2 db=$3 mgmt=$4 user=$5
    log "mode:       $mode"
    log "RabbitMQ:   $amqp"
    log "management: $mgmt (user $user)"
    log "Postgres:   $db"
    log "env file:   $ENV_FILE   (source it, or: scripts/infra.sh env)"
}

# ---------------------------------------------------------------------------
# Mode: external
# ---------------------------------------------------------------------------

# Print "host port" of a URL (scheme://[user[:pass]@]host[:port][/...]).
url_host_port() {
    local url=$1 default_port=$2 rest host port
    rest=${url#*://}
    rest=${rest%%[/?#]*}
    rest=${rest##*@}
    rest=${rest%%,*}                       # multi-host postgres URLs: check the first
    if [[ $rest == \[* ]]; then            # [ipv6]:port
        host=${rest#[}; host=${host%%]*}
        port=${rest##*]}; port=${port#:}
    elif [[ $rest == *:* ]]; then
        host=${rest%%:*}; port=${rest##*:}
    else
        host=$rest; port=
    fi
    printf '%s %s\n' "$host" "${port:-$default_port}"
}

url_userinfo() {
    local rest=${1#*://}
    rest=${rest%%[/?#]*}
    [[ $rest == *@* ]] && printf '%s' "${rest%@*}"
    return 0
}

# Percent-decoding for the credentials in a URL (s3cr%40t -> s3cr@t).
url_decode() { printf '%b' "${1//%/\\x}"; }

wait_tcp() {
    local what=$1 host=$2 port=$3 secs=$4 deadline
    deadline=$((SECONDS + secs))
    until tcp_open "$host" "$port"; do
        ((SECONDS < deadline)) || die "$what at $host:$port does not accept connections after ${secs}s"
        sleep 1
    done
}

up_external() {
    local amqp=$RABBITMQ_URL db=$DATABASE_URL host port default_port userinfo
    log "external mode: using RABBITMQ_URL and DATABASE_URL from the environment"

    [[ $amqp == amqps://* ]] && default_port=5671 || default_port=5672
    read -r host port < <(url_host_port "$amqp" "$default_port")
    [[ -n $host ]] || die "cannot find a host in RABBITMQ_URL"
    wait_tcp RabbitMQ "$host" "$port" "$EXTERNAL_TIMEOUT"

    read -r host port < <(url_host_port "$db" 5432)
    if [[ -n $host ]]; then
        wait_tcp PostgreSQL "$host" "$port" "$EXTERNAL_TIMEOUT"
    else
        warn "DATABASE_URL has no TCP host (unix socket?); not checked"
    fi

    # Management API: taken from the environment when given, else derived from
    # the AMQP URL (same host, default port, same credentials).
    read -r host port < <(url_host_port "$amqp" "$default_port")
    [[ $host == *:* ]] && host="[$host]"
    userinfo="$(url_userinfo "$amqp")"
    local mgmt_url="${RABBITMQ_MANAGEMENT_URL:-http://$host:15672/}"
    local mgmt_user="${RABBITMQ_MANAGEMENT_USER:-}"
    local mgmt_pass="${RABBITMQ_MANAGEMENT_PASSWORD:-}"
    if [[ -z $mgmt_user ]]; then
        if [[ -n $userinfo ]]; then
            mgmt_user="$(url_decode "${userinfo%%:*}")"
            [[ $userinfo == *:* ]] && mgmt_pass=${mgmt_pass:-$(url_decode "${userinfo#*:}")}
        else
            mgmt_user=guest; mgmt_pass=${mgmt_pass:-guest}
        fi
    fi

    write_env external "$amqp" "$db" "$mgmt_url" "$mgmt_user" "$mgmt_pass"
    print_summary external "$amqp" "$db" "$mgmt_url" "$mgmt_user"
}

# ---------------------------------------------------------------------------
# Mode: docker
# ---------------------------------------------------------------------------

# docker compose with the settings scripts/compose.sh chose (engine, images).
compose() { bash "$SCRIPT_DIR/compose.sh" run "$@"; }

up_docker() {
    local amqp_port=${INFRA_AMQP_PORT:-5672} mgmt_port=${INFRA_MGMT_PORT:-15672}
    log "docker mode: scripts/compose.sh up rabbitmq postgres"
    INFRA_AMQP_PORT=$amqp_port INFRA_MGMT_PORT=$mgmt_port INFRA_PG_PORT=$PG_PORT \
        bash "$SCRIPT_DIR/compose.sh" up rabbitmq postgres
    local amqp="amqp://guest:guest@127.0.0.1:$amqp_port/"
    local db="postgresql://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    local mgmt="http://127.0.0.1:$mgmt_port/"
    write_env docker "$amqp" "$db" "$mgmt" guest guest
    print_summary docker "$amqp" "$db" "$mgmt" guest
}

# ---------------------------------------------------------------------------
# Mode: local — packages
# ---------------------------------------------------------------------------

pg_bindir_latest() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [[ -n $d && -x $d/initdb ]] && printf '%s\n' "$d"
}

ensure_packages() {
    local -a pkgs=() sudo=()
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || pkgs+=(rabbitmq-server)
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || pkgs+=(postgresql)
    ((${#pkgs[@]})) || return 0

    if ! is_root; then
        command -v sudo >/dev/null 2>&1 || die "missing packages (${pkgs[*]}); run as root or install sudo"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${pkgs[*]} (apt-get update first)"

    # Debian starts services on installation; the system rabbitmq/postgres would
    # take ports 5672/4369/5432 that our own instances need. policy-rc.d (exit 101)
    # is the standard way to stop that; it is removed again afterwards if we made it.
    local made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, by scripts/infra.sh: no service start during install\nexit 101\n' \
            | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
        # Also removed if we are interrupted during the installation.
        # shellcheck disable=SC2064  # expand now: sudo is a local variable
        trap "${sudo[*]} rm -f /usr/sbin/policy-rc.d" EXIT
    fi
    local rc=0
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
    } </dev/null || rc=$?
    if [[ -n $made_policy ]]; then
        "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    ((rc == 0)) || die "apt-get failed (exit $rc) while installing: ${pkgs[*]}"
}

# Refuse to start when one of our ports is already served by someone else.
require_port_free() {
    local port=$1 what=$2 var=$3
    if tcp_open 127.0.0.1 "$port"; then
        die "port $port ($what) on 127.0.0.1 is already in use by another process;" \
            "stop it or choose another port with $var=<port>"
    fi
}

# ---------------------------------------------------------------------------
# Mode: local — RabbitMQ
# ---------------------------------------------------------------------------

rmq_launcher_pid() { read_pid "$RMQ_PID_FILE"; }
rmq_beam_pid()     { read_pid "$RMQ_BEAM_PID_FILE"; }

# Our node is running if the process we launched (or the VM it started) is alive
# and really is RabbitMQ (guards against a recycled pid).
rmq_running() {
    local pid
    for pid in "$(rmq_launcher_pid)" "$(rmq_beam_pid)"; do
        if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q rabbit; then
            return 0
        fi
    done
    return 1
}

rmq_write_config() {
    mkdir -p "$RMQ_MNESIA_BASE" "$RMQ_LOG_BASE" "$RMQ_HOME"
    chmod 700 "$RMQ_HOME"    # the Erlang cookie lives here
    : >"$RMQ_CONF_ENV_FILE"
    printf '%s\n' '[rabbitmq_management,rabbitmq_prometheus,rabbitmq_shovel,rabbitmq_shovel_management].' \
        | write_atomic "$RMQ_PLUGINS_FILE"
    write_atomic "$RMQ_CONFIG_FILE" <<EOF
# Generated by scripts/infra.sh (local mode); rewritten on every 'up'.
# Everything on loopback only. guest/guest works because clients connect via 127.0.0.1.
listeners.tcp.1 = 127.0.0.1:$RMQ_AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RMQ_MGMT_PORT
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $RMQ_PROM_PORT
EOF
    # Remembered for scripts/rabbitmqctl.sh and later runs without INFRA_* set.
    write_atomic "$RMQ_BASE/ports.env" <<EOF
RMQ_RECORDED_AMQP_PORT=$RMQ_AMQP_PORT
RMQ_RECORDED_MGMT_PORT=$RMQ_MGMT_PORT
RMQ_RECORDED_PROM_PORT=$RMQ_PROM_PORT
EOF
}

epmd_bin() { command -v epmd 2>/dev/null || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | tail -n1; }

# The Erlang port mapper (4369) is shared by all Erlang nodes of the machine.
# Start it ourselves when none runs, so that `down` knows it may stop it.
ensure_epmd() {
    tcp_open 127.0.0.1 "${ERL_EPMD_PORT:-4369}" && return 0
    local epmd
    epmd="$(epmd_bin)" || true
    [[ -n $epmd ]] || return 0       # the VM will start its own epmd
    ( close_extra_fds; ERL_EPMD_ADDRESS=127.0.0.1 exec "$epmd" -daemon </dev/null >/dev/null 2>&1 ) || return 0
    touch "$RMQ_BASE/epmd.started-by-infra"
}

rmq_wait_started() {
    local launcher=$1 ctl deadline
    deadline=$((SECONDS + RMQ_START_TIMEOUT))
    # Poll the listeners (cheap) while making sure the server did not die.
    until tcp_open 127.0.0.1 "$RMQ_AMQP_PORT" && tcp_open 127.0.0.1 "$RMQ_MGMT_PORT"; do
        if ! pid_alive "$launcher"; then
            tail -n 30 "$RMQ_LOG_BASE/server.out" >&2 || true
            die "RabbitMQ exited during startup; see $RMQ_LOG_BASE/server.out and $RMQ_LOG_BASE/$RMQ_NODENAME.log"
        fi
        ((SECONDS < deadline)) || die "RabbitMQ not reachable on ports $RMQ_AMQP_PORT/$RMQ_MGMT_PORT after" \
            "${RMQ_START_TIMEOUT}s; see $RMQ_LOG_BASE/ (if the app was stopped with stop_app:" \
            "scripts/rabbitmqctl.sh start_app)"
        sleep 0.5
    done
    # Listeners are up; confirm the whole boot (all plugins) has completed.
    ctl="$(rmq_find_bin rabbitmqctl)"
    rmq_run "$ctl" -q await_startup --timeout "$((deadline > SECONDS ? deadline - SECONDS : 5))" \
        </dev/null >/dev/null 2>&1 \
        || die "RabbitMQ did not finish booting; see $RMQ_LOG_BASE/"
}

rmq_check_ports() {
    require_port_free "$RMQ_AMQP_PORT" "RabbitMQ AMQP" INFRA_AMQP_PORT
    require_port_free "$RMQ_MGMT_PORT" "RabbitMQ management" INFRA_MGMT_PORT
    require_port_free "$RMQ_PROM_PORT" "RabbitMQ Prometheus" INFRA_PROM_PORT
    require_port_free "$RMQ_DIST_PORT" "Erlang distribution, AMQP port + 20000" INFRA_AMQP_PORT
}

start_rabbitmq() {
    local server pid
    server="$(rmq_find_bin rabbitmq-server)" || die "rabbitmq-server not found under /usr/lib/rabbitmq"

    if rmq_running; then
        pid="$(rmq_launcher_pid)"
        if [[ ${RMQ_RECORDED_AMQP_PORT:-$RMQ_AMQP_PORT} != "$RMQ_AMQP_PORT" ||
              ${RMQ_RECORDED_MGMT_PORT:-$RMQ_MGMT_PORT} != "$RMQ_MGMT_PORT" ]]; then
            die "our RabbitMQ already runs on ports $RMQ_RECORDED_AMQP_PORT/$RMQ_RECORDED_MGMT_PORT;" \
                "run 'scripts/infra.sh down' before changing INFRA_AMQP_PORT/INFRA_MGMT_PORT"
        fi
        if tcp_open 127.0.0.1 "$RMQ_AMQP_PORT"; then
            log "RabbitMQ already running (pid ${pid:-$(rmq_beam_pid)}, port $RMQ_AMQP_PORT)"
        else
            log "RabbitMQ process is up but not yet listening; waiting"
            rmq_wait_started "${pid:-$(rmq_beam_pid)}"
        fi
        return 0
    fi

    rm -f "$RMQ_PID_FILE" "$RMQ_BEAM_PID_FILE"
    rmq_check_ports
    rmq_write_config
    ensure_epmd

    log "starting RabbitMQ (node $RMQ_NODENAME, AMQP $RMQ_AMQP_PORT, management $RMQ_MGMT_PORT)"
    # Detached: own session (no SIGHUP/Ctrl-C from the caller's terminal), stdin
    # from /dev/null and stdout/stderr to a log file, so it never holds the
    # caller's terminal or pipe open (CI waits for inherited stdout to close).
    # The subshell execs setsid, which execs rabbitmq-server: $! is its pid.
    (
        rmq_export_env
        cd "$RMQ_BASE"       # erl_crash.dump and other stray files land here
        close_extra_fds
        exec setsid "$server" </dev/null >>"$RMQ_LOG_BASE/server.out" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$RMQ_PID_FILE"
    rmq_wait_started "$pid"
    log "RabbitMQ started (pid $pid, VM pid $(rmq_beam_pid))"
}

stop_rabbitmq() {
    local launcher beam ctl pid
    launcher="$(rmq_launcher_pid)"
    beam="$(rmq_beam_pid)"
    if ! rmq_running; then
        rm -f "$RMQ_PID_FILE" "$RMQ_BEAM_PID_FILE"
        log "RabbitMQ: not running"
    else
        log "stopping RabbitMQ (pid ${launcher:-?}, VM pid ${beam:-?})"
        if ctl="$(rmq_find_bin rabbitmqctl)"; then
            rmq_run timeout 60 "$ctl" -q stop </dev/null >/dev/null 2>&1 \
                || warn "rabbitmqctl stop failed; falling back to signals"
        fi
        # The VM and the launcher shell exit on their own after `stop`;
        # signal whatever is left after a grace period.
        for pid in "$beam" "$launcher"; do
            [[ -n $pid ]] || continue
            wait_pid_gone "$pid" 30 && continue
            warn "pid $pid still alive; sending SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            wait_pid_gone "$pid" 15 && continue
            warn "pid $pid still alive; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_pid_gone "$pid" 5 || warn "could not stop pid $pid"
        done
        rm -f "$RMQ_PID_FILE" "$RMQ_BEAM_PID_FILE"
        log "RabbitMQ stopped"
    fi
    stop_epmd_if_ours
}

# Stop epmd only if we started it and no Erlang node is registered any more.
stop_epmd_if_ours() {
    local marker="$RMQ_BASE/epmd.started-by-infra" epmd names
    [[ -e $marker ]] || return 0
    epmd="$(epmd_bin)" || true
    if [[ -z $epmd ]] || ! tcp_open 127.0.0.1 "${ERL_EPMD_PORT:-4369}"; then
        rm -f "$marker"; return 0
    fi
    names="$("$epmd" -names 2>/dev/null </dev/null | grep -c '^name ' || true)"
    if [[ $names == 0 ]]; then
        "$epmd" -kill </dev/null >/dev/null 2>&1 || true
        rm -f "$marker"
        log "epmd stopped"
    else
        log "epmd left running: other Erlang nodes are registered"
    fi
}

# ---------------------------------------------------------------------------
# Mode: local — PostgreSQL
# ---------------------------------------------------------------------------

# Run a command as the owner of the cluster: `postgres` when we are root
# (the server refuses to run as root), else the current user.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Decide where the cluster lives. Normally .run/postgres; if the postgres user
# cannot reach that folder (e.g. the project is under /root, mode 700), use a
# per-project folder under /var/tmp (survives reboots, unlike /tmp), recorded
# in .run/postgres/LOCATION. `pg_locate prepare` (up) also creates the folders
# and hands them to the postgres user; without it (down/status) nothing changes.
pg_locate() {
    local prepare=${1:-}
    PG_DIR="$PG_BASE"
    PG_FALLBACK=
    if [[ -z $prepare ]]; then
        if [[ -r $PG_BASE/LOCATION ]]; then
            PG_DIR="$(head -n1 "$PG_BASE/LOCATION")"
            PG_FALLBACK=1
        fi
    elif is_root; then
        mkdir -p "$PG_BASE"
        id postgres >/dev/null 2>&1 || die "the 'postgres' OS user does not exist (is the postgresql package installed?)"
        chmod 755 "$RUN_DIR"
        chown postgres: "$PG_BASE"
        chmod 755 "$PG_BASE"
        if ! runuser -u postgres -- test -w "$PG_BASE" -a -x "$PG_BASE" 2>/dev/null; then
            PG_DIR="/var/tmp/admissions-postgres-$(hash_of_root)"
            PG_FALLBACK=1
            if [[ -e $PG_DIR && "$(stat -c %U "$PG_DIR")" != postgres ]]; then
                die "$PG_DIR exists but is not owned by postgres; remove it"
            fi
            mkdir -p "$PG_DIR"
            chown postgres: "$PG_DIR"
            chmod 700 "$PG_DIR"
        fi
    else
        mkdir -p "$PG_BASE"
    fi
    PG_DATA="$PG_DIR/data"
    PG_LOG="$PG_DIR/postgres.log"
    PG_SOCKET_DIR="$PG_DIR/socket"
    # A unix socket path must fit in ~107 bytes; deep project paths get a short one.
    if ((${#PG_SOCKET_DIR} > 90)); then
        PG_SOCKET_DIR="/tmp/admissions-pg-$(hash_of_root)"
    fi
    # Binaries of the version that created the cluster (else the newest installed).
    PG_BIN=
    if [[ -r $PG_DATA/PG_VERSION && -x /usr/lib/postgresql/$(cat "$PG_DATA/PG_VERSION")/bin/pg_ctl ]]; then
        PG_BIN="/usr/lib/postgresql/$(cat "$PG_DATA/PG_VERSION")/bin"
    else
        PG_BIN="$(pg_bindir_latest)" || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin"
    fi
    if [[ -n $prepare ]]; then
        if [[ -n $PG_FALLBACK ]]; then
            printf '%s\n' "$PG_DIR" >"$PG_BASE/LOCATION"
        else
            rm -f "$PG_BASE/LOCATION"
        fi
    fi
}

pg_running() { [[ -r $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }
pg_pid()     { [[ -r $PG_DATA/postmaster.pid ]] && head -n1 "$PG_DATA/postmaster.pid" || true; }
pg_psql()    { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@" </dev/null; }

pg_init() {
    local tmp="$PG_DIR/data.initdb" pwfile="$PG_DIR/.pwfile" locale
    [[ -r $PG_DATA/PG_VERSION ]] && return 0
    if [[ -e $PG_DATA ]] && [[ -n "$(ls -A "$PG_DATA" 2>/dev/null)" ]]; then
        die "$PG_DATA exists but is not a PostgreSQL cluster; move it away"
    fi
    log "initialising PostgreSQL cluster in $PG_DATA"
    # C.UTF-8 always exists on Debian and, unlike the C locale, knows non-ASCII
    # letters (upper()/lower() on applicants' names).
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=(--locale=C.UTF-8); else locale=(--no-locale); fi
    rm -rf "$tmp"
    # initdb into a temporary folder and rename at the end: an interrupted
    # initdb never leaves a half-made data directory behind.
    ( umask 077; printf '%s\n' "$PG_PASSWORD" >"$pwfile" )
    is_root && chown postgres: "$pwfile"
    if ! as_pg "$PG_BIN/initdb" -D "$tmp" --username=postgres --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 "${locale[@]}" \
            </dev/null >"$PG_BASE/initdb.out" 2>&1; then
        rm -f "$pwfile"
        cat "$PG_BASE/initdb.out" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"
    # Our settings live in infra.conf (rewritten on every up); include it last.
    printf "\n# Added by scripts/infra.sh: local settings, rewritten on every 'up'\ninclude_if_exists = 'infra.conf'\n" \
        >>"$tmp/postgresql.conf"
    mv "$tmp" "$PG_DATA"
}

pg_write_config() {
    mkdir -p "$PG_SOCKET_DIR"
    is_root && chown postgres: "$PG_SOCKET_DIR"
    chmod 755 "$PG_SOCKET_DIR"
    write_atomic "$PG_DATA/infra.conf" <<EOF
# Generated by scripts/infra.sh (local mode); rewritten on every 'up'.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 200
# fsync stays on: durability is measured, so do not trade it for speed.
fsync = on
EOF
    is_root && chown postgres: "$PG_DATA/infra.conf"
    chmod 600 "$PG_DATA/infra.conf"
}

start_postgres() {
    pg_locate prepare
    [[ -n $PG_FALLBACK ]] && warn "user postgres cannot reach $PG_BASE (parent folders not traversable);" \
        "keeping the PostgreSQL cluster in $PG_DIR instead"

    if pg_running; then
        local running_port
        running_port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
        if [[ -n $running_port && $running_port != "$PG_PORT" ]]; then
            die "our PostgreSQL already runs on port $running_port; run 'scripts/infra.sh down' before changing INFRA_PG_PORT"
        fi
        log "PostgreSQL already running (pid $(pg_pid), port $PG_PORT)"
    else
        require_port_free "$PG_PORT" PostgreSQL INFRA_PG_PORT
        pg_init
        pg_write_config
        is_root && { touch "$PG_LOG"; chown postgres: "$PG_LOG"; }
        log "starting PostgreSQL (port $PG_PORT, data $PG_DATA)"
        # pg_ctl -l sends the server's output to the log file and its stdin from
        # /dev/null, so the server does not hold the caller's terminal/pipe.
        if ! ( close_extra_fds; as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start ) \
                </dev/null >"$PG_BASE/pg_ctl.out" 2>&1; then
            cat "$PG_BASE/pg_ctl.out" >&2
            tail -n 20 "$PG_LOG" >&2 || true
            die "PostgreSQL failed to start; see $PG_LOG"
        fi
        log "PostgreSQL started (pid $(pg_pid))"
    fi

    if [[ "$(pg_psql -d postgres -Atc "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]]; then
        log "creating database $PG_DB"
        pg_psql -d postgres -c "CREATE DATABASE $PG_DB"
    fi
}

stop_postgres() {
    pg_locate
    if pg_running; then
        log "stopping PostgreSQL (pid $(pg_pid))"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop </dev/null >/dev/null
        log "PostgreSQL stopped"
    else
        log "PostgreSQL: not running"
    fi
}

up_local() {
    log "local mode: RabbitMQ and PostgreSQL as processes, state in $RUN_DIR"
    ensure_packages
    # Check every port first, so a conflict does not leave one server half-started.
    rmq_running || rmq_check_ports
    pg_locate prepare
    pg_running || require_port_free "$PG_PORT" PostgreSQL INFRA_PG_PORT
    start_rabbitmq
    start_postgres
    local amqp="amqp://guest:guest@127.0.0.1:$RMQ_AMQP_PORT/"
    local db="postgresql://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
    local mgmt="http://127.0.0.1:$RMQ_MGMT_PORT/"
    write_env local "$amqp" "$db" "$mgmt" guest guest
    print_summary local "$amqp" "$db" "$mgmt" guest
}

# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------

cmd_up() {
    local start=$SECONDS mode=${INFRA_MODE:-}
    take_lock
    if [[ -z $mode ]]; then
        if [[ -n ${RABBITMQ_URL:-} && -n ${DATABASE_URL:-} ]]; then
            mode=external
        else
            mode=local
        fi
    fi
    case $mode in
        external)
            [[ -n ${RABBITMQ_URL:-} && -n ${DATABASE_URL:-} ]] \
                || die "INFRA_MODE=external needs both RABBITMQ_URL and DATABASE_URL"
            up_external ;;
        docker) up_docker ;;
        local)  up_local ;;
        *) die "unknown INFRA_MODE '$mode' (expected external, docker or local)" ;;
    esac
    log "ready in $((SECONDS - start))s"
}

cmd_down() {
    take_lock
    local mode
    mode="$(env_file_get INFRA_MODE)"
    if [[ $mode == docker ]]; then
        if command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; then
            log "docker mode: docker compose -f deploy/compose.yaml stop rabbitmq postgres"
            compose stop rabbitmq postgres
        else
            warn "recorded mode is docker but no Docker engine answers; nothing stopped there"
        fi
    elif [[ $mode == external ]]; then
        log "external mode: nothing to stop"
    fi
    # Local processes are ours whatever mode was recorded last: stop them if alive.
    if [[ -d $RMQ_BASE ]]; then stop_rabbitmq; fi
    if [[ -d $PG_BASE ]] && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then stop_postgres; fi
}

cmd_status() {
    local mode
    mode="$(env_file_get INFRA_MODE)"
    echo "mode (last up): ${mode:-none (run scripts/infra.sh up)}"
    if [[ $mode == docker ]]; then
        compose ps rabbitmq postgres || true
    elif [[ $mode == external ]]; then
        echo "RABBITMQ_URL=$(env_file_get RABBITMQ_URL)"
        echo "DATABASE_URL=$(env_file_get DATABASE_URL)"
    fi
    if [[ -d $RMQ_BASE ]]; then
        if rmq_running; then
            echo "rabbitmq: running  pid $(rmq_launcher_pid) (VM $(rmq_beam_pid))  node $RMQ_NODENAME" \
                 " amqp 127.0.0.1:$RMQ_AMQP_PORT  management 127.0.0.1:$RMQ_MGMT_PORT" \
                 " listening: $(tcp_open 127.0.0.1 "$RMQ_AMQP_PORT" && echo yes || echo no)"
        else
            echo "rabbitmq: stopped  (state in $RMQ_BASE)"
        fi
    fi
    if [[ -d $PG_BASE ]] && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
        pg_locate
        if pg_running; then
            echo "postgres: running  pid $(pg_pid)  127.0.0.1:$(sed -n 4p "$PG_DATA/postmaster.pid")  data $PG_DATA" \
                 " listening: $(tcp_open 127.0.0.1 "$(sed -n 4p "$PG_DATA/postmaster.pid")" && echo yes || echo no)"
        else
            echo "postgres: stopped  (data $PG_DATA)"
        fi
    fi
}

# Chaos runs break the servers on purpose; only what `up` started can be broken.
# cmd_server ACTION SERVER  (ACTION: restart|stop|start, SERVER: rabbitmq|postgres)
cmd_server() {
    local action=$1 server=$2 mode
    take_lock
    mode="$(env_file_get INFRA_MODE)"
    case $mode in
        docker)
            log "docker mode: docker compose -f deploy/compose.yaml $action $server"
            compose "$action" "$server"
            if [[ $action != stop ]]; then
                compose up -d --wait "$server"
            fi ;;
        local)
            case $server in
                rabbitmq)
                    [[ $action == start ]] || stop_rabbitmq
                    [[ $action == stop ]] || start_rabbitmq ;;
                postgres)
                    pg_locate
                    pg_running || die "PostgreSQL is not running; use 'scripts/infra.sh up'"
                    log "restarting PostgreSQL (pid $(pg_pid))"
                    ( close_extra_fds; as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m fast -w -t 60 restart ) \
                        </dev/null >"$PG_BASE/pg_ctl.out" 2>&1 || die "PostgreSQL failed to restart; see $PG_LOG"
                    log "PostgreSQL restarted (pid $(pg_pid))" ;;
            esac ;;
        *) die "$action-$server needs the servers of local or docker mode (recorded mode: ${mode:-none})" ;;
    esac
}

cmd_env() {
    [[ -r $ENV_FILE ]] || die "$ENV_FILE does not exist; run scripts/infra.sh up"
    cat "$ENV_FILE"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

case "${1:-}" in
    up)     cmd_up ;;
    down)   cmd_down ;;
    status) cmd_status ;;
    env)    cmd_env ;;
    restart-rabbitmq) cmd_server restart rabbitmq ;;
    stop-rabbitmq)    cmd_server stop rabbitmq ;;
    start-rabbitmq)   cmd_server start rabbitmq ;;
    restart-postgres) cmd_server restart postgres ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
