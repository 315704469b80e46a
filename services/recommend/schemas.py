"""Request and response bodies of the service as msgspec Structs.

Decoding is strict (``"k": "5"`` is rejected, not coerced) and unknown fields are refused, so a
client typo fails loudly with a 400 that names the field instead of being silently ignored.
Limits that depend on settings (1,000 excluded ids, 1,000 events) are checked by the handlers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

# Ids are opaque strings; bounded so a single id cannot blow up memory or log lines.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EventType = Literal["impression", "click", "read"]
Variant = Literal["stable", "canary"]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of every request body: unknown fields are an error."""


class PinnedItem(Strict, frozen=True):
    """An editorial article forced at a 1-based position of the list."""

    article_id: Id
    position: Annotated[int, msgspec.Meta(ge=1, le=100)]


class RecommendRequest(Strict, frozen=True):
    """``POST /recommend``: up to ``k`` articles for ``user_id``."""

    user_id: Id
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    exclude: Annotated[list[Id], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    category: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    pinned: Annotated[list[PinnedItem], msgspec.Meta(max_length=100)] | None = None


class RecommendedItem(msgspec.Struct, frozen=True):
    """One shown article. ``position`` is 1-based. ``propensity`` is the probability with which
    the serving policy put this article at this position (see services.recommend.exploration)."""

    article_id: str
    score: float
    reason: str
    position: int
    propensity: float


class RecommendResponse(msgspec.Struct, frozen=True):
    """The answer: echo ``request_id`` and ``model_version``/``variant`` in the events it causes."""

    request_id: str
    items: list[RecommendedItem]
    model_version: str
    variant: str


class Event(Strict, frozen=True):
    """One feedback event. ``ts`` (UTC, RFC 3339 with offset) defaults to the arrival time;
    ``event_id`` defaults to a fresh UUID (send your own to make retries idempotent: ingest
    deduplicates by ``event_id``). ``dwell_ms`` is required for ``read`` events."""

    user_id: Id
    article_id: Id
    event_type: EventType
    request_id: Id
    event_id: Id | None = None
    ts: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None
    dwell_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] | None = None
    position: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    model_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    variant: Variant | None = None
    propensity: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None


class EventBatch(Strict, frozen=True):
    """``POST /events``: a batch of at most 1,000 events."""

    events: Annotated[list[Event], msgspec.Meta(min_length=1, max_length=1000)]


class EventsAccepted(msgspec.Struct, frozen=True):
    """Acknowledgement: ``accepted`` events are buffered and will be written before shutdown ends."""

    accepted: int
    event_ids: list[str]


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    """``ready`` is true when a model is loaded and the online store answered its last check."""

    ready: bool
    model_loaded: bool
    model_version: str | None
    online_store: bool
    articles: int
    variant: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem detail. ``field`` names the offending request field where there is one."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    field: str | None = None
