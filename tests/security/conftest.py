"""Hostile input and least privilege. Tests that need servers are marked ``integration`` (real
Postgres / RabbitMQ, the API in-process) or ``e2e`` (the system as processes) in their module;
the rest are unit tests.

The in-process API fixtures are the integration suite's own (a throw-away role and schema
with the API's migrations, the app with its lifespan running)."""

from __future__ import annotations

from tests.behaviour.conftest import harness  # noqa: F401 (fixture: both brokers)
from tests.e2e.conftest import applicant  # noqa: F401 (fixture: a registered applicant)
from tests.integration.api.conftest import (  # noqa: F401 (fixtures)
    alice,
    api_schema,
    api_settings,
    app,
    bob,
    client,
    db,
)
from tests.support.broker_logins import broker_logins  # noqa: F401 (fixture)
