"""The benchmark's report: latency per second and the spike chart."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import per_second
from bench.chart import draw_spike


def test_latency_is_summarised_per_second_of_answers() -> None:
    series = per_second([0.1, 0.5, 0.9, 1.2, 2.7], [10.0, 20.0, 30.0, 100.0, 5.0])
    assert [(p["at"], p["answered"]) for p in series] == [(0, 3), (1, 1), (2, 1)]
    assert series[0]["p50"] == 20.0 and series[0]["p99"] == 30.0
    assert series[1]["p99"] == 100.0


def test_the_spike_chart_is_a_png_of_both_series(tmp_path: Path) -> None:
    spike = {
        "offered": 3,
        "offered_rps": 1000.0,
        "accepted": 3,
        "errors": 0,
        "latency_series": per_second([0.1, 0.2, 1.1], [5.0, 7.0, 9.0]),
        "backlog": [
            {"at": 0.0, "outbox_unpublished": 0, "queued": 0, "completed": 0},
            {"at": 1.0, "outbox_unpublished": 2, "queued": 5, "completed": 1},
        ],
    }
    chart = tmp_path / "spike.png"
    draw_spike(spike, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000  # axes, lines and labels, not an empty canvas
