"""The verifier's composition root: settings -> blob store + worker pool -> consumer."""

from __future__ import annotations

import asyncio
import os
from functools import partial

import structlog

from services.verifier.checker import PooledChecker
from services.verifier.document_rules import Limits
from services.verifier.handler import VerifierTransaction, make_handler
from services.verifier.isolation import CheckPool
from services.verifier.settings import VerifierSettings
from shared.blobs import BlobStore
from shared.lifecycle import run_service
from shared.logs import configure_logging
from shared.worker import run_worker

SERVICE = "verifier"
QUEUE = "verifier.documents"

log = structlog.get_logger("verifier")


async def run(settings: VerifierSettings, stop: asyncio.Event) -> None:
    pool = CheckPool(
        processes=settings.verify_processes or os.cpu_count() or 1,
        memory_limit_bytes=settings.verify_process_memory_mb * 1024 * 1024,
    )
    try:
        await pool.warm_up()
        log.info("check workers ready", processes=pool.processes, blob_dir=str(settings.blob_dir))
        checker = PooledChecker(
            BlobStore(settings.blob_dir),
            pool,
            Limits(
                max_bytes=settings.verify_max_file_bytes,
                max_pdf_pages=settings.verify_max_pdf_pages,
                max_image_pixels=settings.verify_max_image_pixels,
            ),
            timeout=settings.verify_timeout_seconds,
        )
        await run_worker(
            service=SERVICE,
            settings=settings,
            handlers={QUEUE: make_handler(checker, settings.verify_simulated_ms)},
            stop=stop,
            transaction_type=VerifierTransaction,
        )
    finally:
        await pool.close()


def main() -> None:
    settings = VerifierSettings()
    configure_logging(SERVICE, settings.log_level)
    run_service(partial(run, settings))
