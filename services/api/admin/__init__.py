"""Operations for administrators: ``/admin``.

routes.py        the HTTP adapter (admin role only)
resources.py     the management API client, the read-only ``ops`` pool and an AMQP
                 connection, opened on first use
management.py    queue statistics from the RabbitMQ management HTTP API
overview.py      work queues with retry tiers, DLQ and pause state side by side (pure)
dead_letters.py  reading DLQs without removing anything, replaying, control commands (AMQP)
fingerprints.py  failure fingerprints and grouping (pure)
replay.py        replay selection, headers and pacing (pure)
repository.py    outbox backlog, pause states, timelines (ops role); the replay audit
"""
