"""Faults under load, against a real server process on a real Redis online store:
Redis stops (degraded answers, no 5xx, recovery), the champion moves (zero failed requests),
a broken model version (still serving the previous one, failure counted)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from service_scenario import ServiceProcess, World, build_world, make_model, register, running

from reco.featurestore import apply_and_materialize
from reco.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory, own_redis_server: Any) -> Settings:
    # A Redis of this module's own: the fault test stops it, and nobody else may see it down.
    return Settings(workdir=tmp_path_factory.mktemp("service-faults") / "work", redis_url=own_redis_server.url)


@pytest.fixture(scope="module")
def world(world_settings: Settings) -> World:
    return build_world(world_settings, n_users=300, n_articles=1500, factors=16, online="redis")


@pytest.fixture(scope="module")
def service(world: World, world_settings: Settings) -> Iterator[ServiceProcess]:
    env = {
        "RECO_ONLINE_STORE": "redis",
        "RECO_REDIS_URL": world_settings.redis_url,
        "RECO_MODEL_POLL_INTERVAL_S": "0.5",
        "RECO_ONLINE_STORE_RETRY_AFTER_S": "0.2",
        # A stopped Redis refuses connections at once, so "down" needs no timeout; a slow read on a loaded CI
        # machine after Redis is back must not count as down (a 0.25 s default made the test flaky, 1 in ~10 runs).
        "RECO_ONLINE_STORE_TIMEOUT_S": "2",
        "RECO_ARTICLE_REFRESH_INTERVAL_S": "1",
    }
    with running(world_settings.workdir, env) as process:
        yield process


@dataclass
class Load:
    """Answers of a closed-loop load: statuses, model versions and reasons, in arrival order."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # (sent at, answered at, model version, reasons), monotonic seconds, in arrival order
    answers: list[tuple[float, float, str, frozenset[str]]] = field(default_factory=list)


async def drive(url: str, load: Load, stop: asyncio.Event, *, concurrency: int = 6) -> None:
    async def worker(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            n = 0
            while not stop.is_set():
                n += 1
                sent = time.monotonic()
                try:
                    response = await client.post("/recommend", json={"user_id": f"u{(i * 97 + n) % 300}", "k": 10})
                except httpx.HTTPError as error:
                    load.errors.append(f"{type(error).__name__}: {error}")
                    continue
                load.statuses[response.status_code] += 1
                if response.status_code == 200:
                    body = response.json()
                    load.answers.append((sent, time.monotonic(), body["model_version"], frozenset(i["reason"] for i in body["items"])))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (in a thread: it may do blocking I/O) while the load runs; fail naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def answers_sent(load: Load, after: float, before: float = math.inf) -> list[frozenset[str]]:
    """The reasons of the answers to requests sent in (after, before), monotonic seconds."""
    return [reasons for sent, _, _, reasons in list(load.answers) if after < sent < before]


# A request sent just after Redis stops (or returns) may still be on the other side of the change.
SETTLE_S = 0.5
ENOUGH = 20  # answers in each phase


def test_redis_down_gives_degraded_answers_then_recovers(
    service: ServiceProcess, world: World, world_settings: Settings, own_redis_server: Any
) -> None:
    redis = own_redis_server
    fallbacks_before = metric(service.url, "reco_fallback_total", cause="online_store")
    load = Load()
    marks: dict[str, float] = {}

    def readiness() -> httpx.Response:
        return httpx.get(f"{service.url}/readyz", timeout=5.0)

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(drive(service.url, load, stop))
        try:
            await until(lambda: len(load.answers) >= ENOUGH, "answers before Redis stops")
            marks["stopping"] = time.monotonic()
            try:
                await asyncio.to_thread(redis.stop)
                marks["down"] = time.monotonic()
                await until(lambda: len(answers_sent(load, marks["down"] + SETTLE_S)) >= ENOUGH, "answers while Redis is down")
                await until(lambda: readiness().json()["online_store"] is False, "/readyz reports the store down")
                ready_while_down = await asyncio.to_thread(readiness)
                assert ready_while_down.status_code == 503, ready_while_down.text
            finally:
                # Redis listens before start() returns: a request in between may reach the new,
                # empty server (a cold-start answer, not a degraded one), so "down" ends here.
                marks["starting"] = time.monotonic()
                if not redis.running:
                    await asyncio.to_thread(redis.start)
            # A restarted cache is empty (users look new: cold start, not degraded, meanwhile);
            # reload it the way production does, by materializing.
            await asyncio.to_thread(apply_and_materialize, world_settings, world.day, "redis")
            marks["up"] = time.monotonic()
            await until(lambda: len(answers_sent(load, marks["up"] + SETTLE_S)) >= ENOUGH, "answers after Redis is back")
        finally:
            stop.set()
            await runner

    asyncio.run(scenario())
    assert not load.errors, load.errors[:5]
    assert set(load.statuses) == {200}, load.statuses
    before = [reasons for _, answered, _, reasons in load.answers if answered < marks["stopping"]]
    during = answers_sent(load, marks["down"] + SETTLE_S, marks["starting"])
    after = answers_sent(load, marks["up"] + SETTLE_S)
    assert len(before) >= ENOUGH and all("degraded" not in r for r in before)
    odd = [r for r in during if r != frozenset({"degraded"})]
    assert len(during) >= ENOUGH and not odd, f"{len(odd)} of {len(during)} answers while Redis was down: {set(odd)}"
    assert len(after) >= ENOUGH and all("degraded" not in r for r in after), [r for r in after if "degraded" in r][:5]
    assert metric(service.url, "reco_fallback_total", cause="online_store") - fallbacks_before >= len(during)
    assert readiness().status_code == 200


def test_champion_swapped_under_load_fails_no_request(service: ServiceProcess, world: World, world_settings: Settings) -> None:
    client = MlflowClient(tracking_uri=world_settings.tracking_uri)
    # A version that cannot load: the service must keep serving and count the failure.
    broken = client.create_model_version(world_settings.model_name, source=str(world_settings.workdir / "no-such-model"))
    failures_before = metric(service.url, "reco_model_load_failures_total")
    load = Load()

    def answers_after_first_of(version: str) -> int:
        answers = list(load.answers)
        firsts = [answered for _, answered, v, _ in answers if v == version]
        return sum(sent > min(firsts) for sent, _, _, _ in answers) if firsts else 0

    async def scenario() -> str:
        stop = asyncio.Event()
        runner = asyncio.create_task(drive(service.url, load, stop))
        try:
            await until(lambda: len(load.answers) >= ENOUGH, "answers from the first champion")
            await asyncio.to_thread(client.set_registered_model_alias, world_settings.model_name, "champion", broken.version)
            await until(
                lambda: metric(service.url, "reco_model_load_failures_total") > failures_before,
                "the service tries the broken version and counts the failure",
            )
            users = world.user_ids
            new = await asyncio.to_thread(register, world_settings, make_model(users, world.article_ids, factors=16, seed=11))
            await until(lambda: answers_after_first_of(new) >= ENOUGH, f"answers after version {new} is served")
        finally:
            stop.set()
            await runner
        return new

    new_version = asyncio.run(scenario())
    broken_version = str(broken.version)
    assert not load.errors, load.errors[:5]
    assert set(load.statuses) == {200}, load.statuses
    versions = [v for _, _, v, _ in load.answers]
    assert broken_version not in versions
    assert versions[0] == world.version and versions[-1] == new_version
    assert set(versions) == {world.version, new_version}
    # One atomic swap: every request sent after the first answer of the new version got it
    # (requests in flight across the swap may finish with the old one, each consistent).
    first_new_answered = min(answered for _, answered, v, _ in load.answers if v == new_version)
    assert {v for sent, _, v, _ in load.answers if sent > first_new_answered} == {new_version}
    assert metric(service.url, "reco_model_load_failures_total") > failures_before
    assert metric(service.url, "reco_model_info", model_version=new_version) == 1.0
    assert metric(service.url, "reco_model_info", model_version=world.version) == 0.0
