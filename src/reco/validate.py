"""Row-level data contracts: split loosely typed events and articles into typed rows and quarantined rows.

Input tables may come from anywhere (CSV read as text, Parquet with its own types, the generator's typed
batches). Every row ends up in exactly one of two outputs: the valid rows, cast exactly to
``EVENT_SCHEMA`` / ``ARTICLE_SCHEMA``, or the quarantined rows, which keep every original value as text
plus the ``reason`` (the first failed rule, in the order of ``EVENT_REASONS``) and the ``source``.
Nothing is dropped and no value makes the function fail.

The checks run as one DuckDB query per call (vectorised, multi-threaded); Python only chooses the SQL
expression of each column from its Arrow type, never loops over rows.

Timestamps (``ts``, ``published_at``) are normalised to UTC with microsecond precision. Accepted:

* Arrow timestamps (naive ones are taken as UTC) and dates (midnight UTC);
* ISO-8601 text with or without a zone (``2024-01-05T10:00:00Z``, ``...+02:00``, ``2024-01-05 10:00:00``;
  no zone means UTC), and a date alone;
* epoch numbers (integers, floats or numeric text), the unit chosen by magnitude: seconds below 1e11,
  milliseconds below 1e14, microseconds below 1e17, nanoseconds above.

A timestamp that parses but lies outside [1990-01-01, 2100-01-01) (``epoch``, ``infinity``, a year
typed as 20240) is quarantined as ``ts_out_of_range``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, EVENT_TYPES, QUARANTINE_SCHEMA

# Why an event row was set aside; a row gets the first reason of this list that applies to it.
EVENT_REASONS: tuple[str, ...] = (
    "missing_event_id",
    "missing_user_id",
    "missing_article_id",
    "bad_timestamp",  # ts missing or not parsable
    "ts_out_of_range",  # ts parsed but outside [MIN_TS, MAX_TS)
    "missing_event_type",
    "unknown_event_type",  # not one of EVENT_TYPES (compared trimmed, case-insensitively)
    "bad_number",  # dwell_ms / position / propensity not a finite number, position not a whole int32
    "negative_dwell",
    "negative_position",
    "bad_propensity",  # outside (0, 1]
)
ARTICLE_REASONS: tuple[str, ...] = (
    "missing_article_id",
    "bad_published_at",  # missing or not parsable
    "ts_out_of_range",
    "missing_category",
    "missing_title",
)

# Event columns that are text in EVENT_SCHEMA (cleaned in Arrow, not in DuckDB).
_EVENT_TEXT_COLUMNS = ("event_id", "user_id", "article_id", "event_type", "request_id", "model_version", "variant")

# Plausible time range of a real event or publication.
MIN_TS = "1990-01-01 00:00:00+00"
MAX_TS = "2100-01-01 00:00:00+00"

# Quarantined articles keep every original value as text, like quarantined events.
ARTICLE_QUARANTINE_SCHEMA = pa.schema(
    [pa.field(f.name, pa.string()) for f in ARTICLE_SCHEMA]
    + [pa.field("reason", pa.string(), nullable=False), pa.field("source", pa.string())]
)


@dataclass
class Split:
    """The outcome of a validation: ``valid`` (typed), ``quarantined`` (text + reason) and the row mask.

    ``valid_mask`` has one entry per input row (true where the row is in ``valid``); valid and
    quarantined rows keep their input order, so callers can carry side columns along with the mask.
    """

    valid: pa.Table
    quarantined: pa.Table
    valid_mask: pa.BooleanArray


def validate_events(table: pa.Table, source: str) -> tuple[pa.Table, pa.Table]:
    """Split ``table`` (n rows, any column types) into (valid ``EVENT_SCHEMA`` rows, ``QUARANTINE_SCHEMA`` rows).

    Columns missing from ``table`` count as all-null; extra columns are ignored. ``source`` is written in
    the quarantine's ``source`` column (e.g. ``"ingest"``, ``"import:clicks.csv"``).
    """
    split = split_events(table, source)
    return split.valid, split.quarantined


def validate_articles(table: pa.Table, source: str) -> tuple[pa.Table, pa.Table]:
    """Split ``table`` into (valid ``ARTICLE_SCHEMA`` rows, ``ARTICLE_QUARANTINE_SCHEMA`` rows).

    ``article_id``, ``published_at``, ``category`` and ``title`` are required; ``abstract`` is optional
    (empty text becomes null). Same timestamp rules as events.
    """
    split = split_articles(table, source)
    return split.valid, split.quarantined


def split_events(table: pa.Table, source: str) -> Split:
    """``validate_events`` that also returns the per-row validity mask (see ``Split``)."""
    prepared = _prepare(table, EVENT_SCHEMA)
    if prepared.num_rows == 0:
        return _empty_split(EVENT_SCHEMA, QUARANTINE_SCHEMA)
    text = {name: _clean_text(prepared, name) for name in _EVENT_TEXT_COLUMNS}
    text["event_type"] = _lower(text["event_type"])
    # Text checks run in Arrow; DuckDB only sees booleans and the time/number columns, because
    # handing it string columns costs more than the checks themselves.
    checks = {
        "no_event_id": pc.is_null(text["event_id"]),
        "no_user_id": pc.is_null(text["user_id"]),
        "no_article_id": pc.is_null(text["article_id"]),
        "no_event_type": pc.is_null(text["event_type"]),
        "known_event_type": pc.is_in(text["event_type"], value_set=pa.array(EVENT_TYPES, pa.string())),
    }
    numbers = ("dwell_ms", "position", "propensity")
    inputs = _with_columns(prepared, checks, ("ts",), numbers)
    cols = _column_types(inputs, ("ts", *numbers))
    dwell_int = "TRY_CAST(round(dwell) AS BIGINT)"
    pos_int = "TRY_CAST(pos AS INTEGER)"
    query = f"""
        SELECT ts, {dwell_int} AS dwell_ms, {pos_int} AS position, propensity,
            CASE
                WHEN no_event_id THEN 'missing_event_id'
                WHEN no_user_id THEN 'missing_user_id'
                WHEN no_article_id THEN 'missing_article_id'
                WHEN ts IS NULL THEN 'bad_timestamp'
                WHEN NOT (ts >= TIMESTAMPTZ '{MIN_TS}' AND ts < TIMESTAMPTZ '{MAX_TS}') THEN 'ts_out_of_range'
                WHEN no_event_type THEN 'missing_event_type'
                WHEN NOT known_event_type THEN 'unknown_event_type'
                WHEN dwell_given AND (dwell IS NULL OR NOT isfinite(dwell) OR {dwell_int} IS NULL) THEN 'bad_number'
                WHEN position_given AND (pos IS NULL OR NOT isfinite(pos) OR pos <> floor(pos) OR {pos_int} IS NULL)
                    THEN 'bad_number'
                WHEN propensity_given AND (propensity IS NULL OR NOT isfinite(propensity)) THEN 'bad_number'
                WHEN dwell < 0 THEN 'negative_dwell'
                WHEN pos < 0 THEN 'negative_position'
                WHEN propensity <= 0 OR propensity > 1 THEN 'bad_propensity'
            END AS reason
        FROM (
            SELECT no_event_id, no_user_id, no_article_id, no_event_type, known_event_type,
                {_ts_expr("ts", cols)} AS ts,
                {_given_expr("dwell_ms", cols)} AS dwell_given,
                {_number_expr("dwell_ms", cols)} AS dwell,
                {_given_expr("position", cols)} AS position_given,
                {_number_expr("position", cols)} AS pos,
                {_given_expr("propensity", cols)} AS propensity_given,
                {_number_expr("propensity", cols)} AS propensity
            FROM src
        )
    """
    return _split(prepared, text, _run(inputs, query), EVENT_SCHEMA, QUARANTINE_SCHEMA, source)


def split_articles(table: pa.Table, source: str) -> Split:
    """``validate_articles`` that also returns the per-row validity mask (see ``Split``)."""
    prepared = _prepare(table, ARTICLE_SCHEMA)
    if prepared.num_rows == 0:
        return _empty_split(ARTICLE_SCHEMA, ARTICLE_QUARANTINE_SCHEMA)
    text = {name: _clean_text(prepared, name) for name in ("article_id", "category", "title", "abstract")}
    checks = {
        "no_article_id": pc.is_null(text["article_id"]),
        "no_category": pc.is_null(text["category"]),
        "no_title": pc.is_null(text["title"]),
    }
    inputs = _with_columns(prepared, checks, ("published_at",))
    cols = _column_types(inputs, ("published_at",))
    query = f"""
        SELECT published_at,
            CASE
                WHEN no_article_id THEN 'missing_article_id'
                WHEN published_at IS NULL THEN 'bad_published_at'
                WHEN NOT (published_at >= TIMESTAMPTZ '{MIN_TS}' AND published_at < TIMESTAMPTZ '{MAX_TS}')
                    THEN 'ts_out_of_range'
                WHEN no_category THEN 'missing_category'
                WHEN no_title THEN 'missing_title'
            END AS reason
        FROM (SELECT no_article_id, no_category, no_title, {_ts_expr("published_at", cols)} AS published_at FROM src)
    """
    return _split(prepared, text, _run(inputs, query), ARTICLE_SCHEMA, ARTICLE_QUARANTINE_SCHEMA, source)


def parse_timestamps(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Parse ``(n,)`` values of any type with the rules of this module into ``(n,)`` timestamp[us, UTC].

    Null where unparsable or out of range. Importers use it to file quarantined rows under the date
    partition of their ``ts`` when it can be read.
    """
    table = _with_columns(pa.table({"ts": _null_to_string(values)}), {}, ("ts",))
    if table.num_rows == 0:
        return pa.array([], pa.timestamp("us", tz="UTC"))
    cols = {"ts": table.schema.field("ts").type}
    query = f"""
        SELECT CASE WHEN t >= TIMESTAMPTZ '{MIN_TS}' AND t < TIMESTAMPTZ '{MAX_TS}' THEN t END AS ts
        FROM (SELECT {_ts_expr("ts", cols)} AS t FROM src)
    """
    result = _run(table, query)
    return result.column("ts").combine_chunks().cast(pa.timestamp("us", tz="UTC"))


def count_reasons(quarantined: pa.Table) -> dict[str, int]:
    """``{reason: rows}`` of a quarantine table, sorted by reason."""
    if quarantined.num_rows == 0:
        return {}
    counts = pc.value_counts(quarantined.column("reason"))
    pairs = [(str(item["values"]), int(item["counts"])) for item in counts.to_pylist()]
    return dict(sorted(pairs))


def merge_counts(into: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add ``more`` into ``into`` (in place) and return it."""
    for key, value in more.items():
        into[key] = into.get(key, 0) + value
    return into


def as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any ``(n,)`` Arrow array as ``(n,)`` strings (nulls stay null); quarantine keeps originals as text."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    try:
        return pc.cast(array, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        # Types Arrow cannot cast to text (nested, binary that is not UTF-8): only quarantined rows
        # come here, so the Python fallback stays small.
        return pa.array([_py_text(v) for v in array.to_pylist()], pa.string())


def _py_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def text_table(table: pa.Table, schema: pa.Schema, names: Iterable[str]) -> pa.Table:
    """The columns ``names`` of ``table`` as text, in ``schema`` order; absent columns become nulls."""
    arrays = []
    for name in names:
        if name in table.column_names:
            arrays.append(as_text(table.column(name)))
        else:
            arrays.append(pa.nulls(table.num_rows, pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def quarantine_rows(
    table: pa.Table, reason: str | pa.Array, source: str, schema: pa.Schema = QUARANTINE_SCHEMA
) -> pa.Table:
    """Rows of ``table`` (typed or not) as quarantine rows with ``reason`` (one for all, or one per row)."""
    names = [f.name for f in schema if f.name not in ("reason", "source")]
    text = text_table(table, pa.schema([schema.field(n) for n in names]), names)
    n = table.num_rows
    reasons = pa.array([reason] * n, pa.string()) if isinstance(reason, str) else reason.cast(pa.string())
    return text.append_column(schema.field("reason"), reasons).append_column(
        schema.field("source"), pa.array([source] * n, pa.string())
    )


# --- SQL building blocks ---------------------------------------------------------------------------


def _column_types(table: pa.Table, names: Iterable[str]) -> dict[str, pa.DataType | None]:
    """Arrow type of each named column in ``table`` (None where absent)."""
    return {name: table.schema.field(name).type if name in table.column_names else None for name in names}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_number(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def _is_time(typ: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(typ) or pa.types.is_date(typ))


def _given_expr(name: str, cols: dict[str, pa.DataType | None]) -> str:
    """Whether the row has a value at all (text columns arrive cleaned: blank is already NULL)."""
    return "FALSE" if cols[name] is None else f"{_quote(name)} IS NOT NULL"


def _number_expr(name: str, cols: dict[str, pa.DataType | None]) -> str:
    """The column as DOUBLE; NULL where absent or not numeric (the ``*_given`` flag tells the two apart)."""
    typ = cols[name]
    if typ is None:
        return "CAST(NULL AS DOUBLE)"
    if _is_number(typ):
        return f"CAST({_quote(name)} AS DOUBLE)"
    return f"TRY_CAST({_quote(name)} AS DOUBLE)"


def _epoch_from_int(expr: str) -> str:
    # Integers stay exact: the unit is picked by magnitude, then converted to microseconds.
    v = f"({expr})"
    micros = f"""CASE
        WHEN abs(CAST({v} AS DOUBLE)) >= 1e17 THEN {v} // 1000
        WHEN abs(CAST({v} AS DOUBLE)) >= 1e14 THEN {v}
        WHEN abs(CAST({v} AS DOUBLE)) >= 1e11 THEN {v} * 1000
        ELSE {v} * 1000000 END"""
    return f"CAST(make_timestamp({micros}) AS TIMESTAMPTZ)"


def _epoch_from_double(expr: str) -> str:
    v = f"({expr})"
    factor = f"""CASE
        WHEN abs({v}) >= 1e17 THEN 0.001
        WHEN abs({v}) >= 1e14 THEN 1.0
        WHEN abs({v}) >= 1e11 THEN 1000.0
        ELSE 1000000.0 END"""
    micros = f"TRY_CAST(round({v} * {factor}) AS BIGINT)"
    return f"CASE WHEN isfinite({v}) THEN CAST(make_timestamp({micros}) AS TIMESTAMPTZ) END"


def _ts_expr(name: str, cols: dict[str, pa.DataType | None]) -> str:
    """A TIMESTAMPTZ (UTC) or NULL from a column of any type (see the module docstring)."""
    typ = cols[name]
    col = _quote(name)
    if typ is None:
        return "CAST(NULL AS TIMESTAMPTZ)"
    if _is_time(typ):
        # The session time zone is UTC, so naive timestamps and dates are read as UTC.
        return f"CAST({col} AS TIMESTAMPTZ)"
    if pa.types.is_integer(typ):
        return _epoch_from_int(f"CAST({col} AS BIGINT)")
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return _epoch_from_double(f"CAST({col} AS DOUBLE)")
    # Text (already trimmed): ISO-8601 first, the common case; COALESCE only tries numbers on the rest.
    as_int, as_double = f"TRY_CAST({col} AS BIGINT)", f"TRY_CAST({col} AS DOUBLE)"
    # Integers only through the exact path: DuckDB would round '1.5' to a BIGINT without complaint.
    return f"""COALESCE(TRY_CAST({col} AS TIMESTAMPTZ), CASE
        WHEN regexp_full_match({col}, '[+-]?[0-9]+') AND {as_int} IS NOT NULL THEN {_epoch_from_int(as_int)}
        WHEN {as_double} IS NOT NULL THEN {_epoch_from_double(as_double)} END)"""


def _null_to_string(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    # An all-empty CSV column arrives as Arrow's null type; text is what it stands for.
    return values.cast(pa.string()) if pa.types.is_null(values.type) else values


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    # One in-memory database per process, opened on first use: opening one costs ~30 ms, which
    # adds up over many small batches; a cursor on it costs ~0.1 ms.
    return duckdb.connect()


def sql_cursor() -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB connection (own temp views and settings) for one query; close it after use."""
    con = _database().cursor()
    # No progress bar: this runs inside CLI commands and services that own the terminal.
    con.execute("SET enable_progress_bar = false")
    # Naive timestamps mean UTC, and results come back as timestamp[us, tz=UTC].
    con.execute("SET TimeZone = 'UTC'")
    return con


def _run(table: pa.Table, query: str) -> pa.Table:
    con = sql_cursor()
    try:
        con.register("src", table)
        return con.sql(query).to_arrow_table()
    finally:
        con.close()


def _prepare(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Only the schema's columns, in plain Arrow types every kernel (and DuckDB) handles."""
    names = [f.name for f in schema if f.name in table.column_names]
    if not names:
        return pa.table({"_empty": pa.nulls(table.num_rows, pa.string())})
    return pa.table({name: _plain(table.column(name)) for name in names})


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    typ = column.type
    if pa.types.is_null(typ):
        # An all-empty CSV column arrives as Arrow's null type; text is what it stands for.
        return column.cast(pa.string())
    if pa.types.is_dictionary(typ):
        return _plain(column.cast(typ.value_type))
    if pa.types.is_string_view(typ) or pa.types.is_large_string(typ):
        return column.cast(pa.string())
    if pa.types.is_binary_view(typ):
        return column.cast(pa.binary())
    return column


def _split(
    prepared: pa.Table,
    text: dict[str, pa.ChunkedArray],
    checked: pa.Table,
    schema: pa.Schema,
    quarantine_schema: pa.Schema,
    source: str,
) -> Split:
    """Assemble the outputs: typed columns from ``checked`` (DuckDB) or ``text`` (cleaned), rows by ``reason``."""
    reason = checked.column("reason")
    valid_mask = pc.is_null(reason).combine_chunks()
    bad_mask = pc.invert(valid_mask)
    arrays = []
    for field in schema:
        column = text[field.name] if field.name in text else checked.column(field.name)
        arrays.append(column.filter(valid_mask).cast(field.type).combine_chunks())
    valid = pa.Table.from_arrays(arrays, schema=schema)
    quarantined = quarantine_rows(prepared.filter(bad_mask), reason.filter(bad_mask), source, quarantine_schema)
    return Split(valid, quarantined, valid_mask)


def _empty_split(schema: pa.Schema, quarantine_schema: pa.Schema) -> Split:
    return Split(schema.empty_table(), quarantine_schema.empty_table(), pa.array([], pa.bool_()))


def _with_columns(
    prepared: pa.Table, checks: dict[str, pa.ChunkedArray | pa.Array], times: Iterable[str], numbers: Iterable[str] = ()
) -> pa.Table:
    """What the DuckDB query reads: the boolean checks, plus the time and number columns that are present.

    Those keep their type when it is already a number (or a time, for ``times``); anything else goes
    as cleaned text, so the SQL never trims strings itself.
    """
    columns: dict[str, pa.ChunkedArray | pa.Array] = dict(checks)
    for names, keep in ((times, lambda t: _is_time(t) or _is_number(t)), (numbers, _is_number)):
        for name in names:
            if name in prepared.column_names:
                typ = prepared.schema.field(name).type
                columns[name] = prepared.column(name) if keep(typ) else _clean_text(prepared, name)
    return pa.table(columns)


def _clean_text(prepared: pa.Table, name: str) -> pa.ChunkedArray:
    """A column as trimmed text with empty values as null (a blank CSV cell means missing).

    Clean columns (the common case: typed batches) are returned as they are after a cheap scan,
    since trimming every string costs a copy of the column.
    """
    if name not in prepared.column_names:
        return pa.chunked_array([pa.nulls(prepared.num_rows, pa.string())])
    column = prepared.column(name)
    if not pa.types.is_string(column.type):
        column = pa.chunked_array([as_text(column)])
    if column.null_count == len(column):
        return column
    edges = [pc.starts_with(column, c) for c in (" ", "\t")] + [pc.ends_with(column, c) for c in (" ", "\t")]
    needs_trim = any(pc.any(e).as_py() for e in edges)
    if needs_trim:
        column = pc.utf8_trim_whitespace(column)
    if needs_trim or pc.min(pc.binary_length(column)).as_py() == 0:
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    return column


def _lower(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # Lower-casing copies the column; skip it when every value already is one of the lower-case types.
    known = pc.is_in(column, value_set=pa.array(EVENT_TYPES, pa.string()))
    if pc.all(pc.or_kleene(known, pc.is_null(column))).as_py():
        return column
    return pc.utf8_lower(column)
