"""The evaluation's baselines, sessions and intervals on hand-made cases, and the evaluation summary
on the generated world.

- every baseline answers under the served model's eligibility (published ≤ now, inside the
  freshness window, nothing read or trained on), even where its own ranking would prefer such an
  article;
- each heuristic's order on a hand-made catalogue;
- the paired bootstrap interval: covers a known difference, is seeded, resamples users;
- the session split of a hand-made event log and the requests built from it;
- the oracle recomputes the generator's click probabilities;
- the summary's keys.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reco.evaluate import BASELINES, HEURISTICS, Request, session_requests, split_sessions, strongest
from reco.metrics import METRIC_NAMES, off_policy_ctr, off_policy_intervals, paired_bootstrap
from reco.model import ArticleFeatures, RuleSettings, TwoStageModel
from reco.model.baselines import als_eligible, eligible, popularity_eligible
from reco.model.heuristics import fresh_popular, newest, newest_top_category, trending_top_category
from reco.oracle import MANIFEST_NAME, load_oracle, read_manifest

NOW = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
USER = "ann"

# (article id, category, age in hours at NOW (negative: published later), clicks_24h,
#  training popularity or None when not trained on, ALS factor)
CATALOGUE: list[tuple[str, str, float, float, float | None, float]] = [
    ("future", "news", -1.0, 900.0, 100.0, 9.0),  # published after now: never
    ("old", "news", 80.0, 800.0, 90.0, 8.0),  # older than the 72 h window: never
    ("read", "sports", 1.0, 700.0, 80.0, 7.0),  # in the user's recent reads: never
    ("trained", "sports", 30.0, 600.0, 70.0, 6.0),  # in the user's training history: never
    ("s1", "sports", 2.0, 5.0, None, 0.0),
    ("s2", "sports", 40.0, 50.0, 3.0, 1.0),
    ("n1", "news", 0.5, 1.0, None, 0.0),
    ("n2", "news", 10.0, 20.0, 5.0, 3.0),
    ("n3", "news", 47.0, 20.0, 4.0, 2.0),
    ("n4", "news", 60.0, 100.0, 6.0, -1.0),
    ("f1", "finance", 5.0, 20.0, 1.0, 5.0),
]
ELIGIBLE = {"s1", "s2", "n1", "n2", "n3", "n4", "f1"}
FEATURES: dict[str, Any] = {"recent_reads": ["read"], "top_category": "sports"}


def catalogue() -> ArticleFeatures:
    return ArticleFeatures.from_frame(
        pd.DataFrame(
            {
                "article_id": [a[0] for a in CATALOGUE],
                "category": [a[1] for a in CATALOGUE],
                "published_at": [NOW - dt.timedelta(hours=a[2]) for a in CATALOGUE],
                "clicks_24h": [a[3] for a in CATALOGUE],
            }
        )
    )


def model(rules: RuleSettings | None = None) -> TwoStageModel:
    """``USER`` trained on ``trained``; every article with a popularity is a trained item, its ALS
    score for ``USER`` the factor listed."""
    trained = [a for a in CATALOGUE if a[4] is not None]
    ids = [a[0] for a in trained]
    return TwoStageModel(
        user_ids=np.array([USER], dtype=object),
        item_ids=np.array(ids, dtype=object),
        user_factors=np.array([[1.0]], dtype=np.float32),
        item_factors=np.array([[a[5]] for a in trained], dtype=np.float32),
        history_indptr=np.array([0, 1]),
        history_items=np.array([ids.index("trained")], dtype=np.int32),
        popularity=np.array([a[4] for a in trained], dtype=np.float32),
        item_users=np.ones(len(trained), dtype=np.int32),
        regularization=0.1,
        alpha=2.0,
        fold_in_confidence=1.0,
        rules=rules or RuleSettings(max_age_hours=72.0),
    )


def all_baselines(
    m: TwoStageModel, user: str = USER, features: dict[str, Any] | None = FEATURES
) -> dict[str, list[str]]:
    articles = catalogue()
    request = Request(f"{user}#0", user, NOW, {"s1"})
    ok = eligible(m, user, now_s=NOW.timestamp(), user_features=features, articles=articles)
    return {name: baseline(m, request, ok, articles, features, 50) for name, baseline in BASELINES.items()}


# -- eligibility -----------------------------------------------------------------------------


def test_every_baseline_answers_only_with_what_the_served_model_may_show() -> None:
    m = model()
    lists = all_baselines(m)
    assert set(lists) == {
        "popularity",
        "als",
        "newest",
        "newest_top_category",
        "fresh_popular",
        "trending_top_category",
    }
    for name, ids in lists.items():
        # The forbidden articles are each baseline's favourites: only the eligibility keeps them out.
        assert not {"future", "old", "read", "trained"} & set(ids), name
        assert set(ids) <= ELIGIBLE, name
    # The heuristics see the whole eligible set; ALS and popularity rank what they can score.
    for name in ("newest", "newest_top_category", "fresh_popular", "trending_top_category", "popularity"):
        assert set(lists[name]) == ELIGIBLE, name
    assert set(lists["als"]) == {"s2", "n2", "n3", "n4", "f1"}  # the trained eligible articles
    # The same rows the served model draws from: what it recommends is eligible here too.
    served = m.recommend(USER, k=50, now=NOW, user_features=FEATURES, articles=catalogue())
    assert served and {i.article_id for i in served} <= ELIGIBLE


def test_the_window_is_the_models_own() -> None:
    short = model(RuleSettings(max_age_hours=24.0))
    for name, ids in all_baselines(short).items():
        assert set(ids) <= {"s1", "n1", "n2", "f1"}, name


def test_a_user_without_factors_gets_eligible_popularity_from_als() -> None:
    lists = all_baselines(model(), user="stranger", features={})
    assert lists["als"] == lists["popularity"]
    assert "trained" in lists["popularity"] and "read" in lists["popularity"]  # not this user's history
    assert not {"future", "old"} & set(lists["popularity"])


# -- each ranking on a hand-made catalogue ---------------------------------------------------


def test_each_baseline_orders_as_documented() -> None:
    m = model()
    articles = catalogue()
    ok = eligible(m, USER, now_s=NOW.timestamp(), user_features=FEATURES, articles=articles)
    assert newest(articles, ok, k=10) == ["n1", "s1", "f1", "n2", "s2", "n3", "n4"]
    assert newest(articles, ok, k=3) == ["n1", "s1", "f1"]
    assert newest_top_category(articles, ok, k=10, user_features=FEATURES) == ["s1", "s2", "n1", "f1", "n2", "n3", "n4"]
    finance = {"top_category": "finance"}
    assert newest_top_category(articles, ok, k=3, user_features=finance) == ["f1", "n1", "s1"]
    # No top category (or one the catalogue lacks): newest.
    assert newest_top_category(articles, ok, k=10, user_features={}) == newest(articles, ok, k=10)
    assert newest_top_category(articles, ok, k=10, user_features={"top_category": "music"}) == newest(
        articles, ok, k=10
    )
    # Fresh (< 48 h) by yesterday's clicks, ties newest first (f1 5 h before n2 10 h, both 20;
    # n3 at 47 h is still fresh), then the older ones: n4 (60 h, 100 clicks) after every fresh one.
    assert fresh_popular(articles, ok, k=10, now_s=NOW.timestamp()) == ["s2", "f1", "n2", "n3", "s1", "n1", "n4"]
    # Popularity: trained popularity first, the untrained ones (0) after, newest first.
    assert popularity_eligible(m, ok, articles, k=10) == ["n4", "n2", "n3", "s2", "f1", "n1", "s1"]
    # ALS: factor scores (the user's factor is 1), trained articles only.
    assert als_eligible(m, USER, ok, articles, k=10, user_features=FEATURES) == ["f1", "n2", "n3", "s2", "n4"]


def test_strongest_heuristic_is_the_best_ndcg_among_the_heuristics_only() -> None:
    scores = {
        "popularity": {"ndcg@10": 0.10},
        "als": {"ndcg@10": 0.50},
        "newest": {"ndcg@10": 0.12},
        "newest_top_category": {"ndcg@10": 0.20},
        "fresh_popular": {"ndcg@10": 0.15},
        "oracle": {"ndcg@10": 0.90},
    }
    assert HEURISTICS == ("popularity", "newest", "newest_top_category", "fresh_popular", "trending_top_category")
    assert strongest(scores) == "newest_top_category"
    assert strongest({**scores, "newest": {"ndcg@10": 0.20}}) == "newest"  # a tie: the first listed


def test_trending_ranks_the_top_category_by_todays_clicks_decayed() -> None:
    m = model()
    base = catalogue()
    # At a 6 h half-life (the default is TRENDING_HALF_LIFE_HOURS) for round numbers below.
    ok = eligible(m, USER, now_s=NOW.timestamp(), user_features=FEATURES, articles=base)
    # Without counts: newest first inside each part (the decay alone), the top category first.
    assert trending_top_category(base, ok, k=10, now_s=NOW.timestamp(), user_features=FEATURES, half_life_hours=6.0) == [
        "s1", "s2", "n1", "f1", "n2", "n3", "n4"
    ]  # fmt: skip
    clicks = {"s2": 200.0, "n2": 10.0, "f1": 0.0, "n3": 1000.0}
    views = np.zeros(len(base))
    today = base.with_today(views, np.array([clicks.get(a, 0.0) for a in base.article_ids]))
    ok = eligible(m, USER, now_s=NOW.timestamp(), user_features=FEATURES, articles=today)
    # s2: 201 · 2^(-40/6) ≈ 2.0 beats s1: 1 · 2^(-2/6) ≈ 0.79. n2: 11 · 2^(-10/6) ≈ 3.46 > n1 0.94 > f1 0.56;
    # n3's 1001 clicks at 47 h weigh 1001 · 2^(-47/6) ≈ 4.4: first of the others.
    ranked = trending_top_category(today, ok, k=10, now_s=NOW.timestamp(), user_features=FEATURES, half_life_hours=6.0)
    assert ranked == ["s2", "s1", "n3", "n2", "n1", "f1", "n4"]
    # Without a top category: everything by the same key.
    assert trending_top_category(today, ok, k=3, now_s=NOW.timestamp(), user_features={}, half_life_hours=6.0) == [
        "n3",
        "n2",
        "s2",
    ]
    # The catalogue it came from still has no counts (with_today copies).
    assert not base.clicks_today.any() and today.clicks_today.sum() == 1210.0


# -- intervals -------------------------------------------------------------------------------


def test_paired_bootstrap_covers_a_known_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(2000)
    a = b + 0.05 + rng.normal(0.0, 0.2, 2000)  # true mean difference 0.05
    interval = paired_bootstrap(a, b, n_resamples=1000, seed=3)
    assert interval.lo < 0.05 < interval.hi
    assert interval.lo > 0.0  # a clear gain is seen as one
    assert interval.lo < interval.diff < interval.hi
    assert interval.diff == pytest.approx(float(np.mean(a - b)))
    assert interval.ratio == pytest.approx(float(a.mean() / b.mean()))
    assert interval.n == 2000
    # ~ ±1.96 · 0.2 / √2000 = ±0.0088 around the mean difference.
    assert interval.hi - interval.lo == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(2000), rel=0.15)
    assert paired_bootstrap(a, b, n_resamples=1000, seed=3) == interval
    assert paired_bootstrap(a, b, n_resamples=1000, seed=4) != interval
    # No difference: the interval straddles zero.
    same = paired_bootstrap(b + rng.normal(0.0, 0.2, 2000), b, n_resamples=1000, seed=3)
    assert same.lo < 0.0 < same.hi


def test_paired_bootstrap_resamples_users_not_requests() -> None:
    # 50 users with 20 requests each; a user's requests share that user's difference.
    rng = np.random.default_rng(2)
    per_user = rng.normal(0.02, 0.1, 50)
    diff = np.repeat(per_user, 20) + rng.normal(0.0, 0.01, 1000)
    users = np.repeat([f"u{i}" for i in range(50)], 20)
    b = np.full(1000, 0.5)
    clustered = paired_bootstrap(b + diff, b, users, seed=0)
    naive = paired_bootstrap(b + diff, b, seed=0)
    assert clustered.n == 50 and naive.n == 1000
    # Treating correlated requests as independent understates the spread about √20-fold.
    assert (clustered.hi - clustered.lo) > 3 * (naive.hi - naive.lo)
    assert clustered.diff == pytest.approx(naive.diff)
    # A constant difference has no spread at all.
    flat = paired_bootstrap(b + 0.03, b, users, seed=0)
    assert flat.lo == pytest.approx(0.03) and flat.hi == pytest.approx(0.03)


def test_off_policy_intervals_bracket_the_estimates_and_are_seeded() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    p = rng.uniform(0.05, 0.5, n)
    q = (rng.random(n) < 0.3).astype(float)
    c = (rng.random(n) < 0.2).astype(float)
    est = off_policy_ctr(c, p, q)
    got = off_policy_intervals(c, p, q, seed=1)
    assert got["ips_lo"] < est.ips_ctr < got["ips_hi"]
    assert got["snips_lo"] < est.snips_ctr < got["snips_hi"]
    assert off_policy_intervals(c, p, q, seed=1) == got
    assert off_policy_intervals(c, p, np.zeros(n), seed=1) == dict.fromkeys(got, 0.0)


# -- sessions --------------------------------------------------------------------------------


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(user, "HH:MM" on NOW's day, event type, article) rows, shuffled order on purpose."""
    frame = pd.DataFrame(rows, columns=["user_id", "hhmm", "event_type", "article_id"])
    frame["ts"] = [pd.Timestamp(f"2025-03-14 {t}", tz="UTC") for t in frame["hhmm"]]
    return frame.drop(columns="hhmm").iloc[::-1].reset_index(drop=True)


LOG = [
    ("ann", "08:00", "impression", "a1"),
    ("ann", "08:01", "click", "a1"),
    ("ann", "08:02", "read", "a1"),
    ("ann", "08:40", "impression", "a2"),  # 38 min after the last event: session 1
    ("ann", "08:41", "click", "a2"),
    ("ann", "09:05", "click", "a1"),  # 24 min gap: still session 1; a1 was clicked in session 0
    ("ann", "09:40", "impression", "a3"),  # 35 min: session 2
    ("ann", "09:41", "click", "a3"),  # a3 was read before D: no truth, no request
    ("bob", "08:00", "impression", "b1"),
    ("bob", "08:30", "click", "b1"),  # exactly 30 min: same session
    ("bob", "09:00", "impression", "b2"),  # 30 min again: the gap must exceed 30 min
    ("bob", "09:31", "click", "b2"),  # 31 min: session 1
    ("cy", "10:00", "impression", "c1"),  # no click: no request
]


def test_sessions_split_at_gaps_longer_than_30_minutes() -> None:
    sessions = split_sessions(_events(LOG))
    got = {
        (r.user_id, r.ts.strftime("%H:%M")): (r.session, r.session_start.strftime("%H:%M"))
        for r in sessions.itertuples()
    }
    assert got[("ann", "08:02")] == (0, "08:00")
    assert got[("ann", "08:40")] == (1, "08:40")
    assert got[("ann", "09:05")] == (1, "08:40")
    assert got[("ann", "09:41")] == (2, "09:40")
    assert got[("bob", "08:30")] == (0, "08:00")
    assert got[("bob", "09:00")] == (0, "08:00")
    assert got[("bob", "09:31")] == (1, "09:31")
    assert got[("cy", "10:00")] == (0, "10:00")
    assert len(sessions) == len(LOG)


def test_session_requests_ask_at_the_session_start_for_what_the_session_clicked() -> None:
    requests = session_requests(_events(LOG), {"ann": {"a3"}})
    at = {r.key: (r.user, r.now.strftime("%H:%M"), r.truth) for r in requests}
    assert at == {
        "ann#0": ("ann", "08:00", {"a1"}),
        "ann#1": ("ann", "08:40", {"a2"}),  # a1 again: already clicked in session 0
        "bob#0": ("bob", "08:00", {"b1"}),
        "bob#1": ("bob", "09:31", {"b2"}),
    }
    assert all(r.now.tzinfo is not None for r in requests)
    # A shorter gap splits more: bob's 30-minute pauses now start sessions.
    short = {r.key: r.now.strftime("%H:%M") for r in session_requests(_events(LOG), {"ann": {"a3"}}, gap_s=20 * 60)}
    assert short == {"ann#0": "08:00", "ann#1": "08:40", "bob#1": "08:30", "bob#3": "09:31"}


# -- the evaluation on the generated world ---------------------------------------------------


@pytest.mark.slow
def test_evaluation_summary_has_every_baseline_with_paired_intervals(world) -> None:  # type: ignore[no-untyped-def]
    metrics = world.evaluation.metrics
    assert set(metrics["baselines"]) == {*BASELINES, "oracle"}  # generated: the oracle is there
    for row in ("model", "model_first_event", *(f"baselines.{n}" for n in metrics["baselines"])):
        values = metrics[row] if "." not in row else metrics["baselines"][row.split(".")[1]]
        assert set(values) == set(METRIC_NAMES), row
    assert metrics["als"] is metrics["baselines"]["als"]
    assert metrics["popularity"] is metrics["baselines"]["popularity"]
    assert metrics["strongest_heuristic"] in HEURISTICS
    best = metrics["baselines"][metrics["strongest_heuristic"]]["ndcg@10"]
    assert all(metrics["baselines"][n]["ndcg@10"] <= best for n in HEURISTICS)
    assert set(metrics["paired"]) == set(metrics["baselines"])  # no champion in this world yet
    for name, p in metrics["paired"].items():
        assert set(p) == {"diff", "lo", "hi", "ratio", "n"}, name
        assert p["lo"] <= p["diff"] <= p["hi"], name
        assert p["n"] == world.evaluation.test_users
        assert p["diff"] == pytest.approx(metrics["model"]["ndcg@10"] - metrics["baselines"][name]["ndcg@10"])
    # The ceiling is above everything that does not know the generator.
    assert metrics["paired"]["oracle"]["hi"] < 0
    ope = metrics["ope"]
    assert ope["ips_lo"] <= ope["ips_ctr"] <= ope["ips_hi"] and ope["snips_lo"] <= ope["snips_ctr"] <= ope["snips_hi"]
    # Per-session requests: more of them than users, and later ones reach articles published later.
    assert world.evaluation.requests > world.evaluation.test_users
    json.dumps(metrics, allow_nan=False)  # the summary stays plain JSON


@pytest.mark.slow
def test_the_oracle_recomputes_the_generators_click_probabilities(world) -> None:  # type: ignore[no-untyped-def]
    oracle = load_oracle(world.settings, world.test.articles)
    assert oracle is not None
    ev = world.test.events
    shown = ev[(ev["event_type"] == "impression") & (ev["position"] == 0)].drop_duplicates("request_id")
    clicked = set(
        zip(*(ev.loc[ev["event_type"] == "click", c].astype(str) for c in ("request_id", "article_id")), strict=True)
    )
    articles = world.test.articles
    p, c = [], []
    for row in shown.itertuples():
        rows = np.array([articles.index[str(row.article_id)]])
        (prob,) = oracle.scores(str(row.user_id), rows, row.ts.timestamp())
        p.append(prob)
        c.append((str(row.request_id), str(row.article_id)) in clicked)
    p_arr, c_arr = np.array(p), np.array(c, dtype=float)
    assert len(p_arr) > 1000
    # Slot 0's position bias is 1: the generator clicked with exactly these probabilities.
    se = np.sqrt(np.mean(p_arr * (1 - p_arr)) / len(p_arr))
    assert abs(c_arr.mean() - p_arr.mean()) < 4 * se
    top, bottom = p_arr >= np.quantile(p_arr, 0.8), p_arr <= np.quantile(p_arr, 0.2)
    assert c_arr[top].mean() > 3 * c_arr[bottom].mean()


@pytest.mark.slow
def test_no_oracle_for_a_world_the_manifest_does_not_describe(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = read_manifest(world.settings)
    assert manifest is not None and manifest["seed"] == 11
    settings = world.settings.model_copy(update={"workdir": tmp_path})
    assert load_oracle(settings, world.test.articles) is None  # no manifest
    settings.bronze_articles_dir.mkdir(parents=True)
    (settings.bronze_articles_dir / MANIFEST_NAME).write_text(json.dumps({**manifest, "seed": 12}))
    assert load_oracle(settings, world.test.articles) is None  # another seed's catalogue
    (settings.bronze_articles_dir / MANIFEST_NAME).write_text(json.dumps({**manifest, "catalog": "evergreen"}))
    assert load_oracle(settings, world.test.articles) is None
    (settings.bronze_articles_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert load_oracle(settings, world.test.articles) is not None


@pytest.mark.slow
def test_the_oracles_parts_are_the_terms_of_the_click_model(world) -> None:  # type: ignore[no-untyped-def]
    from reco.generate import (
        CLICK_BASE_LOGIT,
        CLICK_CATEGORY_WEIGHT,
        HALF_LIFE_MEDIAN_S,
        POLICY_PRIOR_NOISE_SD,
        QUALITY_SD,
    )
    from reco.oracle import FULL_CLICK_MODEL

    oracle = load_oracle(world.settings, world.test.articles)
    assert oracle is not None
    request = world.test.requests[0]
    now_s = request.now.timestamp()
    rows = np.arange(len(world.test.articles))
    art, u = oracle.article[rows], oracle.user_index(request.user)
    cat, pop = oracle.world, oracle.population
    assert oracle.drift_day is None  # the world has no drift: the preference is the undrifted one
    pref_term = CLICK_CATEGORY_WEIGHT * np.log(13 * pop.preference[u][cat.category[art]] + 0.1)
    age_s = now_s - oracle.epoch_s - cat.published_s[art]

    def p(logit: np.ndarray, half_life: Any) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logit)) * np.exp2(-age_s / half_life)

    full = oracle.scores(request.user, rows, now_s)
    np.testing.assert_allclose(oracle.scores(request.user, rows, now_s, parts=FULL_CLICK_MODEL), full)
    taste = cat.taste[art] @ pop.taste[u]
    np.testing.assert_allclose(full, p(CLICK_BASE_LOGIT + pref_term + cat.quality[art] + taste, cat.half_life_s[art]))
    np.testing.assert_allclose(
        oracle.scores(request.user, rows, now_s, parts=frozenset({"preference"})),
        p(CLICK_BASE_LOGIT + pref_term, HALF_LIFE_MEDIAN_S),
    )
    shrink = QUALITY_SD**2 / (QUALITY_SD**2 + POLICY_PRIOR_NOISE_SD**2)
    np.testing.assert_allclose(
        oracle.scores(request.user, rows, now_s, parts=frozenset({"quality", "policy_prior", "half_life"})),
        p(CLICK_BASE_LOGIT + cat.quality[art] + shrink * cat.policy_prior[art], cat.half_life_s[art]),
    )
    with pytest.raises(ValueError, match="unknown click-model part"):
        oracle.scores(request.user, rows, now_s, parts=frozenset({"quality", "mood"}))


@pytest.mark.slow
def test_the_oracle_gap_table_agrees_with_the_evaluation(world) -> None:  # type: ignore[no-untyped-def]
    from reco.oracle_gap import LOGGED_QUALITY, VARIANTS, gap_rows

    rows = {row.name: row.ndcg for row in gap_rows(world.settings, world.model, world.test)}
    metrics = world.evaluation.metrics
    assert list(rows)[2:] == [*VARIANTS, LOGGED_QUALITY]
    # The same requests, truth and eligibility as the evaluation: its figures come back exactly.
    assert rows["served model (version unregistered)"] == pytest.approx(metrics["model"]["ndcg@10"])
    best = metrics["strongest_heuristic"]
    assert rows[f"strongest heuristic ({best})"] == pytest.approx(metrics["baselines"][best]["ndcg@10"])
    assert rows["oracle (full click model)"] == pytest.approx(metrics["baselines"]["oracle"]["ndcg@10"])
    # On the generated world an article's quality carries much of the ceiling.
    assert rows["oracle without quality"] < rows["oracle (full click model)"] - 0.02
    assert rows["preference only"] < rows["preference + quality"] - 0.02
    # Quality learnt from the clicks so far recovers part of that, not all of it.
    assert rows["oracle without quality"] < rows[LOGGED_QUALITY] < rows["oracle (full click model)"]


@pytest.mark.slow
def test_the_quality_learnt_from_the_log_is_the_posterior_mode_and_tracks_the_true_quality(world) -> None:  # type: ignore[no-untyped-def]
    from scipy.stats import spearmanr

    from reco.generate import QUALITY_SD
    from reco.oracle_gap import LoggedQuality

    oracle = load_oracle(world.settings, world.test.articles)
    assert oracle is not None
    logged = LoggedQuality(oracle, world.test.events)
    start = dt.datetime.combine(world.day, dt.time(), tzinfo=dt.UTC).timestamp()
    assert not logged.at(start).any()  # nothing logged yet: the prior's mean, 0
    q = logged.at(start + 86_399.0)
    shown = np.bincount(logged.article, minlength=logged.n_articles)
    many = shown >= 50
    assert many.sum() > 30 and not q[shown == 0].any()
    assert spearmanr(q[many], oracle.world.quality[many]).correlation > 0.3
    # The estimate maximises the log posterior: moving any well-shown article's value lowers it.
    keep = logged.at_s < np.floor((start + 86_399.0) / 300.0) * 300.0
    for a in np.flatnonzero(many)[:5]:
        mine = keep & (logged.article == a)

        def log_posterior(value: float, mine: np.ndarray = mine) -> float:
            p = logged.scale[mine] / (1.0 + np.exp(-(logged.logit[mine] + value)))
            y = logged.clicked[mine]
            return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) - value**2 / (2 * QUALITY_SD**2))

        assert log_posterior(q[a]) >= max(log_posterior(q[a] - 0.02), log_posterior(q[a] + 0.02))


@pytest.mark.slow
def test_the_oracle_gap_needs_a_generated_world(world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from reco.errors import RecoError
    from reco.oracle_gap import gap_rows

    settings = world.settings.model_copy(update={"workdir": tmp_path})  # no generator manifest there
    with pytest.raises(RecoError, match="no generator oracle"):
        gap_rows(settings, world.model, world.test)
