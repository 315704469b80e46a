"""Training cost and model quality on a generated lake.

Rows:

* **bare implicit fit**: ``AlternatingLeastSquares.fit`` alone on the exact matrix ``train`` builds
  (same factors, regularization, alpha, iterations, threads), median of 3.
* **reco train()**: the whole training step, median of 2 warm runs (imports and the first MLflow /
  Feast connection paid before), split into the ALS fit, the rest of the compute (reading silver,
  the Feast point-in-time join, the ranker, popularity) and MLflow logging; overheads are relative
  to the bare fit.
* **quality**: NDCG@10 etc. on the test day for the served model, ALS alone, ALS alone from a plain
  (one-phase) fit — to show the two-phase fit costs no ALS quality — and popularity; the served
  model's NDCG@10 over popularity's (target >= 1.3).
* **recommend latency**: one ``TwoStageModel.recommend`` call, p50/p99, on the test day's catalogue
  and on 20k- and 100k-article catalogues with 64 factors (all eligible: the worst case; at 100k
  ALS retrieval goes through the HNSW index, ``RuleSettings.ann_min_items``).

Usage: python benchmarks/bench_train.py [WORKDIR [DATE]] (generates ~1M events when WORKDIR has no lake).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from reco.lake import list_dates
from reco.settings import Settings


def prepare(settings: Settings, n_events: int = 1_000_000) -> None:
    """Generate, ingest and featurize a lake when the workdir has none (untimed)."""
    from reco.features import build_features
    from reco.featurestore import apply_and_materialize
    from reco.generate import generate, size_for_events
    from reco.ingest import ingest_date

    if not list_dates(settings.bronze_events_dir):
        generate(settings, seed=7, end=dt.date(2025, 3, 14), **size_for_events(n_events))
    if not list_dates(settings.silver_events_dir):
        for day in list_dates(settings.bronze_events_dir):
            ingest_date(settings, day)
    built = set(list_dates(settings.features_dir / "user_stats"))
    for day in list_dates(settings.silver_events_dir):
        if day not in built:
            build_features(settings, day)
    apply_and_materialize(settings, list_dates(settings.silver_events_dir)[-2])


def _latency(model: Any, requests: list[tuple[str, dt.datetime, Any]], articles: Any) -> tuple[float, float]:
    for user, now, feats in requests[:20]:
        model.recommend(user, k=10, now=now, user_features=feats, articles=articles)
    times = []
    for user, now, feats in requests:
        started = time.perf_counter()
        model.recommend(user, k=10, now=now, user_features=feats, articles=articles)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3)


def synthetic_latency(n_articles: int = 20_000, factors: int = 64, n_users: int = 5_000) -> dict[str, Any]:
    """recommend() on a random model over ``n_articles`` all published in the last 60 h."""
    from reco.model import RANKER_FEATURES, ArticleFeatures, LinearRanker, TwoStageModel

    rng = np.random.default_rng(0)
    now = dt.datetime(2025, 3, 14, 12, tzinfo=dt.UTC)
    cats = [f"c{i}" for i in range(12)]
    frame = pd.DataFrame(
        {
            "article_id": [f"a{i}" for i in range(n_articles)],
            "category": [cats[i % len(cats)] for i in range(n_articles)],
            "published_at": [now - dt.timedelta(hours=float(h)) for h in rng.uniform(0.1, 60, n_articles)],
            "views_24h": rng.integers(0, 1000, n_articles),
            "clicks_24h": rng.integers(0, 100, n_articles),
            "avg_read_time_s": rng.random(n_articles) * 100,
        }
    )
    history = [rng.choice(n_articles, 20, replace=False) for _ in range(n_users)]
    nf = len(RANKER_FEATURES)
    model = TwoStageModel(
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=frame["article_id"].to_numpy(dtype=object),
        user_factors=(rng.standard_normal((n_users, factors)) * 0.1).astype(np.float32),
        item_factors=(rng.standard_normal((n_articles, factors)) * 0.1).astype(np.float32),
        history_indptr=np.concatenate([[0], np.cumsum([len(h) for h in history])]),
        history_items=np.concatenate(history).astype(np.int32),
        popularity=rng.random(n_articles).astype(np.float32),
        item_users=rng.integers(1, 50, n_articles).astype(np.int32),
        regularization=0.05,
        alpha=2.0,
        fold_in_confidence=1.0,
        ranker=LinearRanker(tuple(RANKER_FEATURES), np.zeros(nf), np.ones(nf), rng.standard_normal(nf) * 0.3, -2.0),
    )
    articles = ArticleFeatures.from_frame(frame)
    feats = {
        "recent_reads": [f"a{i}" for i in range(0, 2000, 20)],
        "category_clicks": json.dumps({"c1": 5, "c2": 3}),
        "top_category": "c1",
        "clicks_7d": 8,
    }
    model.recommend("warm", k=1, now=now, user_features=None, articles=articles)  # caches, ANN index
    known = [(f"u{i}", now, feats) for i in range(500)]
    folded = [(f"new{i}", now, feats) for i in range(500)]
    cold = [(f"new{i}", now, None) for i in range(500)]
    row: dict[str, Any] = {"stage": f"recommend latency ({n_articles // 1000}k articles, {factors} factors)"}
    for name, requests in (("known", known), ("fold_in", folded), ("cold", cold)):
        p50, p99 = _latency(model, requests, articles)
        row[f"{name}_p50_ms"], row[f"{name}_p99_ms"] = p50, p99
    return row


def bench(workdir: Path, day: dt.date | None = None) -> list[dict[str, Any]]:
    from implicit.cpu.als import AlternatingLeastSquares

    from reco.evaluate import evaluate as evaluate_run
    from reco.evaluate import load_test_day, recommend_lists
    from reco.metrics import ranking_metrics
    from reco.train import TrainConfig, build_matrix, load_run_model, read_events, train, training_days

    settings = Settings(workdir=workdir)
    prepare(settings)
    day = day or list_dates(settings.silver_events_dir)[-1]
    config = TrainConfig()

    # The exact matrix train() factorizes (its full window).
    days = training_days(settings, day, settings.train_window_days)
    events, _ = read_events(settings, days)
    matrix, _ = build_matrix(events, config.weights)

    def bare_fit() -> float:
        als = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.seed,
            num_threads=config.num_threads,
        )
        started = time.perf_counter()
        als.fit(matrix.matrix, show_progress=False)
        bare_fit.model = als  # type: ignore[attr-defined]
        return time.perf_counter() - started

    bare = statistics.median(bare_fit() for _ in range(3))

    cold = train(settings, day, config)
    warm = [train(settings, day, config) for _ in range(2)]
    result = min(warm, key=lambda r: r.train_seconds)
    train_s = statistics.median(r.train_seconds for r in warm)
    als_s = statistics.median(r.als_fit_seconds for r in warm)
    log_s = statistics.median(r.log_seconds for r in warm)
    compute_s = train_s - log_s
    rows: list[dict[str, Any]] = [
        {"stage": "train: bare implicit fit", "seconds": round(bare, 3), "users": result.n_users,
         "items": result.n_items, "interactions": result.n_interactions, "factors": config.factors,
         "iterations": config.iterations},
        {"stage": "train: reco train()", "seconds": round(train_s, 3), "cold_seconds": cold.train_seconds,
         "als_fit_s": round(als_s, 3), "other_compute_s": round(compute_s - als_s, 3), "mlflow_log_s": round(log_s, 3),
         "overhead_total_pct": round(100 * (train_s - bare) / bare, 1),
         "overhead_compute_pct": round(100 * (compute_s - bare) / bare, 1),
         "overhead_als_pct": round(100 * (als_s - bare) / bare, 1),
         "ranker": result.ranker_status},
    ]  # fmt: skip

    evaluation = evaluate_run(settings, day, result.run_id)
    metrics = evaluation.metrics
    model = load_run_model(settings, result.run_id)
    test = load_test_day(settings, day, max_age_hours=model.rules.max_age_hours)
    plain = dataclasses.replace(
        model,
        user_factors=bare_fit.model.user_factors,  # type: ignore[attr-defined]
        item_factors=bare_fit.model.item_factors,  # type: ignore[attr-defined]
    )
    item_users = dict(zip(model.item_ids.tolist(), model.item_users.tolist(), strict=True))
    catalogue = len(test.eligible | set(model.item_ids.tolist()))
    plain_als = ranking_metrics(
        {u: plain.recommend_als(u, k=20, user_features=test.users.get(u)) for u in test.truth},
        test.truth,
        catalogue_size=catalogue,
        item_users=item_users,
        n_train_users=len(model.user_ids),
    )
    pop = metrics["popularity"]["ndcg@10"]
    for name, values in (
        ("served model", metrics["model"]),
        ("ALS alone", metrics["als"]),
        ("ALS alone, plain one-phase fit", plain_als),
        ("popularity", metrics["popularity"]),
    ):
        rows.append(
            {"stage": f"quality: {name}", **{k: round(v, 4) for k, v in values.items()},
             "ndcg_vs_popularity": round(values["ndcg@10"] / pop, 2) if pop else None,
             "test_users": evaluation.test_users}
        )  # fmt: skip
    rows.append(
        {
            "stage": "quality: off-policy CTR of the top slot",
            **{k: round(float(v), 4) for k, v in metrics["ope"].items()},
        }
    )

    requests = [(u, test.now[u], test.users.get(u)) for u in list(test.now)[:1000]]
    p50, p99 = _latency(model, requests, test.articles)
    recommend_lists(model, test)  # the same path, all users: a smoke check that nothing raises
    rows.append(
        {
            "stage": f"recommend latency (test day, {len(test.articles)} articles)",
            "known_p50_ms": p50,
            "known_p99_ms": p99,
        }
    )
    rows.append(synthetic_latency())
    rows.append(synthetic_latency(100_000))
    return rows


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="reco-bench-train-"))
    when = dt.date.fromisoformat(sys.argv[2]) if len(sys.argv) > 2 else None
    for row in bench(where, when):
        print(json.dumps(row, default=str))
