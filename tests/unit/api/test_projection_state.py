"""The projection's state machine: forward only, terminal states stay, completion once."""

from __future__ import annotations

from functools import reduce

import pytest

from services.api.projector.state import (
    ApplicationState,
    Observation,
    Transition,
    UnknownObservation,
    apply,
)
from services.api.statuses import Status

SUBMITTED = ApplicationState(Status.SUBMITTED, 25)
SUBMITTED_EVENT = Observation("application.submitted")
VERIFIED = Observation("documents.verified")
REJECTED = Observation("documents.rejected", detail="documents rejected: cv.pdf: encrypted")
INITIATED = Observation("payment.initiated", payment_id="pay_1", checkout_url="https://psp/c/1")
PAID = Observation("payment.completed", payment_id="pay_1")
PAYMENT_FAILED = Observation("payment.failed", detail="payment failed: card declined")
EMAIL = Observation("email.sent", detail="confirmation")


def run(events: list[Observation], start: ApplicationState = SUBMITTED) -> list[Transition]:
    """Apply events one after another; every transition, in order."""
    transitions: list[Transition] = []
    state = start
    for event in events:
        transition = apply(state, event)
        transitions.append(transition)
        state = transition.state
    return transitions


def final(events: list[Observation]) -> ApplicationState:
    return reduce(lambda state, event: apply(state, event).state, events, SUBMITTED)


def test_the_happy_path_walks_every_status_and_completes_once() -> None:
    # Given a submitted application
    # When every event arrives in the expected order
    transitions = run([SUBMITTED_EVENT, VERIFIED, INITIATED, EMAIL, PAID])
    # Then the history shows each step with its progress
    history = [(e.status, e.progress) for t in transitions for e in t.history]
    assert history == [
        (Status.VERIFYING, 30),
        (Status.VERIFIED, 50),
        (Status.PROCESSING_PAYMENT, 55),
        (Status.AWAITING_PAYMENT, 75),
        (Status.AWAITING_PAYMENT, 75),  # the e-mail note
        (Status.COMPLETED, 100),
    ]
    # And application.completed is asked for by the last event only
    assert [t.emit_completed for t in transitions] == [False, False, False, False, True]
    last = transitions[-1].state
    assert last.checkout_url == "https://psp/c/1"
    assert last.payment_id == "pay_1"
    assert last.completed_event_emitted


@pytest.mark.parametrize(
    "events",
    [
        [SUBMITTED_EVENT, VERIFIED, INITIATED, PAID],
        [VERIFIED, SUBMITTED_EVENT, INITIATED, PAID],
        [INITIATED, VERIFIED, PAID, SUBMITTED_EVENT],
        [PAID, INITIATED, VERIFIED, SUBMITTED_EVENT],
        [PAID, VERIFIED, SUBMITTED_EVENT, INITIATED],
        [INITIATED, PAID, SUBMITTED_EVENT, VERIFIED],
    ],
    ids=lambda events: "-".join(e.event_type for e in events),
)
def test_any_order_of_the_same_events_completes_exactly_once(events: list[Observation]) -> None:
    # Given the same events in a different order
    transitions = run(events)
    # Then the application ends completed at 100 and asks for application.completed once
    assert transitions[-1].state.status is Status.COMPLETED
    assert transitions[-1].state.progress == 100
    assert sum(t.emit_completed for t in transitions) == 1


@pytest.mark.parametrize(
    "events",
    [
        [SUBMITTED_EVENT, VERIFIED, INITIATED, PAID],
        [INITIATED, VERIFIED, PAID],
        [SUBMITTED_EVENT, REJECTED],
        [SUBMITTED_EVENT, VERIFIED, INITIATED, PAYMENT_FAILED],
    ],
)
def test_progress_never_goes_backwards(events: list[Observation]) -> None:
    progress = [SUBMITTED.progress] + [t.state.progress for t in run(events)]
    assert progress == sorted(progress)


@pytest.mark.parametrize(
    "event", [SUBMITTED_EVENT, VERIFIED, REJECTED, INITIATED, PAID, PAYMENT_FAILED]
)
@pytest.mark.parametrize(
    "before",
    [
        [SUBMITTED_EVENT],
        [SUBMITTED_EVENT, VERIFIED],
        [SUBMITTED_EVENT, VERIFIED, INITIATED],
        [SUBMITTED_EVENT, VERIFIED, INITIATED, PAID],
    ],
    ids=["verifying", "processing", "awaiting", "completed"],
)
def test_an_event_seen_twice_changes_nothing_the_second_time(
    before: list[Observation], event: Observation
) -> None:
    # Given an application that has already seen ``event`` once
    state = final([*before, event])
    # When the same event comes again
    again = apply(state, event)
    # Then nothing changes, nothing is recorded and nothing is emitted
    assert again == Transition(state, (), emit_completed=False)


def test_a_late_event_cannot_move_the_status_back() -> None:
    # Given an application awaiting payment
    state = final([SUBMITTED_EVENT, VERIFIED, INITIATED])
    # When an older event arrives late
    transition = apply(state, SUBMITTED_EVENT)
    # Then the status stays where it is
    assert transition.state.status is Status.AWAITING_PAYMENT
    assert transition.history == ()


def test_documents_verified_after_the_checkout_is_a_fact_without_a_step_back() -> None:
    # Given the checkout event overtook the verdict
    state = final([SUBMITTED_EVENT, INITIATED])
    assert state.status is Status.AWAITING_PAYMENT
    # When the verdict arrives
    transition = apply(state, VERIFIED)
    # Then the flag is set and noted, the status stays
    assert transition.state.docs_verified
    assert transition.state.status is Status.AWAITING_PAYMENT
    assert [e.note for e in transition.history] == ["documents verified"]


def test_payment_before_verification_waits_for_the_documents() -> None:
    # Given the payment is known before the documents' verdict
    transition = apply(final([SUBMITTED_EVENT]), PAID)
    # Then the fact is recorded but the application is not complete yet
    assert transition.state.payment_completed
    assert transition.state.status is Status.VERIFYING
    assert not transition.emit_completed
    assert [e.note for e in transition.history] == ["fee paid"]


@pytest.mark.parametrize(
    ("events", "terminal"),
    [
        ([SUBMITTED_EVENT, REJECTED], Status.VERIFICATION_FAILED),
        ([SUBMITTED_EVENT, VERIFIED, INITIATED, PAYMENT_FAILED], Status.PAYMENT_FAILED),
        ([SUBMITTED_EVENT, VERIFIED, INITIATED, PAID], Status.COMPLETED),
    ],
)
@pytest.mark.parametrize(
    "late", [SUBMITTED_EVENT, VERIFIED, REJECTED, INITIATED, PAID, PAYMENT_FAILED]
)
def test_terminal_states_never_change(
    events: list[Observation], terminal: Status, late: Observation
) -> None:
    # Given an application in a terminal state
    state = final(events)
    assert state.status is terminal
    # When any other event arrives
    transition = apply(state, late)
    # Then nothing changes and application.completed is not asked for again
    assert transition.state == state
    assert not transition.emit_completed


def test_rejection_is_terminal_and_keeps_the_reasons() -> None:
    transition = apply(final([SUBMITTED_EVENT]), REJECTED)
    assert transition.state.status is Status.VERIFICATION_FAILED
    assert transition.state.progress == 30  # failure does not pretend to progress
    assert [e.note for e in transition.history] == ["documents rejected: cv.pdf: encrypted"]


def test_the_first_verdict_wins() -> None:
    # Given documents already verified
    state = final([SUBMITTED_EVENT, VERIFIED])
    # When a contradicting rejection arrives
    transition = apply(state, REJECTED)
    # Then it is ignored
    assert transition.state == state


def test_a_paid_fee_is_not_undone_by_a_failure_notice() -> None:
    state = final([SUBMITTED_EVENT, PAID])
    assert apply(state, PAYMENT_FAILED).state == state


def test_e_mails_are_noted_even_on_a_finished_application() -> None:
    state = final([SUBMITTED_EVENT, VERIFIED, INITIATED, PAID])
    transition = apply(state, EMAIL)
    assert transition.state == state
    assert [(e.status, e.note) for e in transition.history] == [
        (Status.COMPLETED, "e-mail sent: confirmation")
    ]


def test_the_first_checkout_url_is_kept() -> None:
    state = final([SUBMITTED_EVENT, VERIFIED, INITIATED])
    other = Observation("payment.initiated", payment_id="pay_2", checkout_url="https://psp/c/2")
    assert apply(state, other).state.checkout_url == "https://psp/c/1"


@pytest.mark.parametrize("start", [SUBMITTED, final([SUBMITTED_EVENT, REJECTED])])
def test_an_event_without_a_rule_is_refused(start: ApplicationState) -> None:
    with pytest.raises(UnknownObservation):
        apply(start, Observation("announcement.published"))
