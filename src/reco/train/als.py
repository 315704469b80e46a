"""ALS retrieval (``implicit``, its own threads, ``OPENBLAS_NUM_THREADS=1``) and the popularity baseline.

The interactions are summed per (user, article) into a (n_users, n_items) CSR. ALS is fitted in two
phases to keep the ranker honest at no extra cost: phase 1 runs most iterations on the days before
the last training day L; its factors score L's impressions for the ranker (the ALS score of a row is
then out-of-sample, as it is at serving time — an ALS fitted on L's clicks would "know" the labels
and the ranker would learn to trust it far too much); phase 2 continues from those factors for a
few iterations on the whole window, and that is the ALS that is served. Total iterations equal a
plain fit's.

Device: ALS runs on the CPU unless ``gpu`` is requested (``RECO_TRAIN_DEVICE``) and implicit's CUDA
ALS is usable (``select_als_device``); otherwise it falls back to the CPU and says why. implicit's GPU
model keeps existing factors when ``fit`` is called again, as the CPU one does, so the two phases are
the same on both devices; its factors are copied back to numpy (float32) for everything downstream.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from reco.model import TwoStageModel, epoch_seconds
from reco.settings import Settings
from reco.train.config import ConfidenceWeights, TrainConfig
from reco.train.data import confidence

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]


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


@dataclass(frozen=True)
class DeviceChoice:
    """The device ALS is fitted on and why (``reason`` is logged and recorded with the run)."""

    device: Device
    reason: str
    # implicit.gpu.als.AlternatingLeastSquares (or a stand-in in tests) when ``device`` is "gpu".
    gpu_als: Callable[..., Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class AlsFit:
    """A fitted ALS: (n_users, factors) and (n_items, factors) float32 numpy factors, the phase-1
    factors (or None), fit seconds, and the device it ran on with the reason."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    phase1: tuple[np.ndarray, np.ndarray] | None
    seconds: float
    device: Device = "cpu"
    device_reason: str = "cpu requested"


def _cuda_extension_built() -> bool:
    return importlib.util.find_spec("implicit.gpu._cuda") is not None


def _cuda_error() -> str:
    """Why implicit's CUDA extension does not start: a missing CUDA library, no driver, no device.
    implicit says it only once, as a warning when it is first imported."""
    try:
        importlib.import_module("implicit.gpu._cuda").get_device_count()
    except Exception as error:  # what the extension raises is the answer
        return f"{type(error).__name__}: {error}"
    return "implicit.gpu.HAS_CUDA is false"


def _gpu_als() -> tuple[Callable[..., Any] | None, str]:
    """implicit's GPU ALS class when CUDA is usable here, else None and why not."""
    try:
        import implicit.gpu
    except ImportError as error:
        return None, f"implicit.gpu cannot be imported ({error})"
    if not implicit.gpu.HAS_CUDA:
        if not _cuda_extension_built():
            return None, "implicit was built without CUDA"
        if not implicit.gpu.HAS_RMM:
            return None, "implicit's CUDA extension needs the RAPIDS memory manager (rmm), which is not installed"
        return None, f"implicit's CUDA extension is built but does not start ({_cuda_error()})"
    from implicit.gpu.als import AlternatingLeastSquares as GpuAlternatingLeastSquares

    try:
        GpuAlternatingLeastSquares(factors=2, iterations=1)
    except Exception as error:  # any failure to build the model means: not usable here
        return None, f"constructing implicit's GPU ALS failed ({type(error).__name__}: {error})"
    return GpuAlternatingLeastSquares, "CUDA is usable"


def select_als_device(requested: Device) -> DeviceChoice:
    """The device to fit ALS on: the GPU only when requested and usable, else the CPU with the reason."""
    if requested != "gpu":
        return DeviceChoice("cpu", "cpu requested")
    gpu_als, why = _gpu_als()
    if gpu_als is None:
        choice = DeviceChoice("cpu", f"gpu requested but {why}; fitting on the cpu")
        log.warning("ALS: %s", choice.reason)
        return choice
    log.info("ALS: gpu requested and %s", why)
    return DeviceChoice("gpu", f"gpu requested and {why}", gpu_als)


def _als(config: TrainConfig, iterations: int) -> AlternatingLeastSquares:
    return AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=config.alpha,
        iterations=iterations,
        random_state=config.seed,
        num_threads=config.num_threads,
    )


def _two_phases(partial: sp.csr_matrix | None, config: TrainConfig) -> bool:
    return partial is not None and partial.nnz > 0 and config.warm_iterations < config.iterations


def fit_als(
    full: sp.csr_matrix, partial: sp.csr_matrix | None, config: TrainConfig, device: DeviceChoice | None = None
) -> AlsFit:
    """ALS factors of the full window, phase-1 factors (or None), fit seconds and the device used.

    With ``partial``: ``iterations - warm_iterations`` on it, snapshot, then ``warm_iterations``
    more on ``full`` starting from there (implicit keeps existing factors). Without: a plain fit.
    ``device`` defaults to the CPU.
    """
    device = device or DeviceChoice("cpu", "cpu requested")
    started = time.perf_counter()
    if device.device == "gpu" and device.gpu_als is not None:
        user_factors, item_factors, phase1 = _fit_gpu(device.gpu_als, full, partial, config)
    elif not _two_phases(partial, config):
        model = _als(config, config.iterations)
        model.fit(full, show_progress=False)
        user_factors, item_factors, phase1 = model.user_factors, model.item_factors, None
    else:
        assert partial is not None
        model = _als(config, config.iterations - config.warm_iterations)
        model.fit(partial, show_progress=False)
        phase1 = (model.user_factors.copy(), model.item_factors.copy())
        model.iterations = config.warm_iterations
        model.fit(full, show_progress=False)
        user_factors, item_factors = model.user_factors, model.item_factors
    return AlsFit(user_factors, item_factors, phase1, time.perf_counter() - started, device.device, device.reason)


def _fit_gpu(
    gpu_als: Callable[..., Any], full: sp.csr_matrix, partial: sp.csr_matrix | None, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The same two phases on implicit's GPU ALS; factors come back as float32 numpy arrays.

    implicit 0.7.3's GPU ``fit`` ignores ``alpha`` (its CPU ``fit`` multiplies the matrix by it), so
    the matrices are scaled here and the model is given alpha=1: the objective is the CPU's, and
    stays so if a later implicit applies alpha on the GPU too. Its ``fit`` initialises only factors
    that are still None, so calling it again continues from phase 1, as on the CPU. Its random
    initialisation is not the CPU's: the two devices agree in quality, not digit for digit.
    """

    def model(iterations: int) -> Any:
        return gpu_als(
            factors=config.factors,
            regularization=config.regularization,
            alpha=1.0,
            iterations=iterations,
            random_state=config.seed,
        )

    def scaled(matrix: sp.csr_matrix) -> sp.csr_matrix:
        return (matrix * np.float32(config.alpha)).astype(np.float32) if config.alpha != 1.0 else matrix

    def host(factors: Any) -> np.ndarray:
        return np.ascontiguousarray(factors.to_numpy(), dtype=np.float32)

    if not _two_phases(partial, config):
        gpu = model(config.iterations)
        gpu.fit(scaled(full), show_progress=False)
        return host(gpu.user_factors), host(gpu.item_factors), None
    assert partial is not None
    gpu = model(config.iterations - config.warm_iterations)
    gpu.fit(scaled(partial), show_progress=False)
    phase1 = (host(gpu.user_factors), host(gpu.item_factors))  # copies: device -> host
    gpu.iterations = config.warm_iterations
    gpu.fit(scaled(full), show_progress=False)
    return host(gpu.user_factors), host(gpu.item_factors), phase1


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


# -- choosing the hyper-parameters ------------------------------------------------------------

# Fewer validation users than this: the search is skipped (its scores would be noise).
MIN_VALIDATION_USERS = 20
VALIDATION_K = 10
# RuleSettings-free names of the searched hyper-parameters -> the setting that pins each.
ALS_PINS = {"factors": "als_factors", "regularization": "als_regularization", "alpha": "als_alpha"}


@dataclass(frozen=True)
class AlsValidation:
    """The validation day's task for an ALS fitted on the days before it: for each of ``users``
    ((n,) matrix rows, each with training history), the items they clicked or read that day
    (``truth``: (n, n_items) CSR, one row per user), and which items were eligible
    for them (``eligible`` (n, n_items) bool: published, younger than max age at the user's first
    event of the day, with training data, not in the user's history)."""

    day: str
    users: np.ndarray
    truth: sp.csr_matrix
    eligible: np.ndarray


def als_validation(
    matrix: InteractionMatrix,
    partial: sp.csr_matrix,
    events: pd.DataFrame,
    articles: pd.DataFrame,
    day: pd.Timestamp,
    *,
    max_age_hours: float,
    max_users: int,
    seed: int,
) -> AlsValidation:
    """The validation task of ``day`` (midnight UTC; its events are those of ``matrix`` not in
    ``partial``), with the model's eligibility rules; at most ``max_users`` users (a seeded sample)."""
    today = events[(events["ts"] >= day) & (events["ts"] < day + pd.Timedelta(days=1))]
    positive = today[today["event_type"].isin(["click", "read"])]
    rows = pd.Index(matrix.user_ids).get_indexer(positive["user_id"])
    cols = pd.Index(matrix.item_ids).get_indexer(positive["article_id"])
    known = (rows >= 0) & (cols >= 0)
    rows, cols = rows[known], cols[known]
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=partial.shape)
    # Truth: what they took that day and had not taken before; users with a history only.
    history = partial.copy()
    history.data = np.ones_like(history.data)
    truth = (seen > 0).astype(np.int8) - (seen > 0).multiply(history > 0).astype(np.int8)
    truth.eliminate_zeros()
    truth = truth.tocsr()
    users = np.flatnonzero((np.diff(truth.indptr) > 0) & (np.diff(partial.indptr) > 0))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    truth = truth[users]
    first = today.groupby("user_id")["ts"].min()
    now_s = epoch_seconds(first.reindex(matrix.user_ids[users]).to_numpy())
    published = articles.drop_duplicates("article_id", keep="last").set_index("article_id")["published_at"]
    pub_s = epoch_seconds(published.reindex(matrix.item_ids).to_numpy())  # NaN: no metadata, never eligible
    trained = np.bincount(partial.indices, minlength=partial.shape[1]) > 0
    with np.errstate(invalid="ignore"):
        eligible = (
            (pub_s[None, :] <= now_s[:, None])
            & (pub_s[None, :] > now_s[:, None] - max_age_hours * 3600.0)
            & trained[None, :]
        )
    hist = history[users].tocoo()
    eligible[hist.row, hist.col] = False
    return AlsValidation(day.date().isoformat(), users, truth, eligible)


def validation_ndcg(user_factors: np.ndarray, item_factors: np.ndarray, task: AlsValidation) -> float:
    """Mean binary NDCG@10 of ALS retrieval (x_u · y_i over the eligible items) on ``task``.
    ``user_factors`` (n_users, f) and ``item_factors`` (n_items, f) are indexed like the matrix."""
    k = VALIDATION_K
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    n_truth = np.diff(task.truth.indptr)
    ideal = np.cumsum(discount)[np.minimum(n_truth, k) - 1]
    total = 0.0
    items = item_factors.T.astype(np.float32)
    for c0 in range(0, len(task.users), 512):
        chunk = slice(c0, c0 + 512)
        scores = user_factors[task.users[chunk]].astype(np.float32) @ items
        scores[~task.eligible[chunk]] = -np.inf
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        relevant = task.truth[chunk].toarray() > 0
        hits = np.take_along_axis(relevant, top, axis=1) & np.isfinite(top_scores)
        total += float(((hits * discount[:kk]).sum(axis=1) / ideal[chunk]).sum())
    return total / max(1, len(task.users))


@dataclass
class AlsChoice:
    """The ALS hyper-parameters a run uses and how they were chosen: ``how`` is "grid", "pinned"
    (every one set by a setting), or "default: <why no search>"; ``scores`` one entry per grid point
    (its values and ``ndcg@10``), ``pinned`` the settings that fixed a value."""

    factors: int
    regularization: float
    alpha: float
    how: str
    scores: list[dict[str, float]] = field(default_factory=list)
    pinned: dict[str, float] = field(default_factory=dict)
    validation_day: str | None = None
    validation_users: int = 0
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: the search's seconds and each grid point's NDCG@10."""
        out = {"als_grid_seconds": self.seconds}
        for point in self.scores:
            key = f"f{point['factors']:g}_r{point['regularization']:g}_a{point['alpha']:g}"
            out[f"als_grid.{key}.ndcg_at_10"] = point["ndcg@10"]
        return out

    def tags(self) -> dict[str, str]:
        """MLflow tags: how the ALS hyper-parameters were chosen."""
        return {"als_grid.how": self.how}

    def summary(self) -> dict[str, Any]:
        """The run summary's ``train.als_grid``."""
        out: dict[str, Any] = {
            "chosen": {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha},
            "how": self.how,
            "seconds": round(self.seconds, 3),
        }
        if self.pinned:
            out["pinned"] = dict(self.pinned)
        if self.scores:
            out |= {"validation_day": self.validation_day, "validation_users": self.validation_users}
            out["scores"] = list(self.scores)
        return out


def choose_als(
    config: TrainConfig,
    pins: dict[str, float | None],
    task: Callable[[], AlsValidation | str],
    partial: sp.csr_matrix | None,
    device: DeviceChoice | None = None,
) -> tuple[TrainConfig, AlsChoice]:
    """``config`` with the ALS hyper-parameters to fit the window with, and the record of the choice.

    ``pins``: "factors" / "regularization" / "alpha" -> a value set by a setting (None: free). The
    free ones are searched over ``config.als_grid_*``: an ALS is fitted on ``partial`` (the days
    before the validation day, phase 1's iterations) for each point, and the best NDCG@10 on
    ``task()`` (an ``AlsValidation``, or why there is none) wins; the first point wins ties.
    Without a search (everything pinned, ``config.search_als`` off, no validation task) the
    config's values stand, pinned ones replaced.
    """
    started = time.perf_counter()
    pinned = {name: value for name, value in pins.items() if value is not None}
    base = dataclasses.replace(config, **{k: type(getattr(config, k))(v) for k, v in pinned.items()})

    def keep(how: str) -> tuple[TrainConfig, AlsChoice]:
        choice = AlsChoice(base.factors, base.regularization, base.alpha, how, pinned=pinned)
        choice.seconds = time.perf_counter() - started
        return base, choice

    if len(pinned) == len(ALS_PINS):
        return keep("pinned")
    if not config.search_als:
        return keep("default: the search is off in the training config")
    if partial is None or partial.nnz == 0:
        return keep("default: a single training day leaves no validation day")
    validation = task()
    if isinstance(validation, str):
        return keep(f"default: {validation}")
    if len(validation.users) < MIN_VALIDATION_USERS:
        return keep(f"default: {len(validation.users)} validation users, fewer than {MIN_VALIDATION_USERS}")
    axes = {
        "factors": config.als_grid_factors,
        "regularization": config.als_grid_regularization,
        "alpha": config.als_grid_alpha,
    }
    grid = {name: [pinned[name]] if name in pinned else list(values) for name, values in axes.items()}
    scores: list[dict[str, float]] = []
    best: tuple[float, TrainConfig] | None = None
    for factors, regularization, alpha in itertools.product(grid["factors"], grid["regularization"], grid["alpha"]):
        point = dataclasses.replace(
            base,
            factors=int(factors),
            regularization=float(regularization),
            alpha=float(alpha),
            iterations=max(1, config.iterations - config.warm_iterations),
        )
        fit = fit_als(partial, None, point, device)
        ndcg = validation_ndcg(fit.user_factors, fit.item_factors, validation)
        scores.append(
            {
                "factors": point.factors,
                "regularization": point.regularization,
                "alpha": point.alpha,
                "ndcg@10": round(ndcg, 5),
                "seconds": round(fit.seconds, 3),
            }
        )
        if best is None or ndcg > best[0]:
            best = (ndcg, point)
    assert best is not None
    chosen = dataclasses.replace(
        base, factors=best[1].factors, regularization=best[1].regularization, alpha=best[1].alpha
    )
    choice = AlsChoice(
        chosen.factors,
        chosen.regularization,
        chosen.alpha,
        "grid",
        scores=scores,
        pinned=pinned,
        validation_day=validation.day,
        validation_users=len(validation.users),
        seconds=time.perf_counter() - started,
    )
    return chosen, choice


def als_pins(settings: Settings) -> dict[str, float | None]:
    """The ALS hyper-parameters pinned by settings (``RECO_ALS_*``), None where free."""
    return {name: getattr(settings, setting) for name, setting in ALS_PINS.items()}


def choose_als_for_window(
    settings: Settings,
    config: TrainConfig,
    matrix: InteractionMatrix,
    partial: sp.csr_matrix | None,
    events: pd.DataFrame,
    articles: pd.DataFrame,
    validation_day: pd.Timestamp | None,
    device: DeviceChoice | None = None,
) -> tuple[TrainConfig, AlsChoice]:
    """``choose_als`` for a training run: pins from the settings, the validation day (midnight UTC;
    None with a single training day) scored with ``config.rules``' eligibility."""

    def task() -> AlsValidation | str:
        if validation_day is None or partial is None:
            return "a single training day leaves no validation day"
        return als_validation(
            matrix,
            partial,
            events,
            articles,
            validation_day,
            max_age_hours=config.rules.max_age_hours,
            max_users=config.als_grid_max_users,
            seed=config.seed,
        )

    return choose_als(config, als_pins(settings), task, partial, device)
