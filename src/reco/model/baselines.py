"""The baselines offline evaluation scores the two-stage model against, on the same trained data:
ALS retrieval alone and recency-weighted popularity, already-read articles removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from reco.model.ranker import recent_reads
from reco.model.retrieval import _top_indices


class _Trained(Protocol):
    """What the baselines read of a trained model (``TwoStageModel``)."""

    item_ids: np.ndarray
    item_index: dict[str, int]
    item_factors: np.ndarray
    popularity: np.ndarray

    def user_vector(self, user_id: str, user_features: Mapping[str, Any] | None) -> tuple[np.ndarray | None, str]: ...

    def history(self, user_id: str) -> np.ndarray: ...


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
