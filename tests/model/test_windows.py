"""The model's time windows learned from the click-age distribution (``reco.train.windows``): news-like
hours vs evergreen months, floors and caps, too little data, overrides, the CTR half-life, and the
fresh window as the fresh candidate sources use it."""

from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest

from reco.model import ArticleFeatures, RuleSettings, TwoStageModel
from reco.schemas import UNKNOWN_CATEGORY
from reco.settings import Settings
from reco.train import TrainConfig, load_run_model, train
from reco.train.rules_choice import NO_DECAY_HOURS
from reco.train.windows import (
    FRESH_BOUNDS,
    HALF_LIFE_BOUNDS,
    MAX_AGE_BOUNDS,
    MIN_CLICKS,
    censored_by_log,
    click_ages_hours,
    ctr_half_life,
    learn_windows,
    training_windows,
)
from services.recommend.exploration import DEFAULT_POOL_MAX_AGE_HOURS, pool_max_age_hours
from services.recommend.settings import ServiceSettings

from .conftest import World

NOW = pd.Timestamp("2025-03-14 12:00", tz="UTC")
DAY_H = 24.0


def news_ages(n: int = 20_000, seed: int = 1) -> np.ndarray:
    """Click ages of a news site: exponential with an 8 h median, nothing shown past 72 h."""
    ages = np.random.default_rng(seed).exponential(8.0 / np.log(2.0), 3 * n)
    return ages[ages < 72.0][:n]


def evergreen_ages(n: int = 20_000, seed: int = 2) -> np.ndarray:
    """Click ages of a blog: items published over 180 days, interest halving every 60 days."""
    rng = np.random.default_rng(seed)
    ages = rng.exponential(60.0 * DAY_H / np.log(2.0), 4 * n)
    return ages[ages < 180.0 * DAY_H][:n]


def test_news_click_ages_keep_hour_to_day_windows() -> None:
    ages = news_ages()
    windows = learn_windows(ages)
    q99, q95, q50 = np.quantile(ages, [0.99, 0.95, 0.5])
    assert windows.max_age_hours == np.ceil(1.25 * q99)
    assert 48.0 <= windows.max_age_hours <= 96.0  # hours to days, near the old fixed 72 h
    assert windows.fresh_max_age_hours == np.ceil(1.25 * q95) < windows.max_age_hours
    # No impressions: the half-life is the median click age.
    assert windows.half_life_hours == round(q50)
    assert windows.sources["half_life_hours"].startswith("learned: median click age")
    assert windows.click_age_hours["n"] == len(ages)


def test_evergreen_click_ages_give_windows_of_months() -> None:
    windows = learn_windows(evergreen_ages())
    assert 150 * DAY_H <= windows.max_age_hours <= MAX_AGE_BOUNDS[1]
    assert 30 * DAY_H <= windows.half_life_hours <= 90 * DAY_H
    assert windows.fresh_max_age_hours > 30 * DAY_H
    news = learn_windows(news_ages())
    assert windows.max_age_hours > 20 * news.max_age_hours


def test_a_ctr_half_life_wins_over_the_median_click_age() -> None:
    windows = learn_windows(news_ages(), ctr_half_life_hours=(23.6, "CTR by age"))
    assert windows.half_life_hours == 24.0
    assert windows.sources["half_life_hours"] == "learned: CTR by age, 23.6 h"


def test_floors_and_caps() -> None:
    minutes = np.full(MIN_CLICKS, 0.2)
    low = learn_windows(minutes)
    assert (low.max_age_hours, low.fresh_max_age_hours, low.half_life_hours) == (
        MAX_AGE_BOUNDS[0],
        FRESH_BOUNDS[0],
        HALF_LIFE_BOUNDS[0],
    )
    assert "floor" in low.sources["max_age_hours"] and "floor" in low.sources["half_life_hours"]

    years = np.full(MIN_CLICKS, 3 * 365 * DAY_H)
    high = learn_windows(years)
    assert (high.max_age_hours, high.fresh_max_age_hours, high.half_life_hours) == (
        MAX_AGE_BOUNDS[1],
        FRESH_BOUNDS[1],
        HALF_LIFE_BOUNDS[1],
    )
    assert "cap" in high.sources["max_age_hours"]


def test_fresh_never_exceeds_max_age_unless_overridden() -> None:
    ages = np.full(MIN_CLICKS, 30.0)  # q95 = q99: fresh would equal max age anyway
    windows = learn_windows(ages, overrides={"max_age_hours": 20.0})
    assert windows.max_age_hours == 20.0
    assert windows.fresh_max_age_hours == 20.0
    assert windows.sources["fresh_max_age_hours"].endswith("cut to max_age_hours")
    both = learn_windows(ages, overrides={"max_age_hours": 20.0, "fresh_max_age_hours": 30.0})
    assert both.fresh_max_age_hours == 30.0


def test_too_few_clicks_keep_the_defaults() -> None:
    defaults = RuleSettings(max_age_hours=50.0, half_life_hours=10.0, fresh_max_age_hours=30.0)
    windows = learn_windows(news_ages(MIN_CLICKS - 1), defaults=defaults)
    assert (windows.max_age_hours, windows.half_life_hours, windows.fresh_max_age_hours) == (50.0, 10.0, 30.0)
    assert all(source.startswith("default:") for source in windows.sources.values())


def test_an_override_wins_and_says_so() -> None:
    windows = learn_windows(
        evergreen_ages(), overrides={"max_age_hours": 5.0, "half_life_hours": None, "fresh_max_age_hours": 2.0}
    )
    # Below the floors: an override is taken as given.
    assert windows.max_age_hours == 5.0 and windows.fresh_max_age_hours == 2.0
    assert windows.sources["max_age_hours"] == "override: RECO_WINDOW_MAX_AGE_HOURS=5"
    assert windows.sources["fresh_max_age_hours"] == "override: RECO_WINDOW_FRESH_HOURS=2"
    assert windows.sources["half_life_hours"].startswith("learned:")
    rules = windows.rules(RuleSettings(max_per_category=3))
    assert (rules.max_age_hours, rules.fresh_max_age_hours, rules.max_per_category) == (5.0, 2.0, 3)
    assert windows.summary()["source"] == windows.sources


def test_training_windows_read_the_settings_overrides() -> None:
    events, articles = click_log(news_ages(2_000))
    settings = Settings(workdir="/nonexistent", window_half_life_hours=12.0)
    windows = training_windows(settings, events, articles, RuleSettings())
    assert windows.half_life_hours == 12.0
    assert windows.sources["half_life_hours"] == "override: RECO_WINDOW_HALF_LIFE_HOURS=12"
    assert windows.sources["max_age_hours"].startswith("learned:")
    fixed = training_windows(Settings(workdir="/nonexistent"), events, articles, RuleSettings(), learn=False)
    assert (fixed.max_age_hours, fixed.half_life_hours) == (72.0, 24.0)
    assert fixed.sources["max_age_hours"] == "default: learning is off in the training config"


def click_log(ages_hours: np.ndarray, kind: str = "click") -> tuple[pd.DataFrame, pd.DataFrame]:
    """One event per age: article i clicked ``ages_hours[i]`` after its publication, at NOW."""
    n = len(ages_hours)
    ids = [f"a{i}" for i in range(n)]
    published = NOW - pd.to_timedelta(ages_hours, unit="h")
    events = pd.DataFrame({"ts": [NOW] * n, "user_id": "u", "article_id": ids, "event_type": kind})
    articles = pd.DataFrame({"article_id": ids, "published_at": published, "category": "news"})
    return events, articles


def test_click_ages_use_reads_without_clicks_and_skip_unknown_articles() -> None:
    events, articles = click_log(np.array([1.0, 5.0, 10.0]), kind="read")
    events.loc[len(events)] = [NOW, "u", "not-in-metadata", "read"]
    # A clock ahead of the metadata: the article was "published" after the click.
    articles.loc[0, "published_at"] = NOW + pd.Timedelta(hours=1)
    np.testing.assert_allclose(np.sort(click_ages_hours(events, articles)), [0.0, 5.0, 10.0])
    with_click = pd.concat(
        [events, pd.DataFrame({"ts": [NOW], "user_id": "u", "article_id": ["a2"], "event_type": ["click"]})]
    )
    np.testing.assert_allclose(click_ages_hours(with_click, articles), [10.0])


def derived_log(item_life_h: float, first_within_h: float, seed: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 14-day click log without metadata: 300 articles, each first seen within ``first_within_h``
    of the log's start and clicked 20 times within ``item_life_h`` of it (cut at the log's end); the
    articles are dated by their first event, as an import derives them."""
    rng = np.random.default_rng(seed)
    start, span_h = NOW - pd.Timedelta(days=14), 14 * DAY_H
    first = rng.uniform(0.0, first_within_h, 300)
    offsets = np.concatenate([[0.0], np.sort(rng.uniform(0.0, item_life_h, 19))])
    at = (first[:, None] + offsets[None, :]).ravel()
    article = np.repeat([f"d{i}" for i in range(300)], 20)
    keep = at < span_h
    events = pd.DataFrame(
        {
            "ts": start + pd.to_timedelta(at[keep], unit="h"),
            "user_id": "u",
            "article_id": article[keep],
            "event_type": "click",
        }
    )
    seen = events.groupby("article_id")["ts"].min()
    articles = pd.DataFrame({"article_id": seen.index, "published_at": seen.to_numpy(), "category": UNKNOWN_CATEGORY})
    return events, articles


def test_derived_articles_whose_ages_reach_the_logs_length_leave_the_windows_open() -> None:
    # A catalogue read for months, seen through a 14-day log (every article is live from its first
    # day): ages are the log's length.
    events, articles = derived_log(item_life_h=120 * DAY_H, first_within_h=DAY_H)
    why = censored_by_log(events, articles)
    assert why is not None and "first event" in why
    windows = training_windows(Settings(workdir="/nonexistent"), events, articles, RuleSettings())
    assert (windows.max_age_hours, windows.half_life_hours, windows.fresh_max_age_hours) == (
        MAX_AGE_BOUNDS[1],
        HALF_LIFE_BOUNDS[1],
        FRESH_BOUNDS[1],
    )
    assert all(source.startswith("open:") for source in windows.sources.values())
    # A news log without metadata: clicks end within two days of a first event, the windows are learned.
    news_events, news_articles = derived_log(item_life_h=48.0, first_within_h=14 * DAY_H)
    assert censored_by_log(news_events, news_articles) is None
    assert (
        training_windows(Settings(workdir="/nonexistent"), news_events, news_articles, RuleSettings()).max_age_hours
        < 72
    )
    # Described articles are dated by their metadata: never censored.
    assert censored_by_log(events, articles.assign(category="news")) is None


def impression_log(half_life_h: float | None, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Impressions at ages uniform in [0, 72) h, clicked with CTR 0.2 · 2^(-age / half-life)."""
    rng = np.random.default_rng(seed)
    n = 40_000
    ages = rng.uniform(0.0, 72.0, n)
    ctr = 0.2 * (np.exp2(-ages / half_life_h) if half_life_h else np.ones(n))
    clicked = rng.random(n) < ctr
    ids = np.array([f"a{i}" for i in range(n)])
    published = NOW - pd.to_timedelta(ages, unit="h")
    events = pd.concat(
        [
            pd.DataFrame({"ts": NOW, "user_id": "u", "article_id": ids, "event_type": "impression"}),
            pd.DataFrame({"ts": NOW, "user_id": "u", "article_id": ids[clicked], "event_type": "click"}),
        ],
        ignore_index=True,
    )
    return events, pd.DataFrame({"article_id": ids, "published_at": published, "category": "news"})


@pytest.mark.parametrize("half_life", [12.0, 30.0])
def test_ctr_half_life_recovers_the_decay_of_the_click_through_rate(half_life: float) -> None:
    events, articles = impression_log(half_life)
    found = ctr_half_life(events, articles)
    assert found is not None
    assert found[0] == pytest.approx(half_life, rel=0.15)
    assert "impressions" in found[1]


def test_a_flat_ctr_gives_a_long_half_life_and_no_impressions_none() -> None:
    flat_events, flat_articles = impression_log(None)
    found = ctr_half_life(flat_events, flat_articles)
    assert found is not None and found[0] > 300.0  # days or more: no decay within the 72 h shown
    assert learn_windows(news_ages(), ctr_half_life_hours=(np.inf, "no decay")).half_life_hours == HALF_LIFE_BOUNDS[1]
    events, articles = impression_log(20.0)
    assert ctr_half_life(events[events["event_type"] == "click"], articles) is None


# -- the fresh window as the candidate sources use it --------------------------------------------


def tiny_model(rules: RuleSettings) -> tuple[TwoStageModel, ArticleFeatures]:
    """Articles a0..a9 published 1..10 h before NOW, alternating sports/tech; one known user."""
    n = 10
    frame = pd.DataFrame(
        {
            "article_id": [f"a{i}" for i in range(n)],
            "category": ["sports" if i % 2 == 0 else "tech" for i in range(n)],
            "published_at": [NOW.to_pydatetime() - dt.timedelta(hours=1 + i) for i in range(n)],
            "clicks_24h": [5] * n,
        }
    )
    model = TwoStageModel(
        user_ids=np.array(["zed"], dtype=object),
        item_ids=np.array(["a9"], dtype=object),
        user_factors=np.ones((1, 2), dtype=np.float32),
        item_factors=np.ones((1, 2), dtype=np.float32),
        history_indptr=np.array([0, 0]),
        history_items=np.empty(0, dtype=np.int32),
        popularity=np.ones(1, dtype=np.float32),
        item_users=np.ones(1, dtype=np.int32),
        regularization=0.1,
        alpha=2.0,
        fold_in_confidence=1.0,
        rules=rules,
    )
    return model, ArticleFeatures.from_frame(frame)


@pytest.mark.parametrize(("fresh_hours", "expected"), [(3.5, {"a0", "a1", "a2"}), (48.0, {f"a{i}" for i in range(6)})])
def test_fresh_candidates_come_from_the_fresh_window(fresh_hours: float, expected: set[str]) -> None:
    rules = RuleSettings(
        n_als=0, n_popular=0, n_fresh=6, n_category_fresh=0, max_per_category=0, fresh_max_age_hours=fresh_hours
    )
    model, articles = tiny_model(rules)
    # A reader without factors but with a category history goes through the candidate sources.
    features = {"category_clicks": {"sports": 3}}
    items = model.recommend("new", k=10, now=NOW.to_pydatetime(), user_features=features, articles=articles)
    assert {i.article_id for i in items} == expected
    assert {i.reason for i in items} == {"fresh"}


def test_category_fresh_candidates_come_from_the_fresh_window() -> None:
    rules = RuleSettings(
        n_als=0, n_popular=0, n_fresh=0, n_category_fresh=5, max_per_category=0, fresh_max_age_hours=5.5
    )
    model, articles = tiny_model(rules)
    features = {"category_clicks": {"tech": 3}}
    items = model.recommend("new", k=10, now=NOW.to_pydatetime(), user_features=features, articles=articles)
    # tech articles are a1, a3, a5, ... (2, 4, 6 h old): only those younger than 5.5 h.
    assert {i.article_id for i in items} == {"a1", "a3"}
    assert {i.reason for i in items} == {"category_fresh"}


# -- in a training run ---------------------------------------------------------------------------


def test_training_learns_the_windows_chooses_als_and_stores_both_with_the_model(world: World) -> None:
    result = world.result
    windows, grid = result.windows, result.als_grid
    rules = world.model.rules
    # The generated news world keeps hour-to-day windows, and the saved model carries them.
    assert 48.0 <= windows["max_age_hours"] <= 96.0 and 12.0 <= windows["half_life_hours"] <= 36.0
    # The decay is then kept at the learned half-life or switched off on the validation day (rules_choice).
    decay = result.rules_choice["chosen"]["decay"]
    assert (rules.max_age_hours, rules.half_life_hours, rules.fresh_max_age_hours) == (
        windows["max_age_hours"],
        windows["half_life_hours"] if decay else NO_DECAY_HOURS,
        windows["fresh_max_age_hours"],
    )
    assert windows["source"]["half_life_hours"].startswith("learned: CTR by age")
    assert grid["how"] == "grid" and len(grid["scores"]) == 12
    assert (world.model.n_factors, world.model.regularization, world.model.alpha) == (
        grid["chosen"]["factors"],
        grid["chosen"]["regularization"],
        grid["chosen"]["alpha"],
    )
    run = mlflow.MlflowClient(world.settings.tracking_uri).get_run(result.run_id)
    assert run.data.params["rules.max_age_hours"] == str(windows["max_age_hours"])
    assert run.data.params["factors"] == str(grid["chosen"]["factors"])
    assert run.data.tags["als_grid.how"] == "grid"
    assert run.data.tags["windows.max_age_hours"] == windows["source"]["max_age_hours"]
    assert "als_grid_seconds" in run.data.metrics

    # Settings override the windows and pin ALS: no search, and the run says so.
    settings = world.settings.model_copy(
        update={"window_max_age_hours": 30.0, "als_factors": 8, "als_regularization": 0.2, "als_alpha": 3.0}
    )
    pinned = train(settings, world.day, TrainConfig(num_threads=1))
    assert pinned.windows["max_age_hours"] == 30.0
    assert pinned.windows["source"]["max_age_hours"] == "override: RECO_WINDOW_MAX_AGE_HOURS=30"
    assert pinned.windows["fresh_max_age_hours"] <= 30.0
    assert pinned.als_grid["how"] == "pinned" and "scores" not in pinned.als_grid
    model = load_run_model(settings, pinned.run_id)
    assert (model.rules.max_age_hours, model.n_factors, model.regularization, model.alpha) == (30.0, 8, 0.2, 3.0)


def test_the_exploration_pool_takes_the_models_fresh_window_unless_the_service_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _ = tiny_model(RuleSettings(fresh_max_age_hours=2000.0))
    assert pool_max_age_hours(model, None) == 2000.0
    assert pool_max_age_hours(model, 12.0) == 12.0
    assert pool_max_age_hours(None, None) == DEFAULT_POOL_MAX_AGE_HOURS
    # Whether the service sets one is whether the environment says so, not the field's default.
    assert "exploration_max_age_hours" not in ServiceSettings().model_fields_set
    monkeypatch.setenv("RECO_EXPLORATION_MAX_AGE_HOURS", "10")
    assert "exploration_max_age_hours" in ServiceSettings().model_fields_set
