"""Catch-up planning: which days each step reads, bounded by the lake, and the days it skips."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from reco import catchup
from reco.features import ARTICLE_TABLE, USER_TABLE, feature_table_dir
from reco.lake import replace_partition
from reco.settings import Settings

D = dt.date(2026, 3, 20)


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


def touch(root, when: dt.date) -> None:
    replace_partition(pa.table({"x": [1]}), root, when)


def test_train_reads_its_window_and_the_snapshots_behind_it(settings: Settings) -> None:
    wanted = catchup.needs(settings, D, ["train"])
    window = settings.train_window_days
    assert wanted.snapshots == {day(-k) for k in range(1, window + 1)}
    # Each snapshot aggregates the 30 days of silver up to it.
    assert min(wanted.silver) == day(-window - 29) and max(wanted.silver) == day(-1)
    assert D not in wanted.silver


def test_the_runs_own_steps_are_not_caught_up(settings: Settings) -> None:
    every = catchup.needs(
        settings, D, ["ingest", "validate", "features", "train", "evaluate", "register", "deploy", "monitor"]
    )
    assert D not in every.silver and D not in every.snapshots
    alone = catchup.needs(settings, D, ["monitor"])
    assert D in alone.silver and D in alone.snapshots
    assert {day(-k) for k in range(8)} <= alone.snapshots
    assert catchup.needs(settings, D, ["register", "deploy"]).silver == set()


def test_validate_reads_d_and_its_volume_baseline(settings: Settings) -> None:
    alone = catchup.needs(settings, D, ["validate"])
    assert alone.silver == {day(-k) for k in range(settings.contract_volume_days + 1)}
    assert alone.snapshots == set()
    with_ingest = catchup.needs(settings, D, ["ingest", "validate"])
    assert with_ingest.silver == {day(-k) for k in range(1, settings.contract_volume_days + 1)}


def test_plan_is_bounded_by_the_lake_and_names_days_without_events(settings: Settings) -> None:
    # Bronze from D-5 to D, except D-3 (the site was down); D-5 already ingested and featurized.
    for offset in (-5, -4, -2, -1, 0):
        touch(settings.bronze_events_dir, day(offset))
    touch(settings.silver_events_dir, day(-5))
    for table in (USER_TABLE, ARTICLE_TABLE):
        touch(feature_table_dir(settings, table), day(-5))
    touch(feature_table_dir(settings, USER_TABLE), day(-4))  # half a snapshot is a missing snapshot

    to_ingest, to_featurize, empty = catchup.plan(settings, D, ["train", "evaluate"])

    assert to_ingest == [day(-4), day(-2), day(-1), day(0)]  # D itself: evaluate reads its silver
    assert empty == [day(-3)]
    assert to_featurize == [day(-4), day(-3), day(-2), day(-1)]  # nothing before the lake's first day


def test_nothing_to_do_on_an_empty_lake(settings: Settings) -> None:
    assert catchup.plan(settings, D, ["train"]) == ([], [], [])
