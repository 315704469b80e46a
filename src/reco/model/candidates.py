"""Candidate sources besides ALS retrieval — popular (decayed clicks), newest, and newest in the
user's favourite categories — and how the lists merge into one set with a reason per article.

The lists come from the per-catalogue orders of ``_Aligned`` (a few hundred rows touched); where
such an order cannot decide (equal values at the cut), the whole window decides: the candidate
set, hence the answer, is the same either way. Indices are window-relative: row - lo for the
window [lo, hi) of ``ArticleFeatures.window``; ``ok`` (hi - lo,) bool marks the eligible rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import numpy as np

from reco.model.articles import ArticleFeatures, _Aligned
from reco.model.retrieval import _top_indices
from reco.model.rules import RuleSettings, _decay

# Candidate sources, by priority when an article comes from several (the first one is its reason).
SOURCES: tuple[str, ...] = ("als", "category_fresh", "fresh", "popular")
_SRC_BIT = {name: 1 << i for i, name in enumerate(SOURCES)}


def _reason(bits: int) -> str:
    for name in SOURCES:
        if bits & _SRC_BIT[name]:
            return name
    return "popular"


# _reason for every source bitmask (src is a small int8 bitmask).
_REASONS: tuple[str, ...] = tuple(_reason(b) for b in range(1 << len(SOURCES)))


def _window_popular(
    articles: ArticleFeatures, ok: np.ndarray, lo: int, hi: int, now_s: float, rules: RuleSettings
) -> np.ndarray:
    """(hi - lo,) cold-start popularity (clicks_24h + prior) · decay at ``now_s`` of every window
    row, -inf where not eligible: the whole-window scoring for when a cached order cannot decide."""
    window = slice(lo, hi)
    published = articles.published_s[window]
    decay = _decay((now_s - published) / 3600.0, rules.half_life_hours)
    return np.where(ok, (articles.clicks_24h[window] + rules.popularity_prior) * decay, -np.inf)


def _popular_head(
    aligned: _Aligned,
    articles: ArticleFeatures,
    ok: np.ndarray,
    lo: int,
    hi: int,
    now_s: float,
    n: int,
    cat_code: int | None,
    rules: RuleSettings,
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
    elif parts:
        got = np.concatenate(parts)[:want]
    else:
        got = np.empty(0, dtype=np.int64)
    decay = _decay((now_s - articles.published_s[got]) / 3600.0, rules.half_life_hours)
    values = (articles.clicks_24h[got] + rules.popularity_prior) * decay
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


def _cold_start(
    aligned: _Aligned,
    articles: ArticleFeatures,
    ok: np.ndarray,
    lo: int,
    hi: int,
    now_s: float,
    k: int,
    cat_code: int | None,
    rules: RuleSettings,
) -> Iterable[tuple[int, float, str, int]]:
    """For a reader with neither factors nor category history: the popular head as (catalogue
    row, score, "cold_start", category code), best first, the stream the diversity fill takes."""
    # Only the head can reach the top k, even after the per-category cap.
    n_head = max(rules.n_popular, 4 * k)
    fast = _popular_head(aligned, articles, ok, lo, hi, now_s, n_head, cat_code, rules, distinct=True)
    if fast is not None:
        head, values = fast
    else:
        popular = _window_popular(articles, ok, lo, hi, now_s, rules)
        head = _top_indices(popular, n_head)
        head = head[np.argsort(-popular[head], kind="stable")]
        values = popular[head]
    head_rows = head + lo
    return zip(
        head_rows.tolist(),
        values.tolist(),
        itertools.repeat("cold_start"),
        articles.category_codes[head_rows].tolist(),
    )


def _fresh_and_popular(
    aligned: _Aligned,
    articles: ArticleFeatures,
    ok: np.ndarray,
    lo: int,
    hi: int,
    now_s: float,
    rules: RuleSettings,
    affinity: Mapping[str, float],
    category: str | None,
    cat_code: int | None,
) -> list[tuple[np.ndarray, int]]:
    """The candidate lists besides ALS as (window-relative indices, source bit): popular, newest,
    and newest in each of the user's top categories by ``affinity`` (the requested ``category``
    instead, on a section page). A list holds no index twice; none is sized by the window."""
    fast = _popular_head(aligned, articles, ok, lo, hi, now_s, rules.n_popular, cat_code, rules, distinct=False)
    if fast is not None:
        popular = fast[0]
    else:
        popular = _top_indices(_window_popular(articles, ok, lo, hi, now_s, rules), rules.n_popular)
    # The fresh sources draw from the rows published within the fresh window only (getattr: a
    # RuleSettings unpickled from before the field existed has no attribute).
    fresh_h = getattr(rules, "fresh_max_age_hours", rules.max_age_hours)
    off = max(0, int(np.searchsorted(articles.published_s[lo:hi], now_s - fresh_h * 3600.0, side="left")))
    fresh_ok = ok[off:]
    newest = _newest(fresh_ok, None, lo + off, hi, rules.n_fresh) + off
    picked = [(popular, _SRC_BIT["popular"]), (newest, _SRC_BIT["fresh"])]
    top_cats = sorted(affinity, key=lambda c: (-affinity[c], c))[: rules.n_top_categories]
    if category is not None:
        top_cats = [category]
    for cat in top_cats:
        code = articles.category_code(cat)
        if code >= 0:
            newest = _newest(fresh_ok, aligned.cat_rows[code], lo + off, hi, rules.n_category_fresh) + off
            picked.append((newest, _SRC_BIT["category_fresh"]))
    return picked


def _merge(picked: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """One candidate set from the source lists: (window-relative indices ascending, int8 bitmask
    of the sources that proposed each)."""
    # One stable sort, then OR the bits of equal indices.
    all_idx = np.concatenate([idx for idx, _ in picked])
    all_bits = np.repeat(np.array([bit for _, bit in picked], dtype=np.int8), [idx.size for idx, _ in picked])
    by_idx = np.argsort(all_idx, kind="stable")
    all_idx, all_bits = all_idx[by_idx], all_bits[by_idx]
    firsts = np.flatnonzero(np.concatenate(([True], all_idx[1:] != all_idx[:-1]))) if all_idx.size else by_idx
    cand = all_idx[firsts]
    src = np.bitwise_or.reduceat(all_bits, firsts) if firsts.size else all_bits
    return cand, src


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
