"""Independent oracles for the served ranking, written from the documented rules alone.

Each oracle recomputes what ``TwoStageModel.recommend`` must return on small hand-built cases
without calling the model's own helpers:

- **ranker score**: ``p = sigmoid(((x - mean) / scale) · coef + intercept)`` (``LinearRanker``)
  over the feature rows of ``ranker_features`` (the builder training shares), times the freshness
  decay ``0.5 ** (age_hours / half_life_hours)``; best first.
- **diversity fill**: at most ``max_per_category`` articles of one category in each page of
  ``diversity_page`` positions (0: no cap), pinned items counting on their page; otherwise best
  first, and when nothing left fits, the best remaining article rather than an empty slot.
- **pinned placement**: a pinned article sits at its 0-based position whatever the model thinks
  (editorial override, not filtered), and nowhere else in the list.

Only public names of ``reco.model`` are used; models are built through the constructor.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reco.model import (
    RANKER_FEATURES,
    ArticleFeatures,
    LinearRanker,
    RecItem,
    RuleSettings,
    TwoStageModel,
    ranker_features,
)

NOW = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
USER = "ann"


# -- a hand-built world ----------------------------------------------------------------------


@dataclass
class Article:
    article_id: str
    category: str
    age_hours: float
    views: int = 100
    clicks: int = 10
    read_s: float = 30.0
    factors: tuple[float, ...] | None = None  # None: published after training (no ALS factors)
    views_today: int = 0
    clicks_today: int = 0


@dataclass
class Case:
    articles: list[Article]
    user_factors: tuple[float, ...]
    ranker: LinearRanker
    rules: RuleSettings
    user_features: dict[str, Any] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Article]:
        return {a.article_id: a for a in self.articles}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "article_id": [a.article_id for a in self.articles],
                "category": [a.category for a in self.articles],
                "published_at": [NOW - dt.timedelta(hours=a.age_hours) for a in self.articles],
                "views_24h": [a.views for a in self.articles],
                "clicks_24h": [a.clicks for a in self.articles],
                "avg_read_time_s": [a.read_s for a in self.articles],
            }
        )

    def model(self) -> TwoStageModel:
        """``USER`` is the one trained user, with no training history; the articles with factors
        are the trained items."""
        known = [a for a in self.articles if a.factors is not None]
        return TwoStageModel(
            user_ids=np.array([USER], dtype=object),
            item_ids=np.array([a.article_id for a in known], dtype=object),
            user_factors=np.array([self.user_factors], dtype=np.float32),
            item_factors=np.array([a.factors for a in known], dtype=np.float32).reshape(
                len(known), len(self.user_factors)
            ),
            history_indptr=np.array([0, 0]),
            history_items=np.empty(0, dtype=np.int32),
            popularity=np.ones(len(known), dtype=np.float32),
            item_users=np.ones(len(known), dtype=np.int32),
            regularization=0.1,
            alpha=2.0,
            fold_in_confidence=1.0,
            rules=self.rules,
            ranker=self.ranker,
        )

    def recommend(self, k: int, **kwargs: Any) -> list[RecItem]:
        articles = ArticleFeatures.from_frame(self.frame())
        today = [self.by_id[str(a)] for a in articles.article_ids]
        articles = articles.with_today(
            np.array([a.views_today for a in today], dtype=np.float32),
            np.array([a.clicks_today for a in today], dtype=np.float32),
        )
        return self.model().recommend(USER, k=k, now=NOW, user_features=self.user_features, articles=articles, **kwargs)


# -- the oracles -----------------------------------------------------------------------------


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def ranker_probability(ranker: LinearRanker, row: Mapping[str, float]) -> float:
    """The documented logistic ranker on one feature row (by name), as a plain sum."""
    z = ranker.intercept
    for j, name in enumerate(ranker.feature_names):
        z += (row[name] - ranker.mean[j]) / ranker.scale[j] * ranker.coef[j]
    return sigmoid(z)


def affinity_of(user_features: Mapping[str, Any]) -> dict[str, float]:
    """Each category's share of the user's category clicks."""
    clicks = json.loads(user_features.get("category_clicks") or "{}")
    total = sum(clicks.values())
    return {c: n / total for c, n in clicks.items()} if total else {}


def oracle_scores(case: Case, eligible: Sequence[str]) -> dict[str, float]:
    """Score of each eligible article: ranker probability × freshness decay."""
    affinity = affinity_of(case.user_features)
    top = case.user_features.get("top_category", "")
    x = np.asarray(case.user_factors, dtype=np.float64)
    scores = {}
    for article_id in eligible:
        a = case.by_id[article_id]
        als = float(np.dot(x, np.asarray(a.factors, dtype=np.float64))) if a.factors is not None else 0.0
        (row,) = ranker_features(
            als_score=[als],
            has_factors=1.0,
            item_known=[1.0 if a.factors is not None else 0.0],
            views_24h=[a.views],
            clicks_24h=[a.clicks],
            avg_read_time_s=[a.read_s],
            age_hours=[a.age_hours],
            affinity=[affinity.get(a.category, 0.0)],
            is_top_category=[1.0 if a.category == top else 0.0],
            clicks_7d=case.user_features.get("clicks_7d", 0),
            read_ratio_7d=case.user_features.get("read_ratio_7d", 0.0),
            avg_session_len_s=case.user_features.get("avg_session_len_s", 0.0),
            views_today=[a.views_today],
            clicks_today=[a.clicks_today],
        )
        p = ranker_probability(case.ranker, dict(zip(RANKER_FEATURES, row.tolist(), strict=True)))
        scores[article_id] = p * 0.5 ** (a.age_hours / case.rules.half_life_hours)
    return scores


def oracle_fill(
    ranked: Sequence[str], category: Mapping[str, str], k: int, rules: RuleSettings, pinned: Mapping[int, str]
) -> list[str]:
    """The list of k: pinned articles at their positions; each free slot takes the best remaining
    article whose category is under the cap on that slot's page, else the best remaining one."""
    cap, page = rules.max_per_category, rules.diversity_page
    counts = Counter((pos // page, category[a]) for pos, a in pinned.items() if a in category)
    left = list(ranked)
    out: list[str] = []
    for slot in range(k):
        if slot in pinned:
            out.append(pinned[slot])
            continue
        fits = [a for a in left if cap <= 0 or counts[(slot // page, category[a])] < cap]
        pick = fits[0] if fits else left[0]
        left.remove(pick)
        counts[(slot // page, category[pick])] += 1
        out.append(pick)
    return out


def oracle_recommend(
    case: Case, k: int, *, pinned: Mapping[int, str] | None = None
) -> tuple[list[str], dict[str, float]]:
    """(article ids in list order, oracle score of each unpinned one) for ``USER``."""
    pinned = dict(pinned or {})
    reads = set(case.user_features.get("recent_reads", []))
    eligible = [
        a.article_id
        for a in case.articles
        if 0.0 <= a.age_hours <= case.rules.max_age_hours
        and a.article_id not in reads
        and a.article_id not in pinned.values()
    ]
    scores = oracle_scores(case, eligible)
    ranked = sorted(eligible, key=lambda a: -scores[a])
    assert len(ranked) >= k - len(pinned), "the cases fill every slot"
    category = {a.article_id: a.category for a in case.articles}
    return oracle_fill(ranked, category, k, case.rules, pinned), scores


# -- the ranker ------------------------------------------------------------------------------


def test_linear_ranker_is_a_logistic_regression_over_standardised_features() -> None:
    rng = np.random.default_rng(3)
    n = len(RANKER_FEATURES)
    x = rng.standard_normal((7, n)) * 3
    ranker = LinearRanker(
        tuple(RANKER_FEATURES), rng.standard_normal(n), rng.uniform(0.5, 2.0, n), rng.standard_normal(n), -0.7
    )
    expected = [ranker_probability(ranker, dict(zip(RANKER_FEATURES, row, strict=True))) for row in x.tolist()]
    np.testing.assert_allclose(ranker.predict(x), expected, rtol=1e-12)
    # A ranker trained on fewer features reads its own columns, by name.
    names = ("log_age_hours", "als_score", "category_affinity")
    few = LinearRanker(names, np.array([1.0, 0.0, 0.2]), np.array([2.0, 0.5, 1.0]), np.array([-1.0, 2.0, 0.5]), 0.3)
    expected = [ranker_probability(few, dict(zip(RANKER_FEATURES, row, strict=True))) for row in x.tolist()]
    np.testing.assert_allclose(few.predict(x), expected, rtol=1e-12)


def test_recommend_scores_by_the_ranker_times_the_freshness_decay() -> None:
    ranker = LinearRanker(
        tuple(RANKER_FEATURES),
        mean=np.linspace(-0.5, 0.5, len(RANKER_FEATURES)),
        scale=np.linspace(0.5, 2.0, len(RANKER_FEATURES)),
        coef=np.array([1.5, 0.2, 0.4, 0.3, 2.0, 0.1, -0.8, -0.3, 1.2, 0.6, 0.1, -0.2, 0.05, 0.3, 0.0, 0.4, 0.9, 1.5]),
        intercept=-1.0,
    )
    case = Case(
        articles=[
            Article("s1", "sports", 2.0, views=900, clicks=90, read_s=45.0, factors=(1.0, 0.1)),
            Article("s2", "sports", 30.0, views=400, clicks=80, read_s=20.0, factors=(0.8, 0.3)),
            Article(
                "t1",
                "tech",
                5.0,
                views=1200,
                clicks=30,
                read_s=120.0,
                factors=(0.1, 0.9),
                views_today=50,
                clicks_today=1,
            ),
            Article("t2", "tech", 50.0, views=50, clicks=20, read_s=300.0, factors=(-0.2, 1.1)),
            # New since training, so nothing in the daily snapshot; today's counts carry it.
            Article("n1", "news", 1.0, views=0, clicks=0, read_s=0.0, views_today=400, clicks_today=60),
            Article("n2", "news", 12.0, views=3000, clicks=150, read_s=60.0, factors=(0.4, 0.4)),
            Article("old", "news", 80.0, views=5000, clicks=900, factors=(1.0, 1.0)),  # older than 72 h
        ],
        user_factors=(0.9, -0.2),
        ranker=ranker,
        rules=RuleSettings(max_per_category=0, half_life_hours=24.0),
        user_features={
            "category_clicks": json.dumps({"sports": 6, "news": 2}),
            "top_category": "sports",
            "clicks_7d": 8,
            "read_ratio_7d": 0.4,
            "avg_session_len_s": 300.0,
        },
    )
    expected, scores = oracle_recommend(case, k=6)
    items = case.recommend(k=6)
    assert [i.article_id for i in items] == expected
    assert [i.score for i in items] == pytest.approx([scores[a] for a in expected], rel=1e-5)
    assert "old" not in expected  # expired: not a candidate at all


# -- the diversity fill and pinned placement -------------------------------------------------


def by_views(*spec: tuple[str, str, int]) -> Case:
    """Articles of one age ranked by views alone (the ranker weighs only ``log_views_24h``)."""
    names = ("log_views_24h",)
    ranker = LinearRanker(names, np.zeros(1), np.ones(1), np.ones(1), 0.0)
    return Case(
        articles=[Article(a, cat, 3.0, views=views, factors=(1.0,)) for a, cat, views in spec],
        user_factors=(1.0,),
        ranker=ranker,
        rules=RuleSettings(max_per_category=2, diversity_page=4),
    )


RANKED = (
    ("s1", "sports", 900), ("s2", "sports", 800), ("s3", "sports", 700), ("t1", "tech", 600), ("s4", "sports", 500),
    ("t2", "tech", 400), ("n1", "news", 300), ("t3", "tech", 200), ("n2", "news", 100),
)  # fmt: skip


def ids(items: list[RecItem]) -> list[str]:
    return [i.article_id for i in items]


def test_category_cap_per_page_worked_by_hand() -> None:
    case = by_views(*RANKED)
    # Page 1 (slots 0-3): two sports, then s3 and s4 wait for page 2; tech fills the page.
    assert ids(case.recommend(k=8)) == ["s1", "s2", "t1", "t2", "s3", "s4", "n1", "t3"]
    # A pinned news article counts on its page; the rest of the page still takes two sports.
    pinned = case.recommend(k=8, pinned={1: "n2"})
    assert ids(pinned) == ["s1", "n2", "s2", "t1", "s3", "s4", "t2", "n1"]
    assert pinned[1].reason == "pinned"
    # No cap: best first.
    case.rules = RuleSettings(max_per_category=0, diversity_page=4)
    assert ids(case.recommend(k=5)) == ["s1", "s2", "s3", "t1", "s4"]


def test_cap_gives_way_rather_than_leave_a_slot_empty() -> None:
    case = by_views(*RANKED)
    # Only sports on a sports section page: the cap of 2 per page of 4 cannot hold.
    assert ids(case.recommend(k=4, category="sports")) == ["s1", "s2", "s3", "s4"]


def test_pinned_articles_are_placed_whatever_the_filters_say() -> None:
    case = by_views(*RANKED, ("gone", "tech", 9999))
    case.by_id["gone"].age_hours = 200.0  # expired
    case.user_features = {"recent_reads": ["s1"]}
    case.rules = RuleSettings(max_per_category=0)
    items = case.recommend(k=5, pinned={0: "s1", 2: "gone", 4: "not-in-the-catalogue"})
    # Read, expired and unknown articles are shown where the editor put them, once; the free
    # slots hold the best of the rest.
    assert ids(items) == ["s1", "s2", "gone", "s3", "not-in-the-catalogue"]
    assert [i.reason for i in items if i.article_id in {"s1", "gone", "not-in-the-catalogue"}] == ["pinned"] * 3


@pytest.mark.parametrize("seed", range(40))
def test_random_small_cases_match_the_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 21))
    categories = ["sports", "tech", "news", "travel"][: int(rng.integers(2, 5))]
    share = rng.dirichlet(np.ones(len(categories)) * 0.7)  # skewed: the cap usually binds
    f = 3
    articles = []
    for i in range(n):
        views = int(rng.integers(0, 3000))
        articles.append(
            Article(
                f"a{i}",
                str(rng.choice(categories, p=share)),
                float(rng.uniform(0.2, 90.0)),  # some beyond max_age_hours (72)
                views=views,
                clicks=int(views * rng.uniform(0.0, 0.3)),
                read_s=float(rng.uniform(0.0, 400.0)),
                factors=tuple(rng.standard_normal(f).tolist()) if rng.random() < 0.75 else None,
            )
        )
    nf = len(RANKER_FEATURES)
    rules = RuleSettings(
        max_per_category=int(rng.integers(0, 4)),
        diversity_page=int(rng.integers(2, 7)),
        half_life_hours=float(rng.uniform(6.0, 48.0)),
    )
    case = Case(
        articles=articles,
        user_factors=tuple(rng.standard_normal(f).tolist()),
        ranker=LinearRanker(
            tuple(RANKER_FEATURES),
            rng.standard_normal(nf),
            rng.uniform(0.5, 2.0, nf),
            rng.standard_normal(nf),
            float(rng.normal()),
        ),
        rules=rules,
        user_features={
            "category_clicks": json.dumps({c: int(rng.integers(1, 10)) for c in categories if rng.random() < 0.7}),
            "top_category": str(rng.choice(categories)),
            "clicks_7d": int(rng.integers(0, 40)),
            "read_ratio_7d": float(rng.random()),
            "avg_session_len_s": float(rng.uniform(0, 900)),
            "recent_reads": [a.article_id for a in articles if rng.random() < 0.1],
        },
    )
    reads = set(case.user_features["recent_reads"])
    shown = [a.article_id for a in articles if a.age_hours <= rules.max_age_hours and a.article_id not in reads]
    k = int(rng.integers(1, len(shown) + 1)) if shown else 1
    positions = sorted(set(rng.integers(0, k, int(rng.integers(0, 3))).tolist()))
    pinned = dict(
        zip(
            positions, rng.choice([a.article_id for a in articles], len(positions), replace=False).tolist(), strict=True
        )
    )
    if len(shown) - len(set(pinned.values()) & set(shown)) < k - len(pinned):
        pinned = {}  # keep every case fully fillable (a short list is not what this checks)

    expected, scores = oracle_recommend(case, k, pinned=pinned)
    items = case.recommend(k, pinned=pinned)
    assert ids(items) == expected, (rules, pinned)
    free = [i for pos, i in enumerate(items) if pos not in pinned]
    assert [i.score for i in free] == pytest.approx([scores[i.article_id] for i in free], rel=1e-5)
    assert all(items[pos].reason == "pinned" for pos in pinned)
