"""The serving rules a log supports, chosen on data: the per-page category cap and the freshness decay.

A fixed "at most 5 of a category per 10" and a fixed decay on top of the ranker were measured to cost the news
model most of its lead: users with one or two favourite categories click mostly in them (the cap pushes those
articles out), and a ranker trained on eligible candidates already learns how clicks fall with age (the decay
counts age twice). Which rules help depends on the site, so they are chosen per training run:

* the validation day is the ranker's day L (the last training day); the model scored there is the one the
  ranker's features came from — ALS phase 1 (days before L), its history and popularity as of L, the fitted
  ranker — served at each session of L exactly as ``reco.evaluate`` serves the test day;
* every combination of ``CAPS`` and decay (on at the learned half-life, or off) is scored by NDCG@10;
* the best wins; a candidate must beat the current rules by ``MIN_GAIN`` (relative) to replace them, so noise
  does not flip the rules from one day to the next. The ranker saw L's rows, so its scores there are in-sample:
  the rules, not the ranker, are what is chosen, and all candidates share that bias.

The scores and the choice are in the run summary (``train.rules_choice``) and MLflow; ``RECO_DIVERSITY_CAP`` /
``RECO_DECAY`` (settings) pin them and skip the search.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from reco.errors import RecoError
from reco.model import LinearRanker, TwoStageModel
from reco.settings import Settings

log = logging.getLogger(__name__)

CAPS: tuple[int, ...] = (0, 3, 5)  # 0: no cap
NO_DECAY_HOURS = 1e6  # a half-life of ~114 years: no decay, still a finite number in the model's JSON
MIN_GAIN = 0.01
MIN_REQUESTS = 30  # fewer validation requests: keep the current rules (the scores would be noise)


@dataclass
class RulesChoice:
    chosen: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    how: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "scores": self.scores, "how": self.how, "seconds": round(self.seconds, 2)}

    def tags(self) -> dict[str, str]:
        return {"rules.max_per_category": str(self.chosen["max_per_category"]), "rules.decay": str(self.chosen["decay"]),
                "rules.how": self.how}  # fmt: skip


def _label(cap: int, decay: bool) -> str:
    return f"cap {cap or 'off'}, decay {'on' if decay else 'off'}"


def validation_model(
    sub: TwoStageModel,
    partial: sp.csr_matrix,
    matrix_user_ids: np.ndarray,
    matrix_item_ids: np.ndarray,
    popularity: np.ndarray,
    ranker: LinearRanker | None,
) -> TwoStageModel:
    """``sub`` (phase-1 ALS over the users/items seen before L) with its history before L, popularity as of L
    over its items (``popularity`` is over ``matrix_item_ids``) and the ranker: the model as it stood at L."""
    user_rows = pd.Index(matrix_user_ids).get_indexer(sub.user_ids)
    item_cols = pd.Index(matrix_item_ids).get_indexer(sub.item_ids)
    history = partial[user_rows][:, item_cols].tocsr()
    return dataclasses.replace(
        sub,
        history_indptr=history.indptr.astype(np.int64),
        history_items=history.indices.astype(np.int32),
        popularity=popularity[item_cols].astype(np.float32),
        item_users=np.diff(history.tocsc().indptr).astype(np.int32),
        ranker=ranker,
    )


def choose_rules(settings: Settings, model: TwoStageModel, day: dt.date) -> RulesChoice:
    """The cap and decay of ``model.rules`` that serve ``day``'s sessions best (see the module docstring)."""
    from reco.evaluate import load_test_day, request_lists
    from reco.metrics import ranking_metrics

    started = time.perf_counter()
    current = {"max_per_category": model.rules.max_per_category, "decay": True}
    pinned_cap, pinned_decay = settings.diversity_cap, settings.decay
    if pinned_cap is not None and pinned_decay is not None:
        chosen = {"max_per_category": pinned_cap, "decay": pinned_decay}
        return RulesChoice(chosen, how="pinned by settings (RECO_DIVERSITY_CAP, RECO_DECAY)")
    try:
        test = load_test_day(settings, day, max_age_hours=model.rules.max_age_hours)
    except RecoError as error:
        return RulesChoice(current, how=f"kept: no validation day ({error})")
    if len(test.requests) < MIN_REQUESTS:
        return RulesChoice(current, how=f"kept: {len(test.requests)} validation requests on {day} (< {MIN_REQUESTS})")
    truth = {r.key: r.truth for r in test.requests}
    caps = (pinned_cap,) if pinned_cap is not None else CAPS
    decays = (pinned_decay,) if pinned_decay is not None else (True, False)
    scores: dict[str, float] = {}
    best: tuple[float, dict[str, Any]] | None = None
    base_score = None
    for cap in caps:
        for decay in decays:
            rules = dataclasses.replace(
                model.rules,
                max_per_category=cap,
                half_life_hours=model.rules.half_life_hours if decay else NO_DECAY_HOURS,
            )
            candidate = dataclasses.replace(model, rules=rules)
            lists = request_lists(candidate, test, k=10)
            score = float(ranking_metrics(lists, truth, catalogue_size=1, item_users={}, n_train_users=1)["ndcg@10"])
            scores[_label(cap, decay)] = round(score, 4)
            if cap == current["max_per_category"] and decay:
                base_score = score
            if best is None or score > best[0]:
                best = (score, {"max_per_category": cap, "decay": decay})
    assert best is not None
    if base_score is not None and best[0] < base_score * (1.0 + MIN_GAIN):
        chosen, how = current, f"kept: no candidate beats the current rules by {MIN_GAIN:.0%} on {day}"
    else:
        chosen, how = best[1], f"best NDCG@10 on {day} ({len(test.requests)} sessions)"
    return RulesChoice(chosen, scores, how, time.perf_counter() - started)


def apply(rules: Any, choice: RulesChoice) -> Any:
    """``rules`` with the chosen cap and decay."""
    return dataclasses.replace(
        rules,
        max_per_category=int(choice.chosen["max_per_category"]),
        half_life_hours=rules.half_life_hours if choice.chosen["decay"] else NO_DECAY_HOURS,
    )
