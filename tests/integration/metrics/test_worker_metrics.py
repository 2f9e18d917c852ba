"""A worker's own /metrics endpoint, scraped over HTTP while real messages flow through it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import MessageContext
from shared.events.catalog import AnnouncementPublished
from shared.events.envelope import new_envelope
from shared.settings import CoreSettings
from shared.topology import Exchanges, QueueSpec, Topology
from shared.worker import run_worker
from tests.support.amqp import AmqpInspector
from tests.support.database import role_password
from tests.support.events import signed
from tests.support.infra import Infra
from tests.support.system import free_port
from tests.support.waiting import eventually


class WorkerSettings(CoreSettings):
    """Logs in as the test's throw-away role, whatever its name."""

    def db_password(self, service: str) -> str:
        return role_password(service)


Labels = dict[str, str]


async def scrape(client: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset[Any]], float]:
    response = await client.get(url)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def test_a_workers_metrics_answer_and_move_when_messages_flow(
    infra: Infra,
    schema: str,
    namespace: str,
    exchanges: Exchanges,
    rabbit: RabbitBroker,
    amqp: AmqpInspector,
) -> None:
    # Given a worker of a lane queue with METRICS_PORT set
    lane = f"lane-{namespace}"
    spec = QueueSpec(
        f"{namespace}.announcements",
        schema,
        ("announcement.published",),
        max_attempts=1,
        prefetch=4,
        lane=lane,
        sla_seconds=60.0,
    )
    topology = amqp.track(Topology(exchanges, (spec,)))
    await rabbit.declare(topology)
    port = free_port()
    settings = WorkerSettings(
        rabbitmq_url=infra.rabbitmq_url, database_url=infra.database_url, metrics_port=port
    )

    async def handle(ctx: MessageContext[Any]) -> None:
        await asyncio.sleep(0.01)

    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(
            service=schema,
            settings=settings,
            handlers={spec.name: handle},
            stop=stop,
            topology=topology,
        )
    )
    url = f"http://127.0.0.1:{port}/metrics"
    processed = {"service": schema, "queue": spec.name, "outcome": "processed"}
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def answers() -> bool:
                try:
                    await scrape(client, url)
                except httpx.TransportError:
                    return False
                return True

            await eventually(answers, what="the worker's /metrics to answer")
            before = await scrape(client, url)

            # When three events reach its queue
            for n in range(3):
                payload = AnnouncementPublished(
                    announcement_id=f"a{n}", subject=f"news {n}", body="hello"
                )
                message = signed(new_envelope(payload))
                await rabbit.publish(exchanges.events, "announcement.published", message)

            async def all_processed() -> bool:
                scraped = await scrape(client, url)
                return value(scraped, "admissions_messages_total", **processed) == 3

            await eventually(all_processed, what="three processed messages on /metrics")
            after = await scrape(client, url)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)

    # Then, scraped over HTTP, the counters and histograms moved from where they were
    assert value(before, "admissions_messages_total", **processed) == 0
    timed = {"service": schema, "queue": spec.name}
    assert value(after, "admissions_handler_seconds_count", **timed) == 3
    assert value(after, "admissions_handler_seconds_sum", **timed) >= 0.03
    assert value(after, "admissions_lane_wait_seconds_count", lane=lane) == 3
    assert value(after, "admissions_sla_breaches_total", lane=lane) == 0
    # And the endpoint closes with the worker
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(url)
