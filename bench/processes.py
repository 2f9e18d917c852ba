"""Peak memory and CPU time of each of the system's processes, from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (``VmHWM`` peak, ``VmRSS`` now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def cpu_seconds(pid: int, family: bool = False) -> float:
    """CPU time (user + system) of ``pid``; with ``family``, of its children too."""
    return sum(_own_cpu_seconds(p) for p in ([pid, *_children(pid)] if family else [pid]))


def command_cpu_seconds(command: str) -> float:
    """CPU time of every process running ``command`` (``postgres``: the server and its
    backends). A process that ends meanwhile takes its CPU time with it."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == command:
                total += _own_cpu_seconds(int(comm.parent.name))
    return total


# The system's own services; the SMTP catcher and the payment sandbox stand in for outside
# parties, so their CPU is not the system's cost.
OUTSIDE_PARTIES = frozenset({"smtp", "sandbox"})


def services_cpu_seconds(pids: Mapping[str, int | None]) -> float:
    """CPU seconds the system's services (children included) have used so far."""
    total = 0.0
    for name, pid in pids.items():
        if pid is None or name in OUTSIDE_PARTIES:
            continue
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid, family=True)
    return total


def cpu_ms_per_application(before_s: float, after_s: float, applications: int) -> float:
    return round((after_s - before_s) * 1000 / applications, 1) if applications else 0.0


def process_stats(pids: Mapping[str, int | None]) -> dict[str, dict[str, float]]:
    """Per named process (children such as the verifier's check workers counted in):
    ``max_rss_mb`` is the largest peak of any one of its processes, ``cpu_s`` the sum."""
    stats: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        family = [pid, *_children(pid)]
        try:
            stats[name] = {
                "max_rss_mb": round(max(_status_mb(p, "VmHWM") for p in family), 1),
                "cpu_s": round(cpu_seconds(pid, family=True), 2),
            }
        except OSError:
            continue
    return stats


def current_rss_mb(pids: Mapping[str, int | None]) -> dict[str, float]:
    """Resident memory now, per named process: the largest of its family."""
    now: dict[str, float] = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        with contextlib.suppress(OSError):
            now[name] = round(max(_status_mb(p, "VmRSS") for p in [pid, *_children(pid)]), 1)
    return now


@contextlib.contextmanager
def frozen(process_groups: Iterable[int]) -> Iterator[None]:
    """Every process of these process groups stopped (SIGSTOP) meanwhile, continued after.

    A frozen process uses no CPU and goes on where it was; its open transactions stay open,
    so freeze only processes whose locks the work meanwhile does not need."""
    groups = list(process_groups)
    stopped = []
    try:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGSTOP)
                stopped.append(group)
        yield
    finally:
        for group in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)
