"""Bring outside data into the bronze lake: a MIND-format dataset, or a site's own click log.

Both importers stream their input in batches (a few million rows never sit in memory at once), run
every batch through ``reco.validate``, and write:

* valid events to ``bronze/events/date=<event date>/import-<id>.parquet`` (``EVENT_SCHEMA``): for an
  import, arrival day = event day;
* rejected events to ``quarantine/events/date=<event date>/import-<id>.parquet``, or to
  ``quarantine/events/date=unknown/`` when the ``ts`` itself cannot be read (``date=unknown`` is not a
  date partition for ``reco.lake.list_dates``, so it never looks like a day with events);
* articles to ``bronze/articles/import-<UTC time>-<id>.parquet``, rejected articles to
  ``quarantine/articles/``.

Nothing is half-written: every file is first written under a private staging folder of the lake
(``lake/.staging-<id>/``, same layout) and moved into place, file by file with ``os.replace``, only
once the whole input was read and validated. On any failure the staging folder is removed and the
workdir is left as it was. Event ids are deterministic, so importing the same data twice only adds
rows that ingest's deduplication removes.

MIND (Microsoft News Dataset) decisions, where the format says nothing:

* Times (``%m/%d/%Y %I:%M:%S %p``) are taken as UTC.
* Each item of ``impressions`` (``N123-0``, ``N123-1``, or ``N123`` in the unlabeled test split) is an
  ``impression`` event with ``request_id`` = impression id and ``position`` = 0-based index in the
  list; a ``-1`` item is also a ``click`` at the same ``ts`` (MIND has no click time). Ids:
  ``mind-<impression_id>-<epoch s>-<position>`` and the same with ``-c`` for the click; the time is
  part of the id because impression ids restart at 1 in every MIND split.
* ``history`` (clicks before the log, without times) is imported once per user, from the user's
  earliest behaviour row: item ``i`` of ``n`` (oldest first) becomes a ``click`` at that row's time
  minus ``n - i`` seconds, so the history keeps its order and ends just before the log starts.
  Id ``mind-h-<user>-<news id>``: importing the same split again dedupes; importing another split of
  the same users dates the history differently (use one split, or accept duplicates across days).
* ``published_at`` is not in MIND: it is the first time the article appears (as an impression or
  a history click) minus one hour; articles never seen in behaviors get the earliest time of the whole
  import minus one day. ``subcategory``, ``url`` and the entity columns are not imported.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reco.errors import InputFileError, RecoError
from reco.lake import append_batch, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, UNKNOWN_CATEGORY
from reco.settings import Settings
from reco.validate import (
    count_reasons,
    merge_counts,
    parse_timestamps,
    sql_cursor,
    validate_articles,
    validate_events,
)

EVENT_REQUIRED: tuple[str, ...] = ("user_id", "article_id", "ts")
ARTICLE_REQUIRED: tuple[str, ...] = ("article_id", "published_at", "category", "title")
MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
# Articles of a click log that no article file describes are written to files with this prefix.
DERIVED_PREFIX = "derived-"
# How long before its first appearance a MIND article is taken to be published.
MIND_PUBLISHED_LEAD = dt.timedelta(hours=1)
# Rows per batch: large enough for vectorised work, small enough to bound memory (~0.5 GiB per batch).
BATCH_ROWS = 1_000_000
# CSV block size in bytes (the pyarrow streaming reader reads one block at a time).
CSV_BLOCK_BYTES = 32 << 20

_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
_ROW_IN_MESSAGE = re.compile(r"Row #(\d+)")
_LINE_IN_MESSAGE = re.compile(r"Line: (\d+)")


@dataclass
class ImportReport:
    """What an import kept and set aside.

    ``kept`` / ``quarantined``: event rows written to bronze / to the quarantine; ``reasons``: quarantined
    rows per reason (article rejects as ``article_<reason>``); ``articles``: articles written to bronze
    from an article file; ``articles_derived``: articles of the log that no article file describes, derived
    from the log itself (see ``UNKNOWN_CATEGORY``); ``dates``: event dates (UTC, ISO) that received events.
    """

    kept: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    articles: int = 0
    articles_derived: int = 0
    dates: list[str] = field(default_factory=list)


def articles_quarantine_dir(settings: Settings) -> Path:
    """Where rejected articles go (next to the events' quarantine)."""
    return settings.quarantine_dir.parent / "articles"


# --- public entry points ---------------------------------------------------------------------------


def import_mind(settings: Settings, directory: Path, *, batch_rows: int = BATCH_ROWS) -> ImportReport:
    """Import a MIND-format folder (``behaviors.tsv`` + ``news.tsv``) into bronze events and articles.

    See the module docstring for how impressions, clicks, history and ``published_at`` are derived.
    Raises ``InputFileError`` (file, and row where there is one) when a file is missing or malformed;
    nothing is written then.
    """
    directory = Path(directory)
    behaviors, news = directory / "behaviors.tsv", directory / "news.tsv"
    for path in (behaviors, news):
        if not path.is_file():
            raise InputFileError(path, "not found (a MIND folder holds behaviors.tsv and news.tsv)")
    report = ImportReport()
    days: set[dt.date] = set()
    with _Staging(settings) as staging:
        con = _connect(staging.root / "duckdb-tmp")
        try:
            _mind_views(con, behaviors, news)
            _run_csv_sql(con, behaviors, _MIND_USERS_SQL)
            _run_csv_sql(con, behaviors, _MIND_HISTORY_SQL)
            _run_csv_sql(con, behaviors, _MIND_FIRST_SEEN_SQL)
            try:
                reader = con.sql(_MIND_EVENTS_SQL).to_arrow_reader(batch_rows)
                for batch in reader:
                    days |= _stage_events(staging, pa.Table.from_batches([batch]), "import-mind", report)
            except duckdb.Error as error:
                raise _duckdb_input_error(behaviors, error) from error
            try:
                articles = con.sql(
                    _MIND_ARTICLES_SQL.format(lead_s=int(MIND_PUBLISHED_LEAD.total_seconds()))
                ).to_arrow_table()
            except duckdb.Error as error:
                raise _duckdb_input_error(news, error) from error
        finally:
            con.close()
        _stage_articles(staging, articles, "import-mind", report)
        staging.commit()
    report.dates = sorted(d.isoformat() for d in days)
    return report


def import_events(
    settings: Settings,
    events_file: Path,
    articles_file: Path | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    csv_block_bytes: int = CSV_BLOCK_BYTES,
) -> ImportReport:
    """Import a click log (CSV/TSV, optionally gzipped, or Parquet) and optionally its article metadata.

    Events need ``user_id``, ``article_id``, ``ts``; ``event_type`` defaults to ``click`` (also for
    blank cells), ``event_id`` defaults to ``ev-`` + the first 24 hex digits of the MD5 of the row's
    other event fields (so identical rows share an id and dedupe), other ``EVENT_SCHEMA`` columns are
    optional, unknown columns are ignored. Column names are matched trimmed and lower-cased. Only a
    blank cell means missing: text such as ``NULL`` or ``NA`` stays text (and is quarantined where a
    number or a time is expected).
    Articles need ``article_id``, ``published_at``, ``category``, ``title`` (``abstract`` optional).
    Every article of the log that the article file does not describe (all of them without
    ``articles_file``) is derived from the log: ``published_at`` = its first event's time, category
    ``UNKNOWN_CATEGORY``, title = its id. Derived rows never replace described ones, whatever the
    import order (``reco.ingest.build_silver_articles``), and ``articles_derived`` counts them.

    Raises ``InputFileError`` naming the file (and the row or column where there is one) for an
    unreadable file, an unknown extension, a missing required column or a malformed CSV row;
    nothing is written then.
    """
    events_file = Path(events_file)
    # Check what can be checked before any reading, so an obvious mistake costs nothing.
    _check_readable(events_file)
    if articles_file is not None:
        articles_file = Path(articles_file)
        _check_readable(articles_file)
    report = ImportReport()
    days: set[dt.date] = set()
    source = f"import:{events_file.name}"
    first_seen: list[pa.Table] = []
    with _Staging(settings) as staging:
        for table in _iter_tables(events_file, EVENT_REQUIRED, batch_rows, csv_block_bytes):
            days |= _stage_events(staging, _complete_events(table), source, report, first_seen=first_seen)
        described = pa.array([], pa.string())
        if articles_file is not None:
            articles = pa.concat_tables(
                list(_iter_tables(articles_file, ARTICLE_REQUIRED, batch_rows, csv_block_bytes, multiline=True))
            )
            described = _stage_articles(staging, articles, f"import:{articles_file.name}", report)
        _stage_derived_articles(staging, first_seen, described, report)
        staging.commit()
    report.dates = sorted(d.isoformat() for d in days)
    return report


# --- staging: write aside, move into place at the end -------------------------------------------------


class _Staging:
    """A private folder mirroring the lake layout; its files move into the lake only on ``commit``.

    Leaving the ``with`` block without a commit (an exception) removes the folder, and any workdir or
    lake folder that did not exist before, so a failed import leaves no trace.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lake = settings.lake_dir
        self.root = self.lake / f".staging-{uuid.uuid4().hex[:12]}"
        self._new_dirs = [p for p in (settings.workdir, self.lake) if not p.exists()]
        self._committed = False

    def __enter__(self) -> _Staging:
        self.root.mkdir(parents=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if not self._committed:
            for folder in reversed(self._new_dirs):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only ever removes an empty folder

    def path(self, final: Path) -> Path:
        """The staged counterpart of a path under the lake."""
        return self.root / final.relative_to(self.lake)

    def commit(self) -> None:
        """Move every staged Parquet file to its place in the lake."""
        staged = sorted(p for p in self.root.rglob("*.parquet") if not p.name.startswith("."))
        for path in staged:
            final = self.lake / path.relative_to(self.root)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
        self._committed = True


def _stage_events(
    staging: _Staging, table: pa.Table, source: str, report: ImportReport, *, first_seen: list[pa.Table] | None = None
) -> set[dt.date]:
    """Validate one batch and stage it: valid rows to bronze by event day, the rest to quarantine.

    With ``first_seen``, appends the batch's (article_id, first ts) of valid rows to it.
    """
    valid, quarantined = validate_events(table, source)
    if first_seen is not None and valid.num_rows:
        first_seen.append(_first_seen(valid))
    settings = staging.settings
    days: set[dt.date] = set()
    for day, part in _split_by_day(valid, valid.column("ts")):
        append_batch(part, staging.path(settings.bronze_events_dir), day, prefix="import")
        days.add(day)
    if quarantined.num_rows:
        for day, part in _split_by_day(quarantined, parse_timestamps(quarantined.column("ts"))):
            folder = staging.path(settings.quarantine_dir) / (
                "date=unknown" if day is None else f"date={day.isoformat()}"
            )
            write_atomic(part, folder / f"import-{uuid.uuid4().hex[:12]}.parquet")
    report.kept += valid.num_rows
    report.quarantined += quarantined.num_rows
    merge_counts(report.reasons, count_reasons(quarantined))
    return days


def _first_seen(events: pa.Table) -> pa.Table:
    """(article_id, published_at = the article's earliest ``ts`` in ``events``), one row per article."""
    grouped = events.select(["article_id", "ts"]).group_by("article_id", use_threads=False).aggregate([("ts", "min")])
    return grouped.rename_columns(["article_id", "published_at"])


def _stage_derived_articles(
    staging: _Staging, first_seen: list[pa.Table], described: pa.Array, report: ImportReport
) -> None:
    """Stage an article row for every article of the log missing from ``described`` (see ``import_events``)."""
    if not first_seen:
        return
    seen = _first_seen(pa.concat_tables(first_seen).rename_columns(["article_id", "ts"]))
    missing = seen.filter(pc.invert(pc.is_in(seen.column("article_id"), value_set=described)))
    if missing.num_rows == 0:
        return
    ids = missing.column("article_id").combine_chunks()
    derived = pa.table(
        {
            "article_id": ids,
            "published_at": missing.column("published_at").combine_chunks().cast(ARTICLE_SCHEMA.field("published_at").type),
            "category": pa.array([UNKNOWN_CATEGORY] * len(ids), pa.string()),
            "title": ids,
            "abstract": pa.nulls(len(ids), pa.string()),
        },
        schema=ARTICLE_SCHEMA,
    )
    write_atomic(derived, staging.path(staging.settings.bronze_articles_dir) / f"{DERIVED_PREFIX}{_import_name()}")
    report.articles_derived += derived.num_rows


def _import_name() -> str:
    # Name order follows import order (UTC time first), which is how silver picks the latest import.
    return f"import-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.parquet"


def _stage_articles(staging: _Staging, table: pa.Table, source: str, report: ImportReport) -> pa.Array:
    """Validate and stage an article file; returns the ids of its valid rows."""
    valid, quarantined = validate_articles(table, source)
    name = _import_name()
    if valid.num_rows:
        write_atomic(valid, staging.path(staging.settings.bronze_articles_dir) / name)
    if quarantined.num_rows:
        write_atomic(quarantined, staging.path(articles_quarantine_dir(staging.settings)) / name)
    report.articles += valid.num_rows
    merge_counts(report.reasons, {f"article_{k}": v for k, v in count_reasons(quarantined).items()})
    return valid.column("article_id").combine_chunks()


def _split_by_day(table: pa.Table, ts: pa.Array | pa.ChunkedArray) -> Iterator[tuple[Any, pa.Table]]:
    """``(day, rows of that UTC day)`` pairs, days ascending; rows without a time come last with day None."""
    if table.num_rows == 0:
        return
    day_numbers = pc.cast(pc.cast(ts, pa.date32()), pa.int32())
    values = day_numbers.to_numpy(zero_copy_only=False)
    null = pc.is_null(day_numbers).to_numpy(zero_copy_only=False)
    keys = np.where(null, np.iinfo(np.int32).max, np.nan_to_num(values, nan=0)).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(keys)]])
    epoch = dt.date(1970, 1, 1)
    for start, end in zip(starts, ends, strict=True):
        key = int(sorted_keys[start])
        day = None if key == np.iinfo(np.int32).max else epoch + dt.timedelta(days=key)
        yield day, table.take(pa.array(order[start:end]))


# --- reading files -------------------------------------------------------------------------------


def _file_kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix in _CSV_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    if path.name.lower().endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise InputFileError(path, "unknown file type: expected .csv, .tsv (optionally .gz), .parquet or .pq")


def _check_readable(path: Path) -> None:
    _file_kind(path)
    if not path.is_file():
        raise InputFileError(path, "not found")
    if not os.access(path, os.R_OK):
        raise InputFileError(path, "not readable (permissions)")


def _require(path: Path, names: list[str], required: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in names]
    if missing:
        raise InputFileError(
            path,
            f"missing required column(s) {', '.join(missing)}; found: {', '.join(names) or 'none'}",
            column=missing[0],
        )


def _clean_names(names: list[str]) -> list[str]:
    return [name.strip().lstrip("\ufeff").strip().lower() for name in names]


def _iter_tables(
    path: Path, required: tuple[str, ...], batch_rows: int, csv_block_bytes: int, *, multiline: bool = False
) -> Iterator[pa.Table]:
    """Batches of ``path`` (all CSV columns as text; Parquet as typed), after checking ``required`` columns.

    ``multiline`` lets quoted CSV values span lines (article abstracts do; click logs do not, and
    parsing is faster without it).
    """
    kind = _file_kind(path)
    if kind == "parquet":
        yield from _iter_parquet(path, required, batch_rows)
    else:
        yield from _iter_csv(path, _CSV_SUFFIXES[kind], required, csv_block_bytes, multiline)


def _iter_parquet(path: Path, required: tuple[str, ...], batch_rows: int) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise InputFileError(path, f"not a readable Parquet file ({error})") from error
    names = _clean_names(parquet.schema_arrow.names)
    _require(path, names, required)
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch]).rename_columns(names)
    except (pa.ArrowException, OSError) as error:
        raise InputFileError(path, f"cannot read Parquet data ({error})") from error


def _csv_header(path: Path, delimiter: str) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputFileError(path, f"cannot read the header row ({error})", row=1) from error
    if not header:
        raise InputFileError(path, "empty file: expected a header row with column names", row=1)
    names = _clean_names(header)
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputFileError(path, "duplicate column name in the header", row=1, column=duplicated[0])
    return names


def _iter_csv(
    path: Path, delimiter: str, required: tuple[str, ...], block_bytes: int, multiline: bool
) -> Iterator[pa.Table]:
    names = _csv_header(path, delimiter)
    _require(path, names, required)
    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    # Every column is read as text: types are the validator's job, and a streaming reader that
    # inferred types from the first block would fail on a later block that disagrees.
    # Single-threaded parsing is what makes pyarrow report the row number of a malformed row.
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False, block_size=block_bytes)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=multiline, invalid_row_handler=on_invalid_row)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names})
    try:
        stream = pa.input_stream(str(path), compression="detect")
        with pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as error:
        if bad_rows:
            row = bad_rows[0]
            text = str(row.text)[:120]
            problem = f"malformed CSV row: expected {row.expected_columns} columns, got {row.actual_columns}: {text!r}"
            raise InputFileError(path, problem, row=row.number) from error
        match = _ROW_IN_MESSAGE.search(str(error))
        raise InputFileError(path, f"cannot read CSV ({error})", row=int(match.group(1)) if match else None) from error


def _complete_events(table: pa.Table) -> pa.Table:
    """Fill the defaults of a click log: ``event_type`` = click, ``event_id`` derived from the row."""
    n = table.num_rows
    names = [f.name for f in EVENT_SCHEMA if f.name in table.column_names]
    table = table.select(names)
    if "event_type" in names:
        column = _text(table.column("event_type"))
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
        table = table.set_column(names.index("event_type"), "event_type", pc.if_else(blank, "click", column))
    else:
        table = table.append_column("event_type", pa.array(["click"] * n, pa.string()))
    if "event_id" in names:
        ids = _text(table.column("event_id"))
        missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids), ""), True)
    else:
        ids = pa.chunked_array([pa.nulls(n, pa.string())])
        missing = pa.chunked_array([pa.array(np.ones(n, dtype=bool))])
    if pc.any(missing).as_py():
        derived = _derived_ids(table.filter(missing))
        ids = pc.replace_with_mask(ids.combine_chunks(), missing.combine_chunks(), derived)
        if "event_id" in table.column_names:
            table = table.set_column(table.column_names.index("event_id"), "event_id", ids)
        else:
            table = table.append_column("event_id", ids)
    return table


def _derived_ids(table: pa.Table) -> pa.Array:
    """``ev-`` + 24 hex digits of the MD5 of the row's event fields (text, unit-separated), ``(n,)``."""
    fields = [f.name for f in EVENT_SCHEMA if f.name != "event_id"]
    parts = ", ".join(
        f"coalesce(CAST({_ident(name)} AS VARCHAR), '')" if name in table.column_names else "''" for name in fields
    )
    con = sql_cursor()
    try:
        con.register("src", table)
        result = con.sql(f"SELECT 'ev-' || left(md5(concat_ws(chr(31), {parts})), 24) AS id FROM src").to_arrow_table()
    finally:
        con.close()
    return result.column("id").combine_chunks().cast(pa.string())


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- MIND, in SQL over the TSV files ---------------------------------------------------------------


def _connect(temp_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the CLI owns the terminal
    con.execute("SET TimeZone = 'UTC'")
    # Spills of big aggregations go to the staging folder, which is removed in every case.
    con.execute(f"SET temp_directory = {_literal(str(temp_dir))}")
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tsv(path: Path, columns: list[str]) -> str:
    spec = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in columns) + "}"
    # MIND titles hold quote characters: no quoting, no escaping, tab only; a row with the wrong
    # number of fields is an error that names its line.
    return (
        f"read_csv({_literal(str(path))}, delim = '\\t', header = false, quote = '', escape = '', "
        f"columns = {spec}, auto_detect = false, strict_mode = true, null_padding = false)"
    )


def _mind_views(con: duckdb.DuckDBPyConnection, behaviors: Path, news: Path) -> None:
    behaviors_csv = _tsv(behaviors, ["impression_id", "user_id", "time", "history", "impressions"])
    news_csv = _tsv(
        news, ["news_id", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities"]
    )
    con.execute(f"""
        CREATE VIEW behaviors AS
        SELECT trim(impression_id) AS impression_id, trim(user_id) AS user_id, time AS time_text,
               try_strptime(trim(time), '{MIND_TIME_FORMAT}') AS t, history, impressions
        FROM {behaviors_csv}
    """)
    con.execute(f"CREATE VIEW news AS SELECT * FROM {news_csv}")


def _run_csv_sql(con: duckdb.DuckDBPyConnection, path: Path, sql: str) -> None:
    try:
        con.execute(sql)
    except duckdb.Error as error:
        raise _duckdb_input_error(path, error) from error


def _duckdb_input_error(path: Path, error: duckdb.Error) -> RecoError:
    message = str(error)
    line = _LINE_IN_MESSAGE.search(message)
    first = message.splitlines()[0] if message else type(error).__name__
    detail = next((ln.strip() for ln in message.splitlines() if ln.startswith("Expected Number of Columns")), "")
    problem = f"malformed row ({detail})" if detail else f"cannot read ({first})"
    return InputFileError(path, problem, row=int(line.group(1)) if line else None)


# Earliest behaviour row per user: its time and its history (MIND repeats a user's history per row).
# A user whose times are all unreadable keeps the raw time text, so the history reaches the quarantine.
_MIND_USERS_SQL = """
CREATE TEMP TABLE mind_users AS
SELECT user_id, min(t) AS first_t, coalesce(arg_min(history, t), first(history)) AS history,
    first(time_text) AS time_text
FROM behaviors
WHERE user_id <> ''
GROUP BY user_id
"""

# History clicks: item i of n (0-based, oldest first) at first_t - (n - i) seconds.
_MIND_HISTORY_SQL = """
CREATE TEMP TABLE mind_history AS
SELECT user_id, news_id, first_t - to_seconds(n - i) AS t, time_text
FROM (
    SELECT user_id, first_t, time_text, unnest(items) AS news_id, unnest(range(len(items))) AS i, len(items) AS n
    FROM (
        SELECT user_id, first_t, time_text, list_filter(string_split(trim(history), ' '), lambda x: x <> '') AS items
        FROM mind_users WHERE history IS NOT NULL
    )
)
"""

_NEWS_ID_OF_ITEM = (
    "CASE WHEN contains(item, '-') THEN left(item, length(item) - strpos(reverse(item), '-')) ELSE item END"
)

_MIND_FIRST_SEEN_SQL = f"""
CREATE TEMP TABLE mind_first_seen AS
SELECT news_id, min(t) AS first_t
FROM (
    SELECT {_NEWS_ID_OF_ITEM} AS news_id, t
    FROM (SELECT t, unnest(string_split(trim(impressions), ' ')) AS item FROM behaviors WHERE t IS NOT NULL)
    WHERE item <> ''
    UNION ALL
    SELECT news_id, t FROM mind_history WHERE t IS NOT NULL
)
GROUP BY news_id
"""

# One row per impression item, a second one for clicked items, then the history clicks. ``ts`` is
# ISO text so an unparsable MIND time reaches the quarantine as the original text.
_MIND_EVENTS_SQL = f"""
WITH items AS (
    SELECT impression_id, user_id, time_text, t, unnest(list) AS item, unnest(range(len(list))) AS position
    FROM (
        SELECT *, list_filter(string_split(trim(impressions), ' '), lambda x: x <> '') AS list
        FROM behaviors WHERE impressions IS NOT NULL
    )
), labelled AS (
    SELECT *, {_NEWS_ID_OF_ITEM} AS news_id,
        CASE WHEN contains(item, '-') THEN right(item, strpos(reverse(item), '-') - 1) END AS label
    FROM items
), typed AS (
    SELECT *, unnest(CASE WHEN label = '1' THEN ['impression', 'click'] ELSE ['impression'] END) AS event_type
    FROM labelled
)
SELECT
    'mind-' || impression_id || '-' || coalesce(CAST(epoch(t) AS BIGINT)::VARCHAR, time_text) || '-' || position
        || CASE WHEN event_type = 'click' THEN '-c' ELSE '' END AS event_id,
    coalesce(strftime(t, '%Y-%m-%dT%H:%M:%SZ'), time_text) AS ts,
    user_id, news_id AS article_id, event_type,
    CAST(NULL AS BIGINT) AS dwell_ms, impression_id AS request_id, CAST(position AS INTEGER) AS position,
    CAST(NULL AS VARCHAR) AS model_version, CAST(NULL AS VARCHAR) AS variant, CAST(NULL AS DOUBLE) AS propensity
FROM typed
UNION ALL
SELECT
    'mind-h-' || user_id || '-' || news_id, coalesce(strftime(t, '%Y-%m-%dT%H:%M:%SZ'), time_text),
    user_id, news_id, 'click', NULL, NULL, NULL, NULL, NULL, NULL
FROM mind_history
"""

_MIND_ARTICLES_SQL = """
SELECT trim(n.news_id) AS article_id,
    coalesce(
        f.first_t - to_seconds({lead_s}),
        (SELECT min(first_t) FROM mind_first_seen) - INTERVAL 1 DAY
    ) AS published_at,
    n.category, n.title, n.abstract
FROM news AS n LEFT JOIN mind_first_seen AS f ON f.news_id = trim(n.news_id)
"""
