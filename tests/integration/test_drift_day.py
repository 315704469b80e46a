"""Drift on generated traffic: the real generator, ingest and features, then ``monitor``.

Two lakes from one seed: one whose readers change from day 15 of 16 (``drift_day``), and its
twin without drift. The generator keys its randomness by day, so both lakes hold the same
events up to the day before the drift: the quiet day is the same day in both, and on the drift
day the only difference between them is the drift itself.

Sizes: 2,000 users and 16 days. Fewer days would put the quiet day's reference in the lake's
first week, when the 7-day feature windows are still filling and every day looks drifted
(measured with 800 users / 400 articles / 10 days: share 0.6 on quiet day 6); fewer users make
the 24h article features too noisy to tell a quiet day from a drifted one.

Measured (seed 11): quiet day 14 share 0.1 (ctr_24h only); drift day 15 share 0.3 (views_24h,
clicks_24h, ctr_24h); day 16 share 0.4 (+ top_category); the twin 0.1 on day 15. The 24h article
features move on the drift day itself; the user features, computed over 7 and 30 days, follow as
drifted days fill their windows. (avg_session_len_s sometimes adds 0.1 on any day: the feature
is not deterministic yet, see the features module's session window.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reco.drift import DriftResult, monitor
from reco.features import build_features
from reco.generate import generate
from reco.ingest import ingest_date
from reco.settings import Settings
from reco.train import ensure_experiment

END = dt.date(2024, 3, 14)
DAYS = 16
USERS = 2_000
ARTICLES = 2_000
DRIFT_DAY = 15  # 1-based
DRIFT_DATE = END - dt.timedelta(days=DAYS - DRIFT_DAY)
QUIET_DATE = DRIFT_DATE - dt.timedelta(days=1)
DAY_AFTER = DRIFT_DATE + dt.timedelta(days=1)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Lake:
    settings: Settings
    results: dict[dt.date, DriftResult]
    run_id: str | None = None


def build_lake(workdir: Path, drift_day: int | None) -> Lake:
    settings = Settings(workdir=workdir)
    generate(settings, users=USERS, articles=ARTICLES, days=DAYS, seed=11, end=END, drift_day=drift_day)
    for offset in range(DAYS - 1, -1, -1):
        day = END - dt.timedelta(days=offset)
        ingest_date(settings, day)
        build_features(settings, day)
    return Lake(settings, {})


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = build_lake(tmp_path_factory.mktemp("drifted") / "work", DRIFT_DAY)
    lake.results[QUIET_DATE] = monitor(lake.settings, QUIET_DATE)
    # The drift day is monitored as the pipeline does it: attached to the day's MLflow run.
    client = MlflowClient(tracking_uri=lake.settings.tracking_uri)
    lake.run_id = client.create_run(ensure_experiment(lake.settings)).info.run_id
    lake.results[DRIFT_DATE] = monitor(lake.settings, DRIFT_DATE, run_id=lake.run_id)
    lake.results[DAY_AFTER] = monitor(lake.settings, DAY_AFTER)
    return lake


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = build_lake(tmp_path_factory.mktemp("twin") / "work", None)
    lake.results[DRIFT_DATE] = monitor(lake.settings, DRIFT_DATE)
    return lake


def test_quiet_day_does_not_recommend_retraining(drifted: Lake) -> None:
    quiet = drifted.results[QUIET_DATE]
    assert quiet.share <= quiet.threshold, quiet.columns
    assert quiet.retrain_recommended is False
    assert "article_stats.views_24h" not in quiet.drifted
    assert len(quiet.reference_dates) == 7
    assert quiet.warmup is False  # the reference starts after the 7-day windows filled
    assert "overstate drift" not in quiet.note
    assert Path(quiet.report_path).is_file()


def test_drift_day_moves_the_features_the_drift_touches(drifted: Lake, twin: Lake) -> None:
    drift, same_day_without = drifted.results[DRIFT_DATE], twin.results[DRIFT_DATE]
    # Same reference snapshots on both sides (identical history), so every difference is the drift's.
    assert drift.reference_dates == same_day_without.reference_dates
    # Drifted readers come back more often: more impressions per article.
    assert "article_stats.views_24h" in drift.drifted
    assert "article_stats.views_24h" not in same_day_without.drifted
    assert drift.columns["article_stats.views_24h"] > 2 * same_day_without.columns["article_stats.views_24h"]
    assert drift.share > same_day_without.share
    assert same_day_without.retrain_recommended is False
    # ...and click less of what the serving policy, which follows them only halfway, shows them.
    assert drift.ctr_change is not None and same_day_without.ctr_change is not None
    assert drift.ctr_change < same_day_without.ctr_change


def test_retraining_is_recommended_by_the_day_after_the_drift(drifted: Lake) -> None:
    drift, after = drifted.results[DRIFT_DATE], drifted.results[DAY_AFTER]
    # On the drift day only the 24h article features can have moved (views, clicks, CTR: 3 of 10
    # columns, so the share reaches the threshold without passing it); the user features count
    # 7 and 30 days of events and follow as drifted days fill their windows.
    assert {"article_stats.views_24h", "article_stats.clicks_24h", "article_stats.ctr_24h"} <= set(drift.drifted)
    assert drift.share >= drift.threshold == 0.3
    assert after.share > after.threshold, after.columns
    assert after.retrain_recommended is True
    assert "user_stats.top_category" in after.drifted
    # What was recommended and what was clicked moved too (the policy half-follows the readers).
    quiet = drifted.results[QUIET_DATE]
    assert drift.category_mix_shift > 2 * quiet.category_mix_shift
    assert drift.clicked_category_mix_shift > 2 * quiet.clicked_category_mix_shift
    assert drift.ctr_trend[-1]["date"] == DRIFT_DATE.isoformat()


def test_report_and_figures_are_logged_to_the_mlflow_run(drifted: Lake) -> None:
    assert drifted.run_id is not None
    result = drifted.results[DRIFT_DATE]
    client = MlflowClient(tracking_uri=drifted.settings.tracking_uri)
    run = client.get_run(drifted.run_id)
    assert run.data.metrics["drift_share"] == pytest.approx(result.share)
    assert run.data.metrics["drift_score.article_stats.views_24h"] == pytest.approx(
        result.columns["article_stats.views_24h"]
    )
    assert run.data.metrics["drift_ctr_change"] == pytest.approx(result.ctr_change)
    assert run.data.tags["drift_retrain_recommended"] == str(result.retrain_recommended).lower()
    folder = f"drift/{DRIFT_DATE.isoformat()}"
    assert {item.path for item in client.list_artifacts(drifted.run_id, folder)} == {
        f"{folder}/drift.html",
        f"{folder}/drift.json",
    }
