"""Issue 2's "done": generate, then `reco pipeline run --steps ingest,features` leaves a usable workdir."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reco.cli import app
from reco.lake import list_dates
from reco.settings import Settings

runner = CliRunner()


def test_generate_then_ingest_and_features_from_the_cli(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    generated = runner.invoke(
        app,
        ["data", "generate", "--users", "300", "--articles", "150", "--days", "4", "--seed", "3",
         "--end", "2026-11-20", "--workdir", str(workdir)],
    )
    assert generated.exit_code == 0, generated.output

    ran = runner.invoke(app, ["pipeline", "run", "--workdir", str(workdir), "--steps", "ingest,features"])
    assert ran.exit_code == 0, ran.output

    settings = Settings(workdir=workdir)
    # --date defaults to the latest day with events; the generator's late arrivals may land one day after --end.
    day = list_dates(settings.bronze_events_dir)[-1].isoformat()
    summary = json.loads((workdir / "runs" / day / "summary.json").read_text())
    assert set(summary["steps"]) == {"ingest", "features"}
    assert all(seconds >= 0 for seconds in summary["steps"].values())
    ingest = summary["counts"]["ingest"]
    for key in ("valid", "quarantined", "deduplicated"):
        assert isinstance(ingest[key], int), key
    assert summary["counts"]["features"]["user_rows"] > 0
    assert summary["counts"]["features"]["article_rows"] > 0

    assert (settings.silver_events_dir / f"date={day}").is_dir()
    assert list(settings.features_dir.glob(f"*/date={day}/*.parquet"))
    feast_files = [p for p in settings.feast_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in feast_files), feast_files  # registry and SQLite online store
