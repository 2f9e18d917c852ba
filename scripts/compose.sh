#!/usr/bin/env bash
# The whole system under docker compose (deploy/compose.yaml), detached.
#
#   scripts/compose.sh up       (make compose-up)   a Docker engine (scripts/docker-engine.sh),
#                               the images (built when missing), every service started and
#                               healthy, then the URLs
#   scripts/compose.sh up SERVICE...   only those (scripts/infra.sh: rabbitmq postgres)
#   scripts/compose.sh down     (make compose-down) stop and remove the containers (the
#                               volumes stay: COMPOSE_DOWN_ARGS=--volumes removes them too)
#   scripts/compose.sh run ARG...   docker compose -f deploy/compose.yaml ARG... with the
#                               settings `up` chose (e.g. run ps, run logs -f verifier)
#   scripts/compose.sh env      print .run/compose.env: what `docker compose` needs to manage
#                               the same stack by hand (source it, then docker compose ...)
#
# Images: COMPOSE_IMAGES=hub uses the official images of Docker Hub, COMPOSE_IMAGES=local the
# stand-ins deploy/local-images/build.sh makes from Debian packages; unset, the Hub is used
# when it answers. Host ports, project name and every setting: the variables of .env.example
# (COMPOSE_PROJECT_NAME, API_HOST_PORT, ... from the environment).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
COMPOSE_FILE="$ROOT/deploy/compose.yaml"
ENV_FILE="$ROOT/.run/compose.env"
WAIT_TIMEOUT=${COMPOSE_WAIT_TIMEOUT:-300}

log() { printf '[compose] %s\n' "$*"; }

hub_answers() {
    # The registry answers 401 (log in first) when it can be reached at all.
    python3 - <<'EOF' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen("https://registry-1.docker.io/v2/", timeout=8)
except urllib.error.HTTPError:
    sys.exit(0)
except Exception:
    sys.exit(1)
EOF
}

# .run/compose.env: the engine's variables, and the local images' names when they are used.
write_env() {
    local images=${COMPOSE_IMAGES:-}
    if [[ -z $images ]]; then
        if hub_answers; then images=hub; else images=local; fi
    fi
    {
        echo "# Written by scripts/compose.sh up ($images images). Use: source .run/compose.env"
        grep '^export' "$ROOT/.run/docker.env"
        echo "export COMPOSE_IMAGES=$images"
        if [[ $images == local ]]; then
            sed -n 's/^\([A-Z_]*=.*\)/export \1/p' "$ROOT/deploy/local-images/local.env"
        fi
    } >"$ENV_FILE"
}

compose() { docker compose -f "$COMPOSE_FILE" "$@" </dev/null; }

# Before a project's first start: a host port someone else serves gets a clear message
# (the local servers of `make infra` use 5672, 15672 and 5432 too).
# check_ports [SERVICE...]: with services named, only RabbitMQ's and Postgres's ports.
check_ports() {
    local variable default port busy=
    local -a ports=(INFRA_AMQP_PORT:5672 INFRA_MGMT_PORT:15672 INFRA_PG_PORT:5432)
    (($#)) || ports+=(API_HOST_PORT:8000 PSP_HOST_PORT:8100 MAIL_WEB_PORT:8025)
    [[ -z "$(compose ps --quiet 2>/dev/null)" ]] || return 0
    for variable in "${ports[@]}"; do
        default=${variable#*:}
        variable=${variable%%:*}
        port=${!variable:-$default}
        # shellcheck disable=SC2016  # $1 of the inner bash
        if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null; then
            printf '[compose] ERROR: port %s (%s) is in use on 127.0.0.1; choose another: %s=<port>\n' \
                "$port" "$variable" "$variable" >&2
            busy=1
        fi
    done
    [[ -z $busy ]]
}

print_urls() {
    local mail="Mailpit"
    [[ ${COMPOSE_IMAGES:-} == local ]] && mail="MailDev"
    log "project ${COMPOSE_PROJECT_NAME:-admissions}: every service is healthy"
    log "API              http://127.0.0.1:${API_HOST_PORT:-8000}/docs   (nginx, two api replicas)"
    log "RabbitMQ UI      http://127.0.0.1:${INFRA_MGMT_PORT:-15672}/   (operator / operator-dev-password)"
    log "Mail inbox       http://127.0.0.1:${MAIL_WEB_PORT:-8025}/   ($mail)"
    log "Payment sandbox  http://127.0.0.1:${PSP_HOST_PORT:-8100}/"
    log "AMQP 127.0.0.1:${INFRA_AMQP_PORT:-5672}  Postgres 127.0.0.1:${INFRA_PG_PORT:-5432}"
    log "logs: source .run/compose.env && docker compose -f deploy/compose.yaml logs -f; stop: make compose-down"
}

# The engine's variables (DOCKER_CONFIG when Compose is ours), then what `up` chose.
load_env() {
    local file
    for file in "$ROOT/.run/docker.env" "$ENV_FILE"; do
        [[ -r $file ]] || continue
        set -a
        # shellcheck source=/dev/null
        source "$file"
        set +a
    done
}

cmd_up() {
    local start=$SECONDS
    bash "$ROOT/scripts/docker-engine.sh" up
    write_env
    load_env
    check_ports "$@" || exit 1
    if [[ ${APP_ENV:-} == production ]]; then
        # The broker's users come from this file: none may keep a development password.
        (cd "$ROOT/deploy" && PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m deploy.definitions \
            --check "${RABBITMQ_DEFINITIONS:-./rabbitmq/definitions.json}") || exit 1
    fi
    if [[ $COMPOSE_IMAGES == local ]]; then
        bash "$ROOT/deploy/local-images/build.sh"
    fi
    log "docker compose up --detach --wait ($COMPOSE_IMAGES images; the app image is built when it changed)"
    compose up --detach --wait --wait-timeout "$WAIT_TIMEOUT" "$@"
    (($#)) || print_urls
    log "ready in $((SECONDS - start))s"
}

cmd_down() {
    load_env
    if ! timeout 15 docker info >/dev/null 2>&1; then
        log "no Docker engine answers: no container to stop"
        return 0
    fi
    # shellcheck disable=SC2086  # COMPOSE_DOWN_ARGS: words on purpose
    compose down --remove-orphans ${COMPOSE_DOWN_ARGS:-}
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    run) shift; load_env; compose "$@" ;;
    env) cat "$ENV_FILE" ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
