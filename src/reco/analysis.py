"""The canary's CTR verdict: a Beta-Binomial judgment with three outcomes, and the small judge Argo Rollouts asks.

At 5 % of traffic a canary collects few impressions, and a fixed rule ("CTR at least 95 % of stable's") is
noise: it aborts good models and passes bad ones at random. Instead, with uniform priors, each variant's
CTR has the posterior ``Beta(1 + clicks, 1 + impressions - clicks)`` and the judge computes

    p_worse = P(CTR_canary < (1 - margin) · CTR_stable | the counts)

by Monte Carlo (a fixed seed: the same counts always give the same verdict). Then:

* **Inconclusive** while the canary (or stable) has fewer than ``min_impressions`` impressions: too little
  evidence either way. Argo Rollouts' Web metric turns "neither success nor failure" into Inconclusive, which
  pauses the rollout for a person — not a rollback, not a promotion;
* **Failed** when ``p_worse > threshold``: the canary is, with that confidence, more than ``margin`` worse;
* **Successful** when ``p_worse < 1 - threshold``: with that confidence it is not;
* **Inconclusive** in between (the evidence does not settle it yet).

Which clicks are the canary's: the service attributes each click to the model version that served the list
(from its request id), whichever pod receives it, and labels ``reco_clicks_total`` / ``reco_impressions_total``
with ``model_version``. Canary = ``model_version == <canary version>``, stable = every other served version
(not ``none``, the fallback's lists, nor ``other``, the label of versions beyond the service's bound).
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from reco.errors import RecoError, RetryableError

SUCCESSFUL, FAILED, INCONCLUSIVE = "Successful", "Failed", "Inconclusive"
SAMPLES = 200_000
_WINDOW = re.compile(r"^\d+[smhd]$")
_VERSION = re.compile(r"^[\w.-]+$")


@dataclass(frozen=True)
class Policy:
    """How the judge decides; every field is also a query parameter of ``/v1/canary``."""

    margin: float = 0.05
    threshold: float = 0.95
    min_impressions: int = 2000

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise RecoError(f"margin must be in [0, 1), got {self.margin}")
        if not 0.5 < self.threshold < 1.0:
            raise RecoError(f"threshold must be in (0.5, 1), got {self.threshold}")
        if self.min_impressions < 0:
            raise RecoError(f"min_impressions must be >= 0, got {self.min_impressions}")


@dataclass(frozen=True)
class Counts:
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else float("nan")


@dataclass
class Verdict:
    verdict: str
    p_worse: float | None
    canary: Counts
    stable: Counts
    reason: str
    policy: Policy = field(default_factory=Policy)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["canary"]["ctr"], body["stable"]["ctr"] = self.canary.ctr, self.stable.ctr
        return json.loads(json.dumps(body, default=str).replace("NaN", "null"))


def p_worse(canary: Counts, stable: Counts, margin: float, *, samples: int = SAMPLES, seed: int = 0) -> float:
    """P(CTR_canary < (1 - margin) · CTR_stable) under Beta(1 + clicks, 1 + misses) posteriors."""
    rng = np.random.default_rng(seed)
    c = rng.beta(1 + canary.clicks, 1 + max(canary.impressions - canary.clicks, 0), samples)
    s = rng.beta(1 + stable.clicks, 1 + max(stable.impressions - stable.clicks, 0), samples)
    return float(np.mean(c < (1.0 - margin) * s))


def judge(canary: Counts, stable: Counts, policy: Policy = Policy(), *, samples: int = SAMPLES) -> Verdict:
    """The three-outcome verdict of the module docstring (``samples``: Monte Carlo draws per posterior)."""
    # Clicks on lists shown just before the window began can exceed the window's impressions briefly.
    clipped = [Counts(c.impressions, min(c.clicks, c.impressions)) for c in (canary, stable)]
    for name, counts in zip(("canary", "stable"), clipped, strict=True):
        if counts.impressions < policy.min_impressions:
            reason = f"{name} has {counts.impressions} impressions, fewer than {policy.min_impressions}"
            return Verdict(INCONCLUSIVE, None, canary, stable, reason, policy)
    p = p_worse(clipped[0], clipped[1], policy.margin, samples=samples)
    worse = f"P(canary CTR < {1 - policy.margin:.2f} x stable CTR) = {p:.3f}"
    if p > policy.threshold:
        return Verdict(FAILED, p, canary, stable, f"{worse} > {policy.threshold}", policy)
    if p < 1.0 - policy.threshold:
        return Verdict(SUCCESSFUL, p, canary, stable, f"{worse} < {1 - policy.threshold:.2f}", policy)
    return Verdict(INCONCLUSIVE, p, canary, stable, f"{worse}: not settled yet", policy)


# -- Prometheus ----------------------------------------------------------------------------------------


def query_scalar(prometheus_url: str, promql: str, *, timeout_s: float = 10.0) -> float:
    """The value of an instant query that returns one sample (0 when it returns none)."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RetryableError(f"Prometheus at {prometheus_url} did not answer {promql!r}: {error}") from error
    if body.get("status") != "success":
        raise RecoError(f"Prometheus refused {promql!r}: {body.get('error', body)}")
    result = body["data"]["result"]
    if not result:
        return 0.0
    value = float(result[0]["value"][1])
    return 0.0 if math.isnan(value) else value


def canary_counts(prometheus_url: str, canary_version: str, window: str) -> tuple[Counts, Counts]:
    """(canary, stable) impressions and clicks over the last ``window``, split by ``model_version``."""
    if not _VERSION.match(canary_version):
        raise RecoError(f"canary_version must be a registry version such as 7, got {canary_version!r}")
    if not _WINDOW.match(window):
        raise RecoError(f"window must be a Prometheus duration such as 10m, got {window!r}")

    def total(metric: str, selector: str) -> int:
        return round(query_scalar(prometheus_url, f"sum(increase({metric}{{{selector}}}[{window}]))"))

    # Stable: every other served version; not "none" (lists the fallback served, no model) nor "other".
    canary_sel, stable_sel = f'model_version="{canary_version}"', f'model_version!~"{canary_version}|none|other"'
    canary = Counts(total("reco_impressions_total", canary_sel), total("reco_clicks_total", canary_sel))
    stable = Counts(total("reco_impressions_total", stable_sel), total("reco_clicks_total", stable_sel))
    return canary, stable


def judge_canary(prometheus_url: str, canary_version: str, window: str = "10m", policy: Policy = Policy()) -> Verdict:
    canary, stable = canary_counts(prometheus_url, canary_version, window)
    return judge(canary, stable, policy)


# -- the judge endpoint (Argo Rollouts Web metric) ----------------------------------------------------------


def _policy_from(query: dict[str, list[str]]) -> Policy:
    def one(name: str, cast: type, default: Any) -> Any:
        values = query.get(name)
        if not values:
            return default
        try:
            return cast(values[-1])
        except ValueError as error:
            raise RecoError(f"query parameter {name}: {values[-1]!r} is not a {cast.__name__}") from error

    defaults = Policy()
    return Policy(
        margin=one("margin", float, defaults.margin),
        threshold=one("threshold", float, defaults.threshold),
        min_impressions=one("min_impressions", int, defaults.min_impressions),
    )


def make_server(prometheus_url: str, host: str, port: int) -> ThreadingHTTPServer:
    """``GET /v1/canary?canary_version=V[&window=10m&margin=&threshold=&min_impressions=]`` -> the verdict as
    JSON (200), a bad parameter -> 400 naming it, Prometheus unreachable -> 503 (Argo counts it as an error of
    the measurement, not a verdict); ``GET /healthz`` -> 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            if parsed.path == "/healthz":
                return self._send(200, {"status": "ok"})
            if parsed.path != "/v1/canary":
                return self._send(404, {"error": f"no route {parsed.path}; try /v1/canary"})
            query = urllib.parse.parse_qs(parsed.query)
            try:
                version = (query.get("canary_version") or [""])[-1]
                if not version:
                    raise RecoError("query parameter canary_version is required")
                verdict = judge_canary(
                    prometheus_url, version, (query.get("window") or ["10m"])[-1], _policy_from(query)
                )
            except RetryableError as error:
                return self._send(503, {"error": str(error)})
            except RecoError as error:
                return self._send(400, {"error": str(error)})
            return self._send(200, verdict.to_json())

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
