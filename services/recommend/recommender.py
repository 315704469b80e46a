"""One ``POST /recommend``: online user features -> the core model -> exploration -> response.

Retrieval, ranking, filters, news rules and cold start all happen inside
``reco.model.TwoStageModel.recommend`` (the code offline evaluation scores); this module only
gathers its inputs, adds exploration with propensities, and answers from a degraded fallback
when the online store or the model cannot be used, so a dependency failure is never a 5xx.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
from collections.abc import Iterable
from typing import Any

from services.recommend.attribution import make_request_id
from services.recommend.errors import InvalidRequestError, NotReadyError
from services.recommend.exploration import Shown, explore
from services.recommend.features import ArticleSnapshot, ArticleStore, OnlineStoreUnavailable, UserFeatureReader
from services.recommend.metrics import Metrics
from services.recommend.model_holder import ModelHolder
from services.recommend.schemas import RecommendedItem, RecommendRequest, RecommendResponse
from services.recommend.settings import ServiceSettings

log = logging.getLogger(__name__)

NO_MODEL = "none"


class Recommender:
    """Answers recommend requests from the current model and article snapshot."""

    def __init__(
        self,
        holder: ModelHolder,
        articles: ArticleStore,
        users: UserFeatureReader,
        settings: ServiceSettings,
        metrics: Metrics,
    ) -> None:
        self.holder = holder
        self.articles = articles
        self.users = users
        self.settings = settings
        self.metrics = metrics
        self.variant = settings.variant
        self.rng = random.Random(settings.exploration_seed)
        # After an online-store failure, skip it until this monotonic time (see settings).
        self._store_down_until = 0.0
        self._read_latency = metrics.feature_read.labels(self.variant)
        # Labelled children looked up once per label set, not per request (``.labels()`` takes a
        # lock and builds a tuple key each call).
        self._explored: dict[str, Any] = {}
        self._fallbacks: dict[str, Any] = {}

    @property
    def online_store_up(self) -> bool:
        return time.monotonic() >= self._store_down_until

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        # 128 random bits as 32 hex characters (a quarter of uuid4's cost); the request id made of it
        # in _response also says who served the list.
        token = os.urandom(16).hex()
        pinned = _pinned(request)
        loaded = self.holder.current  # read once: the whole answer comes from this version
        snapshot = self.articles.current
        if snapshot is None:
            raise NotReadyError("no article features loaded yet; retry shortly")
        if loaded is None:
            return self._fallback(request, token, snapshot, NO_MODEL, "no_model", pinned)

        now = dt.datetime.now(dt.UTC)
        if time.monotonic() < self._store_down_until:
            return self._fallback(request, token, snapshot, loaded.version, "online_store", pinned)
        started = time.perf_counter()
        try:
            user_features = await self.users.read(request.user_id)
        except OnlineStoreUnavailable as error:
            self._store_down_until = time.monotonic() + self.settings.online_store_retry_after_s
            log.warning("online store unavailable, degraded answers for %.1fs: %s",
                        self.settings.online_store_retry_after_s, error)  # fmt: skip
            return self._fallback(request, token, snapshot, loaded.version, "online_store", pinned)
        self._read_latency.observe(time.perf_counter() - started)

        try:
            items = loaded.model.recommend(
                request.user_id,
                k=request.k,
                now=now,
                user_features=user_features,
                articles=snapshot.features,
                exclude=request.exclude,
                category=request.category,
                pinned={position - 1: article for position, article in pinned.items()} or None,
            )
        except Exception:  # a model bug must degrade the answer, not fail it
            log.exception("model %s failed on a request; answering from the fallback", loaded.version)
            return self._fallback(request, token, snapshot, loaded.version, "model_error", pinned)

        ranked = [Shown(i.article_id, float(i.score), i.reason, 1.0) for i in items]
        blocked = set(request.exclude)
        if user_features and user_features.get("recent_reads"):
            blocked.update(user_features["recent_reads"])
        categories = snapshot.categories
        wanted = request.category

        def allowed(article_id: str) -> bool:
            return article_id not in blocked and (wanted is None or categories.get(article_id) == wanted)

        shown, explored = explore(
            ranked,
            snapshot.pool,
            epsilon=self.settings.exploration_epsilon,
            slots=self.settings.exploration_slots,
            rng=self.rng,
            allowed=allowed,
        )
        if explored:
            counter = self._explored.get(loaded.version)
            if counter is None:
                counter = self._explored[loaded.version] = self.metrics.explored.labels(loaded.version, self.variant)
            counter.inc(explored)
        return self._response(token, shown, loaded.version)

    def _fallback(
        self,
        request: RecommendRequest,
        token: str,
        snapshot: ArticleSnapshot,
        version: str,
        cause: str,
        pinned: dict[int, str],
    ) -> RecommendResponse:
        """Fresh popular articles from memory, reason ``degraded``; request filters still apply."""
        counter = self._fallbacks.get(cause)
        if counter is None:
            counter = self._fallbacks[cause] = self.metrics.fallbacks.labels(cause, self.variant)
        counter.inc()
        blocked = set(request.exclude) | set(pinned.values())
        categories = snapshot.categories
        wanted = request.category
        chosen: list[Shown] = []
        for article_id, score in snapshot.fallback:
            if article_id in blocked or (wanted is not None and categories.get(article_id) != wanted):
                continue
            chosen.append(Shown(article_id, score, "degraded", 1.0))
            if len(chosen) >= request.k:
                break
        for position in sorted(pinned):
            chosen.insert(min(position - 1, len(chosen)), Shown(pinned[position], chosen[0].score if chosen else 1.0, "pinned", 1.0))
        return self._response(token, chosen[: request.k], version)

    def _response(self, token: str, shown: Iterable[Shown], version: str) -> RecommendResponse:
        items = [
            RecommendedItem(s.article_id, s.score, s.reason, position, s.propensity)
            for position, s in enumerate(shown, start=1)
        ]
        return RecommendResponse(make_request_id(token, self.variant, version), items, version, self.variant)


def _pinned(request: RecommendRequest) -> dict[int, str]:
    """1-based position -> article id; two items at one position, or one item twice, is a 400."""
    out: dict[int, str] = {}
    for i, item in enumerate(request.pinned or ()):
        if item.position in out:
            raise InvalidRequestError(f"two pinned items at position {item.position}", field=f"pinned[{i}].position")
        if item.article_id in out.values():
            raise InvalidRequestError(f"article {item.article_id!r} pinned twice", field=f"pinned[{i}].article_id")
        out[item.position] = item.article_id
    return out
