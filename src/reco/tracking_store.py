"""The local MLflow store (SQLite under the workdir), created by one process at a time.

MLflow creates and migrates a SQLite store on a client's first call. A pipeline run and the recommend service
started on a fresh workdir can both make that first call at once, and the loser fails with "table ... already
exists". ``ready`` serialises the creation with a file lock beside the database and leaves a marker once the
schema is complete; later calls see the marker and return at once. Tracking servers (http URIs) are not touched.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from reco.settings import Settings

MARKER = ".mlflow-ready"


def ready(settings: Settings) -> str:
    """``settings.tracking_uri``, its SQLite store created and migrated if it is a local one."""
    uri = settings.tracking_uri
    if not uri.startswith("sqlite:///"):
        return uri
    database = Path(uri.removeprefix("sqlite:///"))
    marker = database.with_name(MARKER)
    if marker.exists():
        return uri
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(".mlflow-init.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not marker.exists():
                from mlflow import MlflowClient

                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                client.search_experiments(max_results=1)  # creates and migrates the tracking schema
                client.search_registered_models(max_results=1)
                marker.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return uri
