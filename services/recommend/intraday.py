"""Today's impressions and clicks per article, counted from the events this service acknowledges.

The ranker reads them (``reco.intraday``: ``log_clicks_today``, ``ctr_today_smoothed``); the article
store applies them to its catalogue on each refresh (``ArticleStore``, every
``article_refresh_interval_s``), so a request sees counts at most one refresh old. Training and the
offline evaluation compute the same counts from the silver log.

* Embedded (SQLite online store): counted in this process — one process sees every event.
* Redis online store: every replica adds what it received to two hashes per UTC day
  (``reco:intraday:<day>:impression`` / ``:click``, field = article id, expiring after two days) and
  reads the totals back, so all replicas rank on the whole site's counts, not on the share of the
  traffic their load balancer sent them.

Only events stamped today (UTC) count. A client that retries a batch counts its events twice here
(the lake deduplicates by ``event_id``; these counts do not): a retry inflates an article's count a
little, it never loses one. A Redis outage keeps the last totals read and the increments not yet
written (added back on the next sync).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

from services.recommend.events import Row
from services.recommend.resp import RespClient, RespError

log = logging.getLogger(__name__)

KINDS = ("impression", "click")
KEY_PREFIX = "reco:intraday"
KEY_TTL_S = 2 * 86_400
# Row layout of services.recommend.events.to_rows: (event_id, ts, user_id, article_id, event_type, ...).
_TS, _ARTICLE, _TYPE = 1, 3, 4


class IntradayCounts:
    """Per-article impression and click counts of the current UTC day (see the module docstring)."""

    def __init__(self, client: RespClient | None = None) -> None:
        self.client = client
        self.day: dt.date | None = None
        self.totals: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self._pending: dict[tuple[dt.date, str], Counter[str]] = {}

    def add(self, rows: Sequence[Row]) -> None:
        """Count the impressions and clicks among ``rows`` (acknowledged events) stamped today."""
        today = dt.datetime.now(dt.UTC).date()
        for row in rows:
            kind = row[_TYPE]
            if kind in KINDS and row[_TS].date() == today:
                self._pending.setdefault((today, kind), Counter())[str(row[_ARTICLE])] += 1

    async def sync(self) -> None:
        """Fold the pending increments into the day's totals (through Redis when configured)."""
        today = dt.datetime.now(dt.UTC).date()
        if self.day != today:
            self.day, self.totals = today, {kind: Counter() for kind in KINDS}
        pending, self._pending = self._pending, {}
        pending = {key: counts for key, counts in pending.items() if key[0] == today}
        if self.client is None:
            for (_, kind), counts in pending.items():
                self.totals[kind].update(counts)
            return
        try:
            await self._sync_redis(today, pending)
        except (TimeoutError, RespError, OSError) as error:
            for key, counts in pending.items():  # written on the next sync
                self._pending.setdefault(key, Counter()).update(counts)
            log.warning("intraday counts: redis unavailable (%s); keeping the last totals", error)

    async def _sync_redis(self, today: dt.date, pending: dict[tuple[dt.date, str], Counter[str]]) -> None:
        assert self.client is not None
        commands: list[tuple[bytes | str | int, ...]] = []
        for (_, kind), counts in pending.items():
            key = self.key(today, kind)
            commands += [("HINCRBY", key, article, n) for article, n in counts.items()]
            commands.append(("EXPIRE", key, KEY_TTL_S))
        # One round trip: the connection pipelines concurrent commands.
        await asyncio.gather(*(self.client.execute(*command) for command in commands))
        replies = await asyncio.gather(*(self.client.execute("HGETALL", self.key(today, kind)) for kind in KINDS))
        for kind, flat in zip(KINDS, replies, strict=True):
            self.totals[kind] = Counter({f.decode(): int(v) for f, v in zip(flat[::2], flat[1::2], strict=True)})

    @staticmethod
    def key(day: dt.date, kind: str) -> str:
        return f"{KEY_PREFIX}:{day.isoformat()}:{kind}"

    def aligned(self, article_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(views, clicks) of the day, (n,) float32, in the order of ``article_ids``."""
        views, clicks = self.totals["impression"], self.totals["click"]
        ids = [str(a) for a in article_ids]
        return (
            np.array([views.get(a, 0) for a in ids], dtype=np.float32),
            np.array([clicks.get(a, 0) for a in ids], dtype=np.float32),
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
