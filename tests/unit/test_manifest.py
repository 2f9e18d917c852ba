"""shared/manifest.py: every service described once, and everything that lists services derived
from it: adding a service to the manifest is the one edit (besides its containers in deploy/,
which these tests hold to the same list)."""

from __future__ import annotations

import importlib.util
import random
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from bench.observe import OUTBOX_SOURCES
from deploy.definitions.document import export_definitions
from deploy.definitions.users import dev_users
from devtools.broker_users import process_environment
from devtools.chaos.breakers import Breakers
from devtools.run_system import system_processes
from services.api.settings import ApiSettings
from services.relay.app import RelaySettings
from shared import manifest
from shared.asyncapi import asyncapi_document
from shared.db.migrate import parse_targets
from shared.manifest import (
    SERVICES,
    ServiceProcess,
    ServiceSpec,
    metrics_ports,
    migrate_arguments,
    outbox_sources,
    process_logins,
    processes,
    service_names,
)
from shared.settings import CoreSettings, database_password_settings
from shared.system_topology import SYSTEM_TOPOLOGY
from tests.unit.deploy.compose_file import load_compose

ROOT = Path(__file__).resolve().parents[2]

GRADER = ServiceSpec(
    "grader",
    (ServiceProcess("grader", "services.grader", 9199, consumes_queues=True),),
    migrations="services.grader.migrations",
    has_outbox=True,
)


@pytest.fixture
def with_grader(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServiceSpec, ...]]:
    """The manifest with one more service in it: the only edit adding a service takes."""
    extended = (*SERVICES, GRADER)
    monkeypatch.setattr(manifest, "SERVICES", extended)
    yield extended


# --- the manifest itself ---------------------------------------------------------------------


def test_names_processes_and_ports_are_unique() -> None:
    assert len(set(service_names())) == len(SERVICES)
    names = [process.name for process in processes()]
    assert len(set(names)) == len(names)
    ports = list(metrics_ports().values())
    assert len(set(ports)) == len(ports)


def test_every_process_and_migrations_package_exists() -> None:
    for process in processes():
        spec = importlib.util.find_spec(process.module)
        assert spec is not None, process.module
        if spec.submodule_search_locations is not None:
            assert importlib.util.find_spec(f"{process.module}.__main__") is not None
    for service in SERVICES:
        if service.migrations:
            assert importlib.util.find_spec(service.migrations) is not None, service.migrations


def test_queues_are_the_topologys_not_a_copy() -> None:
    every_queue = [queue for service in SERVICES for queue in service.queues]
    assert sorted(q.name for q in every_queue) == sorted(q.name for q in SYSTEM_TOPOLOGY.queues)
    assert {queue.service for queue in SYSTEM_TOPOLOGY.queues} <= set(service_names())


def test_a_service_that_consumes_has_a_consuming_process_and_only_then() -> None:
    for service in SERVICES:
        consuming = any(process.consumes_queues for process in service.processes)
        assert consuming == bool(service.queues), service.name


# --- adding a service is one edit ------------------------------------------------------------


def test_settings_read_a_new_services_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_class = database_password_settings((*SERVICES, GRADER))
    monkeypatch.setenv("GRADER_DB_PASSWORD", "grader-secret-from-env")
    settings: Any = settings_class()
    assert settings.grader_db_password.get_secret_value() == "grader-secret-from-env"
    assert settings.api_db_password.get_secret_value() == "api-dev-password"


def test_migrate_relay_and_operators_see_a_new_service(
    with_grader: tuple[ServiceSpec, ...],
) -> None:
    assert ("grader", ["services.grader.migrations"]) in parse_targets(migrate_arguments())
    assert "grader" in RelaySettings().relay_sources
    assert "grader" in ApiSettings().ops_schemas


def test_the_definitions_give_a_new_service_its_broker_login(
    with_grader: tuple[ServiceSpec, ...],
) -> None:
    document = export_definitions(SYSTEM_TOPOLOGY, dev_users())
    assert "grader" in {user["name"] for user in document["users"]}
    assert "grader" in {entry["user"] for entry in document["permissions"]}


def test_the_asyncapi_document_names_a_new_service(
    with_grader: tuple[ServiceSpec, ...],
) -> None:
    tags = {tag["name"] for tag in asyncapi_document()["info"]["tags"]}
    assert "grader" in tags


def test_make_run_and_chaos_see_a_new_services_process(
    with_grader: tuple[ServiceSpec, ...],
) -> None:
    specs = {spec.name: spec for spec in system_processes({})}
    assert specs["grader"].argv[-1] == "services.grader"
    assert specs["grader"].env["METRICS_PORT"] == "9199"
    assert specs["grader"].nice > 0  # a consumer yields the CPU like the others
    assert "RABBITMQ_URL" in process_environment("grader", {"RABBITMQ_URL": "amqp://h/v"})
    breakers = Breakers(cast(Any, None), controls_servers=False, started=0.0)
    assert "kill:grader" in breakers.plan(random.Random(1), rounds=1)


# --- what is written elsewhere matches the manifest -----------------------------------------


def test_core_settings_have_each_services_database_password() -> None:
    fields = set(CoreSettings.model_fields)
    assert {service.db_password_setting for service in SERVICES} <= fields
    assert {name for name in fields if name.endswith("_db_password")} == {
        *(service.db_password_setting for service in SERVICES),
        "ops_db_password",
    }


def test_defaults_cover_exactly_the_manifest() -> None:
    assert RelaySettings().relay_sources == outbox_sources()
    assert ApiSettings().ops_schemas == outbox_sources()
    assert list(OUTBOX_SOURCES) == outbox_sources()
    assert {user.name for user in dev_users()} == {*service_names(), "ops", "operator"}
    assert [tag["name"] for tag in asyncapi_document()["info"]["tags"]] == list(service_names())
    supervised = {spec.name for spec in system_processes({})} - {"smtp", "sandbox"}
    assert supervised == {process.name for process in processes()}
    assert set(process_logins()) == supervised


def test_the_makefile_migrates_the_manifest() -> None:
    """``make migrate`` asks Python for the list (no arguments: the manifest)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^migrate:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    assert re.search(r"-m shared\.db\.migrate\s*$", recipe.group(1), re.MULTILINE), recipe.group(1)


def test_compose_and_kubernetes_migrate_the_manifest_and_run_every_process() -> None:
    compose = load_compose()["services"]
    assert sorted(compose["migrate"]["command"][3:]) == sorted(migrate_arguments())
    assert {process.name for process in processes()} <= set(compose)
    job = yaml.safe_load((ROOT / "deploy" / "k8s" / "migrate-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert sorted(container["command"][3:]) == sorted(migrate_arguments())
    workloads = {
        path.stem for path in (ROOT / "deploy" / "k8s").glob("*.yaml") if path.stem != "keda"
    }
    assert {process.name for process in processes()} <= workloads


def test_the_import_contract_keeps_every_service_apart() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    independent = next(c for c in contracts if c["type"] == "independence")
    packages = {".".join(process.module.split(".")[:2]) for process in processes()}
    assert set(independent["modules"]) == packages
