"""How long accepts and completions stalled around each fault: the longest stretch without
one that overlaps the fault's window (from the fault until it was healed). A stretch that
began during the fault and ended after it counts whole: recovery is part of the stall."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from statistics import median


def longest_gap(times: Sequence[float], start: float, end: float) -> float | None:
    """Seconds; ``None`` when nothing happened after ``start`` at all (the load had ended,
    or it never recovered)."""
    ordered = sorted(times)
    if not ordered or ordered[-1] <= start:
        return None
    longest = 0.0
    previous = None
    for at in ordered:
        if previous is not None and previous < end and at > start:
            longest = max(longest, at - previous)
        previous = at
    first_after = next(at for at in ordered if at > start)
    if first_after == ordered[0]:  # nothing before the fault: from its start
        longest = max(longest, first_after - start)
    return round(longest, 2)


def typical_gap(times: Iterable[float]) -> float | None:
    """The median time between two events: what "no stall" looks like at this load."""
    ordered = sorted(times)
    gaps = [b - a for a, b in pairwise(ordered)]
    return round(median(gaps), 3) if gaps else None
