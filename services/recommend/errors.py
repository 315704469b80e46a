"""Errors of the service. All derive from :class:`reco.errors.RecoError`, the project's one error
base class, and carry the HTTP status they map to at the edge (see ``app.problem_handler``)."""

from __future__ import annotations

from reco.errors import RecoError


class ServiceError(RecoError):
    """A request the client can fix or retry; ``status_code`` is its HTTP status (4xx/503)."""

    status_code = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidRequestError(ServiceError):
    """The body is not valid JSON or does not match the schema; ``field`` names the culprit."""


class NotReadyError(ServiceError):
    """Nothing to answer with yet (no model and no article features loaded): retry later."""

    status_code = 503
    title = "Service Unavailable"


class OverloadedError(ServiceError):
    """The event buffer is full (the sink is slower than the intake): retry later."""

    status_code = 503
    title = "Service Unavailable"
