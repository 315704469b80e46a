"""The feature store works the same whatever the current directory is (Feast resolves relative paths against it)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from feast import FileSource
from feature_scenario import CLICKS_7D, DAYS, T3, write_scenario

from reco.featurestore import (
    apply_and_materialize,
    environment_yaml,
    feast_variables,
    get_store,
    historical_features,
    online_features,
)
from reco.settings import Settings

pytestmark = pytest.mark.integration


def test_store_from_another_cwd_writes_and_reads_only_the_workdir(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    write_scenario(settings)
    apply_and_materialize(settings, DAYS[-1])
    entity_df = pd.DataFrame({"user_id": ["u1"], "article_id": ["a1"], "event_timestamp": [T3 + dt.timedelta(hours=1)]})
    assert historical_features(settings, entity_df).loc[0, "clicks_7d"] == CLICKS_7D[T3]
    users, articles = online_features(settings, ["u1"], ["a1"])
    assert users.loc["u1", "clicks_7d"] == CLICKS_7D[T3]
    assert articles.loc["a1", "category"] == "sports"
    assert list(elsewhere.iterdir()) == []
    store = get_store(settings)
    paths = [s.path for s in store.list_data_sources() if isinstance(s, FileSource)]
    assert len(paths) == 2
    assert all(p.startswith(str(settings.features_dir.resolve()) + "/") for p in paths)


@pytest.mark.slow
def test_feast_cli_applies_the_same_repo_from_another_cwd(settings: Settings, tmp_path: Path) -> None:
    """The repo stands alone: the feast CLI, given the variables, registers what reco reads."""
    elsewhere = tmp_path / "cli-cwd"
    elsewhere.mkdir()
    settings.feast_dir.mkdir(parents=True)  # Feast's file registry creates one folder level only
    env = {**os.environ, **feast_variables(settings)}
    feast_cli = Path(sys.executable).parent / "feast"
    result = subprocess.run(
        [str(feast_cli), "-c", str(settings.feature_repo), "-f", str(environment_yaml(settings, "local")), "apply"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    store = get_store(settings)
    assert {v.name for v in store.list_feature_views()} == {"user_stats", "article_stats"}
    assert [s.name for s in store.list_feature_services()] == ["recommend_v1"]
    assert list(elsewhere.iterdir()) == []
