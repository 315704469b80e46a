"""The service's intraday counts (``services.recommend.intraday``): counted from acknowledged events,
today's only, applied to the catalogue; shared by replicas through a real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import numpy as np

from services.recommend.intraday import IntradayCounts
from services.recommend.resp import RespClient


def rows(*events: tuple[str, str], ts: dt.datetime | None = None) -> list[tuple[object, ...]]:
    """Rows as ``services.recommend.events.to_rows`` makes them, for (article, event type) pairs."""
    when = ts or dt.datetime.now(dt.UTC)
    return [
        (uuid.uuid4().hex, when, "u1", article, kind, None, None, None, None, None, None) for article, kind in events
    ]


def test_counts_today_s_impressions_and_clicks_once_synced() -> None:
    counts = IntradayCounts()
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    counts.add(rows(("a", "impression"), ("a", "impression"), ("a", "click"), ("b", "impression"), ("a", "read")))
    counts.add(rows(("b", "click"), ts=yesterday))  # stamped yesterday: not today's
    assert counts.aligned(["a", "b"])[0].tolist() == [0.0, 0.0]  # nothing before a sync
    asyncio.run(counts.sync())
    views, clicks = counts.aligned(np.array(["b", "a", "new"], dtype=object))
    assert views.tolist() == [1.0, 2.0, 0.0] and clicks.tolist() == [0.0, 1.0, 0.0]
    counts.add(rows(("b", "click")))
    asyncio.run(counts.sync())
    assert counts.aligned(["b"])[1].tolist() == [1.0]


def test_a_new_day_starts_from_zero() -> None:
    counts = IntradayCounts()
    counts.add(rows(("a", "click")))
    asyncio.run(counts.sync())
    counts.day = dt.date(2000, 1, 1)  # as if the last sync had been on another day
    asyncio.run(counts.sync())
    assert counts.aligned(["a"])[1].tolist() == [0.0]


def test_replicas_share_their_counts_through_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> tuple[list[float], list[float], list[float]]:
        one = IntradayCounts(RespClient(redis_server.url, timeout_s=2.0))
        two = IntradayCounts(RespClient(redis_server.url, timeout_s=2.0))
        one.add(rows(("a", "impression"), ("a", "click")))
        two.add(rows(("a", "impression"), ("b", "click"), ("b", "click")))
        await one.sync()
        await two.sync()
        await one.sync()  # reads what the other replica wrote
        client = RespClient(redis_server.url, timeout_s=2.0)
        day = dt.datetime.now(dt.UTC).date()
        ttl = await client.execute("TTL", IntradayCounts.key(day, "click"))
        await client.execute("DEL", IntradayCounts.key(day, "click"), IntradayCounts.key(day, "impression"))
        await client.close()
        views, clicks = one.aligned(["a", "b"])
        await one.close()
        await two.close()
        return views.tolist(), clicks.tolist(), [float(ttl)]

    views, clicks, ttl = asyncio.run(scenario())
    assert views == [2.0, 0.0] and clicks == [1.0, 2.0]
    assert 0 < ttl[0] <= 2 * 86_400


def test_increments_survive_a_redis_outage() -> None:
    async def scenario() -> tuple[list[float], int]:
        # Nothing listens on port 9 of loopback: every command fails fast.
        counts = IntradayCounts(RespClient("redis://127.0.0.1:9/0", timeout_s=0.5))
        counts.add(rows(("a", "click")))
        await counts.sync()
        pending = sum(sum(c.values()) for c in counts._pending.values())
        await counts.close()
        return counts.aligned(["a"])[1].tolist(), pending

    clicks, pending = asyncio.run(scenario())
    assert clicks == [0.0] and pending == 1  # kept for the next sync, not lost


def test_the_article_store_applies_the_counts_on_each_refresh(settings) -> None:  # type: ignore[no-untyped-def]
    from service_scenario import write_features

    from reco.featurestore import apply_and_materialize, get_store
    from services.recommend.features import ArticleStore
    from services.recommend.metrics import Metrics

    day, _, article_ids = write_features(settings, n_users=10, n_articles=50, seed=5)
    apply_and_materialize(settings, day)
    counts = IntradayCounts()
    store = ArticleStore(
        settings,
        get_store(settings),
        current_model=lambda: None,
        metrics=Metrics("stable"),
        interval_s=60.0,
        pool_size=10,
        pool_max_age_hours=48.0,
        fallback_size=10,
        intraday=counts,
    )
    asyncio.run(store.refresh())
    assert store.current is not None and store.current.source == "online"
    first = store.current.features
    row = first.index[article_ids[0]]
    assert first.clicks_today[row] == 0.0
    counts.add(rows((article_ids[0], "impression"), (article_ids[0], "click"), (article_ids[1], "impression")))
    asyncio.run(store.refresh())
    second = store.current.features
    assert second is not first  # a new catalogue object: models rebuild their per-catalogue cache
    assert second.clicks_today[row] == 1.0 and second.views_today[row] == 1.0
    assert second.views_today[second.index[article_ids[1]]] == 1.0
    assert np.array_equal(second.views_24h, first.views_24h)  # the daily snapshot is untouched
