"""Train/serve parity: the online store (SQLite, real Redis) serves exactly what training joins."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import redis
from feature_scenario import CLICKS_7D, DAYS, T3, normalize, write_scenario

from reco.features import ARTICLE_TABLE, USER_TABLE, read_snapshot
from reco.featurestore import (
    OnlineKind,
    apply_and_materialize,
    feature_refs,
    get_store,
    historical_features,
    online_features,
)
from reco.settings import Settings

pytestmark = pytest.mark.integration

USERS = ["u1", "u2", "nobody"]
ARTICLES = ["a1", "a2", "nothing"]


@pytest.fixture(params=["sqlite", "redis"])
def online_settings(request: pytest.FixtureRequest, settings: Settings) -> tuple[Settings, OnlineKind]:
    kind: OnlineKind = request.param
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        redis.Redis.from_url(server.url).flushdb()
        settings = settings.model_copy(update={"redis_url": server.url})
    return settings, kind


def test_online_equals_point_in_time_at_the_snapshot(online_settings: tuple[Settings, OnlineKind]) -> None:
    settings, kind = online_settings
    write_scenario(settings)
    for day in DAYS:  # the daily runs, in order
        report = apply_and_materialize(settings, day, online=kind)
        assert report["online_store"] == kind
    store = get_store(settings, online=kind)
    users, articles = online_features(settings, USERS, ARTICLES, store=store)
    assert list(users.index) == USERS and list(articles.index) == ARTICLES
    assert users.loc["u1", "clicks_7d"] == CLICKS_7D[T3]  # the newest day, not the first
    assert users.loc["nobody"].isna().all() and articles.loc["nothing"].isna().all()

    entity_df = pd.DataFrame(
        {"user_id": USERS, "article_id": ARTICLES, "event_timestamp": pd.to_datetime([T3] * 3, utc=True)}
    )
    offline = historical_features(settings, entity_df, store=store).set_index("user_id")
    refs = feature_refs(store)
    user_names = [r.split(":", 1)[1] for r in refs["user_id"]]
    article_names = [r.split(":", 1)[1] for r in refs["article_id"]]
    assert {"recent_reads", "category_clicks", "top_category"} <= set(user_names)
    assert {"ctr_24h", "published_at", "age_hours"} <= set(article_names)
    for user_id, article_id in zip(USERS, ARTICLES, strict=True):
        for name in user_names:
            assert normalize(users.loc[user_id, name]) == normalize(offline.loc[user_id, name]), (user_id, name)
        for name in article_names:
            assert normalize(articles.loc[article_id, name]) == normalize(offline.loc[user_id, name]), (
                article_id,
                name,
            )

    # And both equal the snapshot table the pipeline wrote.
    snapshot = read_snapshot(settings, USER_TABLE, DAYS[-1]).to_pandas().set_index("user_id")
    for name in user_names:
        assert normalize(users.loc["u1", name]) == normalize(snapshot.loc["u1", name]), name
    article_snapshot = read_snapshot(settings, ARTICLE_TABLE, DAYS[-1]).to_pandas().set_index("article_id")
    for name in article_names:
        assert normalize(articles.loc["a1", name]) == normalize(article_snapshot.loc["a1", name]), name


def test_backfill_of_an_old_day_keeps_the_newest_snapshot_online(settings: Settings) -> None:
    write_scenario(settings)
    apply_and_materialize(settings, DAYS[-1])
    report = apply_and_materialize(settings, DAYS[0])  # re-run of the first day
    assert report["materialized_start"] == dt.datetime(2024, 3, 19, tzinfo=dt.UTC).isoformat()
    assert report["materialized_end"] == T3.isoformat()
    users, _ = online_features(settings, ["u1"], [])
    assert users.loc["u1", "clicks_7d"] == CLICKS_7D[T3]
