"""Ingest stage: every bronze date already in a workdir, bronze -> silver, in one child process.

Runs over a workdir the runner filled first (``bench_generate``). The child (this file with
``--child``) ingests the dates oldest first, as a backfill would, so late events meet existing
silver partitions; its peak RSS is the stage's alone. ``seconds`` is the ingest work as timed in the
child; ``process_s`` adds interpreter start and imports. ``events`` counts bronze rows read (duplicate
deliveries included). Run alone, it also prints the summed ingest counts (silver rows, duplicates,
late merges, quarantined) and the slowest day.

Usage alone: python benchmarks/bench_ingest.py /path/to/workdir
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import run_measured  # noqa: E402


def _child(workdir: Path) -> dict[str, Any]:
    """Ingest every bronze date of ``workdir`` in this process; returns the totals."""
    from reco.ingest import ingest_date
    from reco.lake import list_dates
    from reco.settings import Settings

    settings = Settings(workdir=workdir)
    days = list_dates(settings.bronze_events_dir)
    if not days:
        raise RuntimeError(f"no bronze events under {settings.bronze_events_dir}: generate first")
    totals: dict[str, int] = {}
    slowest = 0.0
    started = time.perf_counter()
    for day in days:
        day_started = time.perf_counter()
        report = ingest_date(settings, day)
        slowest = max(slowest, time.perf_counter() - day_started)
        for key, value in dataclasses.asdict(report).items():
            if isinstance(value, int) and key != "articles":
                totals[key] = totals.get(key, 0) + value
    seconds = time.perf_counter() - started
    return {"days": len(days), "seconds": seconds, "slowest_day_s": slowest, **totals}


def bench(workdir: Path) -> dict[str, Any]:
    process_s, rss_mib, output = run_measured([sys.executable, str(Path(__file__).resolve()), "--child", str(workdir)])
    child = json.loads(output.strip().splitlines()[-1])
    events = int(child["bronze_rows"])
    return {
        "stage": "ingest",
        "events": events,
        "seconds": round(child["seconds"], 2),
        "events_per_s": round(events / child["seconds"]) if child["seconds"] > 0 else 0,
        "peak_rss_mib": round(rss_mib, 1),
        "process_s": round(process_s, 2),
        "days": child["days"],
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(Path(sys.argv[2]))))
    elif len(sys.argv) == 2:
        print(json.dumps(bench(Path(sys.argv[1])), indent=2))
        print(json.dumps(_child(Path(sys.argv[1])), indent=2))
    else:
        sys.exit("usage: bench_ingest.py WORKDIR")
