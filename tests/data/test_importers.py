"""Importers: MIND folders and click logs land in bronze by event date, bad rows in quarantine with
reasons, ids are deterministic, and a failing import leaves the workdir exactly as it was."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reco.errors import InputFileError
from reco.importers import articles_quarantine_dir, import_events, import_mind
from reco.lake import list_dates, read_partition
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

UTC = dt.UTC

# A tiny MIND split: U1 twice (history N1 N2), U2 once without history, U3 with an unreadable time,
# one row without a user. Labels: -1 clicked, -0 skipped.
BEHAVIORS = [
    ("1", "U1", "11/15/2019 8:55:22 AM", "N1 N2", "N3-1 N4-0 N5-0"),
    ("2", "U2", "11/15/2019 10:22:32 PM", "", "N3-0 N4-1"),
    ("3", "U1", "11/16/2019 1:00:00 AM", "N1 N2", "N6-1 N3-0"),
    ("4", "U3", "not a time", "N1", "N3-0"),
    ("5", "", "11/16/2019 2:00:00 AM", "", "N4-0"),
]
NEWS = [
    ("N1", "news", "world", 'A "quoted" title', "abstract one", "https://x/1", "[]", "[]"),
    ("N2", "sports", "soccer", "Title two", "", "https://x/2", "[]", "[]"),
    ("N3", "news", "world", "Title three", "a", "https://x/3", "[]", "[]"),
    ("N4", "finance", "markets", "Title four", "a", "https://x/4", "[]", "[]"),
    ("N5", "news", "world", "Title five", "a", "https://x/5", "[]", "[]"),
    ("N6", "tech", "ai", "Title six", "a", "https://x/6", "[]", "[]"),
    ("N7", "tech", "ai", "Never shown", "a", "https://x/7", "[]", "[]"),
    ("N8", "tech", "ai", "", "no title", "https://x/8", "[]", "[]"),
]


def write_tsv(path: Path, rows: Sequence[tuple[str, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def mind_folder(root: Path) -> Path:
    write_tsv(root / "behaviors.tsv", BEHAVIORS)
    write_tsv(root / "news.tsv", NEWS)
    return root


def all_bronze(settings: Settings) -> pa.Table:
    days = list_dates(settings.bronze_events_dir)
    return pa.concat_tables([read_partition(settings.bronze_events_dir, d, EVENT_SCHEMA) for d in days])


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def quarantine_rows(settings: Settings) -> list[dict[str, str]]:
    return [row for f in sorted(settings.quarantine_dir.rglob("*.parquet")) for row in pq.read_table(f).to_pylist()]


# --- MIND -------------------------------------------------------------------------------------------


def test_mind_import_events_articles_and_report(settings: Settings, tmp_path: Path) -> None:
    report = import_mind(settings, mind_folder(tmp_path / "mind"))

    events = all_bronze(settings)
    by_id = {row["event_id"]: row for row in events.to_pylist()}
    t1 = dt.datetime(2019, 11, 15, 8, 55, 22, tzinfo=UTC)
    # Impressions: request_id = impression id, position = 0-based index; the clicked item also a click.
    first = by_id["mind-1-1573808122-0"]
    assert (first["event_type"], first["article_id"], first["ts"], first["request_id"], first["position"]) == (
        "impression", "N3", t1, "1", 0,
    )  # fmt: skip
    assert by_id["mind-1-1573808122-0-c"]["event_type"] == "click"
    assert by_id["mind-1-1573808122-2"]["article_id"] == "N5"
    assert "mind-1-1573808122-1-c" not in by_id  # N4-0: shown, not clicked
    # History once per user, just before the user's first row, in order.
    assert by_id["mind-h-U1-N1"]["ts"] == t1 - dt.timedelta(seconds=2)
    assert by_id["mind-h-U1-N2"]["ts"] == t1 - dt.timedelta(seconds=1)
    assert sum(1 for i in by_id if i.startswith("mind-h-U1-")) == 2
    # 3+2+2 impressions, 1+1+1 clicks, 2 history clicks of U1.
    counts = {t: sum(1 for r in by_id.values() if r["event_type"] == t) for t in ("impression", "click")}
    assert counts == {"impression": 7, "click": 5}

    # U3's row (unreadable time) and its history, and the user-less row: quarantined with reasons.
    assert report.kept == 12 == events.num_rows
    assert report.quarantined == 3
    assert report.reasons == {"bad_timestamp": 2, "missing_user_id": 1, "article_missing_title": 1}
    assert report.dates == ["2019-11-15", "2019-11-16"]
    rows = quarantine_rows(settings)
    assert {r["reason"] for r in rows if r["ts"] == "not a time"} == {"bad_timestamp"}
    assert (settings.quarantine_dir / "date=unknown").is_dir()
    assert (settings.quarantine_dir / "date=2019-11-16").is_dir()  # user-less row, readable ts

    articles = pq.read_table(next(settings.bronze_articles_dir.glob("*.parquet")))
    assert articles.schema == ARTICLE_SCHEMA
    assert report.articles == articles.num_rows == 7
    published = {r["article_id"]: r["published_at"] for r in articles.to_pylist()}
    # First appearance minus one hour: N1 first appears as U1's history click at t1 - 2 s.
    assert published["N1"] == t1 - dt.timedelta(hours=1, seconds=2)
    assert published["N3"] == t1 - dt.timedelta(hours=1)
    assert published["N6"] == dt.datetime(2019, 11, 16, 0, 0, tzinfo=UTC)
    # Never shown: the earliest time of the import minus one day.
    assert published["N7"] == t1 - dt.timedelta(days=1, seconds=2)
    assert {
        r["article_id"] for r in pq.read_table(next(articles_quarantine_dir(settings).glob("*.parquet"))).to_pylist()
    } == {"N8"}


def test_mind_reimport_gives_the_same_event_ids(settings: Settings, tmp_path: Path) -> None:
    folder = mind_folder(tmp_path / "mind")
    import_mind(settings, folder)
    first = sorted(all_bronze(settings).column("event_id").to_pylist())
    import_mind(settings, folder)
    both = sorted(all_bronze(settings).column("event_id").to_pylist())
    assert both == sorted(first * 2)
    assert len(set(first)) == len(first)


def test_mind_malformed_row_names_file_and_row_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    folder = mind_folder(tmp_path / "mind")
    lines = (folder / "behaviors.tsv").read_text().splitlines()
    lines.insert(2, "6\tU9\t11/16/2019 2:00:00 AM")  # 3 fields instead of 5, on line 3
    (folder / "behaviors.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as caught:
        import_mind(settings, folder)
    assert caught.value.path.endswith("behaviors.tsv")
    assert caught.value.row == 3
    assert not settings.workdir.exists()


def test_mind_missing_file(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "mind"
    write_tsv(folder / "behaviors.tsv", BEHAVIORS)
    with pytest.raises(InputFileError, match=r"news\.tsv"):
        import_mind(settings, folder)


# --- click logs -------------------------------------------------------------------------------------

CSV_HEADER = "user_id,article_id,ts,event_type,dwell_ms,extra\n"
CSV_ROWS = [
    "u1,a1,2024-03-01T10:00:00Z,click,,x",  # kept
    "u1,a1,2024-03-01T10:00:05Z,read,15000,x",  # kept
    "u2,a2,1709287200,,,x",  # kept, epoch seconds, event_type defaults to click
    "u2,a3,2024-03-02 09:00:00,impression,,x",  # kept, naive = UTC, next day
    ",a1,2024-03-01T11:00:00Z,click,,x",  # missing_user_id
    "u3,a1,whenever,click,,x",  # bad_timestamp -> date=unknown
    "u3,a1,2024-03-02T11:00:00Z,read,-5,x",  # negative_dwell
    "u3,a1,2024-03-02T11:00:00Z,like,,x",  # unknown_event_type
]


def write_csv(path: Path, rows: list[str], header: str = CSV_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


def test_csv_import_keeps_quarantines_and_reports(settings: Settings, tmp_path: Path) -> None:
    report = import_events(settings, write_csv(tmp_path / "clicks.csv", CSV_ROWS))

    assert (report.kept, report.quarantined) == (4, 4)
    assert report.reasons == {"bad_timestamp": 1, "missing_user_id": 1, "negative_dwell": 1, "unknown_event_type": 1}
    assert report.dates == ["2024-03-01", "2024-03-02"]
    assert list_dates(settings.bronze_events_dir) == [dt.date(2024, 3, 1), dt.date(2024, 3, 2)]
    events = all_bronze(settings)
    assert events.schema == EVENT_SCHEMA
    assert sorted(events.column("event_type").to_pylist()) == ["click", "click", "impression", "read"]
    assert all(i.startswith("ev-") and len(i) == 27 for i in events.column("event_id").to_pylist())
    assert all(f.name.startswith("import-") for f in settings.bronze_events_dir.rglob("*.parquet"))

    rows = quarantine_rows(settings)
    assert {r["source"] for r in rows} == {"import:clicks.csv"}
    assert [r["ts"] for r in rows if r["reason"] == "bad_timestamp"] == ["whenever"]
    assert len(list((settings.quarantine_dir / "date=unknown").glob("*.parquet"))) == 1
    assert len(list((settings.quarantine_dir / "date=2024-03-02").glob("*.parquet"))) == 1
    assert not list(settings.lake_dir.glob(".staging-*"))


def test_derived_event_ids_are_deterministic_and_given_ids_are_kept(settings: Settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "clicks.csv", CSV_ROWS[:4])
    import_events(settings, path)
    import_events(settings, path)
    ids = all_bronze(settings).column("event_id").to_pylist()
    assert len(ids) == 8 and len(set(ids)) == 4

    other = Settings(workdir=tmp_path / "other")
    given = write_csv(tmp_path / "given.csv", ["e-1,u1,a1,2024-03-01T10:00:00Z", ",u1,a2,2024-03-01T10:00:00Z"],
                      header="event_id,user_id,article_id,ts\n")  # fmt: skip
    import_events(other, given)
    ids = sorted(all_bronze(other).column("event_id").to_pylist())
    assert ids[0] == "e-1" and ids[1].startswith("ev-")


def test_parquet_import_with_articles(settings: Settings, tmp_path: Path) -> None:
    events = pa.table(
        {
            "user_id": ["u1", "u2"],
            "article_id": ["a1", "a2"],
            "ts": pa.array([dt.datetime(2024, 3, 1, 10, tzinfo=UTC), dt.datetime(2024, 3, 1, 11, tzinfo=UTC)]),
            "dwell_ms": pa.array([None, 3000], pa.int64()),
            "event_type": ["click", "read"],
        }
    )
    pq.write_table(events, tmp_path / "events.parquet")
    write_csv(tmp_path / "articles.csv", ['a1,2024-02-29T08:00:00Z,news,Title one,"two\nlines"', "a2,2024-02-29,tech,,x"],
              header="article_id,published_at,category,title,abstract\n")  # fmt: skip

    report = import_events(settings, tmp_path / "events.parquet", tmp_path / "articles.csv")

    assert (report.kept, report.quarantined, report.articles, report.articles_derived) == (2, 0, 1, 1)
    assert report.reasons == {"article_missing_title": 1}
    (article_file,) = settings.bronze_articles_dir.glob("import-*.parquet")
    assert pq.read_table(article_file).select(["article_id", "abstract"]).to_pylist() == [
        {"article_id": "a1", "abstract": "two\nlines"}
    ]
    # a2's row was rejected, so a2 is described by its first event, like an article missing from the file.
    (derived_file,) = settings.bronze_articles_dir.glob("derived-*.parquet")
    assert pq.read_table(derived_file).select(["article_id", "category", "title"]).to_pylist() == [
        {"article_id": "a2", "category": "unknown", "title": "a2"}
    ]
    assert all_bronze(settings).column("dwell_ms").to_pylist() == [None, 3000]


def test_missing_column_names_file_and_column(settings: Settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "clicks.csv", ["u1,2024-03-01T10:00:00Z"], header="user_id,ts\n")
    with pytest.raises(InputFileError) as caught:
        import_events(settings, path)
    assert caught.value.column == "article_id"
    assert "clicks.csv" in str(caught.value) and "'article_id'" in str(caught.value)
    assert not settings.workdir.exists()


def test_malformed_csv_names_the_row_and_leaves_no_file(settings: Settings, tmp_path: Path) -> None:
    # An earlier successful import, then one that fails on line 40 after batches were already staged.
    import_events(settings, write_csv(tmp_path / "ok.csv", CSV_ROWS))
    before = all_files(settings.workdir)
    rows = [f"u{i},a{i % 7},2024-03-0{1 + i % 3}T10:00:00Z,click,,x" for i in range(60)]
    rows[38] += ",one too many"  # line 40 of the file (the header is line 1)
    path = write_csv(tmp_path / "broken.csv", rows)

    with pytest.raises(InputFileError) as caught:
        import_events(settings, path, csv_block_bytes=256)
    assert caught.value.row == 40
    assert "broken.csv" in str(caught.value) and "row 40" in str(caught.value)
    assert all_files(settings.workdir) == before


def test_failing_articles_file_discards_the_staged_events(settings: Settings, tmp_path: Path) -> None:
    events = write_csv(tmp_path / "clicks.csv", CSV_ROWS)
    articles = write_csv(tmp_path / "articles.csv", ["a1,news"], header="article_id,category\n")
    with pytest.raises(InputFileError) as caught:
        import_events(settings, events, articles)
    assert caught.value.column == "published_at"
    assert not settings.workdir.exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("clicks.json", "{}", "unknown file type"),
        ("clicks.parquet", "not parquet", "Parquet"),
        ("empty.csv", "", "empty file"),
    ],
)
def test_unreadable_inputs(settings: Settings, tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputFileError, match=problem) as caught:
        import_events(settings, path)
    assert name in str(caught.value)
    assert not settings.workdir.exists()


def test_missing_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        import_events(settings, tmp_path / "nope.csv")


def test_gzipped_tsv(settings: Settings, tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "clicks.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("User_ID\tarticle_id\tts\nu1\ta1\t2024-03-01T10:00:00Z\n")
    report = import_events(settings, path)
    assert report.kept == 1
