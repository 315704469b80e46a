"""Served features equal Feast's own online read (no train/serve skew), on Redis and on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import pytest
from service_scenario import write_features

from reco.featurestore import apply_and_materialize, feature_refs, get_store
from reco.model import ArticleFeatures
from reco.settings import Settings
from services.recommend.features import (
    FeastUserReader,
    RedisUserReader,
    build_snapshot,
    read_article_frame,
    recent_articles,
)

pytestmark = pytest.mark.integration


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=0) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def _feast_rows(store: Any, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    refs = feature_refs(store)["user_id"]
    names = [ref.split(":", 1)[1] for ref in refs]
    table = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    rows: dict[str, dict[str, Any] | None] = {}
    for i, user in enumerate(user_ids):
        row = {name: table[name][i] for name in names}
        rows[user] = row if any(v is not None for v in row.values()) else None
    return rows


@pytest.fixture
def redis_settings(settings: Settings, redis_server: Any) -> Settings:
    return settings.model_copy(update={"redis_url": redis_server.url.rsplit("/", 1)[0] + "/7"})


def test_direct_redis_read_equals_feast_get_online_features(redis_settings: Settings) -> None:
    day, user_ids, _ = write_features(redis_settings, n_users=60, n_articles=300, seed=3)
    apply_and_materialize(redis_settings, day, online="redis")
    store = get_store(redis_settings, "redis")
    users = [*user_ids[:50], "nobody", ""]
    expected = _feast_rows(store, users)
    assert sum(row is not None for row in expected.values()) == 50

    async def read_all() -> dict[str, dict[str, Any] | None]:
        reader = RedisUserReader(store, redis_settings.redis_url, timeout_s=2.0)
        try:
            return {user: await reader.read(user) for user in users}
        finally:
            await reader.close()

    served = asyncio.run(read_all())
    for user in users:
        want, got = expected[user], served[user]
        if want is None:
            assert got is None, user
            continue
        assert got is not None and set(got) == set(want), user
        for name in want:
            assert _same(got[name], want[name]), (user, name, got[name], want[name])
    # The features that matter to serving are really there (not all-null on both sides).
    assert isinstance(served["u0"]["recent_reads"], list) and served["u0"]["recent_reads"]  # type: ignore[index]


def test_sqlite_reader_is_feast_and_unknown_users_are_none(settings: Settings) -> None:
    day, user_ids, _ = write_features(settings, n_users=20, n_articles=100, seed=4)
    apply_and_materialize(settings, day)
    store = get_store(settings)
    reader = FeastUserReader(store)
    expected = _feast_rows(store, [*user_ids, "nobody"])
    for user in [*user_ids, "nobody"]:
        assert asyncio.run(reader.read(user)) == expected[user]
    assert asyncio.run(reader.ping())


def test_article_snapshot_holds_online_features_and_new_articles(settings: Settings) -> None:
    day, _, article_ids = write_features(settings, n_users=10, n_articles=200, seed=5)
    apply_and_materialize(settings, day)
    store = get_store(settings)
    now = dt.datetime.now(dt.UTC)
    metadata = recent_articles(settings.silver_articles_path, now, 72.0)
    assert metadata is not None
    # "fresh-1" is published (in silver metadata) after the last materialization: no features yet.
    import pandas as pd

    fresh = pd.DataFrame({"article_id": ["fresh-1"], "category": ["tech"], "published_at": [pd.Timestamp(now - dt.timedelta(minutes=5))]})
    frame = read_article_frame(settings, store, [*article_ids, "fresh-1"], pd.concat([metadata, fresh]))
    features = ArticleFeatures.from_frame(frame)
    assert len(features) == 201
    expected = store.get_online_features(features=feature_refs(store)["article_id"], entity_rows=[{"article_id": "a7"}]).to_dict()
    row = features.index["a7"]
    assert features.views_24h[row] == expected["views_24h"][0]
    assert features.categories[features.category_codes[features.index["fresh-1"]]] == "tech"
    snapshot = build_snapshot(features, now, source="online", pool_size=20, pool_max_age_hours=48, fallback_size=50)
    assert snapshot.pool[0] == "fresh-1"  # zero views and the newest: the most under-exposed
    assert len(snapshot.fallback) == 50 and all(a != b for (a, _), (b, _) in zip(snapshot.fallback, snapshot.fallback[1:], strict=False))
