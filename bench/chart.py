"""The spike as a picture: accept latency and the backlog over the same seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt  # after use(): the backend is chosen first


def draw_spike(spike: dict[str, Any], path: Path) -> None:
    latency = spike["latency_series"]
    backlog = spike["backlog"]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    top.plot([p["at"] for p in latency], [p["p50"] for p in latency], label="p50")
    top.plot([p["at"] for p in latency], [p["p99"] for p in latency], label="p99")
    top.set_ylabel("accept latency (ms)")
    top.set_yscale("log")
    top.set_title(
        f"spike: {spike['offered']} submissions offered at {spike['offered_rps']:g}/s,"
        f" {spike['accepted']} accepted, {spike['errors']} errors"
    )
    top.legend()
    top.grid(True, which="both", alpha=0.3)
    at = [s["at"] for s in backlog]
    bottom.plot(at, [s["outbox_unpublished"] for s in backlog], label="outbox unpublished")
    bottom.plot(at, [s["queued"] for s in backlog], label="messages in work queues")
    bottom.plot(at, [s["completed"] for s in backlog], label="applications completed")
    bottom.set_xlabel("seconds since the first submission was due")
    bottom.set_ylabel("count")
    bottom.legend()
    bottom.grid(True, alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
