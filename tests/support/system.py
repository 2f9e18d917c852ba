"""The end-to-end harness lives in ``devtools.system`` (the chaos run uses it too)."""

from devtools.system import RunningSystem, free_port

__all__ = ["RunningSystem", "free_port"]
