"""Shared fixtures: an isolated workdir per test and real servers started on free ports.

A server that is not installed skips its tests with the reason printed, except under CI
(``CI`` set), which installs every one of them (``make setup``): there a missing server fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from reco.settings import Settings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str) -> NoReturn:
    """Skip with ``message`` printed; fail under CI, which installs everything (nothing may skip there)."""
    print(f"SKIP: {message}")
    if in_ci():
        pytest.fail(f"CI must not skip: {message}")
    pytest.skip(message)


def need_binary(name: str) -> str:
    """Path of a server binary; skip with the reason where it is missing (fail in CI, which installs it)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (`make setup` installs it when run as root)")
    return path


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- Redis ------------------------------------------------------------------------------------


class RedisServer:
    """A real redis-server on a free loopback port, without persistence."""

    def __init__(self, binary: str):
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(need_binary("redis-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test module alone: for tests that stop and restart it, so the
    session-wide one is never down for anybody else."""
    server = RedisServer(need_binary("redis-server"))
    server.start()
    yield server
    server.stop()


# -- Prometheus -------------------------------------------------------------------------------


class PrometheusServer:
    """A real ``prometheus`` on a free loopback port, scraping every second, with its TSDB in a
    temp folder. Scrape targets are added and removed while it runs (the config is rewritten and
    reloaded through ``/-/reload``), each under its own job with optional extra target labels
    (e.g. the pod-template labels a Rollouts analysis selects on).
    """

    SCRAPE_INTERVAL = "1s"

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.config_path = root / "prometheus.yml"
        self.log_path = root / "prometheus.log"
        self.jobs: dict[str, dict[str, Any]] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        interval = self.SCRAPE_INTERVAL
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": list(self.jobs.values()),
        }
        # JSON is YAML: no YAML writer needed.
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.replace(self.config_path)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=60, proc=self.proc)
        self._wait(lambda: self._get("/-/ready").status_code == 200, "Prometheus ready", timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def _get(self, path: str, **params: str) -> Any:
        import httpx

        return httpx.get(f"{self.url}{path}", params=params, timeout=10.0)

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not true after {timeout}s\n{self.tail()}")
            time.sleep(0.2)

    def _reload(self) -> None:
        import httpx

        self._write_config()
        response = httpx.post(f"{self.url}/-/reload", timeout=30.0)
        assert response.status_code == 200, f"config reload failed: {response.text}\n{self.tail()}"

    def scrape(
        self,
        job: str,
        target: str,
        *,
        labels: Mapping[str, str] | None = None,
        metrics_path: str = "/metrics",
        timeout: float = 30.0,
    ) -> None:
        """Scrape ``target`` (``host:port``) as ``job``, its series carrying ``labels`` too; returns
        once Prometheus has scraped it successfully."""
        self.jobs[job] = {
            "job_name": job,
            "metrics_path": metrics_path,
            "static_configs": [{"targets": [target], "labels": dict(labels or {})}],
        }
        self._reload()

        def up() -> bool:
            active = self._get("/api/v1/targets", state="active").json()["data"]["activeTargets"]
            return any(t["labels"].get("job") == job and t["health"] == "up" for t in active)

        self._wait(up, f"target {target} of job {job} up", timeout)

    def forget(self, job: str) -> None:
        """Stop scraping ``job`` (its stored series stay queryable)."""
        if self.jobs.pop(job, None) is not None:
            self._reload()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (``metric`` labels and ``value`` [ts, "text"])."""
        body = self._get("/api/v1/query", query=expr).json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    @staticmethod
    def value(series: Mapping[str, Any]) -> float:
        """The float value of one series of an instant-query result."""
        return float(series["value"][1])

    @staticmethod
    def finite(result: list[dict[str, Any]]) -> bool:
        """A non-empty result whose every value is a number (not NaN from 0/0, not ±Inf)."""
        return bool(result) and all(math.isfinite(PrometheusServer.value(s)) for s in result)

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[dict[str, Any]]], bool] = bool,
        *,
        timeout: float = 30.0,
        poll: Callable[[], object] | None = None,
    ) -> list[dict[str, Any]]:
        """Query ``expr`` until ``condition(result)`` holds (default: a non-empty result); fails
        with the last result after ``timeout`` seconds. ``poll`` runs before every query (e.g. to
        keep traffic flowing while counters must rise)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            if poll is not None:
                poll()
            result = self.query(expr)
            if condition(result):
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"after {timeout}s, {expr!r} still gives {result}")
            time.sleep(0.25)


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(need_binary("prometheus"), tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prometheus(prometheus_server: PrometheusServer) -> Iterator[PrometheusServer]:
    """The session's Prometheus; the jobs a test adds are removed when it ends."""
    before = set(prometheus_server.jobs)
    yield prometheus_server
    for job in set(prometheus_server.jobs) - before:
        prometheus_server.forget(job)


# -- the Google Pub/Sub emulator --------------------------------------------------------------

PUBSUB_EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"


def need_pubsub_emulator() -> str:
    """The emulator's launcher (it runs on java); skip or, under CI, fail where either is missing."""
    binary = shutil.which("cloud-pubsub-emulator") or (PUBSUB_EMULATOR if os.access(PUBSUB_EMULATOR, os.X_OK) else None)
    if binary is None:
        missing("the Google Pub/Sub emulator is not installed (Debian package google-cloud-cli-pubsub-emulator)")
    need_binary("java")
    return binary


@pytest.fixture
def pubsub_emulator(tmp_path: Path) -> Iterator[str]:
    """A Pub/Sub emulator on a free loopback port; its ``host:port`` (for ``PUBSUB_EMULATOR_HOST``)."""
    binary = need_pubsub_emulator()
    port = free_port()
    log_path = tmp_path / "pubsub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "--host=127.0.0.1", f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}:\n{log_path.read_text(errors='replace')[-3000:]}") from error
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(workdir=tmp_path / "work")
