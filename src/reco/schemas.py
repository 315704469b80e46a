"""The data contracts: events and articles as explicit pyarrow schemas.

One row per event. ``ts`` is UTC with microsecond precision. ``event_type`` is one of
``EVENT_TYPES``. Impressions carry the ``position`` (0-based: 0 is the top slot) and the
``propensity`` under which the item was shown, so logged data supports off-policy evaluation.
(The service's HTTP API counts positions from 1, like its responses, and converts.)
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("impression", "click", "read")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("dwell_ms", pa.int64()),
        pa.field("request_id", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("model_version", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("propensity", pa.float64()),
    ]
)

# The category of an article that no metadata describes (derived from a click log): features, candidates
# and the diversity rule treat it as "no category", never as one big category.
UNKNOWN_CATEGORY = "unknown"

ARTICLE_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("published_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("abstract", pa.string()),
    ]
)

# Quarantined rows keep every original value as text, plus why they were set aside.
QUARANTINE_SCHEMA = pa.schema(
    [pa.field(f.name, pa.string()) for f in EVENT_SCHEMA]
    + [pa.field("reason", pa.string(), nullable=False), pa.field("source", pa.string())]
)
