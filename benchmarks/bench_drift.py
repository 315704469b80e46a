"""Monitor stage: ``reco.drift.monitor`` on the last day of a lake, timed in its own process.

Runs over a workdir whose silver lake is already there (the runner's ingest); snapshots missing
for the last ``REFERENCE_DAYS + 1`` days are built first, untimed. Alone, it can also make its
own lake sized in events per day (a 1M-event day is the case the sampling is for).

Rows:
    drift   monitor(last day): read D's and the reference days' snapshots, sample each table to
            ``max_rows`` rows per side, Evidently DataDriftPreset + HTML report, CTR trend and
            category mixes over the window's silver events. ``seconds`` is the call as timed
            inside the child; ``process_s`` adds interpreter start and imports (Evidently and
            MLflow take seconds to import).

Usage alone: python benchmarks/bench_drift.py WORKDIR [--events-per-day 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import run_measured  # noqa: E402

REFERENCE_DAYS = 7


def _child(stage: str, workdir: Path, events_per_day: int) -> dict[str, Any]:
    from reco.features import build_features
    from reco.lake import list_dates, partition_files
    from reco.settings import Settings

    settings = Settings(workdir=workdir)
    if stage == "generate":
        from reco.generate import ARTICLES_PER_DAY, EVENTS_PER_USER_DAY, generate
        from reco.ingest import ingest_date

        days = REFERENCE_DAYS + 1
        users = max(10, round(events_per_day / EVENTS_PER_USER_DAY))
        report = generate(
            settings, users=users, articles=days * ARTICLES_PER_DAY, days=days, seed=7, end=dt.date(2024, 3, 14)
        )
        for day in list_dates(settings.bronze_events_dir):
            ingest_date(settings, day)
        return {"users": users, "events": report.events}
    days = list_dates(settings.silver_events_dir)
    if not days:
        raise RuntimeError(f"no silver events under {settings.silver_events_dir}")
    last = days[-1]
    if stage == "prepare":
        for day in days[-(REFERENCE_DAYS + 1) :]:
            if not partition_files(settings.features_dir / "user_stats", day):
                build_features(settings, day)
        return {"days": len(days)}
    if stage == "drift":
        import pyarrow.parquet as pq

        from reco.drift import monitor

        started = time.perf_counter()
        result = monitor(settings, last, reference_days=REFERENCE_DAYS)
        seconds = time.perf_counter() - started
        events = sum(pq.read_metadata(f).num_rows for f in partition_files(settings.silver_events_dir, last))
        snapshot_rows = sum(
            pq.read_metadata(f).num_rows
            for table in ("user_stats", "article_stats")
            for f in partition_files(settings.features_dir / table, last)
        )
        return {
            "date": last.isoformat(),
            "events_on_day": events,
            "snapshot_rows": snapshot_rows,
            "compared_rows": sum(result.rows.values()),
            "share": result.share,
            "seconds": seconds,
        }
    raise ValueError(stage)


def _measured(stage: str, workdir: Path, events_per_day: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, str(workdir)]
    cmd += ["--events-per-day", str(events_per_day)]
    process_s, rss, output = run_measured(cmd)
    figures = json.loads(output.strip().splitlines()[-1])
    return {"stage": stage, **figures, "process_s": process_s, "peak_rss_mib": rss}


def bench(workdir: Path) -> list[dict[str, Any]]:
    _measured("prepare", workdir)
    return [_measured("drift", workdir)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", help="run one stage in this process and print its figures as JSON")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--events-per-day", type=int, default=0, help="first generate and ingest a lake of this size")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.workdir, args.events_per_day)))
    else:
        if args.events_per_day:
            print(json.dumps(_measured("generate", args.workdir, args.events_per_day)))
        for row in bench(args.workdir):
            print(json.dumps(row))
