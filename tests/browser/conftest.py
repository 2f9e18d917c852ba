"""Browser tests: headless Chromium against the running system (``system`` in tests/conftest.py).

Chromium and chromedriver are Debian packages that ``make test`` installs through
``scripts/ensure-browser.sh``; screenshots land in the git-ignored ``reports/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.browser.chromium import missing_binaries, start_chromium
from tests.support.infra import ROOT

SCREENSHOTS = ROOT / "reports" / "screenshots"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = missing_binaries()
    if missing:
        pytest.fail(f"{', '.join(map(str, missing))} missing: run `bash scripts/ensure-browser.sh`")
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
