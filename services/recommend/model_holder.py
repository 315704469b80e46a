"""The served model: loaded in the background, swapped atomically when the registry alias moves.

Requests read ``holder.current`` once and use that object for the whole request, so a swap
(one reference assignment, atomic under the GIL) never mixes two versions in one answer and
never fails a request in flight. A version that fails to load is counted and retried at the
next poll; the previous model keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.recommend.metrics import Metrics
from services.recommend.polling import Poller

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model with the registry version it was loaded from and when (monotonic seconds)."""

    model: Any
    version: str
    loaded_at: float


# Where the alias points now (a version string), without loading anything.
ResolveVersion = Callable[[], str]
# Load one registry version; returns an object with ``recommend(...)``.
LoadVersion = Callable[[str], Any]


class ModelHolder(Poller):
    """Keeps the current model of ``alias`` and polls for a new version every ``poll_interval_s``."""

    def __init__(self, resolve: ResolveVersion, load: LoadVersion, metrics: Metrics, *, poll_interval_s: float) -> None:
        self._resolve = resolve
        self._load = load
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.current: LoadedModel | None = None
        self.versions_seen: set[str] = set()  # versions this process loaded
        self._event_versions: set[str] = set()  # other versions named by feedback events (bounded)
        self._failed: dict[str, int] = {}
        super().__init__()
        self._failures = metrics.model_load_failures.labels(metrics.variant)

    task_name = "model-holder"

    @property
    def interval(self) -> float:
        return self.poll_interval_s

    @property
    def settled(self) -> bool:
        # Poll faster until the first model is in: a pod is useless until then.
        return self.current is not None

    async def refresh(self) -> bool:
        """Load the alias's version if it differs from the served one. True if a new model went in."""
        try:
            version = await asyncio.to_thread(self._resolve)
        except Exception as error:  # registry unreachable: keep serving, try at the next poll
            log.warning("cannot resolve the model alias: %s", error)
            self._failures.inc()
            return False
        if self.current is not None and self.current.version == version:
            return False
        try:
            model = await asyncio.to_thread(self._load, version)
        except Exception:
            log.exception("loading model version %s failed; still serving %s", version,
                          self.current.version if self.current else "nothing")  # fmt: skip
            self._failures.inc()
            self._failed[version] = self._failed.get(version, 0) + 1
            return False
        # The version the loader reports wins: the alias may have moved between resolve and load.
        self.swap(LoadedModel(model, str(getattr(model, "version", "") or version), time.monotonic()))
        return True

    def swap(self, loaded: LoadedModel) -> None:
        """Make ``loaded`` the served model: one reference assignment, then the info gauge."""
        previous = self.current
        self.current = loaded
        self.versions_seen.add(loaded.version)
        info = self.metrics.model_info
        if previous is not None and previous.version != loaded.version:
            info.labels(previous.version, self.metrics.variant).set(0)
        info.labels(loaded.version, self.metrics.variant).set(1)
        trained = _trained_timestamp(loaded.model)
        if previous is not None and previous.version != loaded.version:
            # 0 = no longer served (as for reco_model_info): an alert on age reads the served one's.
            self.metrics.model_trained.labels(previous.version, self.metrics.variant).set(0)
        if trained is not None:
            self.metrics.model_trained.labels(loaded.version, self.metrics.variant).set(trained)
        log.info("serving model version %s (was %s)", loaded.version, previous.version if previous else "none")

    def version_label(self, version: str | None) -> str:
        """The ``model_version`` label of a feedback event for ``version`` (the one that served the list).

        A click can land on any pod, not the one that served its list: during a canary, stable pods receive
        clicks on the canary's lists and must count them under the canary's version. Label values stay
        bounded: versions this process loaded, plus up to ``MAX_EVENT_VERSIONS`` other registry versions
        (digits); anything else is ``other``, and no version at all is ``none``.
        """
        if version is None:
            return "none"
        if version in self.versions_seen or version in self._event_versions:
            return version
        if _REGISTRY_VERSION.match(version) and len(self._event_versions) < MAX_EVENT_VERSIONS:
            self._event_versions.add(version)
            return version
        return "other"


MAX_EVENT_VERSIONS = 16
_REGISTRY_VERSION = re.compile(r"^\d{1,9}$")


def _trained_timestamp(model: Any) -> float | None:
    """Unix seconds of ``model.trained_until`` (ISO date or time), or None when it has none."""
    text = getattr(model, "trained_until", "") or ""
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
