"""Drift monitoring on hand-made feature snapshots and a tiny silver lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from reco.drift import (
    COLUMN_THRESHOLD,
    FEATURE_COLUMNS,
    _sample,
    compute_drift,
    ctr_trend,
    monitor,
    outcomes,
    total_variation,
    window_counts,
)
from reco.errors import InputFileError, NoDataError
from reco.features import ARTICLE_STATS_SCHEMA, ARTICLE_TABLE, USER_STATS_SCHEMA, USER_TABLE, feature_table_dir
from reco.lake import replace_partition, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

D = dt.date(2024, 3, 20)
CATS = ["news", "sports", "tech", "music"]
N_COLUMNS = sum(len(nums) + len(cats) for nums, cats in FEATURE_COLUMNS.values())  # 10


def user_frame(
    rng: np.random.Generator, n: int, *, clicks_mean: float = 3.0, cat_p: list[float] | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "event_ts": pd.Timestamp("2024-03-21", tz="UTC"),
            "clicks_7d": rng.poisson(clicks_mean, n).astype("int64"),
            "read_ratio_7d": rng.beta(4, 4, n),
            "avg_session_len_s": rng.gamma(2.0, 60.0, n),
            "top_category": rng.choice(CATS, n, p=cat_p or [0.4, 0.3, 0.2, 0.1]),
            "recent_reads": [[] for _ in range(n)],
            "category_clicks": "{}",
            "clicks_30d": rng.poisson(10, n).astype("int64"),
        }
    )


def article_frame(rng: np.random.Generator, n: int, *, views_mean: float = 40.0) -> pd.DataFrame:
    views = rng.poisson(views_mean, n).astype("int64")
    clicks = rng.binomial(views, 0.05).astype("int64")
    return pd.DataFrame(
        {
            "article_id": [f"a{i}" for i in range(n)],
            "event_ts": pd.Timestamp("2024-03-21", tz="UTC"),
            "views_24h": views,
            "clicks_24h": clicks,
            "ctr_24h": (clicks + 1.0) / (views + 20.0),
            "avg_read_time_s": rng.gamma(3.0, 15.0, n),
            "reads_7d": rng.poisson(2, n).astype("int64"),
            "category": rng.choice(CATS, n, p=[0.4, 0.3, 0.2, 0.1]),
            "published_at": pd.Timestamp("2024-03-20", tz="UTC"),
            "age_hours": rng.uniform(0, 72, n),
        }
    )


def write_snapshot(settings: Settings, table: str, day: dt.date, frame: pd.DataFrame) -> None:
    schema = USER_STATS_SCHEMA if table == USER_TABLE else ARTICLE_STATS_SCHEMA
    replace_partition(
        pa.Table.from_pandas(frame, schema=schema, preserve_index=False), feature_table_dir(settings, table), day
    )


def write_days(settings: Settings, days: list[dt.date], *, seed: int = 1, **shift: Any) -> None:
    """Snapshots of both tables for ``days``; ``shift`` keyword arguments change user_frame's draw."""
    rng = np.random.default_rng(seed)
    for day in days:
        write_snapshot(settings, USER_TABLE, day, user_frame(rng, 1000, **shift))
        write_snapshot(settings, ARTICLE_TABLE, day, article_frame(rng, 1000))


REFERENCE = [D - dt.timedelta(days=k) for k in range(7, 0, -1)]


# --- compute_drift: Evidently on two frames -------------------------------------------------


def test_identical_distributions_do_not_drift() -> None:
    rng = np.random.default_rng(0)
    ref, cur = user_frame(rng, 3000), user_frame(rng, 3000)
    found = compute_drift(
        ref, cur, numerical=["clicks_7d", "read_ratio_7d", "avg_session_len_s"], categorical=["top_category"]
    )
    assert found.share == 0.0
    assert found.drifted == []
    assert set(found.scores) == {"clicks_7d", "read_ratio_7d", "avg_session_len_s", "top_category"}
    assert all(0.0 <= score < COLUMN_THRESHOLD for score in found.scores.values()), found.scores
    assert found.methods == {
        "clicks_7d": "wasserstein",
        "read_ratio_7d": "wasserstein",
        "avg_session_len_s": "wasserstein",
        "top_category": "jensenshannon",
    }


def test_shifted_columns_drift_and_only_those() -> None:
    rng = np.random.default_rng(0)
    ref = user_frame(rng, 3000)
    cur = user_frame(rng, 3000, clicks_mean=6.0, cat_p=[0.1, 0.2, 0.3, 0.4])
    found = compute_drift(
        ref, cur, numerical=["clicks_7d", "read_ratio_7d", "avg_session_len_s"], categorical=["top_category"]
    )
    assert found.drifted == ["clicks_7d", "top_category"]
    assert found.drifted_count == 2
    assert found.share == pytest.approx(0.5)
    # A Poisson mean 3 -> 6 moves the distribution by ~1.7 reference std.
    assert found.scores["clicks_7d"] > 1.0
    assert found.scores["read_ratio_7d"] < COLUMN_THRESHOLD
    assert "<html" in found.html.lower()


def test_nan_cells_are_ignored_so_tables_can_be_stacked() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    nan = np.full(2000, np.nan)
    ref = pd.DataFrame({"x": np.r_[a, nan], "y": np.r_[nan, a]})
    cur = pd.DataFrame({"x": np.r_[b + 2.0, nan], "y": np.r_[nan, b]})
    found = compute_drift(ref, cur, numerical=["x", "y"], categorical=[])
    assert found.drifted == ["x"]
    assert found.scores["y"] < COLUMN_THRESHOLD


# --- monitor on snapshot files --------------------------------------------------------------


def test_quiet_day_is_not_drifted_and_report_is_archived(settings: Settings) -> None:
    write_days(settings, [*REFERENCE, D])
    result = monitor(settings, D)
    assert result.share == 0.0, result.columns
    assert result.retrain_recommended is False
    assert result.warmup is False  # no silver events: nothing says the windows were short
    assert len(result.columns) == N_COLUMNS
    assert set(result.columns) >= {"user_stats.clicks_7d", "article_stats.ctr_24h", "user_stats.top_category"}
    assert result.reference_dates == [d.isoformat() for d in REFERENCE]
    assert result.rows == {
        "current.user_stats": 1000,
        "current.article_stats": 1000,
        "reference.user_stats": 7000,
        "reference.article_stats": 7000,
    }
    report = Path(result.report_path)
    assert report == settings.workdir / "reports" / D.isoformat() / "drift.html"
    html = report.read_text()
    assert "user_stats.clicks_7d" in html
    saved = json.loads((report.parent / "drift.json").read_text())
    assert saved["share"] == 0.0
    assert saved["columns"] == result.columns


def test_shifted_day_recommends_retraining_above_the_threshold(settings: Settings) -> None:
    write_days(settings, REFERENCE)
    write_days(settings, [D], seed=2, clicks_mean=6.0, cat_p=[0.1, 0.2, 0.3, 0.4])
    # 2 of 10 columns drift: share 0.2. The rule is strictly "share above threshold".
    at_share = monitor(settings, D, threshold=0.2)
    assert at_share.drifted == ["user_stats.clicks_7d", "user_stats.top_category"]
    assert at_share.share == pytest.approx(2 / N_COLUMNS)
    assert at_share.retrain_recommended is False
    below_share = monitor(settings, D, threshold=0.19)
    assert below_share.retrain_recommended is True
    assert below_share.summary()["retrain_recommended"] is True
    assert below_share.summary()["drifted"] == at_share.drifted


def test_first_day_has_no_reference(settings: Settings) -> None:
    write_days(settings, [D])
    result = monitor(settings, D)
    assert result.share == 0.0
    assert result.retrain_recommended is False
    assert result.report_path == ""
    assert "no reference snapshots" in result.note
    assert (settings.workdir / "reports" / D.isoformat() / "drift.json").is_file()


def test_partial_reference_is_used_sampled_and_said(settings: Settings) -> None:
    # The lake starts two days before D: its 7-day windows are still filling.
    write_silver(settings, {REFERENCE[-2]: [("a-news1", "impression")], D: [("a-news1", "impression")]})
    write_days(settings, [*REFERENCE[-2:], D])
    result = monitor(settings, D, max_rows=300)
    assert result.reference_dates == [d.isoformat() for d in REFERENCE[-2:]]
    assert "reference holds 2 of 7 days" in result.note
    assert result.warmup is True
    assert f"events start {REFERENCE[-2].isoformat()}" in result.note
    assert result.rows == dict.fromkeys(
        ["current.user_stats", "current.article_stats", "reference.user_stats", "reference.article_stats"], 300
    )


def test_sampling_is_deterministic() -> None:
    frame = pd.DataFrame({"x": np.arange(10_000)})
    first, second = _sample(frame, 500, seed=0), _sample(frame, 500, seed=0)
    assert len(first) == 500
    assert first["x"].tolist() == second["x"].tolist()
    assert _sample(frame, 500, seed=1)["x"].tolist() != first["x"].tolist()
    assert _sample(frame, 20_000, seed=0) is frame


def test_missing_snapshot_of_the_day_is_no_data(settings: Settings) -> None:
    write_days(settings, REFERENCE)
    with pytest.raises(NoDataError, match=D.isoformat()):
        monitor(settings, D)


def test_snapshot_without_a_watched_column_names_it(settings: Settings) -> None:
    write_days(settings, [*REFERENCE, D])
    frame = user_frame(np.random.default_rng(3), 50).drop(columns=["read_ratio_7d"])
    path = feature_table_dir(settings, USER_TABLE) / f"date={D.isoformat()}" / "part-0.parquet"
    write_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)
    with pytest.raises(InputFileError, match="read_ratio_7d"):
        monitor(settings, D)


def test_column_empty_on_one_side_is_left_out(settings: Settings) -> None:
    write_days(settings, REFERENCE)
    rng = np.random.default_rng(5)
    frame = user_frame(rng, 1000)
    frame["top_category"] = None  # no user has a click with a known category yet
    write_snapshot(settings, USER_TABLE, D, frame)
    write_snapshot(settings, ARTICLE_TABLE, D, article_frame(rng, 1000))
    result = monitor(settings, D)
    assert "user_stats.top_category" not in result.columns
    assert len(result.columns) == N_COLUMNS - 1
    assert "user_stats.top_category has no values on one side" in result.note


# --- outcomes from silver events ------------------------------------------------------------


def silver_event(n: int, day: dt.date, user: str, article: str, kind: str) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "ts": dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC) + dt.timedelta(seconds=n),
        "user_id": user,
        "article_id": article,
        "event_type": kind,
        "dwell_ms": 5_000 if kind == "read" else None,
        "request_id": f"r{n}",
        "position": 0,
        "model_version": "v1",
        "variant": "stable",
        "propensity": 0.5,
    }


def write_silver(settings: Settings, plan: dict[dt.date, list[tuple[str, str]]]) -> None:
    """``plan``: day -> (article_id, event_type) pairs; articles a-news*, a-tech* carry their category."""
    n = 0
    for day, events in plan.items():
        rows = []
        for article_id, kind in events:
            n += 1
            rows.append(silver_event(n, day, "u1", article_id, kind))
        replace_partition(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), settings.silver_events_dir, day)
    articles = [
        {
            "article_id": a,
            "published_at": dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
            "category": c,
            "title": a,
            "abstract": None,
        }
        for a, c in [("a-news1", "news"), ("a-news2", "news"), ("a-tech1", "tech")]
    ]
    write_atomic(pa.Table.from_pylist(articles, schema=ARTICLE_SCHEMA), settings.silver_articles_path)


def test_ctr_trend_and_category_mix_from_events(settings: Settings) -> None:
    d1, d2 = D - dt.timedelta(days=2), D - dt.timedelta(days=1)
    write_silver(
        settings,
        {
            # 4 impressions (3 news, 1 tech), 1 click, 1 read: CTR 0.25
            d1: [("a-news1", "impression"), ("a-news2", "impression"), ("a-news1", "impression"),
                 ("a-tech1", "impression"), ("a-news1", "click"), ("a-news1", "read")],
            # no partition for d2: the trend skips it
            # 2 impressions (1 news, 1 tech) and 1 click, plus one impression of an article unknown to silver
            D: [("a-news2", "impression"), ("a-tech1", "impression"), ("a-zzz", "impression"), ("a-tech1", "click")],
        },
    )  # fmt: skip
    seen = outcomes(settings, D, [d1, d2])
    assert seen.ctr_trend == [
        {"date": d1.isoformat(), "impressions": 4, "clicks": 1, "ctr": 0.25},
        {"date": D.isoformat(), "impressions": 3, "clicks": 1, "ctr": round(1 / 3, 6)},
    ]
    assert seen.category_mix == pytest.approx({"news": 1 / 3, "tech": 1 / 3, "unknown": 1 / 3}, abs=1e-6)
    # reference mix news 3/4, tech 1/4 -> TV = (|1/3-3/4| + |1/3-1/4| + |1/3-0|) / 2 = 5/12
    assert seen.category_mix_shift == pytest.approx(5 / 12, abs=1e-6)
    assert seen.clicked_category_mix == {"tech": 1.0}
    assert seen.clicked_category_mix_shift == pytest.approx(1.0)
    assert seen.ctr_change == pytest.approx((1 / 3) / 0.25 - 1, abs=1e-6)
    assert seen.notes == []


def test_monitor_reports_the_outcomes_of_the_day(settings: Settings) -> None:
    write_silver(settings, {D: [("a-news1", "impression"), ("a-news1", "click")]})
    write_days(settings, [D])  # no reference: Evidently is not run, the outcomes still are
    result = monitor(settings, D)
    assert result.ctr_trend == [{"date": D.isoformat(), "impressions": 1, "clicks": 1, "ctr": 1.0}]
    assert result.category_mix == {"news": 1.0}
    assert result.summary()["ctr"] == 1.0
    assert "no impressions in the reference days" in result.note


def test_ctr_trend_of_counts_without_impressions_is_zero() -> None:
    counts = pd.DataFrame(
        {
            "date": ["2024-03-01", "2024-03-02"],
            "event_type": ["click", "impression"],
            "category": ["x", "x"],
            "n": [2, 5],
        }
    )
    assert ctr_trend(counts) == [
        {"date": "2024-03-01", "impressions": 0, "clicks": 2, "ctr": 0.0},
        {"date": "2024-03-02", "impressions": 5, "clicks": 0, "ctr": 0.0},
    ]


def test_window_without_events_is_empty(settings: Settings) -> None:
    assert window_counts(settings, [D]).empty
    seen = outcomes(settings, D, REFERENCE)
    assert seen.ctr_trend == []
    assert seen.category_mix == {}
    assert seen.ctr_change is None
    assert any("no impressions" in note for note in seen.notes)


def test_total_variation() -> None:
    assert total_variation({"a": 1.0}, {"a": 1.0}) == 0.0
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75}) == pytest.approx(0.25)
