"""The canary's CTR verdict: three outcomes, decided by the Beta-Binomial posterior, not by a fixed ratio."""

from __future__ import annotations

import pytest

from reco.analysis import FAILED, INCONCLUSIVE, SUCCESSFUL, Counts, Policy, judge, p_worse
from reco.errors import RecoError

STABLE = Counts(200_000, 10_000)  # 5 % CTR


def test_too_few_impressions_is_inconclusive_whatever_the_ctr() -> None:
    verdict = judge(Counts(1_500, 0), STABLE, Policy(min_impressions=2_000))
    assert verdict.verdict == INCONCLUSIVE and verdict.p_worse is None
    assert "canary has 1500 impressions, fewer than 2000" in verdict.reason
    assert judge(STABLE, Counts(10, 1)).verdict == INCONCLUSIVE  # a stable side too small is no comparison either


def test_a_clearly_worse_canary_fails_and_an_equal_one_succeeds() -> None:
    assert judge(Counts(20_000, 800), STABLE).verdict == FAILED  # 4.0 % vs 5.0 %: 20 % worse
    assert judge(Counts(40_000, 2_000), STABLE).verdict == SUCCESSFUL  # 5.0 % vs 5.0 %, enough impressions
    assert judge(Counts(20_000, 1_000), STABLE).verdict == INCONCLUSIVE  # same CTR, not yet enough to clear 5 %
    assert judge(Counts(20_000, 1_100), STABLE).verdict == SUCCESSFUL  # better


def test_a_small_difference_on_little_traffic_is_not_settled() -> None:
    # 4.7 % vs 5.0 % on 4,000 impressions: could be noise either way.
    verdict = judge(Counts(4_000, 188), STABLE)
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.p_worse is not None and 0.05 < verdict.p_worse < 0.95


def test_the_probability_matches_the_normal_approximation() -> None:
    """An independent check of the Monte Carlo: for large counts the difference of two Betas is ~normal."""
    import math

    canary, stable, margin = Counts(40_000, 1_900), Counts(400_000, 20_000), 0.05
    pc, ps = (1 + canary.clicks) / (2 + canary.impressions), (1 + stable.clicks) / (2 + stable.impressions)
    var = pc * (1 - pc) / canary.impressions + (1 - margin) ** 2 * ps * (1 - ps) / stable.impressions
    expected = 0.5 * (1 + math.erf((((1 - margin) * ps) - pc) / math.sqrt(2 * var)))
    assert p_worse(canary, stable, margin) == pytest.approx(expected, abs=0.01)


def test_same_counts_same_verdict_and_bad_policies_are_refused() -> None:
    assert judge(Counts(4_000, 188), STABLE).p_worse == judge(Counts(4_000, 188), STABLE).p_worse
    with pytest.raises(RecoError, match="threshold"):
        Policy(threshold=0.4)
    with pytest.raises(RecoError, match="margin"):
        Policy(margin=1.5)
