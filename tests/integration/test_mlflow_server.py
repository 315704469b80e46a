"""Train, evaluate and register against a real `mlflow server` over HTTP (SQLite backend, free port),
as production runs against its tracking server."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from reco.evaluate import evaluate
from reco.features import build_features
from reco.featurestore import apply_and_materialize
from reco.generate import generate
from reco.ingest import ingest_date
from reco.lake import list_dates
from reco.model import load_model
from reco.registry import register_and_gate
from reco.settings import Settings
from reco.train import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    args = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # Own process group: the server forks workers, and all of them must go at teardown.
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {proc.returncode}: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}"
                )
            try:
                MlflowClient(tracking_uri=url).search_experiments(max_results=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_pipeline_trains_evaluates_and_registers_through_an_http_tracking_server(
    mlflow_server: str, tmp_path: Path
) -> None:
    settings = Settings(workdir=tmp_path / "work", mlflow_tracking_uri=mlflow_server)
    generate(settings, users=400, articles=200, days=4, seed=5, end=dt.date(2025, 6, 10))
    for day in list_dates(settings.bronze_events_dir):
        ingest_date(settings, day)
    days = list_dates(settings.silver_events_dir)
    for day in days:
        build_features(settings, day)
    test_day = days[-1]
    apply_and_materialize(settings, test_day - dt.timedelta(days=1))

    result = train(settings, test_day, TrainConfig(num_threads=1))
    evaluation = evaluate(settings, test_day, result.run_id)
    gate = register_and_gate(settings, test_day, result.run_id, evaluation.metrics)

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.run_id)
    assert run.data.params["test_day"] == test_day.isoformat()
    assert run.data.tags["data_fingerprint"] == result.fingerprint
    assert "model.ndcg_at_10" in run.data.metrics and "ope.ips_ctr" in run.data.metrics
    assert len(run.inputs.dataset_inputs) == len(days) - 1 + 1  # silver days before D + the article table
    assert gate.decision == "promoted", gate.reason
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == gate.model_version
    # Artifacts went through the server, not into the client's working directory.
    assert any((tmp_path / "artifacts").rglob("arrays.npz"))
    served = load_model(settings)
    assert served.version == gate.model_version
    assert served.fingerprint == result.fingerprint
    assert not (settings.workdir / "mlflow").exists()
