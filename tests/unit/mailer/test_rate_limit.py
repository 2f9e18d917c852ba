"""The token bucket's maths, as a pure function, and the in-memory limiter built on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.mailer.rate_limit import (
    LaneRate,
    MemoryRateLimiter,
    refill,
    take_token,
    take_tokens,
)


@pytest.mark.parametrize(
    ("tokens", "elapsed", "expected"),
    [
        (0.0, 0.0, 0.0),  # no time, no tokens
        (0.0, 0.1, 1.0),  # 10/s for 0.1 s
        (2.5, 0.05, 3.0),
        (4.0, 10.0, 5.0),  # never above capacity
        (3.0, -2.0, 3.0),  # a clock going backwards adds nothing (and takes nothing)
    ],
)
def test_refill_adds_rate_times_elapsed_up_to_capacity(
    tokens: float, elapsed: float, expected: float
) -> None:
    assert refill(tokens, capacity=5.0, refill_per_second=10.0, elapsed=elapsed) == pytest.approx(
        expected
    )


def test_a_token_is_granted_when_at_least_one_is_there() -> None:
    # Given 0.4 tokens and 0.1 s at 10/s (1.4 available)
    result = take_token(0.4, capacity=5.0, refill_per_second=10.0, elapsed=0.1)
    # Then one is taken and 0.4 stay
    assert result.granted
    assert result.tokens == pytest.approx(0.4)
    assert result.wait_seconds == 0.0


def test_an_empty_bucket_says_how_long_until_the_next_token() -> None:
    # Given 0.25 tokens, no time passed, 5 tokens a second
    result = take_token(0.25, capacity=5.0, refill_per_second=5.0, elapsed=0.0)
    # Then nothing is taken, and the next token is 0.75 / 5 s away
    assert not result.granted
    assert result.tokens == pytest.approx(0.25)
    assert result.wait_seconds == pytest.approx(0.15)


def test_waiting_the_announced_time_is_enough_for_a_token() -> None:
    denied = take_token(0.0, capacity=1.0, refill_per_second=3.0, elapsed=0.0)
    after = take_token(
        denied.tokens, capacity=1.0, refill_per_second=3.0, elapsed=denied.wait_seconds
    )
    assert not denied.granted and after.granted


def test_grants_over_a_period_never_exceed_capacity_plus_rate_times_period() -> None:
    # Given a bucket polled every 7 ms for 2 s at 20/s with a burst of 3
    tokens, granted, step = 3.0, 0, 0.007
    for _ in range(int(2.0 / step)):
        result = take_token(tokens, capacity=3.0, refill_per_second=20.0, elapsed=step)
        tokens, granted = result.tokens, granted + result.granted
    # Then what was granted is the burst plus the refill, no more (and not much less)
    assert 3 + 20 * 2.0 - 2 <= granted <= 3 + 20 * 2.0


async def test_memory_limiter_spaces_out_acquisitions_beyond_the_burst() -> None:
    # Given a lane of 40/s with a burst of 2
    limiter = MemoryRateLimiter({"low": LaneRate(refill_per_second=40.0, capacity=2.0)})
    started = time.monotonic()
    # When 8 tokens are taken concurrently
    await asyncio.gather(*(limiter.acquire("low") for _ in range(8)))
    # Then the 6 beyond the burst took at least 6 / 40 s
    assert time.monotonic() - started >= 6 / 40 - 0.01
    assert limiter.granted["low"] == 8


@pytest.mark.parametrize(
    ("tokens", "want", "granted", "left"),
    [(5.5, 3, 3, 2.5), (2.5, 8, 2, 0.5), (1.0, 1, 1, 0.0), (0.5, 4, 0, 0.5)],
)
def test_a_block_takes_as_many_whole_tokens_as_wanted_and_there(
    tokens: float, want: int, granted: int, left: float
) -> None:
    result = take_tokens(tokens, want=want, capacity=10.0, refill_per_second=4.0, elapsed=0.0)
    assert (result.granted, result.tokens) == (granted, pytest.approx(left))


def test_an_empty_bucket_asked_for_a_block_says_when_the_block_is_there() -> None:
    # Given half a token, 4 a second, a block of 4 wanted (capacity 3: at most 3 can gather)
    result = take_tokens(0.5, want=4, capacity=3.0, refill_per_second=4.0, elapsed=0.0)
    # Then the wait is until the bucket holds 3
    assert result.granted == 0
    assert result.wait_seconds == pytest.approx((3 - 0.5) / 4)
