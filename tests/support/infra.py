"""The tests' view of the servers: ``devtools.infra`` (shared with the chaos run and bench)."""

from devtools.infra import Infra, infrastructure
from devtools.servers.envfile import ROOT

__all__ = ["ROOT", "Infra", "infrastructure"]
