"""The mailer service: one process consuming the lanes of ``MAILER_LANES`` (all five by
default), each lane its own queue with its own concurrency, retry policy and SLA."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

from psycopg_pool import AsyncConnectionPool

from services.mailer.announcements import Announcements
from services.mailer.handler import Mailer, MailerTransaction
from services.mailer.rate_limit import LaneRate, PostgresRateLimiter
from services.mailer.rendering import template_environment
from services.mailer.report_queries import ReportSources
from services.mailer.reports import ReportBuilder
from services.mailer.retention import mailer_retention
from services.mailer.settings import MailerSettings
from services.mailer.smtp import FaultySender, MailSender, SmtpOptions, SmtpSender
from shared.blobs import BlobStore
from shared.consumer.routing import routed
from shared.consumer.runtime import Handler
from shared.events.catalog import AnnouncementDelivery, AnnouncementPublished, ReportRequested
from shared.events.sealed import SecretSealer
from shared.faults import Faults
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.system_topology import MAILER_LANES
from shared.unsubscribe import UnsubscribeSigner
from shared.worker import open_pool, run_worker

SERVICE = "mailer"
# The low lane's builders: a snapshot and progress rows each.
WORK_POOL_SIZE = 2 * MAILER_LANES["low"].prefetch


def lane_rates(settings: MailerSettings) -> dict[str, LaneRate]:
    return {
        lane: LaneRate(refill_per_second=settings.rate(lane), capacity=settings.capacity(lane))
        for lane in settings.mailer_lanes
    }


def smtp_options(settings: MailerSettings) -> SmtpOptions:
    return SmtpOptions(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        timeout=settings.smtp_timeout,
        simulated_latency=settings.smtp_simulated_ms / 1000,
        sessions_per_lane=settings.smtp_sessions_per_lane,
    )


def worker_settings(settings: MailerSettings) -> MailerSettings:
    """Each mail in flight holds a pooled connection for its transaction (SMTP call included),
    so unless DB_POOL_MAX says otherwise the pool matches the lanes' total concurrency."""
    if "db_pool_max" in settings.model_fields_set:
        return settings
    in_flight = sum(MAILER_LANES[lane].prefetch for lane in settings.mailer_lanes)
    return settings.model_copy(update={"db_pool_max": max(settings.db_pool_max, in_flight)})


def lane_handlers(
    settings: MailerSettings, mailer: Mailer, work_pool: AsyncConnectionPool
) -> dict[str, Handler[MailerTransaction]]:
    """The queue of each lane this process consumes, and its handler: reports on the low lane,
    announcements on the batch lane, the transactional mails on the others."""
    reports = ReportBuilder(
        mailer=mailer,
        pool=work_pool,
        blobs=BlobStore(settings.blob_dir, fsync=settings.blob_fsync),
        sources=ReportSources(
            api=settings.api_schema,
            payments=settings.payments_schema,
            dead_letter_logs=tuple(settings.report_dead_letter_schemas),
        ),
        link_ttl=timedelta(hours=settings.report_link_ttl_hours),
    )
    announcements = Announcements(
        mailer=mailer,
        unsubscribe=UnsubscribeSigner.from_seal_setting(settings.mail_seal_key.get_secret_value()),
        api_schema=settings.api_schema,
    )
    special: dict[str, Handler[MailerTransaction]] = {
        "low": routed({ReportRequested: reports.handle}),
        "batch": routed(
            {
                AnnouncementPublished: announcements.expand,
                AnnouncementDelivery: announcements.deliver,
            }
        ),
    }
    return {
        MAILER_LANES[lane].name: special.get(lane, mailer.handle) for lane in settings.mailer_lanes
    }


async def run(settings: MailerSettings, stop: asyncio.Event) -> None:
    # Tokens are taken on connections of their own, never inside a message's transaction;
    # so are the reports' progress and snapshots.
    rate_pool = await open_pool(settings, SERVICE, max_size=len(settings.mailer_lanes) + 1)
    work_pool = await open_pool(settings, SERVICE, max_size=WORK_POOL_SIZE)
    smtp = SmtpSender(smtp_options(settings))
    faults = Faults.from_settings(settings).smtp
    sender: MailSender = FaultySender(smtp, faults) if faults.enabled else smtp  # chaos only
    try:
        rate_limiter = PostgresRateLimiter(
            rate_pool, lane_rates(settings), block=settings.mailer_token_block
        )
        await rate_limiter.configure()
        mailer = Mailer(
            templates=template_environment(),
            sender=sender,
            rate_limiter=rate_limiter,
            mail_from=settings.mail_from,
            api_public_url=settings.api_public_url,
            sealer=SecretSealer.from_setting(settings.mail_seal_key.get_secret_value()),
        )
        await run_worker(
            service=SERVICE,
            settings=worker_settings(settings),
            handlers=lane_handlers(settings, mailer, work_pool),
            stop=stop,
            transaction_type=MailerTransaction,
            retention=mailer_retention(settings),
        )
    finally:
        await smtp.close()
        await work_pool.close()
        await rate_pool.close()


def main() -> None:
    settings = MailerSettings()
    configure_logging(SERVICE, settings.log_level)
    run_service(partial(run, settings))
