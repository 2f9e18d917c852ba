"""``make run`` gives every worker a /metrics port of its own, and says where."""

from __future__ import annotations

from devtools.run_system import banner, system_environment, system_processes
from shared.manifest import metrics_ports

DEFAULT_METRICS_PORTS = metrics_ports()


def test_each_worker_gets_its_own_metrics_port_and_the_others_none() -> None:
    ports = {name: 20000 + n for n, name in enumerate(DEFAULT_METRICS_PORTS)}
    specs = {spec.name: spec for spec in system_processes({}, ports)}
    given = {name: spec.env.get("METRICS_PORT") for name, spec in specs.items()}
    assert given == {
        "smtp": None,
        "sandbox": None,
        "api": None,  # serves /metrics on its own HTTP port
        **{name: str(port) for name, port in ports.items()},
    }


def test_the_banner_lists_where_metrics_are() -> None:
    text = banner(system_environment({}), smtp_caught=True)
    assert "http://127.0.0.1:8000/metrics" in text
    assert all(f"{name} {port}" in text for name, port in DEFAULT_METRICS_PORTS.items())
