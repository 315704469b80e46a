"""The batching event writer: flush on size, on interval, drain on stop, retry after a sink failure."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reco.lake import partition_files
from reco.schemas import EVENT_SCHEMA
from services.recommend.errors import OverloadedError
from services.recommend.events import EventWriter, LakeSink, Row
from services.recommend.metrics import Metrics

DAY = dt.date(2024, 5, 1)
TS = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def make_rows(n: int, start: int = 0) -> list[Row]:
    return [(f"e{i}", TS, "u1", "a1", "click", None, "r1", 1, "1", "stable", 1.0) for i in range(start, start + n)]


class FlakySink:
    """The real lake sink, refusing its first ``failures`` writes (a full disk, a lost bucket)."""

    def __init__(self, root: Path, failures: int = 0) -> None:
        self.inner = LakeSink(root)
        self.failures = failures
        self.calls = 0

    def write(self, rows: Sequence[Row], day: dt.date) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("no space left on device")
        self.inner.write(rows, day)

    def close(self) -> None:
        pass


def lake_ids(root: Path) -> list[str]:
    return [i for f in partition_files(root, DAY) for i in pq.read_table(f).column("event_id").to_pylist()]


def writer(sink: FlakySink, **kwargs: float) -> EventWriter:
    options = {"batch_size": 100, "flush_interval_s": 60.0, "max_buffered": 1000} | kwargs
    return EventWriter(sink, Metrics("stable"), **options)  # type: ignore[arg-type]


def test_flush_on_size(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], int]:
        w = writer(FlakySink(tmp_path))
        await w.start()
        w.add(make_rows(99), DAY)
        await asyncio.sleep(0.2)
        before = len(lake_ids(tmp_path))
        w.add(make_rows(1, start=99), DAY)  # the 100th event triggers the flush
        for _ in range(50):
            await asyncio.sleep(0.05)
            if w.pending == 0:
                break
        ids = lake_ids(tmp_path)
        await w.stop()
        return ids, before

    ids, before = asyncio.run(scenario())
    assert before == 0 and sorted(ids) == sorted(f"e{i}" for i in range(100))
    files = partition_files(tmp_path, DAY)
    assert pq.read_table(files[0]).schema.equals(EVENT_SCHEMA)


def test_flush_on_interval_and_drain_on_stop(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        w = writer(FlakySink(tmp_path), flush_interval_s=0.2)
        await w.start()
        w.add(make_rows(5), DAY)
        await asyncio.sleep(0.6)
        after_interval = len(lake_ids(tmp_path))
        w.flush_interval_s = 60.0
        await asyncio.sleep(0.3)  # let the loop pick up the long interval
        w.add(make_rows(7, start=5), DAY)
        before_stop = len(lake_ids(tmp_path))
        await w.stop()
        return after_interval, before_stop, len(lake_ids(tmp_path))

    assert asyncio.run(scenario()) == (5, 5, 12)


def test_a_failed_flush_keeps_the_events_and_retries(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path, failures=2)

    async def scenario() -> list[str]:
        w = writer(sink, flush_interval_s=0.05)
        await w.start()
        w.add(make_rows(30), DAY)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if w.pending == 0:
                break
        await w.stop()
        return lake_ids(tmp_path)

    ids = asyncio.run(scenario())
    assert sink.calls >= 3 and sorted(ids) == sorted(f"e{i}" for i in range(30))


def test_a_full_buffer_refuses_instead_of_growing(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = writer(FlakySink(tmp_path), batch_size=10_000, max_buffered=50)
        w.add(make_rows(50), DAY)
        with pytest.raises(OverloadedError):
            w.add(make_rows(1, start=50), DAY)
        await w.stop()

    asyncio.run(scenario())
    assert len(lake_ids(tmp_path)) == 50


def test_api_positions_are_one_based_and_the_lake_zero_based() -> None:
    from services.recommend.events import to_rows
    from services.recommend.schemas import Event

    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    top = Event(user_id="u1", article_id="a1", event_type="impression", request_id="r1", position=1)
    unplaced = Event(user_id="u1", article_id="a2", event_type="click", request_id="r1")
    rows = to_rows([top, unplaced], now)
    position = [f.name for f in EVENT_SCHEMA].index("position")
    assert [row[position] for row in rows] == [0, None]
