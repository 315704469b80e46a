"""A served world for the recommend-service tests and benchmark: feature snapshots materialized
into a real Feast online store (SQLite or Redis) and a real ``TwoStageModel`` registered in real
MLflow under ``reco-articles@champion``.

The model's factors are random rather than trained (a 100k-article catalogue with 64 factors is
built in seconds); everything the service touches — Feast keys, the MLflow registry and pyfunc
loading, ``TwoStageModel.recommend`` — is the real thing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
from mlflow import MlflowClient

from reco.features import (
    ARTICLE_STATS_SCHEMA,
    ARTICLE_TABLE,
    USER_STATS_SCHEMA,
    USER_TABLE,
    feature_table_dir,
    snapshot_ts,
)
from reco.featurestore import OnlineKind, apply_and_materialize
from reco.lake import replace_partition, write_atomic
from reco.model import (
    PYFUNC_ARTIFACT,
    RANKER_FEATURES,
    ArticleFeatures,
    LinearRanker,
    RuleSettings,
    TwoStageModel,
    TwoStagePyfunc,
)
from reco.schemas import ARTICLE_SCHEMA
from reco.settings import Settings

CATEGORIES = ("news", "sports", "tech", "finance", "lifestyle", "culture", "science", "travel")


@dataclass
class World:
    day: dt.date  # the snapshot day (yesterday): event_ts = today 00:00 UTC
    user_ids: list[str]  # users with materialized features (and factors, for the first half)
    article_ids: list[str]
    version: str  # registry version behind @champion


def write_features(settings: Settings, *, n_users: int, n_articles: int, seed: int = 0) -> tuple[dt.date, list[str], list[str]]:
    """user_stats / article_stats snapshots of yesterday (every article published in the last 60 h)."""
    rng = np.random.default_rng(seed)
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    ts = snapshot_ts(day)
    now = dt.datetime.now(dt.UTC)
    user_ids = [f"u{i}" for i in range(n_users)]
    article_ids = [f"a{i}" for i in range(n_articles)]
    cats = [CATEGORIES[i % len(CATEGORIES)] for i in range(n_articles)]
    published = [now - dt.timedelta(hours=float(h)) for h in rng.uniform(0.5, 60.0, n_articles)]
    users = pa.table(
        {
            "user_id": user_ids,
            "event_ts": [ts] * n_users,
            "clicks_7d": rng.integers(0, 40, n_users),
            "read_ratio_7d": rng.random(n_users),
            "avg_session_len_s": rng.random(n_users) * 900,
            "top_category": [CATEGORIES[i % len(CATEGORIES)] for i in range(n_users)],
            "recent_reads": [[article_ids[j] for j in rng.integers(0, n_articles, 8)] for _ in range(n_users)],
            "category_clicks": [json.dumps({CATEGORIES[i % 8]: 5, CATEGORIES[(i + 3) % 8]: 2}) for i in range(n_users)],
            "clicks_30d": rng.integers(0, 100, n_users),
        },
        schema=USER_STATS_SCHEMA,
    )
    views = rng.integers(0, 2000, n_articles)
    articles = pa.table(
        {
            "article_id": article_ids,
            "event_ts": [ts] * n_articles,
            "views_24h": views,
            "clicks_24h": (views * rng.random(n_articles) * 0.2).astype(np.int64),
            "ctr_24h": rng.random(n_articles) * 0.2,
            "avg_read_time_s": rng.random(n_articles) * 120,
            "reads_7d": rng.integers(0, 200, n_articles),
            "category": cats,
            "published_at": published,
            "age_hours": [max((ts - p).total_seconds() / 3600, 0.0) for p in published],
        },
        schema=ARTICLE_STATS_SCHEMA,
    )
    replace_partition(users, feature_table_dir(settings, USER_TABLE), day)
    replace_partition(articles, feature_table_dir(settings, ARTICLE_TABLE), day)
    meta = pa.table(
        {"article_id": article_ids, "published_at": published, "category": cats, "title": article_ids, "abstract": [None] * n_articles},
        schema=ARTICLE_SCHEMA,
    )
    write_atomic(meta, settings.silver_articles_path)
    return day, user_ids, article_ids


def make_model(user_ids: list[str], article_ids: list[str], *, factors: int = 64, seed: int = 0, scale: float = 1.0) -> TwoStageModel:
    """A TwoStageModel with random factors for the first half of the users, a random linear ranker."""
    rng = np.random.default_rng(seed)
    known = user_ids[: max(1, len(user_ids) // 2)]
    n_items = len(article_ids)
    history = [np.sort(rng.choice(n_items, size=5, replace=False)).astype(np.int32) for _ in known]
    indptr = np.zeros(len(known) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(h) for h in history])
    n_features = len(RANKER_FEATURES)
    return TwoStageModel(
        user_ids=np.array(known, dtype=object),
        item_ids=np.array(article_ids, dtype=object),
        user_factors=(rng.standard_normal((len(known), factors)) * 0.1 * scale).astype(np.float32),
        item_factors=(rng.standard_normal((n_items, factors)) * 0.1 * scale).astype(np.float32),
        history_indptr=indptr,
        history_items=np.concatenate(history),
        popularity=rng.random(n_items).astype(np.float32),
        item_users=rng.integers(1, 50, n_items).astype(np.int32),
        regularization=0.05,
        alpha=2.0,
        fold_in_confidence=1.0,
        rules=RuleSettings(),
        ranker=LinearRanker(
            tuple(RANKER_FEATURES), np.zeros(n_features), np.ones(n_features), rng.standard_normal(n_features) * 0.3, -2.0
        ),
        catalog=None,
        trained_until=dt.datetime.now(dt.UTC).isoformat(),
        fingerprint=f"synthetic-{seed}",
    )


def register(settings: Settings, model: TwoStageModel, alias: str = "champion") -> str:
    """Log ``model`` as the pyfunc the pipeline logs, register it, point ``alias`` at it; the version."""
    from reco.train import ensure_experiment

    # The pipeline's experiment: artifacts under the workdir, never ./mlruns of the cwd.
    experiment = ensure_experiment(settings)
    with tempfile.TemporaryDirectory(prefix="reco-model-") as tmp, mlflow.start_run(experiment_id=experiment), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = model.save(Path(tmp) / PYFUNC_ARTIFACT)
        info = mlflow.pyfunc.log_model(name="model", python_model=TwoStagePyfunc(), artifacts={PYFUNC_ARTIFACT: str(path)})
        version = mlflow.register_model(info.model_uri, settings.model_name)
    MlflowClient(tracking_uri=settings.tracking_uri).set_registered_model_alias(settings.model_name, alias, version.version)
    return str(version.version)


def build_world(
    settings: Settings,
    *,
    n_users: int = 200,
    n_articles: int = 2000,
    factors: int = 16,
    online: OnlineKind | None = None,
    seed: int = 0,
) -> World:
    """Features materialized into ``online`` (default: the environment's store) and a champion model."""
    day, user_ids, article_ids = write_features(settings, n_users=n_users, n_articles=n_articles, seed=seed)
    apply_and_materialize(settings, day, online=online)
    version = register(settings, make_model(user_ids, article_ids, factors=factors, seed=seed))
    return World(day, user_ids, article_ids, version)


def catalogue(settings: Settings, day: dt.date) -> ArticleFeatures:
    """The article snapshot as the model sees it (for in-process checks)."""
    import pyarrow.parquet as pq

    from reco.lake import partition_files

    (path,) = partition_files(feature_table_dir(settings, ARTICLE_TABLE), day)
    return ArticleFeatures.from_frame(pq.read_table(path).to_pandas())


# -- a real server process --------------------------------------------------------------------


class ServiceProcess:
    """``python -m services.recommend`` on a free loopback port, configured through its environment."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, *, workers: int = 1, server: str = "uvicorn") -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.workdir = workdir
        self.env = env or {}
        self.workers = workers
        self.server = server
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"service-{self.port}.log"
        self.shutdown_log = ""  # what the process logged after stop() signalled it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import os

        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "RECO_EXPLORATION_SEED": "1", **self.env}
        args = [sys.executable, "-m", "services.recommend", "--workdir", str(self.workdir), "--port", str(self.port),
                "--workers", str(self.workers), "--server", self.server]  # fmt: skip
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))

    def wait_ready(self, timeout: float = 120.0) -> dict[str, object]:
        """Block until /readyz says ready; the readiness body."""
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2.0)
                last = response.text
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.HTTPError as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"service not ready after {timeout}s (last: {last}):\n{self.tail()}")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Block until /healthz answers 200 (the process serves; no model needed)."""
        import httpx

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"service not healthy after {timeout}s (last: {last}):\n{self.tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful: the event buffer is drained), wait; 0 for a graceful exit, else the
        exit code (``NOT_DRAINED`` for an exit 0 without the drain).

        uvicorn re-raises SIGTERM once its graceful shutdown is done, so a drained single-worker
        process also dies by SIGTERM (-15), exactly like one killed by the signal before it could
        drain (e.g. still starting). What tells them apart is the log written after the signal:
        each worker's lifespan shutdown (``Components.stop``: the event buffer drained first)
        completed, and no acknowledged event was left unwritten.
        """
        if self.proc is None:
            return 0
        since = self.log.stat().st_size if self.log.exists() else 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        code = self.proc.returncode
        self.proc = None
        self.shutdown_log = self.log.read_bytes()[since:].decode(errors="replace") if self.log.exists() else ""
        if code not in (0, -signal.SIGTERM) or self.server != "uvicorn":
            return code
        drained = (
            self.shutdown_log.count(UVICORN_SHUTDOWN_DONE) >= self.workers and UNWRITTEN not in self.shutdown_log
        )
        if drained:
            return 0
        return code or NOT_DRAINED

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextlib.contextmanager
def running(workdir: Path, env: dict[str, str] | None = None, **kwargs: Any) -> Iterator[ServiceProcess]:
    """A started service, ready (a model loaded), stopped at the end of the block."""
    process = ServiceProcess(workdir, env, **kwargs)
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


REPO = Path(__file__).resolve().parents[2]
# uvicorn logs this once a worker's lifespan shutdown hooks have returned without error.
UVICORN_SHUTDOWN_DONE = "Application shutdown complete."
# services.recommend.events logs this when a drain gives up with acknowledged events in memory.
UNWRITTEN = "acknowledged events unwritten"
# What stop() returns for a process that exited 0 but whose workers did not all drain.
NOT_DRAINED = 255


def count_bronze_events(settings: Settings) -> tuple[int, int]:
    """(rows, distinct event_ids) in the bronze event lake."""
    import pyarrow.parquet as pq

    files = sorted(settings.bronze_events_dir.rglob("*.parquet"))
    if not files:
        return 0, 0
    ids = pa.concat_arrays([pq.read_table(f, columns=["event_id"]).column("event_id").combine_chunks() for f in files])
    return len(ids), len(set(ids.to_pylist()))
