"""The benchmark's CPU per application: the services' CPU, not the outside parties'."""

from __future__ import annotations

import os

from bench.processes import cpu_ms_per_application, services_cpu_seconds


def test_the_outside_parties_and_gone_processes_are_not_counted() -> None:
    me = os.getpid()
    mine = services_cpu_seconds({"api": me})
    assert mine > 0
    assert services_cpu_seconds({"smtp": me, "sandbox": me, "relay": None}) == 0.0
    assert services_cpu_seconds({"api": me, "gone": 2**22 + 12345}) >= mine


def test_cpu_per_application_is_the_difference_over_the_applications() -> None:
    assert cpu_ms_per_application(10.0, 14.5, 100) == 45.0
    assert cpu_ms_per_application(10.0, 14.5, 0) == 0.0
