"""Read the run summaries back: one row per run date, for people (a table) and for scripts (dicts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from reco.settings import Settings

METRIC_ROWS: tuple[str, ...] = ("model", "als", "popularity", "champion")
METRIC_NAMES: tuple[str, ...] = ("ndcg@10", "recall@20", "hr@10", "mrr", "coverage", "novelty")


def load_runs(settings: Settings) -> list[dict[str, Any]]:
    """Every `runs/<D>/summary.json` of the workdir, oldest date first."""
    paths = sorted(settings.runs_dir.glob("*/summary.json")) if settings.runs_dir.is_dir() else []
    return [json.loads(Path(p).read_text()) for p in paths]


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """Per run: the gate's decision, the served model against its baselines, off-policy CTR and drift."""
    table = Table(title="daily runs")
    for column in ("date", "version", "gate", "model ndcg@10", "ALS", "popularity", "champion",
                   "recall@20", "coverage", "IPS CTR", "drift", "seconds"):
        table.add_column(column, justify="right" if column not in ("date", "gate") else "left")
    for run in runs:
        metrics = run.get("metrics", {})
        ndcg = {name: (metrics.get(name) or {}).get("ndcg@10") for name in METRIC_ROWS}
        gate = run.get("gate", {})
        drift = run.get("drift", {})
        table.add_row(
            run.get("date", "?"),
            str(run.get("model_version", "—")),
            f"{gate.get('decision', '—')}" + (" (retrained)" if "retrain" in run else ""),
            _num(ndcg["model"]),
            _num(ndcg["als"]),
            _num(ndcg["popularity"]),
            _num(ndcg["champion"]),
            _num((metrics.get("model") or {}).get("recall@20")),
            _num((metrics.get("model") or {}).get("coverage"), 3),
            _num((metrics.get("ope") or {}).get("snips_ctr")),
            _num(drift.get("share"), 2),
            _num(sum(float(s) for s in run.get("steps", {}).values()), 1),
        )
    return table


def metrics_table(run: dict[str, Any]) -> Table:
    """One run's offline metrics: rows are the served model and its baselines, columns the metrics."""
    table = Table(title=f"offline metrics on {run.get('date', '?')} (test day)")
    table.add_column("model")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    metrics = run.get("metrics", {})
    for row in METRIC_ROWS:
        values = metrics.get(row) or {}
        table.add_row(row, *[_num(values.get(name)) for name in METRIC_NAMES])
    return table
