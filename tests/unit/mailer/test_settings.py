"""The mailer's settings: lane selection, rates, and the pool sized to the lanes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.mailer.app import lane_rates, worker_settings
from services.mailer.settings import ALL_LANES, MailerSettings
from shared.system_topology import MAILER_LANES


def test_all_five_lanes_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILER_LANES", raising=False)
    assert MailerSettings().mailer_lanes == list(ALL_LANES) == list(MAILER_LANES)


def test_lanes_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_LANES", " critical, high ,critical")
    assert MailerSettings().mailer_lanes == ["critical", "high"]


@pytest.mark.parametrize("value", ["critical,urgent", ""])
def test_unknown_or_no_lane_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MAILER_LANES", value)
    with pytest.raises(ValidationError):
        MailerSettings()


def test_rates_come_from_settings_and_a_bucket_holds_at_least_one_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a slow batch lane and a burst of half a second
    monkeypatch.setenv("MAILER_LANES", "batch,low")
    monkeypatch.setenv("MAILER_RATE_BATCH", "0.5")
    monkeypatch.setenv("MAILER_RATE_LOW", "30")
    monkeypatch.setenv("MAILER_RATE_BURST_SECONDS", "0.5")
    rates = lane_rates(MailerSettings())
    # Then only the chosen lanes get a bucket, with capacity rate * burst but never below 1
    assert set(rates) == {"batch", "low"}
    assert rates["batch"].refill_per_second == 0.5 and rates["batch"].capacity == 1.0
    assert rates["low"].refill_per_second == 30.0 and rates["low"].capacity == 15.0


def test_a_rate_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_RATE_HIGH", "0")
    with pytest.raises(ValidationError):
        MailerSettings()


def test_the_pool_fits_the_chosen_lanes_unless_set_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DB_POOL_MAX", raising=False)
    monkeypatch.setenv("MAILER_LANES", "critical,high")
    in_flight = MAILER_LANES["critical"].prefetch + MAILER_LANES["high"].prefetch
    assert worker_settings(MailerSettings()).db_pool_max == max(10, in_flight)

    monkeypatch.setenv("DB_POOL_MAX", "3")
    assert worker_settings(MailerSettings()).db_pool_max == 3
