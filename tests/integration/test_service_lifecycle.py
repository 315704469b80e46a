"""What a running service picks up without a restart, against a real server process: the first
champion of an empty workdir (not ready until then), and a new materialization of the article
features."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from service_scenario import ServiceProcess, World, build_world

from reco.features import ARTICLE_TABLE, feature_table_dir
from reco.featurestore import apply_and_materialize
from reco.lake import partition_files, replace_partition
from reco.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_POLLS = {
    "RECO_ONLINE_STORE": "sqlite",
    "RECO_MODEL_POLL_INTERVAL_S": "0.5",
    "RECO_ARTICLE_REFRESH_INTERVAL_S": "0.5",
}


def poll(get: Callable[[], Any], condition: Callable[[Any], bool], what: str, timeout: float = 90.0) -> Any:
    """Call ``get`` until ``condition`` holds on its result; fail with the last one after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        last = get()
        if condition(last):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what} (last: {last})")
        time.sleep(0.2)


@pytest.fixture
def empty_service(settings: Settings) -> Iterator[ServiceProcess]:
    process = ServiceProcess(settings.workdir, FAST_POLLS)
    process.start()
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def test_not_ready_before_a_model_is_registered_then_ready_without_restart(
    empty_service: ServiceProcess, settings: Settings
) -> None:
    readyz = f"{empty_service.url}/readyz"
    response = httpx.get(readyz, timeout=10.0)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["ready"] is False and body["model_loaded"] is False and body["model_version"] is None
    # Alive all the same: a pod that waits for its first model is not restarted by its probes.
    assert httpx.get(f"{empty_service.url}/healthz", timeout=10.0).status_code == 200

    world = build_world(settings, n_users=30, n_articles=200, factors=8)
    pid = empty_service.proc.pid if empty_service.proc else None
    ready = poll(lambda: httpx.get(readyz, timeout=10.0), lambda r: r.status_code == 200, "ready once a champion exists")
    assert ready.json()["model_version"] == world.version and ready.json()["articles"] == 200
    assert empty_service.proc is not None and empty_service.proc.pid == pid and empty_service.proc.poll() is None


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workdir=tmp_path_factory.mktemp("service-lifecycle") / "work")


@pytest.fixture(scope="module")
def world(world_settings: Settings) -> World:
    return build_world(world_settings, n_users=30, n_articles=300, factors=8)


def test_a_new_materialization_of_article_features_is_served_without_restart(world: World, world_settings: Settings) -> None:
    process = ServiceProcess(world_settings.workdir, FAST_POLLS)
    process.start()
    try:
        process.wait_ready()
        pid = process.proc.pid if process.proc else None
        with httpx.Client(base_url=process.url, timeout=10.0) as client:

            def cold_start() -> list[str]:
                # A user the store does not know: fresh-popular by clicks_24h from the article features.
                response = client.post("/recommend", json={"user_id": "someone-new", "k": 3})
                assert response.status_code == 200, response.text
                return [i["article_id"] for i in response.json()["items"]]

            before = cold_start()
            target = next(a for a in reversed(world.article_ids) if a not in before)

            # The day's snapshot again, the target now the most clicked article by far; materialized
            # as the daily pipeline does, while the service runs.
            (path,) = partition_files(feature_table_dir(world_settings, ARTICLE_TABLE), world.day)
            table = pq.read_table(path)
            is_target = pc.equal(table["article_id"], target)
            clicks = pc.if_else(is_target, pa.scalar(10_000_000, table.schema.field("clicks_24h").type), table["clicks_24h"])
            table = table.set_column(table.schema.get_field_index("clicks_24h"), "clicks_24h", clicks)
            replace_partition(table, feature_table_dir(world_settings, ARTICLE_TABLE), world.day)
            apply_and_materialize(world_settings, world.day)

            after = poll(cold_start, lambda items: items[0] == target, f"{target} on top after the new materialization")
            assert after[0] == target
        assert process.proc is not None and process.proc.pid == pid and process.proc.poll() is None
    finally:
        assert process.stop() == 0
