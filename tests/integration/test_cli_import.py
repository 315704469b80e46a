"""`reco data import-*` from the command line: the report on success, a non-zero exit with a message that
names the file (and column / row) on failure, and nothing written then; imported data then ingests."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from reco.cli import app
from reco.lake import list_dates
from reco.settings import Settings

runner = CliRunner()


def squash(text: str) -> str:
    # Rich wraps long lines (and long paths) at the console width and draws table borders;
    # compare without whitespace and box-drawing characters.
    return re.sub(r"[\s\u2500-\u257f]+", "", text)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CLICKS = (
    "user_id,article_id,ts,event_type,dwell_ms\n"
    "u1,a1,2024-03-01T10:00:00Z,click,\n"
    "u1,a1,2024-03-01T10:00:09Z,read,9000\n"
    "u2,a2,2024-03-01T11:00:00Z,,\n"
    "u3,a1,not-a-time,click,\n"
    "u3,a2,2024-03-01T12:00:00Z,read,-1\n"
)
ARTICLES = (
    "article_id,published_at,category,title\na1,2024-03-01T06:00:00Z,news,One\na2,2024-03-01T07:00:00Z,tech,Two\n"
)


def test_import_events_reports_counts_and_then_ingests(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    clicks = write(tmp_path / "in" / "clicks.csv", CLICKS)
    articles = write(tmp_path / "in" / "articles.csv", ARTICLES)

    result = runner.invoke(
        app, ["data", "import-events", str(clicks), "--articles", str(articles), "--workdir", str(workdir)]
    )

    assert result.exit_code == 0, result.output
    out = squash(result.output)
    assert "kept3" in out and "quarantined2" in out and "articles2" in out
    assert "'bad_timestamp':1" in out and "'negative_dwell':1" in out
    settings = Settings(workdir=workdir)
    assert [d.isoformat() for d in list_dates(settings.bronze_events_dir)] == ["2024-03-01"]

    ingested = runner.invoke(app, ["pipeline", "step", "ingest", "--date", "2024-03-01", "--workdir", str(workdir)])
    assert ingested.exit_code == 0, ingested.output
    assert settings.silver_articles_path.is_file()
    assert list((settings.silver_events_dir / "date=2024-03-01").glob("*.parquet"))


def test_import_events_missing_column_fails_with_file_and_column(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    clicks = write(tmp_path / "in" / "clicks.csv", "user_id,ts\nu1,2024-03-01T10:00:00Z\n")

    result = runner.invoke(app, ["data", "import-events", str(clicks), "--workdir", str(workdir)])

    assert result.exit_code == 1
    out = squash(result.output)
    assert "error:" in out
    assert squash(str(clicks)) in out and "column'article_id'" in out
    assert not workdir.exists()


def test_import_events_malformed_row_fails_with_the_row_and_writes_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    ok = runner.invoke(
        app, ["data", "import-events", str(write(tmp_path / "ok.csv", CLICKS)), "--workdir", str(workdir)]
    )
    assert ok.exit_code == 0, ok.output
    before = sorted(p for p in workdir.rglob("*"))
    broken = write(tmp_path / "broken.csv", CLICKS + "u9,a9,2024-03-01T13:00:00Z,click,,surplus\n")

    result = runner.invoke(app, ["data", "import-events", str(broken), "--workdir", str(workdir)])

    assert result.exit_code == 1
    assert "row7" in squash(result.output) and "broken.csv" in squash(result.output)
    # The lake is as it was; only the failure's log (named in the error line) was added.
    (log,) = (workdir / "logs").glob("reco-*.log")
    assert squash(str(log)) in squash(result.output)
    assert "InputFileError" in log.read_text()
    assert sorted(p for p in workdir.rglob("*") if "logs" not in p.relative_to(workdir).parts) == before


def test_import_mind_from_the_cli(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    folder = tmp_path / "mind"
    write(folder / "behaviors.tsv", "1\tU1\t11/15/2019 8:55:22 AM\tN1\tN2-1 N3-0\n")
    write(
        folder / "news.tsv",
        "N1\tnews\tworld\tOne\t\tu\t[]\t[]\nN2\tnews\tworld\tTwo\t\tu\t[]\t[]\nN3\ttech\tai\tThree\t\tu\t[]\t[]\n",
    )

    result = runner.invoke(app, ["data", "import-mind", str(folder), "--workdir", str(workdir)])

    assert result.exit_code == 0, result.output
    out = squash(result.output)
    assert "kept4" in out and "quarantined0" in out and "articles3" in out and "2019-11-15" in out

    missing = runner.invoke(app, ["data", "import-mind", str(tmp_path / "nowhere"), "--workdir", str(workdir)])
    assert missing.exit_code == 1
    assert "behaviors.tsv" in squash(missing.output)
