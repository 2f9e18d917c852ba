from __future__ import annotations

from devtools.chaos.stalls import longest_gap, typical_gap


def test_the_longest_gap_overlapping_the_fault_counts_recovery_whole() -> None:
    # events every second, nothing between 10 and 25, a fault from 12 to 20
    times = [float(t) for t in [*range(0, 11), *range(25, 30)]]
    assert longest_gap(times, 12, 20) == 15.0


def test_gaps_outside_the_fault_do_not_count() -> None:
    times = [0.0, 1.0, 10.0, 11.0, 12.0, 13.0]
    assert longest_gap(times, 11.5, 12.5) == 1.0


def test_nothing_after_the_fault_is_no_recovery() -> None:
    assert longest_gap([0.0, 1.0], 5, 6) is None


def test_the_typical_gap_is_the_median() -> None:
    assert typical_gap([0.0, 0.25, 0.5, 0.75, 10.0]) == 0.25
