"""ALS retrieval (``implicit``, its own threads, ``OPENBLAS_NUM_THREADS=1``) and the popularity baseline.

The interactions are summed per (user, article) into a (n_users, n_items) CSR. ALS is fitted in two
phases to keep the ranker honest at no extra cost: phase 1 runs most iterations on the days before
the last training day L; its factors score L's impressions for the ranker (the ALS score of a row is
then out-of-sample, as it is at serving time — an ALS fitted on L's clicks would "know" the labels
and the ranker would learn to trust it far too much); phase 2 continues from those factors for a
few iterations on the whole window, and that is the ALS that is served. Total iterations equal a
plain fit's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from reco.model import TwoStageModel
from reco.train.config import ConfidenceWeights, TrainConfig
from reco.train.data import confidence


@dataclass
class InteractionMatrix:
    """(n_users, n_items) CSR of summed confidences, with the id of each row and column."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray


def build_matrix(
    events: pd.DataFrame, weights: ConfidenceWeights, *, before: pd.Timestamp | None = None
) -> tuple[InteractionMatrix, sp.csr_matrix | None]:
    """The full-window matrix and, when ``before`` is given, the same-shape matrix of the events
    earlier than ``before`` (ALS phase 1). Users and items are those with a click or read."""
    conf = confidence(events, weights)
    positive = conf > 0
    pos = events.loc[positive]
    users, user_ids = pd.factorize(pos["user_id"], sort=True)
    items, item_ids = pd.factorize(pos["article_id"], sort=True)
    shape = (len(user_ids), len(item_ids))
    values = conf[positive].astype(np.float32)
    full = sp.csr_matrix((values, (users, items)), shape=shape, dtype=np.float32)
    full.sum_duplicates()
    partial = None
    if before is not None:
        early = (pos["ts"] < before).to_numpy()
        partial = sp.csr_matrix((values[early], (users[early], items[early])), shape=shape, dtype=np.float32)
        partial.sum_duplicates()
    return InteractionMatrix(full, np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object)), partial


def _als(config: TrainConfig, iterations: int) -> AlternatingLeastSquares:
    return AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=config.alpha,
        iterations=iterations,
        random_state=config.seed,
        num_threads=config.num_threads,
    )


def fit_als(
    full: sp.csr_matrix, partial: sp.csr_matrix | None, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None, float]:
    """(user_factors, item_factors) of the full window, phase-1 factors (or None) and fit seconds.

    With ``partial``: ``iterations - warm_iterations`` on it, snapshot, then ``warm_iterations``
    more on ``full`` starting from there (implicit keeps existing factors). Without: a plain fit.
    """
    started = time.perf_counter()
    if partial is None or partial.nnz == 0 or config.warm_iterations >= config.iterations:
        model = _als(config, config.iterations)
        model.fit(full, show_progress=False)
        return model.user_factors, model.item_factors, None, time.perf_counter() - started
    model = _als(config, config.iterations - config.warm_iterations)
    model.fit(partial, show_progress=False)
    phase1 = (model.user_factors.copy(), model.item_factors.copy())
    model.iterations = config.warm_iterations
    model.fit(full, show_progress=False)
    return model.user_factors, model.item_factors, phase1, time.perf_counter() - started


def recency_popularity(
    events: pd.DataFrame, conf: np.ndarray, item_ids: np.ndarray, end: pd.Timestamp, half_life_hours: float
) -> np.ndarray:
    """(n_items,) Σ confidence · 2^(-(end - ts) / half-life) over each item's interactions."""
    positive = conf > 0
    index = pd.Index(item_ids)
    items = index.get_indexer(events.loc[positive, "article_id"])
    age_h = (end - events.loc[positive, "ts"]).dt.total_seconds().to_numpy() / 3600.0
    weight = conf[positive] * np.exp2(-np.maximum(age_h, 0.0) / half_life_hours)
    return np.bincount(items, weights=weight, minlength=len(item_ids)).astype(np.float32)


def _sub_model(
    matrix: InteractionMatrix, factors: tuple[np.ndarray, np.ndarray], partial: sp.csr_matrix, config: TrainConfig
) -> TwoStageModel:
    """The phase-1 ALS as a TwoStageModel over the users/items that had data before day L, so
    ``user_vector`` (known factors or fold-in) behaves exactly as it will when serving."""
    user_rows = np.flatnonzero(np.diff(partial.indptr) > 0)
    item_cols = np.flatnonzero(np.bincount(partial.indices, minlength=partial.shape[1]) > 0)
    empty = np.zeros(len(user_rows) + 1, dtype=np.int64)
    return TwoStageModel(
        user_ids=matrix.user_ids[user_rows],
        item_ids=matrix.item_ids[item_cols],
        user_factors=factors[0][user_rows],
        item_factors=factors[1][item_cols],
        history_indptr=empty,
        history_items=np.empty(0, dtype=np.int32),
        popularity=np.zeros(len(item_cols), dtype=np.float32),
        item_users=np.zeros(len(item_cols), dtype=np.int32),
        regularization=config.regularization,
        alpha=config.alpha,
        fold_in_confidence=config.weights.click,
        rules=config.rules,
    )
