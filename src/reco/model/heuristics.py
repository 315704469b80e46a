"""One-line ranking rules a learned recommender has to beat, over the rows a request may return
(``reco.model.baselines.Eligible``: the served model's eligibility). Each takes the catalogue
(sorted by ``published_at``, then article id, so a later row is a newer article) and returns
article ids, best first.

* ``newest``: newest first.
* ``newest_top_category``: newest of the user's top category (user_stats ``top_category``), then
  newest overall to fill.
* ``fresh_popular``: articles published in the last ``fresh_hours`` (48 h) ranked by yesterday's
  clicks (article_stats ``clicks_24h``), ties newest first; older eligible ones follow, by the same key.
* ``trending_top_category``: the user's top category first, each part ranked by today's clicks so
  far (``clicks_today``, ``reco.intraday``) + 1 times ``2^(-age / 3 h)``: what is being read now in
  what the user reads. The 3 h half-life has the best mean NDCG@10 of 1.5, 2, 3, 4, 6, 12 and 24 h
  over the demo world's three test days (0.284; 6 h: 0.281, 24 h: 0.262), i.e. it is tuned on the
  data it is judged on: the model is held to the strongest rule found, not to a strawman.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from reco.model.baselines import Eligible, ranked_ids

if TYPE_CHECKING:
    from reco.model.articles import ArticleFeatures

FRESH_HOURS = 48.0
TRENDING_HALF_LIFE_HOURS = 3.0


def _ids(articles: ArticleFeatures, rows: np.ndarray) -> list[str]:
    return [str(a) for a in articles.article_ids[rows].tolist()]


def newest(articles: ArticleFeatures, allowed: Eligible, *, k: int) -> list[str]:
    """The k newest eligible articles."""
    return _ids(articles, allowed.rows()[::-1][:k])


def newest_top_category(
    articles: ArticleFeatures, allowed: Eligible, *, k: int, user_features: Mapping[str, Any] | None
) -> list[str]:
    """The newest eligible articles of the user's ``top_category``, then the newest of the rest."""
    rows = allowed.rows()[::-1]
    top = (user_features or {}).get("top_category")
    code = articles.category_code(str(top)) if isinstance(top, str) and top else -1
    if code < 0:
        return _ids(articles, rows[:k])
    mine = articles.category_codes[rows] == code
    return _ids(articles, np.concatenate([rows[mine], rows[~mine]])[:k])


def fresh_popular(
    articles: ArticleFeatures, allowed: Eligible, *, k: int, now_s: float, fresh_hours: float = FRESH_HOURS
) -> list[str]:
    """Eligible articles published in (now - fresh_hours, now] by ``clicks_24h``, ties newest
    first; the older eligible ones after them, by the same key."""
    rows = allowed.rows()
    fresh = articles.published_s[rows] > now_s - fresh_hours * 3600.0
    clicks = articles.clicks_24h[rows].astype(np.float64)
    # Fresh ones first whatever their clicks: the score puts every fresh article above every older one.
    score = np.where(fresh, clicks + float(clicks.max(initial=0.0)) + 1.0, clicks)
    return ranked_ids(articles, rows, score, k)


def trending_top_category(
    articles: ArticleFeatures,
    allowed: Eligible,
    *,
    k: int,
    now_s: float,
    user_features: Mapping[str, Any] | None,
    half_life_hours: float = TRENDING_HALF_LIFE_HOURS,
) -> list[str]:
    """Eligible articles of the user's ``top_category`` by (clicks_today + 1) · 2^(-age / half-life),
    then the others by the same key; without a top category, all by that key."""
    rows = allowed.rows()
    age_h = np.maximum(now_s - articles.published_s[rows], 0.0) / 3600.0
    score = (articles.clicks_today[rows].astype(np.float64) + 1.0) * np.exp2(-age_h / half_life_hours)
    top = (user_features or {}).get("top_category")
    code = articles.category_code(str(top)) if isinstance(top, str) and top else -1
    if code >= 0:
        # Every article of the top category above every other one (scores are in (0, clicks + 1]).
        score = np.where(articles.category_codes[rows] == code, score + float(score.max(initial=0.0)) + 1.0, score)
    return ranked_ids(articles, rows, score, k)
