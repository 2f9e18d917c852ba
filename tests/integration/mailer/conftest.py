"""The mailer's integration fixtures: its migrated schema, and a real SMTP server (the dev
catcher, run in-process on a free port with a temporary mail folder)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from devtools.smtp_catcher import MailDirHandler, catching
from shared.db.migrate import READ_ONLY_VIEWS
from shared.db.migrations import grant_select
from tests.support.database import role_pool, service_schema
from tests.support.infra import Infra

REFUSED_DOMAIN = "refused.example.com"


@pytest.fixture
async def mailer_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A schema + role named ``namespace`` with the mailer's own migrations applied."""
    async with service_schema(infra, namespace, ["services.mailer.migrations"]) as name:
        yield name


@pytest.fixture
async def api_schema(infra: Infra, mailer_schema: str) -> AsyncIterator[str]:
    """The API's tables beside the mailer's, each role granted the views the other publishes
    for it (reports, announcements), as ``shared.db.migrate`` grants them."""
    async with service_schema(infra, f"{mailer_schema}api", ["services.api.migrations"]) as api:
        names = {"api": api, "mailer": mailer_schema}
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            for owner, view, reader in READ_ONLY_VIEWS:
                if owner in names and reader in names:
                    await grant_select(admin, names[reader], names[owner], [view])
        yield api


@pytest.fixture
async def mailer_pool(infra: Infra, mailer_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = role_pool(infra, mailer_schema)
    await pool.open(wait=True)
    yield pool
    await pool.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    mail_dir: Path
    handler: MailDirHandler


@pytest.fixture
async def smtp_server(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    host, port, mail_dir = "127.0.0.1", free_port(), tmp_path / "mail"
    async with catching(host, port, mail_dir, refuse_domains=[REFUSED_DOMAIN]) as handler:
        yield SmtpServer(host, port, mail_dir, handler)
