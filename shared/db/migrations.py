"""Roles, schemas and versioned SQL migrations, one schema and one role per service.

Each service owns its schema (``CREATE SCHEMA x AUTHORIZATION x``) and has no rights on any
other; its migrations run as that role, so the tables belong to it. The shared messaging
tables come first in every schema. The relay's role is then granted the outbox tables only, and
the operators' read-only role ``ops`` SELECT on the outbox, message_log and queue_controls.

Run by ``python -m shared.db.migrate`` (``make migrate``) with the admin ``DATABASE_URL``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

SHARED_MIGRATIONS = "shared.db.sql"
_PROVISION_LOCK = 0x61646D69  # one migrator at a time on a server


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """The ``NNNN_name.sql`` files of a package, in version order."""
    files = [f for f in resources.files(package).iterdir() if f.name.endswith(".sql")]
    return [
        Migration(version=f"{package}:{f.name.removesuffix('.sql')}", sql=f.read_text())
        for f in sorted(files, key=lambda f: f.name)
    ]


def migration_lock_key(schema: str) -> int:
    return zlib.crc32(f"migrate:{schema}".encode())


async def ensure_login_role(admin: psycopg.AsyncConnection, role: str, password: str) -> None:
    """A role that may log in to this database with ``password`` (idempotent: a second call
    resets the password)."""
    exists = await (
        await admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    ).fetchone()
    verb = "ALTER" if exists else "CREATE"
    await admin.execute(
        sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    await admin.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(admin.info.dbname), sql.Identifier(role)
        )
    )


async def provision_role(admin: psycopg.AsyncConnection, role: str, password: str) -> None:
    """A login role that owns a schema of the same name (idempotent; resets the password)."""
    await ensure_login_role(admin, role, password)
    await admin.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
            sql.Identifier(role), sql.Identifier(role)
        )
    )


async def apply_migrations(
    admin: psycopg.AsyncConnection, schema: str, packages: list[str]
) -> list[str]:
    """Apply what is not yet applied, each file in its own transaction, as the schema's role."""
    applied: list[str] = []
    async with admin.transaction():
        await admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(schema)))
        await admin.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
    for package in packages:
        for migration in load_migrations(package):
            async with admin.transaction():
                await admin.execute(
                    "SELECT pg_advisory_xact_lock(%s)", (migration_lock_key(schema),)
                )
                await admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(schema)))
                await admin.execute(
                    sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema))
                )
                done = await admin.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                )
                if await done.fetchone():
                    continue
                await admin.execute(migration.sql.encode())
                await admin.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
                )
                applied.append(migration.version)
    return applied


async def grant_outbox_access(
    admin: psycopg.AsyncConnection, role: str, schemas: list[str]
) -> None:
    """The relay reads and marks every service's outbox, and nothing else of theirs. It never
    deletes (each service's sweeper trims its own outbox): a DELETE granted by an earlier
    version is revoked."""
    for schema in schemas:
        await admin.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
        outbox = sql.Identifier(schema, "outbox")
        await admin.execute(
            sql.SQL("GRANT SELECT, UPDATE ON {} TO {}").format(outbox, sql.Identifier(role))
        )
        await admin.execute(
            sql.SQL("REVOKE DELETE, INSERT, TRUNCATE ON {} FROM {}").format(
                outbox, sql.Identifier(role)
            )
        )


async def grant_select(
    admin: psycopg.AsyncConnection, reader: str, schema: str, relations: Sequence[str]
) -> None:
    """``reader`` may SELECT ``relations`` of ``schema``, nothing else there: the operators'
    tables, or a read-only view a service publishes for another (the mailer's record of the
    mail sent about an application, for the API's status history)."""
    await admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(reader)
        )
    )
    for relation in relations:
        await admin.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier(schema, relation), sql.Identifier(reader)
            )
        )


OPS_ROLE = "ops"
# What operators may read of every service: the messaging tables, never the domain's.
OPS_TABLES = ("outbox", "message_log", "queue_controls")


async def provision_ops_role(
    admin: psycopg.AsyncConnection, role: str, password: str, schemas: list[str]
) -> None:
    """A login role that can SELECT ``OPS_TABLES`` of ``schemas`` and nothing else (idempotent;
    resets the password). The admin API reads outbox backlogs, timelines and pauses with it."""
    async with admin.transaction():
        await admin.execute("SELECT pg_advisory_xact_lock(%s)", (_PROVISION_LOCK,))
        await _grant_ops(admin, role, password, schemas)


async def _grant_ops(
    admin: psycopg.AsyncConnection, role: str, password: str, schemas: list[str]
) -> None:
    await ensure_login_role(admin, role, password)
    for schema in schemas:
        await grant_select(admin, role, schema, OPS_TABLES)


async def migrate_service(
    admin_conninfo: str, schema: str, password: str, service_packages: list[str]
) -> list[str]:
    """Provision the role and schema, then apply the shared and the service's migrations."""
    async with await psycopg.AsyncConnection.connect(admin_conninfo, autocommit=True) as admin:
        await admin.execute("SELECT pg_advisory_lock(%s)", (_PROVISION_LOCK,))
        try:
            await provision_role(admin, schema, password)
            return await apply_migrations(admin, schema, [SHARED_MIGRATIONS, *service_packages])
        finally:
            await admin.execute("SELECT pg_advisory_unlock(%s)", (_PROVISION_LOCK,))
