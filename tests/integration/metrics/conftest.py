"""The API in-process against the real Postgres: the API tests' own fixtures, reused."""

from __future__ import annotations

from tests.integration.api.conftest import alice, api_schema, api_settings, app, client, db

__all__ = ["alice", "api_schema", "api_settings", "app", "client", "db"]
