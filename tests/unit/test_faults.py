"""Fault injection (shared.faults): off by default, repeatable with a seed, never on a
message's last attempt."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from shared.faults import FaultPoint, Faults, InjectedFault, sparing
from shared.settings import CoreSettings


def point(rate: float, seed: int = 1, latency_ms: float = 0.0) -> FaultPoint:
    return FaultPoint("test", rate, latency_ms, random.Random(seed))


async def answer() -> str:
    return "answer"


def context(attempt: int, max_attempts: int) -> Any:
    return SimpleNamespace(
        attempt=attempt,
        queue=SimpleNamespace(max_attempts=max_attempts),
        last_attempt=attempt >= max_attempts,
    )


def test_faults_are_off_by_default() -> None:
    # Given settings from an environment without FAULT_* variables
    faults = Faults.from_settings(CoreSettings())
    # Then no point is enabled
    assert not any(p.enabled for p in (faults.handler, faults.provider, faults.smtp))


def test_settings_choose_each_point(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the environment of a chaos run
    monkeypatch.setenv("FAULT_HANDLER_FAILURE_RATE", "0.05")
    monkeypatch.setenv("FAULT_SMTP_LATENCY_MS", "20")
    # When the faults are built from the settings
    faults = Faults.from_settings(CoreSettings())
    # Then each point has its own figures
    assert faults.handler.failure_rate == 0.05
    assert faults.smtp.latency_ms == 20
    assert faults.provider.failure_rate == 0.0


async def test_a_rate_fails_about_that_share_of_calls() -> None:
    # Given a point failing 30% of calls
    faulty = point(0.3, seed=7)
    failures = 0
    # When it is called 2,000 times
    for _ in range(2000):
        try:
            await faulty.around(answer())
        except InjectedFault:
            failures += 1
    # Then about 30% failed
    assert 500 < failures < 700


async def test_the_same_seed_gives_the_same_failures() -> None:
    # Given two settings with the same seed
    async def outcomes(seed: int) -> list[bool]:
        faults = Faults.from_settings(
            CoreSettings(fault_provider_failure_rate=0.5, fault_seed=seed)
        )
        results = []
        for _ in range(50):
            try:
                await faults.provider.around(answer())
                results.append(True)
            except InjectedFault:
                results.append(False)
        return results

    # Then they fail the same calls, and another seed does not
    assert await outcomes(3) == await outcomes(3)
    assert await outcomes(3) != await outcomes(4)


async def test_a_lost_answer_still_made_the_call() -> None:
    # Given a point that always fails
    faulty = point(1.0, seed=11)
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "done"

    # When it is called many times
    for _ in range(200):
        with pytest.raises(InjectedFault):
            await faulty.around(counted())
    # Then some calls happened (answer lost afterwards) and some did not (failed before)
    assert 0 < calls < 200


async def test_nothing_fails_on_the_last_attempt() -> None:
    # Given a point that always fails
    faulty = point(1.0)
    # When a call is made during a message's last attempt
    with sparing(True):
        result = await faulty.around(answer())
    # Then it succeeds
    assert result == "answer"


async def test_the_handler_wrapper_fails_before_the_work_except_on_the_last_attempt() -> None:
    # Given a handler behind a point that always fails
    faults = Faults.none()
    faults.handler = point(1.0)
    done: list[int] = []

    async def handler(ctx: Any) -> None:
        done.append(ctx.attempt)

    wrapped = faults.wrap(handler)
    # When attempts 1 and 3 of 3 are handled
    with pytest.raises(InjectedFault):
        await wrapped(context(1, 3))
    await wrapped(context(3, 3))
    # Then only the last one reached the handler
    assert done == [3]


async def test_latency_is_added() -> None:
    # Given a point adding 50 ms and never failing
    import time

    slow = point(0.0, latency_ms=50)
    started = time.monotonic()
    # When it is called
    await slow.around(answer())
    # Then the call took at least that long
    assert time.monotonic() - started >= 0.045
