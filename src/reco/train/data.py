"""Reading the training window: silver days before D, events, article metadata, per-event ALS
confidence, the sha256 fingerprint of the files read, and the catalogue as the service sees it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reco.errors import InputFileError, NoDataError
from reco.features import ARTICLE_TABLE, read_snapshot
from reco.lake import list_dates, partition_files
from reco.settings import Settings
from reco.train.config import ConfidenceWeights

_EVENT_COLUMNS = ["ts", "user_id", "article_id", "event_type", "dwell_ms", "request_id", "position", "propensity"]


def training_days(settings: Settings, day: dt.date, window_days: int) -> list[dt.date]:
    """Silver dates in [D - window, D - 1] that have a partition, oldest first."""
    first = day - dt.timedelta(days=window_days)
    return [d for d in list_dates(settings.silver_events_dir) if first <= d < day]


def read_events(
    settings: Settings, days: list[dt.date], *, impressions_on: dt.date | None = None
) -> tuple[pd.DataFrame, list[Path]]:
    """Silver events of ``days`` as one frame (``ts`` UTC) and the files read.

    Impressions are most of the log and only the ranker's day needs them, so other days are read
    with a pushed-down filter on ``event_type`` (clicks and reads only).
    """
    files: list[Path] = []
    tables = []
    for d in days:
        for f in partition_files(settings.silver_events_dir, d):
            files.append(f)
            filters = None if d == impressions_on else [("event_type", "in", ["click", "read"])]
            tables.append(pq.read_table(f, columns=_EVENT_COLUMNS, filters=filters))
    if not files:
        raise NoDataError(f"no silver events for {days[0] if days else '?'}..{days[-1] if days else '?'}")
    frame = pa.concat_tables(tables).to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame, files


def read_articles(settings: Settings) -> pd.DataFrame:
    """Silver article metadata (article_id, published_at UTC, category)."""
    path = settings.silver_articles_path
    if not path.is_file():
        raise InputFileError(path, "silver article table is missing; run ingest first")
    frame = pq.read_table(path, columns=["article_id", "published_at", "category"]).to_pandas()
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    return frame


def confidence(events: pd.DataFrame, weights: ConfidenceWeights) -> np.ndarray:
    """Per-event ALS confidence (n,), 0 for impressions."""
    kind = events["event_type"].to_numpy()
    dwell_s = events["dwell_ms"].fillna(0).to_numpy(dtype=np.float64) / 1000.0
    read = weights.read + weights.dwell_per_minute * np.minimum(np.maximum(dwell_s, 0.0), weights.dwell_cap_s) / 60.0
    return np.where(kind == "click", weights.click, np.where(kind == "read", read, 0.0))


def file_fingerprint(files: list[Path], root: Path) -> tuple[str, dict[str, str]]:
    """sha256 of each file's bytes, and one sha256 over the sorted (relative path, digest) pairs."""
    digests: dict[str, str] = {}
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        try:
            name = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(path)
        digests[name] = h.hexdigest()
    total = hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()
    return total, digests


def catalogue_frame(
    settings: Settings, stats_day: dt.date, *, until: dt.datetime, max_age_hours: float
) -> pd.DataFrame:
    """Article metadata published in (until - max_age - 1 day, until], with the ``stats_day``
    article_stats snapshot joined on (0 where an article has no stats yet, e.g. published since).

    This is the catalogue as the service sees it: metadata is known at publication, stats lag a day.
    """
    articles = read_articles(settings)
    since = until - dt.timedelta(hours=max_age_hours) - dt.timedelta(days=1)
    articles = articles[(articles["published_at"] <= until) & (articles["published_at"] > since)]
    stats = read_snapshot(settings, ARTICLE_TABLE, stats_day).to_pandas()
    keep = ["article_id", "views_24h", "clicks_24h", "ctr_24h", "avg_read_time_s"]
    stats = stats[[c for c in keep if c in stats.columns]]
    return articles.merge(stats, on="article_id", how="left")
