"""Daily training: silver days before D -> one two-stage model, logged to MLflow as one pyfunc.

``train(settings, D)`` (in ``step``) uses the silver partitions D-W..D-1
(W = ``settings.train_window_days``); D itself is the test day of ``reco.evaluate``. The stages:

1. **data** (``data``): the window's silver events and article metadata; confidence = ``click``
   per click + (``read`` + dwell bonus) per read (``ConfidenceWeights``, in ``config``).
2. **ALS** (``als``): the (n_users, n_items) CSR of summed confidences, fitted in two phases so that
   the ranker's ALS scores on the last training day L are out-of-sample, on the GPU when
   ``settings.train_device`` is "gpu" and CUDA is usable (else the CPU, with the reason recorded);
   the popularity baseline (recency-weighted, half-life ``popularity_half_life_hours``).
3. **ranker** (``ranker``): logistic regression on L's impressions and clicks + sampled negatives,
   features joined point-in-time through Feast. With a single training day there is no
   out-of-sample day and the ranker is skipped (logged).
4. **MLflow** (``tracking``): params, metrics, seconds per phase, the sha256 fingerprint of the exact
   silver files, one ``log_input`` dataset per file, git commit, package versions, and the model as
   one pyfunc (``name="model"``); ``load_run_model`` loads it back as served.

``config`` holds ``TrainConfig`` (every field logged as an MLflow param) and ``TrainResult``.
"""

from reco.train.als import (
    AlsFit,
    DeviceChoice,
    InteractionMatrix,
    build_matrix,
    fit_als,
    recency_popularity,
    select_als_device,
)
from reco.train.config import EXPERIMENT, JOINED_FEATURES, ConfidenceWeights, TrainConfig, TrainResult
from reco.train.data import catalogue_frame, confidence, file_fingerprint, read_articles, read_events, training_days
from reco.train.ranker import fit_ranker, ranker_matrix, ranker_rows
from reco.train.step import train
from reco.train.tracking import (
    PREDICT_SIGNATURE,
    ensure_experiment,
    git_commit,
    load_run_model,
    log_two_stage,
    package_versions,
)

__all__ = [
    "EXPERIMENT",
    "JOINED_FEATURES",
    "PREDICT_SIGNATURE",
    "AlsFit",
    "ConfidenceWeights",
    "DeviceChoice",
    "InteractionMatrix",
    "TrainConfig",
    "TrainResult",
    "build_matrix",
    "catalogue_frame",
    "confidence",
    "ensure_experiment",
    "file_fingerprint",
    "fit_als",
    "fit_ranker",
    "git_commit",
    "load_run_model",
    "log_two_stage",
    "package_versions",
    "ranker_matrix",
    "ranker_rows",
    "read_articles",
    "read_events",
    "recency_popularity",
    "select_als_device",
    "train",
    "training_days",
]
