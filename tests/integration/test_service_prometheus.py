"""The service's metrics as Prometheus itself sees them: a real ``prometheus`` scrapes a real
server process every second, and the counters the canary analysis reads (requests, impressions,
clicks by ``model_version`` and ``variant``) arrive, labelled, and a CTR query evaluates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from service_scenario import ServiceProcess, World, build_world, running

from reco.settings import Settings

if TYPE_CHECKING:
    from conftest import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 5  # items per list: one click per list of K impressions is a CTR of 1/K
JOB = "reco-recommend-canary"
POD = {"pod": "recommend-canary-0"}  # an extra target label, as Kubernetes discovery would add


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workdir=tmp_path_factory.mktemp("service-prometheus") / "work")


@pytest.fixture(scope="module")
def world(world_settings: Settings) -> World:
    return build_world(world_settings, n_users=40, n_articles=300, factors=8)


@pytest.fixture(scope="module")
def service(world: World, world_settings: Settings) -> Iterator[ServiceProcess]:
    with running(world_settings.workdir, {"RECO_ONLINE_STORE": "sqlite", "RECO_VARIANT": "canary"}) as process:
        yield process


class Traffic:
    """Lists for a few users, each answered by K impressions and one click on its top item, in one
    /events batch: the service counts a batch at once, so every scrape sees clicks = impressions / K.
    The events echo only the ``request_id``: the labels come from the id the service made."""

    def __init__(self, client: httpx.Client, users: list[str]) -> None:
        self.client = client
        self.users = users
        self.lists = 0

    def round(self) -> None:
        for user in self.users:
            response = self.client.post("/recommend", json={"user_id": user, "k": K})
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) == K, body
            common = {"user_id": user, "request_id": body["request_id"]}
            events: list[dict[str, Any]] = [
                {**common, "article_id": item["article_id"], "event_type": "impression", "position": item["position"]}
                for item in body["items"]
            ]
            top = body["items"][0]
            events.append({**common, "article_id": top["article_id"], "event_type": "click", "position": 1})
            assert self.client.post("/events", json={"events": events}).status_code == 202
            self.lists += 1


def test_prometheus_scrapes_labelled_counters_and_evaluates_ctr(
    service: ServiceProcess, world: World, prometheus: PrometheusServer
) -> None:
    prometheus.scrape(JOB, f"127.0.0.1:{service.port}", labels=POD)
    served = {"model_version": world.version, "variant": "canary", "job": JOB, **POD}
    selector = f'job="{JOB}"'

    with httpx.Client(base_url=service.url, timeout=10.0) as client:
        traffic = Traffic(client, world.user_ids[:3])
        # rate() needs the counters to rise between two scrapes inside the window: traffic keeps
        # flowing until Prometheus has seen that, whatever the machine's speed.
        ctr_expr = (
            f"sum by (model_version, variant) (rate(reco_clicks_total{{{selector}}}[1m]))"
            f" / sum by (model_version, variant) (rate(reco_impressions_total{{{selector}}}[1m]))"
        )
        ctr = prometheus.wait_for(ctr_expr, prometheus.finite, timeout=90, poll=traffic.round)

    assert [s["metric"] for s in ctr] == [{"model_version": world.version, "variant": "canary"}]
    assert prometheus.value(ctr[0]) == pytest.approx(1 / K, rel=1e-6)

    requests = prometheus.wait_for(f'reco_requests_total{{{selector}, endpoint="recommend", status="200"}}')
    assert len(requests) == 1, requests
    labels = requests[0]["metric"]
    assert {k: labels.get(k) for k in served} == served, labels
    assert 1 <= prometheus.value(requests[0]) <= traffic.lists

    for name in ("reco_impressions_total", "reco_clicks_total"):
        (series,) = prometheus.query(f"{name}{{{selector}}}")
        assert series["metric"] == {"__name__": name, "instance": f"127.0.0.1:{service.port}", **served}
    clicks = prometheus.value(prometheus.query(f"sum(reco_clicks_total{{{selector}}})")[0])
    assert 1 <= clicks <= traffic.lists
    # Both counters of one scrape: one click for every K impressions, exactly.
    (difference,) = prometheus.query(f"sum(reco_impressions_total{{{selector}}}) - {K} * sum(reco_clicks_total{{{selector}}})")
    assert prometheus.value(difference) == 0.0
    # Nothing counted under another version or the other variant.
    assert prometheus.query(f'reco_clicks_total{{{selector}, model_version!="{world.version}"}}') == []
    assert prometheus.query(f'reco_impressions_total{{{selector}, variant!="canary"}}') == []
