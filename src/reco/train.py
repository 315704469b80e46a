"""Daily training: silver days before D -> one two-stage model, logged to MLflow as one pyfunc.

``train(settings, D)`` uses the silver partitions D-W..D-1 (W = ``settings.train_window_days``);
D itself is the test day of ``reco.evaluate``.

* **Interactions**: clicks and reads, confidence = ``click`` per click + (``read`` + dwell bonus)
  per read (``ConfidenceWeights``), summed per (user, article) into a (n_users, n_items) CSR.
* **ALS** (``implicit``, its own threads, ``OPENBLAS_NUM_THREADS=1``), fitted in two phases to keep
  the ranker honest at no extra cost: phase 1 runs most iterations on the days before the last
  training day L; its factors score L's impressions for the ranker (the ALS score of a row is then
  out-of-sample, as it is at serving time — an ALS fitted on L's clicks would "know" the labels and
  the ranker would learn to trust it far too much); phase 2 continues from those factors for a few
  iterations on the whole window, and that is the ALS that is served. Total iterations equal a
  plain fit's.
* **Ranker**: logistic regression on L's impressions (label: the user clicked the article that
  day), features joined point-in-time through Feast (``reco.featurestore.historical_features``)
  and turned into the ranker matrix by the same ``reco.model.ranker_features`` serving uses. A
  click log without impressions gets sampled negatives (articles eligible at the click's time);
  with a single training day there is no out-of-sample day and the ranker is skipped (logged).
* **Popularity**: recency-weighted interaction count (half-life ``popularity_half_life_hours``).

MLflow: params, metrics, seconds per phase, the sha256 fingerprint of the exact silver files,
one ``log_input`` dataset per file, git commit, resolved package versions, and the model as one
pyfunc (``name="model"``) with signature and input example.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from reco.errors import InputFileError, NoDataError
from reco.features import ARTICLE_TABLE, read_snapshot
from reco.lake import list_dates, partition_files
from reco.model import (
    MODEL_ARTIFACT_NAME,
    PYFUNC_ARTIFACT,
    RANKER_FEATURES,
    ArticleFeatures,
    LinearRanker,
    RuleSettings,
    TwoStageModel,
    TwoStagePyfunc,
    category_affinity,
    epoch_seconds,
    ranker_features,
)
from reco.settings import Settings, repo_root

log = logging.getLogger(__name__)

EXPERIMENT = "reco-articles"
_EVENT_COLUMNS = ["ts", "user_id", "article_id", "event_type", "dwell_ms", "request_id", "position", "propensity"]
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
_PACKAGES = ("reco-articles", "numpy", "scipy", "pandas", "pyarrow", "implicit", "scikit-learn", "mlflow", "feast")


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
    # Ranker rows are sampled down to this (uniformly, so the click rate stays the logged one).
    max_ranker_rows: int = 20_000
    negatives_per_click: int = 4
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


# -- data ------------------------------------------------------------------------------------


def training_days(settings: Settings, day: dt.date, window_days: int) -> list[dt.date]:
    """Silver dates in [D - window, D - 1] that have a partition, oldest first."""
    first = day - dt.timedelta(days=window_days)
    return [d for d in list_dates(settings.silver_events_dir) if first <= d < day]


def read_events(
    settings: Settings, days: list[dt.date], *, impressions_on: dt.date | None = None
) -> tuple[pd.DataFrame, list[Path]]:
    """Silver events of ``days`` as one frame (``ts`` UTC) and the files read.

    Impressions are most of the log and only the ranker's day needs them, so other days are read
    with a pushed-down filter on ``event_type`` (clicks and reads only).
    """
    files: list[Path] = []
    tables = []
    for d in days:
        for f in partition_files(settings.silver_events_dir, d):
            files.append(f)
            filters = None if d == impressions_on else [("event_type", "in", ["click", "read"])]
            tables.append(pq.read_table(f, columns=_EVENT_COLUMNS, filters=filters))
    if not files:
        raise NoDataError(f"no silver events for {days[0] if days else '?'}..{days[-1] if days else '?'}")
    frame = pa.concat_tables(tables).to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame, files


def read_articles(settings: Settings) -> pd.DataFrame:
    """Silver article metadata (article_id, published_at UTC, category)."""
    path = settings.silver_articles_path
    if not path.is_file():
        raise InputFileError(path, "silver article table is missing; run ingest first")
    frame = pq.read_table(path, columns=["article_id", "published_at", "category"]).to_pandas()
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True)
    return frame


def confidence(events: pd.DataFrame, weights: ConfidenceWeights) -> np.ndarray:
    """Per-event ALS confidence (n,), 0 for impressions."""
    kind = events["event_type"].to_numpy()
    dwell_s = events["dwell_ms"].fillna(0).to_numpy(dtype=np.float64) / 1000.0
    read = weights.read + weights.dwell_per_minute * np.minimum(np.maximum(dwell_s, 0.0), weights.dwell_cap_s) / 60.0
    return np.where(kind == "click", weights.click, np.where(kind == "read", read, 0.0))


def file_fingerprint(files: list[Path], root: Path) -> tuple[str, dict[str, str]]:
    """sha256 of each file's bytes, and one sha256 over the sorted (relative path, digest) pairs."""
    digests: dict[str, str] = {}
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        try:
            name = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(path)
        digests[name] = h.hexdigest()
    total = hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()
    return total, digests


def catalogue_frame(
    settings: Settings, stats_day: dt.date, *, until: dt.datetime, max_age_hours: float
) -> pd.DataFrame:
    """Article metadata published in (until - max_age - 1 day, until], with the ``stats_day``
    article_stats snapshot joined on (0 where an article has no stats yet, e.g. published since).

    This is the catalogue as the service sees it: metadata is known at publication, stats lag a day.
    """
    articles = read_articles(settings)
    since = until - dt.timedelta(hours=max_age_hours) - dt.timedelta(days=1)
    articles = articles[(articles["published_at"] <= until) & (articles["published_at"] > since)]
    stats = read_snapshot(settings, ARTICLE_TABLE, stats_day).to_pandas()
    keep = ["article_id", "views_24h", "clicks_24h", "ctr_24h", "avg_read_time_s"]
    stats = stats[[c for c in keep if c in stats.columns]]
    return articles.merge(stats, on="article_id", how="left")


# -- ALS -------------------------------------------------------------------------------------


@dataclass
class InteractionMatrix:
    """(n_users, n_items) CSR of summed confidences, with the id of each row and column."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray


def build_matrix(
    events: pd.DataFrame, weights: ConfidenceWeights, *, before: pd.Timestamp | None = None
) -> tuple[InteractionMatrix, sp.csr_matrix | None]:
    """The full-window matrix and, when ``before`` is given, the same-shape matrix of the events
    earlier than ``before`` (ALS phase 1). Users and items are those with a click or read."""
    conf = confidence(events, weights)
    positive = conf > 0
    pos = events.loc[positive]
    users, user_ids = pd.factorize(pos["user_id"], sort=True)
    items, item_ids = pd.factorize(pos["article_id"], sort=True)
    shape = (len(user_ids), len(item_ids))
    values = conf[positive].astype(np.float32)
    full = sp.csr_matrix((values, (users, items)), shape=shape, dtype=np.float32)
    full.sum_duplicates()
    partial = None
    if before is not None:
        early = (pos["ts"] < before).to_numpy()
        partial = sp.csr_matrix((values[early], (users[early], items[early])), shape=shape, dtype=np.float32)
        partial.sum_duplicates()
    return InteractionMatrix(full, np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object)), partial


def _als(config: TrainConfig, iterations: int) -> AlternatingLeastSquares:
    return AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=config.alpha,
        iterations=iterations,
        random_state=config.seed,
        num_threads=config.num_threads,
    )


def fit_als(
    full: sp.csr_matrix, partial: sp.csr_matrix | None, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None, float]:
    """(user_factors, item_factors) of the full window, phase-1 factors (or None) and fit seconds.

    With ``partial``: ``iterations - warm_iterations`` on it, snapshot, then ``warm_iterations``
    more on ``full`` starting from there (implicit keeps existing factors). Without: a plain fit.
    """
    started = time.perf_counter()
    if partial is None or partial.nnz == 0 or config.warm_iterations >= config.iterations:
        model = _als(config, config.iterations)
        model.fit(full, show_progress=False)
        return model.user_factors, model.item_factors, None, time.perf_counter() - started
    model = _als(config, config.iterations - config.warm_iterations)
    model.fit(partial, show_progress=False)
    phase1 = (model.user_factors.copy(), model.item_factors.copy())
    model.iterations = config.warm_iterations
    model.fit(full, show_progress=False)
    return model.user_factors, model.item_factors, phase1, time.perf_counter() - started


def recency_popularity(
    events: pd.DataFrame, conf: np.ndarray, item_ids: np.ndarray, end: pd.Timestamp, half_life_hours: float
) -> np.ndarray:
    """(n_items,) Σ confidence · 2^(-(end - ts) / half-life) over each item's interactions."""
    positive = conf > 0
    index = pd.Index(item_ids)
    items = index.get_indexer(events.loc[positive, "article_id"])
    age_h = (end - events.loc[positive, "ts"]).dt.total_seconds().to_numpy() / 3600.0
    weight = conf[positive] * np.exp2(-np.maximum(age_h, 0.0) / half_life_hours)
    return np.bincount(items, weights=weight, minlength=len(item_ids)).astype(np.float32)


def _sub_model(
    matrix: InteractionMatrix, factors: tuple[np.ndarray, np.ndarray], partial: sp.csr_matrix, config: TrainConfig
) -> TwoStageModel:
    """The phase-1 ALS as a TwoStageModel over the users/items that had data before day L, so
    ``user_vector`` (known factors or fold-in) behaves exactly as it will when serving."""
    user_rows = np.flatnonzero(np.diff(partial.indptr) > 0)
    item_cols = np.flatnonzero(np.bincount(partial.indices, minlength=partial.shape[1]) > 0)
    empty = np.zeros(len(user_rows) + 1, dtype=np.int64)
    return TwoStageModel(
        user_ids=matrix.user_ids[user_rows],
        item_ids=matrix.item_ids[item_cols],
        user_factors=factors[0][user_rows],
        item_factors=factors[1][item_cols],
        history_indptr=empty,
        history_items=np.empty(0, dtype=np.int32),
        popularity=np.zeros(len(item_cols), dtype=np.float32),
        item_users=np.zeros(len(item_cols), dtype=np.int32),
        regularization=config.regularization,
        alpha=config.alpha,
        fold_in_confidence=config.weights.click,
        rules=config.rules,
    )


# -- ranker ----------------------------------------------------------------------------------


def ranker_rows(
    events: pd.DataFrame, articles: pd.DataFrame, day: dt.date, config: TrainConfig
) -> tuple[pd.DataFrame, str]:
    """Labelled rows (user_id, article_id, event_timestamp, label) of one day and how they were made.

    Impressions of the day, label 1 when the user clicked that article that day. Without
    impressions: the day's clicks (label 1) plus ``negatives_per_click`` articles eligible at the
    click's time (published, younger than max age, not clicked by the user), label 0.
    """
    rng = np.random.default_rng(config.seed)
    start = pd.Timestamp(day, tz="UTC")
    today = events[(events["ts"] >= start) & (events["ts"] < start + pd.Timedelta(days=1))]
    clicks = today[today["event_type"] == "click"]
    clicked = set(zip(clicks["user_id"], clicks["article_id"], strict=True))
    shown = today[today["event_type"] == "impression"]
    if len(shown):
        rows = shown.drop_duplicates(
            ["request_id", "article_id"] if shown["request_id"].notna().all() else ["user_id", "article_id", "ts"]
        )
        label = [int((u, a) in clicked) for u, a in zip(rows["user_id"], rows["article_id"], strict=True)]
        frame = pd.DataFrame(
            {
                "user_id": rows["user_id"].to_numpy(),
                "article_id": rows["article_id"].to_numpy(),
                "event_timestamp": rows["ts"].to_numpy(),
                "label": label,
            }
        )
        how = "impressions"
    else:
        if clicks.empty:
            return pd.DataFrame(columns=["user_id", "article_id", "event_timestamp", "label"]), "no clicks"
        # Cap the clicks first so that clicks + their negatives fit max_ranker_rows.
        keep = config.max_ranker_rows // (1 + config.negatives_per_click)
        if len(clicks) > keep:
            clicks = clicks.iloc[np.sort(rng.choice(len(clicks), keep, replace=False))]
        pub = articles.sort_values("published_at")
        pub_s = epoch_seconds(pub["published_at"])
        ids = pub["article_id"].to_numpy()
        t = epoch_seconds(clicks["ts"])
        lo = np.searchsorted(pub_s, t - config.rules.max_age_hours * 3600.0, side="left")
        hi = np.searchsorted(pub_s, t, side="right")
        # (n_clicks, negatives_per_click) uniform draws among the articles eligible at each click.
        draws = lo[:, None] + np.floor(
            rng.random((len(clicks), config.negatives_per_click)) * (hi - lo)[:, None]
        ).astype(np.int64)
        draws = np.minimum(draws, len(ids) - 1)
        users = np.repeat(clicks["user_id"].to_numpy(), config.negatives_per_click)
        times = np.repeat(clicks["ts"].to_numpy(), config.negatives_per_click)
        negatives = ids[draws.ravel()]
        usable = np.repeat(hi - lo > 1, config.negatives_per_click) & np.array(
            [(u, a) not in clicked for u, a in zip(users, negatives, strict=True)], dtype=bool
        )
        frame = pd.concat(
            [
                pd.DataFrame(
                    {
                        "user_id": clicks["user_id"].to_numpy(),
                        "article_id": clicks["article_id"].to_numpy(),
                        "event_timestamp": clicks["ts"].to_numpy(),
                        "label": 1,
                    }
                ),
                pd.DataFrame(
                    {
                        "user_id": users[usable],
                        "article_id": negatives[usable],
                        "event_timestamp": times[usable],
                        "label": 0,
                    }
                ),
            ],
            ignore_index=True,
        )
        how = "clicks + sampled negatives"
    if len(frame) > config.max_ranker_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), config.max_ranker_rows, replace=False))]
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.reset_index(drop=True), how


def ranker_matrix(joined: pd.DataFrame, articles: pd.DataFrame, sub_model: TwoStageModel) -> np.ndarray:
    """The (n, len(RANKER_FEATURES)) matrix of point-in-time joined rows, through the serving
    feature builder. ``joined`` holds historical_features' output; metadata (category,
    published_at) comes from the article table, as at serving time, because an article published
    on the row's day has no stats snapshot yet."""
    n = len(joined)
    meta = articles.drop_duplicates("article_id", keep="last").set_index("article_id")
    category = meta["category"].reindex(joined["article_id"]).astype(object).to_numpy()
    published = meta["published_at"].reindex(joined["article_id"])
    age_h = (epoch_seconds(joined["event_timestamp"]) - epoch_seconds(published)) / 3600.0

    # One user vector and affinity per (user, snapshot day), as serving computes per request:
    # known phase-1 factors, else fold-in of the snapshot's recent reads.
    day = (epoch_seconds(joined["event_timestamp"]) // 86_400).astype(np.int64)
    user_codes, _ = pd.factorize(joined["user_id"].astype(str))
    key_codes, key_values = pd.factorize(user_codes.astype(np.int64) * 100_000 + (day - day.min()))
    first_row = np.full(len(key_values), -1, dtype=np.int64)
    first_row[key_codes[::-1]] = np.arange(n)[::-1]
    cat_codes, cat_values = pd.factorize(pd.Series(category).fillna(""))
    x = np.zeros((len(key_values), sub_model.n_factors), dtype=np.float32)
    has_u = np.zeros(len(key_values), dtype=np.float64)
    aff_u = np.zeros((len(key_values), len(cat_values)), dtype=np.float64)
    top_u = np.full(len(key_values), "", dtype=object)
    cat_pos = {c: i for i, c in enumerate(cat_values)}
    user_columns = [c for c in ("user_id", "recent_reads", "category_clicks", "top_category") if c in joined.columns]
    records = joined[user_columns].iloc[first_row].to_dict("records")
    for k, rec in enumerate(records):
        features = {str(name): v for name, v in rec.items() if not _is_missing(v)}
        vector = sub_model.user_vector(str(rec["user_id"]), features)[0]
        if vector is not None:
            x[k], has_u[k] = vector, 1.0
        for cat, share in category_affinity(features).items():
            if cat in cat_pos:
                aff_u[k, cat_pos[cat]] = share
        top = features.get("top_category")
        top_u[k] = top if isinstance(top, str) else ""

    items = np.array([sub_model.item_index.get(str(a), -1) for a in joined["article_id"]], dtype=np.int64)
    known = items >= 0
    als = np.zeros(n, dtype=np.float64)
    als[known] = np.einsum("ij,ij->i", sub_model.item_factors[items[known]], x[key_codes[known]])
    affinity = aff_u[key_codes, cat_codes]
    is_top = (top_u[key_codes] == np.asarray(cat_values, dtype=object)[cat_codes]) & (top_u[key_codes] != "")

    def num(name: str) -> np.ndarray:
        if name not in joined.columns:
            return np.zeros(n)
        return pd.to_numeric(joined[name], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)

    return ranker_features(
        als_score=als,
        has_factors=has_u[key_codes],
        item_known=known.astype(np.float64),
        views_24h=num("views_24h"),
        clicks_24h=num("clicks_24h"),
        avg_read_time_s=num("avg_read_time_s"),
        age_hours=np.nan_to_num(age_h, nan=0.0),
        affinity=affinity,
        is_top_category=is_top.astype(np.float64),
        clicks_7d=num("clicks_7d"),
        read_ratio_7d=num("read_ratio_7d"),
        avg_session_len_s=num("avg_session_len_s"),
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return bool(np.isnan(value))
    return False


def fit_ranker(x: np.ndarray, y: np.ndarray, config: TrainConfig) -> tuple[LinearRanker | None, str, float]:
    """Logistic regression on standardised features; 20% held out for the AUC that is reported."""
    if len(y) < 50 or y.min() == y.max():
        return None, f"skipped: {len(y)} rows with {int(y.sum())} clicks (need both classes, 50+ rows)", float("nan")
    rng = np.random.default_rng(config.seed)
    test = rng.random(len(y)) < 0.2
    if y[~test].min() == y[~test].max() or y[test].min() == y[test].max():
        test = np.zeros(len(y), dtype=bool)
    mean = x[~test].mean(axis=0)
    scale = x[~test].std(axis=0)
    scale[scale < 1e-9] = 1.0
    clf = LogisticRegression(C=config.ranker_c, max_iter=500)
    clf.fit((x[~test] - mean) / scale, y[~test])
    ranker = LinearRanker(RANKER_FEATURES, mean, scale, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))
    auc = float(roc_auc_score(y[test], ranker.predict(x[test]))) if test.any() else float("nan")
    return ranker, "trained", auc


# -- MLflow ----------------------------------------------------------------------------------


def ensure_experiment(settings: Settings) -> str:
    """Point MLflow at ``settings.tracking_uri`` and return the experiment id of EXPERIMENT.

    With the local SQLite store, artifacts go under ``mlflow_dir/artifacts`` (MLflow's default
    would be ./mlruns relative to whatever the current directory is)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    location = (settings.mlflow_dir / "artifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=location))


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


PREDICT_SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(DataType.string, "user_id"),
            ColSpec(DataType.long, "k"),
            ColSpec(DataType.datetime, "now"),
            ColSpec(DataType.string, "category", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(DataType.string, "user_id"),
            ColSpec(DataType.long, "rank"),
            ColSpec(DataType.string, "article_id"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.string, "reason"),
        ]
    ),
)


def _pip_requirements() -> list[str]:
    versions = package_versions()
    return [
        f"{name}=={versions[name]}"
        for name in ("numpy", "pandas", "scipy", "mlflow")
        if versions[name] != "not installed"
    ]


def log_two_stage(model: TwoStageModel, example_user: str, now: dt.datetime) -> str:
    """Log ``model`` as one pyfunc (``name="model"``) in the active run; returns its model URI."""
    with tempfile.TemporaryDirectory(prefix="reco-model-") as tmp:
        path = model.save(Path(tmp) / PYFUNC_ARTIFACT)
        example = pd.DataFrame(
            {"user_id": [example_user], "k": [10], "now": [pd.Timestamp(now).tz_convert(None)], "category": [""]}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_NAME,
                python_model=TwoStagePyfunc(),
                artifacts={PYFUNC_ARTIFACT: str(path)},
                signature=PREDICT_SIGNATURE,
                input_example=example,
                pip_requirements=_pip_requirements(),
            )
    return str(info.model_uri)


def _log_inputs(digests: dict[str, str], root: Path) -> None:
    from mlflow.data.dataset import Dataset
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    datasets: list[Dataset | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, digest in sorted(digests.items()):
            source = resolve_dataset_source(str((root / name) if not Path(name).is_absolute() else name))
            datasets.append(MetaDataset(source, name=name, digest=digest[:16]))  # type: ignore[abstract]
    mlflow.log_inputs(datasets=datasets, contexts=["training"] * len(datasets), tags_list=[{}] * len(datasets))


# -- the step --------------------------------------------------------------------------------


def train(settings: Settings, day: dt.date, config: TrainConfig | None = None) -> TrainResult:
    """Train the two-stage model on the silver days before ``day`` and log it to MLflow.

    Raises ``NoDataError`` when the window holds no silver events or no click/read.
    """
    from reco.featurestore import historical_features

    config = config or TrainConfig()
    window = config.window_days or settings.train_window_days
    started = time.perf_counter()
    days = training_days(settings, day, window)
    if not days:
        raise NoDataError(
            f"no silver events in the {window} days before {day}: training needs at least one day of events "
            f"before the test day (with --no-catch-up, run ingest for those days first)"
        )
    # The ranker's day: the last training day, with the ALS phase 1 on the days before it.
    ranker_day = days[-1] if len(days) > 1 else None
    events, files = read_events(settings, days, impressions_on=ranker_day)
    articles = read_articles(settings)
    conf = confidence(events, config.weights)
    if not (conf > 0).any():
        raise NoDataError(f"no click or read in the silver days {days[0]}..{days[-1]}")

    before = pd.Timestamp(ranker_day, tz="UTC") if ranker_day else None
    matrix, partial = build_matrix(events, config.weights, before=before)
    user_factors, item_factors, phase1, als_seconds = fit_als(matrix.matrix, partial, config)

    end = pd.Timestamp(day, tz="UTC")
    popularity = recency_popularity(events, conf, matrix.item_ids, end, config.popularity_half_life_hours)

    ranker: LinearRanker | None = None
    ranker_auc = float("nan")
    n_rows = 0
    if ranker_day is None or phase1 is None or partial is None:
        ranker_status = "skipped: a single training day leaves no out-of-sample day for the ranker"
    else:
        rows, how = ranker_rows(events, articles, ranker_day, config)
        n_rows = len(rows)
        if rows.empty:
            ranker_status = f"skipped: no rows on {ranker_day} ({how})"
        else:
            joined = historical_features(settings, rows, features=JOINED_FEATURES)
            x = ranker_matrix(joined, articles, _sub_model(matrix, phase1, partial, config))
            ranker, status, ranker_auc = fit_ranker(x, joined["label"].to_numpy(dtype=np.int64), config)
            ranker_status = (
                f"{status} on {n_rows} rows ({how}) of {ranker_day}, holdout AUC {ranker_auc:.3f}" if ranker else status
            )
    log.info("ranker: %s", ranker_status)

    csr = matrix.matrix
    catalog = None
    snapshot_day = day - dt.timedelta(days=1)
    try:
        catalog = ArticleFeatures.from_frame(
            catalogue_frame(
                settings,
                snapshot_day,
                until=end.to_pydatetime() + dt.timedelta(days=1),
                max_age_hours=config.rules.max_age_hours,
            )
        )
    except InputFileError:
        catalog = None
    fingerprint, digests = file_fingerprint([*files, settings.silver_articles_path], settings.lake_dir)
    model = TwoStageModel(
        user_ids=matrix.user_ids,
        item_ids=matrix.item_ids,
        user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
        history_indptr=csr.indptr.astype(np.int64),
        history_items=csr.indices.astype(np.int32),
        popularity=popularity,
        item_users=np.diff(csr.tocsc().indptr).astype(np.int32),
        regularization=config.regularization,
        alpha=config.alpha,
        fold_in_confidence=config.weights.click,
        rules=config.rules,
        ranker=ranker,
        catalog=catalog,
        item_categories=articles.drop_duplicates("article_id", keep="last")
        .set_index("article_id")["category"]
        .reindex(matrix.item_ids)
        .fillna("")
        .astype(str)
        .to_numpy(dtype=object),
        trained_until=end.isoformat(),
        fingerprint=fingerprint,
    )
    compute_seconds = time.perf_counter() - started

    log_started = time.perf_counter()
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{day.isoformat()}") as run:
        mlflow.set_tags(
            {
                "reco.day": day.isoformat(),
                "reco.step": "train",
                "git_commit": git_commit(),
                "data_fingerprint": fingerprint,
                "ranker_status": ranker_status,
                **{f"pkg.{k}": v for k, v in package_versions().items()},
            }
        )
        params = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("weights", "rules")}
        params |= {f"weights.{k}": v for k, v in dataclasses.asdict(config.weights).items()}
        params |= {f"rules.{k}": v for k, v in dataclasses.asdict(config.rules).items()}
        params |= {
            "window_days": window,
            "train_from": days[0].isoformat(),
            "train_to": days[-1].isoformat(),
            "test_day": day.isoformat(),
        }
        mlflow.log_params(params)
        _log_inputs(digests, settings.lake_dir)
        mlflow.log_dict(package_versions(), "environment/packages.json")
        mlflow.log_dict({"fingerprint": fingerprint, "files": digests}, "data/fingerprint.json")
        model_uri = log_two_stage(model, str(matrix.user_ids[0]), end.to_pydatetime())
        mlflow.set_tag("model_uri", model_uri)
        log_seconds = time.perf_counter() - log_started
        train_seconds = time.perf_counter() - started
        metrics = {
            "train_seconds": train_seconds,
            "compute_seconds": compute_seconds,
            "als_fit_seconds": als_seconds,
            "log_seconds": log_seconds,
            "n_users": float(csr.shape[0]),
            "n_items": float(csr.shape[1]),
            "n_interactions": float(csr.nnz),
            "n_events": float(len(events)),
            "ranker_rows": float(n_rows),
        }
        if not np.isnan(ranker_auc):
            metrics["ranker_auc"] = ranker_auc
        mlflow.log_metrics(metrics)
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        train_seconds=round(train_seconds, 3),
        als_fit_seconds=round(als_seconds, 3),
        n_users=int(csr.shape[0]),
        n_items=int(csr.shape[1]),
        n_interactions=int(csr.nnz),
        ranker_status=ranker_status,
        fingerprint=fingerprint,
        ranker_rows=n_rows,
        log_seconds=round(log_seconds, 3),
    )


def load_run_model(settings: Settings, run_id: str) -> TwoStageModel:
    """The two-stage model logged by training run ``run_id`` (through pyfunc, as served)."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(run_id)
    uri = run.data.tags.get("model_uri") or f"runs:/{run_id}/{MODEL_ARTIFACT_NAME}"
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(wrapper, TwoStagePyfunc) or wrapper.model is None:
        raise NoDataError(f"run {run_id} logged no two-stage model")
    return wrapper.model
