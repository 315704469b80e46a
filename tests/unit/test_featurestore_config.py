"""Rendering of the Feast repo: one set of definitions, one feature_store.yaml per environment."""

from __future__ import annotations

import ast
import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from feast import FeatureService, FeatureView, FileSource

from reco.errors import RecoError
from reco.featurestore import FEATURE_SERVICE, load_definitions, redis_connection_string, repo_config
from reco.settings import Settings, repo_root


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", "localhost:6379,db=0"),
        ("redis://10.0.0.5:6380/2", "10.0.0.5:6380,db=2"),
        ("redis://:s%40cret@redis.internal/1", "redis.internal:6379,db=1,password=s@cret"),
        ("rediss://cache:6378", "cache:6378,db=0,ssl=true"),
    ],
)
def test_redis_url_becomes_a_feast_connection_string(url: str, expected: str) -> None:
    assert redis_connection_string(url) == expected


def test_a_malformed_redis_url_is_refused() -> None:
    with pytest.raises(RecoError, match="redis://"):
        redis_connection_string("localhost:6379")


def test_local_environment_keeps_everything_under_the_workdir(settings: Settings) -> None:
    config = repo_config(settings)
    assert config.project == "reco_articles"
    assert config.offline_store.type == "duckdb"
    assert config.online_store.type == "sqlite"
    assert Path(config.online_store.path) == settings.feast_dir.resolve() / "online.db"
    assert Path(config.registry.path) == settings.feast_dir.resolve() / "registry.db"
    redis_config = repo_config(settings.model_copy(update={"redis_url": "redis://127.0.0.1:7000/3"}), online="redis")
    assert redis_config.online_store.type == "redis"
    assert redis_config.online_store.connection_string == "127.0.0.1:7000,db=3"


def test_gke_environment_renders_redis_and_bucket_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECO_FEAST_URI", "gs://reco-bucket/feast")
    monkeypatch.setenv("RECO_FEATURES_URI", "gs://reco-bucket/features")
    settings = Settings(workdir=tmp_path, environment="gke", redis_url="redis://:pw@10.1.2.3:6379/0")
    config = repo_config(settings)
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "10.1.2.3:6379,db=0,password=pw"
    assert config.online_store.key_ttl_seconds == 30 * 24 * 3600
    assert config.registry.path == "gs://reco-bucket/feast/registry.db"
    assert config.offline_store.type == "duckdb"
    sources = [obj for obj in load_definitions(settings) if isinstance(obj, FileSource)]
    assert sorted(s.path for s in sources) == [
        "gs://reco-bucket/features/article_stats/date=*/*.parquet",
        "gs://reco-bucket/features/user_stats/date=*/*.parquet",
    ]


def test_definitions_take_paths_and_ttls_from_settings_without_leaking_env(settings: Settings) -> None:
    before = dict(os.environ)
    tuned = settings.model_copy(update={"user_features_ttl_days": 3, "article_features_ttl_days": 2})
    objects = load_definitions(tuned)
    assert dict(os.environ) == before
    views = {obj.name: obj for obj in objects if isinstance(obj, FeatureView)}
    assert views["user_stats"].ttl == dt.timedelta(days=3)
    assert views["article_stats"].ttl == dt.timedelta(days=2)
    sources = {obj.name: obj for obj in objects if isinstance(obj, FileSource)}
    for source in sources.values():
        assert Path(source.path).is_absolute()
        assert source.path.startswith(str(settings.features_dir.resolve()))
    (service,) = [obj for obj in objects if isinstance(obj, FeatureService)]
    assert service.name == FEATURE_SERVICE
    assert {p.name for p in service.feature_view_projections} == {"user_stats", "article_stats"}


def test_an_unknown_placeholder_is_an_error(settings: Settings, tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(settings.feature_repo, repo)
    yaml_path = repo / "environments" / "local" / "feature_store.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("${RECO_FEAST_DIR}/online.db", "${RECO_NOPE}/online.db"))
    with pytest.raises(RecoError, match="RECO_NOPE"):
        repo_config(settings.model_copy(update={"feature_repo": repo}))


def test_feature_repo_is_a_leaf() -> None:
    """feature_repo imports nothing of reco, and reco never imports feature_repo as a package."""
    root = repo_root()
    for path in (root / "feature_repo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.split(".")[0] == "reco" for n in names), path
    for path in (root / "src" / "reco").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.split(".")[0] in ("feature_repo", "definitions") for n in names), path
