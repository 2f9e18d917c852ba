# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# Environment of the project-local RabbitMQ node (local mode of scripts/infra.sh).
#
# Sourced by scripts/infra.sh (to start/stop the node) and scripts/rabbitmqctl.sh
# (for operators and tests). Both must see exactly the same node name, cookie
# (HOME) and directories, otherwise the CLI cannot talk to the node.
#
# Sourcing only sets shell variables and defines functions; nothing is exported
# into the caller's environment. In particular HOME is NOT changed for the caller
# (docker, apt-get, runuser ... must keep the real HOME); use rmq_export_env in a
# subshell, or rmq_run, to run a command with the node's environment.

# Project root = two levels above this file (scripts/lib/..), absolute and
# symlink-free, so every caller works from any current directory.
RMQ_PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
RMQ_BASE="$RMQ_PROJECT_ROOT/.run/rabbitmq"

# Ports: explicit INFRA_* variables win; otherwise use what the last `infra.sh up`
# recorded (so `rabbitmqctl.sh` works without re-exporting them); else defaults.
# ports.env only holds RMQ_RECORDED_{AMQP,MGMT,PROM}_PORT=<number> lines.
if [[ -r "$RMQ_BASE/ports.env" ]]; then
    # shellcheck source=/dev/null
    source "$RMQ_BASE/ports.env"
fi
RMQ_AMQP_PORT="${INFRA_AMQP_PORT:-${RMQ_RECORDED_AMQP_PORT:-5672}}"
RMQ_MGMT_PORT="${INFRA_MGMT_PORT:-${RMQ_RECORDED_MGMT_PORT:-15672}}"
RMQ_PROM_PORT="${INFRA_PROM_PORT:-${RMQ_RECORDED_PROM_PORT:-15692}}"
# Erlang distribution port: RabbitMQ's default rule (AMQP port + 20000).
RMQ_DIST_PORT=$((RMQ_AMQP_PORT + 20000))

# One node per AMQP port: a second checkout on other ports (sharing this
# machine's epmd) then gets its own node name instead of a name clash.
if [[ $RMQ_AMQP_PORT == 5672 ]]; then
    RMQ_NODENAME="admissions@localhost"
else
    RMQ_NODENAME="admissions-$RMQ_AMQP_PORT@localhost"
fi
RMQ_MNESIA_BASE="$RMQ_BASE/mnesia"
RMQ_LOG_BASE="$RMQ_BASE/log"
RMQ_HOME="$RMQ_BASE/home"           # holds .erlang.cookie shared by node and CLI
RMQ_CONFIG_FILE="$RMQ_BASE/rabbitmq.conf"
RMQ_PLUGINS_FILE="$RMQ_BASE/enabled_plugins"
RMQ_CONF_ENV_FILE="$RMQ_BASE/rabbitmq-env.conf"   # empty: keeps /etc/rabbitmq/rabbitmq-env.conf out
RMQ_ADVANCED_CONFIG_FILE="$RMQ_BASE/advanced.config"  # absent on purpose: keeps /etc/rabbitmq out
RMQ_PID_FILE="$RMQ_BASE/pid"        # pid of the rabbitmq-server process we launched
RMQ_BEAM_PID_FILE="$RMQ_BASE/beam.pid"  # pid of the Erlang VM, written by RabbitMQ itself

# Locate the RabbitMQ scripts. Use the unprivileged ones under /usr/lib/rabbitmq,
# never /usr/sbin/rabbitmqctl: that Debian wrapper switches to the `rabbitmq`
# user and resets the environment, so it would talk to the system node instead.
rmq_find_bin() {
    local name=$1 dir
    for dir in /usr/lib/rabbitmq/sbin /usr/lib/rabbitmq/bin /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin; do
        if [[ -x "$dir/$name" ]]; then
            printf '%s\n' "$dir/$name"
            return 0
        fi
    done
    return 1
}

# Export the node's environment. Call it inside a subshell: ( rmq_export_env; exec ... )
rmq_export_env() {
    export HOME="$RMQ_HOME"
    export RABBITMQ_NODENAME="$RMQ_NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$RMQ_AMQP_PORT"
    export RABBITMQ_DIST_PORT="$RMQ_DIST_PORT"
    export RABBITMQ_MNESIA_BASE="$RMQ_MNESIA_BASE"
    export RABBITMQ_LOG_BASE="$RMQ_LOG_BASE"
    export RABBITMQ_CONFIG_FILE="$RMQ_CONFIG_FILE"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_ADVANCED_CONFIG_FILE"
    export RABBITMQ_CONF_ENV_FILE="$RMQ_CONF_ENV_FILE"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_PLUGINS_FILE"
    export RABBITMQ_PID_FILE="$RMQ_BEAM_PID_FILE"
    # Keep epmd and the Erlang distribution listeners (node and CLI) on loopback.
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    # Make sure the node's own variables are not shadowed by a caller's settings.
    unset RABBITMQ_ENV_LOADED RABBITMQ_USE_LONGNAME RABBITMQ_LOGS
}

# Run a command with the node's environment, e.g. rmq_run "$(rmq_find_bin rabbitmqctl)" status
rmq_run() {
    ( rmq_export_env; exec "$@" )
}
