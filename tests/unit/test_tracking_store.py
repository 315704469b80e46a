"""A fresh local MLflow store is created by one process at a time (pipeline and service on a new workdir)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from reco.settings import Settings
from reco.tracking_store import MARKER, ready


def _create(workdir: str) -> str:
    from mlflow import MlflowClient

    settings = Settings(workdir=Path(workdir))
    uri = ready(settings)
    return str(len(MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()))


def test_processes_racing_on_a_fresh_store_all_succeed(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_create, [str(workdir)] * 3) == ["0", "0", "0"]
    assert (Settings(workdir=workdir).mlflow_dir / MARKER).exists()


def test_a_tracking_server_is_left_alone(tmp_path: Path) -> None:
    assert ready(Settings(workdir=tmp_path, mlflow_tracking_uri="http://mlflow:5000")) == "http://mlflow:5000"
    assert not (tmp_path / "mlflow").exists()
