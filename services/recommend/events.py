"""Feedback intake: a batching writer from ``POST /events`` to a durable sink.

Acknowledgement contract: an event acknowledged by ``POST /events`` sits in this process's
buffer and is written (Parquet file fsync'ed into the bronze lake, or published to Pub/Sub)
within ``events_flush_interval_s``, or as soon as ``events_batch_size`` events are waiting, and
in any case before a graceful shutdown completes (``EventWriter.stop`` drains the buffer). A
crash (SIGKILL, OOM) loses at most the events of the last interval; clients that need more
resend with their own ``event_id`` and ingest deduplicates. Bronze is partitioned by arrival
date (UTC), as the lake layout says; ``ts`` keeps the event time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from reco.lake import append_batch
from reco.schemas import EVENT_SCHEMA
from services.recommend.attribution import attribute
from services.recommend.errors import InvalidRequestError, OverloadedError
from services.recommend.metrics import Metrics
from services.recommend.schemas import Event

log = logging.getLogger(__name__)

# One buffered event: the EVENT_SCHEMA columns in order.
Row = tuple[Any, ...]


class EventSink(Protocol):
    """Where batches go. ``write`` blocks until the batch is durable, or raises."""

    def write(self, rows: Sequence[Row], day: dt.date) -> None: ...

    def close(self) -> None: ...


def rows_to_table(rows: Sequence[Row]) -> pa.Table:
    """Buffered rows -> a table of ``EVENT_SCHEMA`` (columns built at once, not row by row)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_SCHEMA]
    return pa.table(
        [pa.array(col, type=field.type) for col, field in zip(columns, EVENT_SCHEMA, strict=True)],
        schema=EVENT_SCHEMA,
    )


class LakeSink:
    """Appends each batch as one new Parquet file to ``bronze/events/date=D/`` (fsync'ed)."""

    def __init__(self, bronze_events_dir: Path) -> None:
        self.root = bronze_events_dir
        # The pid in the name tells which worker wrote a file; the uuid suffix keeps names unique.
        self.prefix = f"api-{os.getpid()}"

    def write(self, rows: Sequence[Row], day: dt.date) -> None:
        append_batch(rows_to_table(rows), self.root, day, prefix=self.prefix, fsync=True)

    def close(self) -> None:
        pass


EVENT_TYPE_AT = EVENT_SCHEMA.names.index("event_type")


def encode_event(row: Row) -> bytes:
    """One event as the JSON of a Pub/Sub message: EVENT_SCHEMA's fields, ``ts`` in ISO 8601 (UTC). The topic's
    Cloud Storage subscription writes these, one per line, as ``.jsonl`` files into the bronze lake, where
    ``reco ingest`` reads them beside Parquet."""
    record = dict(zip(EVENT_SCHEMA.names, row, strict=True))
    record["ts"] = record["ts"].isoformat()
    return json.dumps(record, separators=(",", ":")).encode()


class PubSubSink:
    """Publishes one JSON message per event to a Pub/Sub topic; ``write`` returns when all are acked.

    The topic's GCS subscription lands them in the bronze bucket (production layout). The client
    honours ``PUBSUB_EMULATOR_HOST`` (tests use the emulator).
    """

    def __init__(self, topic: str) -> None:
        from google.cloud import pubsub_v1

        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise ValueError(f"RECO_PUBSUB_TOPIC must be projects/<project>/topics/<topic>, got {topic!r}")
        self.topic = topic
        self.client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=4 * 1024 * 1024, max_latency=0.01)
        )

    def write(self, rows: Sequence[Row], day: dt.date) -> None:
        futures = []
        for row in rows:
            data = encode_event(row)
            futures.append(self.client.publish(self.topic, data, event_type=row[EVENT_TYPE_AT], date=day.isoformat()))
        for future in futures:
            future.result(timeout=60)

    def close(self) -> None:
        self.client.stop()


def to_rows(events: Sequence[Event], now: dt.datetime) -> list[Row]:
    """Validated API events -> rows; fills ``event_id`` (uuid4) and ``ts`` (arrival time, UTC).

    The API's ``position`` is 1-based, as in the /recommend response; the lake's is 0-based (the
    generator's and importers' convention, which off-policy evaluation reads: slot 0 is the top).

    Raises InvalidRequestError naming the field for what the schema alone cannot say.
    """
    rows: list[Row] = []
    for i, e in enumerate(events):
        if e.event_type == "read" and e.dwell_ms is None:
            raise InvalidRequestError("a read event needs dwell_ms", field=f"events[{i}].dwell_ms")
        ts = e.ts.astimezone(dt.UTC) if e.ts is not None else now
        # A client that does not echo model_version / variant still gets them right in the lake
        # when its request_id is one this service made.
        model_version, variant = attribute(e.request_id, e.model_version, e.variant)
        rows.append(
            (
                e.event_id or uuid.uuid4().hex,
                ts,
                e.user_id,
                e.article_id,
                e.event_type,
                e.dwell_ms,
                e.request_id,
                e.position - 1 if e.position is not None else None,
                model_version,
                variant,
                e.propensity,
            )
        )
    return rows


class EventWriter:
    """Buffers acknowledged events and flushes them to ``sink`` on size and on an interval.

    All methods except the sink's ``write`` run on the event loop; the write runs in a thread so
    requests keep being served while a batch is fsync'ed or published. One flush at a time.
    """

    def __init__(
        self,
        sink: EventSink,
        metrics: Metrics,
        *,
        batch_size: int,
        flush_interval_s: float,
        max_buffered: int,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self._buffer: list[Row] = []
        self._days: list[dt.date] = []  # arrival date of each buffered row
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._buffered = metrics.events_buffered.labels(metrics.variant)
        self._accepted = metrics.events_accepted.labels(metrics.variant)
        self._written = metrics.events_written.labels(metrics.variant)
        self._failures = metrics.event_flush_failures.labels(metrics.variant)

    @property
    def pending(self) -> int:
        """Acknowledged events not yet durable (buffered + being written)."""
        return len(self._buffer) + self._in_flight

    def add(self, rows: list[Row], day: dt.date) -> None:
        """Buffer ``rows`` (arrived on ``day``); after this returns they will be written."""
        if self._stopping:
            raise OverloadedError("shutting down; send events to another instance")
        if self.pending + len(rows) > self.max_buffered:
            raise OverloadedError(f"event buffer full ({self.pending} events pending); retry shortly")
        self._buffer.extend(rows)
        self._days.extend([day] * len(rows))
        self._accepted.inc(len(rows))
        self._buffered.set(self.pending)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-writer")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(min(self.flush_interval_s, 1.0))  # sink down: back off, keep the rows

    async def flush(self) -> bool:
        """Write everything buffered now; on failure the rows go back to the front. True if all written."""
        while self._buffer:
            rows, days = self._buffer[: self.batch_size * 4], self._days[: self.batch_size * 4]
            del self._buffer[: len(rows)], self._days[: len(days)]
            self._in_flight = len(rows)
            try:
                for day in sorted(set(days)):
                    part = rows if len(set(days)) == 1 else [r for r, d in zip(rows, days, strict=True) if d == day]
                    await asyncio.to_thread(self.sink.write, part, day)
                    # A multi-day batch that fails halfway may rewrite its first day: harmless,
                    # ingest deduplicates by event_id.
            except Exception:
                log.exception("event flush of %d rows failed; will retry", len(rows))
                self._failures.inc()
                self._buffer[:0], self._days[:0] = rows, days
                self._in_flight = 0
                self._buffered.set(self.pending)
                return False
            self._in_flight = 0
            self._written.inc(len(rows))
            self._buffered.set(self.pending)
        return True

    async def stop(self, *, attempts: int = 5) -> None:
        """Stop the flusher and drain the buffer (graceful shutdown)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for attempt in range(attempts):
            if await self.flush():
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        if self._buffer:
            log.error("shutdown with %d acknowledged events unwritten: the sink kept failing", len(self._buffer))
        await asyncio.to_thread(self.sink.close)
