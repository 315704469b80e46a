"""The served two-stage recommender: what offline evaluation scores is exactly what the service runs.

One request (``TwoStageModel.recommend``):

1. **user vector**: trained ALS factors for a known user; for a user unseen at training time but
   with recent reads, factors by *fold-in* (the closed-form least-squares solve of implicit's
   ``recalculate_user``, done here in numpy so serving does not need ``implicit``).
2. **candidates** from four sources, each capped by ``RuleSettings``: ALS exact top-N (one BLAS
   matrix-vector product over the eligible articles), fresh-popular, newest, and newest in the
   user's favourite categories. The last two are why an article published this morning, which no
   collaborative model has seen, can still be recommended.
3. **filters**: already read (training history and ``recent_reads``), the request's ``exclude``,
   unpublished (``published_at > now``) and expired (older than ``max_age_hours``).
4. **ranker**: a logistic model over user stats, article stats, age at ``now``, user–category
   affinity and the ALS score (``ranker_features`` is shared with training, so rows are built
   by the same code in both places).
5. **rules**: freshness decay with a half-life, at most ``max_per_category`` per category in the
   top k, pinned items at fixed positions.

Cold start (no factors, no category history): fresh-popular, per ``category`` when given, with
reason ``cold_start``.

Stable interface for the service (see also ``load_model``)::

    articles = ArticleFeatures.from_frame(article_stats_df)   # once per catalogue refresh
    model = load_model(settings)                               # model.version = registry version
    items = model.recommend(user_id, k=10, now=now_utc, user_features=row_or_None,
                            articles=articles, exclude=(), category=None, pinned={0: "a1"})

All timestamps are UTC; ``now`` must be timezone-aware. Ages are in hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import math
import threading
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from scipy.linalg.lapack import dposv as _dposv

from reco.errors import RecoError
from reco.settings import Settings

# Candidate sources, by priority when an article comes from several (the first one is its reason).
SOURCES: tuple[str, ...] = ("als", "category_fresh", "fresh", "popular")
_SRC_BIT = {name: 1 << i for i, name in enumerate(SOURCES)}

# Names of the ranker's input columns, in order. Training and serving both call ranker_features.
RANKER_FEATURES: tuple[str, ...] = (
    "als_score",
    "has_factors",
    "log_views_24h",
    "log_clicks_24h",
    "ctr_24h_smoothed",
    "read_time_min",
    "age_days",
    "log_age_hours",
    "category_affinity",
    "is_top_category",
    "u_log_clicks_7d",
    "u_read_ratio_7d",
    "u_log_session_s",
    "affinity_x_activity",
    "cold_x_log_clicks",
    "als_available",
)

PYFUNC_ARTIFACT = "two_stage"
_log = logging.getLogger(__name__)
MODEL_ARTIFACT_NAME = "model"


@dataclass(frozen=True)
class RuleSettings:
    """Business rules and candidate budgets, stored inside the model (hours, counts)."""

    half_life_hours: float = 24.0
    max_age_hours: float = 72.0
    # At most this many articles of one category per page of ``diversity_page`` positions (0: no cap).
    max_per_category: int = 5
    diversity_page: int = 10
    n_als: int = 200
    n_popular: int = 60
    n_fresh: int = 40
    n_category_fresh: int = 20
    n_top_categories: int = 3
    # Cold-start score is (clicks_24h + prior) · decay: the prior lets a brand-new article compete.
    popularity_prior: float = 1.0
    # ALS retrieval through an HNSW index (faiss) instead of the exact product once the catalogue
    # has at least this many articles; below it (and for offline evaluation's small catalogues)
    # retrieval is exact. ``ann_ef_search``: HNSW search breadth (recall against time).
    ann_min_items: int = 50_000
    ann_ef_search: int = 256


@dataclass
class RecItem:
    """One recommended article with its score (higher is better) and why it is there."""

    article_id: str
    score: float
    reason: str


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
    index: dict[str, int] = field(default_factory=dict, repr=False)
    # Per-model alignment (article row -> model item) computed once per catalogue; keyed by model uid.
    _aligned: dict[str, _Aligned] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
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
        )


@dataclass
class _Aligned:
    """One model's view of one catalogue: item factors in article order (zeros where unknown),
    plus everything a request needs that depends on neither the user nor ``now``. Built once per
    (catalogue object, model) and never mutated after, so concurrent requests can share it."""

    item_of_article: np.ndarray  # (n_articles,) int32, model item index or -1
    article_of_item: np.ndarray  # (n_items,) int32, article row or -1
    factors: np.ndarray  # (n_articles, n_factors) float32
    known: np.ndarray  # (n_articles,) bool
    known_f: np.ndarray  # (n_articles,) float64, 1.0 where known
    # (n_articles, 4) float64: ranker columns log_views_24h, log_clicks_24h, ctr_24h_smoothed,
    # read_time_min, computed by ranker_features itself so they are the training values.
    item_cols: np.ndarray
    # Rows by cold-start popularity, best first. (clicks + prior) · 2^(-age / half-life) ranks
    # articles the same way at every ``now`` (the decay factors as 2^(-now/h) · 2^(published/h)),
    # so one sort serves all requests. None when some clicks + prior <= 0 (the identity fails).
    pop_order: np.ndarray | None
    cat_pop_order: list[np.ndarray]  # per category code: pop_order's rows of that category
    cat_rows: list[np.ndarray]  # per category code: its rows, ascending (= by published_at)
    # (lo, hi, (n_items,) bool): the model items in the last window seen (ANN eligibility).
    ann_window: tuple[int, int, np.ndarray] | None = None


def _build_aligned(model: TwoStageModel, articles: ArticleFeatures) -> _Aligned:
    n = len(articles)
    item_of_article = np.array([model.item_index.get(a, -1) for a in articles.article_ids.tolist()], dtype=np.int32)
    known = item_of_article >= 0
    factors = np.zeros((n, model.n_factors), dtype=np.float32)
    factors[known] = model.item_factors[item_of_article[known]]
    article_of_item = np.full(len(model.item_ids), -1, dtype=np.int32)
    article_of_item[item_of_article[known]] = np.flatnonzero(known).astype(np.int32)
    cols = ranker_features(
        als_score=0.0,
        has_factors=0.0,
        item_known=known,
        views_24h=articles.views_24h,
        clicks_24h=articles.clicks_24h,
        avg_read_time_s=articles.avg_read_time_s,
        age_hours=0.0,
        affinity=0.0,
        is_top_category=0.0,
        clicks_7d=0.0,
        read_ratio_7d=0.0,
        avg_session_len_s=0.0,
    ).reshape(n, len(RANKER_FEATURES))
    rules = model.rules
    base = articles.clicks_24h + rules.popularity_prior
    pop_order: np.ndarray | None = None
    published = articles.published_s
    if n and bool(np.all(base > 0)) and bool(np.all(np.isfinite(published))) and rules.half_life_hours > 0:
        key = np.log(base.astype(np.float64)) + (published - published.max()) * (
            math.log(2.0) / (rules.half_life_hours * 3600.0)
        )
        pop_order = np.argsort(-key, kind="stable")
    codes = articles.category_codes
    n_cats = len(articles.categories)
    by_code = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_code], np.arange(n_cats + 1))
    cat_rows = [by_code[bounds[c] : bounds[c + 1]] for c in range(n_cats)]
    cat_pop_order: list[np.ndarray] = []
    if pop_order is not None:
        pop_codes = codes[pop_order]
        by_code = pop_order[np.argsort(pop_codes, kind="stable")]
        cat_pop_order = [by_code[bounds[c] : bounds[c + 1]] for c in range(n_cats)]
    return _Aligned(
        item_of_article=item_of_article,
        article_of_item=article_of_item,
        factors=factors,
        known=known,
        known_f=known.astype(np.float64),
        item_cols=np.ascontiguousarray(cols[:, 2:6]),
        pop_order=pop_order,
        cat_pop_order=cat_pop_order,
        cat_rows=cat_rows,
    )


_FAISS: Any = None
_FAISS_TRIED = False
_FAISS_LOCK = threading.Lock()


def _faiss() -> Any | None:
    """faiss, imported on first use (it is in the ``serve`` extra, not core); None if missing."""
    global _FAISS, _FAISS_TRIED
    if _FAISS_TRIED:
        return _FAISS
    with _FAISS_LOCK:
        if not _FAISS_TRIED:
            try:
                import faiss

                # One query at a time per request: OpenMP workers only add spin-waiting on a busy host.
                faiss.omp_set_num_threads(1)
                _FAISS = faiss
            except ImportError:
                _log.warning("faiss is not installed: ALS retrieval stays exact at every catalogue size")
            _FAISS_TRIED = True
    return _FAISS


@dataclass
class LinearRanker:
    """Logistic ranker as plain arrays: p = sigmoid(((x - mean) / scale) · coef + intercept).

    Kept as numpy (not a pickled scikit-learn object) so a request costs one small matrix product
    and the artifact loads anywhere.
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __post_init__(self) -> None:
        # Columns of ranker_features' matrix this ranker was trained on, by name: a model trained
        # before a feature was added keeps scoring (evaluated as champion, or still served).
        unknown = [name for name in self.feature_names if name not in RANKER_FEATURES]
        if unknown:
            raise RecoError(f"ranker uses feature(s) {unknown} that this code does not compute")
        self._columns = np.array([RANKER_FEATURES.index(name) for name in self.feature_names], dtype=np.int64)
        self._all = len(self.feature_names) == len(RANKER_FEATURES) and bool(
            np.all(self._columns == np.arange(len(RANKER_FEATURES)))
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x: (n, len(RANKER_FEATURES)) from ``ranker_features`` -> click probabilities (n,)."""
        if not self._all:
            x = x[:, self._columns]
        # ((x - mean) / scale) @ coef + intercept with the standardisation folded into the weights
        # once (two passes over the matrix fewer: 3.5 instead of 9.4 µs for 360 candidates). Kept
        # in __dict__ so a ranker pickled before this cache existed still works.
        folded = self.__dict__.get("_folded")
        if folded is None:
            weights = np.asarray(self.coef, dtype=np.float64) / self.scale
            folded = self._folded = (weights, float(self.intercept - np.dot(self.mean / self.scale, self.coef)))
        z = x @ folded[0] + folded[1]
        return 1.0 / (1.0 + np.exp(-z))


def ranker_features(
    *,
    als_score: Any,
    has_factors: Any,
    item_known: Any,
    views_24h: Any,
    clicks_24h: Any,
    avg_read_time_s: Any,
    age_hours: Any,
    affinity: Any,
    is_top_category: Any,
    clicks_7d: Any,
    read_ratio_7d: Any,
    avg_session_len_s: Any,
) -> np.ndarray:
    """The ranker's input matrix (n, len(RANKER_FEATURES)), float64, from per-row arrays or scalars
    (scalars broadcast: serving passes one user's stats as scalars, training passes columns).
    Ages in hours, times in seconds; NaN inputs count as 0. ``item_known``: the article has ALS
    factors (it was in the training data) — an article published since has an ALS score of 0
    that means "unknown", not "disliked", and the ranker must be able to tell the two apart."""
    cols = [
        als_score,
        has_factors,
        item_known,
        views_24h,
        clicks_24h,
        avg_read_time_s,
        age_hours,
        affinity,
        is_top_category,
        clicks_7d,
        read_ratio_7d,
        avg_session_len_s,
    ]
    arrays = np.broadcast_arrays(*[np.nan_to_num(np.asarray(c, dtype=np.float64)) for c in cols])
    als, has, known, views, clicks, read_s, age, aff, top, u_clicks, u_ratio, u_session = arrays
    views = np.maximum(views, 0.0)
    clicks = np.maximum(clicks, 0.0)
    age = np.maximum(age, 0.0)
    u_log_clicks = np.log1p(np.maximum(u_clicks, 0.0))
    log_clicks = np.log1p(clicks)
    return np.column_stack(
        [
            als,
            has,
            np.log1p(views),
            log_clicks,
            # Smoothed towards a 5% prior so an article with 1 view and 1 click is not a 100% CTR.
            (clicks + 1.0) / (views + 20.0),
            np.minimum(np.maximum(read_s, 0.0), 900.0) / 60.0,
            age / 24.0,
            np.log1p(age),
            aff,
            top,
            u_log_clicks,
            u_ratio,
            np.log1p(np.maximum(u_session, 0.0)),
            aff * u_log_clicks,
            (1.0 - has) * log_clicks,
            has * known,
        ]
    )


def category_affinity(user_features: Mapping[str, Any] | None) -> dict[str, float]:
    """The user's share of clicks per category (sums to 1), from ``category_clicks``.

    Accepts what the stores give back: a dict, a list of (key, value) pairs or of
    {"key"/"category", "value"/"clicks"} records (Arrow maps and structs), or a JSON string.
    """
    if not user_features:
        return {}
    raw = user_features.get("category_clicks")
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else {}
        except ValueError:
            return {}
    counts: dict[str, float] = {}
    if isinstance(raw, Mapping):
        items: Iterable[Any] = raw.items()
    else:
        items = list(raw)
    for entry in items:
        if isinstance(entry, Mapping):
            key = entry.get("key", entry.get("category"))
            value = entry.get("value", entry.get("clicks", entry.get("count", 0)))
        else:
            key, value = entry[0], entry[1]
        if key is None:
            continue
        try:
            counts[str(key)] = counts.get(str(key), 0.0) + float(value or 0.0)
        except (TypeError, ValueError):
            continue
    total = sum(v for v in counts.values() if v > 0)
    return {k: v / total for k, v in counts.items() if v > 0} if total > 0 else {}


def recent_reads(user_features: Mapping[str, Any] | None) -> list[str]:
    """The user's recent reads (most recent first) as a list of article ids."""
    if not user_features:
        return []
    raw = user_features.get("recent_reads")
    if raw is None or isinstance(raw, float):
        return []
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = [s for s in raw.split(",") if s]
        return [str(a) for a in parsed]
    return [str(a) for a in list(raw)]


def _finite(values: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(values)``, skipping its several passes when everything is finite (the
    usual case): one isfinite pass instead of ~10 µs of Python and numpy calls per use."""
    return values if np.isfinite(values).all() else np.nan_to_num(values)


def _user_scalar(user_features: Mapping[str, Any] | None, name: str) -> float:
    if not user_features:
        return 0.0
    value = user_features.get(name)
    try:
        out = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(out) else out


def _top_indices(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest finite values, unordered; -inf marks excluded rows.

    The finite rows are selected first: argpartition over many equal -inf values degrades badly
    (measured 1.2 ms instead of 0.08 ms on 20k values)."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size <= n:
        return finite
    return finite[np.argpartition(values[finite], -n)[-n:]]


def _top_eligible(values: np.ndarray, eligible: np.ndarray, n: int, *, try_cut: bool = True) -> np.ndarray:
    """Indices of the n largest finite ``values`` where ``eligible`` (bool, same shape), unordered:
    ``_top_indices(np.where(eligible, values, -inf), n)``, the same rows (up to ties at the cut).

    With ``try_cut``, a cut is first taken from a strided sample (the value that about 1.5 n rows
    exceed), so only the few rows above it are gathered and partitioned. Exact whenever at least n
    eligible finite rows lie above the cut: the n largest are then all among them. Otherwise (an
    unlucky sample, few eligible rows, NaN in the sample) the whole array decides. On 20k values
    this is ~20 µs instead of ~45 µs for flatnonzero + gather + argpartition of everything.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    stride = 16
    if try_cut and values.size >= 2 * stride * n:  # a sample of at least 2n values
        sample = values[::stride]
        # Expected rows above the j-th largest of the sample: about j·stride, i.e. ~1.5 n.
        j = min(sample.size, -(-3 * n // (2 * stride)) + 2)
        cut = np.partition(sample, sample.size - j)[sample.size - j]
        top = _largest_finite(np.flatnonzero((values > cut) & eligible), values, n)
        if top.size == n:
            return top
    return _largest_finite(np.flatnonzero(eligible), values, n)


def _largest_finite(idx: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The (at most) n of ``idx`` with the largest finite ``values[idx]``, unordered."""
    vals = values[idx]
    finite = np.isfinite(vals)
    if not finite.all():
        idx, vals = idx[finite], vals[finite]
    return idx[np.argpartition(vals, -n)[-n:]] if idx.size > n else idx


def _best_first(
    order: np.ndarray, rows: np.ndarray, score: np.ndarray, src: np.ndarray, codes: np.ndarray, *, first: int
) -> Iterable[tuple[int, float, str, int]]:
    """(catalogue row, score, reason, category code) in ``order``, as Python scalars.

    The diversity fill usually consumes little more than k entries of a few hundred candidates:
    the first ``first`` are converted at once, the rest only if the fill reaches them."""

    def chunk(part: np.ndarray) -> Iterable[tuple[int, float, str, int]]:
        part_rows = rows[part]
        return zip(
            part_rows.tolist(),
            score[part].tolist(),
            map(_REASONS.__getitem__, src[part].tolist()),
            codes[part_rows].tolist(),
            strict=True,
        )

    def rest() -> Iterable[tuple[int, float, str, int]]:
        yield from chunk(order[first:])

    return itertools.chain(chunk(order[:first]), rest()) if order.size > first else chunk(order)


def _newest(ok: np.ndarray, pool: np.ndarray | None, lo: int, hi: int, n: int) -> np.ndarray:
    """Window-relative indices of the n newest eligible rows, walking back from the window's end;
    ``pool``: ascending catalogue rows to draw from (one category), None for all.

    Rows are sorted by (published_at, article_id) (``ArticleFeatures.from_frame``), so "newest"
    is decided for articles published in the same second too: the later row wins. (Stores keep
    timestamps to the second; a tie at the cut used to send a third of the requests to a scan of
    the whole window, measured on the benchmark's 20k catalogue.)"""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if pool is None:
        start_at, end_at = lo, hi
    else:
        start_at, end_at = int(pool.searchsorted(lo)), int(pool.searchsorted(hi))
    parts: list[np.ndarray] = []
    count, end, step = 0, end_at, max(4 * n, 64)
    while count < n and end > start_at:
        start = max(start_at, end - step)
        if pool is None:
            # Same rows as np.arange(start, end)[ok[...]], from a slice of ``ok`` (no index arrays).
            seg = np.flatnonzero(ok[start - lo : end - lo]) + start
        else:
            seg = pool[start:end]
            seg = seg[ok[seg - lo]]
        parts.append(seg)
        count += seg.size
        end, step = start, step * 2
    if not parts:
        return np.empty(0, dtype=np.int64)
    got = parts[0] if len(parts) == 1 else np.concatenate(parts[::-1])
    return got[-n:] - lo


@dataclass
class TwoStageModel:
    """ALS retrieval + extra candidate sources + logistic ranker + rules (see the module docstring).

    Shapes: ``user_factors`` (n_users, f) and ``item_factors`` (n_items, f) float32, rows aligned to
    ``user_ids`` / ``item_ids``; ``history_indptr`` (n_users + 1,) / ``history_items`` (nnz,) the
    training interactions as CSR (for the already-read filter); ``popularity`` (n_items,) the
    recency-weighted popularity at ``trained_until``; ``item_users`` (n_items,) distinct training
    users per item (novelty). ``catalog`` is the article snapshot used when a caller passes none
    (the pyfunc's self-contained predict).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    history_indptr: np.ndarray
    history_items: np.ndarray
    popularity: np.ndarray
    item_users: np.ndarray
    regularization: float
    alpha: float
    fold_in_confidence: float
    rules: RuleSettings = field(default_factory=RuleSettings)
    ranker: LinearRanker | None = None
    catalog: ArticleFeatures | None = None
    # (n_items,) category of each trained item ("" unknown): a new reader's taste from their reads.
    item_categories: np.ndarray | None = None
    trained_until: str = ""
    fingerprint: str = ""
    version: str = ""
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.user_index: dict[str, int] = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.item_index: dict[str, int] = {a: i for i, a in enumerate(self.item_ids.tolist())}
        y = self.item_factors.astype(np.float64)
        # Gram matrix of the item factors, shared by every fold-in solve: (f, f) float64.
        self._yty = y.T @ y
        self._eye_reg = self.regularization * np.eye(self.n_factors)
        self._ann: Any = None
        self._ann_missing = False
        self._ann_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # The HNSW index and its lock do not pickle; a copy rebuilds the index when it needs it.
        state = self.__dict__.copy()
        state.pop("_ann_lock", None)
        state["_ann"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Also for a model pickled before the ANN fields existed.
        self.__dict__.setdefault("_ann", None)
        self.__dict__.setdefault("_ann_missing", False)
        self._ann_lock = threading.Lock()

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    # -- retrieval ---------------------------------------------------------------------------

    def fold_in(self, article_ids: Sequence[str]) -> np.ndarray | None:
        """Factors (f,) for an unseen user from the articles they read, or None if none is known.

        Solves (YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i over the read items i, with
        c_i = alpha · (fold_in_confidence × times read): implicit's ``recalculate_user`` in closed form.
        """
        counts: dict[int, float] = {}
        for article in article_ids:
            item = self.item_index.get(article)
            if item is not None:
                counts[item] = counts.get(item, 0.0) + self.fold_in_confidence
        if not counts:
            return None
        items = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        conf = self.alpha * np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        y = self.item_factors[items].astype(np.float64)
        # YᵀY + λI once per model (same bits as adding it per call: the sum is left to right);
        # looked up in __dict__ so a model pickled before this cache existed still works.
        base = self.__dict__.get("_yty_reg")
        if base is None:
            base = self._yty + self._eye_reg
            self._yty_reg = base
        a = base + (y.T * (conf - 1.0)) @ y
        b = y.T @ conf
        # The matrix is symmetric positive definite (λ > 0, confidences ≥ 0): a Cholesky solve,
        # called straight through LAPACK, takes half the time of np.linalg.solve's LU (9 vs 19 µs
        # at 64 factors). A matrix LAPACK finds not positive definite (a negative confidence) is
        # solved by LU instead.
        _, solved, info = _dposv(a, b)
        if info != 0:
            solved = np.linalg.solve(a, b)
        return solved.astype(np.float32)

    def user_vector(self, user_id: str, user_features: Mapping[str, Any] | None) -> tuple[np.ndarray | None, str]:
        """(factors or None, how): trained for a known user, fold-in for a new one with reads."""
        row = self.user_index.get(user_id)
        if row is not None:
            return self.user_factors[row], "known"
        reads = recent_reads(user_features)
        if reads:
            vector = self.fold_in(reads)
            if vector is not None:
                return vector, "fold_in"
        return None, "none"

    def history(self, user_id: str) -> np.ndarray:
        """Model item indices the user interacted with in training (empty for unknown users)."""
        row = self.user_index.get(user_id)
        if row is None:
            return np.empty(0, dtype=np.int32)
        return self.history_items[self.history_indptr[row] : self.history_indptr[row + 1]]

    def _align(self, articles: ArticleFeatures) -> _Aligned:
        """The per-catalogue cache. It lives on the ArticleFeatures object, so a new snapshot
        (a new object) gets a new one; built fully before it is published (thread safe)."""
        aligned = articles._aligned.get(self.uid)
        if aligned is None:
            aligned = _build_aligned(self, articles)
            articles._aligned[self.uid] = aligned
            if self._use_ann(articles):
                self.ann_index()  # build now (the service's warm-up request), not in a live one
        return aligned

    def _use_ann(self, articles: ArticleFeatures) -> bool:
        # getattr: a RuleSettings unpickled from before the field existed has no attribute.
        return len(articles) >= getattr(self.rules, "ann_min_items", 50_000)

    def ann_index(self) -> Any | None:
        """faiss HNSW (32 links, inner product) over ``item_factors``, ids = model item indices;
        built once per model, on first use. None when faiss is not installed."""
        if self._ann is not None or self._ann_missing:
            return self._ann
        with self._ann_lock:
            if self._ann is None and not self._ann_missing:
                faiss = _faiss()
                if faiss is None:
                    self._ann_missing = True
                else:
                    index = faiss.IndexHNSWFlat(self.n_factors, 32, faiss.METRIC_INNER_PRODUCT)
                    index.hnsw.efConstruction = 40
                    index.add(np.ascontiguousarray(self.item_factors, dtype=np.float32))
                    self._ann = index
        return self._ann

    def _ann_top(self, x: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray | None:
        """Model items (≤ n, best first) among the ``eligible`` ones ((n_items,) bool) by
        approximate x · y; None without faiss. The eligibility goes in as a bitmap, so HNSW never
        returns a filtered item."""
        index = self.ann_index()
        if index is None or n <= 0:
            return None
        faiss: Any = _faiss()
        mask = eligible
        bits = np.packbits(mask, bitorder="little")
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(getattr(self.rules, "ann_ef_search", 256)), n)
        params.sel = faiss.IDSelectorBitmap(mask.size, faiss.swig_ptr(bits))
        _, ids = index.search(np.ascontiguousarray(x, dtype=np.float32)[None, :], n, params=params)
        found = ids[0]
        return found[found >= 0]

    # -- the request -------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        *,
        k: int,
        now: dt.datetime,
        user_features: Mapping[str, Any] | None,
        articles: ArticleFeatures,
        exclude: Collection[str] = (),
        category: str | None = None,
        pinned: Mapping[int, str] | None = None,
    ) -> list[RecItem]:
        """Top-k articles for one user at ``now`` (UTC, tz-aware); see the module docstring.

        ``user_features`` is the user's user_stats row (or None); ``category`` restricts results to
        one category (a section page); ``pinned`` maps 0-based positions to article ids placed there
        whatever the model thinks (editorial override, not filtered).
        """
        if k <= 0:
            return []
        rules = self.rules
        now_s = _now_seconds(now)
        aligned = self._align(articles)
        lo, hi = articles.window(now_s, rules.max_age_hours)
        # Pinned positions past the list are not shown; the others are left out of the slots to fill.
        pinned = {int(p): str(a) for p, a in (pinned or {}).items() if 0 <= int(p) < k}
        pinned_ids = set(pinned.values())

        # Eligibility inside the window [lo, hi): not read, not excluded, in the requested category.
        # Everything below works on views of that window (no copy of the catalogue per request).
        window = slice(lo, hi)
        ok = np.ones(hi - lo, dtype=bool)
        reads = recent_reads(user_features)
        blocked = [articles.index.get(a, -1) for a in (*reads, *exclude, *pinned_ids)]
        hist = self.history(user_id)
        if hist.size:
            blocked.extend(aligned.article_of_item[hist].tolist())
        if blocked:
            rows_b = np.asarray(blocked, dtype=np.int64)
            ok[rows_b[(rows_b >= lo) & (rows_b < hi)] - lo] = False
        codes = articles.category_codes[window]
        cat_code: int | None = None
        if category is not None:
            cat_code = articles.category_code(category)
            ok &= codes == cat_code
        n_slots = k - len(pinned)
        if not ok.any() or n_slots == 0:
            return self._place_pinned([], pinned, k)

        # user_vector(user_id, user_features) without parsing the reads a second time.
        row = self.user_index.get(user_id)
        x = self.user_factors[row] if row is not None else (self.fold_in(reads) if reads else None)
        # Category clicks when the store has them; else the categories of the reads we can see.
        affinity = category_affinity(user_features) or self.read_affinity(reads, articles)
        # The source lists below come from the per-catalogue orders (a few hundred rows touched);
        # where that order cannot decide (equal values at the cut), the whole window decides, as
        # before: the candidate set, hence the answer, is the same either way.
        full: dict[str, np.ndarray] = {}

        def window_popular() -> np.ndarray:
            if "popular" not in full:
                published = articles.published_s[window]
                decay = np.exp2(-((now_s - published) / 3600.0) / rules.half_life_hours)
                full["popular"] = np.where(ok, (articles.clicks_24h[window] + rules.popularity_prior) * decay, -np.inf)
            return full["popular"]

        if x is None and not affinity:
            # Only the head can reach the top k, even after the per-category cap.
            n_head = max(rules.n_popular, 4 * k)
            fast = self._popular_head(aligned, articles, ok, lo, hi, now_s, n_head, cat_code, distinct=True)
            if fast is not None:
                head, values = fast
            else:
                popular = window_popular()
                head = _top_indices(popular, n_head)
                head = head[np.argsort(-popular[head], kind="stable")]
                values = popular[head]
            head_rows = head + lo
            ranked: Iterable[tuple[int, float, str, int]] = zip(
                head_rows.tolist(),
                values.tolist(),
                itertools.repeat("cold_start"),
                articles.category_codes[head_rows].tolist(),
            )
            return self._place_pinned(self._diversify(ranked, articles, k, pinned), pinned, k)

        # Candidate generation: (window-relative indices, source bit) per source list; a list
        # holds no index twice. Nothing here is sized by the window except exact ALS retrieval.
        picked: list[tuple[np.ndarray, int]] = []
        als_window: np.ndarray | None = None
        if x is not None:
            ann = None
            if cat_code is None and self._use_ann(articles):
                ann = self._ann_top(x, self._window_items(aligned, lo, hi, blocked), rules.n_als)
            if ann is not None:
                picked.append((aligned.article_of_item[ann] - lo, _SRC_BIT["als"]))
            else:
                als_window = aligned.factors[window] @ x
                retrievable = ok & aligned.known[window]
                # A section page leaves few rows eligible: the sample's cut would rarely hold n.
                idx = _top_eligible(als_window, retrievable, rules.n_als, try_cut=cat_code is None)
                picked.append((idx, _SRC_BIT["als"]))
        fast = self._popular_head(aligned, articles, ok, lo, hi, now_s, rules.n_popular, cat_code, distinct=False)
        picked.append(
            (fast[0] if fast is not None else _top_indices(window_popular(), rules.n_popular), _SRC_BIT["popular"])
        )
        picked.append((_newest(ok, None, lo, hi, rules.n_fresh), _SRC_BIT["fresh"]))
        top_cats = sorted(affinity, key=lambda c: (-affinity[c], c))[: rules.n_top_categories]
        if category is not None:
            top_cats = [category]
        for cat in top_cats:
            code = articles.category_code(cat)
            if code >= 0:
                newest = _newest(ok, aligned.cat_rows[code], lo, hi, rules.n_category_fresh)
                picked.append((newest, _SRC_BIT["category_fresh"]))
        # Merge the lists: one stable sort, then OR the bits of equal indices (cand ascending, as
        # the window's rows).
        all_idx = np.concatenate([idx for idx, _ in picked])
        all_bits = np.repeat(np.array([bit for _, bit in picked], dtype=np.int8), [idx.size for idx, _ in picked])
        by_idx = np.argsort(all_idx, kind="stable")
        all_idx, all_bits = all_idx[by_idx], all_bits[by_idx]
        firsts = np.flatnonzero(np.concatenate(([True], all_idx[1:] != all_idx[:-1]))) if all_idx.size else by_idx
        cand = all_idx[firsts]
        src = np.bitwise_or.reduceat(all_bits, firsts) if firsts.size else all_bits
        rows = cand + lo

        # Ranking: the ranker's matrix for the candidates only, the per-article columns from the
        # cache and the rest as ranker_features computes them; logistic ranker, then decay.
        if x is None:
            als = np.zeros(cand.size, dtype=np.float64)
        elif als_window is not None:
            als = _finite(als_window[cand].astype(np.float64))
        else:
            als = _finite((aligned.factors[rows] @ x).astype(np.float64))
        top_category = str(user_features.get("top_category") or "") if user_features else ""
        if not top_category and affinity:
            top_category = max(sorted(affinity), key=lambda c: affinity[c])
        cand_codes = codes[cand]
        aff_by_code = _finite(np.array([affinity.get(c, 0.0) for c in articles.categories], dtype=np.float64))
        has = 1.0 if x is not None else 0.0
        age_h = (now_s - articles.published_s[rows]) / 3600.0
        age = np.maximum(_finite(age_h), 0.0)
        u_log_clicks = np.log1p(np.maximum(_user_scalar(user_features, "clicks_7d"), 0.0))
        feats = np.empty((cand.size, len(RANKER_FEATURES)), dtype=np.float64)
        feats[:, 0] = als
        feats[:, 1] = has
        feats[:, 2:6] = aligned.item_cols[rows]
        feats[:, 6] = age / 24.0
        feats[:, 7] = np.log1p(age)
        feats[:, 8] = aff_by_code[cand_codes] if aff_by_code.size else 0.0
        feats[:, 9] = (cand_codes == articles.category_code(top_category)) if top_category else 0.0
        feats[:, 10] = u_log_clicks
        feats[:, 11] = _user_scalar(user_features, "read_ratio_7d")
        feats[:, 12] = np.log1p(np.maximum(_user_scalar(user_features, "avg_session_len_s"), 0.0))
        feats[:, 13] = feats[:, 8] * u_log_clicks
        feats[:, 14] = (1.0 - has) * feats[:, 3]
        feats[:, 15] = has * aligned.known_f[rows]
        score = self._score(feats) * np.exp2(-age_h / rules.half_life_hours)
        order = np.argsort(-score, kind="stable")
        # Python scalars in one tolist each (cheaper than int()/float() per consumed entry);
        # reasons by table lookup, lazily (only the first ~k entries are usually consumed).
        ranked = _best_first(order, rows, score, src, articles.category_codes, first=4 * k)
        return self._place_pinned(self._diversify(ranked, articles, k, pinned), pinned, k)

    def _window_items(self, aligned: _Aligned, lo: int, hi: int, blocked: Sequence[int]) -> np.ndarray:
        """(n_items,) bool: model items whose article is in rows [lo, hi) and not ``blocked``.
        The window's mask is kept (it changes only when an article enters or leaves the window)."""
        cached = aligned.ann_window
        if cached is None or cached[0] != lo or cached[1] != hi:
            mask = np.zeros(len(self.item_ids), dtype=bool)
            items = aligned.item_of_article[lo:hi]
            mask[items[items >= 0]] = True
            cached = (lo, hi, mask)
            aligned.ann_window = cached  # one assignment: other threads see the old or the new one
        mask = cached[2].copy()
        if blocked:
            rows = np.asarray(blocked, dtype=np.int64)
            items = aligned.item_of_article[rows[(rows >= lo) & (rows < hi)]]
            mask[items[items >= 0]] = False
        return mask

    def _popular_head(
        self,
        aligned: _Aligned,
        articles: ArticleFeatures,
        ok: np.ndarray,
        lo: int,
        hi: int,
        now_s: float,
        n: int,
        cat_code: int | None,
        *,
        distinct: bool,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The n most popular eligible window rows (window-relative, best first) and their
        (clicks + prior) · decay at ``now``, walking the cached order; None when that order
        cannot decide exactly (equal values at the cut, or, with ``distinct``, anywhere in the
        head, whose order then would be arbitrary) and the caller must score the whole window."""
        if n <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if aligned.pop_order is None:
            return None
        if cat_code is None:
            order = aligned.pop_order
        elif cat_code < 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        else:
            order = aligned.cat_pop_order[cat_code]
        # A few more than n: the exact values at `now` may differ from the cached order's in the
        # last bits, so the cut is checked on exact values below.
        want = n + 8
        parts: list[np.ndarray] = []
        count, pos, step = 0, 0, max(4 * want, 256)
        while count < want and pos < order.size:
            seg = order[pos : pos + step]
            pos += step
            step *= 2
            seg = seg[(seg >= lo) & (seg < hi)]
            seg = seg[ok[seg - lo]]
            parts.append(seg)
            count += seg.size
        if len(parts) == 1:  # the usual case: the first segment held enough
            got = parts[0][:want]
        else:
            got = np.concatenate(parts)[:want] if parts else np.empty(0, dtype=np.int64)
        decay = np.exp2(-((now_s - articles.published_s[got]) / 3600.0) / self.rules.half_life_hours)
        values = (articles.clicks_24h[got] + self.rules.popularity_prior) * decay
        idx = np.argsort(-values, kind="stable")
        if got.size > n:
            cut = values[idx[n - 1]]
            if cut == values[idx[n]]:
                return None
            # Rows not walked rank at most like the last walked one: it must be clearly below the cut.
            if got.size == want and not values[-1] < cut * (1.0 - 1e-9):
                return None
            idx = idx[:n]
        head = values[idx]
        if distinct and np.unique(head).size != head.size:
            return None
        return got[idx] - lo, head

    def _score(self, feats: np.ndarray) -> np.ndarray:
        if self.ranker is not None:
            return self.ranker.predict(feats)
        # No ranker (e.g. a click log without impressions): ALS decides, popularity and affinity break ties.
        als, log_clicks, affinity = feats[:, 0], feats[:, 3], feats[:, 8]
        return 1.0 / (1.0 + np.exp(-(4.0 * als + 0.3 * log_clicks + affinity - 2.0)))

    def _diversify(
        self,
        ranked: Iterable[tuple[int, float, str, int]],
        articles: ArticleFeatures,
        k: int,
        pinned: Mapping[int, str],
    ) -> list[RecItem]:
        """Best-first fill of the k - len(pinned) free slots with at most ``max_per_category``
        articles of one category per page of ``diversity_page`` positions (pinned items count on
        their page). An article skipped for its category is reconsidered first on the next page;
        when nothing left fits, the best skipped one takes the slot rather than leaving it empty."""
        cap, page = self.rules.max_per_category, max(self.rules.diversity_page, 1)
        codes = articles.category_codes
        counts: dict[tuple[int, int], int] = {}
        for position, article in pinned.items():
            row = articles.index.get(article)
            if row is not None:
                key = (position // page, int(codes[row]))
                counts[key] = counts.get(key, 0) + 1
        stream = iter(ranked)
        # Entries carry their category code (4th field) so a skipped one is not looked up again.
        pending: list[tuple[int, float, str, int]] = []
        chosen: list[tuple[int, float, str, int]] = []
        for slot in range(k):
            if slot in pinned:
                continue
            pg = slot // page
            entry: tuple[int, float, str, int] | None = None
            for j, e in enumerate(pending):
                if cap <= 0 or counts.get((pg, e[3]), 0) < cap:
                    entry = pending.pop(j)
                    break
            if entry is None:
                for e in stream:
                    if cap <= 0 or counts.get((pg, e[3]), 0) < cap:
                        entry = e
                        break
                    pending.append(e)
            if entry is None:
                if not pending:
                    break
                entry = pending.pop(0)
            key = (pg, entry[3])
            counts[key] = counts.get(key, 0) + 1
            chosen.append(entry)
        ids = articles.article_ids
        return [RecItem(str(ids[row]), score, reason) for row, score, reason, _ in chosen]

    @staticmethod
    def _place_pinned(items: list[RecItem], pinned: Mapping[int, str], k: int) -> list[RecItem]:
        if not pinned:
            return items[:k]
        out = list(items)
        top = max((i.score for i in items), default=1.0)
        for position in sorted(pinned):
            out.insert(max(0, min(position, len(out))), RecItem(pinned[position], top, "pinned"))
        return out[:k]

    def read_affinity(self, reads: Sequence[str], articles: ArticleFeatures) -> dict[str, float]:
        """Share of each category among ``reads`` (categories from the catalogue, else from training)."""
        counts: Counter[str] = Counter()
        for article in reads:
            row = articles.index.get(article)
            if row is not None:
                counts[articles.categories[articles.category_codes[row]]] += 1
                continue
            item = self.item_index.get(article)
            category = str(self.item_categories[item]) if self.item_categories is not None and item is not None else ""
            if category:
                counts[category] += 1
        total = sum(counts.values())
        return {c: n / total for c, n in counts.items()} if total else {}

    # -- baselines on the same data (evaluation) ---------------------------------------------

    def recommend_als(self, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
        """ALS retrieval alone: top-k trained items by factor score, already-read removed; users
        without factors get the popularity list (so ALS is judged on ranking, not on reach)."""
        x, _ = self.user_vector(user_id, user_features)
        if x is None:
            return self.recommend_popular(user_id, k=k, user_features=user_features)
        scores = self.item_factors @ x
        return self._top_items(scores, user_id, k, user_features)

    def recommend_popular(self, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
        """Recency-weighted popularity at training end, already-read removed."""
        return self._top_items(self.popularity.astype(np.float32, copy=True), user_id, k, user_features)

    def _top_items(
        self, scores: np.ndarray, user_id: str, k: int, user_features: Mapping[str, Any] | None
    ) -> list[str]:
        scores = np.array(scores, dtype=np.float32, copy=True)
        scores[self.history(user_id)] = -np.inf
        for article in recent_reads(user_features):
            item = self.item_index.get(article)
            if item is not None:
                scores[item] = -np.inf
        top = _top_indices(scores, k)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [str(self.item_ids[i]) for i in top]

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write the model as ``arrays.npz`` + ``model.json`` (no pickle) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "user_ids": self.user_ids.astype(str),
            "item_ids": self.item_ids.astype(str),
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "history_indptr": self.history_indptr,
            "history_items": self.history_items,
            "popularity": self.popularity,
            "item_users": self.item_users,
        }
        if self.item_categories is not None:
            arrays["item_categories"] = self.item_categories.astype(str)
        if self.ranker is not None:
            arrays |= {
                "ranker_mean": self.ranker.mean,
                "ranker_scale": self.ranker.scale,
                "ranker_coef": self.ranker.coef,
            }
        if self.catalog is not None:
            arrays |= {f"catalog_{k}": v for k, v in self.catalog.to_arrays().items()}
        save_npz: Any = np.savez  # numpy's stub types **kwds as bool
        save_npz(directory / "arrays.npz", **arrays)
        meta = {
            "regularization": self.regularization,
            "alpha": self.alpha,
            "fold_in_confidence": self.fold_in_confidence,
            "rules": dataclasses.asdict(self.rules),
            "ranker": None
            if self.ranker is None
            else {"feature_names": list(self.ranker.feature_names), "intercept": self.ranker.intercept},
            "trained_until": self.trained_until,
            "fingerprint": self.fingerprint,
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> TwoStageModel:
        meta = json.loads((directory / "model.json").read_text())
        with np.load(directory / "arrays.npz", allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        ranker = None
        if meta["ranker"] is not None:
            ranker = LinearRanker(
                tuple(meta["ranker"]["feature_names"]),
                arrays["ranker_mean"],
                arrays["ranker_scale"],
                arrays["ranker_coef"],
                float(meta["ranker"]["intercept"]),
            )
        catalog = None
        if "catalog_article_ids" in arrays:
            catalog = ArticleFeatures.from_arrays(
                {k.removeprefix("catalog_"): v for k, v in arrays.items() if k.startswith("catalog_")}
            )
        return cls(
            user_ids=arrays["user_ids"].astype(object),
            item_ids=arrays["item_ids"].astype(object),
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            history_indptr=arrays["history_indptr"],
            history_items=arrays["history_items"],
            popularity=arrays["popularity"],
            item_users=arrays["item_users"],
            regularization=float(meta["regularization"]),
            alpha=float(meta["alpha"]),
            fold_in_confidence=float(meta["fold_in_confidence"]),
            rules=RuleSettings(**meta["rules"]),
            ranker=ranker,
            catalog=catalog,
            item_categories=arrays["item_categories"].astype(object) if "item_categories" in arrays else None,
            trained_until=meta.get("trained_until", ""),
            fingerprint=meta.get("fingerprint", ""),
        )


def _reason(bits: int) -> str:
    for name in SOURCES:
        if bits & _SRC_BIT[name]:
            return name
    return "popular"


# _reason for every source bitmask (src is a small int8 bitmask).
_REASONS: tuple[str, ...] = tuple(_reason(b) for b in range(1 << len(SOURCES)))


# -- MLflow ------------------------------------------------------------------------------------

PREDICT_COLUMNS: tuple[str, ...] = ("user_id", "rank", "article_id", "score", "reason")


class TwoStagePyfunc(PythonModel):
    """MLflow pyfunc around ``TwoStageModel``; the model itself lives in the ``two_stage`` artifact.

    ``predict`` takes one request per row — ``user_id`` (str), ``k`` (int), ``now`` (UTC
    timestamp), optional ``category`` (str) — and returns one row per recommendation with
    PREDICT_COLUMNS. Being self-contained, it serves from the article snapshot and the user
    histories the model was trained with; the live service calls ``recommend`` with fresh
    online features instead (``unwrap_python_model().model``).
    """

    def __init__(self) -> None:
        self.model: TwoStageModel | None = None

    def load_context(self, context: Any) -> None:
        self.model = TwoStageModel.load(Path(context.artifacts[PYFUNC_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.model is None:
            self.load_context(context)
        model = self.model
        assert model is not None
        if model.catalog is None:
            raise RecoError("this model carries no article catalogue; call recommend() with articles")
        frame = pd.DataFrame(model_input)
        rows: list[dict[str, Any]] = []
        for request in frame.to_dict("records"):
            now = pd.Timestamp(str(request.get("now")))
            now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
            user_id = str(request["user_id"])
            category = request.get("category")
            history = [str(model.item_ids[i]) for i in model.history(user_id)]
            items = model.recommend(
                user_id,
                k=int(request.get("k") or 10),
                now=now.to_pydatetime(),
                user_features={"recent_reads": history} if history else None,
                articles=model.catalog,
                category=str(category) if isinstance(category, str) and category else None,
            )
            rows += [
                {"user_id": user_id, "rank": r, "article_id": i.article_id, "score": i.score, "reason": i.reason}
                for r, i in enumerate(items, start=1)
            ]
        return pd.DataFrame(rows, columns=list(PREDICT_COLUMNS))


def load_model(settings: Settings, alias: str = "champion") -> TwoStageModel:
    """The registered model behind ``alias`` (``models:/<model_name>@<alias>``), with ``.version`` set.

    The alias is resolved to a version first and that version is loaded, so the version reported
    is the one actually loaded even if the alias moves meanwhile.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        version = client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as error:
        raise RecoError(
            f"no model {settings.model_name}@{alias} in {settings.tracking_uri}: run the pipeline first"
        ) from error
    loaded = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version.version}")
    wrapper = loaded.unwrap_python_model()
    model = wrapper.model if isinstance(wrapper, TwoStagePyfunc) else None
    if model is None:
        raise RecoError(f"{settings.model_name} version {version.version} is not a two-stage model")
    model.version = str(version.version)
    return model


def recommend_for_user(
    settings: Settings,
    user_id: str,
    k: int = 10,
    *,
    now: dt.datetime | None = None,
    category: str | None = None,
    alias: str = "champion",
) -> tuple[list[RecItem], str]:
    """Recommendations for one user from the registry's ``alias`` model with online features, and
    the model version that made them (what ``reco recommend USER_ID -k K`` prints).

    The catalogue is the silver article table (metadata is known at publication) joined with the
    online article_stats; the user's row comes from the online user_stats (None if never seen).
    ``now`` defaults to the wall clock (UTC).
    """
    from reco.featurestore import online_features

    now = now or dt.datetime.now(dt.UTC)
    model = load_model(settings, alias)
    path = settings.silver_articles_path
    if not path.is_file():
        raise RecoError(f"no article table at {path}: run ingest first")
    meta = pd.read_parquet(path, columns=["article_id", "published_at", "category"])
    published = pd.to_datetime(meta["published_at"], utc=True)
    since = pd.Timestamp(now) - pd.Timedelta(hours=model.rules.max_age_hours)
    meta = meta[(published > since) & (published <= pd.Timestamp(now))]
    users, stats = online_features(settings, [user_id], meta["article_id"].tolist())
    frame = meta.merge(
        stats.drop(columns=["category", "published_at"], errors="ignore"),
        left_on="article_id",
        right_index=True,
        how="left",
    )
    row = users.loc[user_id].to_dict() if user_id in users.index else {}
    user_features = {
        str(key): v for key, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    items = model.recommend(
        user_id,
        k=k,
        now=now,
        user_features=user_features or None,
        articles=ArticleFeatures.from_frame(frame),
        category=category,
    )
    return items, model.version
