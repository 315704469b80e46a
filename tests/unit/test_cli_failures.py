"""How `reco` fails: one line, a log with the traceback, and the exit code Argo's retry strategy reads
(1: a clear error of input or data, never retried; 75: anything that another attempt may not meet)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reco import pipeline
from reco.cli import EXIT_CLEAR_ERROR, EXIT_RETRYABLE, app
from reco.errors import DataContractError, NoDataError, RecoError, RetryableError
from reco.pipeline import Step, resolve_run_date

runner = CliRunner()


@pytest.mark.parametrize(
    ("raised", "code", "says"),
    [
        (NoDataError("no bronze events for that day"), EXIT_CLEAR_ERROR, "no bronze events for that day (traceback in "),
        (DataContractError("data contract of 2026-04-02 failed 1 of 26 checks"), EXIT_CLEAR_ERROR, "failed 1 of 26 checks ("),
        (RetryableError("MLflow server answered 503"), EXIT_RETRYABLE, "retrying may help"),
        (ZeroDivisionError("division by zero"), EXIT_RETRYABLE, "ZeroDivisionError: division by zero — an unexpected"),
    ],
    ids=["clear", "contract", "retryable", "bug"],
)
def test_a_failed_step_ends_in_one_line_and_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: Exception, code: int, says: str
) -> None:
    def step(ctx: pipeline.RunContext) -> dict:
        raise raised

    monkeypatch.setattr(pipeline, "STEPS", [Step("ingest", step, "x", retries=0)])
    workdir = tmp_path / "w"
    workdir.mkdir()
    result = runner.invoke(app, ["pipeline", "step", "ingest", "--date", "2026-04-02", "--workdir", str(workdir),
                                 "--no-catch-up"])  # fmt: skip
    assert result.exit_code == code
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "step ingest failed for 2026-04-02" in lines[0] and says in lines[0], result.output
    assert "Traceback" not in result.output
    (log,) = (workdir / "logs").glob("reco-*.log")
    assert "Traceback" in log.read_text() and type(raised).__name__ in log.read_text()


def test_debug_prints_the_traceback_too(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "pipeline", "run", "--workdir", str(tmp_path)])
    assert result.exit_code == EXIT_CLEAR_ERROR
    assert "Traceback" in result.output and "NoDataError" in result.output


def test_the_run_date_of_a_scheduled_workflow() -> None:
    assert resolve_run_date("", "2026-04-03T03:00:12Z") == dt.date(2026, 4, 2)
    assert resolve_run_date("", "2026-04-03T00:30:00+02:00") == dt.date(2026, 4, 1)  # 22:30 UTC on the 2nd
    assert resolve_run_date(" 2026-01-15 ", "2026-04-03T03:00:00Z") == dt.date(2026, 1, 15)
    with pytest.raises(RecoError, match="parameter date: '2026-13-01' is not a date"):
        resolve_run_date("2026-13-01", "2026-04-03T03:00:00Z")
    with pytest.raises(RecoError, match="--created"):
        resolve_run_date("", "yesterday")
