"""The recommend service as a client sees it: a real server process over a real Feast (SQLite)
online store and a real registered model. Bad input is a 400 that names the field, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.checks import not_a_server_error
from service_scenario import ServiceProcess, World, build_world, running

from reco.settings import Settings
from services.recommend.attribution import served_by

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workdir=tmp_path_factory.mktemp("service-api") / "work")


@pytest.fixture(scope="module")
def world(world_settings: Settings) -> World:
    return build_world(world_settings, n_users=200, n_articles=1500, factors=16)


@pytest.fixture(scope="module")
def service(world: World, world_settings: Settings) -> Iterator[ServiceProcess]:
    with running(world_settings.workdir, {"RECO_ONLINE_STORE": "sqlite"}) as process:
        yield process


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http


def test_health_and_readiness(client: httpx.Client, world: World) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["model_version"] == world.version and body["articles"] == 1500


def test_known_user_gets_k_items_with_positions_and_propensities(client: httpx.Client, world: World) -> None:
    response = client.post("/recommend", json={"user_id": "u1", "k": 7, "exclude": ["a1", "a2"]})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == world.version and body["variant"] == "stable"
    assert served_by(body["request_id"]) == ("stable", world.version)
    items = body["items"]
    assert [i["position"] for i in items] == list(range(1, 8))
    assert all(0.0 < i["propensity"] <= 1.0 for i in items)
    assert not {"a1", "a2"} & {i["article_id"] for i in items}
    assert len({i["article_id"] for i in items}) == 7


def test_already_read_articles_never_come_back(client: httpx.Client, world_settings: Settings) -> None:
    import pyarrow.parquet as pq

    users = pq.read_table(next((world_settings.features_dir / "user_stats").rglob("*.parquet"))).to_pylist()
    for row in users[:20]:
        items = client.post("/recommend", json={"user_id": row["user_id"], "k": 20}).json()["items"]
        assert not set(row["recent_reads"]) & {i["article_id"] for i in items}


def test_unknown_user_is_a_cold_start_not_an_error(client: httpx.Client) -> None:
    response = client.post("/recommend", json={"user_id": "never-seen-before", "k": 5, "category": "tech"})
    assert response.status_code == 200
    reasons = {i["reason"] for i in response.json()["items"]}
    assert reasons <= {"cold_start", "explore"} and "cold_start" in reasons


def test_pinned_item_sits_at_its_position(client: httpx.Client) -> None:
    body = client.post("/recommend", json={"user_id": "u3", "k": 5, "pinned": [{"article_id": "a42", "position": 2}]}).json()
    assert body["items"][1]["article_id"] == "a42" and body["items"][1]["reason"] == "pinned"
    assert body["items"][1]["propensity"] == 1.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u1", "k": 0}, "k"),
        ({"user_id": "u1", "k": 101}, "k"),
        ({"user_id": "u1", "k": "5"}, "k"),
        ({"user_id": 5}, "user_id"),
        ({"user_id": "u1", "exclude": [f"a{i}" for i in range(1001)]}, "exclude"),
        ({"user_id": "u1", "exclude": "a1"}, "exclude"),
        ({"user_id": "u1", "colour": "red"}, "colour"),
        ({"k": 5}, "user_id"),
        ({"user_id": "u1", "pinned": [{"article_id": "a1", "position": 0}]}, "pinned[0].position"),
        ({"user_id": "u1", "pinned": [{"article_id": "a1", "position": 1, "x": 1}]}, "pinned[0].x"),
        ({"user_id": "u1", "pinned": [{"article_id": "a1", "position": 1}, {"article_id": "a2", "position": 1}]}, "pinned[1].position"),
    ],
)
def test_bad_request_names_the_field(client: httpx.Client, body: dict[str, object], field: str) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400 and problem["field"] == field, problem


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    response = client.post("/recommend", content=b'{"user_id": "u1", "k": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["field"] == "body" and "malformed" in response.json()["detail"]


def padded(body: dict[str, object], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes (trailing whitespace is still valid JSON)."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def post_json(client: httpx.Client, path: str, content: bytes) -> httpx.Response:
    return client.post(path, content=content, headers={"content-type": "application/json"})


def test_body_over_64_kib_is_a_413(client: httpx.Client) -> None:
    body = json.dumps({"user_id": "u1", "exclude": ["x" * 100] * 700}).encode()
    assert len(body) > 64 * 1024
    response = post_json(client, "/recommend", body)
    assert response.status_code == 413
    assert response.json()["status"] == 413
    # The limit is the size, not the content: the same small request, padded to either side of it.
    assert post_json(client, "/recommend", padded({"user_id": "u1", "k": 3}, 64 * 1024)).status_code == 200
    assert post_json(client, "/recommend", padded({"user_id": "u1", "k": 3}, 64 * 1024 + 1)).status_code == 413


def test_events_take_bodies_up_to_1_mib(client: httpx.Client) -> None:
    """A batch of 1,000 events (~150 KiB) is over /recommend's 64 KiB: /events has its own 1 MiB."""
    events = [
        {"user_id": f"u{i % 50}", "article_id": f"a{i}", "event_type": "impression", "request_id": f"limit-{i // 10}",
         "event_id": f"limit-{i}", "position": i % 10 + 1}
        for i in range(1000)
    ]  # fmt: skip
    full = json.dumps({"events": events}).encode()
    assert 64 * 1024 < len(full) < 1024 * 1024
    accepted = post_json(client, "/events", full)
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 1000
    one = {"events": events[:1]}
    assert post_json(client, "/events", padded(one, 1024 * 1024)).status_code == 202
    too_big = post_json(client, "/events", padded(one, 1024 * 1024 + 1))
    assert too_big.status_code == 413, too_big.text
    assert too_big.headers["content-type"].startswith("application/problem+json") and too_big.json()["status"] == 413


def test_events_are_validated(client: httpx.Client) -> None:
    event = {"user_id": "u1", "article_id": "a1", "event_type": "read", "request_id": "r1"}
    missing_dwell = client.post("/events", json={"events": [event]})
    assert missing_dwell.status_code == 400 and missing_dwell.json()["field"] == "events[0].dwell_ms"
    wrong_type = client.post("/events", json={"events": [{**event, "event_type": "like", "dwell_ms": 5}]})
    assert wrong_type.status_code == 400 and wrong_type.json()["field"] == "events[0].event_type"
    naive_ts = client.post("/events", json={"events": [{**event, "dwell_ms": 5, "ts": "2024-01-01T00:00:00"}]})
    assert naive_ts.status_code == 400 and naive_ts.json()["field"] == "events[0].ts"
    too_many = client.post("/events", json={"events": [{**event, "dwell_ms": 5}] * 1001})
    assert too_many.status_code == 400 and too_many.json()["field"] == "events"
    accepted = client.post("/events", json={"events": [{**event, "dwell_ms": 5000, "event_id": "mine-1"}]})
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 1, "event_ids": ["mine-1"]}


def test_metrics_exposition(client: httpx.Client, world: World) -> None:
    served_id = client.post("/recommend", json={"user_id": "u1"}).json()["request_id"]
    assert client.post("/recommend", json={"user_id": "u1", "k": 0}).status_code == 400  # counted as "none"
    before = client.get("/metrics").text
    client.post("/events", json={"events": [
        {"user_id": "u1", "article_id": "a1", "event_type": "impression", "request_id": "r", "model_version": world.version},
        {"user_id": "u1", "article_id": "a1", "event_type": "click", "request_id": "r", "model_version": world.version},
        # A client that echoes only the request id: the id says who served the list.
        {"user_id": "u1", "article_id": "a1", "event_type": "click", "request_id": served_id},
    ]})  # fmt: skip
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    served = {"model_version": world.version, "variant": "stable"}
    assert value("reco_requests_total", endpoint="recommend", status="200", **served) >= 1
    assert value("reco_requests_total", endpoint="recommend", status="400", model_version="none", variant="stable") >= 1
    assert value("reco_impressions_total", **served) >= 1
    def clicks_before(**labels: str) -> float:
        return sum(
            sample.value
            for family in text_string_to_metric_families(before)
            for sample in family.samples
            if sample.name == "reco_clicks_total" and sample.labels == labels
        )

    # Both clicks count for the served version, the second attributed by its request id alone.
    assert value("reco_clicks_total", **served) - clicks_before(**served) == 2
    unattributed = {"model_version": "none", "variant": "stable"}
    assert value("reco_clicks_total", **unattributed) == clicks_before(**unattributed)
    assert value("reco_model_info", **served) == 1.0
    # The histogram is cumulative: buckets never decrease, +Inf holds every request, and every
    # recommend this module sent was answered in under the largest finite bound (2.5 s).
    count = value("reco_request_latency_seconds_count", endpoint="recommend", **served)
    bounds = sorted(
        {labels["le"] for name, key in samples if name == "reco_request_latency_seconds_bucket" for labels in [dict(key)]
         if labels.get("endpoint") == "recommend" and labels.get("model_version") == world.version},
        key=float,
    )  # fmt: skip
    buckets = [value("reco_request_latency_seconds_bucket", endpoint="recommend", le=le, **served) for le in bounds]
    assert bounds[-1] == "+Inf" and "0.005" in bounds, bounds
    assert count >= 1 and buckets == sorted(buckets) and buckets[-1] == count, list(zip(bounds, buckets, strict=True))
    assert 1 <= value("reco_request_latency_seconds_bucket", endpoint="recommend", le="2.5", **served) <= count
    # Pre-created at zero so a dashboard's rate() has a series before the first failure.
    assert ("reco_fallback_total", (("cause", "online_store"), ("variant", "stable"))) in samples
    assert value("reco_fallback_total", cause="online_store", variant="stable") == 0.0
    assert value("reco_model_load_failures_total", variant="stable") == 0.0
    assert "user_id" not in text


def test_openapi_schema_states_the_contract(client: httpx.Client) -> None:
    spec = client.get("/schema/openapi.json").json()
    body = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[-1]
    schema = spec["components"]["schemas"][name]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["k"]["minimum"] == 1 and schema["properties"]["k"]["maximum"] == 100


def test_no_5xx_for_anything_the_schema_allows(service: ServiceProcess) -> None:
    """Schemathesis over every operation of /schema, bounded: 25 examples each, any 5xx fails.

    (Driven through hypothesis directly: schemathesis' pytest fixture loader relies on a pytest
    attribute that pytest 9 removed.)"""
    api = schemathesis.openapi.from_url(f"{service.url}/schema/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /recommend", "POST /events", "GET /readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=service.url, checks=[not_a_server_error])

        check()


def test_service_log_has_no_traceback(service: ServiceProcess, client: httpx.Client) -> None:
    """Bad input is handled, not crashed on: the log has no traceback after the service has been
    sent every kind of bad request itself (so the check means something even when it runs first)."""
    bad = [
        ("/recommend", b'{"user_id": "u1", "k": '),  # malformed
        ("/recommend", b"[]"),  # not an object
        ("/recommend", b'{"user_id": "u1", "k": "5"}'),  # wrong type
        ("/recommend", b'{"user_id": "u1", "colour": "red"}'),  # unknown field
        ("/recommend", b'{"user_id": "u1", "pinned": [{"article_id": "a1", "position": 1}, {"article_id": "a2", "position": 1}]}'),
        ("/recommend", json.dumps({"user_id": "u1", "exclude": ["x" * 100] * 700}).encode()),  # over 64 KiB
        ("/events", b'{"events": []}'),
        ("/events", b'{"events": [{"user_id": "u1", "article_id": "a1", "event_type": "read", "request_id": "r"}]}'),
        ("/events", b"\xff\xfe"),  # not UTF-8
    ]
    statuses = [post_json(client, path, body).status_code for path, body in bad]
    assert all(400 <= status < 500 for status in statuses), statuses
    assert client.get("/no-such-page").status_code == 404
    assert client.post("/recommend", json={"user_id": "nobody-at-all", "k": 100, "category": "no-such-category"}).status_code == 200
    log = service.tail(1_000_000)
    assert "Application startup complete" in log, log[-3000:]  # the log is this service's, and it logs
    assert "Traceback" not in log, log[-3000:]


