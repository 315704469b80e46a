"""Epsilon-greedy exploration on the last slots of a list, with logged propensities.

Why: a recommender trained on its own logs never learns about articles it never shows. Fresh,
under-exposed articles get a chance through a few exploration slots, and each shown item carries
the probability with which the serving policy showed it there, so the logs support off-policy
evaluation (inverse propensity scoring) of any future model.

Propensity, as logged with every item: the probability that the serving policy puts this
article at this position, given the model's ranked list for the request and the draws of the
earlier exploration slots of the same list.

- positions that are not exploration slots (and pinned items): 1.0, the model's list is
  deterministic there;
- an exploration slot with an empty eligible pool: 1.0 (the model's item, no coin is thrown);
- an exploration slot kept for the model's item: ``1 - epsilon``;
- an exploration slot given to an explored article: ``epsilon / n`` where ``n`` is the number of
  eligible pool articles at that draw (pool minus articles already in the list, read by the
  user, excluded by the request, or outside the requested category).

The pool itself (the least-viewed fresh articles) is built by ``services.recommend.features``;
how old a "fresh" article may be is the model's (``pool_max_age_hours``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The pool's age limit when neither the service's setting nor the model says (hours).
DEFAULT_POOL_MAX_AGE_HOURS = 48.0


def pool_max_age_hours(model: Any | None, configured: float | None) -> float:
    """How old an article may be and still enter the exploration pool (hours): the service's
    setting when one is set (``RECO_EXPLORATION_MAX_AGE_HOURS``), else the fresh window the model
    learned from its training log (``RuleSettings.fresh_max_age_hours``: hours on a news site,
    months on a blog), else ``DEFAULT_POOL_MAX_AGE_HOURS``."""
    if configured is not None:
        return configured
    learned = getattr(getattr(model, "rules", None), "fresh_max_age_hours", None)
    return float(learned) if learned else DEFAULT_POOL_MAX_AGE_HOURS


@dataclass(frozen=True, slots=True)
class Shown:
    """An item as shown: the model's ``score`` (0.0 for an explored item), why, and its propensity."""

    article_id: str
    score: float
    reason: str
    propensity: float


def explore(
    ranked: Sequence[Shown],
    pool: Sequence[str],
    *,
    epsilon: float,
    slots: int,
    rng: random.Random,
    allowed: Callable[[str], bool],
) -> tuple[list[Shown], int]:
    """Apply epsilon-greedy to the last ``slots`` positions of ``ranked``.

    ``ranked``: the model's list, best first, every propensity 1.0. ``pool``: exploration candidates.
    ``allowed(article_id)``: False for articles the request must not show (read, excluded,
    other category). Returns the list as shown and the number of explored slots.
    """
    shown = list(ranked)
    if epsilon <= 0.0 or slots <= 0 or not shown or not pool:
        return shown, 0
    in_list = {item.article_id for item in shown}
    explored = 0
    for position in range(max(0, len(shown) - slots), len(shown)):
        item = shown[position]
        if item.reason == "pinned":
            continue  # editorial placement is never explored away
        coin = rng.random()
        if coin < epsilon:
            eligible = [a for a in pool if a not in in_list and allowed(a)]
            if not eligible:
                continue
            choice = eligible[rng.randrange(len(eligible))]
            shown[position] = Shown(choice, 0.0, "explore", epsilon / len(eligible))
            in_list.add(choice)
            explored += 1
        elif any(a not in in_list and allowed(a) for a in pool):
            # Only whether the pool is empty matters here (usually decided by its first article),
            # so the common, unexplored case does not scan the whole pool.
            shown[position] = Shown(item.article_id, item.score, item.reason, 1.0 - epsilon)
    return shown, explored
