"""The application's projection as a state machine: plain data in, plain data out.

Events reach the projector out of order and sometimes twice (different paths through the
relay, redeliveries), so every rule is written to be safe either way:

- a status only moves forward along ``FORWARD``; an event that would move it back changes
  nothing;
- terminal statuses (completed, verification_failed, payment_failed) never change again;
- the first verdict on the documents and the first outcome of the payment win;
- an event that changes nothing adds no history, so a duplicate leaves no trace;
- ``completed`` needs both facts (documents verified, payment completed), whichever came
  first.

``submitted -> verifying`` is written by the accept statement itself, and the mails sent are
read from the mailer's record: neither needs an event here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.api.statuses import FORWARD, PROGRESS, TERMINAL, Status


class NoProjectionRule(ValueError):
    """An event type the projection has no rule for."""


@dataclass(frozen=True)
class ApplicationState:
    status: Status
    progress: int
    docs_verified: bool = False
    payment_completed: bool = False
    checkout_url: str | None = None
    payment_id: str | None = None


@dataclass(frozen=True)
class EventFacts:
    """What the projector learnt from one event (its type, and the details that matter)."""

    event_type: str
    payment_id: str | None = None
    checkout_url: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    status: Status
    progress: int
    note: str


@dataclass(frozen=True)
class Transition:
    state: ApplicationState
    history: tuple[HistoryEntry, ...]


class _Steps:
    """The state being worked on, and the history it leaves behind."""

    def __init__(self, state: ApplicationState) -> None:
        self.state = state
        self.history: list[HistoryEntry] = []

    def advance(self, target: Status, note: str) -> None:
        current = self.state.status
        if current in TERMINAL or FORWARD.index(target) <= FORWARD.index(current):
            return
        self.state = replace(self.state, status=target, progress=PROGRESS[target])
        self.record(note)

    def fail(self, terminal: Status, note: str) -> None:
        self.state = replace(self.state, status=terminal)
        self.record(note)

    def record(self, note: str) -> None:
        self.history.append(HistoryEntry(self.state.status, self.state.progress, note))


def apply(state: ApplicationState, event: EventFacts) -> Transition:
    steps = _Steps(state)
    if state.status in TERMINAL:
        if event.event_type not in _RULES:
            raise NoProjectionRule(event.event_type)
        return Transition(state, ())

    try:
        rule = _RULES[event.event_type]
    except KeyError:
        raise NoProjectionRule(event.event_type) from None
    fact = rule(steps, event)

    if steps.state.docs_verified and steps.state.payment_completed:
        steps.advance(Status.COMPLETED, "documents verified and fee paid")
    if steps.state != state and not steps.history and fact:
        steps.record(fact)  # a fact learnt without a change of status still shows in history
    return Transition(steps.state, tuple(steps.history))


# Each rule updates ``steps`` and returns the note for a fact that did not move the status.
def _documents_verified(steps: _Steps, event: EventFacts) -> str | None:
    if steps.state.docs_verified:
        return None
    steps.state = replace(steps.state, docs_verified=True)
    steps.advance(Status.VERIFIED, "documents verified")
    steps.advance(Status.PROCESSING_PAYMENT, "payment in progress")
    return "documents verified"


def _documents_rejected(steps: _Steps, event: EventFacts) -> str | None:
    if not steps.state.docs_verified:  # the first verdict wins
        steps.fail(Status.VERIFICATION_FAILED, event.detail or "documents rejected")
    return None


def _payment_initiated(steps: _Steps, event: EventFacts) -> str | None:
    steps.state = replace(
        steps.state,
        checkout_url=steps.state.checkout_url or event.checkout_url,
        payment_id=steps.state.payment_id or event.payment_id,
    )
    steps.advance(Status.AWAITING_PAYMENT, "checkout ready, awaiting payment")
    return "checkout ready"


def _payment_completed(steps: _Steps, event: EventFacts) -> str | None:
    if steps.state.payment_completed:
        return None
    steps.state = replace(
        steps.state,
        payment_completed=True,
        payment_id=steps.state.payment_id or event.payment_id,
    )
    return "fee paid"


def _payment_failed(steps: _Steps, event: EventFacts) -> str | None:
    if not steps.state.payment_completed:  # the first outcome wins
        steps.fail(Status.PAYMENT_FAILED, event.detail or "payment failed")
    return None


_RULES = {
    "documents.verified": _documents_verified,
    "documents.rejected": _documents_rejected,
    "payment.initiated": _payment_initiated,
    "payment.completed": _payment_completed,
    "payment.failed": _payment_failed,
}
