"""The end-to-end harness lives in ``devtools.system`` (the chaos run uses it too)."""

from devtools.system import MIGRATIONS, RunningSystem, free_port

__all__ = ["MIGRATIONS", "RunningSystem", "free_port"]
