"""The quality gate's rule, on hand-made metrics (the registry itself: tests/model/test_gate.py)."""

from __future__ import annotations

from typing import Any

from reco.registry import gate


def scores(ndcg: float, *, coverage: float = 0.3, recall: float = 0.3) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@20": recall, "hr@10": 0.5, "mrr": 0.2, "coverage": coverage, "novelty": 9.0}


def metrics(model: dict[str, float], champion: dict[str, float] | None, popularity: float = 0.05) -> dict[str, Any]:
    return {"model": model, "als": scores(0.01), "popularity": scores(popularity), "champion": champion, "ope": {}}


def decide(m: dict[str, Any], has_champion: bool = True) -> tuple[bool, str]:
    return gate(m, has_champion=has_champion, min_gain=0.01, max_guard_drop=0.05)


def test_first_model_must_beat_popularity() -> None:
    assert decide(metrics(scores(0.06), None), has_champion=False)[0]
    ok, reason = decide(metrics(scores(0.05), None), has_champion=False)
    assert not ok and "popularity" in reason


def test_promotion_needs_the_relative_gain_over_the_champion() -> None:
    assert decide(metrics(scores(0.1010), scores(0.1)))[0]
    ok, reason = decide(metrics(scores(0.1009), scores(0.1)))
    assert not ok and "champion" in reason


def test_a_guard_metric_dropping_too_far_blocks_promotion() -> None:
    assert decide(metrics(scores(0.2, coverage=0.286), scores(0.1, coverage=0.3)))[0]  # -4.7%
    ok, reason = decide(metrics(scores(0.2, coverage=0.284), scores(0.1, coverage=0.3)))  # -5.3%
    assert not ok and "coverage" in reason
    ok, reason = decide(metrics(scores(0.2, recall=0.2), scores(0.1, recall=0.3)))
    assert not ok and "recall@20" in reason


def test_beating_the_champion_is_not_enough_below_popularity() -> None:
    ok, reason = decide(metrics(scores(0.04), scores(0.03), popularity=0.05))
    assert not ok and "popularity" in reason


def test_an_unevaluated_champion_blocks_promotion() -> None:
    ok, reason = decide(metrics(scores(0.9), None), has_champion=True)
    assert not ok and "not evaluated" in reason
