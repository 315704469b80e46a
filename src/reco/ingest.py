"""Ingest: the bronze events of one arrival day become the typed, deduplicated silver events of that day.

Bronze is raw and append-only, partitioned by *arrival* day; silver is partitioned by *event* day (UTC
date of ``ts``). For a run date D with lateness L (``settings.allowed_lateness_days``):

* every row of bronze D is validated (``reco.validate``); invalid rows, rows whose ``ts`` is more
  than L days before D (``too_late``) and rows dated after D (``future_ts``) are quarantined to
  ``quarantine/events/date=D/ingest.parquet``;
* silver D = the valid events with ``ts`` on D found in bronze D .. D+L (late arrivals of D that are
  already in the lake count), deduplicated by ``event_id`` keeping the earliest arrival, sorted by
  ``(ts, event_id)``;
* events of bronze D dated D-L .. D-1 are merged into those earlier silver partitions when they
  exist (``late_merged``): existing rows first, so an event already there wins. Partitions not
  ingested yet are left alone: their own run reads bronze D as a late partition.

"Earliest arrival" orders rows by bronze partition date, then file modification time (then name),
then row number within the file: the order the lake received them. Every output is rewritten whole
(``replace_partition`` / ``write_atomic``), so running D twice gives the same files, row for row.

Silver articles are rebuilt from every bronze article file on each run: one row per ``article_id``,
the latest import winning (same file order as events; later rows of a file win), sorted by id.

Deduplication is within a silver partition: two deliveries of one event with ``ts`` on different days
are not matched (neither the generator nor the importers produce those).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reco.errors import NoDataError, RecoError
from reco.importers import DERIVED_PREFIX, articles_quarantine_dir
from reco.lake import list_dates, partition_dir, partition_files, read_partition, replace_partition, write_atomic
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, QUARANTINE_SCHEMA
from reco.settings import Settings
from reco.validate import (
    ARTICLE_QUARANTINE_SCHEMA,
    as_text,
    count_reasons,
    quarantine_rows,
    split_articles,
    split_events,
)

SOURCE = "ingest"
_EPOCH = dt.date(1970, 1, 1)


@dataclass
class IngestReport:
    """Counts of one ingest run for date D.

    ``bronze_rows``: rows in bronze D (= ``valid`` + ``quarantined``). ``quarantined``: invalid, too
    late or future rows of bronze D, per reason in ``quarantine_reasons`` (rejected articles appear
    there as ``article_<reason>`` and are not part of ``quarantined``). ``deduplicated``: duplicate
    rows dropped from silver D. ``late_merged``: events of bronze D merged into an earlier existing
    silver partition. ``silver_rows``: rows of silver D (on-time plus late arrivals from D+1..D+L).
    ``articles``: rows of silver articles.
    """

    bronze_rows: int
    valid: int
    quarantined: int
    deduplicated: int
    late_merged: int
    silver_rows: int
    articles: int
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


def ingest_date(settings: Settings, day: dt.date, *, lateness_days: int | None = None) -> IngestReport:
    """Bronze events arrived on ``day`` -> silver partition ``day`` (+ late merges, quarantine, articles).

    ``lateness_days`` overrides ``settings.allowed_lateness_days``. Raises ``NoDataError`` when bronze
    has no rows for ``day``.
    """
    lateness = settings.allowed_lateness_days if lateness_days is None else lateness_days
    files = bronze_files(settings, day)
    bronze = _read_bronze(files) if files else None
    if bronze is None or bronze.num_rows == 0:
        days = list_dates(settings.bronze_events_dir)
        held = f"the lake holds {days[0]}..{days[-1]}" if days else "the lake holds no events yet"
        raise NoDataError(
            f"no bronze events for {day} under {partition_dir(settings.bronze_events_dir, day)} ({held}): "
            "generate or import events for that day, or pick a date the lake holds"
        )

    split = split_events(bronze, SOURCE)
    valid = split.valid
    arrival = _arrival(bronze.num_rows).filter(split.valid_mask)
    event_day = _day_numbers(valid.column("ts"))
    d = (day - _EPOCH).days
    on_time = pc.equal(event_day, d)
    late = pc.and_(pc.less(event_day, d), pc.greater_equal(event_day, d - lateness))
    too_late = pc.less(event_day, d - lateness)
    future = pc.greater(event_day, d)

    quarantined = pa.concat_tables(
        [
            split.quarantined,
            quarantine_rows(valid.filter(too_late), "too_late", SOURCE),
            quarantine_rows(valid.filter(future), "future_ts", SOURCE),
        ]
    )

    # Silver D: on-time rows of bronze D, then rows of D that arrived in the next L partitions.
    parts, arrivals = [valid.filter(on_time)], [arrival.filter(on_time)]
    offset = bronze.num_rows
    for k in range(1, lateness + 1):
        later_files = bronze_files(settings, day + dt.timedelta(days=k))
        if not later_files:
            continue
        later = _read_bronze(later_files, only_day=day)
        later_split = split_events(later, SOURCE)
        keep = pc.equal(_day_numbers(later_split.valid.column("ts")), d)
        parts.append(later_split.valid.filter(keep))
        arrivals.append(_arrival(later.num_rows, offset).filter(later_split.valid_mask).filter(keep))
        offset += later.num_rows
    silver, deduplicated = _dedup_sorted(pa.concat_tables(parts), pa.concat_arrays(arrivals))
    replace_partition(silver, settings.silver_events_dir, day)

    late_merged = _merge_late(settings, valid.filter(late))
    _write_quarantine(settings, day, quarantined)
    articles, article_reasons = build_silver_articles(settings)

    reasons = count_reasons(quarantined)
    reasons.update({f"article_{k}": v for k, v in article_reasons.items()})
    return IngestReport(
        bronze_rows=bronze.num_rows,
        valid=bronze.num_rows - quarantined.num_rows,
        quarantined=quarantined.num_rows,
        deduplicated=deduplicated,
        late_merged=late_merged,
        silver_rows=silver.num_rows,
        articles=articles,
        quarantine_reasons=reasons,
    )


def build_silver_articles(settings: Settings) -> tuple[int, dict[str, int]]:
    """Rebuild ``silver_articles_path`` from all bronze article files; returns (rows, rejected per reason).

    Rows derived from a click log (``derived-*`` files, see ``reco.importers.import_events``) rank
    below every described row, whatever the order of the imports: a described article takes its
    latest described row; an article only ever derived takes its earliest derived ``published_at``
    (the first time any log showed it). Rejected rows go to ``quarantine/articles/ingest.parquet``
    (rewritten each time).
    """
    folder = settings.bronze_articles_dir
    files = _arrival_order(list(folder.glob("*.parquet"))) if folder.is_dir() else []
    described = [f for f in files if not f.name.startswith(DERIVED_PREFIX)]
    derived = [f for f in files if f.name.startswith(DERIVED_PREFIX)]
    valid_parts, quarantine_parts, orders = [], [], []
    offset = 0
    for path in derived + described:
        names = [f.name for f in ARTICLE_SCHEMA if f.name in pq.read_schema(path).names]
        table = pq.read_table(path, columns=names)
        # Validated file by file: files from different sources may type a column differently.
        split = split_articles(table, SOURCE)
        valid_parts.append(split.valid)
        quarantine_parts.append(split.quarantined)
        orders.append(_arrival(table.num_rows, offset).filter(split.valid_mask))
        offset += table.num_rows
    valid = pa.concat_tables(valid_parts) if valid_parts else ARTICLE_SCHEMA.empty_table()
    order = pa.concat_arrays(orders) if orders else pa.array([], pa.int64())
    n_derived = sum(len(o) for o in orders[: len(derived)])
    if n_derived:
        # Derived rows first, the earliest published_at last among them, so "latest wins" keeps it
        # unless a described row (always after every derived one) exists.
        published = pc.cast(valid.column("published_at").combine_chunks()[:n_derived], pa.int64())
        rank = np.argsort(-published.to_numpy(zero_copy_only=False), kind="stable")
        reordered = np.empty(n_derived, dtype=np.int64)
        reordered[rank] = np.arange(n_derived)
        order = pa.concat_arrays([pa.array(reordered), order[n_derived:]])
    latest = _keep_one(valid.column("article_id"), order, latest=True)
    articles = valid.filter(latest)
    articles = articles.take(pc.sort_indices(articles, sort_keys=[("article_id", "ascending")]))
    write_atomic(_single_chunks(articles, ARTICLE_SCHEMA), settings.silver_articles_path)

    quarantined = pa.concat_tables(quarantine_parts) if quarantine_parts else ARTICLE_QUARANTINE_SCHEMA.empty_table()
    target = articles_quarantine_dir(settings) / f"{SOURCE}.parquet"
    if quarantined.num_rows:
        write_atomic(quarantined, target)
    else:
        target.unlink(missing_ok=True)
    return articles.num_rows, count_reasons(quarantined)


# --- reading bronze --------------------------------------------------------------------------------


def bronze_files(settings: Settings, day: dt.date) -> list[Path]:
    """A bronze partition's files: Parquet (the local service, imports, the generator) and JSON lines (what
    Pub/Sub's Cloud Storage subscription writes in production, one message per line)."""
    folder = partition_dir(settings.bronze_events_dir, day)
    if not folder.is_dir():
        return []
    return sorted([*partition_files(settings.bronze_events_dir, day), *folder.glob("*.jsonl")])


def _read_jsonl(path: Path, only_day: dt.date | None) -> pa.Table:
    """A Pub/Sub subscription's file: every value as text (the validator parses and checks them, as for a CSV
    import); with ``only_day``, the rows whose ``ts`` is on that UTC day."""
    import json

    rows = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise RecoError(f"{path}: line {number} is not JSON ({error})") from error
            if not isinstance(record, dict):
                raise RecoError(f"{path}: line {number} is not a JSON object")
            rows.append(record)
    names = [f.name for f in EVENT_SCHEMA if any(f.name in r for r in rows)]
    table = pa.table({n: pa.array([None if r.get(n) is None else str(r[n]) for r in rows], pa.string()) for n in names})
    if only_day is not None and "ts" in names:
        keep = [_utc_day(v) == only_day for v in table.column("ts").to_pylist()]
        table = table.filter(pa.array(keep))
    return table


def _utc_day(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()


def _arrival_order(files: Sequence[Path]) -> list[Path]:
    """Files in the order they landed: modification time, then name (for equal times)."""
    return sorted((f for f in files if not f.name.startswith(".")), key=lambda f: (f.stat().st_mtime_ns, f.name))


def _read_bronze(files: Sequence[Path], only_day: dt.date | None = None) -> pa.Table:
    """The event columns of ``files`` as one table, rows in arrival order.

    Files may disagree on a column's type (a typed batch next to a text import); such a column is
    read as text everywhere and left to the validator. With ``only_day``, files whose ``ts`` is a
    timestamp are filtered to that UTC day while reading (the late-arrival look-ahead needs only it).
    """
    tables = []
    for path in _arrival_order(files):
        if path.suffix == ".jsonl":
            tables.append(_read_jsonl(path, only_day))
            continue
        schema = pq.read_schema(path)
        names = [f.name for f in EVENT_SCHEMA if f.name in schema.names]
        filters = None
        if only_day is not None and "ts" in names and pa.types.is_timestamp(schema.field("ts").type):
            ts_type = schema.field("ts").type
            start = dt.datetime(only_day.year, only_day.month, only_day.day, tzinfo=dt.UTC)
            bounds = [start, start + dt.timedelta(days=1)]
            if ts_type.tz is None:
                bounds = [b.replace(tzinfo=None) for b in bounds]
            filters = [("ts", ">=", pa.scalar(bounds[0], ts_type)), ("ts", "<", pa.scalar(bounds[1], ts_type))]
        tables.append(pq.read_table(path, columns=names, filters=filters))
    return _unify(tables)


def _unify(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return pa.table({})
    names = [f.name for f in EVENT_SCHEMA if any(f.name in t.column_names for t in tables)]
    types: dict[str, pa.DataType] = {}
    for name in names:
        seen = {t.schema.field(name).type for t in tables if name in t.column_names}
        types[name] = seen.pop() if len(seen) == 1 else pa.string()
    unified = []
    for table in tables:
        columns = []
        for name in names:
            if name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, types[name]))
            elif table.schema.field(name).type != types[name]:
                columns.append(as_text(table.column(name)))
            else:
                columns.append(table.column(name))
        unified.append(pa.table(dict(zip(names, columns, strict=True))))
    return pa.concat_tables(unified)


def _arrival(n: int, offset: int = 0) -> pa.Array:
    """Arrival ranks ``offset .. offset+n-1``: rows are read in arrival order, so position is rank."""
    return pa.array(np.arange(offset, offset + n, dtype=np.int64))


def _day_numbers(ts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """UTC days since 1970-01-01 of ``(n,)`` timestamps, ``(n,)`` int32."""
    days = pc.cast(pc.cast(ts, pa.date32()), pa.int32())
    return days.combine_chunks() if isinstance(days, pa.ChunkedArray) else days


# --- dedup, merge, write ---------------------------------------------------------------------------


def _keep_one(keys: pa.ChunkedArray | pa.Array, order: pa.Array, *, latest: bool = False) -> pa.Array:
    """``(n,)`` mask keeping, per key, the row with the smallest ``order`` (largest with ``latest``).

    ``order`` values are unique, so exactly one row per key is kept.
    """
    if len(order) == 0:
        return pa.array([], pa.bool_())
    table = pa.table({"key": keys, "order": order})
    aggregate = "max" if latest else "min"
    chosen = table.group_by("key", use_threads=False).aggregate([("order", aggregate)]).column(f"order_{aggregate}")
    return pc.is_in(order, value_set=chosen.combine_chunks())


def _dedup_sorted(table: pa.Table, arrival: pa.Array) -> tuple[pa.Table, int]:
    """Drop repeated ``event_id`` (earliest arrival kept), sort by ``(ts, event_id)``; (table, rows dropped)."""
    if table.num_rows and pc.count_distinct(table.column("event_id")).as_py() < table.num_rows:
        table = table.filter(_keep_one(table.column("event_id"), arrival))
    dropped = len(arrival) - table.num_rows
    order = pc.sort_indices(table, sort_keys=[("ts", "ascending"), ("event_id", "ascending")])
    return _single_chunks(table.take(order), EVENT_SCHEMA), dropped


def _merge_late(settings: Settings, late: pa.Table) -> int:
    """Merge late events into their existing silver partitions; returns the rows merged."""
    merged = 0
    if late.num_rows == 0:
        return 0
    event_day = _day_numbers(late.column("ts"))
    for number in sorted(set(pc.unique(event_day).to_pylist())):
        day = _EPOCH + dt.timedelta(days=int(number))
        files = partition_files(settings.silver_events_dir, day)
        if not files:
            continue  # that day's own ingest will read these rows from this bronze partition
        rows = late.filter(pc.equal(event_day, number))
        merged += rows.num_rows
        ids = pa.concat_arrays(
            [pq.read_table(f, columns=["event_id"]).column("event_id").combine_chunks() for f in files]
        )
        if pc.all(pc.is_in(rows.column("event_id"), value_set=ids)).as_py():
            # Every late event is there already (that day's run read this bronze partition as its
            # look-ahead): existing rows win in the dedup, so the rewrite would give the same file.
            continue
        existing = read_partition(settings.silver_events_dir, day, EVENT_SCHEMA)
        combined = pa.concat_tables([_single_chunks(existing, EVENT_SCHEMA), rows])
        table, _ = _dedup_sorted(combined, _arrival(combined.num_rows))
        replace_partition(table, settings.silver_events_dir, day)
    return merged


def _write_quarantine(settings: Settings, day: dt.date, quarantined: pa.Table) -> None:
    # Only ingest's own file is replaced: import batches quarantined into the same partition stay.
    target = partition_dir(settings.quarantine_dir, day) / f"{SOURCE}.parquet"
    if quarantined.num_rows:
        write_atomic(_single_chunks(quarantined, QUARANTINE_SCHEMA), target)
    else:
        target.unlink(missing_ok=True)


def _single_chunks(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` with one chunk per column (one row group layout, stable files)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type).combine_chunks() for f in schema], schema=schema)
