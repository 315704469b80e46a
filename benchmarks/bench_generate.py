"""Generator: `reco data generate` sized for about N events, timed as one process with its peak RSS.

The size comes from ``reco.generate.size_for_events`` (users, articles, days for N events). The lake it
writes stays in ``workdir`` for the benchmarks that follow (ingest, features, pipeline). ``seconds`` is the
whole command (interpreter start and imports included); ``events`` counts the bronze rows written
(duplicate deliveries included), read back from the Parquet footers.

Usage alone: python benchmarks/bench_generate.py 1000000 [/path/to/workdir]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from measure import run_measured

from reco.generate import size_for_events
from reco.settings import Settings

RECO = str(Path(sys.executable).with_name("reco"))
SEED = 7


def bench(n_events_target: int, workdir: Path) -> dict[str, Any]:
    size = size_for_events(n_events_target)
    cmd = [RECO, "data", "generate", "--seed", str(SEED), "--workdir", str(workdir)]
    for name, value in size.items():
        cmd += [f"--{name}", str(value)]
    seconds, rss_mib, _ = run_measured(cmd)
    bronze = Settings(workdir=workdir).bronze_events_dir
    events = sum(pq.read_metadata(f).num_rows for f in bronze.rglob("generated-*.parquet"))
    return {
        "stage": "generate",
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "peak_rss_mib": round(rss_mib, 1),
        **size,
    }


if __name__ == "__main__":
    target = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    where = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="reco-bench-generate-"))
    print(json.dumps(bench(target, where), indent=2))
