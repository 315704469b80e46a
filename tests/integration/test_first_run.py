"""A newcomer's first run, through the installed `reco` command exactly as the README shows it:
generate (or import a bare click log), then `reco pipeline run` — no preparation of earlier days."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECO = str(Path(sys.executable).with_name("reco"))


def reco(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([RECO, *args], capture_output=True, text=True, timeout=600, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    logged = re.search(r"traceback in (\S+\.log)", result.stderr)
    if "unexpected failure" in result.stderr and logged and Path(logged.group(1)).is_file():
        # An unexpected failure: show its logged traceback in the test report too.
        result.stderr += "\n" + Path(logged.group(1)).read_text()
    return result


def summary_of(workdir: Path) -> dict:
    (path,) = sorted(workdir.glob("runs/*/summary.json"))[-1:]
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("quickstart") / "demo"
    made = reco("data", "generate", "--users", "800", "--articles", "300", "--days", "8", "--seed", "7",
                "--workdir", str(workdir))  # fmt: skip
    assert made.returncode == 0, made.stderr
    return workdir


def test_quickstart_generate_then_pipeline_run(generated: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(generated), str(workdir)], check=True)

    ran = reco("pipeline", "run", "--workdir", str(workdir))

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "catch-up" in ran.stdout
    summary = summary_of(workdir)
    assert set(summary["steps"]) >= {"ingest", "validate", "features", "train", "evaluate", "register", "deploy", "monitor"}
    caught = summary["catch_up"]
    assert caught["ingest"] and caught["features"] and caught["seconds"] > 0
    assert caught["days"] == sorted(set(caught["ingest"]) | set(caught["features"]))
    assert summary["date"] not in caught["ingest"]  # the run's own ingest step did D
    # The data contract judged D only, not the days the catch-up prepared.
    assert summary["validate"]["passed"] is True
    assert [p.parent.name for p in workdir.glob("reports/*/contract.md")] == [summary["date"]]
    assert summary["gate"]["decision"] == "promoted", summary["gate"]


def test_no_catch_up_keeps_the_strict_error(generated: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(generated), str(workdir)], check=True)

    ran = reco("pipeline", "run", "--workdir", str(workdir), "--no-catch-up")

    assert ran.returncode == 1
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: step train failed for "), ran.stderr
    assert "run ingest for those days first" in lines[0] and "traceback in " in lines[0]
    assert "catch_up" not in summary_of(workdir)


def test_a_bare_click_log_runs_to_a_champion_and_recommends(generated: Path, tmp_path: Path) -> None:
    """user_id, article_id, ts — no article file, no impressions, no event type."""
    files = sorted(glob.glob(str(generated / "lake/bronze/events/date=*/*.parquet")))
    events = pa.concat_tables(pq.read_table(f, columns=["user_id", "article_id", "ts", "event_type"]) for f in files)
    clicks = events.filter(pc.equal(events["event_type"], "click")).select(["user_id", "article_id", "ts"])
    log = tmp_path / "clicks.csv"
    pacsv.write_csv(clicks, log)
    workdir = tmp_path / "site"

    imported = reco("data", "import-events", str(log), "--workdir", str(workdir))
    assert imported.returncode == 0, imported.stderr
    assert "derived" in imported.stdout

    ran = reco("pipeline", "run", "--workdir", str(workdir))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = summary_of(workdir)
    assert summary["gate"]["decision"] == "promoted", summary["gate"]
    assert summary["train"]["ranker_status"].startswith("trained on"), summary["train"]["ranker_status"]

    user = str(clicks["user_id"][0])
    shown = reco("recommend", user, "-k", "5", "--workdir", str(workdir))
    assert shown.returncode == 0, shown.stderr
    assert "version 1" in shown.stdout and shown.stdout.count("│ a") >= 5
