"""Intraday counts as training and the evaluation compute them (``reco.intraday.counts_before``):
the same day only, strictly before the time asked, per article and event type."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from reco.intraday import counts_before

DAY = dt.datetime(2026, 3, 14, tzinfo=dt.UTC)


def at(hours: float) -> float:
    return (DAY + dt.timedelta(hours=hours)).timestamp()


def log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "article_id": [r[0] for r in rows],
            "event_type": [r[1] for r in rows],
            "ts": [DAY + dt.timedelta(hours=r[2]) for r in rows],
        }
    )


def test_counts_cover_the_utc_day_up_to_but_excluding_the_time_asked() -> None:
    events = log(
        [
            ("a", "impression", -0.5),  # the day before: never
            ("a", "click", -0.001),
            ("a", "impression", 0.0),  # midnight: counts
            ("a", "impression", 1.0),
            ("a", "click", 1.0),
            ("a", "read", 1.5),  # not a count
            ("a", "impression", 3.0),  # exactly at the time asked below: not before it
            ("b", "click", 2.0),
            ("zzz", "click", 1.0),  # an article nobody asks about
        ]
    )
    ids = np.array(["a", "a", "b", "a", "c"], dtype=object)
    views, clicks = counts_before(events, ids, np.array([at(3.0), at(3.0) + 0.01, at(2.0), at(0.0), at(5.0)]))
    assert views.tolist() == [2.0, 3.0, 0.0, 0.0, 0.0]
    assert clicks.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    # Asked the next day: that day's events only, none of these.
    views, clicks = counts_before(events, np.array(["a"], dtype=object), np.array([at(24.0 + 6.0)]))
    assert views.tolist() == [0.0] and clicks.tolist() == [0.0]


def test_counts_match_a_row_by_row_count_on_a_random_log() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    events = pd.DataFrame(
        {
            "article_id": rng.choice(["a", "b", "c", "d"], n),
            "event_type": rng.choice(["impression", "click", "read"], n, p=[0.7, 0.2, 0.1]),
            "ts": [DAY + dt.timedelta(seconds=float(s)) for s in rng.uniform(-86_400, 2 * 86_400, n)],
        }
    )
    ids = rng.choice(["a", "b", "c", "e"], 300).astype(object)
    times = rng.uniform(at(-12.0), at(47.0), 300)
    views, clicks = counts_before(events, ids, times)
    ts = np.array([t.timestamp() for t in events["ts"]])
    for i in range(len(ids)):
        start = np.floor(times[i] / 86_400) * 86_400
        mine = (events["article_id"].to_numpy() == ids[i]) & (ts >= start) & (ts < times[i])
        kinds = events["event_type"].to_numpy()[mine]
        assert views[i] == (kinds == "impression").sum() and clicks[i] == (kinds == "click").sum(), i
    assert clicks.sum() > 0 and views.sum() > clicks.sum()


def test_no_events_or_no_queries_give_zeros() -> None:
    empty = log([])
    views, clicks = counts_before(empty, np.array(["a"], dtype=object), np.array([at(1.0)]))
    assert views.tolist() == [0.0] and clicks.tolist() == [0.0]
    views, clicks = counts_before(log([("a", "click", 0.5)]), np.array([], dtype=object), np.array([]))
    assert views.shape == (0,) and clicks.shape == (0,)
