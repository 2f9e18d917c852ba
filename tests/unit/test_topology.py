import pytest

from shared.broker.memory import InMemoryBroker, topic_matches
from shared.errors import TopologyMismatch
from shared.topology import (
    BindingDeclaration,
    Exchanges,
    QueueDeclaration,
    QueueSpec,
    QueueType,
    Topology,
    dead_letter_queue_name,
    declarations,
    format_delay,
    retry_queue_name,
)


@pytest.mark.parametrize(
    ("seconds", "suffix"), [(2.0, "2s"), (4, "4s"), (0.5, "500ms"), (90, "90s"), (1.5, "1500ms")]
)
def test_delays_read_well_in_queue_names(seconds: float, suffix: str) -> None:
    assert format_delay(seconds) == suffix
    assert retry_queue_name("verifier.documents", seconds) == f"verifier.documents.retry.{suffix}"


def test_dead_letter_queue_sits_beside_its_queue() -> None:
    assert dead_letter_queue_name("mailer.critical") == "mailer.critical.dlq"


@pytest.mark.parametrize(
    ("max_attempts", "delays", "tiers"),
    [
        (4, (2.0, 4.0, 8.0), (2.0, 4.0, 8.0)),
        (5, (2.0, 4.0), (2.0, 4.0)),  # the last delay repeats
        (2, (2.0, 4.0, 8.0), (2.0,)),
        (1, (2.0,), ()),  # no retries, no tiers
    ],
)
def test_retry_tiers_follow_the_attempts(
    max_attempts: int, delays: tuple[float, ...], tiers: tuple[float, ...]
) -> None:
    spec = QueueSpec("q", "svc", ("a.b",), max_attempts=max_attempts, retry_delays=delays)
    assert spec.retry_tiers == tiers


def test_a_retry_tier_returns_to_its_own_queue_only() -> None:
    exchanges = Exchanges()
    spec = QueueSpec("verifier.documents", "verifier", ("application.submitted",), max_attempts=2)
    items = list(declarations(Topology(exchanges, (spec,))))

    tier = next(i for i in items if isinstance(i, QueueDeclaration) and i.purpose == "retry")
    assert tier.name == "verifier.documents.retry.2s"
    assert tier.arguments["x-message-ttl"] == 2000
    assert tier.arguments["x-dead-letter-exchange"] == exchanges.retry
    assert tier.arguments["x-dead-letter-routing-key"] == "verifier.documents"
    assert tier.arguments["x-dead-letter-strategy"] == "at-least-once"
    assert tier.arguments["x-overflow"] == "reject-publish"
    # the retry exchange takes the message back to the work queue, not the events exchange
    assert BindingDeclaration(exchanges.retry, "verifier.documents", "verifier.documents") in items
    assert (
        BindingDeclaration(exchanges.dead, "verifier.documents.dlq", "verifier.documents") in items
    )


def test_classic_queues_do_without_quorum_only_arguments() -> None:
    spec = QueueSpec("q", "svc", ("k",), queue_type=QueueType.CLASSIC)
    work = next(
        i for i in declarations(Topology(queues=(spec,))) if isinstance(i, QueueDeclaration)
    )
    assert work.arguments["x-queue-type"] == "classic"
    assert "x-delivery-limit" not in work.arguments
    assert "x-dead-letter-strategy" not in work.arguments


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("application.submitted", "application.submitted", True),
        ("application.*", "application.submitted", True),
        ("application.*", "application.submitted.v2", False),
        ("application.#", "application.submitted.v2", True),
        ("#", "anything.at.all", True),
        ("payment.*", "application.submitted", False),
    ],
)
def test_topic_matching_in_the_double(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


async def test_the_double_reports_a_queue_declared_with_other_arguments() -> None:
    broker = InMemoryBroker()
    await broker.declare(Topology(queues=(QueueSpec("q", "svc", ("k",)),)))
    await broker.declare(Topology(queues=(QueueSpec("q", "svc", ("k",)),)))  # again: fine
    with pytest.raises(TopologyMismatch, match="'q'"):
        await broker.declare(Topology(queues=(QueueSpec("q", "svc", ("k",), delivery_limit=3),)))
