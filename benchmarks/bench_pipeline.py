"""The full daily run (ingest → … → monitor) for the last day of an already generated lake.

Earlier days are prepared first (ingest + features, untimed: a real deployment has run them on
their own days), then `reco pipeline run --date D` is timed as one process, with its peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from measure import run_measured

from reco.lake import list_dates
from reco.settings import Settings

RECO = str(Path(sys.executable).with_name("reco"))


def bench(workdir: Path) -> list[dict[str, Any]]:
    settings = Settings(workdir=workdir)
    days = list_dates(settings.bronze_events_dir)
    if len(days) < 3:
        raise RuntimeError(f"need a generated lake with several days in {workdir}")
    last = days[-1]
    run_measured([RECO, "pipeline", "backfill", "--from", days[0].isoformat(), "--to",
                  days[-2].isoformat(), "--steps", "ingest,features", "--workdir", str(workdir)])
    seconds, rss, _ = run_measured([RECO, "pipeline", "run", "--date", last.isoformat(), "--workdir", str(workdir)])
    summary = json.loads((settings.runs_dir / last.isoformat() / "summary.json").read_text())
    events = sum(f.stat().st_size for f in settings.silver_events_dir.rglob("*.parquet"))
    row: dict[str, Any] = {"stage": "daily run (all steps)", "seconds": seconds, "peak_rss_mib": rss,
                           "silver_mib": events / 2**20}
    row.update({f"{name}_s": round(float(s), 2) for name, s in summary.get("steps", {}).items()})
    return [row]
