"""Read the run summaries back: one row per run date, for people (a table) and for scripts (dicts).

A run's figures are judged against its strongest simple rule (``metrics.strongest_heuristic``)
with the paired bootstrap interval of the model's NDCG@10 gain (``metrics.paired``), never as a
bare point figure. Summaries written before those keys existed still show, without intervals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from reco.settings import Settings

# Rows of the per-run metrics table, in this order where present: the served model (per session,
# then at the first event of D), the champion, then every baseline of ``metrics.baselines``.
MODEL_ROWS: tuple[str, ...] = ("model", "model_first_event", "champion")
BASELINE_ROWS: tuple[str, ...] = (
    "popularity",
    "als",
    "newest",
    "newest_top_category",
    "fresh_popular",
    "trending_top_category",
    "oracle",
)
# The rows of a summary without ``metrics.baselines``.
METRIC_ROWS: tuple[str, ...] = ("model", "als", "popularity", "champion")
METRIC_NAMES: tuple[str, ...] = ("ndcg@10", "recall@20", "hr@10", "mrr", "coverage", "novelty")


def load_runs(settings: Settings) -> list[dict[str, Any]]:
    """Every `runs/<D>/summary.json` of the workdir, oldest date first."""
    paths = sorted(settings.runs_dir.glob("*/summary.json")) if settings.runs_dir.is_dir() else []
    return [json.loads(Path(p).read_text()) for p in paths]


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def interval(paired: dict[str, Any] | None, digits: int = 3) -> str:
    """``+0.014 [0.006, 0.022]``: a paired difference with its 95 % interval ("—" without one)."""
    if not paired or not isinstance(paired.get("diff"), int | float):
        return "—"
    return f"{paired['diff']:+.{digits}f} [{paired['lo']:.{digits}f}, {paired['hi']:.{digits}f}]"


def strongest_heuristic(run: dict[str, Any]) -> tuple[str, float | None, dict[str, Any] | None]:
    """(name, its ndcg@10, the model's paired difference to it) for a run; popularity without an
    interval for a summary that predates the heuristics."""
    metrics = run.get("metrics") or {}
    name = metrics.get("strongest_heuristic")
    if not name:
        return "popularity", (metrics.get("popularity") or {}).get("ndcg@10"), None
    values = (metrics.get("baselines") or {}).get(name) or {}
    return str(name), values.get("ndcg@10"), (metrics.get("paired") or {}).get(name)


def versus(run: dict[str, Any]) -> str:
    """ "0.197 vs newest_top_category 0.183 (+0.014 [0.006, 0.022])": the model's NDCG@10 against
    the run's strongest heuristic, with the paired interval of the difference."""
    model = ((run.get("metrics") or {}).get("model") or {}).get("ndcg@10")
    name, value, paired = strongest_heuristic(run)
    text = f"{_num(model, 3)} vs {name} {_num(value, 3)}"
    return text + (f" ({interval(paired)})" if paired else "")


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """Per run: the gate's decision, the served model against its strongest heuristic (with the
    interval of the difference) and the champion, off-policy CTR and drift."""
    table = Table(title="daily runs")
    columns = ("date", "version", "gate", "model ndcg@10", "strongest heuristic", "model − it [95 %]", "champion",
               "recall@20", "coverage", "SNIPS CTR", "drift", "seconds")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("date", "gate", "strongest heuristic") else "right")
    for run in runs:
        metrics = run.get("metrics", {})
        model = metrics.get("model") or {}
        name, value, paired = strongest_heuristic(run)
        gate = run.get("gate", {})
        drift = run.get("drift", {})
        table.add_row(
            run.get("date", "?"),
            str(run.get("model_version", "—")),
            f"{gate.get('decision', '—')}" + (" (retrained)" if "retrain" in run else ""),
            _num(model.get("ndcg@10")),
            f"{name} {_num(value)}",
            interval(paired),
            _num((metrics.get("champion") or {}).get("ndcg@10")),
            _num(model.get("recall@20")),
            _num(model.get("coverage"), 3),
            _num((metrics.get("ope") or {}).get("snips_ctr")),
            _num(drift.get("share"), 2),
            _num(sum(float(s) for s in run.get("steps", {}).values()), 1),
        )
    return table


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(row name, metric values) in table order; baselines from ``metrics.baselines`` when the
    summary has them, else the older ``als`` / ``popularity`` rows."""
    baselines = metrics.get("baselines")
    if not isinstance(baselines, dict):
        return [(row, metrics.get(row) or {}) for row in METRIC_ROWS]
    rows = [(row, metrics.get(row) or {}) for row in MODEL_ROWS if row in metrics]
    names = [n for n in BASELINE_ROWS if n in baselines] + sorted(set(baselines) - set(BASELINE_ROWS))
    return rows + [(name, baselines[name] or {}) for name in names]


def ope_line(ope: dict[str, Any] | None) -> str:
    """The off-policy estimate in one line, intervals included where the summary has them."""
    if not ope or not ope.get("n"):
        return "off-policy CTR: no logged propensities to reweight"

    def est(name: str) -> str:
        lo, hi = ope.get(f"{name}_lo"), ope.get(f"{name}_hi")
        bounds = f" [{_num(lo, 3)}, {_num(hi, 3)}]" if lo is not None and hi is not None else ""
        return f"{_num(ope.get(f'{name}_ctr'), 3)}{bounds}"

    return (
        f"off-policy CTR of the top slot: IPS {est('ips')}, SNIPS {est('snips')} "
        f"(ESS {_num(ope.get('ess'), 0)} of {ope.get('n')} requests; logged {_num(ope.get('logged_ctr'), 3)})"
    )


def metrics_table(run: dict[str, Any]) -> Table:
    """One run's offline metrics: rows are the served model, the champion and every baseline,
    columns the metrics and the model's paired NDCG@10 difference to that row (95 % interval)."""
    metrics = run.get("metrics", {})
    strongest = metrics.get("strongest_heuristic")
    table = Table(
        title=f"offline metrics on {run.get('date', '?')} (test day)",
        caption=ope_line(metrics.get("ope")) + (f"; strongest heuristic: {strongest}" if strongest else ""),
    )
    table.add_column("model")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    table.add_column("model − row ndcg@10 [95 %]", justify="right")
    table.add_column("model ÷ row", justify="right")
    paired = metrics.get("paired") or {}
    for row, values in _metric_rows(metrics):
        p = paired.get(row)
        table.add_row(
            row + (" *" if row == strongest else ""),
            *[_num(values.get(name)) for name in METRIC_NAMES],
            interval(p),
            f"{p['ratio']:.2f}×" if p and isinstance(p.get("ratio"), int | float) else "—",
        )
    return table
