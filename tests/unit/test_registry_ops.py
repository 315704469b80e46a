"""Operator actions on the real MLflow registry (SQLite): list, manual promotion, rollback."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from reco.errors import RecoError
from reco.registry import CHAMPION, list_versions, promote, rollback
from reco.settings import Settings


@pytest.fixture
def registry(settings: Settings, tmp_path) -> MlflowClient:
    settings.mlflow_dir.mkdir(parents=True)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.create_registered_model(settings.model_name)
    for n in range(3):  # the alias operations never open the artifacts, so any source will do
        source = tmp_path / f"model-{n}"
        source.mkdir()
        client.create_model_version(settings.model_name, source=str(source), tags={"gate.day": f"2026-11-2{n}"})
    return client


def champion(client: MlflowClient, settings: Settings) -> str:
    return str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version)


def test_promote_then_rollback_returns_to_the_replaced_champion(settings: Settings, registry: MlflowClient) -> None:
    assert promote(settings, "1", reason="first") == (None, "1")
    assert promote(settings, "3", reason="canary looked good") == ("1", "3")
    assert champion(registry, settings) == "3"

    listing = {v.version: v for v in list_versions(settings)}
    assert [v.version for v in list_versions(settings)] == ["3", "2", "1"]
    assert listing["3"].aliases == ["champion"] and listing["3"].reason == "manual: canary looked good"
    assert listing["3"].champion_before == "1"

    assert rollback(settings) == ("3", "1")
    assert champion(registry, settings) == "1"
    assert {v.version: v for v in list_versions(settings)}["3"].decision == "rolled back"
    with pytest.raises(RecoError, match="nothing to roll back"):
        rollback(settings)  # version 1 replaced no earlier champion


def test_promoting_a_missing_version_or_rolling_back_nothing_is_a_clear_error(
    settings: Settings, registry: MlflowClient
) -> None:
    with pytest.raises(RecoError, match="no version 9"):
        promote(settings, "9", reason="typo")
    with pytest.raises(RecoError, match="no champion"):
        rollback(settings)
