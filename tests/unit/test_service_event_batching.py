"""The batching event writer: flush on size, on interval, drain on stop, retry after a sink failure."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
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


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Let the event loop run until ``condition()`` holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


def test_flush_on_size(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path)

    async def scenario() -> list[str]:
        w = writer(sink)
        await w.start()
        w.add(make_rows(99), DAY)
        # 99 < batch_size and a 60 s interval: the writer has no reason to write. A short grace
        # lets a wrong writer show itself; a right one passes whatever the machine's speed.
        await asyncio.sleep(0.2)
        assert sink.calls == 0 and w.pending == 99
        w.add(make_rows(1, start=99), DAY)  # the 100th event triggers the flush
        # The file lands before the writer's thread returns: wait for both.
        await until(lambda: w.pending == 0 and len(lake_ids(tmp_path)) == 100, "the 100th event flushes the batch")
        assert sink.calls == 1
        await w.stop()
        return lake_ids(tmp_path)

    ids = asyncio.run(scenario())
    assert sorted(ids) == sorted(f"e{i}" for i in range(100))
    files = partition_files(tmp_path, DAY)
    assert pq.read_table(files[0]).schema.equals(EVENT_SCHEMA)


def test_flush_on_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = writer(FlakySink(tmp_path), flush_interval_s=0.2)
        await w.start()
        w.add(make_rows(5), DAY)  # far below batch_size: only the interval writes them
        await until(lambda: len(lake_ids(tmp_path)) == 5, "the interval flushes 5 events")
        assert w._task is not None and not w._task.done()  # written by the running writer, not by stop()
        await w.stop()

    asyncio.run(scenario())
    assert sorted(lake_ids(tmp_path)) == [f"e{i}" for i in range(5)]


def test_stop_drains_what_is_buffered(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        w = writer(FlakySink(tmp_path))
        await w.start()
        w.add(make_rows(7), DAY)  # below batch_size, 60 s interval: still only in memory
        buffered, before_stop = w.pending, len(lake_ids(tmp_path))
        await w.stop()
        return buffered, before_stop, len(lake_ids(tmp_path))

    assert asyncio.run(scenario()) == (7, 0, 7)


def test_a_failed_flush_keeps_the_events_and_retries(tmp_path: Path) -> None:
    """The writer itself retries after the sink fails: the events reach the lake while it runs,
    not only because stop() drains whatever is left."""
    sink = FlakySink(tmp_path, failures=2)
    metrics = Metrics("stable")

    async def scenario() -> list[str]:
        w = EventWriter(sink, metrics, batch_size=100, flush_interval_s=0.05, max_buffered=1000)
        await w.start()
        w.add(make_rows(30), DAY)
        await until(lambda: w.pending == 0 and len(lake_ids(tmp_path)) == 30, "the writer retries the failed flush")
        assert w._task is not None and not w._task.done()
        ids = lake_ids(tmp_path)
        await w.stop()
        return ids

    ids = asyncio.run(scenario())
    assert sink.calls == 3 and sorted(ids) == sorted(f"e{i}" for i in range(30))
    assert metrics.event_flush_failures.labels("stable")._value.get() == 2


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
