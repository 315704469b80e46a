"""Degenerate click logs through the whole daily pipeline, as a user runs it: `reco data import-events`,
then `reco pipeline run`. Each log either runs to the end with what was skipped stated in the summary,
or fails with one `error:` line that says what failed and where the traceback went — never a traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from reco.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

END = dt.date(2026, 3, 6)
DAYS = 4
runner = CliRunner()


def _event(user: str, article: str, ts: dt.datetime, kind: str, **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "article_id": article, "ts": ts.isoformat().replace("+00:00", "Z"), "event_type": kind, **extra}


def base_log(
    *, users: int = 40, articles: int = 25, days: int = DAYS, impressions: bool = True, seed: int = 1
) -> list[dict[str, Any]]:
    """Sessions of 5 shown articles (impressions with a request id and position), ~1 click per session."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    start = dt.datetime.combine(END - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    for day in range(days):
        for session in range(users * 2):
            user = f"u{rng.integers(users)}"
            t = start + dt.timedelta(days=day, seconds=int(rng.integers(86_000)))
            shown = rng.choice(articles, size=min(5, articles), replace=False)
            request = f"r{day}-{session}"
            for position, article in enumerate(shown):
                if impressions:
                    rows.append(_event(user, f"a{article}", t, "impression", request_id=request, position=position))
            clicked = shown[rng.integers(len(shown))]
            rows.append(_event(user, f"a{clicked}", t + dt.timedelta(seconds=5), "click", request_id=request))
    return rows


def article_rows(ids: set[str]) -> list[dict[str, Any]]:
    published = dt.datetime.combine(END - dt.timedelta(days=DAYS + 1), dt.time(), tzinfo=dt.UTC)
    return [
        {"article_id": a, "published_at": published.isoformat(), "category": ["news", "sport"][i % 2], "title": a}
        for i, a in enumerate(sorted(ids))
    ]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    names = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _on_day(rows: list[dict[str, Any]], day: dt.date) -> list[dict[str, Any]]:
    return [r for r in rows if r["ts"].startswith(day.isoformat())]


def _one_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _on_day(rows, END)


def _gap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gap = (END - dt.timedelta(days=2)).isoformat()
    return [r for r in rows if not r["ts"].startswith(gap)]


# Each case's expected outcome: "ok" (the whole run, skips stated) or the step that fails with one line.
CASES: dict[str, dict[str, Any]] = {
    # Nothing before the test day to train on.
    "one-day-only": {"events": _one_day(base_log()), "fails": "train", "says": "at least one day of events"},
    "one-user": {"events": base_log(users=1), "ranker": "skipped: "},
    # A user who read the only article has nothing left to be recommended: no test truth.
    "one-article": {"events": base_log(articles=1), "fails": "evaluate", "says": "no test clicks"},
    "every-click-on-one-article": {
        "events": [r if r["event_type"] != "click" else {**r, "article_id": "a0"} for r in base_log()],
        "fails": "evaluate",
        "says": "no test clicks",
    },
    "only-read-events": {
        "events": [{**r, "event_type": "read", "dwell_ms": 30_000} for r in base_log(impressions=False)],
        "ranker": "skipped: no rows",
    },
    "no-impressions-at-all": {"events": base_log(impressions=False), "ranker": "trained on"},
    "a-day-without-events-inside-the-window": {"events": _gap(base_log()), "empty": [(END - dt.timedelta(days=2))]},
    "clicks-on-articles-missing-from-the-article-file": {"events": base_log(), "articles": "half"},
}


def run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("case", list(CASES))
def test_degenerate_log_runs_or_fails_with_one_line(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    workdir = tmp_path / "work"
    events = write_csv(tmp_path / "clicks.csv", spec["events"])
    args = ["data", "import-events", str(events), "--workdir", str(workdir)]
    if "articles" in spec:
        ids = sorted({r["article_id"] for r in spec["events"]})
        args += ["--articles", str(write_csv(tmp_path / "articles.csv", article_rows(set(ids[: len(ids) // 2]))))]
    code, out = run(args)
    assert code == 0, out
    assert "Traceback" not in out

    code, out = run(["pipeline", "run", "--workdir", str(workdir), "--date", END.isoformat()])

    assert "Traceback" not in out, out
    summary = json.loads((workdir / "runs" / END.isoformat() / "summary.json").read_text())
    if "fails" not in spec:
        assert code == 0, out
        assert set(summary["steps"]) == {"ingest", "validate", "features", "train", "evaluate", "register", "deploy", "monitor"}
        # What could not be done on this log is said, not silently dropped.
        assert summary["train"]["ranker_status"].startswith(spec.get("ranker", ""))
        if summary["gate"]["decision"] == "rejected":
            assert summary["deploy"]["status"].startswith("skipped: no champion")
        else:
            assert summary["gate"]["decision"] == "promoted" and summary["deploy"]["status"] == "deployed"
        if "empty" in spec:
            assert summary["catch_up"]["empty"] == [d.isoformat() for d in spec["empty"]]
    else:
        assert code == 1
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out
        line = errors[0]
        # What failed (the step and the date), why, and where the traceback is.
        assert f"step {spec['fails']} failed for {END}: " in line and spec["says"] in line, line
        assert "unexpected" not in line, line
        log = re.search(r"traceback in (\S+\.log)", line)
        assert log and Path(log.group(1)).is_file(), line
        assert summary["failed_step"] == spec["fails"]


def test_articles_missing_from_the_file_are_derived_and_counted(tmp_path: Path) -> None:
    rows = base_log()
    ids = sorted({r["article_id"] for r in rows})
    articles = write_csv(tmp_path / "articles.csv", article_rows(set(ids[:10])))
    code, out = run(["data", "import-events", str(write_csv(tmp_path / "c.csv", rows)), "--articles", str(articles),
                     "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert code == 0, out
    squashed = re.sub(r"[\s\u2500-\u257f]+", "", out)
    assert "articles10" in squashed and f"articles_derived{len(ids) - 10}" in squashed
