"""The RabbitMQ definitions document operators load, exported from the topology and the manifest.

``python -m deploy.definitions > deploy/rabbitmq/definitions.json`` writes the vhost, its
exchanges, queues (with their exact arguments) and bindings, the policies operators see, and
one login per service of ``shared.manifest`` with least-privilege permissions, plus ``ops``,
the admin API's login for dead letters and control commands, and an ``operator``
administrator for the management UI. Queues come from ``shared.topology.declarations()``,
never from a list kept here, so the file and the code cannot drift apart (a unit test compares
the committed file with a fresh export).

- ``users``: the logins, their development passwords, real ones from the environment;
- ``passwords``: RabbitMQ's salted password hash;
- ``permissions``: what each login may configure, write and read, and with which routing keys;
- ``document``: the definitions document itself, its policies and its committed form;
- ``check``: refuse a document in which a development login still opens;
- ``cli``: ``python -m deploy.definitions`` (``--passwords-from-env``, ``--check``).

Services still declare the whole topology at start-up; with these logins the broker adapter
declares what it may and only checks that the rest exists (``RabbitBroker.declare``).
"""
