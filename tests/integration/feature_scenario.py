"""A three-day silver lake whose feature values change every day (shared by the Feast tests)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import pyarrow as pa

from reco.features import build_features, snapshot_ts
from reco.lake import replace_partition, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

DAYS = [dt.date(2024, 3, 18), dt.date(2024, 3, 19), dt.date(2024, 3, 20)]
T1, T2, T3 = (snapshot_ts(d) for d in DAYS)
# u1 clicks 1, 2, 3 times a day -> clicks_7d 1, 3, 6; a1 gets 4, 2, 6 impressions -> views_24h.
CLICKS_7D = {T1: 1, T2: 3, T3: 6}
VIEWS_24H = {T1: 4, T2: 2, T3: 6}


def _event(n: int, ts: dt.datetime, user: str, article: str, kind: str, dwell_ms: int | None = None) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "ts": ts,
        "user_id": user,
        "article_id": article,
        "event_type": kind,
        "dwell_ms": dwell_ms,
        "request_id": f"r{n}",
        "position": 0,
        "model_version": "v0",
        "variant": "stable",
        "propensity": 1.0,
    }


def write_scenario(settings: Settings) -> None:
    """Silver events and articles of ``DAYS``; features built for every day."""
    n = 0
    for index, day in enumerate(DAYS):
        base = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)
        rows = []
        for i in range(VIEWS_24H[snapshot_ts(day)]):
            n += 1
            rows.append(_event(n, base + dt.timedelta(minutes=i), f"v{i}", "a1", "impression"))
        for i in range(index + 1):
            n += 1
            rows.append(_event(n, base + dt.timedelta(minutes=10 + i), "u1", "a1" if index != 1 else "a2", "click"))
        n += 1
        rows.append(_event(n, base + dt.timedelta(minutes=20), "u1", "a1", "read", 30_000 * (index + 1)))
        if index == 0:
            n += 1
            rows.append(_event(n, base, "u2", "a2", "impression"))
        replace_partition(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), settings.silver_events_dir, day)
    articles = [
        {"article_id": "a1", "published_at": dt.datetime(2024, 3, 18, 6, tzinfo=dt.UTC), "category": "sports"},
        {"article_id": "a2", "published_at": dt.datetime(2024, 3, 19, 6, tzinfo=dt.UTC), "category": "politics"},
    ]
    for row in articles:
        row.update(title=str(row["article_id"]), abstract=None)
    write_atomic(pa.Table.from_pylist(articles, schema=ARTICLE_SCHEMA), settings.silver_articles_path)
    for day in DAYS:
        build_features(settings, day)


def normalize(value: Any) -> Any:
    """One comparable form for values from pandas, Feast online responses and Parquet."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str):
        return normalize(value.tolist())
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 9)
    return value
