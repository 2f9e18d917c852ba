"""Admission control: the limit, and the Retry-After that follows the overload (pure)."""

from __future__ import annotations

import pytest

from services.api.applications.admission import AdmissionLimit, RetryAdvice


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def one_window(advice: RetryAdvice, clock: Clock, accepted: int, shed: int) -> int:
    """A second in which ``accepted`` submissions were taken and ``shed`` turned away; the
    advice given after it."""
    for _ in range(accepted):
        advice.note_accepted()
    for _ in range(shed):
        advice.note_shed()
    clock.now += 1.0
    return advice.seconds


def test_past_the_limit_nothing_more_is_admitted_until_one_leaves() -> None:
    limit = AdmissionLimit(2)

    assert limit.try_enter() and limit.try_enter()
    assert not limit.try_enter()
    assert limit.shed == 1
    limit.leave(accepted=True)
    assert limit.try_enter()


def test_without_overload_the_advice_is_the_minimum() -> None:
    clock = Clock()
    advice = RetryAdvice(minimum=1, maximum=60, clock=clock)

    waits = [one_window(advice, clock, accepted=300, shed=0) for _ in range(10)]

    assert waits == [1] * 10


def test_a_lasting_overload_lengthens_the_wait_until_retries_match_the_pace() -> None:
    # Given 6,000 clients waiting, each coming back after the advised wait, and a process that
    # accepts 200 a second
    clock = Clock()
    advice = RetryAdvice(minimum=1, maximum=60, clock=clock)
    waiting, accepted_per_second = 6000, 200
    wait = advice.seconds
    for _ in range(30):
        retries = waiting / wait
        wait = one_window(advice, clock, accepted_per_second, int(retries))
    # Then the wait settles where the retries arrive at about twice the accept rate
    assert 12 <= wait <= 18  # 6,000 / (2 x 200) = 15
    assert 300 <= waiting / wait <= 500


@pytest.mark.parametrize("windows", [1, 3, 10])
def test_once_nothing_is_turned_away_the_wait_comes_back_down(windows: int) -> None:
    clock = Clock()
    advice = RetryAdvice(minimum=1, maximum=60, clock=clock)
    for _ in range(20):
        one_window(advice, clock, accepted=100, shed=2000)
    overloaded = advice.seconds

    calm = [one_window(advice, clock, accepted=100, shed=0) for _ in range(windows)]

    assert overloaded > 10
    assert calm == sorted(calm, reverse=True) and calm[-1] < overloaded


def test_the_wait_never_leaves_its_bounds() -> None:
    clock = Clock()
    advice = RetryAdvice(minimum=2, maximum=30, clock=clock)

    stalled = [one_window(advice, clock, accepted=0, shed=10_000) for _ in range(20)]
    idle = [one_window(advice, clock, accepted=0, shed=0) for _ in range(20)]

    assert max(stalled) == 30 and min(idle) == 2
