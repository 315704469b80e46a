"""Offline evaluation of a trained model on the test day D, as it will be served.

Split: global and time-based — the model was trained on days before D; the test set is D's
clicks (no per-user random split). For every test user the relevant set is what they clicked on
D minus what they had already read (``recent_reads`` of the D-1 snapshot).

What is compared, on the same users and the same features:

* ``model``: the new ``TwoStageModel.recommend`` — retrieval, ranker and rules, the code path the
  service runs — with the features the service would have had on D (the D-1 snapshots: user_stats
  and article_stats, plus article metadata for articles published since) and ``now`` = the time of
  the user's first event on D (the moment they would have asked; never the wall clock).
* ``als``: ALS retrieval alone (trained items by factor score; popularity for users without factors).
* ``popularity``: the recency-weighted popularity baseline of the same training data.
* ``champion``: the registry's current ``@champion`` through the same ``recommend`` call
  (``None`` when there is no champion yet).
* ``ope``: off-policy estimate of the new model's CTR from D's logged impressions (see ``ope``).

Metrics (``reco.metrics``): ndcg@10, recall@20, hr@10, mrr (@20), coverage (distinct articles in
the top-10 lists / articles eligible on D or trained on), novelty (bits). Logged to the training run in MLflow.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reco.errors import NoDataError, RecoError
from reco.features import USER_TABLE, read_snapshot, snapshot_ts
from reco.lake import partition_files
from reco.metrics import METRIC_NAMES, off_policy_ctr, ranking_metrics
from reco.model import ArticleFeatures, TwoStageModel, load_model, recent_reads
from reco.settings import Settings
from reco.train import catalogue_frame, load_run_model

log = logging.getLogger(__name__)

K_LIST = 20


@dataclass
class EvalResult:
    """``metrics``: {"model"|"als"|"popularity"|"champion": {metric: value} (champion may be None),
    "ope": {"ips_ctr", "snips_ctr", "ess", "logged_ctr", "n"}}; ``test_users``: users evaluated."""

    metrics: dict[str, Any]
    test_users: int


@dataclass
class TestDay:
    """Everything the evaluation reads about day D, loaded once."""

    day: dt.date
    events: pd.DataFrame  # silver events of D
    users: dict[str, dict[str, Any]]  # D-1 user_stats rows by user_id
    articles: ArticleFeatures  # catalogue as served on D
    truth: dict[str, set[str]]  # test user -> clicked (or read) on D, not already read
    now: dict[str, dt.datetime]  # test user -> first event on D (UTC)
    eligible: set[str]  # articles that could be recommended at some time of D


def load_test_day(settings: Settings, day: dt.date, *, max_age_hours: float) -> TestDay:
    """Read D's events, the D-1 snapshots and the catalogue; build the relevant sets."""
    files = partition_files(settings.silver_events_dir, day)
    if not files:
        raise NoDataError(f"no silver events for the test day {day}; run ingest for it first")
    events = pd.concat(
        [
            pq.read_table(
                f, columns=["ts", "user_id", "article_id", "event_type", "request_id", "position", "propensity"]
            ).to_pandas()
            for f in files
        ],
        ignore_index=True,
    )
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    previous = day - dt.timedelta(days=1)
    users = {
        str(row["user_id"]): row for row in read_snapshot(settings, USER_TABLE, previous).to_pandas().to_dict("records")
    }
    end = snapshot_ts(day)
    catalogue = catalogue_frame(settings, previous, until=end, max_age_hours=max_age_hours)
    articles = ArticleFeatures.from_frame(catalogue)
    start_s = end.timestamp() - 86_400.0
    window = (articles.published_s > start_s - max_age_hours * 3600.0) & (articles.published_s <= end.timestamp())
    eligible = set(articles.article_ids[window].tolist())

    # A read is a click that was read: a log of reads only (no click events) still has a truth.
    clicks = events[events["event_type"].isin(["click", "read"])]
    truth: dict[str, set[str]] = {}
    for user, group in clicks.groupby("user_id", sort=True):
        read = set(recent_reads(users.get(str(user))))
        relevant = set(group["article_id"].astype(str)) - read
        if relevant:
            truth[str(user)] = relevant
    first = events.groupby("user_id")["ts"].min()
    now = {u: first[u].to_pydatetime() for u in truth}
    return TestDay(day, events, users, articles, truth, now, eligible)


def recommend_lists(model: TwoStageModel, test: TestDay, *, k: int = K_LIST) -> dict[str, list[str]]:
    """The model as served, for every test user at their own ``now``."""
    out = {}
    for user, now in test.now.items():
        items = model.recommend(user, k=k, now=now, user_features=test.users.get(user), articles=test.articles)
        out[user] = [i.article_id for i in items]
    return out


def ope(model: TwoStageModel, test: TestDay, *, max_requests: int = 3000, seed: int = 7) -> dict[str, float]:
    """Off-policy CTR of the new model's top slot from D's logged impressions.

    The logging policy filled slot 0 of each logged request with probability ``propensity``
    (Plackett-Luce choice probability; at slot 0 it is the marginal probability). The target
    policy is the new model, deterministic: q_i = 1 when its first recommendation for that user at
    that request's time is the article logged in slot 0, else 0. With c_i = 1 when that article was
    clicked in that request, ``reco.metrics.off_policy_ctr`` gives IPS, SNIPS, ESS = (Σw)²/Σw²
    and the logged CTR of slot 0. Requests are sampled (seeded) down to ``max_requests`` because
    each one is a full ``recommend`` call.
    """
    ev = test.events
    shown = ev[
        (ev["event_type"] == "impression") & (ev["position"] == 0) & ev["propensity"].notna() & ev["request_id"].notna()
    ]
    shown = shown.drop_duplicates("request_id")
    if shown.empty:
        return {"ips_ctr": 0.0, "snips_ctr": 0.0, "ess": 0.0, "logged_ctr": 0.0, "n": 0}
    if len(shown) > max_requests:
        pick = np.sort(np.random.default_rng(seed).choice(len(shown), max_requests, replace=False))
        shown = shown.iloc[pick]
    clicks = ev[ev["event_type"] == "click"]
    clicked = set(zip(clicks["request_id"].astype(str), clicks["article_id"].astype(str), strict=True))
    c = np.array(
        [(str(r), str(a)) in clicked for r, a in zip(shown["request_id"], shown["article_id"], strict=True)],
        dtype=np.float64,
    )
    q = np.zeros(len(shown))
    for i, (user, article, ts) in enumerate(
        zip(shown["user_id"].astype(str), shown["article_id"].astype(str), shown["ts"], strict=True)
    ):
        top = model.recommend(
            user, k=1, now=ts.to_pydatetime(), user_features=test.users.get(user), articles=test.articles
        )
        q[i] = 1.0 if top and top[0].article_id == article else 0.0
    est = off_policy_ctr(c, shown["propensity"].to_numpy(dtype=np.float64), q)
    return {
        "ips_ctr": est.ips_ctr,
        "snips_ctr": est.snips_ctr,
        "ess": est.ess,
        "logged_ctr": est.logged_ctr,
        "n": est.n,
    }


def _champion(settings: Settings) -> TwoStageModel | None:
    try:
        return load_model(settings, "champion")
    except RecoError:
        return None


def _metric_key(name: str) -> str:
    # MLflow metric names allow no "@".
    return name.replace("@", "_at_")


def evaluate(settings: Settings, day: dt.date, run_id: str, *, max_ope_requests: int = 3000) -> EvalResult:
    """Evaluate run ``run_id``'s model (and the baselines and champion) on day ``day``; log to the run."""
    started = time.perf_counter()
    model = load_run_model(settings, run_id)
    champion = _champion(settings)
    test = load_test_day(
        settings, day, max_age_hours=max(model.rules.max_age_hours, champion.rules.max_age_hours if champion else 0.0)
    )
    if not test.truth:
        raise NoDataError(
            f"no test clicks on {day} on articles the users had not read before: nothing to evaluate a model on"
        )
    item_users: Mapping[str, int] = dict(zip(model.item_ids.tolist(), model.item_users.tolist(), strict=True))

    # Coverage's denominator: every article some recommender here could show — the day's eligible
    # catalogue plus the trained items (ALS and popularity also recommend older ones).
    catalogue_size = len(test.eligible | set(model.item_ids.tolist()))

    def score(lists: dict[str, list[str]]) -> dict[str, float]:
        return ranking_metrics(
            lists, test.truth, catalogue_size=catalogue_size, item_users=item_users, n_train_users=len(model.user_ids)
        )

    metrics: dict[str, Any] = {"model": score(recommend_lists(model, test))}
    metrics["als"] = score({u: model.recommend_als(u, k=K_LIST, user_features=test.users.get(u)) for u in test.truth})
    metrics["popularity"] = score(
        {u: model.recommend_popular(u, k=K_LIST, user_features=test.users.get(u)) for u in test.truth}
    )
    metrics["champion"] = score(recommend_lists(champion, test)) if champion is not None else None
    metrics["ope"] = ope(model, test, max_requests=max_ope_requests)
    seconds = time.perf_counter() - started

    mlflow.set_tracking_uri(settings.tracking_uri)
    with mlflow.start_run(run_id=run_id):
        flat = {
            f"{group}.{_metric_key(name)}": float(values[name])
            for group, values in metrics.items()
            if group != "ope" and values
            for name in METRIC_NAMES
        }
        flat |= {f"ope.{name}": float(value) for name, value in metrics["ope"].items()}
        flat |= {"eval.test_users": float(len(test.truth)), "eval.seconds": seconds}
        mlflow.log_metrics(flat)
        mlflow.set_tags({"eval.day": day.isoformat(), "eval.champion_version": champion.version if champion else ""})
    log.info("evaluated %s on %s: %d test users in %.1fs", run_id, day, len(test.truth), seconds)
    return EvalResult(metrics=metrics, test_users=len(test.truth))
