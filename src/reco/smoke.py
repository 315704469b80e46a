"""Smoke test of a deployed recommend service: what must hold right after a release, asked over HTTP only.

Five checks, each one line: ``readyz`` (a model is loaded, the online store answers), ``recommend-known`` and
``recommend-unknown`` (a non-empty list that is not the degraded fallback, for a user the model knows and for
one nobody has seen), ``events`` (one impression posted to ``/events`` is acknowledged and counted in
``/metrics``: ``reco_events_accepted_total`` rises) and ``model-version`` (``/readyz`` and both answers name the
version that should serve — in production the one git says, ``gitops/overlays/<env>/release.yaml``).

The event is an impression of the unknown (smoke) user's first item, under the request id the service gave:
one row in the lake, a user id that says what it was (``reco-smoke-…``), no click to learn from. Behind a
load balancer with several pods, ``/metrics`` may be answered by another pod than ``/events``; the check
waits for the counter and says so when it times out — smoke-test one pod (``kubectl port-forward``) there.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

ACCEPTED_METRIC = "reco_events_accepted_total"
DEGRADED = "degraded"  # the reason of every item the service's fallback answers with
SMOKE_PREFIX = "reco-smoke-"


@dataclass
class SmokeCheck:
    name: str
    status: str  # ok | failed | skipped
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def line(self) -> str:
        return f"{self.status:<7} {self.name:<17} {self.detail}"


class _Http:
    """JSON over urllib with one timeout; an answer of any status is returned, never raised."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, raw = self.call(method, path, body)
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")[:200]


def metric_total(exposition: str, name: str) -> float:
    """The sum of every series of ``name`` in a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("#") or line.split("{", 1)[0].split(" ", 1)[0] != name:
            continue
        value = line.rsplit("}", 1)[-1].split() if "{" in line else line.split()[1:]
        try:
            total += float(value[0])
        except (IndexError, ValueError):
            continue
    return total


def _recommend(http: _Http, name: str, user: str, expected: str | None) -> tuple[SmokeCheck, dict[str, Any]]:
    status, body = http.json("POST", "/recommend", {"user_id": user, "k": 10})
    if status != 200 or not isinstance(body, dict):
        return SmokeCheck(name, "failed", f"POST /recommend for {user}: {status} {body}"), {}
    items = body.get("items") or []
    reasons = sorted({str(i.get("reason")) for i in items})
    if not items:
        return SmokeCheck(name, "failed", f"no items for {user} (model {body.get('model_version')})"), body
    if DEGRADED in reasons:
        return SmokeCheck(name, "failed", f"{user}: the degraded fallback answered (model {body.get('model_version')})"), body
    if expected is not None and str(body.get("model_version")) != expected:
        detail = f"{user}: answered by model {body.get('model_version')}, expected {expected}"
        return SmokeCheck(name, "failed", detail), body
    detail = f"{user}: {len(items)} items from model {body.get('model_version')}, reasons {', '.join(reasons)}"
    return SmokeCheck(name, "ok", detail), body


def _events(http: _Http, user: str, answer: dict[str, Any], wait_s: float) -> SmokeCheck:
    name = "events"
    items = answer.get("items") or []
    if not items:
        return SmokeCheck(name, "failed", "no recommendation to send an impression of")
    status, raw = http.call("GET", "/metrics")
    if status != 200:
        return SmokeCheck(name, "failed", f"GET /metrics: {status}")
    before = metric_total(raw.decode(errors="replace"), ACCEPTED_METRIC)
    event = {
        "user_id": user,
        "article_id": items[0]["article_id"],
        "event_type": "impression",
        "request_id": answer["request_id"],
        "position": 1,
        "event_id": f"{SMOKE_PREFIX}{uuid.uuid4().hex}",
    }
    status, body = http.json("POST", "/events", {"events": [event]})
    if status != 202 or not isinstance(body, dict) or body.get("accepted") != 1:
        return SmokeCheck(name, "failed", f"POST /events: {status} {body}")
    deadline = time.monotonic() + wait_s
    after = before
    while True:
        status, raw = http.call("GET", "/metrics")
        if status == 200:
            after = metric_total(raw.decode(errors="replace"), ACCEPTED_METRIC)
            if after >= before + 1:
                return SmokeCheck(name, "ok", f"1 impression accepted, {ACCEPTED_METRIC} {before:g} -> {after:g}")
        if time.monotonic() >= deadline:
            return SmokeCheck(
                name, "failed",
                f"event accepted but {ACCEPTED_METRIC} stayed at {after:g} for {wait_s:g}s "
                "(several pods behind the URL? smoke-test one pod)",
            )  # fmt: skip
        time.sleep(0.2)


def run_smoke(
    url: str, *, user: str | None, expected_version: str | None, timeout_s: float = 10.0, wait_s: float = 10.0
) -> list[SmokeCheck]:
    """Every check against the service at ``url``, in order; a check that cannot be asked fails, never raises."""
    http = _Http(url, timeout_s)
    checks: list[SmokeCheck] = []
    try:
        status, ready = http.json("GET", "/readyz")
    except OSError as error:
        return [SmokeCheck("readyz", "failed", f"GET {http.url}/readyz: {error}")]
    served = ready.get("model_version") if isinstance(ready, dict) else None
    if status == 200 and isinstance(ready, dict) and ready.get("ready"):
        detail = f"ready: model {served}, {ready.get('articles')} articles, variant {ready.get('variant')}"
        checks.append(SmokeCheck("readyz", "ok", detail))
    else:
        checks.append(SmokeCheck("readyz", "failed", f"not ready: {status} {ready}"))

    answers: dict[str, dict[str, Any]] = {}
    stranger = f"{SMOKE_PREFIX}{uuid.uuid4().hex[:12]}"
    for name, who in (("recommend-known", user), ("recommend-unknown", stranger)):
        if who is None:
            checks.append(SmokeCheck(name, "failed", "no known user: pass --user ID (a user the model was trained on)"))
            continue
        try:
            check, answers[name] = _recommend(http, name, who, None)
        except OSError as error:
            check = SmokeCheck(name, "failed", f"POST /recommend: {error}")
        checks.append(check)

    try:
        checks.append(_events(http, stranger, answers.get("recommend-unknown", {}), wait_s))
    except OSError as error:
        checks.append(SmokeCheck("events", "failed", f"{error}"))

    if expected_version is None:
        checks.append(SmokeCheck("model-version", "skipped", "nothing to compare with: pass --expect-version or --env"))
    else:
        seen = {"readyz": served} | {k: v.get("model_version") for k, v in answers.items()}
        wrong = {k: v for k, v in seen.items() if str(v) != expected_version}
        if wrong:
            found = ", ".join(f"{k} says {v}" for k, v in wrong.items())
            checks.append(SmokeCheck("model-version", "failed", f"expected {expected_version}: {found}"))
        else:
            checks.append(SmokeCheck("model-version", "ok", f"{expected_version} serves ({', '.join(seen)})"))
    return checks
