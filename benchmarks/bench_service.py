"""The recommend service under load on this machine: /recommend and /events, plus where time goes.

A real server process (``python -m services.recommend``) over a real Redis online store and a
registered two-stage model with 64 factors, driven by ``wrk`` (C, on loopback, bounded in time;
the Python client below when wrk is missing) from the same machine — so the load generator and
Redis take CPU from the service: on 2 cores, figures are a floor for a dedicated host.

Rows (``stage``):
    recommend      rps, p50/p99 (ms, client side) at a catalogue of N articles, W workers, server S
    healthz        the framework alone (no model, no Redis): the ceiling of the HTTP stack
    events         events/s accepted (batches of 1,000) and whether all of them reached the lake
    profile        in-process cost per request of each part: user read (Feast vs direct), model
    ann            faiss HNSW vs exact top-10 on the item factors: recall@10 and time per query
                   (raw index, and the served retrieval path of TwoStageModel)

Factors: by default the served model has random-normal user and item factors (``make_model`` in
``tests/integration/service_scenario.py``): the hardest case for the HNSW index used above
``RuleSettings.ann_min_items`` (50k), and unlike trained ALS factors. A third run replaces them
with rank-12 factors plus a little noise (``low_rank_factors``), closer to what implicit's ALS
learns; rows measured that way say ``"factors_kind": "rank 12 + noise"``. Report both.

Usage alone: python benchmarks/bench_service.py WORKDIR [--quick] [--no-low-rank]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

N_USERS = 20_000  # with features; the first half also has factors; ids above it are unknown (cold start)
FACTORS = 64
DURATION_S = 10
WARMUP_S = 3
CONNECTIONS = 8
REPEATS = 3

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(7)
request = function()
  local u = math.random(0, %(users)d - 1)
  return wrk.format(nil, "/recommend", nil, string.format('{"user_id":"u%%d","k":10}', u))
end
"""


def _redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make setup)")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _wrk(url: str, script: Path | None, duration: int, connections: int) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 30, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(ms("50"), 2),
        "p99_ms": round(ms("99"), 2),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


async def _python_load(url: str, duration: float, connections: int, users: int) -> dict[str, float]:
    """Fallback load generator (closed loop, keep-alive) when wrk is not installed."""
    import random

    import httpx

    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + duration

    async def worker(seed: int) -> None:
        nonlocal failures
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
            while time.perf_counter() < stop_at:
                body = f'{{"user_id":"u{rng.randrange(users)}","k":10}}'
                started = time.perf_counter()
                response = await client.post("/recommend", content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200

    await asyncio.gather(*(worker(i) for i in range(connections)))
    latencies.sort()
    return {
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "non_2xx": failures,
        "socket_errors": "",
    }


def _load(service: Any, script: Path, users: int, duration: int = DURATION_S, connections: int = CONNECTIONS) -> dict[str, Any]:
    """Closed loop: ``connections`` clients each waiting for its answer before the next request.
    With 8 of them the latency is mostly queueing (Little: 8 / rps); 1 shows the service time."""
    url = service.url
    if shutil.which("wrk"):
        _wrk(url, script, WARMUP_S, connections)
        return {"client": "wrk", "connections": connections, **_wrk(url, script, duration, connections)}
    asyncio.run(_python_load(url, WARMUP_S, connections, users))
    return {"client": "python", "connections": connections, **asyncio.run(_python_load(url, duration, connections, users))}


def _recommend_samples(service: Any, name: str) -> list[Any]:
    """The server's samples called ``name`` with label endpoint=recommend, from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    return [
        sample
        for family in text_string_to_metric_families(httpx.get(f"{service.url}/metrics").text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("endpoint") == "recommend"
    ]


def _served_and_cpu(service: Any) -> tuple[float, float]:
    """(recommend requests answered so far, CPU seconds of the server's process tree so far)."""
    import psutil

    served = sum(sample.value for sample in _recommend_samples(service, "reco_requests_total"))
    root = psutil.Process(service.proc.pid)
    cpu = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return served, cpu


def _server_p99_ms(service: Any) -> float:
    """p99 of reco_request_latency_seconds{endpoint=recommend} (in-app time), from the histogram."""
    buckets: dict[float, float] = {}
    for s in _recommend_samples(service, "reco_request_latency_seconds_bucket"):
        le = float(s.labels["le"])
        buckets[le] = buckets.get(le, 0.0) + s.value
    if not buckets:
        return float("nan")
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= 0.99 * total:
            return round(le * 1000, 2)
    return float("nan")


def _wait_healthy(service: Any, timeout: float = 240.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(service.tail())


def _service(
    workdir: Path, redis_url: str, *, workers: int = 1, server: str = "uvicorn", extra: dict[str, str] | None = None, ready: bool = True
) -> Any:
    from service_scenario import ServiceProcess

    env = {"RECO_ONLINE_STORE": "redis", "RECO_REDIS_URL": redis_url, "RECO_MODEL_POLL_INTERVAL_S": "300",
           "RECO_ARTICLE_REFRESH_INTERVAL_S": "300", **(extra or {})}  # fmt: skip
    service = ServiceProcess(workdir, env, workers=workers, server=server)
    service.start()
    try:
        if ready:
            service.wait_ready(timeout=240)
        else:
            _wait_healthy(service)
    except Exception:
        service.stop()
        raise
    return service


def low_rank_factors(model: Any, rank: int = 12, seed: int = 1) -> Any:
    """The same model with rank-``rank`` user/item factors plus small noise on the items (as in
    ``bench_ann_model``): a stand-in for trained ALS factors, which concentrate on a few directions."""
    import dataclasses

    import numpy as np

    rng = np.random.default_rng(seed)
    n_users, factors = model.user_factors.shape
    n_items = model.item_factors.shape[0]
    basis = rng.standard_normal((rank, factors)).astype(np.float32)
    items = (rng.standard_normal((n_items, rank)).astype(np.float32) @ basis) * 0.1
    items += rng.standard_normal((n_items, factors)).astype(np.float32) * 0.02
    users = (rng.standard_normal((n_users, rank)).astype(np.float32) @ basis) * 0.1
    return dataclasses.replace(model, user_factors=users.astype(np.float32), item_factors=items.astype(np.float32))


def build_bench_world(settings: Any, n_articles: int, *, low_rank: bool = False) -> None:
    """``service_scenario.build_world`` at benchmark size; ``low_rank`` swaps the factors of the
    registered model for ``low_rank_factors`` (the scenario module itself is left as it is)."""
    import service_scenario

    original = service_scenario.make_model
    if low_rank:
        service_scenario.make_model = lambda *a, **kw: low_rank_factors(original(*a, **kw))  # type: ignore[assignment]
    try:
        service_scenario.build_world(settings, n_users=N_USERS, n_articles=n_articles, factors=FACTORS, online="redis")
    finally:
        service_scenario.make_model = original


def bench_recommend(
    workdir: Path, redis_url: str, n_articles: int, configs: list[tuple[int, str]], *, low_rank: bool = False
) -> list[dict[str, Any]]:
    from reco.settings import Settings

    settings = Settings(workdir=workdir, redis_url=redis_url)
    started = time.perf_counter()
    build_bench_world(settings, n_articles, low_rank=low_rank)
    kind = "rank 12 + noise" if low_rank else "random normal"
    build_s = time.perf_counter() - started
    script = workdir / "recommend.lua"
    # 10% of requests are for users the store has never seen (cold start).
    script.write_text(WRK_SCRIPT % {"users": int(N_USERS * 1.1)})
    rows: list[dict[str, Any]] = []
    for workers, server in configs:
        service = _service(workdir, redis_url, workers=workers, server=server)
        try:
            # One worker gets 8 connections; several get 16 each: with 8 each, the split of
            # connections between them is uneven and at moments a worker's queue runs dry
            # (2 workers, 20k: 2,142–3,669 req/s over three runs with 8 each, 3,470–3,664 with
            # 16 each, 2026-11-26). Three timed runs on one server (this VM's neighbours move
            # figures by ~10 %): the row is the median run by rps, the others' rps and p99 alongside.
            connections = CONNECTIONS if workers == 1 else 16 * workers
            served_0, cpu_0 = _served_and_cpu(service)
            runs = [_load(service, script, int(N_USERS * 1.1), connections=connections) for _ in range(REPEATS)]
            served_1, cpu_1 = _served_and_cpu(service)
            # Server CPU per request, all workers together (warm-ups included): equal for 1 and N
            # workers means the service itself scales with cores; throughput then is the cores'.
            cpu_ms = round(1e3 * (cpu_1 - cpu_0) / max(served_1 - served_0, 1.0), 3)
            runs.sort(key=lambda r: r["rps"])
            result = runs[len(runs) // 2]
            spread = {"rps_runs": [r["rps"] for r in runs], "p99_ms_runs": [r["p99_ms"] for r in runs]}
            rows.append({"stage": "recommend", "articles": n_articles, "factors": FACTORS, "factors_kind": kind, "workers": workers,
                         "server": server, **result, **spread, "server_cpu_ms_per_request": cpu_ms,
                         "server_p99_ms": _server_p99_ms(service), "setup_s": round(build_s, 1)})  # fmt: skip
            if workers == 1:
                single = _load(service, script, int(N_USERS * 1.1), duration=5, connections=1)
                rows.append({"stage": "recommend", "articles": n_articles, "factors": FACTORS, "factors_kind": kind, "workers": workers,
                             "server": server, **single})  # fmt: skip
        finally:
            service.stop()
    rows += profile(settings, n_articles)
    return rows


def bench_healthz(workdir: Path, redis_url: str) -> list[dict[str, Any]]:
    rows = []
    for server in ("granian", "uvicorn"):
        service = _service(workdir, redis_url, server=server, ready=False)
        try:
            if shutil.which("wrk"):
                result = _wrk(f"{service.url}/healthz", None, 5, CONNECTIONS)
                rows.append({"stage": "healthz", "workers": 1, "server": server, "client": "wrk", **result})
        finally:
            service.stop()
    return rows


def bench_events(workdir: Path, n_batches: int = 200, batch: int = 1000) -> list[dict[str, Any]]:
    """Batches of 1,000 events from 8 concurrent clients, then a graceful stop and a lake count."""
    import httpx
    from service_scenario import ServiceProcess, count_bronze_events

    from reco.settings import Settings

    settings = Settings(workdir=workdir / "events")
    service = ServiceProcess(settings.workdir, {})
    service.start()
    _wait_healthy(service)
    kinds = ("impression", "impression", "click", "read")
    bodies = []
    for b in range(n_batches):
        events = [{"user_id": f"u{i % 997}", "article_id": f"a{i % 3001}", "event_type": kinds[i % 4], "request_id": f"r{b}",
                   "position": i % 10 + 1, "dwell_ms": 30_000 if kinds[i % 4] == "read" else None, "propensity": 1.0}
                  for i in range(batch)]  # fmt: skip
        for e in events:
            if e["dwell_ms"] is None:
                del e["dwell_ms"]
        bodies.append(json.dumps({"events": events}).encode())

    async def post_all() -> int:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        accepted = 0

        async def worker() -> None:
            nonlocal accepted
            async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
                while not queue.empty():
                    response = await client.post("/events", content=queue.get_nowait(), headers={"content-type": "application/json"})
                    if response.status_code == 202:
                        accepted += int(response.json()["accepted"])

        await asyncio.gather(*(worker() for _ in range(8)))
        return accepted

    try:
        started = time.perf_counter()
        accepted = asyncio.run(post_all())
        seconds = time.perf_counter() - started
    finally:
        stop_started = time.perf_counter()
        service.stop()
        drain_s = time.perf_counter() - stop_started
    rows, distinct = count_bronze_events(settings)
    return [{"stage": "events", "events": n_batches * batch, "accepted": accepted, "events_per_s": round(accepted / seconds),
             "seconds": round(seconds, 2), "stop_s": round(drain_s, 2), "in_lake": rows, "distinct_in_lake": distinct,
             "all_in_lake": rows == distinct == accepted}]  # fmt: skip


def profile(settings: Any, n_articles: int, n: int = 300) -> list[dict[str, Any]]:
    """Per-request cost of the parts, in this process (no HTTP): where the time goes."""
    from service_scenario import catalogue

    from reco.featurestore import feature_refs, get_store
    from reco.model import load_model
    from services.recommend.features import RedisUserReader

    store = get_store(settings, "redis")
    refs = feature_refs(store)["user_id"]
    # Half known to the model (factors), half new to it (fold-in from their reads).
    users = [f"u{i}" for i in range(0, N_USERS, max(1, N_USERS // n))][:n]

    def timed(fn: Any) -> tuple[float, float]:
        samples = []
        for u in users:
            t = time.perf_counter()
            fn(u)
            samples.append(time.perf_counter() - t)
        samples.sort()
        return samples[len(samples) // 2] * 1e3, samples[int(len(samples) * 0.99)] * 1e3

    feast_p50, feast_p99 = timed(lambda u: store.get_online_features(features=refs, entity_rows=[{"user_id": u}]).to_dict())

    async def direct() -> list[float]:
        reader = RedisUserReader(store, settings.redis_url, timeout_s=1.0)
        out = []
        for u in users:
            t = time.perf_counter()
            await reader.read(u)
            out.append(time.perf_counter() - t)
        await reader.close()
        return sorted(out)

    d = asyncio.run(direct())
    model = load_model(settings)
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    articles = catalogue(settings, day)
    now = dt.datetime.now(dt.UTC)
    known = [u for u in users if u in model.user_index][:50]
    foldin = [u for u in users if u not in model.user_index][:50]
    reader_rows = {u: asyncio.run(_one(settings, store, u)) for u in known + foldin}
    model.recommend(known[0], k=10, now=now, user_features=reader_rows[known[0]], articles=articles)
    rows = [
        {"stage": "profile", "articles": n_articles, "part": "user features: Feast get_online_features", "p50_ms": round(feast_p50, 3), "p99_ms": round(feast_p99, 3)},
        {"stage": "profile", "articles": n_articles, "part": "user features: direct Redis HMGET (served)", "p50_ms": round(d[len(d) // 2] * 1e3, 3), "p99_ms": round(d[int(len(d) * 0.99)] * 1e3, 3)},
    ]  # fmt: skip
    for label, group, features in (("known user", known, True), ("fold-in user", foldin, True), ("unknown user", ["nobody"] * 50, False)):
        if not group:
            continue
        samples = []
        for u in group * 4:
            t = time.perf_counter()
            model.recommend(u, k=10, now=now, user_features=reader_rows.get(u) if features else None, articles=articles)
            samples.append(time.perf_counter() - t)
        samples.sort()
        rows.append({"stage": "profile", "articles": n_articles, "part": f"model.recommend, {label}",
                     "p50_ms": round(samples[len(samples) // 2] * 1e3, 3), "p99_ms": round(samples[int(len(samples) * 0.99)] * 1e3, 3)})  # fmt: skip
    return rows


async def _one(settings: Any, store: Any, user: str) -> Any:
    from services.recommend.features import RedisUserReader

    reader = RedisUserReader(store, settings.redis_url, timeout_s=1.0)
    try:
        return await reader.read(user)
    finally:
        await reader.close()


def bench_ann(n_items: int = 100_000, factors: int = FACTORS, queries: int = 200) -> list[dict[str, Any]]:
    """faiss HNSW (inner product) on random-normal item factors vs exact top-10 by matrix product."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    items = rng.standard_normal((n_items, factors)).astype(np.float32)
    users = rng.standard_normal((queries, factors)).astype(np.float32)
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(factors, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(items)
    build_s = time.perf_counter() - started
    t = time.perf_counter()
    exact = [np.argpartition(-(items @ u), 10)[:10] for u in users]
    exact_ms = (time.perf_counter() - t) / queries * 1e3
    rows = [{"stage": "ann", "items": n_items, "factors": factors, "method": "exact (BLAS matvec + argpartition)", "ms_per_query": round(exact_ms, 3), "recall_at_10": 1.0}]
    for ef in (64, 128, 256):
        index.hnsw.efSearch = ef
        t = time.perf_counter()
        found = [index.search(u[None, :], 10)[1][0] for u in users]
        ms = (time.perf_counter() - t) / queries * 1e3
        recall = statistics.mean(len(set(f.tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True))
        rows.append({"stage": "ann", "items": n_items, "factors": factors, "method": f"faiss HNSW32 efSearch={ef}", "ms_per_query": round(ms, 3),
                     "recall_at_10": round(recall, 3), "build_s": round(build_s, 1)})  # fmt: skip
    return rows


def bench_ann_model(n_items: int = 100_000, factors: int = FACTORS, queries: int = 200) -> list[dict[str, Any]]:
    """The served retrieval (``TwoStageModel._ann_top``: HNSW32, efSearch from RuleSettings, top
    ``n_als`` among eligible items through a bitmap) against exact, on random-normal factors (as the
    service world above has: the hard case for any ANN) and on rank-12 factors plus noise (closer to
    trained ALS factors). recall@10: share of the exact top-10 found in the ANN's top-10."""
    import numpy as np

    from reco.model import RuleSettings, TwoStageModel, _top_indices

    rows = []
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((12, factors)).astype(np.float32)
    worlds = {
        "random normal": (rng.standard_normal((n_items, factors)).astype(np.float32) * 0.1,
                          rng.standard_normal((queries, factors)).astype(np.float32) * 0.1),
        "rank 12 + noise": ((rng.standard_normal((n_items, 12)).astype(np.float32) @ basis) * 0.1
                            + rng.standard_normal((n_items, factors)).astype(np.float32) * 0.02,
                            (rng.standard_normal((queries, 12)).astype(np.float32) @ basis) * 0.1),
    }  # fmt: skip
    for name, (items, users) in worlds.items():
        rules = RuleSettings()
        model = TwoStageModel(
            user_ids=np.array([f"u{i}" for i in range(queries)], dtype=object), item_ids=np.array([f"a{i}" for i in range(n_items)], dtype=object),
            user_factors=users, item_factors=items, history_indptr=np.zeros(queries + 1, dtype=np.int64), history_items=np.empty(0, dtype=np.int32),
            popularity=np.ones(n_items, dtype=np.float32), item_users=np.ones(n_items, dtype=np.int32), regularization=0.05, alpha=2.0,
            fold_in_confidence=1.0, rules=rules,
        )  # fmt: skip
        started = time.perf_counter()
        model.ann_index()
        build_s = time.perf_counter() - started
        eligible = np.flatnonzero(rng.random(n_items) > 0.05)  # some read / expired
        mask = np.zeros(n_items, dtype=bool)
        mask[eligible] = True
        t = time.perf_counter()
        exact = [_top_indices(np.where(mask, items @ u, -np.inf), rules.n_als) for u in users]
        exact_ms = (time.perf_counter() - t) / queries * 1e3
        t = time.perf_counter()
        found = [model._ann_top(u, mask, rules.n_als) for u in users]
        ann_ms = (time.perf_counter() - t) / queries * 1e3
        exact10 = [e[np.argsort(-(items[e] @ u))[:10]] for e, u in zip(exact, users, strict=True)]
        recall10 = statistics.mean(len(set(f[:10].tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact10, strict=True))  # type: ignore[index]
        recall_n = statistics.mean(len(set(f.tolist()) & set(e.tolist())) / rules.n_als for f, e in zip(found, exact, strict=True))  # type: ignore[union-attr]
        rows.append({"stage": "ann", "items": n_items, "factors": factors, "method": f"served: HNSW32 efSearch={rules.ann_ef_search}, top {rules.n_als}, {name}",
                     "ms_per_query": round(ann_ms, 3), "exact_ms_per_query": round(exact_ms, 3), "recall_at_10": round(recall10, 3),
                     f"recall_at_{rules.n_als}": round(recall_n, 3), "build_s": round(build_s, 1)})  # fmt: skip
    return rows


class _Rows(list[dict[str, Any]]):
    """Rows, also echoed to stderr as they come (a long benchmark shows progress)."""

    def __iadd__(self, more: Any) -> _Rows:
        for row in more:
            print(json.dumps(row), file=sys.stderr, flush=True)
        self.extend(more)
        return self


def bench(workdir: Path, *, quick: bool = False, low_rank: bool = True) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = _redis(workdir)
    rows = _Rows()
    try:
        rows += bench_healthz(workdir / "healthz", redis_url)
        rows += bench_recommend(workdir / "w20k", redis_url, 20_000, [(1, "uvicorn"), (1, "granian"), (2, "uvicorn")])
        if not quick:
            subprocess.run(["redis-cli", "-u", redis_url, "flushall"], capture_output=True, check=False)
            rows += bench_recommend(workdir / "w100k", redis_url, 100_000, [(1, "uvicorn")])
            if low_rank:
                subprocess.run(["redis-cli", "-u", redis_url, "flushall"], capture_output=True, check=False)
                rows += bench_recommend(workdir / "w100k-lowrank", redis_url, 100_000, [(1, "uvicorn")], low_rank=True)
        rows += bench_events(workdir)
        rows += bench_ann()
        rows += bench_ann_model()
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path, nargs="?")
    parser.add_argument("--quick", action="store_true", help="20k catalogue only")
    parser.add_argument("--no-low-rank", action="store_true", help="skip 100k with rank-12 factors (see the docstring)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reco-bench-service-"))
    bench(workdir, quick=args.quick, low_rank=not args.no_low_rank)


if __name__ == "__main__":
    main()
