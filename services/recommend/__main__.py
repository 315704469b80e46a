"""``python -m services.recommend [--workdir DIR] [--port P] [--workers N] [--host H] [--server S]``.

What ``reco serve`` runs. Options default to the environment (RECO_WORKDIR, RECO_PORT,
RECO_WORKERS, RECO_HOST, RECO_SERVER) so a container needs no arguments.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.recommend.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.recommend", description="Run the recommend service.")
    parser.add_argument("--workdir", type=Path, default=os.environ.get("RECO_WORKDIR"), help="workdir (lake, MLflow, Feast)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RECO_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RECO_WORKERS", "1")))
    parser.add_argument("--host", default=os.environ.get("RECO_HOST", "127.0.0.1"))
    parser.add_argument("--server", choices=["granian", "uvicorn"], default=os.environ.get("RECO_SERVER", "uvicorn"))
    args = parser.parse_args(argv)
    run(args.port, args.workers, args.workdir, host=args.host, server=args.server)


if __name__ == "__main__":
    main()
