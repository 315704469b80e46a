"""The article catalogue as the model sees it: ``ArticleFeatures`` (aligned columns sorted by
publication time) and ``_Aligned``, one model's per-catalogue cache over them. UTC throughout."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reco.errors import RecoError


def epoch_seconds(values: Any) -> np.ndarray:
    """UTC timestamps (datetime64, tz-aware Series, datetimes) -> float64 seconds since the epoch."""
    series = pd.to_datetime(pd.Series(values), utc=True)
    # Drop the zone first: converting a tz-aware column to numpy datetimes goes row by row.
    naive = series.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    out = naive.astype(np.int64).astype(np.float64) / 1e6
    out[np.isnat(naive)] = np.nan
    return out


def _now_seconds(now: dt.datetime) -> float:
    if now.tzinfo is None:
        raise RecoError("`now` must be a timezone-aware UTC datetime")
    return now.timestamp()


@dataclass
class ArticleFeatures:
    """The catalogue as aligned columns, sorted by ``published_at`` (oldest first), so a request
    slices the eligible window with two binary searches instead of touching pandas per item.

    Shapes: every array is (n_articles,). ``published_s`` is UTC seconds since the epoch;
    ``category_codes`` index into ``categories``. Missing stats (an article without traffic yet)
    are 0.
    """

    article_ids: np.ndarray
    category_codes: np.ndarray
    categories: tuple[str, ...]
    published_s: np.ndarray
    views_24h: np.ndarray
    clicks_24h: np.ndarray
    avg_read_time_s: np.ndarray
    # Intraday counts (``reco.intraday``): impressions and clicks since the start of the UTC day, up to the
    # catalogue's refresh; zeros when not given. The daily snapshot knows nothing of an article published today.
    views_today: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    clicks_today: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    index: dict[str, int] = field(default_factory=dict, repr=False)
    # Per-model alignment (article row -> model item) computed once per catalogue; keyed by model uid.
    _aligned: dict[str, _Aligned] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = int(self.article_ids.shape[0])
        if self.views_today.shape != (n,):
            self.views_today = np.zeros(n, dtype=np.float32)
        if self.clicks_today.shape != (n,):
            self.clicks_today = np.zeros(n, dtype=np.float32)
        if not self.index:
            self.index = {a: i for i, a in enumerate(self.article_ids.tolist())}
        self._category_index = {c: i for i, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return int(self.article_ids.shape[0])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ArticleFeatures:
        """Build from article_stats rows (online or offline store) or silver articles joined with them.

        Needs ``article_id``, ``category``, ``published_at``; uses ``views_24h``, ``clicks_24h``,
        ``avg_read_time_s`` when present. One row per article (the last one wins).
        """
        missing = {"article_id", "category", "published_at"} - set(frame.columns)
        if missing:
            raise RecoError(f"article features lack column(s) {sorted(missing)}")
        df = frame.drop_duplicates("article_id", keep="last")
        df = df[df["published_at"].notna() & df["category"].notna()]
        published = epoch_seconds(df["published_at"])
        # By publication time, then article id: articles published in the same second (stores
        # keep seconds) have one order whichever store or frame order they come from, so "newest"
        # is the same offline and online.
        order = np.lexsort((df["article_id"].astype(str).to_numpy(dtype=str), published))
        categories = tuple(sorted(df["category"].astype(str).unique().tolist()))
        cat_index = {c: i for i, c in enumerate(categories)}

        def column(name: str) -> np.ndarray:
            if name not in df.columns:
                return np.zeros(len(df), dtype=np.float32)
            values = pd.to_numeric(df[name], errors="coerce").fillna(0.0).to_numpy(dtype=np.float32)
            return values[order]

        return cls(
            article_ids=df["article_id"].astype(str).to_numpy()[order].astype(object),
            category_codes=np.array([cat_index[c] for c in df["category"].astype(str)], dtype=np.int32)[order],
            categories=categories,
            published_s=published[order],
            views_24h=column("views_24h"),
            clicks_24h=column("clicks_24h"),
            avg_read_time_s=column("avg_read_time_s"),
        )

    def with_today(self, views: np.ndarray, clicks: np.ndarray) -> ArticleFeatures:
        """The same catalogue with intraday counts ((n_articles,), in this catalogue's row order), as a new
        object with an empty cache: models cache their per-article columns per catalogue (``_Aligned``)."""
        return dataclasses.replace(
            self,
            views_today=np.asarray(views, dtype=np.float32),
            clicks_today=np.asarray(clicks, dtype=np.float32),
            _aligned={},
        )

    def category_code(self, category: str) -> int:
        """Code of a category name, -1 when the catalogue has none of it."""
        return self._category_index.get(category, -1)

    def window(self, now_s: float, max_age_hours: float) -> tuple[int, int]:
        """Rows [lo, hi) published in (now - max_age, now]: the eligible, already published ones."""
        lo = int(np.searchsorted(self.published_s, now_s - max_age_hours * 3600.0, side="left"))
        hi = int(np.searchsorted(self.published_s, now_s, side="right"))
        return lo, hi

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "article_ids": self.article_ids.astype(str),
            "category_codes": self.category_codes,
            "categories": np.array(self.categories, dtype=str),
            "published_s": self.published_s,
            "views_24h": self.views_24h,
            "clicks_24h": self.clicks_24h,
            "avg_read_time_s": self.avg_read_time_s,
            "views_today": self.views_today,
            "clicks_today": self.clicks_today,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ArticleFeatures:
        return cls(
            article_ids=np.asarray(arrays["article_ids"]).astype(object),
            category_codes=np.asarray(arrays["category_codes"], dtype=np.int32),
            categories=tuple(str(c) for c in arrays["categories"]),
            published_s=np.asarray(arrays["published_s"], dtype=np.float64),
            views_24h=np.asarray(arrays["views_24h"], dtype=np.float32),
            clicks_24h=np.asarray(arrays["clicks_24h"], dtype=np.float32),
            avg_read_time_s=np.asarray(arrays["avg_read_time_s"], dtype=np.float32),
            # A model saved before intraday counts existed has none: zeros.
            views_today=np.asarray(arrays.get("views_today", ()), dtype=np.float32),
            clicks_today=np.asarray(arrays.get("clicks_today", ()), dtype=np.float32),
        )


@dataclass
class _Aligned:
    """One model's view of one catalogue: item factors in article order (zeros where unknown),
    plus everything a request needs that depends on neither the user nor ``now``. Built once per
    (catalogue object, model) by ``TwoStageModel._align`` and never mutated after, so concurrent
    requests can share it."""

    item_of_article: np.ndarray  # (n_articles,) int32, model item index or -1
    article_of_item: np.ndarray  # (n_items,) int32, article row or -1
    factors: np.ndarray  # (n_articles, n_factors) float32
    known: np.ndarray  # (n_articles,) bool
    known_f: np.ndarray  # (n_articles,) float64, 1.0 where known
    # (n_articles, 4) float64: ranker columns log_views_24h, log_clicks_24h, ctr_24h_smoothed,
    # read_time_min, computed by ranker_features itself so they are the training values.
    item_cols: np.ndarray
    today_cols: np.ndarray  # (n_articles, 2): log_clicks_today, ctr_today_smoothed
    # Rows by cold-start popularity, best first. (clicks + prior) · 2^(-age / half-life) ranks
    # articles the same way at every ``now`` (the decay factors as 2^(-now/h) · 2^(published/h)),
    # so one sort serves all requests. None when some clicks + prior <= 0 (the identity fails).
    pop_order: np.ndarray | None
    cat_pop_order: list[np.ndarray]  # per category code: pop_order's rows of that category
    cat_rows: list[np.ndarray]  # per category code: its rows, ascending (= by published_at)
    # (lo, hi, (n_items,) bool): the model items in the last window seen (ANN eligibility).
    ann_window: tuple[int, int, np.ndarray] | None = None
