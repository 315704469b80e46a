"""The Litestar application: ``create_app()`` wires settings, model, features, events and metrics.

Run it with ``python -m services.recommend`` (see ``server.py``), or any ASGI server with the
factory ``services.recommend.app:create_app``. Everything is configured from the environment
(``RECO_*``, see ``ServiceSettings`` and ``reco.settings.Settings``); nothing happens at import.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from reco.errors import RecoError
from reco.settings import Settings, get_settings
from services.recommend.controllers import EventsController, OpsController, RecommendController
from services.recommend.errors import ServiceError
from services.recommend.events import EventSink, EventWriter, LakeSink, PubSubSink
from services.recommend.features import ArticleStore, UserFeatureReader, make_user_reader, warm_up
from services.recommend.intraday import IntradayCounts
from services.recommend.metrics import Metrics
from services.recommend.model_holder import ModelHolder
from services.recommend.recommender import NO_MODEL, Recommender
from services.recommend.resp import RespClient
from services.recommend.schemas import Problem
from services.recommend.settings import ServiceSettings, get_service_settings

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


@dataclass
class Components:
    """The long-lived parts of one app, started and stopped by its lifespan hooks."""

    settings: Settings
    service: ServiceSettings
    metrics: Metrics
    holder: ModelHolder
    articles: ArticleStore
    users: UserFeatureReader
    writer: EventWriter
    recommender: Recommender
    intraday: IntradayCounts

    async def start(self) -> None:
        await self.writer.start()
        await self.holder.start()
        await self.articles.start()

    async def stop(self) -> None:
        # Drain events first: everything acknowledged must reach the sink before the process ends.
        await self.writer.stop()
        await self.holder.stop()
        await self.articles.stop()
        await self.users.close()
        await self.intraday.close()


def registry_loader(settings: Settings, alias: str, pinned: str = "") -> tuple[Callable[[], str], Callable[[str], Any]]:
    """(resolve, load) for ``models:/<model_name>@<alias>`` in ``settings.tracking_uri``, or for exactly
    version ``pinned`` when it is set (resolve then never asks the registry)."""
    from mlflow import MlflowClient

    from reco.model import load_model, load_model_version

    if pinned:
        return (lambda: pinned), (lambda version: load_model_version(settings, version))

    clients: list[MlflowClient] = []

    def resolve() -> str:
        # Created on first use, in the holder's thread: an unreachable (or, with SQLite, not yet
        # created) registry is then a failed poll, retried, not a worker that fails to start.
        if not clients:
            from reco.tracking_store import ready

            uri = ready(settings)  # a pipeline may be creating a fresh store at the same moment
            clients.append(MlflowClient(tracking_uri=uri, registry_uri=uri))
        return str(clients[0].get_model_version_by_alias(settings.model_name, alias).version)

    def load(version: str) -> Any:
        # load_model resolves the alias again; the holder records the version actually loaded.
        return load_model(settings, alias)

    return resolve, load


def build_components(settings: Settings, service: ServiceSettings) -> Components:
    """Construct (without starting) every part of the service from its settings."""
    from reco.featurestore import get_store

    metrics = Metrics(service.variant, service.prometheus_multiproc_dir)
    store = get_store(settings, None if service.online_store == "auto" else service.online_store)
    resolve, load = registry_loader(settings, service.model_alias, service.model_version)

    def load_and_warm(version: str) -> Any:
        model = load(version)
        snapshot = articles.current  # bound below; called only once the app runs
        if snapshot is not None:
            warm_up(model, snapshot.features, dt.datetime.now(dt.UTC))
        return model

    holder = ModelHolder(resolve, load_and_warm, metrics, poll_interval_s=service.model_poll_interval_s)
    # Unset: the model's learned fresh window (exploration.pool_max_age_hours).
    explore_age = service.exploration_max_age_hours if "exploration_max_age_hours" in service.model_fields_set else None
    # Shared through Redis when the online store is Redis (several replicas), else counted in-process.
    redis = store.config.online_store.type == "redis"
    intraday = IntradayCounts(
        RespClient(settings.redis_url, timeout_s=service.online_store_timeout_s) if redis else None
    )
    articles = ArticleStore(
        settings,
        store,
        current_model=lambda: holder.current.model if holder.current is not None else None,
        metrics=metrics,
        interval_s=service.article_refresh_interval_s,
        pool_size=service.exploration_pool_size,
        pool_max_age_hours=explore_age,
        fallback_size=service.fallback_pool_size,
        intraday=intraday,
    )
    users = make_user_reader(settings, store, timeout_s=service.online_store_timeout_s)
    sink: EventSink = (
        PubSubSink(service.pubsub_topic) if service.events_sink == "pubsub" else LakeSink(settings.bronze_events_dir)
    )
    writer = EventWriter(
        sink,
        metrics,
        batch_size=service.events_batch_size,
        flush_interval_s=service.events_flush_interval_s,
        max_buffered=service.events_max_buffered,
    )
    recommender = Recommender(holder, articles, users, service, metrics)
    return Components(settings, service, metrics, holder, articles, users, writer, recommender, intraday)


# -- the edge: errors and metrics --------------------------------------------------------------


def problem(status: int, title: str, detail: str, field: str | None = None) -> Response[Problem]:
    return Response(
        Problem(title=title, status=status, detail=detail, field=field), status_code=status, media_type=PROBLEM_JSON
    )


def service_error_handler(_: Request[Any, Any, Any], error: RecoError) -> Response[Problem]:
    """The project's error base class -> an RFC 9457 problem (4xx, or 503 for retry-later)."""
    if isinstance(error, ServiceError):
        response = problem(error.status_code, error.title, error.detail, error.field)
        if error.status_code == 503:
            response.headers["Retry-After"] = "1"
        return response
    return problem(400, "Bad Request", str(error))


def http_error_handler(_: Request[Any, Any, Any], error: HTTPException) -> Response[Problem]:
    """Litestar's own 4xx (404, 405, 413...) in the same problem format."""
    title = {404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}.get(error.status_code, "Error")
    return problem(error.status_code, title, str(error.detail))


def internal_error_handler(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("unhandled error", exc_info=error)
    return problem(500, "Internal Server Error", "unexpected error; it has been logged")


KNOWN_ENDPOINTS = {
    "/recommend": "recommend",
    "/events": "events",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
}


def metrics_middleware(metrics: Metrics) -> Callable[[ASGIApp], ASGIApp]:
    """Counts every HTTP answer and times it (``reco_requests_total``, ``reco_request_latency_seconds``).

    The handler leaves the model version that answered in ``scope["reco_model_version"]``.
    A raw ASGI wrapper, so the cost is one timer and one dict lookup per request.
    """
    variant = metrics.variant
    counters: dict[tuple[str, str, str], Any] = {}
    histograms: dict[tuple[str, str], Any] = {}

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                endpoint = KNOWN_ENDPOINTS.get(
                    scope["path"], "schema" if scope["path"].startswith("/schema") else "other"
                )
                version = str(scope.get("reco_model_version", NO_MODEL))
                key = (endpoint, str(status), version)
                counter = counters.get(key)
                if counter is None:
                    counter = counters[key] = metrics.requests.labels(endpoint, str(status), version, variant)
                counter.inc()
                hkey = (endpoint, version)
                histogram = histograms.get(hkey)
                if histogram is None:
                    histogram = histograms[hkey] = metrics.latency.labels(endpoint, version, variant)
                histogram.observe(time.perf_counter() - started)

        return wrapped

    return middleware


def create_app(
    settings: ServiceSettings | None = None,
    core: Settings | None = None,
    *,
    components: Components | None = None,
) -> Litestar:
    """The recommend service. Without arguments everything comes from the environment."""
    service = settings or get_service_settings()
    core = core or get_settings()
    parts = components or build_components(core, service)

    async def on_startup() -> None:
        await parts.start()

    async def on_shutdown() -> None:
        await parts.stop()
        if service.prometheus_multiproc_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    # The events route takes bigger bodies (a batch of 1,000 events is ~150 KiB).
    events = type("EventsController", (EventsController,), {"request_max_body_size": service.events_max_body_bytes})
    return Litestar(
        route_handlers=[RecommendController, events, OpsController],
        dependencies={"parts": Provide(lambda: parts, use_cache=True, sync_to_thread=False)},
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers={
            RecoError: service_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
        middleware=[metrics_middleware(parts.metrics)],
        request_max_body_size=service.max_body_bytes,
        openapi_config=OpenAPIConfig(title="reco-articles recommend service", version="1.0.0", path="/schema"),
        signature_namespace={"Components": Components},
        logging_config=None,
    )
