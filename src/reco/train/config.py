"""What one training run is given and what it returns: hyper-parameters, event confidences, the
result, and the names it shares with the MLflow and Feast stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reco.model import RuleSettings

EXPERIMENT = "reco-articles"
# What the ranker rows take from the feature store. Not ``recent_reads`` (up to 100 ids a row, most
# of the join's cost): it only feeds the fold-in of users the phase-1 ALS does not know, and such a
# user has no click or read in the window before day L, so their reads are items that ALS never saw.
JOINED_FEATURES = (
    "clicks_7d",
    "read_ratio_7d",
    "avg_session_len_s",
    "top_category",
    "category_clicks",
    "views_24h",
    "clicks_24h",
    "avg_read_time_s",
)


@dataclass(frozen=True)
class ConfidenceWeights:
    """Confidence of one event in the ALS matrix: a click counts ``click``; a read counts ``read``
    plus ``dwell_per_minute`` per minute of dwell, dwell capped at ``dwell_cap_s`` seconds."""

    click: float = 1.0
    read: float = 1.0
    dwell_per_minute: float = 1.0
    dwell_cap_s: float = 300.0


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all logged as MLflow params)."""

    window_days: int | None = None  # None: settings.train_window_days
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15
    # Of ``iterations``, how many run on the full window after the ranker's snapshot of the factors.
    warm_iterations: int = 3
    num_threads: int = 0  # implicit's own threads; 0 = every core
    seed: int = 7
    weights: ConfidenceWeights = field(default_factory=ConfidenceWeights)
    rules: RuleSettings = field(default_factory=RuleSettings)
    popularity_half_life_hours: float = 24.0
    # Learn the rules' time windows from the training log (reco.train.windows); False keeps ``rules``'.
    learn_windows: bool = True
    # ALS hyper-parameters: chosen by NDCG@10 of ALS retrieval on the last training day, fitted on
    # the days before it, over this grid (reco.train.als.choose_als); False keeps the values above.
    search_als: bool = True
    als_grid_factors: tuple[int, ...] = (16, 64, 128)
    als_grid_regularization: tuple[float, ...] = (0.01, 1.0)
    als_grid_alpha: tuple[float, ...] = (1.0, 20.0)
    als_grid_max_users: int = 2_000  # validation users (a seeded sample past this)
    # Ranker rows are sampled down to this (uniformly, so the click rate stays the logged one), per kind.
    max_ranker_rows: int = 100_000
    negatives_per_click: int = 4
    # Ranker rows: "mixed" (impressions + clicks with eligible negatives), "sampled" (the latter only) or
    # "impressions" (the former only); see reco.train.ranker.ranker_rows.
    ranker_rows: str = "mixed"
    ranker_c: float = 1.0


@dataclass
class TrainResult:
    """What one training run produced; ``model_uri`` loads the pyfunc, ``run_id`` finds the run."""

    run_id: str
    model_uri: str
    train_seconds: float
    als_fit_seconds: float
    n_users: int
    n_items: int
    n_interactions: int
    ranker_status: str
    fingerprint: str
    ranker_rows: int = 0
    log_seconds: float = 0.0
    # Where ALS was fitted ("cpu" | "gpu") and why: a gpu request falls back to the cpu when CUDA is unusable.
    train_device: str = "cpu"
    train_device_reason: str = "cpu requested"
    # The learned time windows and where each came from (``reco.train.windows.Windows.summary``).
    windows: dict[str, Any] = field(default_factory=dict)
    # The ALS hyper-parameters used, how they were chosen and the grid's scores (``AlsChoice.summary``).
    als_grid: dict[str, Any] = field(default_factory=dict)
    # The category cap and decay chosen on the validation day (``reco.train.rules_choice``).
    rules_choice: dict[str, Any] = field(default_factory=dict)
