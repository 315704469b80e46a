"""Business rules around the ranker: ``RuleSettings`` (stored inside the model), the filters that
decide which of the window's articles a request may return, freshness decay, and the final list
(``RecItem``): at most ``max_per_category`` per category page, pinned items at fixed positions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reco.schemas import UNKNOWN_CATEGORY

if TYPE_CHECKING:
    from reco.model.articles import ArticleFeatures


@dataclass(frozen=True)
class RuleSettings:
    """Business rules and candidate budgets, stored inside the model (hours, counts)."""

    # The time windows, learned from the training log's click ages (``reco.train.windows``) unless set:
    # freshness decay half-life, eligibility (articles older than ``max_age_hours`` are never shown) and
    # what counts as fresh (the fresh / category-fresh candidates, the service's exploration pool).
    half_life_hours: float = 24.0
    max_age_hours: float = 72.0
    fresh_max_age_hours: float = 48.0
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


def _decay(age_hours: np.ndarray, half_life_hours: float) -> np.ndarray:
    """Freshness decay 2^(-age / half-life) (ages in hours): the factor on every score."""
    return np.exp2(-age_hours / half_life_hours)


def _eligible(articles: ArticleFeatures, lo: int, hi: int, blocked: Sequence[int], cat_code: int | None) -> np.ndarray:
    """(hi - lo,) bool over the window [lo, hi) (``ArticleFeatures.window``: published, not
    expired): False at the ``blocked`` catalogue rows (read, excluded, pinned elsewhere; rows
    outside the window or -1 are ignored) and, with ``cat_code``, outside that category."""
    ok = np.ones(hi - lo, dtype=bool)
    if blocked:
        rows_b = np.asarray(blocked, dtype=np.int64)
        ok[rows_b[(rows_b >= lo) & (rows_b < hi)] - lo] = False
    if cat_code is not None:
        ok &= articles.category_codes[lo:hi] == cat_code
    return ok


def _uncapped_unknown(
    ranked: Iterable[tuple[int, float, str, int]], unknown: int
) -> Iterator[tuple[int, float, str, int]]:
    """``ranked`` with the unknown category's code replaced by a fresh code per article (-2, -3, …),
    so no two of them ever share a category count."""
    for n, (row, score, reason, code) in enumerate(ranked):
        yield (row, score, reason, -2 - n if code == unknown else code)


def _diversify(
    ranked: Iterable[tuple[int, float, str, int]],
    articles: ArticleFeatures,
    k: int,
    pinned: Mapping[int, str],
    rules: RuleSettings,
) -> list[RecItem]:
    """Best-first fill of the k - len(pinned) free slots with at most ``max_per_category``
    articles of one category per page of ``diversity_page`` positions (pinned items count on
    their page). An article skipped for its category is reconsidered first on the next page;
    when nothing left fits, the best skipped one takes the slot rather than leaving it empty.
    Articles of ``UNKNOWN_CATEGORY`` (derived from a click log without metadata) are not capped:
    nothing says they are alike.

    ``ranked``: (catalogue row, score, reason, category code), best first."""
    cap, page = rules.max_per_category, max(rules.diversity_page, 1)
    if cap > 0 and articles.category_code(UNKNOWN_CATEGORY) >= 0:
        ranked = _uncapped_unknown(ranked, articles.category_code(UNKNOWN_CATEGORY))
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


def _place_pinned(items: list[RecItem], pinned: Mapping[int, str], k: int) -> list[RecItem]:
    """``items`` with the pinned articles inserted at their positions, cut to k."""
    if not pinned:
        return items[:k]
    out = list(items)
    top = max((i.score for i in items), default=1.0)
    for position in sorted(pinned):
        out.insert(max(0, min(position, len(out))), RecItem(pinned[position], top, "pinned"))
    return out[:k]
