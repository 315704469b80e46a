"""Ingest: bronze (by arrival day) -> silver (by event day), typed, deduplicated, sorted, idempotent;
late events merged, too-late / future / invalid rows quarantined with counts."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from reco.errors import NoDataError
from reco.generate import generate
from reco.importers import articles_quarantine_dir
from reco.ingest import ingest_date
from reco.lake import append_batch, list_dates, partition_dir, partition_files, read_partition, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

UTC = dt.UTC
D = dt.date(2024, 3, 10)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def event(event_id: str, ts: dt.datetime, user: str = "u1", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: None for f in EVENT_SCHEMA}
    row.update({"event_id": event_id, "ts": ts, "user_id": user, "article_id": "a1", "event_type": "click", **extra})
    return row


def write_bronze(settings: Settings, arrival: dt.date, rows: list[dict[str, Any]], mtime: float | None = None) -> Path:
    path = append_batch(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), settings.bronze_events_dir, arrival)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def silver(settings: Settings, day: dt.date) -> pa.Table:
    return read_partition(settings.silver_events_dir, day, EVENT_SCHEMA)


def test_silver_is_typed_sorted_and_deduplicated_keeping_the_earliest_arrival(settings: Settings) -> None:
    write_bronze(settings, D, [event("e3", at(D, 9)), event("e1", at(D, 12)), event("dup", at(D, 10), "first")], 1000)
    # A second delivery of "dup" lands later (newer file) with different content: the first one wins.
    write_bronze(settings, D, [event("dup", at(D, 10), "second"), event("e2", at(D, 9))], 2000)

    report = ingest_date(settings, D)

    table = silver(settings, D)
    assert table.schema == EVENT_SCHEMA
    assert table.column("event_id").to_pylist() == ["e2", "e3", "dup", "e1"]  # (ts, event_id) order
    assert table.filter(pc.equal(table.column("event_id"), "dup")).column("user_id").to_pylist() == ["first"]
    assert (report.bronze_rows, report.valid, report.deduplicated, report.silver_rows) == (5, 5, 1, 4)
    assert partition_files(settings.silver_events_dir, D)[0].name == "part-0.parquet"


def test_rerun_is_idempotent_row_for_row(settings: Settings) -> None:
    write_bronze(settings, D, [event(f"e{i}", at(D, i % 24, i % 60)) for i in range(50)] + [event("e7", at(D, 7, 7))])
    write_bronze(
        settings,
        D + dt.timedelta(days=1),
        [event("late", at(D, 23, 59)), event("next", at(D, 23) + dt.timedelta(hours=2))],
    )
    write_bronze(settings, D, [{**event("bad", at(D, 1)), "propensity": 2.0}])

    first = ingest_date(settings, D)
    files = partition_files(settings.silver_events_dir, D)
    table = silver(settings, D)
    second = ingest_date(settings, D)

    assert second == first
    assert partition_files(settings.silver_events_dir, D) == files
    assert silver(settings, D).equals(table)
    assert (settings.quarantine_dir / f"date={D}" / "ingest.parquet").is_file()
    assert pq.read_table(settings.quarantine_dir / f"date={D}" / "ingest.parquet").num_rows == 1


def test_invalid_rows_are_quarantined_with_reasons_and_replaced_on_rerun(settings: Settings) -> None:
    text = pa.table(
        {
            "event_id": ["ok", "", "t", "p", "d"],
            "ts": [f"{D}T10:00:00Z", f"{D}T10:00:00Z", "tomorrow-ish", f"{D}T10:00:00Z", f"{D}T10:00:00Z"],
            "user_id": ["u", "u", "u", "u", "u"],
            "article_id": ["a", "a", "a", "a", "a"],
            "event_type": ["click", "click", "click", "hover", "read"],
            "dwell_ms": ["", "", "", "", "-10"],
        }
    )
    append_batch(text, settings.bronze_events_dir, D)
    # An importer's quarantine file in the same partition must survive ingest's rewrite.
    imported = write_atomic(pa.table({"x": [1]}), partition_dir(settings.quarantine_dir, D) / "import-abc.parquet")

    report = ingest_date(settings, D)
    ingest_date(settings, D)

    expected = {"bad_timestamp": 1, "missing_event_id": 1, "negative_dwell": 1, "unknown_event_type": 1}
    assert report.quarantine_reasons == expected
    assert (report.bronze_rows, report.valid, report.quarantined, report.silver_rows) == (5, 1, 4, 1)
    rows = pq.read_table(partition_dir(settings.quarantine_dir, D) / "ingest.parquet").to_pylist()
    assert len(rows) == 4  # replaced, not appended, by the second run
    assert {r["source"] for r in rows} == {"ingest"}
    assert [r["ts"] for r in rows if r["reason"] == "bad_timestamp"] == ["tomorrow-ish"]
    assert imported.is_file()


def test_late_arrivals_join_silver_of_their_day(settings: Settings) -> None:
    nxt = D + dt.timedelta(days=1)
    write_bronze(settings, D, [event("e1", at(D, 8))])
    write_bronze(settings, nxt, [event("late", at(D, 23)), event("e2", at(nxt, 8))])

    report_d = ingest_date(settings, D)
    assert silver(settings, D).column("event_id").to_pylist() == ["e1", "late"]  # read from bronze D+1
    assert report_d.silver_rows == 2

    report_next = ingest_date(settings, nxt)
    assert report_next.late_merged == 1
    assert silver(settings, nxt).column("event_id").to_pylist() == ["e2"]
    assert silver(settings, D).column("event_id").to_pylist() == ["e1", "late"]  # merged once, not twice


def test_late_events_are_merged_into_an_existing_earlier_partition(settings: Settings) -> None:
    nxt = D + dt.timedelta(days=1)
    write_bronze(settings, D, [event("e1", at(D, 8)), event("e0", at(D, 7))])
    ingest_date(settings, D)  # bronze D+1 does not exist yet
    write_bronze(settings, nxt, [event("late", at(D, 22)), event("e1", at(D, 8), "again"), event("e2", at(nxt, 8))])

    report = ingest_date(settings, nxt)
    ingest_date(settings, nxt)  # idempotent for the merged partition too

    assert report.late_merged == 2
    table = silver(settings, D)
    assert table.column("event_id").to_pylist() == ["e0", "e1", "late"]
    assert table.column("user_id").to_pylist() == ["u1", "u1", "u1"]  # the silver copy of e1 arrived first
    assert silver(settings, nxt).column("event_id").to_pylist() == ["e2"]


def test_too_late_and_future_events_are_quarantined(settings: Settings) -> None:
    write_bronze(
        settings,
        D,
        [
            event("ok", at(D, 8)),
            event("old", at(D - dt.timedelta(days=2), 8)),  # beyond 1 day of lateness
            event("future", at(D + dt.timedelta(days=1), 0, 5)),
            event("yesterday", at(D - dt.timedelta(days=1), 20)),  # late, silver D-1 absent: left for D-1's run
        ],
    )
    report = ingest_date(settings, D)

    assert report.quarantine_reasons == {"future_ts": 1, "too_late": 1}
    assert (report.quarantined, report.valid, report.late_merged, report.silver_rows) == (2, 2, 0, 1)
    # The late event was not lost: D-1's own run finds it in bronze D.
    yesterday = D - dt.timedelta(days=1)
    assert not partition_files(settings.silver_events_dir, yesterday)
    write_bronze(settings, yesterday, [event("e-1", at(yesterday, 9))])
    ingest_date(settings, yesterday)
    assert silver(settings, yesterday).column("event_id").to_pylist() == ["e-1", "yesterday"]

    wide = ingest_date(settings, D, lateness_days=3)
    assert wide.quarantine_reasons == {"future_ts": 1}


def test_bronze_files_with_different_types_are_read_together(settings: Settings) -> None:
    write_bronze(settings, D, [event("typed", at(D, 8), dwell_ms=1200, event_type="read")])
    text = pa.table({"event_id": ["text"], "ts": ["1710064800"], "user_id": ["u"], "article_id": ["a"],
                     "event_type": ["click"], "dwell_ms": ["n/a"], "position": pa.array([2], pa.int64())})  # fmt: skip
    append_batch(text, settings.bronze_events_dir, D)
    text_ok = text.set_column(5, "dwell_ms", pa.array([""]))
    text_ok = text_ok.set_column(0, "event_id", pa.array(["text-ok"]))
    append_batch(text_ok, settings.bronze_events_dir, D)

    report = ingest_date(settings, D)

    assert report.quarantine_reasons == {"bad_number": 1}
    table = silver(settings, D)
    assert sorted(table.column("event_id").to_pylist()) == ["text-ok", "typed"]
    assert table.schema == EVENT_SCHEMA


def test_no_bronze_for_the_day_raises(settings: Settings) -> None:
    with pytest.raises(NoDataError, match=str(D)):
        ingest_date(settings, D)
    write_bronze(settings, D, [])
    with pytest.raises(NoDataError):
        ingest_date(settings, D)


def test_silver_articles_one_row_per_article_latest_import_wins(settings: Settings) -> None:
    def articles(rows: list[tuple[str, str, str | None]], name: str, mtime: float) -> None:
        table = pa.table(
            {
                "article_id": [r[0] for r in rows],
                "published_at": pa.array([at(D, 6)] * len(rows), pa.timestamp("us", tz="UTC")),
                "category": ["news"] * len(rows),
                "title": [r[1] for r in rows],
                "abstract": [r[2] for r in rows],
            }
        )
        path = write_atomic(table, settings.bronze_articles_dir / name)
        os.utime(path, (mtime, mtime))

    # Name order and time order disagree on purpose: time order decides.
    articles([("a1", "new title", None), ("a3", "", None)], "aaa-later.parquet", 2000)
    articles([("a1", "old title", "x"), ("a2", "two", "y")], "zzz-earlier.parquet", 1000)
    write_bronze(settings, D, [event("e1", at(D, 8))])

    report = ingest_date(settings, D)

    table = pq.read_table(settings.silver_articles_path)
    assert table.schema == ARTICLE_SCHEMA
    assert table.column("article_id").to_pylist() == ["a1", "a2"]
    assert table.column("title").to_pylist() == ["new title", "two"]
    assert report.articles == 2
    assert report.quarantine_reasons == {"article_missing_title": 1}
    assert pq.read_table(articles_quarantine_dir(settings) / "ingest.parquet").column("article_id").to_pylist() == [
        "a3"
    ]


def test_generated_lake_ingests_to_exactly_the_distinct_events(settings: Settings) -> None:
    made = generate(settings, users=250, articles=60, days=3, seed=11, end=dt.date(2026, 11, 20))
    reports = [ingest_date(settings, day) for day in list_dates(settings.bronze_events_dir)]

    tables = [silver(settings, day) for day in list_dates(settings.silver_events_dir)]
    ids = pa.concat_arrays([t.column("event_id").combine_chunks() for t in tables])
    assert len(ids) == made.impressions + made.clicks + made.reads == pc.count_distinct(ids).as_py()
    assert sum(r.bronze_rows for r in reports) == made.events
    assert sum(r.quarantined for r in reports) == 0
    assert sum(r.deduplicated for r in reports) == made.duplicates
    for day, table in zip(list_dates(settings.silver_events_dir), tables, strict=True):
        days = pc.cast(table.column("ts"), pa.date32()).to_pylist()
        assert set(days) == {day}


def write_pubsub_file(settings: Settings, arrival: dt.date, rows: list[dict[str, Any]], name: str) -> Path:
    """A file as Pub/Sub's Cloud Storage subscription writes it: one message (the service's encoding) per line."""
    from services.recommend.events import encode_event

    folder = partition_dir(settings.bronze_events_dir, arrival)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\n".join(encode_event(tuple(r[f.name] for f in EVENT_SCHEMA)) for r in rows) + b"\n")
    return path


def test_pubsub_json_lines_are_ingested_beside_parquet(settings: Settings) -> None:
    write_bronze(settings, D, [event("p1", at(D, 9))], 1000)
    write_pubsub_file(settings, D, [event("j1", at(D, 8), position=2, propensity=0.25, dwell_ms=1200, event_type="read"),
                                    event("p1", at(D, 9)), event("j2", at(D, 23, 59))], "10_00_00Zabc.jsonl")  # fmt: skip

    report = ingest_date(settings, D)

    table = silver(settings, D)
    assert table.schema == EVENT_SCHEMA
    assert table.column("event_id").to_pylist() == ["j1", "p1", "j2"]
    j1 = table.filter(pc.equal(table.column("event_id"), "j1")).to_pylist()[0]
    assert (j1["position"], j1["propensity"], j1["dwell_ms"], j1["event_type"]) == (2, 0.25, 1200, "read")
    assert j1["ts"] == at(D, 8)
    assert (report.bronze_rows, report.deduplicated, report.silver_rows) == (4, 1, 3)


def test_a_late_pubsub_file_joins_its_day_and_a_broken_line_is_named(settings: Settings) -> None:
    write_bronze(settings, D, [event("p1", at(D, 9))], 1000)
    assert list_dates(settings.bronze_events_dir) == [D]
    # Written the next day (the subscription files by arrival), holding one event of D and one of D+1.
    write_pubsub_file(settings, D + dt.timedelta(days=1), [event("late", at(D, 22)), event("next", at(D + dt.timedelta(days=1), 1))], "a.jsonl")
    assert list_dates(settings.bronze_events_dir) == [D, D + dt.timedelta(days=1)]  # a JSON-lines-only day counts
    ingest_date(settings, D)
    assert silver(settings, D).column("event_id").to_pylist() == ["p1", "late"]

    broken = partition_dir(settings.bronze_events_dir, D) / "b.jsonl"
    broken.write_text('{"event_id": "x"}\nnot json\n')
    with pytest.raises(Exception, match=r"b\.jsonl: line 2 is not JSON"):
        ingest_date(settings, D)
