"""The consumer runtime's metrics: outcome counts, handler time, lane wait against the SLA."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shared.broker.base import BrokerMessage
from shared.broker.memory import InMemoryBroker
from shared.consumer.memory import InMemoryTransactions
from shared.consumer.runtime import Consumer, MessageContext, Observation
from shared.errors import DomainRuleViolation
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.metrics import metrics_for, metrics_observer, seconds_between
from shared.outcomes import Outcome
from shared.topology import Exchanges, QueueSpec, Topology
from tests.support.events import DEVELOPMENT_VERIFIER, signed
from tests.support.waiting import eventually

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CRITICAL = QueueSpec(
    "mailer.critical", "mailer", ("x",), lane="critical", sla_seconds=1.0, retry_delays=(1.0,)
)
PLAIN = QueueSpec("verifier.documents", "verifier", ("x",))


def observation(
    spec: QueueSpec,
    outcome: str = "processed",
    *,
    waited: float | None = 0.2,
    seconds: float = 0.01,
) -> Observation:
    return Observation(
        service=spec.service,
        queue=spec,
        message_id=str(uuid.uuid4()),
        correlation_id="corr",
        event_type="x",
        attempt=1,
        outcome=outcome,
        seconds=seconds,
        occurred_at=None if waited is None else NOW - timedelta(seconds=waited),
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def observe_all(registry: CollectorRegistry, *observations: Observation) -> None:
    observe = metrics_observer(registry, clock=lambda: NOW)
    for item in observations:
        await observe(item)


async def test_a_lane_wait_within_the_sla_is_measured_and_not_a_breach() -> None:
    # Given a fresh registry
    registry = CollectorRegistry()
    # When a critical mail is handled 0.4 s after its event occurred
    await observe_all(registry, observation(CRITICAL, waited=0.4))
    # Then the wait falls in the 0.5 s bucket, and the 1 s SLA was kept
    assert sample(registry, "admissions_lane_wait_seconds_bucket", lane="critical", le="0.25") == 0
    assert sample(registry, "admissions_lane_wait_seconds_bucket", lane="critical", le="0.5") == 1
    assert sample(registry, "admissions_lane_wait_seconds_sum", lane="critical") == pytest.approx(
        0.4
    )
    assert sample(registry, "admissions_sla_breaches_total", lane="critical") == 0


async def test_a_wait_past_the_sla_counts_as_a_breach() -> None:
    registry = CollectorRegistry()
    # When two critical mails waited 3 s and 0.9 s (SLA 1 s)
    await observe_all(
        registry, observation(CRITICAL, waited=3.0), observation(CRITICAL, waited=0.9)
    )
    # Then both waits are measured and one breach is counted
    assert sample(registry, "admissions_lane_wait_seconds_count", lane="critical") == 2
    assert sample(registry, "admissions_sla_breaches_total", lane="critical") == 1


@pytest.mark.parametrize(
    ("spec", "outcome", "waited"),
    [
        (PLAIN, "processed", 100.0),  # not a lane: no lane wait
        (CRITICAL, "retried", 100.0),  # not delivered yet: its wait ends later
        (CRITICAL, "duplicate", 100.0),  # already counted the first time
        (CRITICAL, "processed", None),  # undecodable: no occurred_at
    ],
)
async def test_only_processed_lane_messages_have_a_lane_wait(
    spec: QueueSpec, outcome: str, waited: float | None
) -> None:
    registry = CollectorRegistry()
    await observe_all(registry, observation(spec, outcome, waited=waited))
    assert sample(registry, "admissions_lane_wait_seconds_count", lane="critical") == 0
    assert sample(registry, "admissions_sla_breaches_total", lane="critical") == 0
    # And the delivery itself is still counted
    total = sample(
        registry,
        "admissions_messages_total",
        service=spec.service,
        queue=spec.name,
        outcome=outcome,
    )
    assert total == 1


async def test_handler_time_leaves_out_duplicates_and_requeues() -> None:
    registry = CollectorRegistry()
    await observe_all(
        registry,
        observation(PLAIN, "processed", seconds=0.2),
        observation(PLAIN, "retried", seconds=0.3),
        observation(PLAIN, "dead-lettered", seconds=0.1),
        observation(PLAIN, "duplicate", seconds=5.0),
        observation(PLAIN, "requeued", seconds=5.0),
    )
    labels = {"service": "verifier", "queue": "verifier.documents"}
    assert sample(registry, "admissions_handler_seconds_count", **labels) == 3
    assert sample(registry, "admissions_handler_seconds_sum", **labels) == pytest.approx(0.6)


class FailsOnMarker:
    """Processes every event, except application ids naming an error."""

    async def __call__(self, ctx: MessageContext[Any]) -> None:
        application_id = getattr(ctx.payload, "application_id", "")
        if application_id == "transient":
            raise RuntimeError("the disk is busy")
        if application_id == "permanent":
            raise DomainRuleViolation("never valid")


def message(application_id: str) -> BrokerMessage:
    envelope = new_envelope(
        PaymentFailed(
            reason="declined", application_id=application_id, applicant_email="a@example.org"
        )
    )
    return signed(envelope)


async def test_the_runtime_reports_every_outcome_to_the_counters() -> None:
    # Given a consumer on the in-memory broker, observed by the metrics observer
    registry = CollectorRegistry()
    exchanges = Exchanges.namespaced("metrics")
    spec = QueueSpec("work", "tests", ("payment.failed",), max_attempts=2, prefetch=1)
    broker = InMemoryBroker(time_scale=0.001)  # retry tiers of milliseconds
    await broker.declare(Topology(exchanges, (spec,)))
    consumer: Consumer[Any] = Consumer(
        service="tests",
        spec=spec,
        exchanges=exchanges,
        broker=broker,
        transactions=InMemoryTransactions(),
        handler=FailsOnMarker(),
        observers=[metrics_observer(registry)],
        authenticity=DEVELOPMENT_VERIFIER,
    )
    await consumer.start()
    # When two good events arrive (one of them twice), one that keeps failing (retried once,
    # then out of attempts) and one never valid
    twice = message("ok-2")
    for item in (
        message("ok-1"),
        twice,
        twice,
        message("transient"),
        message("permanent"),
    ):
        await broker.publish(exchanges.events, "payment.failed", item)
    await eventually(lambda: sum(consumer.outcomes.values()) == 6, what="six deliveries")
    await consumer.stop()
    await broker.close()

    # Then each outcome is counted under the service and queue
    def count(outcome: str) -> float:
        return sample(
            registry, "admissions_messages_total", service="tests", queue="work", outcome=outcome
        )

    # and each is one of the outcomes the metrics and the timeline know
    assert set(consumer.outcomes) <= set(Outcome)
    assert {o: count(o) for o in ("processed", "duplicate", "retried", "dead-lettered")} == {
        "processed": 2,
        "duplicate": 1,
        "retried": 1,
        "dead-lettered": 2,
    }


def test_each_registry_gets_its_own_families_once() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert metrics_for(first) is metrics_for(first)
    assert metrics_for(first) is not metrics_for(second)


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        (NOW - timedelta(seconds=2), NOW, 2.0),
        (NOW + timedelta(seconds=1), NOW, 0.0),  # the other host's clock runs ahead
        ((NOW - timedelta(seconds=3)).replace(tzinfo=None), NOW, 3.0),  # naive means UTC
    ],
)
def test_seconds_between(earlier: datetime, later: datetime, expected: float) -> None:
    assert seconds_between(earlier, later) == expected
