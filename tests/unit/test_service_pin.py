"""The production pin (RECO_MODEL_VERSION) and the bounded model_version labels of feedback events."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from reco.settings import Settings
from services.recommend.app import registry_loader
from services.recommend.metrics import Metrics
from services.recommend.model_holder import MAX_EVENT_VERSIONS, ModelHolder
from services.recommend.settings import ServiceSettings


def test_a_pinned_version_is_resolved_without_the_registry(tmp_path: Path) -> None:
    # A tracking URI nothing answers at: any registry call would fail.
    settings = Settings(workdir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9")
    resolve, _ = registry_loader(settings, "champion", pinned="7")
    assert resolve() == "7"
    assert resolve() == "7"


def test_the_alias_is_followed_when_nothing_is_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = Settings(workdir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:9")
    resolve, _ = registry_loader(settings, "champion")
    with pytest.raises(Exception):  # noqa: B017 - asks the (unreachable) registry where the alias points
        resolve()


def test_the_pin_must_be_a_registry_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECO_MODEL_VERSION", "12")
    assert ServiceSettings().model_version == "12"
    monkeypatch.setenv("RECO_MODEL_VERSION", "latest")
    with pytest.raises(ValidationError, match="model_version"):
        ServiceSettings()


def _holder(loaded: list[str], version: str = "3") -> ModelHolder:
    def load(v: str) -> object:
        loaded.append(v)
        return SimpleNamespace(version=v, trained_until="2026-12-01T00:00:00+00:00")

    return ModelHolder(lambda: version, load, Metrics("stable"), poll_interval_s=60)


def test_a_pinned_holder_loads_its_version_once_and_exports_its_training_time() -> None:
    loaded: list[str] = []
    holder = _holder(loaded)
    assert asyncio.run(holder.refresh()) is True
    assert asyncio.run(holder.refresh()) is False  # the same version: nothing reloaded
    assert loaded == ["3"]
    trained = holder.metrics.registry.get_sample_value(
        "reco_model_trained_timestamp_seconds", {"model_version": "3", "variant": "stable"}
    )
    assert trained == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


def test_clicks_on_another_pods_lists_keep_their_version_within_a_bound() -> None:
    holder = _holder([])
    asyncio.run(holder.refresh())
    assert holder.version_label("3") == "3"  # served here
    assert holder.version_label("4") == "4"  # a canary's list, clicked through this stable pod
    assert holder.version_label(None) == "none"
    assert holder.version_label("not-a-version") == "other"
    for n in range(100, 100 + MAX_EVENT_VERSIONS):
        holder.version_label(str(n))
    assert holder.version_label("999") == "other"  # beyond the bound: forged ids cannot grow the series
    assert holder.version_label("4") == "4"  # already counted versions keep their label
