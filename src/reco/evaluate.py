"""Offline evaluation of a trained model on the test day D, as it will be served.

Split: global and time-based — the model was trained on days before D; the test set is D.

**Requests.** Every test user is evaluated at each of their sessions on D, as the service would be
asked: a session is a run of the user's events on D (impressions, clicks, reads) with no gap
longer than ``SESSION_GAP_S`` (30 min) between consecutive events; the request's ``now`` is the
session's first event, and its relevant set is what the user clicked or read in that session,
minus what they had already read (``recent_reads`` of the D-1 snapshot) and minus what they had
clicked in an earlier session of D. A session without such a click is no request. So an article
published at noon is reachable by an afternoon session. All users' features are the D-1
snapshots (what the service has all day: the store is materialized once a day); the articles'
intraday counts are D's events before the request's refresh boundary (``TestDay.at``), as the
service counts them (``reco.intraday``).

Every figure is a mean over these requests (each served request weighs the same); intervals
resample users (``reco.metrics.paired_bootstrap``), since one user's requests are not independent.

What is compared, on the same requests, the same truth and the same ``now``:

* ``model``: the new ``TwoStageModel.recommend`` — retrieval, ranker and rules, the code path the
  service runs — with the features the service would have had on D (the D-1 snapshots: user_stats
  and article_stats, plus article metadata for articles published since).
* ``champion``: the registry's current ``@champion`` through the same ``recommend`` call
  (``None`` when there is no champion yet).
* ``baselines``: under the new model's own eligibility (``reco.model.baselines.eligible``:
  published ≤ now, inside ``rules.max_age_hours``, reads and training history excluded)
  ``popularity`` (recency-weighted training popularity), ``als`` (ALS scores alone), and the
  heuristics ``newest``, ``newest_top_category``, ``fresh_popular``, ``trending_top_category``
  (``reco.model.heuristics``);
  plus ``oracle`` — the generator's own click probabilities (``reco.oracle``) — when the test day
  is from ``reco data generate`` and its world can be rebuilt.
* ``model_first_event``: the model queried once per user at their first event of D against all
  their clicks of D not already read (the figure reported before per-session evaluation).
* ``ope``: off-policy estimate of the new model's CTR from D's logged impressions (see ``ope``).

Summary (``EvalResult.metrics``): ``model``, ``champion``, ``model_first_event``,
``baselines.<name>``, each a dict of ``reco.metrics.METRIC_NAMES``; ``als`` / ``popularity`` (the
same dicts as ``baselines.als`` / ``baselines.popularity``); ``strongest_heuristic``: the heuristic
with the best ndcg@10 among ``HEURISTICS``; ``paired.<name>`` for each baseline and ``champion``:
the model's ndcg@10 minus that one's with a bootstrap 95 % interval (``diff``, ``lo``, ``hi``,
``ratio``, ``n`` users); ``ope``: IPS, SNIPS (with ``*_lo``/``*_hi``), ESS, logged CTR, n.

Metrics (``reco.metrics``): ndcg@10, recall@20, hr@10, mrr (@20), coverage (distinct articles in
the top-10 lists / articles eligible on D or trained on), novelty (bits). Logged to the training
run in MLflow with flat names (``model.ndcg_at_10``, ``baselines.newest.ndcg_at_10``,
``paired.newest.lo``, ``ope.ips_lo``, …).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reco.errors import NoDataError, RecoError
from reco.features import USER_TABLE, read_snapshot, snapshot_ts
from reco.intraday import REFRESH_S, counts_before
from reco.lake import partition_files
from reco.metrics import (
    ndcg_by_query,
    off_policy_ctr,
    off_policy_intervals,
    paired_bootstrap,
    ranking_metrics,
)
from reco.model import ArticleFeatures, TwoStageModel, epoch_seconds, load_model, recent_reads
from reco.model.baselines import Eligible, als_eligible, eligible, popularity_eligible, ranked_ids
from reco.model.heuristics import fresh_popular, newest, newest_top_category, trending_top_category
from reco.oracle import GeneratorOracle, load_oracle
from reco.settings import Settings
from reco.train import catalogue_frame, load_run_model

log = logging.getLogger(__name__)

K_LIST = 20
SESSION_GAP_S = 30 * 60.0
# The heuristics ``strongest_heuristic`` picks from (ALS and the oracle are not simple rules).
HEURISTICS: tuple[str, ...] = ("popularity", "newest", "newest_top_category", "fresh_popular", "trending_top_category")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 12


@dataclass
class EvalResult:
    """``metrics``: see the module docstring (``champion`` may be None); ``test_users``: users
    with at least one evaluated request; ``requests``: evaluated requests (sessions)."""

    metrics: dict[str, Any]
    test_users: int
    requests: int = 0


@dataclass
class Request:
    """One evaluated request: ``user`` asked at ``now`` (UTC); ``truth`` what they then clicked."""

    key: str  # "<user>#<session number>"
    user: str
    now: dt.datetime
    truth: set[str]


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
    requests: list[Request]  # one per session with a click (see the module docstring)
    _at: dict[float, ArticleFeatures] = field(default_factory=dict, repr=False)

    def at(self, now: dt.datetime) -> ArticleFeatures:
        """The catalogue as served at ``now``: with the intraday counts of D's events before the last
        refresh boundary (``reco.intraday.REFRESH_S``) at or before ``now`` -- what a service that
        refreshes its counts on that interval holds. One object per boundary (models cache per catalogue)."""
        boundary = float(np.floor(now.timestamp() / REFRESH_S) * REFRESH_S)
        catalogue = self._at.get(boundary)
        if catalogue is None:
            ids = self.articles.article_ids
            views, clicks = counts_before(self.events, ids, np.full(len(ids), boundary))
            catalogue = self._at[boundary] = self.articles.with_today(views, clicks)
        return catalogue


def split_sessions(events: pd.DataFrame, *, gap_s: float = SESSION_GAP_S) -> pd.DataFrame:
    """``events`` (``user_id``, ``ts`` UTC, …) sorted by user and time, with ``session``: the
    0-based number of the user's session each event belongs to (a new one after a gap of more than
    ``gap_s`` seconds since the user's previous event) and ``session_start``: its first ``ts``."""
    out = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    user = out["user_id"].astype(str).to_numpy()
    ts = epoch_seconds(out["ts"])
    new_user = np.ones(len(out), dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    gap = np.zeros(len(out))
    gap[1:] = np.diff(ts)
    starts = new_user | (gap > gap_s)
    session_id = np.cumsum(starts) - 1
    first_of_user = np.maximum.accumulate(np.where(new_user, session_id, 0))
    out["session"] = session_id - first_of_user
    out["session_start"] = out.groupby(session_id)["ts"].transform("min")
    return out


def session_requests(
    events: pd.DataFrame, already_read: Mapping[str, set[str]], *, gap_s: float = SESSION_GAP_S
) -> list[Request]:
    """The requests of ``events`` (one day): one per user session with a click or read on an
    article neither in ``already_read[user]`` nor clicked in one of the user's earlier sessions;
    ordered by user, then time."""
    sessions = split_sessions(events, gap_s=gap_s)
    clicks = sessions.loc[
        sessions["event_type"].isin(["click", "read"]), ["user_id", "article_id", "session", "session_start"]
    ].astype({"user_id": str, "article_id": str})
    # Each (user, article) counts once, in the first session it was clicked in (rows are in time order).
    clicks = clicks.drop_duplicates(["user_id", "article_id"], keep="first")
    read = [a in already_read.get(u, ()) for u, a in zip(clicks["user_id"], clicks["article_id"], strict=True)]
    clicks = clicks[~np.asarray(read, dtype=bool)]
    requests = []
    for (user, number), rows in clicks.groupby(["user_id", "session"], sort=True):
        start = rows["session_start"].iloc[0].to_pydatetime()
        requests.append(Request(f"{user}#{number}", str(user), start, set(rows["article_id"])))
    return requests


EVENT_COLUMNS: tuple[str, ...] = ("ts", "user_id", "article_id", "event_type", "request_id", "position", "propensity")


def read_day_events(settings: Settings, day: dt.date) -> pd.DataFrame:
    """The silver events of ``day`` (``EVENT_COLUMNS``, ``ts`` UTC); empty when the day has none."""
    files = partition_files(settings.silver_events_dir, day)
    if not files:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
        empty["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
        return empty
    events = pd.concat([pq.read_table(f, columns=list(EVENT_COLUMNS)).to_pandas() for f in files], ignore_index=True)
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    return events


def load_test_day(settings: Settings, day: dt.date, *, max_age_hours: float) -> TestDay:
    """Read D's events, the D-1 snapshots and the catalogue; build the relevant sets."""
    if not partition_files(settings.silver_events_dir, day):
        raise NoDataError(f"no silver events for the test day {day}; run ingest for it first")
    events = read_day_events(settings, day)
    previous = day - dt.timedelta(days=1)
    users = {
        str(row["user_id"]): row for row in read_snapshot(settings, USER_TABLE, previous).to_pandas().to_dict("records")
    }
    end = snapshot_ts(day)
    catalogue = catalogue_frame(settings, previous, until=end, max_age_hours=max_age_hours)
    articles = ArticleFeatures.from_frame(catalogue)
    start_s = end.timestamp() - 86_400.0
    window = (articles.published_s > start_s - max_age_hours * 3600.0) & (articles.published_s <= end.timestamp())
    eligible_ids = set(articles.article_ids[window].tolist())

    # A read is a click that was read: a log of reads only (no click events) still has a truth.
    clicks = events[events["event_type"].isin(["click", "read"])]
    read_before = {str(u): set(recent_reads(users.get(str(u)))) for u in clicks["user_id"].unique()}
    truth: dict[str, set[str]] = {}
    for user, group in clicks.groupby("user_id", sort=True):
        relevant = set(group["article_id"].astype(str)) - read_before[str(user)]
        if relevant:
            truth[str(user)] = relevant
    first = events.groupby("user_id")["ts"].min()
    now = {u: first[u].to_pydatetime() for u in truth}
    requests = session_requests(events[events["user_id"].astype(str).isin(truth)], read_before)
    return TestDay(day, events, users, articles, truth, now, eligible_ids, requests)


def recommend_lists(
    model: TwoStageModel, test: TestDay, *, k: int = K_LIST, users: Collection[str] | None = None
) -> dict[str, list[str]]:
    """The model as served, for every test user (or those of ``users``) at their first event of D
    (``model_first_event``)."""
    out = {}
    for user, now in test.now.items():
        if users is not None and user not in users:
            continue
        items = model.recommend(user, k=k, now=now, user_features=test.users.get(user), articles=test.at(now))
        out[user] = [i.article_id for i in items]
    return out


def request_lists(model: TwoStageModel, test: TestDay, *, k: int = K_LIST) -> dict[str, list[str]]:
    """The model as served, at every request of the test day (keyed by ``Request.key``)."""
    return {
        r.key: [
            i.article_id
            for i in model.recommend(
                r.user, k=k, now=r.now, user_features=test.users.get(r.user), articles=test.at(r.now)
            )
        ]
        for r in test.requests
    }


def first_event_lists(
    model: TwoStageModel, test: TestDay, at_requests: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """``recommend_lists`` for every test user, reusing the list of a request made at the user's
    first event (``recommend`` is deterministic for a user, ``now`` and features)."""
    out = {r.user: at_requests[r.key] for r in test.requests if r.now == test.now[r.user] and r.key in at_requests}
    missing = set(test.now) - set(out)
    return out | recommend_lists(model, test, users=missing)


# A baseline: (model, request, its eligible rows, catalogue, user features, k) -> article ids.
Baseline = Callable[[TwoStageModel, Request, Eligible, ArticleFeatures, Mapping[str, Any] | None, int], list[str]]

BASELINES: dict[str, Baseline] = {
    "popularity": lambda m, r, ok, a, f, k: popularity_eligible(m, ok, a, k=k),
    "als": lambda m, r, ok, a, f, k: als_eligible(m, r.user, ok, a, k=k, user_features=f),
    "newest": lambda m, r, ok, a, f, k: newest(a, ok, k=k),
    "newest_top_category": lambda m, r, ok, a, f, k: newest_top_category(a, ok, k=k, user_features=f),
    "fresh_popular": lambda m, r, ok, a, f, k: fresh_popular(a, ok, k=k, now_s=r.now.timestamp()),
    "trending_top_category": lambda m, r, ok, a, f, k: trending_top_category(
        a, ok, k=k, now_s=r.now.timestamp(), user_features=f
    ),
}


def baseline_lists(
    model: TwoStageModel, test: TestDay, *, oracle: GeneratorOracle | None = None, k: int = K_LIST
) -> dict[str, dict[str, list[str]]]:
    """Every baseline's list at every request (name -> request key -> ids), under ``model``'s
    eligibility computed once per request; ``oracle`` ranks the same rows by click probability."""
    out: dict[str, dict[str, list[str]]] = {name: {} for name in BASELINES}
    if oracle is not None:
        out["oracle"] = {}
    for r in test.requests:
        features = test.users.get(r.user)
        now_s = r.now.timestamp()
        articles = test.at(r.now)
        ok = eligible(model, r.user, now_s=now_s, user_features=features, articles=articles)
        for name, baseline in BASELINES.items():
            out[name][r.key] = baseline(model, r, ok, articles, features, k)
        if oracle is not None:
            rows = ok.rows()
            p = oracle.scores(r.user, rows, now_s)
            out["oracle"][r.key] = [] if p is None else ranked_ids(test.articles, rows, p, k)
    return out


def ope(model: TwoStageModel, test: TestDay, *, max_requests: int = 3000, seed: int = 7) -> dict[str, float]:
    """Off-policy CTR of the new model's top slot from D's logged impressions.

    The logging policy filled slot 0 of each logged request with probability ``propensity``
    (Plackett-Luce choice probability; at slot 0 it is the marginal probability). The target
    policy is the new model, deterministic: q_i = 1 when its first recommendation for that user at
    that request's time is the article logged in slot 0, else 0. With c_i = 1 when that article was
    clicked in that request, ``reco.metrics.off_policy_ctr`` gives IPS, SNIPS, ESS = (Σw)²/Σw²
    and the logged CTR of slot 0, and ``off_policy_intervals`` bootstrap 95 % intervals of IPS
    and SNIPS (``ips_lo``, ``ips_hi``, ``snips_lo``, ``snips_hi``; resampling the requests).
    Requests are sampled (seeded) down to ``max_requests`` because each one is a full
    ``recommend`` call.
    """
    ev = test.events
    shown = ev[
        (ev["event_type"] == "impression") & (ev["position"] == 0) & ev["propensity"].notna() & ev["request_id"].notna()
    ]
    shown = shown.drop_duplicates("request_id")
    if shown.empty:
        zeros = ("ips_ctr", "snips_ctr", "ess", "logged_ctr", "ips_lo", "ips_hi", "snips_lo", "snips_hi")
        return {**dict.fromkeys(zeros, 0.0), "n": 0}
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
            user, k=1, now=ts.to_pydatetime(), user_features=test.users.get(user), articles=test.at(ts.to_pydatetime())
        )
        q[i] = 1.0 if top and top[0].article_id == article else 0.0
    p = shown["propensity"].to_numpy(dtype=np.float64)
    est = off_policy_ctr(c, p, q)
    return {
        "ips_ctr": est.ips_ctr,
        "snips_ctr": est.snips_ctr,
        "ess": est.ess,
        "logged_ctr": est.logged_ctr,
        "n": est.n,
        **off_policy_intervals(c, p, q, n_resamples=BOOTSTRAP_RESAMPLES, seed=seed),
    }


def paired(
    model_lists: Mapping[str, list[str]],
    others: Mapping[str, Mapping[str, list[str]]],
    test: TestDay,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, Any]]:
    """For each of ``others`` (name -> request key -> list): the model's ndcg@10 minus its own on
    the same requests, with the users-resampled bootstrap interval (``PairedInterval.as_dict``)."""
    truth = {r.key: r.truth for r in test.requests}
    keys = [r.key for r in test.requests]
    groups = [r.user for r in test.requests]
    ours = ndcg_by_query(model_lists, truth)
    a = np.array([ours[q] for q in keys])
    out = {}
    for name, lists in others.items():
        theirs = ndcg_by_query(lists, truth)
        b = np.array([theirs[q] for q in keys])
        out[name] = paired_bootstrap(a, b, groups, n_resamples=n_resamples, seed=seed).as_dict()
    return out


def strongest(baselines: Mapping[str, Mapping[str, float]], names: tuple[str, ...] = HEURISTICS) -> str:
    """The one of ``names`` with the highest ndcg@10 (the first listed on a tie)."""
    present = [n for n in names if n in baselines]
    return max(present, key=lambda n: (float(baselines[n]["ndcg@10"]), -present.index(n)))


def champion_not_comparable(champion: TwoStageModel | None, day: dt.date) -> str | None:
    """Why ``champion`` cannot be scored on ``day`` (None when it can): trained on data at or after ``day`` (a
    backfill of an earlier date), its history filter would remove ``day``'s own clicks from its lists, and
    the comparison would be broken, not lost."""
    if champion is None or not champion.trained_until:
        return None
    try:
        until = dt.datetime.fromisoformat(champion.trained_until)
    except ValueError:
        return None
    until = until if until.tzinfo else until.replace(tzinfo=dt.UTC)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if until <= start:
        return None
    return (
        f"champion version {champion.version} was trained on data up to {until:%Y-%m-%d %H:%M}, after the start "
        f"of the test day {day}: not comparable"
    )


def _champion(settings: Settings) -> TwoStageModel | None:
    try:
        return load_model(settings, "champion")
    except RecoError:
        return None


def _metric_key(name: str) -> str:
    # MLflow metric names allow no "@".
    return name.replace("@", "_at_")


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` as MLflow's flat names: ``<row>.<metric>``, ``baselines.<name>.<metric>``,
    ``paired.<name>.<field>``, ``ope.<name>`` (None values left out)."""
    flat: dict[str, float] = {}

    def put(prefix: str, values: Mapping[str, Any] | None) -> None:
        for name, value in (values or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"{prefix}.{_metric_key(name)}"] = float(value)

    for row in ("model", "model_first_event", "champion", "als", "popularity", "ope"):
        put(row, metrics.get(row))
    for group in ("baselines", "paired"):
        for name, values in (metrics.get(group) or {}).items():
            put(f"{group}.{name}", values)
    return flat


def evaluate(settings: Settings, day: dt.date, run_id: str, *, max_ope_requests: int = 3000) -> EvalResult:
    """Evaluate run ``run_id``'s model (and the baselines and champion) on day ``day``; log to the run."""
    started = time.perf_counter()
    model = load_run_model(settings, run_id)
    champion = _champion(settings)
    test = load_test_day(
        settings, day, max_age_hours=max(model.rules.max_age_hours, champion.rules.max_age_hours if champion else 0.0)
    )
    if not test.requests:
        raise NoDataError(
            f"no test clicks on {day} on articles the users had not read before: nothing to evaluate a model on"
        )
    item_users: Mapping[str, int] = dict(zip(model.item_ids.tolist(), model.item_users.tolist(), strict=True))

    # Coverage's denominator: every article some recommender here could show — the day's eligible
    # catalogue plus the trained items (kept as before, so coverage figures stay comparable).
    catalogue_size = len(test.eligible | set(model.item_ids.tolist()))
    truth = {r.key: r.truth for r in test.requests}

    def score(lists: Mapping[str, list[str]], against: Mapping[str, set[str]] = truth) -> dict[str, float]:
        return ranking_metrics(
            lists, against, catalogue_size=catalogue_size, item_users=item_users, n_train_users=len(model.user_ids)
        )

    model_lists = request_lists(model, test)
    not_comparable = champion_not_comparable(champion, day)
    scored_champion = champion if not_comparable is None else None
    champion_lists = request_lists(scored_champion, test) if scored_champion is not None else None
    oracle = load_oracle(settings, test.articles)
    lists = baseline_lists(model, test, oracle=oracle)
    baselines = {name: score(by_request) for name, by_request in lists.items()}
    metrics: dict[str, Any] = {
        "model": score(model_lists),
        "champion": score(champion_lists) if champion_lists is not None else None,
        "model_first_event": score(first_event_lists(model, test, model_lists), test.truth),
        "baselines": baselines,
        "als": baselines["als"],
        "popularity": baselines["popularity"],
        "strongest_heuristic": strongest(baselines),
    }
    if not_comparable is not None:
        metrics["champion_not_comparable"] = not_comparable
    against = dict(lists)
    if champion_lists is not None:
        against["champion"] = champion_lists
    metrics["paired"] = paired(model_lists, against, test)
    metrics["ope"] = ope(model, test, max_requests=max_ope_requests)
    seconds = time.perf_counter() - started

    n_users = len({r.user for r in test.requests})
    mlflow.set_tracking_uri(settings.tracking_uri)
    with mlflow.start_run(run_id=run_id):
        flat = flat_metrics(metrics)
        flat |= {"eval.test_users": float(n_users), "eval.requests": float(len(test.requests)), "eval.seconds": seconds}
        mlflow.log_metrics(flat)
        mlflow.set_tags(
            {
                "eval.day": day.isoformat(),
                "eval.champion_version": champion.version if champion else "",
                "eval.strongest_heuristic": metrics["strongest_heuristic"],
                "eval.oracle": "yes" if oracle is not None else "no",
            }
        )
    log.info(
        "evaluated %s on %s: %d requests of %d test users in %.1fs", run_id, day, len(test.requests), n_users, seconds
    )
    return EvalResult(metrics=metrics, test_users=n_users, requests=len(test.requests))
