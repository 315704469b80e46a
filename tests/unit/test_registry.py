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


# -- with intervals: the best simple rule and the evidence of a gain ---------------------------------------------


def with_evidence(
    model: float,
    heuristic: tuple[float, float, float],
    champion: tuple[float, float, float] | None = None,
    *,
    champion_ndcg: float = 0.1,
    not_comparable: str | None = None,
) -> dict[str, Any]:
    """Metrics as reco.evaluate writes them: ``heuristic`` / ``champion`` = (diff, lo, hi) of the paired interval."""
    base = {"newest_top_category": scores(model - heuristic[0]), "popularity": scores(0.01), "newest": scores(0.05)}
    paired = {"newest_top_category": dict(zip(("diff", "lo", "hi"), heuristic, strict=True))}
    m: dict[str, Any] = {"model": scores(model), "baselines": base, "popularity": base["popularity"],
                         "strongest_heuristic": "newest_top_category", "paired": paired, "champion": None}  # fmt: skip
    if champion is not None:
        m["champion"] = scores(champion_ndcg)
        paired["champion"] = dict(zip(("diff", "lo", "hi"), champion, strict=True))
    if not_comparable:
        m["champion_not_comparable"] = not_comparable
    return m


def test_a_first_model_shown_to_lose_to_the_best_simple_rule_is_rejected() -> None:
    ok, reason = decide(with_evidence(0.18, (-0.03, -0.04, -0.02)), has_champion=False)
    assert not ok and "loses to the best simple rule" in reason and "newest_top_category" in reason


def test_a_tie_with_the_rule_passes_not_worse_but_not_beats() -> None:
    tie = with_evidence(0.214, (0.0004, -0.007, 0.008))
    ok, reason = decide(tie, has_champion=False)
    assert ok and reason.startswith("first model: ") and "[-0.0070, +0.0080]" in reason
    ok, reason = gate(tie, has_champion=False, min_gain=0.01, max_guard_drop=0.05, heuristic_rule="beats")
    assert not ok and "not shown to beat" in reason
    assert gate(with_evidence(0.24, (0.02, 0.01, 0.03)), has_champion=False, min_gain=0.01, max_guard_drop=0.05,
                heuristic_rule="beats")[0]  # fmt: skip


def test_a_gain_over_the_champion_needs_its_interval_above_zero() -> None:
    ok, reason = decide(with_evidence(0.12, (0.01, 0.005, 0.02), (0.02, -0.001, 0.04), champion_ndcg=0.10))
    assert not ok and "gain over the champion not shown" in reason
    ok, reason = decide(with_evidence(0.12, (0.01, 0.005, 0.02), (0.02, 0.004, 0.04), champion_ndcg=0.10))
    assert ok and "champion" in reason and "guards hold" in reason


def test_an_interval_above_zero_is_not_enough_below_the_minimum_gain() -> None:
    ok, reason = decide(with_evidence(0.1005, (0.01, 0.005, 0.02), (0.0005, 0.0001, 0.001), champion_ndcg=0.10))
    assert not ok and "x 1.01" in reason


def test_a_champion_trained_after_the_test_day_is_not_compared_and_the_baselines_judge() -> None:
    why = "champion version 4 was trained on data up to 2026-12-04 00:00, after the start of the test day 2026-12-01: not comparable"
    m_pass, m_lose = with_evidence(0.2, (0.01, 0.002, 0.02), not_comparable=why), with_evidence(0.2, (-0.03, -0.04, -0.02), not_comparable=why)
    # RECO_GATE_BACKFILL=baselines: the baselines alone decide.
    ok, reason = gate(m_pass, has_champion=True, min_gain=0.01, max_guard_drop=0.05, backfill="baselines")
    assert ok and "not comparable" in reason and "decided on the baselines" in reason
    ok, reason = gate(m_lose, has_champion=True, min_gain=0.01, max_guard_drop=0.05, backfill="baselines")
    assert not ok and "not comparable" in reason and "loses" in reason


def test_a_backfilled_model_never_replaces_a_champion_trained_on_newer_data_by_default() -> None:
    why = "champion version 4 was trained on data up to 2026-12-04 00:00, after the start of the test day 2026-12-01: not comparable"
    ok, reason = decide(with_evidence(0.2, (0.01, 0.002, 0.02), not_comparable=why))
    assert not ok and "not comparable" in reason and "passes" in reason and "trained on newer data" in reason
    ok, reason = decide(with_evidence(0.2, (-0.03, -0.04, -0.02), not_comparable=why))
    assert not ok and "loses" in reason  # a losing one says why it lost
    # Without a champion there is nothing newer to keep: the baselines decide, as for any first model.
    assert decide(with_evidence(0.2, (0.01, 0.002, 0.02)), has_champion=False)[0]
