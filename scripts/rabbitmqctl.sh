#!/usr/bin/env bash
# rabbitmqctl for the project-local RabbitMQ node started by `scripts/infra.sh up`
# (local mode). Examples:
#   scripts/rabbitmqctl.sh list_queues name messages
#   scripts/rabbitmqctl.sh stop_app && scripts/rabbitmqctl.sh start_app
# It runs the real CLI with the same node name, Erlang cookie (HOME) and
# directories as the node; the system /usr/sbin/rabbitmqctl would instead switch
# to the `rabbitmq` user and talk to the (absent) system node.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/rabbitmq-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/rabbitmq-env.sh"

if ! ctl="$(rmq_find_bin rabbitmqctl)"; then
    echo "rabbitmqctl.sh: RabbitMQ is not installed here (no /usr/lib/rabbitmq/{sbin,bin}/rabbitmqctl);" \
         "run scripts/infra.sh up first" >&2
    exit 127
fi
if [[ ! -d "$RMQ_HOME" ]]; then
    echo "rabbitmqctl.sh: no local node state in $RMQ_BASE; run scripts/infra.sh up first" >&2
    exit 69
fi

rmq_export_env
exec "$ctl" "$@"
