"""Row-level contracts: every row is either typed exactly as EVENT_SCHEMA / ARTICLE_SCHEMA or quarantined
with a stable reason and its original values as text; nothing is dropped, no value makes it fail."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pytest

from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, QUARANTINE_SCHEMA
from reco.validate import (
    ARTICLE_QUARANTINE_SCHEMA,
    EVENT_REASONS,
    count_reasons,
    parse_timestamps,
    split_events,
    validate_articles,
    validate_events,
)

UTC = dt.UTC
GOOD = {
    "event_id": "e",
    "ts": "2024-01-05T10:00:00Z",
    "user_id": "u1",
    "article_id": "a1",
    "event_type": "click",
    "dwell_ms": "",
    "request_id": "r1",
    "position": "",
    "model_version": "",
    "variant": "",
    "propensity": "",
}

# One row per reason (each breaks exactly one rule), with how many rows of it the table holds.
BAD_ROWS: list[tuple[str, dict[str, str | None], int]] = [
    ("missing_event_id", {"event_id": "  "}, 2),
    ("missing_user_id", {"user_id": None}, 1),
    ("missing_article_id", {"article_id": ""}, 1),
    ("bad_timestamp", {"ts": "yesterday"}, 3),
    ("bad_timestamp", {"ts": ""}, 1),
    ("bad_timestamp", {"ts": "2024-13-45T10:00:00Z"}, 1),
    ("ts_out_of_range", {"ts": "epoch"}, 1),
    ("ts_out_of_range", {"ts": "infinity"}, 1),
    ("missing_event_type", {"event_type": ""}, 1),
    ("unknown_event_type", {"event_type": "purchase"}, 2),
    ("bad_number", {"dwell_ms": "long"}, 1),
    ("bad_number", {"position": "2.5"}, 1),
    ("bad_number", {"propensity": "nan"}, 1),
    ("bad_number", {"position": "99999999999"}, 1),
    ("negative_dwell", {"dwell_ms": "-1"}, 2),
    ("negative_position", {"position": "-3"}, 1),
    ("bad_propensity", {"propensity": "0"}, 1),
    ("bad_propensity", {"propensity": "1.5"}, 1),
]


def text_table(rows: Sequence[Mapping[str, str | None]]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in rows], pa.string()) for name in GOOD})


def make_rows() -> tuple[list[dict[str, str | None]], dict[str, int]]:
    rows: list[dict[str, str | None]] = []
    expected: dict[str, int] = {}
    for reason, change, count in BAD_ROWS:
        for i in range(count):
            rows.append({**GOOD, "event_id": f"bad-{reason}-{len(rows)}-{i}", **change})
        expected[reason] = expected.get(reason, 0) + count
    for i in range(5):
        rows.append({**GOOD, "event_id": f"good-{i}"})
    return rows, expected


def test_each_reason_is_counted_and_good_rows_are_typed() -> None:
    rows, expected = make_rows()
    valid, quarantined = validate_events(text_table(rows), "test")

    assert count_reasons(quarantined) == dict(sorted(expected.items()))
    assert set(expected) <= set(EVENT_REASONS)
    assert valid.schema == EVENT_SCHEMA
    assert quarantined.schema == QUARANTINE_SCHEMA
    assert valid.column("event_id").to_pylist() == [f"good-{i}" for i in range(5)]
    assert valid.num_rows + quarantined.num_rows == len(rows)
    assert set(quarantined.column("source").to_pylist()) == {"test"}


def test_quarantine_keeps_original_values_as_text() -> None:
    rows = [{**GOOD, "event_id": " x1 ", "ts": " not a time ", "dwell_ms": "12,5"}]
    _, quarantined = validate_events(text_table(rows), "import:x.csv")
    (row,) = quarantined.to_pylist()
    assert row["event_id"] == " x1 "  # untrimmed: exactly what came in
    assert row["ts"] == " not a time "
    assert row["dwell_ms"] == "12,5"
    assert row["reason"] == "bad_timestamp"
    assert row["source"] == "import:x.csv"


def test_typed_input_and_nonstring_originals_become_text_in_quarantine() -> None:
    table = pa.table(
        {
            "event_id": pa.array([1, 2], pa.int64()),
            "ts": pa.array([dt.datetime(2024, 1, 5, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
            "user_id": ["u", "u"],
            "article_id": ["a", "a"],
            "event_type": ["read", "read"],
            "dwell_ms": pa.array([1500, -2], pa.int64()),
            "propensity": pa.array([0.25, 0.5]),
        }
    )
    valid, quarantined = validate_events(table, "t")
    assert valid.column("event_id").to_pylist() == ["1"]
    assert valid.column("dwell_ms").to_pylist() == [1500]
    assert quarantined.column("dwell_ms").to_pylist() == ["-2"]
    assert quarantined.column("reason").to_pylist() == ["negative_dwell"]
    assert quarantined.column("ts").to_pylist()[0].startswith("2024-01-05 00:00:00")


EXPECTED_TS = dt.datetime(2024, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05T10:00:00Z", EXPECTED_TS),
        ("2024-01-05T12:00:00+02:00", EXPECTED_TS),
        ("2024-01-05 10:00:00", EXPECTED_TS),  # naive means UTC
        ("2024-01-05T10:00:00.250000Z", EXPECTED_TS + dt.timedelta(milliseconds=250)),
        ("1704448800", EXPECTED_TS),  # epoch seconds
        ("1704448800123", EXPECTED_TS + dt.timedelta(milliseconds=123)),  # epoch ms, exact
        ("1704448800.5", EXPECTED_TS + dt.timedelta(milliseconds=500)),
        ("2024-01-05", dt.datetime(2024, 1, 5, tzinfo=UTC)),
        (" 2024-01-05T10:00:00Z ", EXPECTED_TS),
    ],
)
def test_timestamps_are_normalised_to_utc_microseconds(text: str, expected: dt.datetime) -> None:
    valid, quarantined = validate_events(text_table([{**GOOD, "ts": text}]), "t")
    assert quarantined.num_rows == 0
    assert valid.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert valid.column("ts").to_pylist() == [expected]


def test_numeric_and_naive_timestamp_columns() -> None:
    base = {k: v for k, v in GOOD.items() if k != "ts"}
    epoch_ms = pa.table({**{k: [v] for k, v in base.items()}, "ts": pa.array([1704448800000], pa.int64())})
    naive = pa.table(
        {**{k: [v] for k, v in base.items()}, "ts": pa.array([dt.datetime(2024, 1, 5, 10)], pa.timestamp("ns"))}
    )
    for table in (epoch_ms, naive):
        valid, _ = validate_events(table, "t")
        assert valid.column("ts").to_pylist() == [EXPECTED_TS]


def test_values_are_normalised() -> None:
    row = {
        **GOOD,
        "event_type": " Read ",
        "dwell_ms": "1234.6",
        "position": "3.0",
        "propensity": "1",
        "user_id": " u9 ",
    }
    valid, _ = validate_events(text_table([row]), "t")
    (out,) = valid.to_pylist()
    assert out["event_type"] == "read"
    assert out["dwell_ms"] == 1235
    assert out["position"] == 3
    assert out["propensity"] == 1.0
    assert out["user_id"] == "u9"
    assert out["model_version"] is None  # blank optional text is null


def test_missing_columns_and_null_typed_columns_do_not_crash() -> None:
    table = pa.table({"event_id": ["e1", "e2"], "ts": ["2024-01-05", "2024-01-05"], "user_id": ["u", "u"],
                      "article_id": ["a", "a"], "event_type": ["click", "click"], "dwell_ms": pa.nulls(2)})  # fmt: skip
    valid, quarantined = validate_events(table, "t")
    assert valid.num_rows == 2 and quarantined.num_rows == 0
    only_ids = pa.table({"event_id": ["e1"]})
    valid, quarantined = validate_events(only_ids, "t")
    assert valid.num_rows == 0
    assert quarantined.column("reason").to_pylist() == ["missing_user_id"]


def test_odd_arrow_types_never_crash() -> None:
    table = pa.table(
        {
            "event_id": pa.array([b"e1", b"\xff\xfe"], pa.binary()),
            "ts": pa.array([[1], [2]], pa.list_(pa.int64())),
            "user_id": pa.array(["u", "u"], pa.large_string()),
            "article_id": pa.array(["a", "a"]).dictionary_encode(),
            "event_type": pa.array([True, False]),
            "dwell_ms": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(5, 1)),
            "position": pa.array(["1", "2"], pa.string_view()),
        }
    )
    valid, quarantined = validate_events(table, "t")
    assert valid.num_rows == 0
    assert count_reasons(quarantined) == {"bad_timestamp": 2}
    assert quarantined.column("event_id").to_pylist() == ["e1", "\\xff\\xfe"]
    assert quarantined.column("ts").to_pylist() == ["[1]", "[2]"]

    typed = pa.table({"event_id": ["e"], "ts": pa.array(["2024-01-05"], pa.large_string()), "user_id": ["u"],
                      "article_id": ["a"], "event_type": pa.array(["CLICK"]).dictionary_encode(),
                      "dwell_ms": pa.array([decimal.Decimal("1.5")], pa.decimal128(5, 1))})  # fmt: skip
    valid, _ = validate_events(typed, "t")
    assert valid.column("event_type").to_pylist() == ["click"]
    assert valid.column("dwell_ms").to_pylist() == [2]


def test_empty_input() -> None:
    valid, quarantined = validate_events(EVENT_SCHEMA.empty_table(), "t")
    assert valid.schema == EVENT_SCHEMA and valid.num_rows == 0
    assert quarantined.schema == QUARANTINE_SCHEMA and quarantined.num_rows == 0


def test_mask_lines_up_with_input_rows() -> None:
    rows, _ = make_rows()
    split = split_events(text_table(rows), "t")
    kept = [r["event_id"] for r, ok in zip(rows, split.valid_mask.to_pylist(), strict=True) if ok]
    assert kept == split.valid.column("event_id").to_pylist()


def test_parse_timestamps_nulls_unreadable_and_out_of_range() -> None:
    parsed = parse_timestamps(pa.array(["2024-01-05T10:00:00Z", "nope", None, "0", "1704448800"]))
    assert parsed.to_pylist() == [EXPECTED_TS, None, None, None, EXPECTED_TS]


def test_articles_reasons_and_types() -> None:
    table = pa.table(
        {
            "article_id": ["a1", "", "a3", "a4", "a5", "a6"],
            "published_at": ["2024-01-05T08:00:00Z", "2024-01-05", "someday", "2024-01-05", "2024-01-05", "1704448800"],
            "category": ["news", "news", "news", "", "news", "tech"],
            "title": ["T1", "T2", "T3", "T4", None, "T6"],
            "abstract": ["x", "x", "x", "x", "x", ""],
        }
    )
    valid, quarantined = validate_articles(table, "t")
    assert valid.schema == ARTICLE_SCHEMA
    assert quarantined.schema == ARTICLE_QUARANTINE_SCHEMA
    assert valid.column("article_id").to_pylist() == ["a1", "a6"]
    assert valid.column("abstract").to_pylist() == ["x", None]
    assert count_reasons(quarantined) == {
        "bad_published_at": 1,
        "missing_article_id": 1,
        "missing_category": 1,
        "missing_title": 1,
    }
