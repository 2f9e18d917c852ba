from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A chaos run starts the whole system, like the e2e tests: keep it out of `make test-unit`.
    for item in items:
        if "tests/chaos/" in str(item.path) and item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.e2e)
