"""TwoStageModel.recommend's cached fast path against the straightforward one it replaced, and
ANN retrieval's recall against exact retrieval."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from collections.abc import Collection, Mapping
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pytest

from reco.model import (
    _SRC_BIT,
    RANKER_FEATURES,
    ArticleFeatures,
    LinearRanker,
    RecItem,
    RuleSettings,
    TwoStageModel,
    _now_seconds,
    _reason,
    _top_indices,
    _user_scalar,
    category_affinity,
    ranker_features,
    recent_reads,
)

NOW = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)


# The request as it was before the per-catalogue caches (whole-window scoring): the oracle.
def reference_recommend(
    model: TwoStageModel,
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
    rules = model.rules
    now_s = _now_seconds(now)
    aligned = model._align(articles)
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
    hist = model.history(user_id)
    if hist.size:
        blocked.extend(aligned.article_of_item[hist].tolist())
    for row in blocked:
        if lo <= row < hi:
            ok[row - lo] = False
    codes = articles.category_codes[window]
    if category is not None:
        ok &= codes == articles.category_code(category)
    n_slots = k - len(pinned)
    if not ok.any() or n_slots == 0:
        return model._place_pinned([], pinned, k)

    published = articles.published_s[window]
    age_h = (now_s - published) / 3600.0
    decay = np.exp2(-age_h / rules.half_life_hours)
    clicks = articles.clicks_24h[window]
    popular = np.where(ok, (clicks + rules.popularity_prior) * decay, -np.inf)
    x, _how = model.user_vector(user_id, user_features)
    # Category clicks when the store has them; else the categories of the reads we can see.
    affinity = category_affinity(user_features) or model.read_affinity(reads, articles)

    if x is None and not affinity:
        # Only the head can reach the top k, even after the per-category cap.
        head = _top_indices(popular, max(rules.n_popular, 4 * k))
        head = head[np.argsort(-popular[head], kind="stable")]
        ranked = ((int(i) + lo, float(popular[i]), "cold_start", int(codes[i])) for i in head)
        return model._place_pinned(model._diversify(ranked, articles, k, pinned), pinned, k)

    # Candidate generation: a bitmask of sources per window row.
    sources = np.zeros(hi - lo, dtype=np.int8)
    als = np.zeros(hi - lo, dtype=np.float32)
    if x is not None:
        als = aligned.factors[window] @ x
        retrievable = ok & aligned.known[window]
        sources[_top_indices(np.where(retrievable, als, -np.inf), rules.n_als)] |= _SRC_BIT["als"]
    sources[_top_indices(popular, rules.n_popular)] |= _SRC_BIT["popular"]
    fresh = np.where(ok, published, -np.inf)
    sources[newest_reference(fresh, rules.n_fresh)] |= _SRC_BIT["fresh"]
    top_cats = sorted(affinity, key=lambda c: (-affinity[c], c))[: rules.n_top_categories]
    if category is not None:
        top_cats = [category]
    for cat in top_cats:
        code = articles.category_code(cat)
        if code >= 0:
            in_cat = np.where(codes == code, fresh, -np.inf)
            sources[newest_reference(in_cat, rules.n_category_fresh)] |= _SRC_BIT["category_fresh"]
    cand = np.flatnonzero(sources)
    rows = cand + lo

    # Ranking: shared feature builder, logistic ranker (or the ALS + popularity fallback), decay.
    top_category = str(user_features.get("top_category") or "") if user_features else ""
    if not top_category and affinity:
        top_category = max(sorted(affinity), key=lambda c: affinity[c])
    cat_names = np.array(articles.categories, dtype=object)[codes[cand]]
    aff = np.array([affinity.get(c, 0.0) for c in cat_names], dtype=np.float64)
    feats = ranker_features(
        als_score=als[cand],
        has_factors=1.0 if x is not None else 0.0,
        item_known=aligned.known[rows],
        views_24h=articles.views_24h[rows],
        clicks_24h=clicks[cand],
        avg_read_time_s=articles.avg_read_time_s[rows],
        age_hours=age_h[cand],
        affinity=aff,
        is_top_category=(cat_names == top_category).astype(np.float64) if top_category else 0.0,
        clicks_7d=_user_scalar(user_features, "clicks_7d"),
        read_ratio_7d=_user_scalar(user_features, "read_ratio_7d"),
        avg_session_len_s=_user_scalar(user_features, "avg_session_len_s"),
    )
    score = model._score(feats) * decay[cand]
    order = np.argsort(-score, kind="stable")
    src = sources[cand]
    ranked = ((int(rows[i]), float(score[i]), _reason(int(src[i])), int(codes[cand[i]])) for i in order)
    return model._place_pinned(model._diversify(ranked, articles, k, pinned), pinned, k)


def newest_reference(published: np.ndarray, n: int) -> np.ndarray:
    """The n rows with the largest finite values, ties to the later row (rows are in
    (published_at, article_id) order, so this is "newest, then highest id")."""
    finite = np.flatnonzero(np.isfinite(published))
    return finite[np.lexsort((finite, published[finite]))][-n:] if n > 0 else finite[:0]


def world(
    n_articles: int,
    *,
    factors: int = 16,
    n_users: int = 50,
    seed: int = 0,
    ties: bool = False,
    rules: RuleSettings | None = None,
) -> tuple[TwoStageModel, ArticleFeatures]:
    """A random model over a catalogue published in the last 100 h (some expired, some in the
    future of early ``now``s). ``ties``: whole hours and few click values, so many articles
    share a publication time and a popularity (the cached orders' exact-fallback cases)."""
    rng = np.random.default_rng(seed)
    cats = [f"c{i}" for i in range(7)]
    hours = rng.integers(0, 100, n_articles).astype(float) if ties else rng.uniform(0.0, 100.0, n_articles)
    clicks = rng.integers(0, 3, n_articles) if ties else rng.integers(0, 500, n_articles)
    frame = pd.DataFrame(
        {
            "article_id": [f"a{i}" for i in range(n_articles)],
            "category": [cats[i % len(cats)] for i in range(n_articles)],
            "published_at": [NOW - dt.timedelta(hours=float(h)) for h in hours],
            "views_24h": rng.integers(0, 5000, n_articles),
            "clicks_24h": clicks,
            "avg_read_time_s": rng.random(n_articles) * 300,
        }
    )
    # The model knows 80% of the articles (the rest were published after training).
    n_items = int(n_articles * 0.8)
    history = [rng.choice(n_items, 15, replace=False).astype(np.int32) for _ in range(n_users)]
    nf = len(RANKER_FEATURES)
    model = TwoStageModel(
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=frame["article_id"].to_numpy(dtype=object)[:n_items],
        user_factors=(rng.standard_normal((n_users, factors)) * 0.3).astype(np.float32),
        item_factors=(rng.standard_normal((n_items, factors)) * 0.3).astype(np.float32),
        history_indptr=np.concatenate([[0], np.cumsum([len(h) for h in history])]),
        history_items=np.concatenate(history),
        popularity=rng.random(n_items).astype(np.float32),
        item_users=rng.integers(1, 50, n_items).astype(np.int32),
        regularization=0.05,
        alpha=2.0,
        fold_in_confidence=1.0,
        rules=rules or RuleSettings(),
        ranker=LinearRanker(tuple(RANKER_FEATURES), np.zeros(nf), np.ones(nf), rng.standard_normal(nf) * 0.5, -1.0),
    )
    return model, ArticleFeatures.from_frame(frame)


def requests(n_articles: int) -> list[dict[str, Any]]:
    feats = {
        "recent_reads": [f"a{i}" for i in range(0, n_articles, 37)],
        "category_clicks": json.dumps({"c1": 5, "c2": 3, "c4": 1}),
        "top_category": "c1",
        "clicks_7d": 8,
        "read_ratio_7d": 0.4,
        "avg_session_len_s": 300.0,
    }
    out: list[dict[str, Any]] = []
    for hours_later in (0.0, 3.5, 30.0, -20.0):
        now = NOW + dt.timedelta(hours=hours_later)
        for user in ("u0", "u1", "u7", "new1"):
            out.append({"user_id": user, "now": now, "user_features": feats})
            out.append({"user_id": user, "now": now, "user_features": None})
            out.append({"user_id": user, "now": now, "user_features": {"recent_reads": ["a3", "a5"]}, "category": "c3"})
        out.append(
            {
                "user_id": "u2",
                "now": now,
                "user_features": feats,
                "exclude": ["a10", "a11"],
                "pinned": {0: "a1", 4: "a2"},
            }
        )
        out.append({"user_id": "nobody", "now": now, "user_features": None, "category": "c2", "k": 25})
        out.append({"user_id": "nobody", "now": now, "user_features": {"category_clicks": {"c5": 2}}, "k": 40})
    return out


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("rules", [RuleSettings(), RuleSettings(popularity_prior=0.0, max_per_category=2, n_als=30)])
def test_cached_path_returns_what_whole_window_scoring_returns(ties: bool, rules: RuleSettings) -> None:
    model, articles = world(3000, ties=ties, rules=rules)
    seen_reasons: set[str] = set()
    for request in requests(len(articles)):
        user_id, k = request.pop("user_id"), request.pop("k", 10)
        fast = model.recommend(user_id, k=k, articles=articles, **request)
        slow = reference_recommend(model, user_id, k=k, articles=articles, **request)
        assert [(i.article_id, i.reason) for i in fast] == [(i.article_id, i.reason) for i in slow], (user_id, request)
        np.testing.assert_allclose([i.score for i in fast], [i.score for i in slow], rtol=1e-12)
        seen_reasons |= {i.reason for i in fast}
    # The comparison covered the personal, the fresh and the cold-start paths.
    assert {"als", "cold_start"} <= seen_reasons
    assert seen_reasons & {"fresh", "category_fresh", "popular"}


def test_ann_retrieval_recall_at_10_against_exact() -> None:
    """60k articles x 64 factors with low-rank structure (as ALS factors have): the HNSW top-10
    among eligible items agrees with the exact top-10 on >= 95% of items, and recommend uses it."""
    rng = np.random.default_rng(1)
    n_items, factors, rank = 60_000, 64, 12
    basis = rng.standard_normal((rank, factors)).astype(np.float32)
    item_factors = (rng.standard_normal((n_items, rank)).astype(np.float32) @ basis) * 0.1
    item_factors += rng.standard_normal((n_items, factors)).astype(np.float32) * 0.02
    users = (rng.standard_normal((100, rank)).astype(np.float32) @ basis) * 0.1
    model = TwoStageModel(
        user_ids=np.array([f"u{i}" for i in range(100)], dtype=object),
        item_ids=np.array([f"a{i}" for i in range(n_items)], dtype=object),
        user_factors=users,
        item_factors=item_factors,
        history_indptr=np.zeros(101, dtype=np.int64),
        history_items=np.empty(0, dtype=np.int32),
        popularity=np.ones(n_items, dtype=np.float32),
        item_users=np.ones(n_items, dtype=np.int32),
        regularization=0.05,
        alpha=2.0,
        fold_in_confidence=1.0,
        rules=RuleSettings(ann_min_items=50_000),
    )
    # A tenth of the items is not eligible (read, expired...): the search must skip them.
    eligible = np.flatnonzero(rng.random(n_items) > 0.1)
    mask = np.zeros(n_items, dtype=bool)
    mask[eligible] = True
    recalls = []
    for x in users:
        found = model._ann_top(x, mask, model.rules.n_als)
        assert found is not None and mask[found].all()
        exact = _top_indices(np.where(mask, item_factors @ x, -np.inf), 10)
        recalls.append(len(set(found[:10].tolist()) & set(exact.tolist())) / 10)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)

    frame = pd.DataFrame(
        {"article_id": model.item_ids, "category": "c", "published_at": [NOW - dt.timedelta(hours=1)] * n_items}
    )
    articles = ArticleFeatures.from_frame(frame)
    items = model.recommend("u3", k=10, now=NOW, user_features=None, articles=articles)
    assert isinstance(model._ann, faiss.IndexHNSWFlat) and len(items) == 10 and items[0].reason == "als"


def test_a_model_with_its_ann_index_pickles_and_still_serves_the_same() -> None:
    model, articles = world(600, rules=RuleSettings(ann_min_items=500))
    before = model.recommend("u1", k=10, now=NOW, user_features=None, articles=articles)
    assert isinstance(model._ann, faiss.IndexHNSWFlat)  # above the threshold: retrieval went through HNSW
    copy = pickle.loads(pickle.dumps(model))
    assert copy._ann is None
    after = copy.recommend(
        "u1", k=10, now=NOW, user_features=None, articles=ArticleFeatures.from_arrays(articles.to_arrays())
    )
    assert [i.article_id for i in after] == [i.article_id for i in before]
