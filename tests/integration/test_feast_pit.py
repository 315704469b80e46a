"""Point-in-time joins through Feast: a row at time t sees the snapshot as of t, never a later one."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from feature_scenario import CLICKS_7D, T1, T2, T3, VIEWS_24H, write_scenario

from reco.errors import RecoError
from reco.featurestore import apply_and_materialize, get_store, historical_features
from reco.settings import Settings

pytestmark = pytest.mark.integration

SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def built(settings: Settings) -> Settings:
    write_scenario(settings)
    apply_and_materialize(settings, dt.date(2024, 3, 20))
    return settings


def test_each_row_gets_the_snapshot_as_of_its_own_time(built: Settings) -> None:
    times = [
        T1 - SECOND,
        T1 + 5 * 3600 * SECOND,
        T2 - dt.timedelta(microseconds=1),
        T2,
        T3 + 2 * DAY,
        T2 + 3600 * SECOND,
    ]
    entity_df = pd.DataFrame(
        {
            "user_id": "u1",
            "article_id": "a1",
            "event_timestamp": pd.to_datetime(times, utc=True),
            "label": range(len(times)),
        }
    )
    out = historical_features(built, entity_df)
    # Same rows in the same order, extra columns passed through.
    assert list(out["label"]) == list(range(len(times)))
    assert list(out["event_timestamp"]) == list(entity_df["event_timestamp"])
    expected_clicks = [None, CLICKS_7D[T1], CLICKS_7D[T1], CLICKS_7D[T2], CLICKS_7D[T3], CLICKS_7D[T2]]
    expected_views = [None, VIEWS_24H[T1], VIEWS_24H[T1], VIEWS_24H[T2], VIEWS_24H[T3], VIEWS_24H[T2]]
    got_clicks = [None if pd.isna(v) else int(v) for v in out["clicks_7d"]]
    got_views = [None if pd.isna(v) else int(v) for v in out["views_24h"]]
    assert got_clicks == expected_clicks
    assert got_views == expected_views
    # Features of the service from both views are present.
    for column in ("recent_reads", "category_clicks", "ctr_24h", "age_hours", "published_at", "category"):
        assert column in out.columns
    assert out.loc[1, "age_hours"] == pytest.approx(
        (T1 - dt.datetime(2024, 3, 18, 6, tzinfo=dt.UTC)).total_seconds() / 3600
    )
    assert list(out.loc[3, "recent_reads"]) == ["a1", "a2"]  # as of D2: a1 read after the clicks on a2
    # Joined in chunks of 4 rows (6 rows: two Feast queries), the same rows in the same order.
    chunked = historical_features(built, entity_df, chunk_rows=4)
    pd.testing.assert_frame_equal(chunked.drop(columns="recent_reads"), out.drop(columns="recent_reads"))
    assert [list(v) if v is not None else None for v in chunked["recent_reads"]] == [
        list(v) if v is not None else None for v in out["recent_reads"]
    ]


def test_snapshots_older_than_the_ttl_come_back_null(built: Settings) -> None:
    user_ttl = dt.timedelta(days=built.user_features_ttl_days)
    article_ttl = dt.timedelta(days=built.article_features_ttl_days)
    times = [T3 + article_ttl, T3 + article_ttl + SECOND, T3 + user_ttl, T3 + user_ttl + SECOND]
    entity_df = pd.DataFrame({"user_id": "u1", "article_id": "a1", "event_timestamp": pd.to_datetime(times, utc=True)})
    out = historical_features(built, entity_df)
    # A value is found exactly while its snapshot is at most one TTL old (each view has its own TTL).
    assert [None if pd.isna(v) else int(v) for v in out["views_24h"]] == [
        VIEWS_24H[T3] if t <= T3 + article_ttl else None for t in times
    ]
    assert [None if pd.isna(v) else int(v) for v in out["clicks_7d"]] == [
        CLICKS_7D[T3] if t <= T3 + user_ttl else None for t in times
    ]
    assert out["views_24h"].isna().sum() >= 1 and out["clicks_7d"].isna().sum() >= 1


def test_unknown_entities_and_a_reused_store(built: Settings) -> None:
    store = get_store(built)
    entity_df = pd.DataFrame(
        {"user_id": ["nobody", "u2"], "article_id": ["nothing", "a2"], "event_timestamp": [T3, T3]}
    )
    out = historical_features(built, entity_df, store=store)
    assert out["clicks_7d"].isna().iloc[0] and out["ctr_24h"].isna().iloc[0]
    assert out.loc[1, "clicks_7d"] == 0 and out.loc[1, "category"] == "politics"


def test_a_subset_of_the_service_can_be_joined(built: Settings) -> None:
    entity_df = pd.DataFrame({"user_id": ["u1"], "article_id": ["a1"], "event_timestamp": [T3]})
    out = historical_features(built, entity_df, features=["clicks_7d", "ctr_24h"])
    assert list(out.columns) == ["user_id", "article_id", "event_timestamp", "clicks_7d", "ctr_24h"]
    assert out.loc[0, "clicks_7d"] == CLICKS_7D[T3]
    with pytest.raises(RecoError, match="nope"):
        historical_features(built, entity_df, features=["nope"])
