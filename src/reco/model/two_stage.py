"""``TwoStageModel``: the trained arrays, the request that composes retrieval, candidates, ranker
and rules (``recommend``), and the model's files (``arrays.npz`` + ``model.json``, no pickle)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import threading
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reco.model.articles import ArticleFeatures, _Aligned, _now_seconds
from reco.model.baselines import _recommend_als, _recommend_popular
from reco.model.candidates import _SRC_BIT, _best_first, _cold_start, _fresh_and_popular, _merge
from reco.model.ranker import (
    RANKER_FEATURES,
    LinearRanker,
    _candidate_features,
    _finite,
    _score,
    category_affinity,
    ranker_features,
    read_affinity,
    recent_reads,
)
from reco.model.retrieval import _ann_search, _fold_in, _hnsw_index, _top_eligible, _window_items
from reco.model.rules import RecItem, RuleSettings, _decay, _diversify, _eligible, _place_pinned


@dataclass
class TwoStageModel:
    """ALS retrieval + extra candidate sources + logistic ranker + rules (see ``reco.model``).

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
        """Factors (f,) for an unseen user from the articles they read, or None if none is known
        (implicit's ``recalculate_user`` in closed form: ``retrieval._fold_in``)."""
        # YᵀY + λI once per model (same bits as adding it per call: the sum is left to right);
        # looked up in __dict__ so a model pickled before this cache existed still works.
        gram = self.__dict__.get("_yty_reg")
        if gram is None:
            gram = self._yty + self._eye_reg
            self._yty_reg = gram
        return _fold_in(
            article_ids,
            item_index=self.item_index,
            item_factors=self.item_factors,
            gram=gram,
            alpha=self.alpha,
            confidence=self.fold_in_confidence,
        )

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
        """faiss HNSW index over ``item_factors`` (``retrieval._hnsw_index``), built once per
        model, on first use. None when faiss is not installed."""
        if self._ann is not None or self._ann_missing:
            return self._ann
        with self._ann_lock:
            if self._ann is None and not self._ann_missing:
                index = _hnsw_index(self.item_factors)
                if index is None:
                    self._ann_missing = True
                else:
                    self._ann = index
        return self._ann

    def _ann_top(self, x: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray | None:
        """Model items (≤ n, best first) among the ``eligible`` ones ((n_items,) bool) by
        approximate x · y; None without faiss."""
        index = self.ann_index()
        if index is None or n <= 0:
            return None
        return _ann_search(index, x, eligible, n, ef_search=getattr(self.rules, "ann_ef_search", 256))

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
        """Top-k articles for one user at ``now`` (UTC, tz-aware); the steps are in ``reco.model``.

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
        reads = recent_reads(user_features)
        blocked = [articles.index.get(a, -1) for a in (*reads, *exclude, *pinned_ids)]
        hist = self.history(user_id)
        if hist.size:
            blocked.extend(aligned.article_of_item[hist].tolist())
        cat_code = articles.category_code(category) if category is not None else None
        ok = _eligible(articles, lo, hi, blocked, cat_code)
        n_slots = k - len(pinned)
        if not ok.any() or n_slots == 0:
            return self._place_pinned([], pinned, k)

        # user_vector(user_id, user_features) without parsing the reads a second time.
        row = self.user_index.get(user_id)
        x = self.user_factors[row] if row is not None else (self.fold_in(reads) if reads else None)
        # Category clicks when the store has them; else the categories of the reads we can see.
        affinity = category_affinity(user_features) or self.read_affinity(reads, articles)
        if x is None and not affinity:
            ranked = _cold_start(aligned, articles, ok, lo, hi, now_s, k, cat_code, rules)
            return self._place_pinned(self._diversify(ranked, articles, k, pinned), pinned, k)

        # Candidate generation: (window-relative indices, source bit) per source list. Nothing here
        # is sized by the window except exact ALS retrieval.
        picked: list[tuple[np.ndarray, int]] = []
        als_window: np.ndarray | None = None
        if x is not None:
            ann = None
            if cat_code is None and self._use_ann(articles):
                ann = self._ann_top(x, _window_items(aligned, lo, hi, blocked, len(self.item_ids)), rules.n_als)
            if ann is not None:
                picked.append((aligned.article_of_item[ann] - lo, _SRC_BIT["als"]))
            else:
                als_window = aligned.factors[window] @ x
                retrievable = ok & aligned.known[window]
                # A section page leaves few rows eligible: the sample's cut would rarely hold n.
                idx = _top_eligible(als_window, retrievable, rules.n_als, try_cut=cat_code is None)
                picked.append((idx, _SRC_BIT["als"]))
        picked += _fresh_and_popular(aligned, articles, ok, lo, hi, now_s, rules, affinity, category, cat_code)
        cand, src = _merge(picked)
        rows = cand + lo

        # Ranking: the ranker's matrix for the candidates only, the per-article columns from the
        # cache and the rest as ranker_features computes them; logistic ranker, then decay.
        if x is None:
            als = np.zeros(cand.size, dtype=np.float64)
        elif als_window is not None:
            als = _finite(als_window[cand].astype(np.float64))
        else:
            als = _finite((aligned.factors[rows] @ x).astype(np.float64))
        age_h = (now_s - articles.published_s[rows]) / 3600.0
        feats = _candidate_features(
            als=als,
            has_factors=1.0 if x is not None else 0.0,
            item_cols=aligned.item_cols[rows],
            item_known=aligned.known_f[rows],
            today_cols=aligned.today_cols[rows],
            age_hours=age_h,
            codes=articles.category_codes[rows],
            articles=articles,
            affinity=affinity,
            user_features=user_features,
        )
        score = self._score(feats) * _decay(age_h, rules.half_life_hours)
        order = np.argsort(-score, kind="stable")
        # Python scalars in one tolist each (cheaper than int()/float() per consumed entry);
        # reasons by table lookup, lazily (only the first ~k entries are usually consumed).
        ranked = _best_first(order, rows, score, src, articles.category_codes, first=4 * k)
        return self._place_pinned(self._diversify(ranked, articles, k, pinned), pinned, k)

    def _score(self, feats: np.ndarray) -> np.ndarray:
        return _score(self.ranker, feats)

    def _diversify(
        self,
        ranked: Iterable[tuple[int, float, str, int]],
        articles: ArticleFeatures,
        k: int,
        pinned: Mapping[int, str],
    ) -> list[RecItem]:
        return _diversify(ranked, articles, k, pinned, self.rules)

    @staticmethod
    def _place_pinned(items: list[RecItem], pinned: Mapping[int, str], k: int) -> list[RecItem]:
        return _place_pinned(items, pinned, k)

    def read_affinity(self, reads: Sequence[str], articles: ArticleFeatures) -> dict[str, float]:
        """Share of each category among ``reads`` (categories from the catalogue, else from training)."""
        return read_affinity(reads, articles, self.item_index, self.item_categories)

    # -- baselines on the same data (evaluation) ---------------------------------------------

    def recommend_als(self, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
        """ALS retrieval alone (``baselines``)."""
        return _recommend_als(self, user_id, k=k, user_features=user_features)

    def recommend_popular(self, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
        """Recency-weighted popularity at training end (``baselines``)."""
        return _recommend_popular(self, user_id, k=k, user_features=user_features)

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


def _build_aligned(model: TwoStageModel, articles: ArticleFeatures) -> _Aligned:
    """``model``'s cache over ``articles`` (see ``_Aligned``): factors in article order, the
    ranker's per-article columns, the popularity orders and each category's rows."""
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
        views_today=articles.views_today,
        clicks_today=articles.clicks_today,
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
        today_cols=np.ascontiguousarray(cols[:, 16:18]),
        pop_order=pop_order,
        cat_pop_order=cat_pop_order,
        cat_rows=cat_rows,
    )
