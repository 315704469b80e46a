"""The baselines offline evaluation scores the two-stage model against, on the same trained data.

Every baseline of an evaluation request answers under the served model's own eligibility
(``eligible``: published at or before ``now``, inside the model's freshness window
``rules.max_age_hours``, the user's reads and training history excluded — the window and filter
functions ``recommend`` itself calls), so a baseline differs from the model only in how it ranks:

* ``popularity_eligible``: the recency-weighted popularity at training end (``model.popularity``);
  articles published since training have none and come after the popular ones, newest first.
* ``als_eligible``: ALS factor scores of the trained articles (fold-in for a new reader with reads);
  users without factors get ``popularity_eligible`` (so ALS is judged on ranking, not on reach).
* the rule-based heuristics of ``reco.model.heuristics`` over the same rows.

``_recommend_als`` / ``_recommend_popular`` are the older unrestricted versions behind
``TwoStageModel.recommend_als`` / ``recommend_popular`` (every trained item, no ``now``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from reco.model.ranker import recent_reads
from reco.model.retrieval import _top_indices
from reco.model.rules import _eligible

if TYPE_CHECKING:
    from reco.model.articles import ArticleFeatures
    from reco.model.two_stage import TwoStageModel


class _Trained(Protocol):
    """What the baselines read of a trained model (``TwoStageModel``)."""

    item_ids: np.ndarray
    item_index: dict[str, int]
    item_factors: np.ndarray
    popularity: np.ndarray

    def user_vector(self, user_id: str, user_features: Mapping[str, Any] | None) -> tuple[np.ndarray | None, str]: ...

    def history(self, user_id: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Eligible:
    """The catalogue rows one request of the model may return: rows ``lo + i`` of the window
    [lo, hi) where ``ok[i]`` ((hi - lo,) bool)."""

    lo: int
    hi: int
    ok: np.ndarray

    def rows(self) -> np.ndarray:
        """(n_eligible,) catalogue rows, ascending (= oldest first: the catalogue is sorted by
        ``published_at``, then article id)."""
        return np.flatnonzero(self.ok) + self.lo


def eligible(
    model: TwoStageModel,
    user_id: str,
    *,
    now_s: float,
    user_features: Mapping[str, Any] | None,
    articles: ArticleFeatures,
) -> Eligible:
    """What ``model.recommend`` (no ``exclude``, ``category`` or ``pinned``) may return for this
    user at ``now_s`` (UTC seconds): ``articles.window`` over ``model.rules.max_age_hours`` and
    ``rules._eligible`` with the user's recent reads and training history blocked."""
    lo, hi = articles.window(now_s, model.rules.max_age_hours)
    blocked = [articles.index.get(a, -1) for a in recent_reads(user_features)]
    hist = model.history(user_id)
    if hist.size:
        blocked.extend(model._align(articles).article_of_item[hist].tolist())
    return Eligible(lo, hi, _eligible(articles, lo, hi, blocked, None))


def ranked_ids(articles: ArticleFeatures, rows: np.ndarray, score: np.ndarray, k: int) -> list[str]:
    """Article ids of the k best ``rows`` by ``score`` (both (n,)), higher first; ties go to the
    newer article (the later row)."""
    if rows.size == 0 or k <= 0:
        return []
    order = np.lexsort((-rows, -np.asarray(score, dtype=np.float64)))[:k]
    return [str(a) for a in articles.article_ids[rows[order]].tolist()]


def popularity_eligible(model: TwoStageModel, allowed: Eligible, articles: ArticleFeatures, *, k: int) -> list[str]:
    """Recency-weighted training popularity over the eligible rows (0 for articles not trained on)."""
    rows = allowed.rows()
    items = model._align(articles).item_of_article[rows]
    score = np.where(items >= 0, model.popularity[np.maximum(items, 0)], 0.0)
    return ranked_ids(articles, rows, score, k)


def als_eligible(
    model: TwoStageModel,
    user_id: str,
    allowed: Eligible,
    articles: ArticleFeatures,
    *,
    k: int,
    user_features: Mapping[str, Any] | None,
) -> list[str]:
    """ALS factor score x · y over the eligible trained articles; ``popularity_eligible`` for a
    user without factors."""
    x, _ = model.user_vector(user_id, user_features)
    if x is None:
        return popularity_eligible(model, allowed, articles, k=k)
    rows = allowed.rows()
    aligned = model._align(articles)
    rows = rows[aligned.known[rows]]
    return ranked_ids(articles, rows, aligned.factors[rows] @ x, k)


def _recommend_als(model: _Trained, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
    """ALS retrieval alone: top-k trained items by factor score, already-read removed; users
    without factors get the popularity list (so ALS is judged on ranking, not on reach)."""
    x, _ = model.user_vector(user_id, user_features)
    if x is None:
        return _recommend_popular(model, user_id, k=k, user_features=user_features)
    scores = model.item_factors @ x
    return _top_items(model, scores, user_id, k, user_features)


def _recommend_popular(model: _Trained, user_id: str, *, k: int, user_features: Mapping[str, Any] | None) -> list[str]:
    """Recency-weighted popularity at training end, already-read removed."""
    return _top_items(model, model.popularity.astype(np.float32, copy=True), user_id, k, user_features)


def _top_items(
    model: _Trained, scores: np.ndarray, user_id: str, k: int, user_features: Mapping[str, Any] | None
) -> list[str]:
    """The k best of ``scores`` (n_items,), best first, without the user's training history and
    recent reads."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[model.history(user_id)] = -np.inf
    for article in recent_reads(user_features):
        item = model.item_index.get(article)
        if item is not None:
            scores[item] = -np.inf
    top = _top_indices(scores, k)
    top = top[np.argsort(-scores[top], kind="stable")]
    return [str(model.item_ids[i]) for i in top]
