"""Online features for serving: article features in memory, user features per request.

Article features are shared by every user, so the service holds them as one
``reco.model.ArticleFeatures`` snapshot, built from the Feast online store (feature service
``recommend_v1``, the one training joined) and refreshed on an interval; a request then reads
one key (its user) instead of hundreds.

User features are read per request:

* SQLite (local): Feast's own ``get_online_features`` for the one user (~0.25 ms measured).
* Redis: the same keys Feast materialized, read directly with one pipelined ``HMGET`` on the
  service's own asyncio client (``services.recommend.resp``, a third of redis-py's CPU): Feast's
  entity-key serialization, its murmur3 field names, its ``ValueProto`` decoding
  (``feast_value_type_to_python_type``), without the per-call feature-service resolution and
  response assembly, and without blocking the event loop. ``tests/integration/test_service_features``
  proves parity with ``FeatureStore.get_online_features`` on the same entities.

Either reader raises :class:`OnlineStoreUnavailable` when the store cannot be reached; the
recommender then answers from the degraded fallback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import feast
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type

from reco.featurestore import feature_refs, online_features
from reco.model import ArticleFeatures
from reco.settings import Settings
from services.recommend.exploration import pool_max_age_hours
from services.recommend.intraday import IntradayCounts
from services.recommend.metrics import Metrics
from services.recommend.polling import Poller
from services.recommend.resp import RespClient, RespError, pack_arguments

log = logging.getLogger(__name__)


class OnlineStoreUnavailable(Exception):
    """The online store did not answer (connection refused, timeout, file unreadable)."""


class UserFeatureReader(Protocol):
    """Reads one user's ``recommend_v1`` user features; None for a user never materialized."""

    async def read(self, user_id: str) -> dict[str, Any] | None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def user_feature_refs(store: feast.FeatureStore) -> list[str]:
    """``view:feature`` references of the feature service's user side."""
    return feature_refs(store)["user_id"]


class FeastUserReader:
    """Feast's ``get_online_features`` for one user (used with the local SQLite store).

    Called on the event loop on purpose: a local SQLite read does not wait on a network, and a
    thread hop would cost as much as the read.
    """

    def __init__(self, store: feast.FeatureStore) -> None:
        self.store = store
        self.refs = user_feature_refs(store)
        self.names = [ref.split(":", 1)[1] for ref in self.refs]

    async def read(self, user_id: str) -> dict[str, Any] | None:
        try:
            result = self.store.get_online_features(features=self.refs, entity_rows=[{"user_id": user_id}]).to_dict()
        except Exception as error:
            raise OnlineStoreUnavailable(str(error)) from error
        row = {name: result[name][0] for name in self.names}
        return row if any(v is not None for v in row.values()) else None

    async def ping(self) -> bool:
        try:
            await self.read("__readyz__")
        except OnlineStoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        pass


@dataclass(frozen=True)
class _ViewFields:
    view: str
    names: tuple[str, ...]
    hash_fields: tuple[bytes, ...]  # murmur3("view:feature") per feature, then b"_ts:view"


class RedisUserReader:
    """Direct async read of Feast's Redis layout (see the module docstring).

    Key: ``serialize_entity_key(user_id) + project``; one hash per entity holding every view of
    that entity; field ``mmh3("view:feature")`` holds a serialized ``ValueProto``.
    """

    def __init__(self, store: feast.FeatureStore, redis_url: str, *, timeout_s: float) -> None:
        self.project = store.config.project.encode()
        self.key_version = store.config.entity_key_serialization_version
        views: dict[str, list[str]] = {}
        for ref in user_feature_refs(store):
            view, name = ref.split(":", 1)
            views.setdefault(view, []).append(name)
        self.views = [
            _ViewFields(view, tuple(names), (*[_mmh3(f"{view}:{n}") for n in names], f"_ts:{view}".encode()))
            for view, names in views.items()
        ]
        self.fields = [f for v in self.views for f in v.hash_fields]
        # HMGET <key> <fields...>: the fields' part of the command is the same for every user.
        self._packed_fields = pack_arguments(*self.fields)
        self.client = RespClient(redis_url, timeout_s=timeout_s)

    def key(self, user_id: str) -> bytes:
        entity = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
        return serialize_entity_key(entity, entity_key_serialization_version=self.key_version) + self.project

    async def read(self, user_id: str) -> dict[str, Any] | None:
        packed = b"*%d\r\n%s%s" % (
            len(self.fields) + 2,
            pack_arguments(b"HMGET", self.key(user_id)),
            self._packed_fields,
        )
        try:
            values = await self.client.execute_packed(packed)
        except (TimeoutError, RespError, OSError) as error:  # ConnectionError is an OSError
            raise OnlineStoreUnavailable(f"{type(error).__name__}: {error}") from error
        return decode_user_values(self.views, values)

    async def ping(self) -> bool:
        try:
            return await self.client.execute("PING") == b"PONG"
        except (TimeoutError, RespError, OSError):
            return False

    async def close(self) -> None:
        await self.client.close()


# Value kinds whose Python value is the proto field itself (scalars) or its list (lists), exactly
# as feast_value_type_to_python_type returns them (called without a feature type, as the online
# read does); every other kind (timestamps, JSON, maps, sets, UUIDs, decimals) goes through it.
_PLAIN_SCALARS = frozenset(("int32_val", "int64_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val"))
_PLAIN_LISTS = frozenset(f"{kind[:-4]}_list_val" for kind in _PLAIN_SCALARS)


def python_value(value: Value) -> Any:
    """``feast_value_type_to_python_type(value)``, a quarter of its cost for the plain kinds."""
    kind = value.WhichOneof("val")
    if kind in _PLAIN_SCALARS:
        return getattr(value, kind)
    if kind in _PLAIN_LISTS:
        return list(getattr(value, kind).val)
    return feast_value_type_to_python_type(value)


def decode_user_values(views: Sequence[_ViewFields], values: Sequence[bytes | None]) -> dict[str, Any] | None:
    """HMGET reply -> {feature: python value}, as Feast's online read would give it; None if absent."""
    out: dict[str, Any] = {}
    found = False
    i = 0
    for view in views:
        for name in view.names:
            raw = values[i]
            i += 1
            if raw:
                found = True
                out[name] = python_value(Value.FromString(raw))
            else:
                out[name] = None
        i += 1  # the view's _ts field
    return out if found else None


class LazyUserReader:
    """Builds its reader on first use, so the service starts (and reports not ready) before the
    pipeline has registered the feature service; until then reads fail as "store unavailable"."""

    def __init__(self, build: Callable[[], UserFeatureReader]) -> None:
        self._build = build
        self._reader: UserFeatureReader | None = None

    def _get(self) -> UserFeatureReader:
        if self._reader is None:
            try:
                self._reader = self._build()
            except Exception as error:
                raise OnlineStoreUnavailable(f"feature service not available: {error}") from error
        return self._reader

    async def read(self, user_id: str) -> dict[str, Any] | None:
        return await self._get().read(user_id)

    async def ping(self) -> bool:
        try:
            return await self._get().ping()
        except OnlineStoreUnavailable:
            return False

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()


def make_user_reader(settings: Settings, store: feast.FeatureStore, *, timeout_s: float) -> UserFeatureReader:
    """The direct Redis reader when the store's online store is Redis, Feast's read otherwise."""

    def build() -> UserFeatureReader:
        store.refresh_registry()
        if store.config.online_store.type == "redis":
            return RedisUserReader(store, settings.redis_url, timeout_s=timeout_s)
        return FeastUserReader(store)

    return LazyUserReader(build)


# -- articles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleSnapshot:
    """Everything the service derives from the catalogue, swapped in as one reference.

    ``pool``: exploration candidates (the least-viewed fresh articles). ``fallback``: (article_id,
    score) of fresh popular articles, best first, for degraded answers. ``categories``:
    article_id -> category. ``source``: "online" or "model" (the model's own snapshot, used until
    the online store first answers).
    """

    features: ArticleFeatures
    pool: tuple[str, ...]
    fallback: tuple[tuple[str, float], ...]
    categories: Mapping[str, str]
    built_at: dt.datetime
    source: str
    fingerprint: tuple[Any, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.features)


def build_snapshot(
    features: ArticleFeatures,
    now: dt.datetime,
    *,
    source: str,
    pool_size: int,
    pool_max_age_hours: float,
    fallback_size: int,
    fingerprint: tuple[Any, ...] = (),
) -> ArticleSnapshot:
    """Exploration pool and fallback list from the catalogue arrays at ``now`` (UTC).

    Fallback score = (clicks_24h + 1) · 2^(-age_hours / 24) over published articles: fresh and
    popular, as the cold-start rule of the model, without needing the model.
    """
    now_s = now.timestamp()
    ids = features.article_ids
    age_h = (now_s - features.published_s) / 3600.0
    published = age_h >= 0
    fresh = np.flatnonzero(published & (age_h <= pool_max_age_hours))
    # Fewest views first; among equals the newest first.
    order = np.lexsort((age_h[fresh], features.views_24h[fresh]))
    pool = tuple(str(ids[i]) for i in fresh[order][:pool_size])
    score = np.where(published, (features.clicks_24h + 1.0) * np.exp2(-np.maximum(age_h, 0.0) / 24.0), -np.inf)
    top = np.argsort(-score, kind="stable")[:fallback_size]
    fallback = tuple((str(ids[i]), float(score[i])) for i in top if np.isfinite(score[i]))
    names = features.categories
    categories = {str(a): names[c] for a, c in zip(ids.tolist(), features.category_codes.tolist(), strict=True)}
    return ArticleSnapshot(features, pool, fallback, categories, now, source, fingerprint)


def article_universe(settings: Settings, model: Any | None, now: dt.datetime, max_age_hours: float) -> list[str]:
    """Article ids whose features the service holds: the model's catalogue and trained items, plus
    articles published in the last ``max_age_hours`` per the silver article metadata (so an
    article published after the last training run can still be served)."""
    ids: dict[str, None] = {}
    if model is not None:
        if getattr(model, "catalog", None) is not None:
            ids.update(dict.fromkeys(model.catalog.article_ids.tolist()))
        ids.update(dict.fromkeys(model.item_ids.tolist()))
    recent = recent_articles(settings.silver_articles_path, now, max_age_hours)
    if recent is not None:
        ids.update(dict.fromkeys(recent["article_id"].tolist()))
    return [str(a) for a in ids]


def recent_articles(path: Path, now: dt.datetime, max_age_hours: float) -> pd.DataFrame | None:
    """Silver article metadata published in (now - max_age, now], or None if there is no file."""
    if not path.is_file():
        return None
    table = pq.read_table(path, columns=["article_id", "category", "published_at"])
    frame = table.to_pandas()
    published = pd.to_datetime(frame["published_at"], utc=True)
    keep = (published <= now) & (published > now - dt.timedelta(hours=max_age_hours))
    return frame[keep.to_numpy()]


def read_article_frame(
    settings: Settings, store: feast.FeatureStore, article_ids: Sequence[str], metadata: pd.DataFrame | None
) -> pd.DataFrame:
    """``recommend_v1`` article features from the online store, one row per id (``article_id`` column).

    Articles without materialized features take ``category``/``published_at`` from ``metadata``
    (silver articles) and zero stats, so new articles are eligible through their category.
    """
    _, frame = online_features(settings, [], list(article_ids), store=store)
    frame = frame.reset_index()
    if metadata is not None and len(metadata):
        meta = metadata.drop_duplicates("article_id", keep="last").set_index("article_id")
        missing = frame["published_at"].isna() & frame["article_id"].isin(meta.index)
        if missing.any():
            ids = frame.loc[missing, "article_id"]
            frame.loc[missing, "category"] = meta.loc[ids, "category"].to_numpy()
            frame.loc[missing, "published_at"] = pd.to_datetime(meta.loc[ids, "published_at"], utc=True).to_numpy()
    return frame


def materialization_marker(store: feast.FeatureStore) -> tuple[Any, ...]:
    """What changes when new article features are materialized: the article views' intervals."""
    store.refresh_registry()
    views = sorted({ref.split(":", 1)[0] for ref in feature_refs(store)["article_id"]})
    marker: list[Any] = []
    for name in views:
        view = store.get_feature_view(name)
        marker += [(name, start.isoformat(), end.isoformat()) for start, end in view.materialization_intervals]
    return tuple(marker)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def warm_up(model: Any, features: ArticleFeatures, now: dt.datetime) -> None:
    """One throw-away request so the model aligns its factors to this catalogue now (in the
    refresh or load thread), not in the first live request after a swap."""
    model.recommend("__warmup__", k=1, now=now, user_features=None, articles=features)


class ArticleStore(Poller):
    """Holds the current :class:`ArticleSnapshot` and refreshes it every ``interval_s``.

    The store is re-read only when something it depends on changed (new materialization, new
    model, new silver articles); otherwise the pool and fallback are recomputed for the current
    time from the arrays already held. Today's counts (``intraday``) are synced and applied on
    every refresh. A failed read keeps the previous snapshot; before the
    first successful read the model's own catalogue (if it has one) stands in.
    """

    def __init__(
        self,
        settings: Settings,
        store: feast.FeatureStore,
        *,
        current_model: Any,
        metrics: Metrics,
        interval_s: float,
        pool_size: int,
        pool_max_age_hours: float | None,
        fallback_size: int,
        intraday: IntradayCounts | None = None,
    ) -> None:
        self.settings = settings
        self.intraday = intraday
        self.store = store
        self._current_model = current_model  # () -> model or None
        self.metrics = metrics
        self.interval_s = interval_s
        self.pool_size = pool_size
        # None: the model's learned fresh window (see exploration.pool_max_age_hours).
        self.pool_max_age_hours = pool_max_age_hours
        self.fallback_size = fallback_size
        self.current: ArticleSnapshot | None = None
        self.online_ok = False
        super().__init__()
        self._failures = metrics.article_refresh_failures.labels(metrics.variant)

    task_name = "article-store"

    @property
    def interval(self) -> float:
        return self.interval_s

    @property
    def settled(self) -> bool:
        return self.current is not None and self.current.source == "online"

    async def refresh(self) -> None:
        if self.intraday is not None:
            await self.intraday.sync()
        try:
            snapshot = await asyncio.to_thread(self._build)
        except Exception as error:
            self.online_ok = False
            self._failures.inc()
            log.warning("article features refresh failed (%s); keeping %s", error,
                        "the previous snapshot" if self.current else "nothing")  # fmt: skip
            if self.current is None:
                fallback = await asyncio.to_thread(self._from_model)
                if fallback is None:
                    return
                snapshot = fallback
            else:
                return
        self.current = snapshot

    def _build(self) -> ArticleSnapshot:
        now = dt.datetime.now(dt.UTC)
        model = self._current_model()
        fingerprint = (
            materialization_marker(self.store),
            getattr(model, "uid", None),
            _mtime(self.settings.silver_articles_path),
        )
        previous = self.current
        if previous is not None and previous.source == "online" and previous.fingerprint == fingerprint:
            features = previous.features
        else:
            horizon = max(
                pool_max_age_hours(model, self.pool_max_age_hours),
                getattr(getattr(model, "rules", None), "max_age_hours", 72.0),
            )
            metadata = recent_articles(self.settings.silver_articles_path, now, horizon)
            ids = article_universe(self.settings, model, now, horizon)
            features = ArticleFeatures.from_frame(read_article_frame(self.settings, self.store, ids, metadata))
        if self.intraday is not None:
            # A new catalogue object each refresh: the model's per-catalogue cache is rebuilt here, off the loop.
            features = features.with_today(*self.intraday.aligned(features.article_ids))
        if model is not None and len(features) and features is not (previous.features if previous else None):
            warm_up(model, features, now)
        self.online_ok = True
        return self._snapshot(features, now, "online", fingerprint)

    def _from_model(self) -> ArticleSnapshot | None:
        model = self._current_model()
        catalog = getattr(model, "catalog", None)
        if catalog is None:
            return None
        return self._snapshot(catalog, dt.datetime.now(dt.UTC), "model", ())

    def _snapshot(
        self, features: ArticleFeatures, now: dt.datetime, source: str, fingerprint: tuple[Any, ...]
    ) -> ArticleSnapshot:
        return build_snapshot(
            features, now, source=source, pool_size=self.pool_size,
            pool_max_age_hours=pool_max_age_hours(self._current_model(), self.pool_max_age_hours),
            fallback_size=self.fallback_size, fingerprint=fingerprint,
        )  # fmt: skip
