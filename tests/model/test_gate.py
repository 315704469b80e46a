"""The registry's quality gate with real MLflow (SQLite): a worse model never becomes champion."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from mlflow import MlflowClient

from reco.evaluate import evaluate
from reco.model import RuleSettings, load_model, recommend_for_user
from reco.registry import register_and_gate
from reco.train import train

from .conftest import CONFIG, World

pytestmark = pytest.mark.slow

# Starved of candidates and factors: what a broken training run could produce.
WORSE = dataclasses.replace(
    CONFIG,
    factors=2,
    iterations=2,
    warm_iterations=1,
    rules=RuleSettings(max_age_hours=12, n_als=5, n_popular=3, n_fresh=3, n_category_fresh=1),
)


def test_a_worse_model_is_rejected_and_the_champion_stays(world: World) -> None:
    settings, day = world.settings, world.day
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)

    first = register_and_gate(settings, day, world.result.run_id, world.evaluation.metrics)
    assert first.decision == "promoted", first.reason
    assert first.champion_version == first.model_version

    worse_run = train(settings, day, WORSE)
    worse_eval = evaluate(settings, day, worse_run.run_id)
    assert worse_eval.metrics["champion"] is not None  # the champion was scored on the same test day
    assert worse_eval.metrics["champion"]["ndcg@10"] == pytest.approx(world.evaluation.metrics["model"]["ndcg@10"])
    assert worse_eval.metrics["model"]["ndcg@10"] < worse_eval.metrics["champion"]["ndcg@10"]

    second = register_and_gate(settings, day, worse_run.run_id, worse_eval.metrics)
    assert second.decision == "rejected"
    assert "champion" in second.reason
    assert second.champion_version == first.model_version
    assert int(second.model_version) == int(first.model_version) + 1

    name = settings.model_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == first.model_version
    assert str(client.get_model_version_by_alias(name, "challenger").version) == second.model_version
    tags = client.get_model_version(name, second.model_version).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.reason"] == second.reason
    assert client.get_run(worse_run.run_id).data.tags["gate.decision"] == "rejected"

    # What the service and `reco recommend` load is still the first model.
    champion = load_model(settings)
    assert champion.version == first.model_version
    items, version = recommend_for_user(
        settings, next(iter(world.test.now)), 5, now=dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    )
    assert version == first.model_version and len(items) == 5
