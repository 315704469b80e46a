"""The Feast feature store of reco: apply, materialize, point-in-time joins and online reads.

``feature_repo/`` is a leaf: reco never imports it as a package. It loads
``feature_repo/definitions.py`` by file path and ``feature_repo/environments/<env>/feature_store.yaml``
as text, and hands the workdir paths in through ``${VAR}`` placeholders (the yaml) and
environment variables (the definitions), so nothing depends on the current directory.

Snapshot timing (see ``reco.features``): the snapshot of day D has ``event_ts`` = D+1 00:00 UTC.
``apply_and_materialize(settings, D)`` loads exactly that instant into the online store, and
``historical_features`` returns, for each row at time t, the latest snapshot with
``event_ts <= t`` no older than the view's TTL (null features otherwise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import io
import os
import re
import sys
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import feast
import pandas as pd
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureView
from feast.data_source import DataSource
from feast.feast_object import FeastObject
from feast.repo_config import RepoConfig

from reco.errors import NoDataError, RecoError
from reco.features import ARTICLE_TABLE, USER_TABLE, feature_table_dir, snapshot_ts
from reco.lake import list_dates, partition_files
from reco.settings import Settings

FEATURE_SERVICE = "recommend_v1"
HISTORICAL_CHUNK_ROWS = 200_000
DEFINITIONS_FILE = "definitions.py"
OnlineKind = Literal["sqlite", "redis"]

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
# Join key of each entity the recommender reads, in the order online_features returns them.
_JOIN_KEYS = ("user_id", "article_id")


def redis_connection_string(url: str) -> str:
    """``redis://[:password@]host:port/db`` -> Feast's ``host:port,db=N[,password=...][,ssl=true]``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise RecoError(f"redis_url must look like redis://host:port/db, got {url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.lstrip("/")
    parts.append(f"db={int(db) if db else 0}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feast_variables(settings: Settings) -> dict[str, str]:
    """Values of the ``${VAR}`` placeholders and of the variables ``definitions.py`` reads.

    Locally they come from the workdir (absolute paths); in production ``settings.feast_uri`` and
    ``settings.features_uri`` (``RECO_FEAST_URI``, ``RECO_FEATURES_URI``) hold bucket URIs instead.
    """
    values = {
        "RECO_FEAST_DIR": settings.feast_uri or str(settings.feast_dir.resolve()),
        "RECO_FEATURES_URI": settings.features_uri or str(settings.features_dir.resolve()),
        "RECO_FEAST_REDIS": redis_connection_string(settings.redis_url),
        "RECO_USER_FEATURES_TTL_DAYS": str(settings.user_features_ttl_days),
        "RECO_ARTICLE_FEATURES_TTL_DAYS": str(settings.article_features_ttl_days),
    }
    return values


def _render_yaml(path: Path, variables: Mapping[str, str]) -> dict[str, Any]:
    """The yaml at ``path`` with every ``${VAR}`` replaced; an unknown variable is an error, not a literal."""
    if not path.is_file():
        raise RecoError(f"no feature_store.yaml at {path}")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise RecoError(f"{path}: unknown placeholder ${{{name}}}; known: {', '.join(sorted(variables))}")
        return variables[name]

    raw = yaml.safe_load(_PLACEHOLDER.sub(substitute, path.read_text()))
    if not isinstance(raw, dict):
        raise RecoError(f"{path}: not a mapping")
    return raw


def environment_yaml(settings: Settings, environment: str) -> Path:
    return settings.feature_repo / "environments" / environment / "feature_store.yaml"


def repo_config(settings: Settings, online: OnlineKind | None = None) -> RepoConfig:
    """The Feast config of ``settings.environment``, optionally with another online store.

    ``online="redis"`` swaps in the online store block of the ``gke`` environment (pointing at
    ``settings.redis_url``) so the same local store can be checked against a real Redis;
    ``online="sqlite"`` swaps in the ``local`` one. ``None`` keeps the environment's own.
    """
    variables = feast_variables(settings)
    raw = _render_yaml(environment_yaml(settings, settings.environment), variables)
    if online is not None:
        source_env = {"sqlite": "local", "redis": "gke"}[online]
        raw["online_store"] = _render_yaml(environment_yaml(settings, source_env), variables)["online_store"]
    config = RepoConfig(**raw)
    config.repo_path = settings.feature_repo.resolve()
    return config


def get_store(settings: Settings, online: OnlineKind | None = None) -> feast.FeatureStore:
    """A Feast store for ``settings`` (registry and SQLite online store under ``settings.feast_dir``)."""
    config = repo_config(settings, online)
    if config.registry.path and "://" not in config.registry.path:
        Path(config.registry.path).parent.mkdir(parents=True, exist_ok=True)
    return feast.FeatureStore(config=config)


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """ibis calls a duckdb API that duckdb 2 deprecates, once per query: noise to a pipeline user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_definitions(settings: Settings) -> list[FeastObject]:
    """Execute ``feature_repo/definitions.py`` by path and return its Feast objects.

    Run under a throw-away module name so two workdirs in one process (tests) never share
    a cached module with the other's paths.
    """
    path = settings.feature_repo / DEFINITIONS_FILE
    if not path.is_file():
        raise RecoError(f"no Feast definitions at {path}")
    name = f"_reco_feast_definitions_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RecoError(f"cannot load Feast definitions from {path}")
    module = importlib.util.module_from_spec(spec)
    with _environ(feast_variables(settings)):
        spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    objects: list[FeastObject] = []
    for value in vars(module).values():
        if isinstance(value, Entity | DataSource | FeatureView | FeatureService) and not any(
            value is seen for seen in objects
        ):
            objects.append(value)
    return objects


def _rows(settings: Settings, table: str, day: dt.date) -> int:
    files = partition_files(feature_table_dir(settings, table), day)
    if not files:
        raise NoDataError(f"no {table} snapshot for {day} under {settings.features_dir}; run build_features first")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def apply_and_materialize(settings: Settings, day: dt.date, online: OnlineKind | None = None) -> dict[str, Any]:
    """Register the definitions, then load day D's snapshots (``event_ts`` = D+1 00:00 UTC) online.

    Materializes an explicit range starting at D's ``event_ts`` (both ends inclusive in Feast),
    never "incremental from now". The range ends at D's snapshot too, unless snapshots of later
    days exist (a backfill of D): then it ends at the newest one, because the SQLite online store
    overwrites without comparing timestamps and the online store must keep serving the newest.
    """
    users = _rows(settings, USER_TABLE, day)
    articles = _rows(settings, ARTICLE_TABLE, day)
    store = get_store(settings, online)
    objects = load_definitions(settings)
    store.apply(objects)
    built = list_dates(feature_table_dir(settings, USER_TABLE)) + list_dates(feature_table_dir(settings, ARTICLE_TABLE))
    start, end = snapshot_ts(day), snapshot_ts(max([day, *built]))
    # Feast prints its progress to stdout; the pipeline reports counts in the run summary instead.
    with _quiet_deprecations(), contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=start, end_date=end)
    return {
        "applied": sorted(f"{type(obj).__name__}:{obj.name}" for obj in objects),
        "materialized_start": start.isoformat(),
        "materialized_end": end.isoformat(),
        "users": users,
        "articles": articles,
        "online_store": store.config.online_store.type,
    }


def historical_features(
    settings: Settings,
    entity_df: pd.DataFrame,
    *,
    store: feast.FeatureStore | None = None,
    features: Sequence[str] | None = None,
    chunk_rows: int = HISTORICAL_CHUNK_ROWS,
) -> pd.DataFrame:
    """Point-in-time join of ``recommend_v1`` onto ``entity_df`` (training data).

    ``entity_df``: one row per (user_id, article_id, event_timestamp UTC), other columns pass
    through (e.g. the click label). Returns the same rows in the same order, plus every feature
    of the service as of each row's timestamp (null where no snapshot within the TTL); integer
    features come back as float64 where a row has no snapshot.

    ``features`` optionally narrows the service to some of its feature names: a ranker that
    does not use ``recent_reads`` (up to 100 ids a row) joins several times faster without it.
    Rows are joined ``chunk_rows`` at a time (see the comment below).
    """
    missing = {"user_id", "article_id", "event_timestamp"} - set(entity_df.columns)
    if missing:
        raise RecoError(f"entity_df lacks column(s) {', '.join(sorted(missing))}")
    store = store or get_store(settings)
    frame = entity_df.copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    # Feast's join does not keep row order; this column restores it.
    frame["_reco_row"] = range(len(frame))
    wanted: FeatureService | list[str] = store.get_feature_service(FEATURE_SERVICE)
    if features is not None:
        refs = [ref for group in feature_refs(store).values() for ref in group]
        unknown = set(features) - {ref.split(":", 1)[1] for ref in refs}
        if unknown:
            raise RecoError(f"not features of {FEATURE_SERVICE}: {', '.join(sorted(unknown))}")
        wanted = [ref for ref in refs if ref.split(":", 1)[1] in set(features)]
    # Feast joins each row to every snapshot within the TTL before keeping the latest, so memory
    # grows with rows x TTL days; bounded chunks keep a 1M-row join within a few GiB.
    parts = []
    with _quiet_deprecations():
        for first in range(0, max(len(frame), 1), chunk_rows):
            chunk = frame.iloc[first : first + chunk_rows]
            parts.append(store.get_historical_features(entity_df=chunk, features=wanted).to_df())
    joined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    joined = joined.sort_values("_reco_row", kind="stable").drop(columns="_reco_row").reset_index(drop=True)
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    return joined


def feature_refs(store: feast.FeatureStore) -> dict[str, list[str]]:
    """``recommend_v1``'s feature references ("view:feature"), grouped by join key."""
    service = store.get_feature_service(FEATURE_SERVICE)
    refs: dict[str, list[str]] = {key: [] for key in _JOIN_KEYS}
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        (key,) = [column.name for column in view.entity_columns]
        refs.setdefault(key, []).extend(f"{projection.name_to_use()}:{f.name}" for f in projection.features)
    return refs


def online_features(
    settings: Settings,
    user_ids: Sequence[str],
    article_ids: Sequence[str],
    *,
    online: OnlineKind | None = None,
    store: feast.FeatureStore | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latest materialized ``recommend_v1`` features: (users indexed by user_id, articles by article_id).

    One row per distinct id, in first-seen order; an id never materialized gets null features.
    Pass a long-lived ``store`` when serving: building one reads the registry.
    """
    store = store or get_store(settings, online)
    refs = feature_refs(store)
    frames = []
    for key, ids in (("user_id", user_ids), ("article_id", article_ids)):
        unique = list(dict.fromkeys(ids))
        names = [ref.split(":", 1)[1] for ref in refs[key]]
        if not unique:
            frame = pd.DataFrame(columns=[key, *names])
        else:
            frame = store.get_online_features(features=refs[key], entity_rows={key: unique}).to_df()
        frames.append(frame.set_index(key)[names])
    return frames[0], frames[1]
