"""The daily run as ``reco pipeline run`` does it (``reco.pipeline.run_pipeline``), all seven real
steps on a small generated lake, and a re-run of the same date: a new version is registered and,
with the same data, the gate keeps the champion (no 1 % gain)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from reco.errors import StepError
from reco.generate import generate
from reco.lake import list_dates, partition_files, write_atomic
from reco.pipeline import run_pipeline
from reco.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

END = dt.date(2025, 3, 14)
DAILY_STEPS = ["ingest", "validate", "features", "train", "evaluate", "register", "deploy", "monitor"]


@dataclass
class Lake:
    settings: Settings
    first: dict[str, Any]  # the summary of the first full run of END


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    # 800 users, 300 articles, 5 days: small enough for seconds per step, big enough that the
    # first model beats popularity (measured: NDCG@10 0.23 vs 0.04).
    settings = Settings(workdir=tmp_path_factory.mktemp("daily") / "work")
    generate(settings, users=800, articles=300, days=5, seed=11, end=END)
    for day in list_dates(settings.bronze_events_dir):
        if day < END:  # the days before: what earlier daily runs would have left
            run_pipeline(settings, day, steps=["ingest", "features"])
    first = run_pipeline(settings, END)
    return Lake(settings, copy.deepcopy(first.summary))


@pytest.fixture(scope="module")
def rerun(lake: Lake) -> dict[str, Any]:
    return run_pipeline(lake.settings, END).summary


def test_the_daily_run_runs_all_seven_steps(lake: Lake) -> None:
    summary = lake.first
    assert list(summary["steps"]) == DAILY_STEPS, summary["steps"]
    assert all(seconds > 0 for seconds in summary["steps"].values())
    assert summary["date"] == END.isoformat()
    assert summary["counts"]["ingest"]["silver_rows"] > 0 and summary["counts"]["features"]["user_rows"] > 0
    assert summary["train"]["run_id"]
    assert summary["metrics"]["model"]["ndcg@10"] > summary["metrics"]["popularity"]["ndcg@10"]
    # The gate decided, and the first model had only popularity to beat.
    assert summary["gate"]["decision"] == "promoted", summary["gate"]
    assert summary["gate"]["reason"]
    assert summary["model_version"] == summary["champion_version"] == "1"
    assert summary["deploy"]  # the champion was loaded and smoke-tested
    drift = summary["drift"]
    assert 0.0 <= drift["share"] <= 1.0 and math.isfinite(drift["share"])
    assert drift["columns"] and drift["warmup"] is True  # 5 days: the 7-day windows are still filling
    assert "retrain" not in summary  # no retraining during warm-up, whatever the share
    # What `reco runs` reads is what the run returned.
    assert json.loads((lake.settings.runs_dir / END.isoformat() / "summary.json").read_text())["gate"] == summary["gate"]


def test_rerunning_a_date_registers_a_new_version_and_the_champion_stays(lake: Lake, rerun: dict[str, Any]) -> None:
    first = lake.first
    assert list(rerun["steps"]) == DAILY_STEPS and "retrain" not in rerun
    # The date's data partitions are rewritten, not appended to.
    assert rerun["counts"]["ingest"]["silver_rows"] == first["counts"]["ingest"]["silver_rows"]
    assert int(rerun["model_version"]) == int(first["model_version"]) + 1
    # Same data, same model quality: no 1 % gain over the champion, so it stays.
    assert rerun["metrics"]["champion"]["ndcg@10"] == pytest.approx(first["metrics"]["model"]["ndcg@10"])
    assert rerun["gate"]["decision"] == "rejected", rerun["gate"]
    assert "champion" in rerun["gate"]["reason"]
    assert rerun["champion_version"] == first["model_version"]
    client = MlflowClient(tracking_uri=lake.settings.tracking_uri, registry_uri=lake.settings.tracking_uri)
    name = lake.settings.model_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == first["model_version"]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == rerun["model_version"]


def test_a_day_that_breaks_the_contract_stops_before_training_and_the_champion_stays(
    lake: Lake, rerun: dict[str, Any], tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    shutil.copytree(lake.settings.workdir, workdir)
    settings = lake.settings.model_copy(update={"workdir": workdir})
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    name = settings.model_name
    champion = client.get_model_version_by_alias(name, "champion").version
    versions = len(client.search_model_versions(f"name='{name}'"))
    # The tracker lost four fifths of END's traffic: ingest takes what is there, the contract does not.
    for path in partition_files(settings.bronze_events_dir, END):
        table = pq.read_table(path)
        write_atomic(table.slice(0, table.num_rows // 5), path)

    with pytest.raises(StepError, match=f"step validate failed for {END}: data contract of {END} failed 1 of "):
        run_pipeline(settings, END)

    summary = json.loads((settings.runs_dir / END.isoformat() / "summary.json").read_text())
    assert summary["failed_step"] == "validate"
    assert list(summary["steps"]) == ["ingest"]  # nothing after the contract ran
    assert summary["validate"]["failed"] == ["events.volume"]
    assert "events.volume" in summary["error"] and "contract.md" in summary["error"]
    report = (settings.workdir / "reports" / END.isoformat() / "contract.md").read_text()
    assert "## `events.volume`" in report
    assert client.get_model_version_by_alias(name, "champion").version == champion
    assert len(client.search_model_versions(f"name='{name}'")) == versions


def test_oracle_gap_reads_the_days_run_and_prints_where_the_gap_is(lake: Lake) -> None:
    from typer.testing import CliRunner

    from reco.cli import app

    workdir = str(lake.settings.workdir)
    summary = json.loads((lake.settings.runs_dir / END.isoformat() / "summary.json").read_text())
    ran = CliRunner().invoke(app, ["model", "oracle-gap", "--date", END.isoformat(), "--workdir", workdir], terminal_width=200)
    assert ran.exit_code == 0, ran.output
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in ran.output.splitlines() if line.count("│") == 3}
    # The model the day's run registered, scored exactly as that run's evaluation scored it.
    assert lines[f"served model (version {summary['model_version']})"] == f"{summary['metrics']['model']['ndcg@10']:.4f}"
    assert lines["oracle (full click model)"] == f"{summary['metrics']['baselines']['oracle']['ndcg@10']:.4f}"
    assert "preference + the logging policy's prior" in lines
    missing = CliRunner().invoke(app, ["model", "oracle-gap", "--date", "2025-03-01", "--workdir", workdir])
    assert missing.exit_code == 1 and "no run summary for 2025-03-01" in missing.output


def test_a_backfill_after_a_later_run_keeps_the_champion_trained_on_newer_data(lake: Lake) -> None:
    from reco.registry import promote, register_and_gate

    client = MlflowClient(tracking_uri=lake.settings.tracking_uri, registry_uri=lake.settings.tracking_uri)
    name = lake.settings.model_name
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    day = END - dt.timedelta(days=1)
    summary = run_pipeline(lake.settings, day).summary
    # The champion (trained up to END) cannot be scored on an earlier day: the backfilled model is judged on
    # the baselines only, and does not replace it.
    assert "not comparable" in summary["metrics"]["champion_not_comparable"]
    assert summary["gate"]["decision"] == "rejected" and "not comparable" in summary["gate"]["reason"]
    assert summary["champion_version"] == champion
    # Even when it passes the baselines (its interval against the strongest rule set above 0 here), it is
    # kept out by default; RECO_GATE_BACKFILL=baselines lets the baselines alone decide.
    passing = copy.deepcopy(summary["metrics"])
    passing["paired"][passing["strongest_heuristic"]] = {"diff": 0.01, "lo": 0.002, "hi": 0.02, "ratio": 1.05, "n": 100}
    kept = register_and_gate(lake.settings, day, summary["train"]["run_id"], passing)
    assert kept.decision == "rejected" and "trained on newer data" in kept.reason, kept.reason
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion
    literal = lake.settings.model_copy(update={"gate_backfill": "baselines"})
    moved = register_and_gate(literal, day, summary["train"]["run_id"], passing)
    assert moved.decision == "promoted" and "decided on the baselines" in moved.reason, moved.reason
    promote(lake.settings, champion, reason="test: back to the newer champion")
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion
