"""The training device is recorded with the run: in the result (the run summary's ``train`` block)
and in MLflow, including a GPU request that this machine cannot honour."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from reco.train import select_als_device, train

from .conftest import CONFIG, World

pytestmark = pytest.mark.slow


def recorded(world: World, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    mlflow.set_tracking_uri(world.settings.tracking_uri)
    run = mlflow.get_run(run_id)
    return run.data.params, run.data.tags


def test_a_default_run_trains_on_the_cpu_and_says_so(world: World) -> None:
    assert (world.result.train_device, world.result.train_device_reason) == ("cpu", "cpu requested")
    params, tags = recorded(world, world.result.run_id)
    assert params["train_device"] == "cpu"
    assert (tags["train_device"], tags["train_device_reason"]) == ("cpu", "cpu requested")


def test_a_gpu_request_records_the_device_actually_used(world: World, tmp_path: Path) -> None:
    copy = world.settings.model_copy(update={"workdir": tmp_path / "gpu", "train_device": "gpu"})
    shutil.copytree(world.settings.workdir, copy.workdir, ignore=shutil.ignore_patterns("mlflow", "runs"))
    expected = select_als_device("gpu")  # on a machine without usable CUDA: the cpu, and why
    result = train(copy, world.day, CONFIG)
    assert (result.train_device, result.train_device_reason) == (expected.device, expected.reason)
    mlflow.set_tracking_uri(copy.tracking_uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["train_device"] == expected.device
    assert run.data.tags["train_device_reason"] == expected.reason
