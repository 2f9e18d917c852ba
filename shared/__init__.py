"""The messaging core every service stands on.

Where to look:
- ``manifest``: every service, once: its role and schema, migrations, outbox, processes and
  their metrics ports; the lists of services elsewhere are derived from it.
- ``events``: the envelope and the event catalog (what travels on the wire).
- ``asyncapi``: the AsyncAPI 3.0 document of every event, who sends and who receives it
  (the API serves it at ``/asyncapi.json``; ``deploy/asyncapi.json`` is its committed copy).
- ``topology``: exchanges and queues, declared from one description.
- ``broker``: the broker port, its RabbitMQ adapter and an in-memory double; nothing else
  speaks AMQP (import-linter forbids aio-pika elsewhere).
- ``consumer``: decode -> validate -> one transaction -> ack; retry and dead-letter decisions;
  commands to the process (``commands``) heard and acknowledged.
- ``control``: pausing and resuming a queue's consumers, across replicas and restarts.
- ``outbox``: rows written in the caller's transaction, and the relay that publishes them.
- ``db``: connection pools, roles, schemas and migrations.
- ``sweeper``: trims processed-message ids and published outbox rows on a cron schedule.
"""
