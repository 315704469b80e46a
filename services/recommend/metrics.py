"""Prometheus metrics of the service (names from DESIGN.md; no per-user labels).

Every series carries ``variant`` (stable | canary) and, where a model answered, ``model_version``:
canary analysis computes CTR per variant from ``reco_clicks_total / reco_impressions_total``.

Several workers: ``server.run`` (for ``workers > 1``) sets ``PROMETHEUS_MULTIPROC_DIR`` before any
worker imports ``prometheus_client``, so each worker writes its values to files in that folder, and
passes the same folder as ``RECO_PROMETHEUS_MULTIPROC_DIR`` so ``/metrics`` aggregates all of them:
one scrape sees the whole pod. The mode is chosen by that setting, never by the mere presence of
``PROMETHEUS_MULTIPROC_DIR``: importing ``feast.metrics`` sets that variable to a temp folder of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

# Fine below 10 ms so a p99 in milliseconds can be read from the histogram.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010,
    0.0125, 0.015, 0.0175, 0.020, 0.025, 0.030, 0.040, 0.050, 0.075, 0.100, 0.250, 0.500, 1.0, 2.5,
)  # fmt: skip
# Why a degraded answer was given: online store down, no model loaded yet, the model raised.
FALLBACK_CAUSES = ("online_store", "no_model", "model_error")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's metrics on their own registry (an app per test does not clash with another)."""

    def __init__(self, variant: str, multiprocess_dir: str | None = None) -> None:
        self.variant = variant
        self.multiprocess_dir = multiprocess_dir or None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "reco_requests", "Requests answered, by endpoint and status code.",
            ["endpoint", "status", "model_version", "variant"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "reco_request_latency_seconds", "Time to answer a request, seconds (in the app, after parsing).",
            ["endpoint", "model_version", "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.impressions = Counter(
            "reco_impressions", "Impression events received.", ["model_version", "variant"], registry=r
        )
        self.clicks = Counter("reco_clicks", "Click events received.", ["model_version", "variant"], registry=r)
        self.reads = Counter("reco_reads", "Read events received.", ["model_version", "variant"], registry=r)
        self.fallbacks = Counter(
            "reco_fallback", "Answers served by the degraded fallback, by cause.", ["cause", "variant"], registry=r
        )
        self.model_info = Gauge(
            "reco_model_info", "1 for the model version this process serves.", ["model_version", "variant"],
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.model_trained = Gauge(
            "reco_model_trained_timestamp_seconds", "End of the served model's training data, unix seconds.",
            ["model_version", "variant"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.model_load_failures = Counter(
            "reco_model_load_failures", "Failed attempts to load a model version.", ["variant"], registry=r
        )
        self.explored = Counter(
            "reco_exploration_slots", "List slots given to exploration.", ["model_version", "variant"], registry=r
        )
        self.feature_read = Histogram(
            "reco_online_read_seconds", "Online-store read of one user's features, seconds.", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.article_refresh_failures = Counter(
            "reco_article_refresh_failures", "Failed refreshes of the in-memory article features.", ["variant"],
            registry=r,
        )  # fmt: skip
        self.events_accepted = Counter("reco_events_accepted", "Events acknowledged.", ["variant"], registry=r)
        self.events_written = Counter("reco_events_written", "Events written to the sink.", ["variant"], registry=r)
        self.event_flush_failures = Counter(
            "reco_event_flush_failures", "Failed flushes of the event buffer (retried).", ["variant"], registry=r
        )
        self.events_buffered = Gauge(
            "reco_events_buffered", "Events acknowledged but not yet written.", ["variant"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip

        # Series that alerting reads exist from the start, at zero.
        for cause in FALLBACK_CAUSES:
            self.fallbacks.labels(cause, variant)
        for counter in (self.model_load_failures, self.article_refresh_failures, self.event_flush_failures):
            counter.labels(variant)

    def exposition(self) -> bytes:
        """The text exposition: this registry, or every worker's values in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)
