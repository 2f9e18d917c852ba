#!/usr/bin/env bash
# rabbitmqctl for the project's own RabbitMQ node (started by `scripts/infra.sh up`), e.g.
#   scripts/rabbitmqctl.sh list_queues name messages
#   scripts/rabbitmqctl.sh stop_app && scripts/rabbitmqctl.sh start_app
# The real CLI with the node's name, Erlang cookie and folders (devtools/servers/rabbitmq.py);
# Debian's /usr/sbin/rabbitmqctl would talk to the (absent) system node instead.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m devtools.servers rabbitmqctl "$@"
