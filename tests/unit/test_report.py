"""The runs report reads summaries back and shows the gate and the metrics against baselines."""

from __future__ import annotations

import json

from rich.console import Console

from reco.report import load_runs, metrics_table, runs_table


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_runs_table_shows_each_run_oldest_first(settings) -> None:
    for day, decision, ndcg in (("2026-11-19", "promoted", 0.3125), ("2026-11-18", "rejected", 0.2011)):
        path = settings.runs_dir / day / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({
            "date": day, "model_version": "3", "gate": {"decision": decision, "reason": "r"},
            "metrics": {"model": {"ndcg@10": ndcg, "recall@20": 0.5}, "popularity": {"ndcg@10": 0.1}, "champion": None},
            "steps": {"train": 1.5, "evaluate": 0.5},
        }))
    runs = load_runs(settings)
    assert [r["date"] for r in runs] == ["2026-11-18", "2026-11-19"]
    text = render(runs_table(runs))
    assert text.index("2026-11-18") < text.index("2026-11-19")
    assert "promoted" in text and "rejected" in text and "0.3125" in text and "2.0" in text
    metrics = render(metrics_table(runs[-1]))
    assert "0.3125" in metrics and "0.1000" in metrics


def test_no_runs_is_an_empty_list(settings) -> None:
    assert load_runs(settings) == []
