"""Choosing ALS hyper-parameters on the validation day (``reco.train.als``): the task's truth and
eligibility, its NDCG, the grid's choice on a constructed case, pinning, and when no search runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import reco.train.als as als_module
from reco.settings import Settings
from reco.train.als import (
    MIN_VALIDATION_USERS,
    AlsFit,
    AlsValidation,
    als_pins,
    als_validation,
    build_matrix,
    choose_als,
    validation_ndcg,
)
from reco.train.config import ConfidenceWeights, TrainConfig

DAY = pd.Timestamp("2025-03-14", tz="UTC")  # the validation day
CONFIG = TrainConfig(num_threads=1)


def event(user: str, article: str, ts: pd.Timestamp, kind: str = "click") -> dict:
    return {"ts": ts, "user_id": user, "article_id": article, "event_type": kind, "dwell_ms": np.nan}


def small_log() -> tuple[pd.DataFrame, pd.DataFrame]:
    """u1 and u2 took articles before the day; on the day u1 takes old (a0, already taken) and new
    items, u2 a new one, u3 (no history) one; a9 is published after u1's first event of the day."""
    before = DAY - pd.Timedelta(hours=5)
    rows = [
        event("u1", "a0", before),
        event("u1", "a1", before),
        event("u2", "a2", before),
        event("u2", "a3", before),
        event("u3", "a4", before, "impression"),  # an impression is not history
        event("u1", "a0", DAY + pd.Timedelta(hours=1)),
        event("u1", "a2", DAY + pd.Timedelta(hours=1, minutes=1), "read"),
        event("u1", "a9", DAY + pd.Timedelta(hours=3)),
        event("u2", "a1", DAY + pd.Timedelta(hours=2)),
        event("u3", "a3", DAY + pd.Timedelta(hours=2)),
    ]
    published = {"a0": 400.0, "a1": 30.0, "a2": 20.0, "a3": 10.0, "a4": 10.0, "a9": -2.0}  # hours before DAY
    articles = pd.DataFrame(
        {
            "article_id": list(published),
            "published_at": [DAY - pd.Timedelta(hours=h) for h in published.values()],
            "category": "news",
        }
    )
    return pd.DataFrame(rows), articles


def test_validation_task_truth_and_eligibility() -> None:
    events, articles = small_log()
    matrix, partial = build_matrix(events, ConfidenceWeights(), before=DAY)
    assert partial is not None
    task = als_validation(matrix, partial, events, articles, DAY, max_age_hours=72.0, max_users=100, seed=1)
    users = matrix.user_ids[task.users].tolist()
    assert users == ["u1", "u2"]  # u3 has no history before the day
    items = matrix.item_ids
    truth = {u: set(items[task.truth[i].indices]) for i, u in enumerate(users)}
    assert truth == {"u1": {"a2", "a9"}, "u2": {"a1"}}  # a0 was u1's already
    eligible = {u: set(items[np.flatnonzero(task.eligible[i])]) for i, u in enumerate(users)}
    # a0 is older than 72 h, a9 is not published at u1's first event and has no training data,
    # and each user's own history is out.
    assert eligible == {"u1": {"a2", "a3"}, "u2": {"a1"}}
    assert task.day == "2025-03-14"


def constructed_task(n_users: int = 60, n_items: int = 30) -> AlsValidation:
    """User i's truth is item i % n_items; everything is eligible except item n_items - 1."""
    truth = sp.csr_matrix(
        (np.ones(n_users), (np.arange(n_users), np.arange(n_users) % n_items)), shape=(n_users, n_items)
    )
    eligible = np.ones((n_users, n_items), dtype=bool)
    eligible[:, -1] = False
    return AlsValidation("2025-03-14", np.arange(n_users), truth, eligible)


def test_validation_ndcg_of_perfect_wrong_and_ineligible_factors() -> None:
    task = constructed_task()
    n_users, n_items = task.truth.shape
    items = np.eye(n_items, dtype=np.float32)
    perfect = items[np.arange(n_users) % n_items]
    # Every user whose truth is eligible finds it first; the others (truth = the ineligible item) never do.
    reachable = np.mean(np.arange(n_users) % n_items != n_items - 1)
    assert validation_ndcg(perfect, items, task) == pytest.approx(reachable)
    # The truth item second (unless the item above it is the ineligible one): 1 / log2(3).
    second = perfect + 2.0 * items[(np.arange(n_users) + 1) % n_items]
    lifted = (np.arange(n_users) + 1) % n_items == n_items - 1
    expected = np.where(lifted, 1.0, 1.0 / np.log2(3.0))[np.arange(n_users) % n_items != n_items - 1].sum() / n_users
    assert validation_ndcg(second, items, task) == pytest.approx(expected)
    # The truth last of the 29 eligible items: out of the top 10.
    assert validation_ndcg(-perfect, items, task) == 0.0


def fake_fits(monkeypatch: pytest.MonkeyPatch, quality: dict[tuple[int, float, float], float]) -> list[TrainConfig]:
    """fit_als returns factors whose NDCG on ``constructed_task`` is ``quality[(f, reg, alpha)]``:
    that share of users gets the truth first, the others nothing. Returns the configs fitted."""
    fitted: list[TrainConfig] = []
    task = constructed_task()
    n_users, n_items = task.truth.shape
    items = np.eye(n_items, dtype=np.float32)

    def fit_als(full: object, partial: object, config: TrainConfig, device: object = None) -> AlsFit:
        fitted.append(config)
        share = quality[(config.factors, config.regularization, config.alpha)]
        users = -items[np.arange(n_users) % n_items]  # the truth last
        good = np.arange(n_users) < round(share * n_users)
        users[good] = items[np.arange(n_users) % n_items][good]
        return AlsFit(users, items, None, 0.01)

    monkeypatch.setattr(als_module, "fit_als", fit_als)
    return fitted


GRID = {"als_grid_factors": (4, 16), "als_grid_regularization": (0.1,), "als_grid_alpha": (1.0, 20.0)}


def test_the_grid_picks_the_best_point_and_records_every_score(monkeypatch: pytest.MonkeyPatch) -> None:
    quality = {(4, 0.1, 1.0): 0.2, (4, 0.1, 20.0): 0.5, (16, 0.1, 1.0): 0.9, (16, 0.1, 20.0): 0.4}
    fitted = fake_fits(monkeypatch, quality)
    config = dataclasses.replace(CONFIG, **GRID)
    partial = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    chosen, choice = choose_als(config, {}, constructed_task, partial)
    assert (chosen.factors, chosen.regularization, chosen.alpha) == (16, 0.1, 1.0)
    assert choice.how == "grid"
    assert len(choice.scores) == 4 and len(fitted) == 4
    best = max(choice.scores, key=lambda p: p["ndcg@10"])
    assert (best["factors"], best["alpha"]) == (16, 1.0)
    # Fitted as phase 1 is: on the days before the validation day, iterations minus the warm ones.
    assert {c.iterations for c in fitted} == {CONFIG.iterations - CONFIG.warm_iterations}
    # What the run then fits keeps the config's iterations.
    assert chosen.iterations == CONFIG.iterations
    summary = choice.summary()
    assert summary["chosen"] == {"factors": 16, "regularization": 0.1, "alpha": 1.0}
    assert summary["validation_users"] == 60
    assert "als_grid.f16_r0.1_a1.ndcg_at_10" in choice.metrics()


def test_ties_go_to_the_first_point_of_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_fits(monkeypatch, dict.fromkeys([(4, 0.1, 1.0), (4, 0.1, 20.0), (16, 0.1, 1.0), (16, 0.1, 20.0)], 0.5))
    partial = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    chosen, _ = choose_als(dataclasses.replace(CONFIG, **GRID), {}, constructed_task, partial)
    assert (chosen.factors, chosen.alpha) == (4, 1.0)


def test_pinning_every_value_skips_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = fake_fits(monkeypatch, {})
    settings = Settings(workdir="/nonexistent", als_factors=8, als_regularization=0.3, als_alpha=3.0)

    def no_task() -> AlsValidation:
        raise AssertionError("a pinned run builds no validation task")

    partial = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    chosen, choice = choose_als(CONFIG, als_pins(settings), no_task, partial)
    assert (chosen.factors, chosen.regularization, chosen.alpha) == (8, 0.3, 3.0)
    assert choice.how == "pinned" and not fitted and not choice.scores
    assert choice.summary()["pinned"] == {"factors": 8, "regularization": 0.3, "alpha": 3.0}


def test_a_pinned_value_is_not_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    quality = {(16, 0.1, 1.0): 0.3, (16, 0.1, 20.0): 0.6}
    fitted = fake_fits(monkeypatch, quality)
    partial = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    pins = {"factors": 16, "regularization": None, "alpha": None}
    chosen, choice = choose_als(dataclasses.replace(CONFIG, **GRID), pins, constructed_task, partial)
    assert [c.factors for c in fitted] == [16, 16]
    assert (chosen.factors, chosen.alpha) == (16, 20.0)
    assert choice.how == "grid" and choice.pinned == {"factors": 16}


def test_no_search_without_a_validation_day_or_enough_users(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = fake_fits(monkeypatch, {})
    partial = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    _, single = choose_als(CONFIG, {}, constructed_task, None)
    assert single.how.startswith("default: a single training day")
    few = constructed_task(n_users=MIN_VALIDATION_USERS - 1)
    chosen, thin = choose_als(CONFIG, {}, lambda: few, partial)
    assert thin.how.startswith(f"default: {MIN_VALIDATION_USERS - 1} validation users")
    assert (chosen.factors, chosen.regularization, chosen.alpha) == (
        CONFIG.factors,
        CONFIG.regularization,
        CONFIG.alpha,
    )
    _, off = choose_als(dataclasses.replace(CONFIG, search_als=False), {}, constructed_task, partial)
    assert off.how == "default: the search is off in the training config"
    assert not fitted


def test_the_real_grid_fits_and_scores_a_clustered_log() -> None:
    """Two reader groups, each reading its own half of the items: any sensible ALS finds the
    held-out item of the reader's own half, so every grid point scores well above chance."""
    rng = np.random.default_rng(5)
    rows = []
    for u in range(60):
        group = u % 2
        own = [f"g{group}-{i}" for i in range(10)]
        picks = rng.permutation(own)
        rows += [event(f"u{u}", a, DAY - pd.Timedelta(hours=10 + j)) for j, a in enumerate(picks[:6])]
        rows.append(event(f"u{u}", picks[6], DAY + pd.Timedelta(hours=1)))
    events = pd.DataFrame(rows)
    ids = sorted(set(events["article_id"]))
    articles = pd.DataFrame({"article_id": ids, "published_at": DAY - pd.Timedelta(days=2), "category": "x"})
    matrix, partial = build_matrix(events, ConfidenceWeights(), before=DAY)
    config = dataclasses.replace(CONFIG, als_grid_factors=(2, 4), als_grid_regularization=(0.1,), als_grid_alpha=(5.0,))

    def task() -> AlsValidation:
        assert partial is not None
        return als_validation(matrix, partial, events, articles, DAY, max_age_hours=72.0, max_users=1000, seed=1)

    chosen, choice = choose_als(config, {}, task, partial)
    assert choice.how == "grid" and choice.validation_users == 60
    # Chance: the held-out item is one of 14 unread eligible items -> NDCG@10 about 0.3; own half: 4 left.
    assert min(p["ndcg@10"] for p in choice.scores) > 0.5
    assert chosen.factors in (2, 4)
