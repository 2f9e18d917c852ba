"""``make run`` starts every service with its own broker login, never the administrator's."""

from __future__ import annotations

from urllib.parse import urlsplit

from devtools.run_system import system_processes, with_broker_logins
from shared.manifest import process_logins


def test_every_service_process_logs_in_as_its_own_user() -> None:
    env = {"RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/run"}
    specs = {spec.name: spec for spec in with_broker_logins(system_processes({}), env)}
    for name, login in process_logins().items():
        url = urlsplit(specs[name].env["RABBITMQ_URL"])
        assert (url.username, url.password) == (login, f"{login}-dev-password")
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5672, "/run")
    # the processes that do not use the broker get no login at all
    assert "RABBITMQ_URL" not in specs["sandbox"].env
    assert specs["api"].env["RABBITMQ_MANAGEMENT_USER"] == "api"
