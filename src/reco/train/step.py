"""The training step: ``train(settings, D)`` runs the stages in order and logs one run to MLflow."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

import mlflow
import numpy as np
import pandas as pd

from reco.errors import InputFileError, NoDataError
from reco.model import ArticleFeatures, LinearRanker, TwoStageModel
from reco.settings import Settings
from reco.train.als import (
    _sub_model,
    build_matrix,
    choose_als_for_window,
    fit_als,
    recency_popularity,
    select_als_device,
)
from reco.train.config import JOINED_FEATURES, TrainConfig, TrainResult
from reco.train.data import catalogue_frame, confidence, file_fingerprint, read_articles, read_events, training_days
from reco.train.ranker import fit_ranker, ranker_matrix, ranker_rows
from reco.train.rules_choice import RulesChoice, choose_rules, validation_model
from reco.train.rules_choice import apply as apply_rules
from reco.train.tracking import _log_inputs, ensure_experiment, git_commit, log_two_stage, package_versions
from reco.train.windows import training_windows

log = logging.getLogger(__name__)


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
    windows = training_windows(settings, events, articles, config.rules, learn=config.learn_windows)
    config = dataclasses.replace(config, rules=windows.rules(config.rules))
    log.info("windows: %s", windows.summary())

    before = pd.Timestamp(ranker_day, tz="UTC") if ranker_day else None
    matrix, partial = build_matrix(events, config.weights, before=before)
    device = select_als_device(settings.train_device)
    config, als_choice = choose_als_for_window(settings, config, matrix, partial, events, articles, before, device)
    log.info("ALS hyper-parameters: %s", als_choice.summary())
    als = fit_als(matrix.matrix, partial, config, device)
    user_factors, item_factors, phase1, als_seconds = als.user_factors, als.item_factors, als.phase1, als.seconds
    log.info("ALS fitted on %s in %.2f s (%s)", als.device, als_seconds, als.device_reason)

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
            x = ranker_matrix(joined, articles, _sub_model(matrix, phase1, partial, config), events)
            ranker, status, ranker_auc = fit_ranker(x, joined["label"].to_numpy(dtype=np.int64), config)
            ranker_status = (
                f"{status} on {n_rows} rows ({how}) of {ranker_day}, holdout AUC {ranker_auc:.3f}" if ranker else status
            )
    log.info("ranker: %s", ranker_status)

    rules_choice = RulesChoice({"max_per_category": config.rules.max_per_category, "decay": True},
                               how="kept: no validation day (a single training day)")  # fmt: skip
    if ranker_day is not None and phase1 is not None and partial is not None and before is not None:
        earlier = (events["ts"] < before).to_numpy()
        popularity_at_l = recency_popularity(
            events[earlier], conf[earlier], matrix.item_ids, before, config.popularity_half_life_hours
        )
        at_l = validation_model(_sub_model(matrix, phase1, partial, config), partial, matrix.user_ids,
                                matrix.item_ids, popularity_at_l, ranker)  # fmt: skip
        rules_choice = choose_rules(settings, at_l, ranker_day)
        config = dataclasses.replace(config, rules=apply_rules(config.rules, rules_choice))
    log.info("rules: %s", rules_choice.summary())

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
                "train_device": als.device,
                "train_device_reason": als.device_reason,
                **windows.tags(),
                **als_choice.tags(),
                **rules_choice.tags(),
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
            "train_device": als.device,
        }
        mlflow.log_params(params)
        _log_inputs(digests, settings.lake_dir)
        mlflow.log_dict(package_versions(), "environment/packages.json")
        mlflow.log_dict({"fingerprint": fingerprint, "files": digests}, "data/fingerprint.json")
        mlflow.log_dict({"windows": windows.summary(), "als_grid": als_choice.summary()}, "train/choices.json")
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
            **als_choice.metrics(),
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
        train_device=als.device,
        train_device_reason=als.device_reason,
        windows=windows.summary(),
        als_grid=als_choice.summary(),
        rules_choice=rules_choice.summary(),
    )
