"""tests/compose: the whole system under docker compose, as a developer runs it.

``make test`` runs these when a Docker engine answers or ``scripts/docker-engine.sh up`` can
start one; elsewhere they are skipped, unless REQUIRE_DOCKER=1 (CI) makes that a failure.
The stack is started once (``make compose-up``) and stopped by the last test
(``make compose-down``); its make output is kept in reports/compose/.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from devtools.servers.envfile import ROOT
from tests.browser.conftest import browser, screenshots  # noqa: F401 (fixtures)
from tests.compose.stack import ComposeStack

LOG_DIR = ROOT / "reports" / "compose"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compose: runs the system under docker compose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/compose/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.compose)


def engine_or_skip() -> None:
    started = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-engine.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if started.returncode != 0:
        why = f"no Docker engine answers and none could be started: {started.stderr.strip()}"
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)


# Module scope: even when a test fails, the stack is gone before the next folder's tests run
# (a dozen containers would slow them down).
@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    engine_or_skip()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    running = ComposeStack.on_free_ports(LOG_DIR)
    running.make("compose-down")  # what an interrupted run may have left
    running.make("compose-up")
    yield running
    running.make("compose-down")
