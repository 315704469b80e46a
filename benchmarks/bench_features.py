"""Feature stage: build_features for the last day, Feast materialize, and a point-in-time join.

Runs over a workdir whose silver lake is already there (the runner's ingest). Each measured
stage runs in its own child process (this file with ``--child``), so peak RSS is that stage's
alone; ``seconds`` is the work itself as timed inside the child, ``process_s`` adds interpreter
start and imports (Feast alone takes seconds to import).

Rows:
    features          build_features(last day): duckdb over 30 days of silver
    feast_materialize apply_and_materialize(last day) into the SQLite online store
    pit_join          historical_features for up to ``max_rows`` impressions of the last days
                      (user_id, article_id, ts) against every day's snapshots; twice: all of
                      recommend_v1, then without recent_reads (what a ranker needs)
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

PIT_MAX_ROWS = 1_000_000


def _child(stage: str, workdir: Path, max_rows: int) -> dict[str, Any]:
    """One measured stage, in this process; returns its figures."""
    from reco.features import build_features
    from reco.lake import list_dates, partition_files
    from reco.settings import Settings

    settings = Settings(workdir=workdir)
    days = list_dates(settings.silver_events_dir)
    if not days:
        raise RuntimeError(f"no silver events under {settings.silver_events_dir}")
    last = days[-1]
    if stage == "prepare":
        # Snapshots of the earlier days, which the point-in-time join needs (untimed).
        for day in days[:-1]:
            if not partition_files(settings.features_dir / "user_stats", day):
                build_features(settings, day)
        return {"days": len(days)}
    if stage == "features":
        started = time.perf_counter()
        report = build_features(settings, last)
        seconds = time.perf_counter() - started
        events = sum(
            f.stat().st_size
            for d in days
            if last - dt.timedelta(days=29) <= d <= last
            for f in partition_files(settings.silver_events_dir, d)
        )
        return {
            "date": last.isoformat(),
            "seconds": seconds,
            "user_rows": report.user_rows,
            "article_rows": report.article_rows,
            "silver_30d_mib": events / 2**20,
        }
    if stage == "materialize":
        from reco.featurestore import apply_and_materialize

        started = time.perf_counter()
        result = apply_and_materialize(settings, last)
        seconds = time.perf_counter() - started
        return {"date": last.isoformat(), "seconds": seconds, "rows": result["users"] + result["articles"]}
    if stage in ("pit_join", "pit_join_subset"):
        import duckdb

        from reco.featurestore import feature_refs, get_store, historical_features

        files = [str(f) for d in reversed(days) for f in partition_files(settings.silver_events_dir, d)]
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # Newest impressions first: the rows a ranker trains on.
        entity_df = duckdb.sql(
            f"SELECT user_id, article_id, ts AS event_timestamp FROM read_parquet([{listed}]) "
            f"WHERE event_type = 'impression' ORDER BY ts DESC LIMIT {int(max_rows)}"
        ).df()
        store = get_store(settings)
        names = [r.split(":", 1)[1] for refs in feature_refs(store).values() for r in refs]
        started = time.perf_counter()
        # The subset leaves out recent_reads (up to 100 ids a row), which a ranker need not join.
        subset = None if stage == "pit_join" else [n for n in names if n != "recent_reads"]
        out = historical_features(settings, entity_df, store=store, features=subset)
        seconds = time.perf_counter() - started
        filled = float(out["clicks_7d"].notna().mean()) if len(out) else 0.0
        return {
            "features": "all" if subset is None else "all but recent_reads",
            "rows": len(out),
            "seconds": seconds,
            "rows_per_s": len(out) / seconds if seconds else 0.0,
            "user_hit_share": filled,
        }
    raise ValueError(stage)


def _measured(stage: str, workdir: Path, max_rows: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, str(workdir), "--max-rows", str(max_rows)]
    process_s, rss, output = run_measured(cmd)
    figures = json.loads(output.strip().splitlines()[-1])
    return {"stage": stage, **figures, "process_s": process_s, "peak_rss_mib": rss}


def bench(workdir: Path, max_rows: int = PIT_MAX_ROWS) -> list[dict[str, Any]]:
    _measured("prepare", workdir, max_rows)
    return [
        _measured("features", workdir, max_rows),
        {**_measured("materialize", workdir, max_rows), "stage": "feast_materialize"},
        _measured("pit_join", workdir, max_rows),
        {**_measured("pit_join_subset", workdir, max_rows), "stage": "pit_join"},
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", help="run one stage in this process and print its figures as JSON")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--max-rows", type=int, default=PIT_MAX_ROWS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.workdir, args.max_rows)))
    else:
        for row in bench(args.workdir, args.max_rows):
            print(json.dumps(row))
