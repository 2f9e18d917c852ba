"""The projection's state machine: forward only, terminal states stay, completion once."""

from __future__ import annotations

import itertools
from functools import reduce

import pytest

from services.api.projector.state import (
    ApplicationState,
    EventFacts,
    NoProjectionRule,
    Transition,
    apply,
)
from services.api.statuses import Status

# Where the accept statement leaves an application: submitted, and at once verifying.
ACCEPTED = ApplicationState(Status.VERIFYING, 30)
VERIFIED = EventFacts("documents.verified")
REJECTED = EventFacts("documents.rejected", detail="documents rejected: cv.pdf: encrypted")
INITIATED = EventFacts("payment.initiated", payment_id="pay_1", checkout_url="https://psp/c/1")
PAID = EventFacts("payment.completed", payment_id="pay_1")
PAYMENT_FAILED = EventFacts("payment.failed", detail="payment failed: card declined")


def run(events: list[EventFacts], start: ApplicationState = ACCEPTED) -> list[Transition]:
    """Apply events one after another; every transition, in order."""
    transitions: list[Transition] = []
    state = start
    for event in events:
        transition = apply(state, event)
        transitions.append(transition)
        state = transition.state
    return transitions


def final(events: list[EventFacts]) -> ApplicationState:
    return reduce(lambda state, event: apply(state, event).state, events, ACCEPTED)


def test_the_happy_path_walks_every_status_and_completes() -> None:
    # Given an accepted application (being verified)
    # When every event arrives in the expected order
    transitions = run([VERIFIED, INITIATED, PAID])
    # Then the history shows each step with its progress
    history = [(e.status, e.progress) for t in transitions for e in t.history]
    assert history == [
        (Status.VERIFIED, 50),
        (Status.PROCESSING_PAYMENT, 55),
        (Status.AWAITING_PAYMENT, 75),
        (Status.COMPLETED, 100),
    ]
    last = transitions[-1].state
    assert last.checkout_url == "https://psp/c/1"
    assert last.payment_id == "pay_1"


@pytest.mark.parametrize(
    "events",
    [list(order) for order in itertools.permutations([VERIFIED, INITIATED, PAID])],
    ids=lambda events: "-".join(e.event_type for e in events),
)
def test_any_order_of_the_same_events_completes_exactly_once(events: list[EventFacts]) -> None:
    # Given the same events in a different order
    transitions = run(events)
    # Then the application ends completed at 100, reaching it exactly once
    assert transitions[-1].state.status is Status.COMPLETED
    assert transitions[-1].state.progress == 100
    completions = [e for t in transitions for e in t.history if e.status is Status.COMPLETED]
    assert len(completions) == 1


@pytest.mark.parametrize(
    "events",
    [
        [VERIFIED, INITIATED, PAID],
        [INITIATED, VERIFIED, PAID],
        [REJECTED],
        [VERIFIED, INITIATED, PAYMENT_FAILED],
    ],
)
def test_progress_never_goes_backwards(events: list[EventFacts]) -> None:
    progress = [ACCEPTED.progress] + [t.state.progress for t in run(events)]
    assert progress == sorted(progress)


@pytest.mark.parametrize("event", [VERIFIED, REJECTED, INITIATED, PAID, PAYMENT_FAILED])
@pytest.mark.parametrize(
    "before",
    [
        [],
        [VERIFIED],
        [VERIFIED, INITIATED],
        [VERIFIED, INITIATED, PAID],
    ],
    ids=["verifying", "processing", "awaiting", "completed"],
)
def test_an_event_seen_twice_changes_nothing_the_second_time(
    before: list[EventFacts], event: EventFacts
) -> None:
    # Given an application that has already seen ``event`` once
    state = final([*before, event])
    # When the same event comes again
    again = apply(state, event)
    # Then nothing changes and nothing is recorded
    assert again == Transition(state, ())


def test_documents_verified_after_the_checkout_is_a_fact_without_a_step_back() -> None:
    # Given the checkout event overtook the verdict
    state = final([INITIATED])
    assert state.status is Status.AWAITING_PAYMENT
    # When the verdict arrives
    transition = apply(state, VERIFIED)
    # Then the flag is set and noted, the status stays
    assert transition.state.docs_verified
    assert transition.state.status is Status.AWAITING_PAYMENT
    assert [e.note for e in transition.history] == ["documents verified"]


def test_payment_before_verification_waits_for_the_documents() -> None:
    # Given the payment is known before the documents' verdict
    transition = apply(final([]), PAID)
    # Then the fact is recorded but the application is not complete yet
    assert transition.state.payment_completed
    assert transition.state.status is Status.VERIFYING
    assert [e.note for e in transition.history] == ["fee paid"]


@pytest.mark.parametrize(
    ("events", "terminal"),
    [
        ([REJECTED], Status.VERIFICATION_FAILED),
        ([VERIFIED, INITIATED, PAYMENT_FAILED], Status.PAYMENT_FAILED),
        ([VERIFIED, INITIATED, PAID], Status.COMPLETED),
    ],
)
@pytest.mark.parametrize("late", [VERIFIED, REJECTED, INITIATED, PAID, PAYMENT_FAILED])
def test_terminal_states_never_change(
    events: list[EventFacts], terminal: Status, late: EventFacts
) -> None:
    # Given an application in a terminal state
    state = final(events)
    assert state.status is terminal
    # When any other event arrives
    transition = apply(state, late)
    # Then nothing changes
    assert transition.state == state


def test_rejection_is_terminal_and_keeps_the_reasons() -> None:
    transition = apply(final([]), REJECTED)
    assert transition.state.status is Status.VERIFICATION_FAILED
    assert transition.state.progress == 30  # failure does not pretend to progress
    assert [e.note for e in transition.history] == ["documents rejected: cv.pdf: encrypted"]


def test_the_first_verdict_wins() -> None:
    # Given documents already verified
    state = final([VERIFIED])
    # When a contradicting rejection arrives
    transition = apply(state, REJECTED)
    # Then it is ignored
    assert transition.state == state


def test_a_paid_fee_is_not_undone_by_a_failure_notice() -> None:
    state = final([PAID])
    assert apply(state, PAYMENT_FAILED).state == state


def test_the_first_checkout_url_is_kept() -> None:
    state = final([VERIFIED, INITIATED])
    other = EventFacts("payment.initiated", payment_id="pay_2", checkout_url="https://psp/c/2")
    assert apply(state, other).state.checkout_url == "https://psp/c/1"


@pytest.mark.parametrize("start", [ACCEPTED, final([REJECTED])])
def test_an_event_without_a_rule_is_refused(start: ApplicationState) -> None:
    with pytest.raises(NoProjectionRule):
        apply(start, EventFacts("announcement.published"))
