"""Monitor: has the world moved away from what the model was trained on?

Compares the feature snapshot of day D (what the model reads when it serves on D+1) with the
snapshots of the days before D (the training reference) using Evidently's data drift preset,
archives the HTML report under ``<workdir>/reports/<D>/`` and says whether a retraining is
recommended (share of drifted columns above a threshold). Beside the feature drift it reports
what the lake says about outcomes: the trend of CTR over the window and how the category mix
of what was recommended (impressions) and of what was clicked on D moved against the
reference days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from reco.errors import InputFileError, NoDataError
from reco.features import SHORT_WINDOW_DAYS
from reco.lake import list_dates, partition_files
from reco.settings import Settings

# The model-input columns watched per feature table: (numerical, categorical). Ids, timestamps,
# list/map columns (recent_reads, category_clicks) and published_at (a timestamp that only
# says how new the catalogue is, which age_hours already captures) are left out: they differ
# between any two days by construction and would make every day look drifted.
FEATURE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "user_stats": (("clicks_7d", "read_ratio_7d", "avg_session_len_s"), ("top_category",)),
    "article_stats": (("views_24h", "clicks_24h", "ctr_24h", "avg_read_time_s", "age_hours"), ("category",)),
}

# Distances rather than p-values: on tens of thousands of rows a KS or chi² test flags shifts
# nobody would retrain for, and Evidently's automatic choice switches between p-values and
# distances at 1,000 rows, so a score would change meaning with the traffic. Both distances
# are 0 for identical distributions; Evidently calls a column drifted at >= 0.1 (its default).
NUM_METHOD = "wasserstein"  # Wasserstein distance normed by the reference std
CAT_METHOD = "jensenshannon"  # Jensen-Shannon distance of the category frequencies
COLUMN_THRESHOLD = 0.1


@dataclass
class DriftResult:
    """What ``monitor`` found for one day (also saved as ``reports/<D>/drift.json``); ``summary()`` is a compact form."""

    date: str
    # Share of drifted columns, 0..1 (Evidently's DriftedColumnsCount share).
    share: float
    # Per-column drift score, keyed "<table>.<column>": normed Wasserstein distance (numerical)
    # or Jensen-Shannon distance (categorical); 0 = same distribution, drifted at >= column_threshold.
    columns: dict[str, float]
    drifted: list[str]
    threshold: float
    retrain_recommended: bool
    # HTML report (empty when no report could be made, see ``note``).
    report_path: str
    # One entry per day of the window that has events, oldest first:
    # {"date": "YYYY-MM-DD", "impressions": n, "clicks": n, "ctr": clicks / impressions}.
    ctr_trend: list[dict[str, Any]]
    # Category -> share of D's impressions (sums to 1; {} without impressions on D).
    category_mix: dict[str, float]
    # Total variation distance (0..1) between D's impression mix and the reference days' mix.
    category_mix_shift: float
    # The same for clicks: while the serving policy lags, a shift of readers' tastes shows in
    # what they click long before it shows in what was recommended.
    clicked_category_mix: dict[str, float] = field(default_factory=dict)
    clicked_category_mix_shift: float = 0.0
    # D's CTR relative to the reference days' pooled CTR: -0.2 = a fifth fewer clicks per impression.
    ctr_change: float | None = None
    column_threshold: float = COLUMN_THRESHOLD
    methods: dict[str, str] = field(default_factory=dict)
    reference_dates: list[str] = field(default_factory=list)
    # Rows compared per side after sampling, keyed "current.<table>" / "reference.<table>".
    rows: dict[str, int] = field(default_factory=dict)
    # True while the reference holds snapshots whose 7-day windows were not full yet (the lake's
    # first week): the share then measures the lake filling up as much as the readers changing.
    warmup: bool = False
    seconds: float = 0.0
    note: str = ""

    def summary(self) -> dict[str, Any]:
        """The compact form for the run summary (no per-day trend, no per-column scores)."""
        return {
            "share": round(self.share, 4),
            "retrain_recommended": self.retrain_recommended,
            "threshold": self.threshold,
            "drifted": list(self.drifted),
            "category_mix_shift": round(self.category_mix_shift, 4),
            "clicked_category_mix_shift": round(self.clicked_category_mix_shift, 4),
            "ctr": self.ctr_trend[-1]["ctr"] if self.ctr_trend and self.ctr_trend[-1]["date"] == self.date else None,
            "ctr_change": self.ctr_change,
            "warmup": self.warmup,
            "report_path": self.report_path,
            "note": self.note,
        }


@dataclass
class ColumnDrift:
    """Evidently's verdict on one reference/current pair of frames."""

    share: float
    drifted_count: int
    scores: dict[str, float]
    drifted: list[str]
    methods: dict[str, str]
    html: str


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    drift_share: float = 0.5,
) -> ColumnDrift:
    """Run Evidently's DataDriftPreset on two frames holding the same columns.

    NaN cells are ignored column by column (Evidently drops them), so frames may stack tables
    with different rows side by side. Columns empty on either side must be left out by the caller.
    ``drift_share`` only sets the dataset-level verdict printed in the HTML report.
    """
    columns = [*numerical, *categorical]
    definition = DataDefinition(numerical_columns=list(numerical), categorical_columns=list(categorical))
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                drift_share=drift_share,
                num_method=NUM_METHOD,
                cat_method=CAT_METHOD,
                threshold=COLUMN_THRESHOLD,
            )
        ],
        include_tests=True,
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    out = snapshot.dict()
    share, count = 0.0, 0
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    for metric in out["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
        elif kind.endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config.get("method"))
    # Evidently's own per-column decision (its ValueDrift test fails when the column drifted),
    # so ``drifted`` always agrees with the count behind ``share``.
    drifted = sorted(
        test["metric_config"]["params"]["column"]
        for test in out["tests"]
        if str(test["metric_config"]["params"].get("type", "")).endswith(":ValueDrift") and test["status"] == "FAIL"
    )
    return ColumnDrift(share, count, scores, drifted, methods, snapshot.get_html_str(as_iframe=False))


def load_snapshot(settings: Settings, table: str, day: dt.date) -> pd.DataFrame | None:
    """The watched columns of one feature table as of the end of ``day``; None if it was not built."""
    files = partition_files(settings.features_dir / table, day)
    if not files:
        return None
    numerical, categorical = FEATURE_COLUMNS[table]
    wanted = [*numerical, *categorical]
    frames = []
    for path in files:
        present = set(pq.read_schema(path).names)
        missing = [c for c in wanted if c not in present]
        if missing:
            raise InputFileError(path, "feature snapshot lacks a watched column", column=missing[0])
        frames.append(pq.read_table(path, columns=wanted).to_pandas())
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for column in numerical:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        frame[column] = frame[column].astype("string").astype(object)
    return frame


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    # Deterministic: same snapshot, same rows, same scores on a re-run of the day.
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def _stack(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Tables with different rows as one frame: columns renamed "<table>.<column>", rows stacked."""
    parts = [frame.add_prefix(f"{table}.") for table, frame in tables.items()]
    return pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()


def window_counts(settings: Settings, days: list[dt.date]) -> pd.DataFrame:
    """Events of ``days`` counted by (date, event_type, category) from the silver lake.

    Returns a frame with columns date (str, YYYY-MM-DD), event_type, category, n. Articles
    missing from the silver catalogue count as category "unknown".
    """
    files = [str(f) for day in days for f in partition_files(settings.silver_events_dir, day)]
    columns = ["date", "event_type", "category", "n"]
    if not files:
        return pd.DataFrame(columns=columns)
    con = duckdb.connect()
    try:
        events = "read_parquet(?, hive_partitioning = true)"
        if settings.silver_articles_path.is_file():
            query = f"""
                SELECT CAST(e.date AS VARCHAR) AS date, e.event_type,
                       coalesce(a.category, 'unknown') AS category, count(*) AS n
                FROM {events} e
                LEFT JOIN (SELECT DISTINCT ON (article_id) article_id, category FROM read_parquet(?)) a
                  ON e.article_id = a.article_id
                GROUP BY ALL"""
            params: list[Any] = [files, str(settings.silver_articles_path)]
        else:
            query = f"""
                SELECT CAST(date AS VARCHAR) AS date, event_type, 'unknown' AS category, count(*) AS n
                FROM {events} GROUP BY ALL"""
            params = [files]
        frame = con.execute(query, params).df()
    finally:
        con.close()
    frame["n"] = frame["n"].astype("int64")
    return frame[columns]


def ctr_trend(counts: pd.DataFrame) -> list[dict[str, Any]]:
    """Per day: impressions, clicks and CTR = clicks / impressions (0.0 without impressions)."""
    if counts.empty:
        return []
    by_type = counts.pivot_table(index="date", columns="event_type", values="n", aggfunc="sum", fill_value=0)
    trend = []
    for date, row in by_type.sort_index().iterrows():
        impressions = int(row.get("impression", 0))
        clicks = int(row.get("click", 0))
        trend.append(
            {
                "date": str(date),
                "impressions": impressions,
                "clicks": clicks,
                "ctr": round(clicks / impressions, 6) if impressions else 0.0,
            }
        )
    return trend


def category_mix(counts: pd.DataFrame, dates: list[str], event_type: str = "impression") -> dict[str, float]:
    """Share of each category among ``event_type`` events of ``dates`` (pooled), largest first."""
    rows = counts[(counts["event_type"] == event_type) & counts["date"].isin(dates)]
    totals = rows.groupby("category")["n"].sum()
    total = int(totals.sum())
    if total == 0:
        return {}
    shares = (totals / total).sort_values(ascending=False)
    return {str(k): round(float(v), 6) for k, v in shares.items()}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation distance between two discrete distributions: 0 same, 1 disjoint."""
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def _write_text_atomic(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def log_to_mlflow(tracking_uri: str, run_id: str, result: DriftResult, folder: Path) -> None:
    """Attach the report folder (drift.html, drift.json) and the drift figures to an existing MLflow run."""
    client = MlflowClient(tracking_uri=tracking_uri)
    now = int(time.time() * 1000)
    metrics = [
        Metric("drift_share", result.share, now, 0),
        Metric("drift_category_mix_shift", result.category_mix_shift, now, 0),
        Metric("drift_clicked_category_mix_shift", result.clicked_category_mix_shift, now, 0),
    ]
    if result.ctr_change is not None:
        metrics.append(Metric("drift_ctr_change", result.ctr_change, now, 0))
    metrics += [Metric(f"drift_score.{column}", score, now, 0) for column, score in sorted(result.columns.items())]
    if result.ctr_trend:
        metrics.append(Metric("drift_ctr", float(result.ctr_trend[-1]["ctr"]), now, 0))
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, "drift_retrain_recommended", str(result.retrain_recommended).lower())
    client.log_artifacts(run_id, str(folder), artifact_path=f"drift/{result.date}")


@dataclass
class Outcomes:
    """What the silver events of the window say, independent of the features."""

    ctr_trend: list[dict[str, Any]]
    category_mix: dict[str, float]
    category_mix_shift: float
    clicked_category_mix: dict[str, float]
    clicked_category_mix_shift: float
    ctr_change: float | None
    notes: list[str]


def outcomes(settings: Settings, day: dt.date, ref_days: list[dt.date]) -> Outcomes:
    """CTR per day over ``ref_days + [day]`` and the category mixes of D against ``ref_days``."""
    counts = window_counts(settings, [*ref_days, day])
    today, before = [day.isoformat()], [d.isoformat() for d in ref_days]
    notes = []
    mix, ref_mix = category_mix(counts, today), category_mix(counts, before)
    clicked, ref_clicked = category_mix(counts, today, "click"), category_mix(counts, before, "click")
    if not mix:
        notes.append(f"no impressions on {day}: category mix empty")
    elif not ref_mix:
        notes.append("no impressions in the reference days: category mix shift not measured")

    def ctr_of(dates: list[str]) -> float | None:
        rows = counts[counts["date"].isin(dates)]
        impressions = int(rows.loc[rows["event_type"] == "impression", "n"].sum())
        return int(rows.loc[rows["event_type"] == "click", "n"].sum()) / impressions if impressions else None

    ctr_now, ctr_before = ctr_of(today), ctr_of(before)
    return Outcomes(
        ctr_trend=ctr_trend(counts),
        category_mix=mix,
        category_mix_shift=round(total_variation(mix, ref_mix), 6) if mix and ref_mix else 0.0,
        clicked_category_mix=clicked,
        clicked_category_mix_shift=round(total_variation(clicked, ref_clicked), 6) if clicked and ref_clicked else 0.0,
        ctr_change=round(ctr_now / ctr_before - 1.0, 6) if ctr_now is not None and ctr_before else None,
        notes=notes,
    )


def _warmup_note(settings: Settings, day: dt.date, reference_days: int) -> str | None:
    """Say so when the oldest reference snapshot was computed on a lake younger than its windows.

    user_stats counts 7 days of events: a snapshot taken on the lake's 3rd day holds 3 days of
    clicks, so comparing D with it measures the lake filling up, not the readers changing.
    """
    days = list_dates(settings.silver_events_dir)
    if not days:
        return None
    full_from = days[0] + dt.timedelta(days=SHORT_WINDOW_DAYS - 1)
    oldest_reference = day - dt.timedelta(days=reference_days)
    if oldest_reference < full_from:
        return (
            f"events start {days[0]}: the 7-day feature windows are full only from {full_from}, so scores "
            f"against reference days before it overstate drift"
        )
    return None


def monitor(
    settings: Settings,
    day: dt.date,
    *,
    reference_days: int = 7,
    threshold: float | None = None,
    run_id: str | None = None,
    max_rows: int = 20_000,
    seed: int = 0,
) -> DriftResult:
    """Drift of D's feature snapshot against the ``reference_days`` snapshots before D.

    Reads ``features/{user_stats,article_stats}/date=*/`` (the columns of ``FEATURE_COLUMNS``)
    and the silver events of [D - reference_days, D]. Each table is sampled to at most
    ``max_rows`` rows per side (deterministically, ``seed``) so a day of a million events is
    checked in seconds. Writes ``<workdir>/reports/<D>/drift.html`` and ``drift.json``; with
    ``run_id`` logs both and the figures to that MLflow run (``settings.tracking_uri``).
    ``retrain_recommended`` is ``share > threshold`` (default ``settings.drift_threshold``). Without any reference snapshot the share
    is 0, no retraining is recommended and ``note`` says why. Raises NoDataError when D has
    no feature snapshot at all.
    """
    started = time.perf_counter()
    threshold = settings.drift_threshold if threshold is None else threshold
    ref_days = [day - dt.timedelta(days=k) for k in range(reference_days, 0, -1)]
    notes: list[str] = []

    current: dict[str, pd.DataFrame] = {}
    reference: dict[str, pd.DataFrame] = {}
    used_ref_days: set[dt.date] = set()
    missing = []
    for table in FEATURE_COLUMNS:
        now = load_snapshot(settings, table, day)
        if now is None or now.empty:
            missing.append(table)
            notes.append(f"no {table} snapshot for {day}")
            continue
        past = []
        for ref_day in ref_days:
            frame = load_snapshot(settings, table, ref_day)
            if frame is not None and not frame.empty:
                past.append(frame)
                used_ref_days.add(ref_day)
        if past:
            current[table] = _sample(now, max_rows, seed)
            reference[table] = _sample(pd.concat(past, ignore_index=True), max_rows, seed)
    if len(missing) == len(FEATURE_COLUMNS):
        raise NoDataError(f"no feature snapshot for {day} under {settings.features_dir}; run the features step first")

    seen = outcomes(settings, day, ref_days)
    notes += seen.notes
    folder = settings.workdir / "reports" / day.isoformat()
    result = DriftResult(
        date=day.isoformat(),
        share=0.0,
        columns={},
        drifted=[],
        threshold=threshold,
        retrain_recommended=False,
        report_path="",
        ctr_trend=seen.ctr_trend,
        category_mix=seen.category_mix,
        category_mix_shift=seen.category_mix_shift,
        clicked_category_mix=seen.clicked_category_mix,
        clicked_category_mix_shift=seen.clicked_category_mix_shift,
        ctr_change=seen.ctr_change,
        reference_dates=[d.isoformat() for d in sorted(used_ref_days)],
        rows={f"current.{t}": len(f) for t, f in current.items()}
        | {f"reference.{t}": len(f) for t, f in reference.items()},
    )

    if not reference:
        notes.append(f"no reference snapshots in the {reference_days} days before {day}: drift not measured")
    else:
        if len(used_ref_days) < reference_days:
            notes.append(f"reference holds {len(used_ref_days)} of {reference_days} days")
        warmup = _warmup_note(settings, day, reference_days)
        if warmup:
            result.warmup = True
            notes.append(warmup)
        cur, ref = _stack(current), _stack(reference)
        numerical: list[str] = []
        categorical: list[str] = []
        for table in current:
            nums, cats = FEATURE_COLUMNS[table]
            for names, bucket in ((nums, numerical), (cats, categorical)):
                for name in names:
                    column = f"{table}.{name}"
                    # Evidently refuses a column that is empty on one side (e.g. no category known).
                    if cur[column].notna().any() and ref[column].notna().any():
                        bucket.append(column)
                    else:
                        notes.append(f"{column} has no values on one side: not compared")
        found = compute_drift(ref, cur, numerical=numerical, categorical=categorical, drift_share=threshold)
        result.share = found.share
        result.columns = {k: round(v, 6) for k, v in found.scores.items()}
        result.drifted = found.drifted
        result.methods = found.methods
        result.retrain_recommended = found.share > threshold
        result.report_path = str(_write_text_atomic(found.html, folder / "drift.html"))

    result.note = "; ".join(notes)
    result.seconds = round(time.perf_counter() - started, 3)
    _write_text_atomic(json.dumps(dataclasses.asdict(result), indent=2), folder / "drift.json")
    if run_id is not None:
        log_to_mlflow(settings.tracking_uri, run_id, result, folder)
    return result
