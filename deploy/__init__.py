"""Deployment tools: the files operators load, exported from the system's own description.

- ``deploy.definitions``: ``deploy/rabbitmq/definitions.json`` (the broker's vhost, exchanges,
  queues, policies, and one login per service with least-privilege permissions), its
  production form with real passwords, and the check that refuses development logins:
  ``python -m deploy.definitions``.
- ``deploy.asyncapi``: ``deploy/asyncapi.json``, the AsyncAPI document of every event (the API
  serves the same document at ``/asyncapi.json``): ``python -m deploy.asyncapi``.

Both read what the runtime reads (``shared.manifest``, ``shared.system_topology``, the event
catalog), and a unit test fails when a committed file and a fresh export differ. The runtime
(``shared``, ``services``) never imports this package: an import-linter contract says so.
"""
