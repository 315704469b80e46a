"""A background refresh loop shared by the model holder and the article store."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# Until the first good refresh the service cannot answer properly, so it retries at least this often.
UNSETTLED_RETRY_S = 2.0


class Poller:
    """Calls ``refresh`` in a background task every ``interval`` seconds (faster until ``settled``)."""

    task_name = "poller"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        raise NotImplementedError

    @property
    def settled(self) -> bool:
        raise NotImplementedError

    async def refresh(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval if self.settled else min(self.interval, UNSETTLED_RETRY_S))
