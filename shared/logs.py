"""Structured JSON logs. ``correlation_id`` and ``message_id`` are bound per message or
request with ``structlog.contextvars`` so every line inside carries them."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Call once, from a service's composition root (never at import time)."""
    logging.basicConfig(stream=stream or sys.stdout, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
