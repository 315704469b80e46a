"""Several workers behind one port: /metrics aggregates every worker (prometheus multiprocess mode)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_scenario import ServiceProcess

from reco.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_one_metrics_view(settings: Settings, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom"
    process = ServiceProcess(settings.workdir, {"RECO_PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, workers=2)
    process.start()
    try:
        process.wait_healthy()  # fails, with the log, when the workers do not come up
        # Fresh connections, so both workers take a share of the requests.
        before = _healthz_count(process.url)
        for _ in range(300):
            assert httpx.get(f"{process.url}/healthz", headers={"connection": "close"}).status_code == 200
        writers = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert _healthz_count(process.url) - before == 300
    finally:
        assert process.stop() == 0
    assert len(writers) >= 2, f"only {writers} wrote metrics: the requests did not reach both workers"


def _healthz_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"connection": "close"}).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "reco_requests_total" and s.labels.get("endpoint") == "healthz"
    )
