"""The event lake: date partitions of Parquet under ``lake/{bronze,silver,quarantine}``.

Layout (same in a local folder and in a GCS bucket)::

    bronze/events/date=YYYY-MM-DD/<batch>.parquet   raw, append-only, by arrival date
    bronze/articles/<batch>.parquet                  article metadata as imported
    silver/events/date=YYYY-MM-DD/part-0.parquet     typed, deduplicated, by event date
    silver/articles/articles.parquet                 one row per article (latest wins)
    quarantine/events/date=YYYY-MM-DD/<source>.parquet  rejected rows with a reason

Every write goes to a temporary file in the same folder and is renamed into place, so a
reader never sees half a file and a crash never leaves one behind.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def partition_dir(root: Path, day: dt.date) -> Path:
    """The folder of one date partition under ``root``."""
    return root / f"date={day.isoformat()}"


def list_dates(root: Path) -> list[dt.date]:
    """Dates that have a partition folder holding at least one data file, oldest first: Parquet, or the JSON
    lines Pub/Sub's Cloud Storage subscription writes into the bronze lake (``reco.ingest.bronze_files``)."""
    if not root.is_dir():
        return []
    days = []
    for child in root.iterdir():
        match = _DATE_DIR.match(child.name)
        if match and child.is_dir() and (any(child.glob("*.parquet")) or any(child.glob("*.jsonl"))):
            days.append(dt.date.fromisoformat(match.group(1)))
    return sorted(days)


def partition_files(root: Path, day: dt.date) -> list[Path]:
    """Parquet files of one partition, in name order (empty if the partition is absent)."""
    folder = partition_dir(root, day)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def write_atomic(table: pa.Table, path: Path, *, fsync: bool = False) -> Path:
    """Write ``table`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if fsync:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_partition(table: pa.Table, root: Path, day: dt.date, name: str = "part-0") -> Path:
    """Make ``table`` the whole content of one partition (idempotent re-runs rewrite, never append)."""
    folder = partition_dir(root, day)
    target = write_atomic(table, folder / f"{name}.parquet")
    for stale in folder.glob("*.parquet"):
        if stale != target:
            stale.unlink()
    return target


def append_batch(table: pa.Table, root: Path, day: dt.date, prefix: str = "batch", *, fsync: bool = False) -> Path:
    """Add one new file to a partition (bronze is append-only)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}.parquet"
    return write_atomic(table, partition_dir(root, day) / name, fsync=fsync)


def read_partition(root: Path, day: dt.date, schema: pa.Schema | None = None) -> pa.Table:
    """All rows of one partition as one table (empty table of ``schema`` if absent)."""
    files = partition_files(root, day)
    if not files:
        if schema is None:
            raise FileNotFoundError(partition_dir(root, day))
        return schema.empty_table()
    tables = [pq.read_table(f, schema=schema) if schema is not None else pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
