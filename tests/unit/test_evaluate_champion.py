"""A champion trained on data at or after the test day (a backfill of an earlier date) is not compared."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from reco.evaluate import champion_not_comparable


def champion(trained_until: str) -> SimpleNamespace:
    return SimpleNamespace(trained_until=trained_until, version="4")


def test_a_champion_trained_before_the_test_day_is_comparable() -> None:
    day = dt.date(2026, 12, 4)
    assert champion_not_comparable(champion("2026-12-04T00:00:00+00:00"), day) is None  # trained for D itself
    assert champion_not_comparable(champion("2026-12-01T00:00:00+00:00"), day) is None
    assert champion_not_comparable(None, day) is None


def test_a_champion_trained_on_later_data_is_not() -> None:
    why = champion_not_comparable(champion("2026-12-04T00:00:00+00:00"), dt.date(2026, 12, 1))
    assert why is not None and "version 4" in why and "2026-12-01" in why and "not comparable" in why
