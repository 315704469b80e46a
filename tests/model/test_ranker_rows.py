"""The ranker's training rows (``reco.train.ranker.ranker_rows``) in each of its three modes."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd

from reco.train.config import TrainConfig
from reco.train.ranker import ranker_rows

DAY = dt.date(2026, 3, 14)
START = pd.Timestamp(DAY, tz="UTC")


def articles() -> pd.DataFrame:
    ids = [f"a{i}" for i in range(30)]
    return pd.DataFrame(
        {
            "article_id": ids,
            "category": ["news"] * 30,
            "published_at": [START - pd.Timedelta(hours=20 - i) for i in range(30)],  # a20..a29: published today
        }
    )


def event(user: str, article: str, kind: str, hours: float, request: str = "r1") -> dict[str, object]:
    return {"user_id": user, "article_id": article, "event_type": kind, "ts": START + pd.Timedelta(hours=hours), "request_id": request}


def log(with_impressions: bool = True) -> pd.DataFrame:
    rows = []
    if with_impressions:
        rows += [event("u1", a, "impression", 2.0) for a in ("a1", "a2", "a3")]
        rows += [event("u2", a, "impression", 3.0, "r2") for a in ("a4", "a5")]
    rows += [event("u1", "a2", "click", 2.01), event("u2", "a5", "click", 3.01)]
    rows.append(event("u3", "a1", "click", -5.0))  # the day before: not a row of this day
    return pd.DataFrame(rows)


def config(mode: str) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), ranker_rows=mode, negatives_per_click=3, seed=4)


def test_impressions_rows_are_labelled_by_the_days_clicks() -> None:
    rows, how = ranker_rows(log(), articles(), DAY, config("impressions"))
    assert how == "impressions"
    got = {(u, a): y for u, a, y in zip(rows["user_id"], rows["article_id"], rows["label"], strict=True)}
    assert got == {("u1", "a1"): 0, ("u1", "a2"): 1, ("u1", "a3"): 0, ("u2", "a4"): 0, ("u2", "a5"): 1}


def test_sampled_rows_are_the_clicks_and_eligible_articles_at_their_time() -> None:
    rows, how = ranker_rows(log(), articles(), DAY, config("sampled"))
    assert how == "clicks + sampled negatives"
    positives = rows[rows["label"] == 1]
    assert sorted(zip(positives["user_id"], positives["article_id"], strict=True)) == [("u1", "a2"), ("u2", "a5")]
    negatives = rows[rows["label"] == 0]
    assert len(negatives) > 0
    published = articles().set_index("article_id")["published_at"]
    # Published by the click's time, not what the user clicked.
    assert (published.reindex(negatives["article_id"]).to_numpy() <= negatives["event_timestamp"].to_numpy()).all()
    assert not set(zip(negatives["user_id"], negatives["article_id"], strict=True)) & {("u1", "a2"), ("u2", "a5")}


def test_mixed_rows_are_both_kinds_and_the_default() -> None:
    assert TrainConfig().ranker_rows == "mixed"
    shown, _ = ranker_rows(log(), articles(), DAY, config("impressions"))
    sampled, _ = ranker_rows(log(), articles(), DAY, config("sampled"))
    rows, how = ranker_rows(log(), articles(), DAY, config("mixed"))
    assert how == "impressions + clicks + sampled negatives"
    key = ["user_id", "article_id", "event_timestamp"]
    expected = pd.concat([shown, sampled]).drop_duplicates(key)
    assert len(rows) == len(expected) == len(shown) + len(sampled)  # impressions and clicks differ in time
    assert set(map(tuple, rows[key].astype(str).to_numpy())) == set(map(tuple, expected[key].astype(str).to_numpy()))


def test_mixed_on_a_log_without_impressions_is_sampled() -> None:
    rows, how = ranker_rows(log(with_impressions=False), articles(), DAY, config("mixed"))
    assert how == "clicks + sampled negatives"
    assert int(rows["label"].sum()) == 2
