"""The tests' view of the servers: ``devtools.infra`` (shared with the chaos run and bench)."""

from devtools.infra import ROOT, Infra, infrastructure

__all__ = ["ROOT", "Infra", "infrastructure"]
