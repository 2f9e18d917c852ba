"""devtools/servers: the env file every tool reads, and how ``up`` reads external URLs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.servers import cli, envfile

AWKWARD = {
    "RABBITMQ_URL": "amqp://user:pa'ss@127.0.0.1:5672/",
    "DATABASE_URL": 'postgresql://postgres:$HOME `x` "q"@127.0.0.1:5432/admissions',
    "EMPTY": "",
}


def test_the_env_file_reads_back_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "infra.env"
    envfile.write(AWKWARD, path)
    assert envfile.read(path) == AWKWARD


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_shell_sourcing_the_env_file_sees_the_same_values(tmp_path: Path, shell: str) -> None:
    # The Makefile sources it with /bin/sh (dash), developers with their shell.
    path = tmp_path / "infra.env"
    envfile.write(AWKWARD, path)
    for key, value in AWKWARD.items():
        printed = subprocess.run(
            [shell, "-c", f'. "{path}"; printf %s "${key}"'],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert printed == value


def test_external_mode_takes_the_management_login_from_the_amqp_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: dict[str, str] = {}
    monkeypatch.setattr(envfile, "write", lambda values: written.update(values))
    monkeypatch.setattr(cli, "_wait_reachable", lambda *_: None)
    monkeypatch.setenv("RABBITMQ_URL", "amqp://ops%40uni:p%3Aw@broker.internal:5673/admissions")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:x@db.internal:5432/admissions")
    monkeypatch.delenv("RABBITMQ_MANAGEMENT_URL", raising=False)
    monkeypatch.delenv("RABBITMQ_MANAGEMENT_USER", raising=False)
    monkeypatch.delenv("RABBITMQ_MANAGEMENT_PASSWORD", raising=False)
    cli.up_external()
    assert written["INFRA_MODE"] == "external"
    assert written["RABBITMQ_MANAGEMENT_URL"] == "http://broker.internal:15672/"
    assert (written["RABBITMQ_MANAGEMENT_USER"], written["RABBITMQ_MANAGEMENT_PASSWORD"]) == (
        "ops@uni",
        "p:w",
    )


def test_an_unknown_command_prints_the_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bogus"]) == 2
    assert "up | down | status | env" in capsys.readouterr().err
