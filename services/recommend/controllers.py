"""HTTP controllers: thin handlers that decode strictly, call one component, and answer.

Bodies are decoded by :class:`StrictJSON` (msgspec, strict types, unknown fields refused) rather
than by Litestar's default, which coerces ``"5"`` to ``5``. The model version that answered is
left in the ASGI scope for the metrics middleware.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.dto import MsgspecDTO
from litestar.params import JSONBody
from litestar.typing import FieldDefinition

from services.recommend.attribution import attribute
from services.recommend.errors import InvalidRequestError
from services.recommend.events import to_rows
from services.recommend.metrics import CONTENT_TYPE
from services.recommend.schemas import (
    EventBatch,
    EventsAccepted,
    Health,
    Readiness,
    RecommendRequest,
    RecommendResponse,
    Strict,
)

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference, Schema

    from services.recommend.app import Components

T = TypeVar("T", bound=msgspec.Struct)

_PATH = re.compile(r"at `\$\.?(?P<path>[^`]*)`")
_UNKNOWN = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")


def field_of(message: str) -> str | None:
    """The request field a msgspec error is about: ``$.pinned[0].position`` -> ``pinned[0].position``."""
    path = _PATH.search(message)
    unknown = _UNKNOWN.search(message)
    prefix = path.group("path") if path else ""
    if unknown:
        return f"{prefix}.{unknown.group('name')}" if prefix else unknown.group("name")
    return prefix or None


class StrictJSON(MsgspecDTO[T], Generic[T]):
    """Decodes a JSON body into its msgspec Struct with ``strict=True``; errors name the field.

    The OpenAPI schema is the Struct's own, with ``additionalProperties: false`` for every Struct
    that forbids unknown fields, so generated clients (and schemathesis) know the contract.
    """

    _decoders: ClassVar[dict[type, msgspec.json.Decoder[Any]]] = {}

    def decode_bytes(self, value: bytes) -> Any:
        model = type(self).model_type
        decoder = self._decoders.get(model)
        if decoder is None:
            decoder = self._decoders[model] = msgspec.json.Decoder(model, strict=True)
        try:
            return decoder.decode(value)
        except msgspec.ValidationError as error:
            raise InvalidRequestError(str(error), field=field_of(str(error))) from error
        except msgspec.DecodeError as error:
            raise InvalidRequestError(f"malformed JSON: {error}", field="body") from error

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        result = schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))
        registry = schema_creator.schema_registry
        pending: list[type[Any]] = [Strict]
        while pending:
            for struct in pending.pop().__subclasses__():
                pending.append(struct)
                definition = FieldDefinition.from_annotation(struct)
                if registry.get_reference_for_field_definition(definition) is not None:
                    registry.get_schema_for_field_definition(definition).additional_properties = False
        return result


class RecommendController(Controller):
    path = "/recommend"
    tags = ("recommend",)

    @post(dto=StrictJSON[RecommendRequest], return_dto=None, status_code=200)
    async def recommend(
        self, data: JSONBody[RecommendRequest], parts: NamedDependency[Components], request: Request[Any, Any, Any]
    ) -> RecommendResponse:
        """Up to ``k`` articles for a user; every item says why (``reason``) and with which
        probability it was shown there (``propensity``). Unknown users get cold-start answers."""
        response = await parts.recommender.recommend(data)
        request.scope["reco_model_version"] = response.model_version  # type: ignore[typeddict-unknown-key]
        return response


class EventsController(Controller):
    path = "/events"
    tags = ("feedback",)

    @post(dto=StrictJSON[EventBatch], return_dto=None, status_code=202)
    async def events(self, data: JSONBody[EventBatch], parts: NamedDependency[Components]) -> EventsAccepted:
        """Feedback events (impression, click, read with dwell). 202 means buffered for durable
        writing: they reach the lake (or Pub/Sub) within the flush interval and before shutdown."""
        now = dt.datetime.now(dt.UTC)
        rows = to_rows(data.events, now)
        parts.writer.add(rows, now.date())
        parts.intraday.add(rows)
        count_feedback(parts, data)
        return EventsAccepted(accepted=len(rows), event_ids=[r[0] for r in rows])


def count_feedback(parts: NamedDependency[Components], batch: EventBatch) -> None:
    """Impression/click/read counters by the model version and variant that served the item:
    the event's own, else those its ``request_id`` carries (``services.recommend.attribution``),
    else ``none`` and this pod's variant.

    The click is counted under the version that served the list even when another pod served it (a
    canary's list clicked through a stable pod); label values are bounded (``ModelHolder.version_label``).
    """
    metrics = parts.metrics
    counts: dict[tuple[str, str, str], int] = {}
    for event in batch.events:
        model_version, variant = attribute(event.request_id, event.model_version, event.variant)
        version = parts.holder.version_label(model_version)
        key = (event.event_type, version, variant or metrics.variant)
        counts[key] = counts.get(key, 0) + 1
    counters = {"impression": metrics.impressions, "click": metrics.clicks, "read": metrics.reads}
    for (event_type, version, variant), n in counts.items():
        counters[event_type].labels(version, variant).inc(n)


class OpsController(Controller):
    path = "/"
    tags = ("operations",)

    @get("/healthz", sync_to_thread=False)
    def healthz(self) -> Health:
        """The process is alive (nothing else is checked)."""
        return Health(status="ok")

    @get("/readyz")
    async def readyz(self, parts: NamedDependency[Components]) -> Response[Readiness]:
        """200 when a model is loaded and the online store answers; 503 otherwise."""
        loaded = parts.holder.current
        store_ok = await parts.users.ping()
        snapshot = parts.articles.current
        ready = loaded is not None and store_ok and snapshot is not None
        body = Readiness(
            ready=ready,
            model_loaded=loaded is not None,
            model_version=loaded.version if loaded else None,
            online_store=store_ok,
            articles=len(snapshot) if snapshot else 0,
            variant=parts.service.variant,
        )
        return Response(body, status_code=200 if ready else 503)

    @get("/metrics", sync_to_thread=False)
    def metrics(self, parts: NamedDependency[Components]) -> Response[bytes]:
        """Prometheus text exposition (every worker's values in multiprocess mode)."""
        return Response(parts.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})
