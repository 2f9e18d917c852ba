#!/usr/bin/env bash
# The project's own RabbitMQ and Postgres (up | down | status | env | fault commands):
# devtools/servers/ does the work, with the system's python3 (no virtualenv needed).
# `scripts/infra.sh help` prints what each command does.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m devtools.servers "$@"
