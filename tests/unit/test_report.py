"""The runs report reads summaries back and shows the gate and the metrics against baselines."""

from __future__ import annotations

import json

from rich.console import Console

from reco.report import load_runs, metrics_table, runs_table, versus


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_runs_table_shows_each_run_oldest_first(settings) -> None:
    for day, decision, ndcg in (("2026-11-19", "promoted", 0.3125), ("2026-11-18", "rejected", 0.2011)):
        path = settings.runs_dir / day / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(
            json.dumps(
                {
                    "date": day,
                    "model_version": "3",
                    "gate": {"decision": decision, "reason": "r"},
                    "metrics": {
                        "model": {"ndcg@10": ndcg, "recall@20": 0.5},
                        "popularity": {"ndcg@10": 0.1},
                        "champion": None,
                    },
                    "steps": {"train": 1.5, "evaluate": 0.5},
                }
            )
        )
    runs = load_runs(settings)
    assert [r["date"] for r in runs] == ["2026-11-18", "2026-11-19"]
    text = render(runs_table(runs))
    assert text.index("2026-11-18") < text.index("2026-11-19")
    assert "promoted" in text and "rejected" in text and "0.3125" in text and "2.0" in text
    metrics = render(metrics_table(runs[-1]))
    assert "0.3125" in metrics and "0.1000" in metrics


def test_no_runs_is_an_empty_list(settings) -> None:
    assert load_runs(settings) == []


def _scores(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@20": 0.4, "hr@10": 0.5, "mrr": 0.2, "coverage": 0.3, "novelty": 9.0}


def _paired(diff: float, lo: float, hi: float, ratio: float | None) -> dict[str, float | int | None]:
    return {"diff": diff, "lo": lo, "hi": hi, "ratio": ratio, "n": 900}


def test_the_model_is_shown_against_its_strongest_heuristic_with_the_interval(settings) -> None:
    baselines = {
        "popularity": _scores(0.0279),
        "als": _scores(0.0283),
        "newest": _scores(0.0635),
        "newest_top_category": _scores(0.1830),
        "fresh_popular": _scores(0.0302),
        "oracle": _scores(0.3588),
    }
    paired = {name: _paired(0.1970 - v["ndcg@10"], -0.5, 0.5, 0.1970 / v["ndcg@10"]) for name, v in baselines.items()}
    paired["newest_top_category"] = _paired(0.014, 0.006, 0.022, 1.0765)
    paired["champion"] = _paired(-0.0047, -0.0116, 0.0026, 0.975)
    summary = {
        "date": "2025-03-14", "model_version": "4", "gate": {"decision": "rejected", "reason": "r"},
        "metrics": {
            "model": _scores(0.1970), "model_first_event": _scores(0.1808), "champion": _scores(0.2017),
            "baselines": baselines, "als": baselines["als"], "popularity": baselines["popularity"],
            "strongest_heuristic": "newest_top_category", "paired": paired,
            "ope": {"ips_ctr": 0.27, "snips_ctr": 0.232, "ess": 36.8, "logged_ctr": 0.167, "n": 3000,
                    "ips_lo": 0.152, "ips_hi": 0.393, "snips_lo": 0.138, "snips_hi": 0.359},
        },
        "steps": {"evaluate": 2.0},
    }  # fmt: skip
    path = settings.runs_dir / "2025-03-14" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    (run,) = load_runs(settings)
    assert versus(run) == "0.197 vs newest_top_category 0.183 (+0.014 [0.006, 0.022])"
    runs = render(runs_table([run]))
    assert "newest_top_category 0.1830" in runs and "+0.014 [0.006, 0.022]" in runs and "0.2017" in runs
    table = render(metrics_table(run))
    lines = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 2}
    # Every row: the model per session and at its first event, the champion, every baseline.
    assert {"model", "model_first_event", "champion", "popularity", "als", "newest", "newest_top_category *",
            "fresh_popular", "oracle"} <= set(lines)  # fmt: skip
    assert "+0.014 [0.006, 0.022]" in lines["newest_top_category *"] and "1.08×" in lines["newest_top_category *"]
    assert "-0.005 [-0.012, 0.003]" in lines["champion"]
    assert "0.3588" in lines["oracle"] and "0.1808" in lines["model_first_event"]
    assert "IPS 0.270 [0.152, 0.393]" in table and "SNIPS 0.232 [0.138, 0.359]" in table


def test_reco_runs_prints_the_comparison_of_the_latest_run(settings) -> None:
    from typer.testing import CliRunner

    from reco.cli import app

    for day, strongest, diff in (("2025-03-13", "newest", 0.03), ("2025-03-14", "fresh_popular", -0.01)):
        path = settings.runs_dir / day / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({
            "date": day, "metrics": {
                "model": {"ndcg@10": 0.2}, "baselines": {strongest: {"ndcg@10": 0.2 - diff}},
                "strongest_heuristic": strongest, "paired": {strongest: _paired(diff, diff - 0.01, diff + 0.01, None)},
            },
        }))  # fmt: skip
    result = CliRunner().invoke(app, ["runs", "--workdir", str(settings.workdir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "2025-03-14: model NDCG@10 0.200 vs fresh_popular 0.210 (-0.010 [-0.020, 0.000])" in result.output
