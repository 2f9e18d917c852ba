"""The project's own RabbitMQ and Postgres for development, tests, chaos runs and benchmarks.

    python3 -m devtools.servers up | down | status | env
    python3 -m devtools.servers restart-rabbitmq | stop-rabbitmq | start-rabbitmq | restart-postgres
    python3 -m devtools.servers rabbitmqctl ARGS...

(``scripts/infra.sh`` and ``scripts/rabbitmqctl.sh`` call these.) Standard library only: it
runs with the system's ``python3`` before the project's virtualenv exists.

``up`` picks the first mode that applies and records it, with the servers' URLs, in
``.run/infra.env`` (``envfile.py``, read back by ``devtools/infra.py``, sourced by the
Makefile):

- external: ``RABBITMQ_URL`` and ``DATABASE_URL`` are both set: use them as they are;
- local (the default): install the Debian packages if missing and run both servers as plain
  processes on 127.0.0.1, their state in the git-ignored ``.run/`` folder;
- docker, only when asked (``INFRA_MODE=docker``): ``rabbitmq`` and ``postgres`` of
  ``deploy/compose.yaml``. An engine that merely answers changes nothing: chaos runs and
  benchmarks are measured on the local servers; ``make compose-up`` runs everything in compose.

``INFRA_MODE`` forces a mode. Local ports: ``INFRA_AMQP_PORT`` (5672), ``INFRA_MGMT_PORT``
(15672), ``INFRA_PROM_PORT`` (15692), ``INFRA_PG_PORT`` (5432). The fault commands (chaos
runs) act only on servers that ``up`` started.
"""
