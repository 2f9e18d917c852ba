"""Reading deploy/compose.yaml the way ``docker compose`` does, without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
# The Compose Specification schema, kept beside the project (see ../shared/schemas/README.md).
COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    """The file as YAML (anchors and merge keys resolved), before interpolation."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def variables(value: Any) -> dict[str, str | None]:
    """Every ``${NAME:-default}`` in the values of a document: name -> default (or None)."""
    found: dict[str, str | None] = {}
    for name, default in variable_uses(value):
        found.setdefault(name, default)
    return found


def variable_uses(value: Any) -> list[tuple[str, str | None]]:
    """Each ``${NAME:-default}`` occurrence, in document order."""
    if isinstance(value, str):
        return [(m["name"], m["default"]) for m in _VARIABLE.finditer(value)]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [use for item in items for use in variable_uses(item)]


def interpolate(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${NAME:-default}`` like compose does, with ``environ`` or the defaults."""
    environ = environ or {}
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: environ.get(m["name"], m["default"] or ""), value)
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    return value


def env_example() -> dict[str, str]:
    """``NAME=value`` lines of .env.example (quotes removed, as compose and sh read them)."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip().strip('"')
    return values


def command_module(command: Any) -> str | None:
    """``python -m a.b ...`` (list or string form) -> ``a.b``."""
    parts = command.split() if isinstance(command, str) else list(command)
    if len(parts) >= 3 and parts[0] in {"python", "python3"} and parts[1] == "-m":
        return str(parts[2])
    return None


def published_host_ports(service: dict[str, Any]) -> list[str]:
    """The host side of each ``ports`` entry (short or long syntax)."""
    host_ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                host_ports.append(str(entry["published"]))
            continue
        parts = str(entry).rsplit(":", 2)
        if len(parts) >= 2:
            host_ports.append(parts[-2])
    return host_ports
