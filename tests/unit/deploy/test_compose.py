"""deploy/compose.yaml: valid Compose, commands that exist, references that resolve, scalable."""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic_settings import BaseSettings

from deploy.definitions.users import dev_password
from services.api.settings import ApiSettings
from services.mailer.settings import MailerSettings
from services.payments.sandbox.settings import SandboxSettings
from services.payments.settings import PaymentsSettings
from services.relay.app import RelaySettings
from services.verifier.settings import VerifierSettings
from shared.manifest import processes, service_names
from shared.settings import CoreSettings
from tests.unit.deploy.compose_file import (
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    DEPLOY,
    ROOT,
    command_module,
    env_example,
    interpolate,
    load_compose,
    published_host_ports,
    variable_uses,
    variables,
)

COMPOSE = load_compose()
SERVICES: dict[str, Any] = interpolate(COMPOSE["services"])
# Services that hold no single-instance state: `--scale NAME=N` must work for each.
SCALABLE = tuple(process.name for process in processes())
# Each application service, the settings class that reads its environment, its broker user
# and its database role.
APPLICATIONS: dict[str, tuple[type[BaseSettings], str | None, str | None]] = {
    "api": (ApiSettings, "api", "api"),
    "projector": (ApiSettings, "api", "api"),
    "relay": (RelaySettings, "relay", "relay"),
    "verifier": (VerifierSettings, "verifier", "verifier"),
    "payments": (PaymentsSettings, "payments", "payments"),
    "mailer": (MailerSettings, "mailer", "mailer"),
    "sandbox": (SandboxSettings, None, None),
    "migrate": (CoreSettings, None, None),
}
# .env.example variables that compose does not read: inputs of `python -m deploy.definitions
# --passwords-from-env` only.
DEFINITIONS_ONLY = {"OPERATOR_RABBITMQ_PASSWORD"}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value = service.get("depends_on", {})
    if isinstance(value, list):
        return {name: {"condition": "service_started"} for name in value}
    return dict(value)


def test_the_file_is_valid_against_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema")
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"the Compose schema is not at {COMPOSE_SCHEMA} (../shared/schemas/)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    # Both as written and after interpolation with the defaults (what compose runs)
    for document in (COMPOSE, interpolate(COMPOSE)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_the_system_is_all_there() -> None:
    expected = {"rabbitmq", "postgres", "mail", "nginx", "migrate", *APPLICATIONS}
    assert expected <= set(SERVICES)
    assert SERVICES["api"]["deploy"]["replicas"] == 2
    assert SERVICES["relay"]["deploy"]["replicas"] == 2
    assert SERVICES["mail"]["image"].startswith("axllent/mailpit")
    assert "management" in SERVICES["rabbitmq"]["image"]


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_every_command_is_a_module_of_the_code(name: str) -> None:
    module = command_module(SERVICES[name]["command"])
    assert module is not None, f"{name}: command is not `python -m MODULE ...`"
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{name}: no module {module}"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_migrate_provisions_every_service_with_its_migrations() -> None:
    arguments = list(SERVICES["migrate"]["command"])[3:]
    services = {argument.partition(":")[0] for argument in arguments}
    assert services == set(service_names())
    for argument in arguments:
        _, _, package = argument.partition(":")
        if package:
            assert importlib.util.find_spec(package) is not None, package
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_dependency_exists_with_a_valid_condition() -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for target, rule in depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target}"
            assert rule.get("condition", "service_started") in conditions
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"


def test_services_start_after_migrations_and_a_healthy_broker() -> None:
    assert depends_on(SERVICES["migrate"])["postgres"]["condition"] == "service_healthy"
    for name in SCALABLE:
        rules = depends_on(SERVICES[name])
        assert rules["migrate"]["condition"] == "service_completed_successfully", name
        assert rules["rabbitmq"]["condition"] == "service_healthy", name
    assert depends_on(SERVICES["nginx"])["api"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", SCALABLE)
def test_scalable_services_have_no_fixed_name_or_host_port(name: str) -> None:
    service = SERVICES[name]
    assert "container_name" not in service
    assert not published_host_ports(service), f"{name} publishes a host port"
    assert "hostname" not in service


def test_no_container_names_anywhere() -> None:
    assert not [name for name, service in SERVICES.items() if "container_name" in service]


def test_infrastructure_keeps_what_scripts_infra_sh_relies_on() -> None:
    # scripts/infra.sh: docker compose -f deploy/compose.yaml up -d --wait rabbitmq postgres
    raw = COMPOSE["services"]
    assert "127.0.0.1:${INFRA_AMQP_PORT:-5672}:5672" in raw["rabbitmq"]["ports"]
    assert "127.0.0.1:${INFRA_MGMT_PORT:-15672}:15672" in raw["rabbitmq"]["ports"]
    assert "127.0.0.1:${INFRA_PG_PORT:-5432}:5432" in raw["postgres"]["ports"]
    for name in ("rabbitmq", "postgres"):
        assert raw[name]["healthcheck"]["test"], name
        assert not depends_on(raw[name]), f"{name} must start on its own"
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"] == "postgres"


def test_long_running_services_have_health_checks() -> None:
    for name, service in SERVICES.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    for name, port in (("api", 8000), ("sandbox", 8100)):
        probe = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in probe, name


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_every_variable_a_service_gets_is_one_its_settings_read(name: str) -> None:
    # A misspelt variable would be ignored silently (extra="ignore"): catch it here.
    settings_class, _, _ = APPLICATIONS[name]
    fields = {field.upper() for field in settings_class.model_fields}
    unknown = sorted(set(SERVICES[name].get("environment", {})) - fields)
    assert not unknown, f"{name} sets variables {settings_class.__name__} does not read"


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_services_log_in_as_themselves(name: str) -> None:
    _, broker_user, db_role = APPLICATIONS[name]
    environment = SERVICES[name].get("environment", {})
    if broker_user is not None:
        url = urlsplit(environment["RABBITMQ_URL"])
        assert (url.username, url.password) == (broker_user, dev_password(broker_user))
        assert (url.hostname, url.path) == ("rabbitmq", "/admissions")
    if db_role is not None:
        assert environment[f"{db_role.upper()}_DB_PASSWORD"] == dev_password(db_role)
        database = urlsplit(environment["DATABASE_URL"])
        assert database.password is None, "only migrate gets the admin password"
        others = {f"{s.upper()}_DB_PASSWORD" for s in service_names()}
        assert not (others - {f"{db_role.upper()}_DB_PASSWORD"}) & set(environment)


def test_service_addresses_point_at_compose_services() -> None:
    env = {name: SERVICES[name].get("environment", {}) for name in APPLICATIONS}
    assert env["mailer"]["SMTP_HOST"] == "mail" and env["mailer"]["SMTP_PORT"] == "1025"
    assert urlsplit(env["payments"]["PSP_URL"]).hostname == "sandbox"
    assert urlsplit(env["payments"]["PSP_URL"]).port == int(env["sandbox"]["PSP_PORT"])
    webhook = urlsplit(env["sandbox"]["WEBHOOK_URL"])
    assert webhook.hostname == "nginx" and webhook.path == "/webhooks/payments"
    assert urlsplit(env["api"]["RABBITMQ_MANAGEMENT_URL"]).hostname == "rabbitmq"
    assert env["api"]["RABBITMQ_MANAGEMENT_USER"] == "api"
    for name in ("api", "sandbox"):
        host_key = "API_HOST" if name == "api" else "PSP_HOST"
        assert env[name][host_key] == "0.0.0.0", f"{name} must listen beyond loopback"


def test_api_and_verifier_share_the_blob_volume() -> None:
    declared = set(COMPOSE.get("volumes", {}))
    mounts = {}
    for name in ("api", "verifier"):
        blob_dir = SERVICES[name]["environment"]["BLOB_DIR"]
        volumes = [v.split(":") for v in SERVICES[name]["volumes"] if isinstance(v, str)]
        (source,) = [src for src, target, *_ in volumes if target == blob_dir]
        mounts[name] = source
    assert mounts["api"] == mounts["verifier"]
    assert mounts["api"] in declared


def test_every_named_volume_is_declared_and_every_mounted_file_exists() -> None:
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build:
            context = COMPOSE_FILE.parent / build["context"]
            assert (context / build["dockerfile"]).exists(), name


def test_nginx_balances_over_the_api_service_on_the_port_it_listens_on() -> None:
    config = (DEPLOY / "nginx" / "nginx.conf").read_text()
    api_port = SERVICES["api"]["environment"]["API_PORT"]
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", config, flags=re.MULTILINE)
    assert upstreams == [("api", api_port)]
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", config, flags=re.MULTILINE)
    assert published_host_ports(SERVICES["nginx"]) and any(
        str(port).endswith(f":{listen}") for port in SERVICES["nginx"]["ports"]
    )
    assert "/nginx-health" in config and "/nginx-health" in " ".join(
        SERVICES["nginx"]["healthcheck"]["test"]
    )


def test_the_rabbitmq_container_gets_its_configuration_and_the_definitions() -> None:
    targets = {v.split(":")[1] for v in SERVICES["rabbitmq"]["volumes"]}
    assert {"/etc/rabbitmq/rabbitmq.conf", "/etc/rabbitmq/enabled_plugins"} <= targets
    config = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    (folder,) = re.findall(r"^load_definitions\s*=\s*(\S+)", config, flags=re.MULTILINE)
    imported = sorted(t for t in targets if t.startswith(folder + "/"))
    assert imported == [f"{folder}/10-admissions.json", f"{folder}/20-dev-admin.json"]
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    for plugin in ("management", "prometheus", "shovel", "shovel_management"):
        assert re.search(rf"\brabbitmq_{plugin}\b", plugins), plugin
    assert plugins.strip().endswith("].")


def test_env_example_documents_every_variable_with_the_same_default() -> None:
    # Given the variables compose interpolates and those .env.example sets
    used = variables(COMPOSE)
    documented = env_example()
    # Then each one is documented, with the value compose falls back to
    missing = sorted(set(used) - set(documented))
    assert not missing, f"add to .env.example: {missing}"
    for name, default in variable_uses(COMPOSE):  # every use, so that no two disagree
        assert documented[name] == (default or ""), name
    # and .env.example sets nothing that compose (or the definitions export) does not read
    stale = sorted(set(documented) - set(used) - DEFINITIONS_ONLY)
    assert not stale, f"not used by deploy/compose.yaml: {stale}"
    # and every variable a container gets is at least mentioned there
    text = (ROOT / ".env.example").read_text()
    for name in APPLICATIONS:
        for variable in SERVICES[name].get("environment", {}):
            assert re.search(rf"\b{variable}\b", text), f"{variable} ({name}) is not documented"


def test_definitions_passwords_in_env_example_match_the_users() -> None:
    documented = env_example()
    for user in (*service_names(), "operator"):
        assert documented[f"{user.upper()}_RABBITMQ_PASSWORD"] == dev_password(user)


def test_one_image_non_root_with_pinned_dependencies_and_no_default_command() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in dockerfile.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and line[:1] != " "
    ]
    keywords = [parts[0].upper() for parts in instructions]
    # the official Python image unless the build names another (deploy/local-images)
    assert instructions[:2] == [
        ["ARG", "PYTHON_IMAGE=python:3.11-slim"],
        ["FROM", "${PYTHON_IMAGE}"],
    ]
    assert "CMD" not in keywords and "ENTRYPOINT" not in keywords
    user = [parts[1] for parts in instructions if parts[0].upper() == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    locked = dockerfile.index("pip install -r requirements.lock")
    project = dockerfile.index("pip install --no-deps .")
    assert locked < project
    # the context-root .dockerignore: BuildKit and the classic builder both read it
    ignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("requirements.lock", "pyproject.toml", "shared/", "services/"):
        assert f"!{needed}" in ignore
    images = {s.get("image") for s in SERVICES.values() if "build" in s}
    assert len(images) == 1, "every application service runs the one image"


def test_every_container_runs_as_a_non_root_user_on_a_read_only_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for name, service in SERVICES.items():
        # the app image's own USER (checked above), or the service's user
        built_here = service["image"] == SERVICES["migrate"]["image"]
        user = service.get("user", "app" if built_here and "USER app" in dockerfile else "")
        assert user and user.split(":")[0] not in ("root", "0"), name
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name


def test_one_service_builds_the_app_image_and_none_asks_a_registry_for_it() -> None:
    builders = [name for name, service in SERVICES.items() if "build" in service]
    assert builders == ["migrate"]
    assert SERVICES["migrate"]["pull_policy"] == "build"
    app_image = SERVICES["migrate"]["image"]
    for name, service in SERVICES.items():
        if name != "migrate" and service["image"] == app_image:
            assert service["pull_policy"] == "never", name
    assert SERVICES["migrate"]["build"]["args"]["PYTHON_IMAGE"] == "python:3.11-slim"


def test_the_local_images_replace_every_hub_image_and_are_never_pulled() -> None:
    local = dict(
        line.split("=", 1)
        for line in (DEPLOY / "local-images" / "local.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    services = interpolate(COMPOSE["services"], local)
    hub_images = {
        s["image"] for n, s in SERVICES.items() if s["image"] != SERVICES["migrate"]["image"]
    }
    local_images = {
        s["image"] for n, s in services.items() if s["image"] != services["migrate"]["image"]
    }
    assert all(image.startswith("admissions-local/") for image in local_images), local_images
    assert len(local_images) == len(hub_images)
    for name, service in services.items():
        assert service["pull_policy"] in ("never", "build"), name
    assert services["migrate"]["build"]["args"]["PYTHON_IMAGE"].startswith("admissions-local/")
    # and every name there is a variable compose reads
    assert set(local) <= set(variables(COMPOSE))


def test_rabbitmq_is_healthy_only_once_its_listeners_accept_connections() -> None:
    # `rabbitmq-diagnostics ping` answers before the AMQP listener is up
    probe = SERVICES["rabbitmq"]["healthcheck"]["test"]
    assert "check_port_connectivity" in probe
    # the stand-in's server ignores SIGTERM as PID 1
    assert SERVICES["rabbitmq"]["init"] is True


def mounted_administrators(app_env: str | None) -> dict[str, Any]:
    """The document compose mounts as the broker's 20-dev-admin.json under ``app_env``."""
    services = interpolate(COMPOSE["services"], {"APP_ENV": app_env} if app_env else {})
    (source,) = [
        v.split(":")[0]
        for v in services["rabbitmq"]["volumes"]
        if ":/etc/rabbitmq/def" in v and v.split(":")[1].endswith("20-dev-admin.json")
    ]
    document: dict[str, Any] = json.loads((DEPLOY / source).read_text())
    return document


def test_production_loads_no_development_administrator() -> None:
    """issue 14, item 8: with APP_ENV=production compose mounts no guest, whatever else is set."""
    assert [u["name"] for u in mounted_administrators(None)["users"]] == ["guest"]
    assert [u["name"] for u in mounted_administrators("test")["users"]] == ["guest"]
    production = mounted_administrators("production")
    assert not production.get("users") and not production.get("permissions")
    # and no variable can put it back
    assert "RABBITMQ_DEV_ADMIN" not in variables(COMPOSE)


def test_nginx_does_not_serve_the_api_metrics() -> None:
    """issue 14, item 12: /metrics is for the scraper inside the network, not the internet.
    ``^~`` prefix locations win over regular expressions and shorter prefixes, and nginx
    matches the decoded, slash-merged path, so /metrics, /metrics/, //metrics and /%6detrics
    all end here."""
    config = (DEPLOY / "nginx" / "nginx.conf").read_text()
    blocks = dict(re.findall(r"location\s+([^{]+?)\s*\{([^}]*)\}", config))
    assert "return 404;" in blocks["^~ /metrics"]
    assert "proxy_pass" not in blocks["^~ /metrics"]
    # and no exact or regex location could take /metrics to the API first
    for selector in blocks:
        if selector.startswith(("=", "~")):
            assert not re.search(r"metrics", selector), selector


@pytest.mark.parametrize("path", ["/openapi.json", "/asyncapi.json", "/docs"])
def test_nginx_passes_the_api_descriptions_through(path: str) -> None:
    """The OpenAPI and AsyncAPI documents are public: only ``location /`` (the API) may
    answer them, no location in front of it."""
    config = (DEPLOY / "nginx" / "nginx.conf").read_text()
    blocks = dict(re.findall(r"location\s+([^{]+?)\s*\{([^}]*)\}", config))
    assert "proxy_pass http://api;" in blocks["/"]
    for selector in blocks:
        kind, _, prefix = selector.rpartition(" ")
        if selector == "/":
            continue
        if kind == "=":
            assert prefix != path, selector
        elif kind.startswith("~"):
            assert not re.search(prefix, path), selector
        else:  # a prefix, plain or ^~
            assert not path.startswith(prefix), selector
