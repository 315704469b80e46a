"""One small world for the behaviour tests: generated traffic -> ingest -> features -> Feast ->
a trained, evaluated two-stage model (the real pipeline functions, in-process)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from reco.evaluate import EvalResult, TestDay, evaluate, load_test_day
from reco.features import build_features
from reco.featurestore import apply_and_materialize
from reco.generate import generate
from reco.ingest import ingest_date
from reco.lake import list_dates
from reco.model import TwoStageModel
from reco.settings import Settings
from reco.train import TrainConfig, TrainResult, load_run_model, train

END = dt.date(2025, 3, 14)
# One implicit thread: the test machines are small and shared; results do not depend on it.
CONFIG = TrainConfig(num_threads=1)


@dataclass
class World:
    settings: Settings
    day: dt.date  # the test day
    result: TrainResult
    evaluation: EvalResult
    model: TwoStageModel
    test: TestDay


def build_lake(workdir: Path, *, users: int, articles: int, days: int, seed: int) -> tuple[Settings, dt.date]:
    """Generated traffic ingested and featurized for every day; Feast applied with the day before the last."""
    settings = Settings(workdir=workdir)
    generate(settings, users=users, articles=articles, days=days, seed=seed, end=END)
    for day in list_dates(settings.bronze_events_dir):
        ingest_date(settings, day)
    silver = list_dates(settings.silver_events_dir)
    for day in silver:
        build_features(settings, day)
    test_day = silver[-1]
    apply_and_materialize(settings, test_day - dt.timedelta(days=1))
    return settings, test_day


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    settings, day = build_lake(tmp_path_factory.mktemp("model") / "work", users=1500, articles=500, days=7, seed=11)
    result = train(settings, day, CONFIG)
    evaluation = evaluate(settings, day, result.run_id)
    model = load_run_model(settings, result.run_id)
    return World(
        settings, day, result, evaluation, model, load_test_day(settings, day, max_age_hours=model.rules.max_age_hours)
    )
