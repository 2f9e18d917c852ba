"""What every chaos run in CI must show (tests/chaos, tests/cluster)."""

from __future__ import annotations

import os
import random
from typing import Any

from shared.manifest import processes


def chaos_seed() -> int:
    """CHAOS_SEED when set, else a random one (printed in the summary, kept in the report)."""
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))


def assert_exactly_once(report: dict[str, Any], applications: int) -> None:
    """Every application was accepted and reached an outcome, exactly once everywhere, with
    no 5xx outside a Postgres restart, every announcement reached each recipient once, and
    every process of the manifest was killed."""
    assert report["accepted"] == applications, report["client"]
    assert report["quiet"], f"the system did not go quiet (seed {report['seed']})"
    assert report["lost"] == 0, report["examples"]
    assert report["non_terminal"] == 0, report["examples"]
    assert report["duplicate_payments"] == 0, report["examples"]
    assert report["duplicate_emails"] == 0, report["examples"]
    assert report["missing_emails"] == 0, report["examples"]
    assert report["unexpected_dead_letters"] == 0, report["examples"]
    assert report["poison_missing_from_dlqs"] == 0
    assert not report["unpublished_outbox"]
    assert report["unexpected_5xx"] == 0, report["api_5xx"]
    # every announcement published during the faults reached each recipient exactly once
    assert report["announcements"]["published"] >= report["announcements"]["client_accepted"] > 0
    assert not report["announcements"]["faults"], report["announcements"]
    assert set(report["kills"]) == {process.name for process in processes()}
