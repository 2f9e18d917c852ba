"""The queue overview and the other pure read-side helpers of /admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.api.admin.management import QueueStats, parse_queue, vhost_of
from services.api.admin.overview import listening_workers, queue_overview
from services.api.admin.repository import timeline_steps
from services.api.admin.views import PauseState, TimelineOutbox, TimelineStep
from shared.system_topology import SYSTEM_TOPOLOGY

AT = datetime(2026, 5, 1, tzinfo=UTC)


def test_each_work_queue_shows_its_tiers_dlq_and_pause() -> None:
    # Given broker numbers for the medium lane and a pause of it
    stats = {
        "mailer.medium": QueueStats(
            "mailer.medium", ready=7, unacked=1, consumers=0, publish_rate=2.5
        ),
        "mailer.medium.retry.5s": QueueStats("mailer.medium.retry.5s", ready=3),
        "mailer.medium.dlq": QueueStats("mailer.medium.dlq", ready=2, unacked=1),
    }
    pauses = {"mailer.medium": PauseState("mailer.medium", True, AT, "ops@example.org")}

    # When the overview is built
    views = {view.name: view for view in queue_overview(SYSTEM_TOPOLOGY, stats, pauses)}

    # Then every work queue is there, the medium lane with its numbers beside it
    assert set(views) == {spec.name for spec in SYSTEM_TOPOLOGY.queues}
    medium = views["mailer.medium"]
    assert (medium.ready, medium.unacked, medium.consumers, medium.lane) == (7, 1, 0, "medium")
    assert medium.paused is True and medium.paused_by == "ops@example.org"
    assert [(t.name, t.messages) for t in medium.retry_tiers] == [("mailer.medium.retry.5s", 3)]
    assert (medium.dead_letters.name, medium.dead_letters.messages) == ("mailer.medium.dlq", 3)
    assert views["verifier.documents"].paused is False
    assert len(views["verifier.documents"].retry_tiers) == 3


def test_pause_is_unknown_when_it_could_not_be_read() -> None:
    views = queue_overview(SYSTEM_TOPOLOGY, {}, None)
    assert all(view.paused is None and view.ready == 0 for view in views)


def test_listeners_are_the_consumers_of_the_services_control_queues() -> None:
    stats = {
        "control.mailer.a": QueueStats("control.mailer.a", consumers=1),
        "control.mailer.b": QueueStats("control.mailer.b", consumers=1),
        "control.verifier.c": QueueStats("control.verifier.c", consumers=1),
        "mailer.medium": QueueStats("mailer.medium", consumers=5),
    }
    assert listening_workers("mailer", stats) == 2
    assert listening_workers("payments", stats) == 0


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "/"),
        ("amqp://guest:guest@127.0.0.1:5672", "/"),
        ("amqp://u:p@host/e2e_1234", "e2e_1234"),
        ("amqp://u:p@host/%2F", "/"),
    ],
)
def test_vhost_comes_from_the_amqp_url(url: str, vhost: str) -> None:
    assert vhost_of(url) == vhost


def test_management_queue_rows_are_read_leniently() -> None:
    row = {
        "name": "q",
        "messages_ready": 4,
        "messages_unacknowledged": None,
        "consumers": 2,
        "message_stats": {"publish_details": {"rate": 1.5}, "deliver_get_details": {"rate": 0.5}},
    }
    assert parse_queue(row) == QueueStats("q", 4, 0, 2, 1.5, 0.5)
    assert parse_queue({"name": "idle"}) == QueueStats("idle")


def test_timeline_orders_outbox_steps_before_deliveries_at_the_same_instant() -> None:
    outbox = TimelineOutbox(
        source="api",
        type="application.submitted",
        correlation_id="c",
        created_at=AT,
        published_at=AT + timedelta(milliseconds=5),
        publish_attempts=0,
    )
    processed = TimelineStep(at=AT + timedelta(milliseconds=5), step="processed", service="mailer")
    retried = TimelineStep(at=AT + timedelta(milliseconds=3), step="retried", service="verifier")
    steps = timeline_steps(outbox, [processed, retried])
    assert [s.step for s in steps] == ["created", "retried", "published", "processed"]
    assert [s.step for s in timeline_steps(None, [processed])] == ["processed"]
