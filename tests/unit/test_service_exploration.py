"""Epsilon-greedy exploration: which slots, which articles, and the logged propensities."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.recommend.exploration import Shown, explore

RANKED = [Shown(f"m{i}", 1.0 - i / 10, "als", 1.0) for i in range(5)]
POOL = [f"p{i}" for i in range(4)]


def test_no_exploration_leaves_the_model_list_untouched() -> None:
    shown, n = explore(RANKED, POOL, epsilon=0.0, slots=2, rng=random.Random(0), allowed=lambda a: True)
    assert shown == RANKED and n == 0
    shown, n = explore(RANKED, [], epsilon=0.5, slots=2, rng=random.Random(0), allowed=lambda a: True)
    assert shown == RANKED and n == 0


def test_only_the_last_slots_are_explored_and_propensities_follow_the_definition() -> None:
    rng = random.Random(1)
    explored_at: Counter[int] = Counter()
    trials = 4000
    for _ in range(trials):
        shown, _ = explore(RANKED, POOL, epsilon=0.3, slots=1, rng=rng, allowed=lambda a: True)
        assert shown[:4] == RANKED[:4]  # positions outside the slots: the model's, propensity 1
        last = shown[4]
        if last.reason == "explore":
            explored_at[4] += 1
            assert last.article_id in POOL and last.propensity == pytest.approx(0.3 / 4)
            assert last.score == 0.0
        else:
            assert last.article_id == "m4" and last.propensity == pytest.approx(0.7)
    assert explored_at[4] / trials == pytest.approx(0.3, abs=0.03)


def test_explored_article_is_uniform_over_the_eligible_pool() -> None:
    rng = random.Random(2)
    picks: Counter[str] = Counter()
    for _ in range(6000):
        shown, _ = explore(RANKED, POOL, epsilon=1.0, slots=1, rng=rng, allowed=lambda a: a != "p0")
        picks[shown[-1].article_id] += 1
        assert shown[-1].propensity == pytest.approx(1 / 3)  # p0 is not allowed: 3 eligible
    assert set(picks) == {"p1", "p2", "p3"}
    assert all(abs(c / 6000 - 1 / 3) < 0.03 for c in picks.values())


def test_pinned_items_and_items_already_listed_are_never_explored_over() -> None:
    ranked = [*RANKED[:4], Shown("m4", 0.5, "pinned", 1.0)]
    shown, n = explore(ranked, POOL, epsilon=1.0, slots=1, rng=random.Random(0), allowed=lambda a: True)
    assert shown == ranked and n == 0
    listed_pool = ["m1", "m2", "p9"]
    for seed in range(50):
        shown, _ = explore(RANKED, listed_pool, epsilon=1.0, slots=2, rng=random.Random(seed), allowed=lambda a: True)
        ids = [s.article_id for s in shown]
        assert len(ids) == len(set(ids))  # never a duplicate in one list


def test_two_slots_draw_without_replacement_with_conditional_propensities() -> None:
    shown, n = explore(RANKED, POOL, epsilon=1.0, slots=2, rng=random.Random(3), allowed=lambda a: True)
    assert n == 2
    assert [s.propensity for s in shown[3:]] == pytest.approx([1 / 4, 1 / 3])
    assert shown[3].article_id != shown[4].article_id


def test_an_empty_eligible_pool_keeps_the_model_item_with_propensity_one() -> None:
    shown, n = explore(RANKED, POOL, epsilon=0.5, slots=1, rng=random.Random(0), allowed=lambda a: False)
    assert n == 0 and shown[-1] == RANKED[-1]
