"""Ranking metrics and the off-policy estimate against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reco.metrics import (
    METRIC_NAMES,
    coverage,
    hit_rate_at_k,
    ndcg_at_k,
    novelty,
    off_policy_ctr,
    ranking_metrics,
    recall_at_k,
    reciprocal_rank,
)

# Relevant at ranks 2 and 4 of four; two relevant items in all.
RECS = ["a", "b", "c", "d"]
REL = {"b", "d"}


def test_ndcg_by_hand() -> None:
    # DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677; ideal = 1 + 1/log2(3) = 1.630930.
    assert ndcg_at_k(RECS, REL, 10) == pytest.approx(1.0616063 / 1.6309298, abs=1e-6)
    assert ndcg_at_k(RECS, REL, 10) == pytest.approx(0.650920, abs=1e-6)
    # Cut at 2: DCG = 1/log2(3); ideal for min(2, 2) items is still 1 + 1/log2(3).
    assert ndcg_at_k(RECS, REL, 2) == pytest.approx(0.630930 / 1.630930, abs=1e-6)
    assert ndcg_at_k(["b", "d"], REL, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], REL, 10) == 0.0
    assert ndcg_at_k(RECS, set(), 10) == 0.0


def test_recall_hit_rate_and_reciprocal_rank_by_hand() -> None:
    assert recall_at_k(RECS, REL, 2) == 0.5
    assert recall_at_k(RECS, REL, 4) == 1.0
    assert recall_at_k(RECS, {"b", "d", "z"}, 20) == pytest.approx(2 / 3)
    assert hit_rate_at_k(RECS, REL, 1) == 0.0
    assert hit_rate_at_k(RECS, REL, 2) == 1.0
    assert reciprocal_rank(RECS, REL) == 0.5
    assert reciprocal_rank(["d", "b"], REL) == 1.0
    assert reciprocal_rank(["x"], REL) == 0.0


def test_coverage_and_novelty_by_hand() -> None:
    assert coverage([["a", "b"], ["b", "c"]], catalogue_size=4) == 0.75
    assert coverage([["a", "b", "c"]], catalogue_size=4, k=1) == 0.25
    assert coverage([], catalogue_size=0) == 0.0
    # 7 training users: p(a) = (3+1)/8 -> 1 bit, p(b) = (1+1)/8 -> 2 bits, unseen c: 1/8 -> 3 bits.
    assert novelty([["a", "b", "c"]], {"a": 3, "b": 1}, n_users=7) == pytest.approx(2.0)
    assert novelty([["c"]], {}, n_users=7) == pytest.approx(math.log2(8))


def test_ranking_metrics_averages_over_test_users_and_counts_missing_lists_as_misses() -> None:
    truth = {"u1": {"b", "d"}, "u2": {"z"}}
    out = ranking_metrics({"u1": RECS}, truth, catalogue_size=10, item_users={}, n_train_users=1)
    assert set(out) == set(METRIC_NAMES)
    assert out["ndcg@10"] == pytest.approx(0.650920 / 2, abs=1e-6)
    assert out["hr@10"] == 0.5
    assert out["recall@20"] == 0.5
    assert out["mrr"] == 0.25
    assert out["coverage"] == pytest.approx(0.4)


def test_off_policy_estimates_by_hand() -> None:
    clicks = np.array([1, 0, 1, 0])
    propensity = np.array([0.5, 0.25, 0.2, 1.0])
    target = np.array([1.0, 1.0, 0.0, 1.0])
    # w = q/p = [2, 4, 0, 1]
    est = off_policy_ctr(clicks, propensity, target)
    assert est.ips_ctr == pytest.approx(2 / 4)
    assert est.snips_ctr == pytest.approx(2 / 7)
    assert est.ess == pytest.approx(49 / 21)
    assert est.logged_ctr == 0.5
    assert est.n == 4


def test_off_policy_on_policy_data_recovers_the_logged_ctr_and_full_sample_size() -> None:
    clicks = np.array([1, 0, 0, 1, 0])
    p = np.full(5, 0.3)
    est = off_policy_ctr(clicks, p, p)
    assert est.ips_ctr == pytest.approx(0.4)
    assert est.snips_ctr == pytest.approx(0.4)
    assert est.ess == pytest.approx(5.0)


def test_off_policy_drops_unusable_propensities_and_handles_no_overlap() -> None:
    est = off_policy_ctr(np.array([1, 1]), np.array([np.nan, 0.0]), np.array([1.0, 1.0]))
    assert est.n == 0 and est.ips_ctr == 0.0
    none = off_policy_ctr(np.array([1, 0]), np.array([0.5, 0.5]), np.array([0.0, 0.0]))
    assert none.ips_ctr == 0.0 and none.snips_ctr == 0.0 and none.ess == 0.0
