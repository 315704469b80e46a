"""Ranking metrics and the off-policy CTR estimate, as pure functions of plain lists and arrays.

Relevance is binary: an article is relevant to a user when the user clicked it on the test day.
Every per-user metric is averaged over the test users (a user with no relevant article is not a
test user). The definitions are spelled out here because papers and libraries disagree on details
(recall's denominator, MRR's cut-off); the unit tests hold hand-computed values for each.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("ndcg@10", "recall@20", "hr@10", "mrr", "coverage", "novelty")


def ndcg_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary NDCG@k: DCG = sum over ranks r = 1..k of rel_r / log2(r + 1), divided by the DCG of
    an ideal list holding min(|relevant|, k) relevant items first. 0 when nothing is relevant."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items found in the top k: |top k ∩ relevant| / |relevant|."""
    if not relevant:
        return 0.0
    return len(set(recommended[:k]) & set(relevant)) / len(relevant)


def hit_rate_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 when at least one relevant item is in the top k, else 0."""
    return 1.0 if any(item in relevant for item in recommended[:k]) else 0.0


def reciprocal_rank(recommended: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank (1-based) of the first relevant item in the whole list given, 0 when none is.
    The evaluation passes top-20 lists, so the mean is MRR@20."""
    for rank, item in enumerate(recommended, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def coverage(lists: Collection[Sequence[str]], catalogue_size: int, k: int = 10) -> float:
    """Catalogue coverage: distinct items appearing in any top-k list / number of items that could
    have been recommended (the day's eligible catalogue)."""
    if catalogue_size <= 0:
        return 0.0
    shown = {item for items in lists for item in items[:k]}
    return len(shown) / catalogue_size


def novelty(lists: Collection[Sequence[str]], item_users: Mapping[str, int], n_users: int, k: int = 10) -> float:
    """Mean self-information of recommended items, in bits: over every item in every top-k list,
    -log2 p(i) with p(i) = (users who interacted with i in training + 1) / (training users + 1).
    Items never seen in training get the largest value, log2(n_users + 1)."""
    total, count = 0.0, 0
    denominator = n_users + 1
    for items in lists:
        for item in items[:k]:
            total += -math.log2((item_users.get(item, 0) + 1) / denominator)
            count += 1
    return total / count if count else 0.0


def ranking_metrics(
    recommendations: Mapping[str, Sequence[str]],
    truth: Mapping[str, Collection[str]],
    *,
    catalogue_size: int,
    item_users: Mapping[str, int],
    n_train_users: int,
) -> dict[str, float]:
    """All of METRIC_NAMES for one recommender on one test set.

    ``recommendations`` maps each test user to a ranked list (at least 20 long where possible);
    ``truth`` maps each test user to the articles they clicked on the test day. Users in ``truth``
    without a list count as misses (an empty list), so every recommender is judged on the same users.
    """
    users = [u for u, rel in truth.items() if rel]
    if not users:
        return dict.fromkeys(METRIC_NAMES, 0.0)
    lists = [list(recommendations.get(u, ())) for u in users]
    rels = [set(truth[u]) for u in users]
    n = len(users)
    return {
        "ndcg@10": sum(ndcg_at_k(r, t, 10) for r, t in zip(lists, rels, strict=True)) / n,
        "recall@20": sum(recall_at_k(r, t, 20) for r, t in zip(lists, rels, strict=True)) / n,
        "hr@10": sum(hit_rate_at_k(r, t, 10) for r, t in zip(lists, rels, strict=True)) / n,
        "mrr": sum(reciprocal_rank(r[:20], t) for r, t in zip(lists, rels, strict=True)) / n,
        "coverage": coverage(lists, catalogue_size, k=10),
        "novelty": novelty(lists, item_users, n_train_users, k=10),
    }


def ndcg_by_query(
    recommendations: Mapping[str, Sequence[str]], truth: Mapping[str, Collection[str]], k: int = 10
) -> dict[str, float]:
    """NDCG@k of each query (each key of ``truth`` with a relevant item): the per-query values whose
    mean ``ranking_metrics`` reports, kept for paired comparisons."""
    return {q: ndcg_at_k(list(recommendations.get(q, ())), rel, k) for q, rel in truth.items() if rel}


@dataclass(frozen=True)
class PairedInterval:
    """Mean difference a − b of a per-query metric over the same queries, with a bootstrap interval.

    ``diff`` = mean(a) − mean(b) on the observed queries; ``lo``/``hi`` the percentile interval of
    that difference over resamples of whole clusters (users); ``ratio`` = mean(a) / mean(b) (None
    when mean(b) is 0); ``n`` the number of clusters (users) resampled."""

    diff: float
    lo: float
    hi: float
    ratio: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"diff": self.diff, "lo": self.lo, "hi": self.hi, "ratio": self.ratio, "n": self.n}


def _cluster_resamples(
    sums: np.ndarray, counts: np.ndarray, *, n_resamples: int, seed: int, chunk: int = 100
) -> np.ndarray:
    """(n_resamples, m) resampled means Σ sums[idx] / Σ counts[idx] of the m columns of ``sums``
    ((n_clusters, m)), clusters drawn with replacement (seeded; in chunks to bound memory)."""
    n = sums.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, sums.shape[1]))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, (stop - start, n))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)[:, None]
    return out


def _clusters(groups: Sequence[str] | np.ndarray | None, n: int) -> np.ndarray:
    """(n,) cluster code per query: one cluster per query when ``groups`` is None."""
    if groups is None:
        return np.arange(n)
    _, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return codes.reshape(-1)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedInterval:
    """Paired bootstrap interval for mean(a) − mean(b), ``a`` and ``b`` (n,) aligned per query.

    ``groups`` (n,) names the cluster of each query (its user): a resample draws users with
    replacement and keeps all their queries, so a heavy user's correlated requests move together;
    the resampled mean is Σ over drawn queries / number of drawn queries (each request weighs the
    same, as in the point figure). Without ``groups`` each query is its own cluster. The interval is
    the (1 − level)/2 and (1 + level)/2 percentiles of the resampled differences; deterministic for
    a ``seed``. An empty input gives zeros.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        return PairedInterval(0.0, 0.0, 0.0, None, 0)
    codes = _clusters(groups, a.size)
    n_clusters = int(codes.max()) + 1
    sums = np.zeros((n_clusters, 1))
    np.add.at(sums[:, 0], codes, a - b)
    counts = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    diffs = _cluster_resamples(sums, counts, n_resamples=n_resamples, seed=seed)[:, 0]
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(diffs, [tail, 100.0 - tail])
    mean_b = float(b.mean())
    return PairedInterval(
        diff=float(a.mean() - mean_b),
        lo=float(lo),
        hi=float(hi),
        ratio=float(a.mean() / mean_b) if mean_b > 0 else None,
        n=n_clusters,
    )


@dataclass(frozen=True)
class OffPolicyEstimate:
    """Estimated click-through rate of a new policy from impressions logged under an old one."""

    ips_ctr: float
    snips_ctr: float
    ess: float
    logged_ctr: float
    n: int


def off_policy_ctr(
    clicks: np.ndarray, logging_propensity: np.ndarray, target_probability: np.ndarray
) -> OffPolicyEstimate:
    """IPS and self-normalised IPS estimates of the per-impression CTR under a target policy.

    Inputs are aligned arrays of shape (n,), one entry per logged impression i:
    ``clicks`` c_i in {0, 1}; ``logging_propensity`` p_i in (0, 1], the probability with which the
    logging policy showed that article in that slot; ``target_probability`` q_i in [0, 1], the
    probability that the new policy shows it there. With importance weights w_i = q_i / p_i:

    - IPS   = (1/n) · Σ c_i w_i           (unbiased when p_i > 0 wherever q_i > 0)
    - SNIPS = Σ c_i w_i / Σ w_i           (biased but far lower variance; 0 when Σ w = 0)
    - ESS   = (Σ w_i)² / Σ w_i²          (Kish's effective sample size: how many on-policy
      impressions the estimate is worth; near n when the policies agree, small when few
      logged impressions carry all the weight)
    - logged_ctr = (1/n) · Σ c_i           (what the logging policy got)

    Impressions with a missing or non-positive propensity are dropped (they cannot be reweighted).
    """
    c = np.asarray(clicks, dtype=np.float64)
    p = np.asarray(logging_propensity, dtype=np.float64)
    q = np.asarray(target_probability, dtype=np.float64)
    keep = np.isfinite(p) & (p > 0)
    c, p, q = c[keep], p[keep], q[keep]
    n = int(c.size)
    if n == 0:
        return OffPolicyEstimate(0.0, 0.0, 0.0, 0.0, 0)
    w = q / p
    w_sum = float(w.sum())
    w_sq = float((w * w).sum())
    return OffPolicyEstimate(
        ips_ctr=float((c * w).sum() / n),
        snips_ctr=float((c * w).sum() / w_sum) if w_sum > 0 else 0.0,
        ess=w_sum * w_sum / w_sq if w_sq > 0 else 0.0,
        logged_ctr=float(c.mean()),
        n=n,
    )


def off_policy_intervals(
    clicks: np.ndarray,
    logging_propensity: np.ndarray,
    target_probability: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Bootstrap percentile intervals of ``off_policy_ctr``'s IPS and SNIPS (same inputs, same
    dropped rows), resampling the logged impressions with replacement; deterministic for a ``seed``.

    Returns ``ips_lo``, ``ips_hi``, ``snips_lo``, ``snips_hi`` (all 0 when nothing can be
    reweighted). A resample whose weights sum to 0 counts as SNIPS 0, as the point estimate does."""
    c = np.asarray(clicks, dtype=np.float64)
    p = np.asarray(logging_propensity, dtype=np.float64)
    q = np.asarray(target_probability, dtype=np.float64)
    keep = np.isfinite(p) & (p > 0)
    c, p, q = c[keep], p[keep], q[keep]
    if c.size == 0:
        return {"ips_lo": 0.0, "ips_hi": 0.0, "snips_lo": 0.0, "snips_hi": 0.0}
    w = q / p
    columns = np.stack([c * w, w], axis=1)  # (n, 2): reward and weight per impression
    means = _cluster_resamples(columns, np.ones(c.size), n_resamples=n_resamples, seed=seed)
    ips = means[:, 0]
    snips = np.divide(means[:, 0], means[:, 1], out=np.zeros(n_resamples), where=means[:, 1] > 0)
    tail = (1.0 - level) / 2.0 * 100.0
    ips_lo, ips_hi = np.percentile(ips, [tail, 100.0 - tail])
    snips_lo, snips_hi = np.percentile(snips, [tail, 100.0 - tail])
    return {"ips_lo": float(ips_lo), "ips_hi": float(ips_hi), "snips_lo": float(snips_lo), "snips_hi": float(snips_hi)}
