"""``.run/infra.env``: where ``up`` records the servers it made reachable, in one format.

``export KEY='value'`` lines: the Makefile sources the file with ``/bin/sh`` (dash, which
knows no ``$'...'`` quoting), developers source it in their shells, and ``read`` parses it
back for the Python tools.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / ".run"
ENV_FILE = RUN_DIR / "infra.env"


def read(path: Path = ENV_FILE) -> dict[str, str]:
    """The variables of an env file; empty if there is none."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return values


def write(values: Mapping[str, str], path: Path = ENV_FILE) -> None:
    """Replace the file at once: a reader never sees half of it."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# Written by python3 -m devtools.servers up on {stamp}. Use: source {path}"]
    lines += [f"export {key}={_single_quoted(value)}" for key, value in values.items()]
    write_atomically(path, "\n".join(lines) + "\n")


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.chmod(temp, mode)
    os.replace(temp, path)


def _single_quoted(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
