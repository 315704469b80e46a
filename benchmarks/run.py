"""`make bench`: every benchmark of the project, printed as tables with the machine and the date.

Usage: python benchmarks/run.py [--sizes 1000000,10000000] [--only generate,ingest,features,pipeline,train,service]
Results also go to benchmarks/results/<date>-<host>.json so the README's figures can be traced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

console = Console(width=160)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


def call(module: str, *args: Any) -> list[dict[str, Any]]:
    """Run benchmarks/<module>.py's ``bench``; a missing or failing benchmark becomes a row that says so."""
    try:
        result = importlib.import_module(module).bench(*args)
    except Exception as error:  # a benchmark failing must not hide the others
        traceback.print_exc()
        return [{"stage": module.removeprefix("bench_"), "error": f"{type(error).__name__}: {error}"[:120]}]
    return result if isinstance(result, list) else [result]


MAIN_COLUMNS: tuple[str, ...] = ("seconds", "events", "rows", "events_per_s", "rows_per_s", "peak_rss_mib")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """One line per measured stage: the common figures in columns, the rest as key=value details."""
    table = Table(title=title, show_lines=False)
    table.add_column("stage")
    for column in MAIN_COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("details", overflow="fold")
    for row in rows:
        details = ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "stage" and k not in MAIN_COLUMNS)
        table.add_row(str(row.get("stage", "?")), *[_fmt(row[c]) if c in row else "" for c in MAIN_COLUMNS], details)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "1000000,10000000"))
    parser.add_argument(
        "--only", default=os.environ.get("BENCH_ONLY", "generate,ingest,features,pipeline,train,service")
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark workdirs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    only = set(args.only.split(","))
    header = f"{machine()} — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    console.print(f"[bold]reco-articles benchmarks[/] on {header}")
    results: dict[str, Any] = {"machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(), "tables": {}}

    for size in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"reco-bench-{size}-"))
        rows: list[dict[str, Any]] = []
        try:
            if "generate" in only or "ingest" in only or "features" in only or "pipeline" in only:
                rows += call("bench_generate", size, workdir)
            if "ingest" in only or "features" in only or "pipeline" in only:
                rows += call("bench_ingest", workdir)
            if "features" in only:
                rows += call("bench_features", workdir)
            if "pipeline" in only and size <= 1_000_000:
                rows += call("bench_pipeline", workdir)
                rows += call("bench_drift", workdir)
            if "train" in only and size <= 1_000_000:
                rows += call("bench_train", workdir, None)
            if rows:  # --only service measures nothing here
                print_table(f"data path at {size:,} events — {header}", rows)
                results["tables"][f"data-{size}"] = rows
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    if "service" in only:
        workdir = Path(tempfile.mkdtemp(prefix="reco-bench-service-"))
        try:
            rows = call("bench_service", workdir)
            print_table(f"recommend service — {header}", rows)
            results["tables"]["service"] = rows
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    out = HERE / "results" / f"{dt.date.today().isoformat()}-{platform.node()}.json"
    out.parent.mkdir(exist_ok=True)
    # A run of some benchmarks (--only) keeps the other tables of the same day and machine; each
    # table says when it was measured.
    measured = {name: results["date"] for name in results["tables"]}
    if out.exists():
        earlier = json.loads(out.read_text())
        measured = {
            **{name: earlier.get("measured", {}).get(name, earlier.get("date")) for name in earlier.get("tables", {})},
            **measured,
        }
        results["tables"] = {**earlier.get("tables", {}), **results["tables"]}
    results["measured"] = measured
    out.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {out}")


if __name__ == "__main__":
    main()
