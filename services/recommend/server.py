"""Run the service: ``run(port, workers, workdir)`` with uvicorn (default) or granian.

Picked by measurement (``benchmarks/bench_service.py`` runs both on the same machine and request
mix; 2026-11-26, 2-core VM, 20k articles, median of three runs, three sessions): on /recommend
uvicorn answered 2,137 / 2,151 / 2,055 requests/s, granian 1,964 / 1,824 / 1,639 (0.49 vs 0.65 ms
of CPU per request), and uvicorn has the lower tail at one connection, so uvicorn (uvloop +
httptools) is the default and granian stays one flag away. (On a bare /healthz they are within
noise: granian 12.0k-16.3k, uvicorn 13.4k-14.2k.) Both load the app
from the factory string
``services.recommend.app:create_app`` in each worker and run its lifespan hooks, so SIGTERM
drains the event buffer before the process exits.

Several workers share one Prometheus view: ``PROMETHEUS_MULTIPROC_DIR`` and
``RECO_PROMETHEUS_MULTIPROC_DIR`` are set to a fresh folder before the workers start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

APP_FACTORY = "services.recommend.app:create_app"
Server = Literal["granian", "uvicorn"]


def prepare_environment(workdir: Path | None, workers: int) -> str | None:
    """Export what every worker reads: the workdir, and the shared metrics folder for several
    workers. Returns the folder to remove at exit (one this function created), or None."""
    if workdir is not None:
        os.environ["RECO_WORKDIR"] = str(workdir.resolve())
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if workers <= 1:
        return None
    # A deployment may give its own folder (e.g. an emptyDir volume); it is emptied of the
    # previous run's files, which would otherwise be counted again.
    given = os.environ.get("RECO_PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
    folder = given or tempfile.mkdtemp(prefix="reco-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    os.environ["RECO_PROMETHEUS_MULTIPROC_DIR"] = folder
    return None if given else folder


def run(
    port: int = 8000,
    workers: int = 1,
    workdir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    server: Server = "uvicorn",
    graceful_timeout_s: int = 30,
) -> None:
    """Serve until SIGINT/SIGTERM; on the way out each worker drains its event buffer."""
    folder = prepare_environment(workdir, workers)
    try:
        if server == "granian":
            from granian import Granian
            from granian.constants import Interfaces, Loops

            Granian(
                APP_FACTORY,
                factory=True,
                address=host,
                port=port,
                interface=Interfaces.ASGI,
                workers=workers,
                loop=Loops.uvloop,
                log_access=False,
                workers_kill_timeout=graceful_timeout_s,
                backlog=2048,
            ).serve()
        else:
            import uvicorn

            uvicorn.run(
                APP_FACTORY,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                loop="uvloop",
                http="httptools",
                lifespan="on",
                access_log=False,
                timeout_graceful_shutdown=graceful_timeout_s,
                backlog=2048,
            )
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
