"""Feature values of build_features on a tiny hand-made silver lake, window edges included."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest

from reco.errors import InputFileError, NoDataError
from reco.features import (
    ARTICLE_FRESH_DAYS,
    ARTICLE_TABLE,
    CTR_PRIOR_IMPRESSIONS,
    USER_TABLE,
    build_features,
    feature_table_dir,
    read_snapshot,
    snapshot_ts,
)
from reco.lake import replace_partition, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

D = dt.date(2024, 3, 20)
T = snapshot_ts(D)  # 2024-03-21 00:00 UTC
SECOND = dt.timedelta(seconds=1)


def at(day_offset: int, hour: int = 12, minute: int = 0, second: int = 0) -> dt.datetime:
    """A UTC time on day D + day_offset."""
    return dt.datetime.combine(D + dt.timedelta(days=day_offset), dt.time(hour, minute, second), tzinfo=dt.UTC)


def event(ts: dt.datetime, user: str, article: str, kind: str, dwell_ms: int | None = None) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{article}-{kind}-{ts.isoformat()}",
        "ts": ts,
        "user_id": user,
        "article_id": article,
        "event_type": kind,
        "dwell_ms": dwell_ms,
        "request_id": None,
        "position": None,
        "model_version": None,
        "variant": None,
        "propensity": None,
    }


def article(article_id: str, published_at: dt.datetime, category: str) -> dict[str, Any]:
    return {
        "article_id": article_id,
        "published_at": published_at,
        "category": category,
        "title": article_id,
        "abstract": None,
    }


def write_silver(settings: Settings, events: list[dict[str, Any]], articles: list[dict[str, Any]]) -> None:
    """Each event goes to the partition of its own UTC date unless it carries a ``partition`` key."""
    by_day: dict[dt.date, list[dict[str, Any]]] = {}
    for row in events:
        day = row.pop("partition", None) or row["ts"].date()
        by_day.setdefault(day, []).append(row)
    for day, rows in by_day.items():
        replace_partition(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), settings.silver_events_dir, day)
    write_atomic(pa.Table.from_pylist(articles, schema=ARTICLE_SCHEMA), settings.silver_articles_path)


def users_of(settings: Settings) -> dict[str, dict[str, Any]]:
    return {row["user_id"]: row for row in read_snapshot(settings, USER_TABLE, D).to_pylist()}


def articles_of(settings: Settings) -> dict[str, dict[str, Any]]:
    return {row["article_id"]: row for row in read_snapshot(settings, ARTICLE_TABLE, D).to_pylist()}


ARTICLES = [
    article("a1", at(-2), "sports"),
    article("a2", at(-1), "politics"),
    article("a3", at(-3), "sports"),
    article("old", at(-40), "tech"),
]


def test_clicks_7d_and_30d_windows_end_exactly_at_partition_edges(settings: Settings) -> None:
    misplaced = event(T, "u1", "a1", "click")
    misplaced["partition"] = D  # an event of D+1 sitting in D's partition must not count
    events = [
        event(at(-7, 23, 59, 59), "u1", "a1", "click"),  # D-7: outside 7 days, inside 30
        event(at(-6, 0, 0, 0), "u1", "a1", "click"),  # first second of the 7-day window
        event(at(0, 23, 59, 59), "u1", "a2", "click"),  # last second before event_ts
        misplaced,
        event(at(1, 0, 0, 0), "u1", "a2", "click"),  # D+1 partition: never read for D
        event(at(-29, 0, 0, 0), "u1", "a3", "click"),  # first second of the 30-day window
        event(at(-30, 23, 59, 59), "u1", "a3", "click"),  # D-30: outside every window
        event(at(-30, 12), "gone", "a3", "click"),  # active only 30 days ago: no row
    ]
    write_silver(settings, events, ARTICLES)
    build_features(settings, D)
    users = users_of(settings)
    assert set(users) == {"u1"}
    assert users["u1"]["clicks_7d"] == 2
    assert users["u1"]["clicks_30d"] == 4
    assert users["u1"]["event_ts"] == T


def test_read_ratio_is_reads_over_clicks_capped_and_zero_without_clicks(settings: Settings) -> None:
    events = [event(at(0, 8, i), "half", "a1", "click") for i in range(4)]
    events += [event(at(0, 9, i), "half", "a1", "read", 10_000) for i in range(2)]
    events += [event(at(0, 8), "noclick", "a1", "read", 10_000), event(at(0, 8), "noclick", "a2", "impression")]
    events += [event(at(0, 8), "over", "a1", "click")] + [event(at(0, 9, i), "over", "a1", "read", 1) for i in range(3)]
    write_silver(settings, events, ARTICLES)
    build_features(settings, D)
    users = users_of(settings)
    assert users["half"]["read_ratio_7d"] == pytest.approx(0.5)
    assert users["noclick"]["read_ratio_7d"] == 0.0
    assert users["noclick"]["clicks_7d"] == 0
    assert users["over"]["read_ratio_7d"] == 1.0


def test_sessions_split_on_gaps_over_30_minutes(settings: Settings) -> None:
    times = [at(0, 10, 0), at(0, 10, 10), at(0, 10, 20), at(0, 11, 0), at(0, 11, 25)]
    events = [event(ts, "u1", "a1", "impression") for ts in times]
    # Exactly 30 minutes apart: still one session (a new one needs a gap > 30 min).
    events += [event(at(-1, 8, 0), "u2", "a1", "impression"), event(at(-1, 8, 30), "u2", "a1", "click")]
    events += [event(at(-20, 8), "u3", "a1", "click")]  # active in 30 days, no event in 7
    write_silver(settings, events, ARTICLES)
    build_features(settings, D)
    users = users_of(settings)
    assert users["u1"]["avg_session_len_s"] == pytest.approx((1200 + 1500) / 2)
    assert users["u2"]["avg_session_len_s"] == pytest.approx(1800.0)
    assert users["u3"]["avg_session_len_s"] == 0.0


def test_recent_reads_most_recent_first_without_impressions_and_capped(settings: Settings) -> None:
    events = [
        event(at(-3, 9), "u1", "a1", "click"),
        event(at(-2, 9), "u1", "a2", "read", 5_000),
        event(at(-1, 9), "u1", "a3", "impression"),  # shown, not read
        event(at(0, 9), "u1", "a1", "click"),  # a1 again: now the most recent
        event(at(-31, 9), "u1", "old", "click"),  # outside 30 days
    ]
    many = [event(at(-1, 0) + dt.timedelta(seconds=i), "heavy", f"x{i:03d}", "click") for i in range(105)]
    write_silver(settings, events + many, ARTICLES)
    build_features(settings, D)
    users = users_of(settings)
    assert users["u1"]["recent_reads"] == ["a1", "a2"]
    heavy = users["heavy"]["recent_reads"]
    assert len(heavy) == 100
    assert heavy[0] == "x104" and heavy[-1] == "x005"


def test_top_category_and_category_clicks(settings: Settings) -> None:
    events = [
        event(at(-3, 9), "u1", "a1", "click"),  # sports
        event(at(-2, 9), "u1", "a3", "click"),  # sports
        event(at(-1, 9), "u1", "a2", "click"),  # politics
        event(at(0, 9), "u1", "a2", "read", 1000),  # reads do not count as clicks
        event(at(0, 9), "u1", "unknown", "click"),  # no metadata: no category
        # tie 1-1: the most recently clicked category wins
        event(at(-3, 9), "u2", "a2", "click"),
        event(at(-1, 9), "u2", "a1", "click"),
        event(at(0, 9), "u3", "a1", "impression"),
    ]
    write_silver(settings, events, ARTICLES)
    build_features(settings, D)
    users = users_of(settings)
    assert users["u1"]["top_category"] == "sports"
    assert json.loads(users["u1"]["category_clicks"]) == {"sports": 2, "politics": 1}
    assert list(json.loads(users["u1"]["category_clicks"])) == ["sports", "politics"]
    assert users["u2"]["top_category"] == "sports"
    assert users["u3"]["top_category"] is None
    assert users["u3"]["category_clicks"] == "{}"


def test_article_counts_smoothed_ctr_read_time_and_age(settings: Settings) -> None:
    fresh = article("fresh", at(0, 18), "tech")  # published 6 hours before event_ts
    future = article("future", at(1, 1), "tech")  # published after the snapshot
    events = [event(at(0, 8, i), f"u{i}", "a1", "impression") for i in range(10)]
    events += [event(at(0, 9, i), f"u{i}", "a1", "click") for i in range(2)]
    events += [event(at(0, 8, i), f"u{i}", "a2", "impression") for i in range(10)]
    events += [event(at(-1, 8), "u1", "a1", "impression")]  # yesterday: not in 24h
    events += [event(at(-3, 9), "u1", "a1", "read", 20_000), event(at(0, 9), "u2", "a1", "read", 40_000)]
    events += [event(at(-8, 9), "u1", "a1", "read", 999_000)]  # older than 7 days
    events += [event(at(0, 9), "u3", "old", "click")]  # old article, but active in the last 24h
    write_silver(settings, events, [*ARTICLES, fresh, future])
    build_features(settings, D)
    arts = articles_of(settings)
    assert set(arts) == {"a1", "a2", "a3", "fresh", "old"}
    prior = 3 / 20  # all clicks / all impressions of the day (old's click has no impression)
    k = CTR_PRIOR_IMPRESSIONS
    assert arts["a1"]["views_24h"] == 10 and arts["a1"]["clicks_24h"] == 2
    assert arts["a1"]["ctr_24h"] == pytest.approx((2 + k * prior) / (10 + k))
    assert arts["a2"]["ctr_24h"] == pytest.approx((0 + k * prior) / (10 + k))
    assert arts["a3"]["ctr_24h"] == pytest.approx(prior)  # no views: the prior
    assert arts["a1"]["avg_read_time_s"] == pytest.approx(30.0)
    assert arts["a1"]["reads_7d"] == 2
    assert arts["a2"]["avg_read_time_s"] == 0.0 and arts["a2"]["reads_7d"] == 0
    assert arts["fresh"]["age_hours"] == pytest.approx(6.0)
    assert arts["a1"]["age_hours"] == pytest.approx(60.0)
    assert arts["fresh"]["published_at"] == at(0, 18)
    assert arts["fresh"]["category"] == "tech"
    assert arts["old"]["clicks_24h"] == 1


def test_rebuild_is_idempotent(settings: Settings) -> None:
    events = [event(at(0, 9), "u1", "a1", "click"), event(at(0, 9), "u1", "a1", "impression")]
    write_silver(settings, events, ARTICLES)
    first = build_features(settings, D)
    users_before = read_snapshot(settings, USER_TABLE, D)
    articles_before = read_snapshot(settings, ARTICLE_TABLE, D)
    second = build_features(settings, D)
    assert (second.users, second.articles, second.user_rows, second.article_rows) == (
        first.users,
        first.articles,
        first.user_rows,
        first.article_rows,
    )
    assert read_snapshot(settings, USER_TABLE, D).equals(users_before)
    assert read_snapshot(settings, ARTICLE_TABLE, D).equals(articles_before)
    for table in (USER_TABLE, ARTICLE_TABLE):
        assert [p.name for p in (feature_table_dir(settings, table) / f"date={D}").iterdir()] == ["part-0.parquet"]


def test_a_day_without_events_still_gets_a_snapshot_of_the_window(settings: Settings) -> None:
    write_silver(settings, [event(at(-3, 9), "u1", "a1", "click")], ARTICLES)
    report = build_features(settings, D)
    assert (report.users, report.articles) == (0, 0)  # nobody active on D itself
    assert users_of(settings)["u1"]["clicks_7d"] == 1
    assert articles_of(settings)["a1"]["views_24h"] == 0


def test_missing_inputs_are_reported(settings: Settings) -> None:
    with pytest.raises(NoDataError):
        build_features(settings, D)
    old = pa.Table.from_pylist([event(at(-30, 9), "u1", "a1", "click")], schema=EVENT_SCHEMA)
    replace_partition(old, settings.silver_events_dir, D - dt.timedelta(days=30))
    with pytest.raises(NoDataError):  # only older than the 30-day window
        build_features(settings, D)
    replace_partition(
        pa.Table.from_pylist([event(at(0, 9), "u1", "a1", "click")], schema=EVENT_SCHEMA), settings.silver_events_dir, D
    )
    with pytest.raises(InputFileError, match="articles"):
        build_features(settings, D)


def test_articles_without_events_are_kept_while_fresh(settings: Settings) -> None:
    week = dt.timedelta(days=ARTICLE_FRESH_DAYS)
    catalogue = [article("in", T - week + SECOND, "tech"), article("out", T - week, "tech")]
    write_silver(settings, [event(at(0, 9), "u1", "a1", "impression")], [*ARTICLES, *catalogue])
    build_features(settings, D)
    arts = articles_of(settings)
    assert "in" in arts and "out" not in arts
    assert arts["in"]["age_hours"] == pytest.approx(7 * 24 - 1 / 3600)


def test_session_length_with_a_slate_sharing_one_timestamp_in_any_row_order(settings: Settings) -> None:
    # A slate's impressions share one timestamp; one of them opens a new session after a long gap.
    slate = [event(at(0, 12), "u1", f"a{i % 3 + 1}", "impression") for i in range(6)]
    for i, row in enumerate(slate):
        row["event_id"] = f"slate-{i}"
    before = [event(at(0, 9), "u1", "a1", "click"), event(at(0, 9, 10), "u1", "a2", "click")]
    after = [event(at(0, 12, 5), "u1", "a3", "click")]
    lengths = set()
    for order in (before + slate + after, after + slate[::-1] + before, slate[3:] + after + before + slate[:3]):
        write_silver(settings, [dict(row) for row in order], ARTICLES)
        build_features(settings, D)
        lengths.add(users_of(settings)["u1"]["avg_session_len_s"])
    # Two sessions: 09:00-09:10 (600 s) and 12:00-12:05 (300 s).
    assert lengths == {450.0}
