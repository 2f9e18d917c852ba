"""The API's request metrics and ``/metrics`` route, in-process on a small app and the real one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import build_resources, create_app
from services.api.auth.passwords import Passwords
from services.api.metrics import UNMATCHED_ROUTE, install_metrics
from services.api.settings import ApiSettings
from tests.unit.api.unopened import unopened_pool

LATENCY = "admissions_http_request_seconds"
SECRET = "unit-test-jwt-secret-at-least-32-bytes"


def small_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()
    things = APIRouter(prefix="/things")

    @things.get("/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @things.post("/{thing_id}/break")
    async def break_thing(thing_id: str) -> None:
        raise RuntimeError("broken")

    install_metrics(app, registry)
    app.include_router(things)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app(registry), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def count(registry: CollectorRegistry, method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return registry.get_sample_value(f"{LATENCY}_count", labels) or 0.0


async def test_requests_are_timed_by_route_template_not_raw_path(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    # When three different things are fetched
    for thing in ("a", "b", "c"):
        assert (await client.get(f"/things/{thing}")).status_code == 200
    # Then they share one series, labelled with the template
    assert count(registry, "GET", "/things/{thing_id}", "200") == 3
    assert count(registry, "GET", "/things/a", "200") == 0


async def test_unmatched_paths_share_one_label_and_failures_count_as_500(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    # When a scanner probes two unknown paths and a handler fails
    await client.get("/wp-login.php")
    await client.get("/.env")
    failed = await client.post("/things/a/break")
    # Then unknown paths are one series, and the failure is a 500 of its route
    assert failed.status_code == 500
    assert count(registry, "GET", UNMATCHED_ROUTE, "404") == 2
    assert count(registry, "POST", "/things/{thing_id}/break", "500") == 1


async def test_metrics_are_served_as_prometheus_text_and_hidden_from_the_schema(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/things/a")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = families[LATENCY].samples
    assert any(s.labels.get("route") == "/things/{thing_id}" for s in samples)
    schema = (await client.get("/openapi.json")).json()
    assert "/metrics" not in schema["paths"]
    assert "/things/{thing_id}" in schema["paths"]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real API app with resources that never reach a database (the pool stays closed)."""
    settings = ApiSettings(jwt_secret=SECRET, blob_dir=tmp_path / "blobs", blob_fsync=False)
    app = create_app(settings)
    resources = build_resources(settings, unopened_pool(), Passwords())
    app.state.resources = resources
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http
    resources.close()


def scraped(text: str, route: str, status: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == f"{LATENCY}_count"
                and sample.labels.get("route") == route
                and sample.labels.get("status") == status
            ):
                return sample.value
    return 0.0


async def test_the_api_times_its_own_routes(api: httpx.AsyncClient) -> None:
    route = "/applications/{application_id}/status"
    before = scraped((await api.get("/metrics")).text, route, "401")
    # When two anonymous callers ask for an application's status
    for application_id in ("one", "two"):
        assert (await api.get(f"/applications/{application_id}/status")).status_code == 401
    # Then the API's /metrics shows two more under the template
    after = scraped((await api.get("/metrics")).text, route, "401")
    assert after - before == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-ID": "req-1"}, "req-1"),
        ({"X-Correlation-ID": "corr-1"}, "corr-1"),
        ({"X-Request-ID": "req-2", "X-Correlation-ID": "corr-2"}, "req-2"),
        ({"X-Request-ID": "bad id with spaces", "X-Correlation-ID": "corr-3"}, "corr-3"),
    ],
)
async def test_the_callers_id_is_echoed_in_both_headers(
    api: httpx.AsyncClient, headers: dict[str, str], expected: str
) -> None:
    response = await api.get("/healthz", headers=headers)
    assert response.headers["x-request-id"] == expected
    assert response.headers["x-correlation-id"] == expected


async def test_without_an_id_the_request_gets_a_new_one(api: httpx.AsyncClient) -> None:
    first, second = (await api.get("/healthz")).headers, (await api.get("/healthz")).headers
    assert re.fullmatch(r"[0-9a-f-]{36}", first["x-correlation-id"])
    assert first["x-correlation-id"] == first["x-request-id"]
    assert first["x-correlation-id"] != second["x-correlation-id"]
