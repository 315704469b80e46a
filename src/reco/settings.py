"""Typed settings, read from the environment (prefix ``RECO_``), cached, injected.

Nothing here touches the disk at import time: paths are computed, never created.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def repo_root() -> Path:
    """The source checkout this package runs from, or the working directory when installed."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "feature_repo").is_dir():
            return parent
    return Path.cwd()


class Settings(BaseSettings):
    """Where things live and how the pipeline behaves. Every field maps to ``RECO_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    workdir: Path = Field(default_factory=lambda: repo_root() / ".reco")
    environment: Literal["local", "gke"] = "local"
    feature_repo: Path = Field(default_factory=lambda: repo_root() / "feature_repo")
    # Empty means "SQLite under the workdir"; production sets an http(s) MLflow server.
    mlflow_tracking_uri: str = ""
    # Production storage locations (gs:// URIs); empty means the folders under the workdir.
    feast_uri: str = ""
    features_uri: str = ""
    model_name: str = "reco-articles"
    redis_url: str = "redis://localhost:6379/0"
    # Ingest: events may arrive this many days after their timestamp and still land in silver.
    allowed_lateness_days: int = 1
    # Feature TTLs (Feast views) in days. Each daily snapshot already aggregates its own 30/7-day windows,
    # so the newest snapshot is at most a day old: a short TTL finds the same rows and makes point-in-time
    # joins 3-6x faster (measured at 1M and 10M events), and stops serving users who have left the window.
    user_features_ttl_days: int = 2
    article_features_ttl_days: int = 2
    # Training: days of silver before the run date; a drift-triggered retrain uses the shorter window.
    train_window_days: int = 14
    retrain_window_days: int = 4
    # Time windows of the model, learned from the training log's click ages (reco.train.windows) unless
    # set here: eligibility (max age), freshness decay half-life, and what counts as fresh (hours).
    window_max_age_hours: float | None = Field(default=None, gt=0)
    window_half_life_hours: float | None = Field(default=None, gt=0)
    window_fresh_hours: float | None = Field(default=None, gt=0)
    # ALS hyper-parameters, chosen on a validation day of the training window (reco.train.als) unless
    # pinned here; a pinned one is not searched, all three pinned skip the search.
    als_factors: int | None = Field(default=None, gt=0)
    als_regularization: float | None = Field(default=None, ge=0)
    als_alpha: float | None = Field(default=None, gt=0)
    # Serving rules chosen on the validation day (reco.train.rules_choice) unless pinned: the per-page category
    # cap (0: none) and whether scores decay with age at the learned half-life.
    diversity_cap: int | None = Field(default=None, ge=0)
    decay: bool | None = None
    # Where ALS is fitted. "gpu" uses implicit's CUDA ALS when it is usable and falls back to the CPU,
    # with the reason logged and recorded, when it is not (the reason is in the run's MLflow tags).
    train_device: Literal["cpu", "gpu"] = "cpu"
    # Quality gate: champion moves only on this relative NDCG@10 gain, and no guard metric drops more.
    gate_min_gain: float = 0.01
    gate_max_guard_drop: float = 0.05
    # Against the best simple rule (reco.registry.gate): "not-worse" rejects a model shown to lose to it,
    # "beats" also rejects one not shown to win (the paired interval's lower bound must be above 0).
    gate_heuristic_rule: Literal["not-worse", "beats"] = "not-worse"
    # A backfill (the champion was trained on data at or after the test day, so it cannot be compared):
    # "keep-newer" never lets the backfilled model replace it (a backfill must not move the served model back
    # in time); "baselines" promotes it when it passes the best simple rule.
    gate_backfill: Literal["keep-newer", "baselines"] = "keep-newer"
    # Data contract (reco.contract, the validate step): D's silver events and the article table before training.
    # A column that the day's log carries for a type of event (position, request_id, propensity on impressions,
    # dwell_ms on reads) may be missing from at most this share of that type's rows.
    contract_max_null_rate: float = Field(default=0.01, ge=0, le=1)
    contract_max_dwell_ms: int = Field(default=86_400_000, gt=0)  # a day, the service's own bound
    contract_max_position: int = Field(default=999, ge=0)  # 0-based; the service accepts 1..1000
    # Share of click/read rows whose article the article table lacks (derived articles count as described).
    contract_max_orphan_rate: float = Field(default=0.0, ge=0, le=1)
    # Volume: D's rows against the median of the earlier days with events among the last `contract_volume_days`;
    # judged only with at least `contract_volume_min_days` of them.
    contract_volume_min_ratio: float = Field(default=0.3, ge=0)
    contract_volume_max_ratio: float = Field(default=3.0, gt=0)
    contract_volume_days: int = Field(default=7, gt=0)
    contract_volume_min_days: int = Field(default=3, gt=0)
    contract_examples: int = Field(default=5, ge=0)  # example rows per failed check in the report
    # False: a broken contract is reported (summary, reports/<D>/contract.md) but the run goes on — for a day an
    # operator knows is real (a traffic spike on election night), never as a default.
    contract_enforce: bool = True
    # Monitor: share of drifted feature columns above which a retraining is recommended.
    drift_threshold: float = 0.3
    # Production (environment "gke"): where the monitor step submits a retraining run (Argo Server API,
    # token from a Secret) and where drift and failure alerts go (a Slack-compatible webhook, from a Secret).
    argo_server_url: str = ""
    argo_token: str = ""
    argo_namespace: str = "reco"
    argo_verify_tls: bool = True
    alert_webhook_url: str = ""
    # Production deploy: a git checkout of this repository (with push access to its remote) where the deploy
    # step commits the promoted model version to the staging overlay (`reco gitops promote`), and pushes.
    gitops_repo: str = ""  # a local checkout, or a URL cloned for each release (a pod has no checkout)
    gitops_token: str = ""  # HTTPS token for cloning and pushing a gitops_repo URL
    gitops_env: str = "staging"
    # The Prometheus the canary judge (`reco analysis`) reads clicks and impressions from.
    prometheus_url: str = "http://localhost:9090"

    @property
    def lake_dir(self) -> Path:
        return self.workdir / "lake"

    @property
    def bronze_events_dir(self) -> Path:
        return self.lake_dir / "bronze" / "events"

    @property
    def bronze_articles_dir(self) -> Path:
        return self.lake_dir / "bronze" / "articles"

    @property
    def silver_events_dir(self) -> Path:
        return self.lake_dir / "silver" / "events"

    @property
    def silver_articles_path(self) -> Path:
        return self.lake_dir / "silver" / "articles" / "articles.parquet"

    @property
    def quarantine_dir(self) -> Path:
        return self.lake_dir / "quarantine" / "events"

    @property
    def features_dir(self) -> Path:
        return self.workdir / "features"

    @property
    def feast_dir(self) -> Path:
        return self.workdir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.workdir / "mlflow"

    @property
    def runs_dir(self) -> Path:
        return self.workdir / "runs"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment; CLI options override via ``model_copy``."""
    return Settings()
