"""Settings of the recommend service, read from the environment (prefix ``RECO_``).

Paths (workdir, lake, MLflow, Feast) stay in the core :class:`reco.settings.Settings`; what is
here only shapes the service: which model alias it serves, how often it looks for a new one,
its canary/stable label, request limits, event batching, exploration and the event sink.
Both settings objects read the same environment, so one container env configures both.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Every field maps to ``RECO_<NAME>`` (e.g. ``RECO_VARIANT=canary``)."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    # Registry alias served and followed (the embedded default: a new champion is loaded without restart).
    model_alias: str = "champion"
    # Production pin: the registry version written in git (the overlay's release file). When set, exactly
    # that version is loaded and the alias is never polled: a new model is a new pod template, which is
    # what makes Argo Rollouts run a canary at all.
    model_version: str = Field(default="", pattern=r"^(\d+)?$")
    # Seconds between looks at where the alias points (a new version is loaded in the background).
    model_poll_interval_s: float = Field(default=30.0, gt=0)
    # Label exported on every metric and response; canary analysis compares the two.
    variant: Literal["stable", "canary"] = "stable"

    # Request limits. /recommend bodies are small (1,000 excluded ids fit in 64 KiB); a batch of
    # 1,000 events is ~150 KiB, so /events gets its own, larger limit. The counts themselves
    # (k <= 100, exclude <= 1,000, events <= 1,000) are the API contract, fixed in schemas.py.
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    events_max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    # Events writer: flush when this many events are buffered, or after this many seconds.
    events_batch_size: int = Field(default=5000, gt=0)
    events_flush_interval_s: float = Field(default=1.0, gt=0)
    # Back-pressure: above this many buffered (unflushed) events, /events answers 503.
    events_max_buffered: int = Field(default=200_000, gt=0)
    events_sink: Literal["local", "pubsub"] = "local"
    # Full topic path, e.g. projects/my-project/topics/reco-events (events_sink=pubsub).
    pubsub_topic: str = ""

    # Exploration (epsilon-greedy): each of the last `exploration_slots` positions of a list is,
    # with probability `exploration_epsilon`, replaced by an under-exposed fresh article.
    exploration_epsilon: float = Field(default=0.1, ge=0.0, le=1.0)
    exploration_slots: int = Field(default=1, ge=0)
    # An article is "fresh" for exploration below this age, and "under-exposed" among the
    # `exploration_pool_size` fresh articles with the fewest views in the last 24 h. Unset, the age is
    # the fresh window the model learned from its training log (48 h without a model that says).
    exploration_max_age_hours: float = Field(default=48.0, gt=0)
    exploration_pool_size: int = Field(default=200, gt=0)
    exploration_seed: int | None = None

    # Set by server.run when it starts several workers: each writes its metric values there and
    # /metrics aggregates them (prometheus_client multiprocess mode). Empty: this process only.
    prometheus_multiproc_dir: str = ""

    # Online store to read: "auto" follows RECO_ENVIRONMENT (local: SQLite, gke: Redis at RECO_REDIS_URL).
    online_store: Literal["auto", "sqlite", "redis"] = "auto"
    # Article features are shared by all users: held in memory, refreshed on this interval.
    article_refresh_interval_s: float = Field(default=60.0, gt=0)
    # Degraded answers (online store down) come from this many fresh popular articles in memory.
    fallback_pool_size: int = Field(default=500, gt=0)
    # After an online-store failure, requests skip it for this long before trying again
    # (a dead Redis then costs no connection attempt per request).
    online_store_retry_after_s: float = Field(default=0.5, ge=0)
    # Per-call timeout of the direct Redis read (seconds). Generous on purpose: it is wall time,
    # and includes waiting for a busy event loop, so a tight value trips on CPU load, not on Redis.
    online_store_timeout_s: float = Field(default=0.25, gt=0)


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    """The process-wide service settings from the environment."""
    return ServiceSettings()
