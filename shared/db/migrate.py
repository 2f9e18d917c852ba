"""``python -m shared.db.migrate [SERVICE[:PACKAGE] ...]``: provision and migrate services.

Each argument names a service (its role and schema) and, optionally, the package holding its
own ``NNNN_name.sql`` files; without arguments, every service of ``shared.manifest``
(``make migrate``). The relay is then granted every other service's outbox, each reader the
``READ_ONLY_VIEWS`` published for it, and the read-only ``ops`` role (password
``OPS_DB_PASSWORD``) the operations tables of every schema.
"""

from __future__ import annotations

import asyncio
import sys

import psycopg

from shared.db.migrations import (
    OPS_ROLE,
    grant_outbox_access,
    grant_select,
    migrate_service,
    provision_ops_role,
)
from shared.logs import configure_logging, get_logger
from shared.manifest import migrate_arguments
from shared.settings import CoreSettings

RELAY = "relay"
# The views a service publishes for another to read: (owner, view, reader). The API shows the
# mail sent about an application in its status history from the mailer's own record, and the
# progress of reports and announcements from the mailer's; the mailer builds reports and
# finds an announcement's recipients from the API's and the payments' views, and summarises
# dead letters from every service's log of them.
READ_ONLY_VIEWS: tuple[tuple[str, str, str], ...] = (
    ("mailer", "application_mail", "api"),
    ("mailer", "report_status", "api"),
    ("mailer", "announcement_progress", "api"),
    ("api", "report_applications", "mailer"),
    ("api", "announcement_audience", "mailer"),
    ("api", "announcement_state", "mailer"),
    ("api", "announcement_opt_out", "mailer"),
    ("payments", "payment_reconciliation", "mailer"),
    ("api", "dead_letter_log", "mailer"),
    ("verifier", "dead_letter_log", "mailer"),
    ("payments", "dead_letter_log", "mailer"),
)


async def migrate_all(settings: CoreSettings, targets: list[tuple[str, list[str]]]) -> None:
    log = get_logger("migrate")
    admin = settings.database_url.get_secret_value()
    for service, packages in targets:
        applied = await migrate_service(admin, service, settings.db_password(service), packages)
        log.info("migrated", service=service, applied=applied)
    sources = [service for service, _ in targets if service != RELAY]
    if any(service == RELAY for service, _ in targets):
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await grant_outbox_access(conn, RELAY, sources)
        log.info("relay granted outboxes", sources=sources)
    schemas = [service for service, _ in targets]
    for owner, view, reader in READ_ONLY_VIEWS:
        if owner in schemas and reader in schemas:
            async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
                await grant_select(conn, reader, owner, [view])
            log.info("view granted", view=f"{owner}.{view}", reader=reader)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await provision_ops_role(conn, OPS_ROLE, settings.db_password(OPS_ROLE), schemas)
    log.info("ops role granted", schemas=schemas)


def parse_targets(arguments: list[str]) -> list[tuple[str, list[str]]]:
    targets = []
    for argument in arguments:
        service, _, package = argument.partition(":")
        targets.append((service, [package] if package else []))
    return targets


def main() -> None:
    settings = CoreSettings()
    configure_logging("migrate", settings.log_level)
    arguments = sys.argv[1:] or migrate_arguments()
    asyncio.run(migrate_all(settings, parse_targets(arguments)))


if __name__ == "__main__":
    main()
