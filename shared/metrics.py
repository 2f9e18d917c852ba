"""Every Prometheus metric of the system, defined in one place.

    admissions_messages_total{service,queue,outcome}     deliveries by outcome (processed,
                                                          duplicate, retried, dead-lettered,
                                                          requeued)
    admissions_handler_seconds{service,queue}            time to handle one delivery
    admissions_lane_wait_seconds{lane}                   event occurred -> handled, per mail lane
    admissions_sla_breaches_total{lane}                  handled later than the lane's SLA
    admissions_mailer_rate_limit_wait_seconds{lane}      part of that wait spent on the token bucket
    admissions_outbox_lag_seconds{source}                outbox row created -> confirmed published
    admissions_outbox_unpublished{source}                rows waiting (sampled by the relay)
    admissions_outbox_oldest_unpublished_seconds{source} age of the oldest waiting row (sampled)
    admissions_relay_published_total{source}             rows the relay published
    admissions_http_request_seconds{method,route,status} API latency by route template

Families live on a ``CollectorRegistry``: services use the process-wide default, tests pass a
fresh one. ``metrics_for(registry)`` creates them once per registry (registering a name twice
is an error in prometheus-client). Nothing is created or served at import time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Thread
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from shared.consumer.runtime import Observation, Observer
from shared.outcomes import Outcome
from shared.settings import CoreSettings

log = structlog.get_logger("metrics")

# Around the lanes' SLAs (critical 1 s, high 5 s, medium 30 s, low 5 min), so a breach rate can
# be read straight from the buckets.
LANE_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OUTBOX_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Outcomes where the handler ran (or the message was judged): their time is handler time.
# Duplicates and requeues are near-instant and would only blur the histogram.
_TIMED_OUTCOMES = frozenset({Outcome.PROCESSED, Outcome.RETRIED, Outcome.DEAD_LETTERED})


class Metrics:
    """The metric families on one registry, and the few ways the code records into them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "admissions_messages",
            "Deliveries handled by a consumer, by outcome "
            "(processed, duplicate, retried, dead-lettered, requeued).",
            ["service", "queue", "outcome"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "admissions_handler_seconds",
            "Time to handle one delivery (decode, transaction with the handler, settle).",
            ["service", "queue"],
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.lane_wait_seconds = Histogram(
            "admissions_lane_wait_seconds",
            "Time from an event's occurred_at until a lane's consumer finished handling it.",
            ["lane"],
            buckets=LANE_WAIT_BUCKETS,
            registry=registry,
        )
        self.sla_breaches = Counter(
            "admissions_sla_breaches",
            "Messages a lane handled later than its SLA allows.",
            ["lane"],
            registry=registry,
        )
        self.rate_limit_wait_seconds = Histogram(
            "admissions_mailer_rate_limit_wait_seconds",
            "Time a mail waited for its lane's shared token bucket (part of the lane wait).",
            ["lane"],
            buckets=LANE_WAIT_BUCKETS,
            registry=registry,
        )
        self.outbox_lag_seconds = Histogram(
            "admissions_outbox_lag_seconds",
            "Time from an outbox row's creation until the broker confirmed its publication.",
            ["source"],
            buckets=OUTBOX_LAG_BUCKETS,
            registry=registry,
        )
        self.outbox_unpublished = Gauge(
            "admissions_outbox_unpublished",
            "Outbox rows not yet published (sampled by the relay).",
            ["source"],
            registry=registry,
        )
        self.outbox_oldest_unpublished_seconds = Gauge(
            "admissions_outbox_oldest_unpublished_seconds",
            "Age of the oldest outbox row not yet published, 0 when none (sampled by the relay).",
            ["source"],
            registry=registry,
        )
        self.relay_published = Counter(
            "admissions_relay_published",
            "Outbox rows the relay published (broker-confirmed).",
            ["source"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "admissions_http_request_seconds",
            "API request latency, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def record_delivery(self, observation: Observation, now: datetime) -> None:
        service, queue = observation.service, observation.queue
        self.messages.labels(service, queue.name, observation.outcome).inc()
        if observation.outcome in _TIMED_OUTCOMES:
            self.handler_seconds.labels(service, queue.name).observe(observation.seconds)
        if queue.lane is None or observation.outcome != Outcome.PROCESSED:
            return
        if observation.occurred_at is None:
            return
        waited = seconds_between(observation.occurred_at, now)
        self.lane_wait_seconds.labels(queue.lane).observe(waited)
        if queue.sla_seconds is not None and waited > queue.sla_seconds:
            self.sla_breaches.labels(queue.lane).inc()

    def record_rate_limit_wait(self, lane: str, seconds: float) -> None:
        self.rate_limit_wait_seconds.labels(lane).observe(seconds)

    def record_published(self, source: str, created: Iterable[datetime], now: datetime) -> None:
        lag = self.outbox_lag_seconds.labels(source)
        count = 0
        for created_at in created:
            lag.observe(seconds_between(created_at, now))
            count += 1
        self.relay_published.labels(source).inc(count)

    def record_backlog(self, source: str, unpublished: int, oldest_seconds: float) -> None:
        self.outbox_unpublished.labels(source).set(unpublished)
        self.outbox_oldest_unpublished_seconds.labels(source).set(oldest_seconds)

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_request_seconds.labels(method, route, str(status)).observe(seconds)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry = REGISTRY) -> Metrics:
    """The metric families on ``registry``, created on first use."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = Metrics(registry)
    return found


def seconds_between(earlier: datetime, later: datetime) -> float:
    """Never negative (clocks of two hosts may disagree a little); naive times are UTC."""
    if earlier.tzinfo is None:
        earlier = earlier.replace(tzinfo=UTC)
    return max(0.0, (later - earlier).total_seconds())


def utc_now() -> datetime:
    return datetime.now(UTC)


def metrics_observer(
    registry: CollectorRegistry = REGISTRY, clock: Callable[[], datetime] = utc_now
) -> Observer:
    """An observer for the consumer runtime: outcome counts, handler time and, for queues
    with a lane, the lane wait and SLA breaches."""
    metrics = metrics_for(registry)

    async def observe(observation: Observation) -> None:
        metrics.record_delivery(observation, clock())

    return observe


@dataclass
class MetricsServer:
    """``/metrics`` served from a daemon thread, on its own port (workers have no HTTP)."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    async def close(self) -> None:
        # shutdown() waits for the serving loop to notice (up to half a second): not on the loop.
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()


def serve_metrics(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Start serving ``registry`` at ``http://host:port/metrics`` (port 0: any free port)."""
    server, thread = start_http_server(port, host, registry)
    return MetricsServer(server, thread)


def serve_configured_metrics(
    settings: CoreSettings, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve metrics on ``METRICS_HOST:METRICS_PORT`` when METRICS_PORT is set."""
    if settings.metrics_port is None:
        return None
    served = serve_metrics(settings.metrics_port, settings.metrics_host, registry)
    log.info("metrics served", url=f"http://{settings.metrics_host}:{served.port}/metrics")
    return served
