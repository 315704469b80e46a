"""Catch-up: before a step of date D runs, make sure the days it reads exist.

A first run on a fresh lake (``reco data generate`` or an import, then ``reco pipeline run``), an Argo
pod running ``reco pipeline step train --date D`` after a gap, or a backfill that starts in the middle
of the lake all need silver partitions and feature snapshots of days nobody ingested yet. Rather than
failing ("run ingest for them first"), the runner works out what each selected step reads, and ingests
and featurizes the missing days first, oldest first:

==========  =====================================================================================
step        reads
==========  =====================================================================================
validate    silver of D and of the ``contract_volume_days`` (7) before it (the volume baseline)
features    silver of the 30 days up to D (its windows)
train       silver of the training window D-W..D-1; snapshots of D-W..D-1 (ranker rows join the
            snapshot before their day, the catalogue is D-1's)
evaluate    silver of D; the snapshot of D-1 (user features as served on D)
monitor     snapshots of D and of the 7 reference days before D; silver of D-7..D
==========  =====================================================================================

A snapshot of day d is itself computed from the 30 days of silver up to d, so those are ingested
too. Caught-up days are ingested and featurized, never validated: the data contract (the ``validate``
step) judges the day a run answers for, D, and a run does not fail on history it only reads.
Everything is bounded by the lake's first day (bronze, else silver): nothing before it exists, and a
day inside the range without any bronze event (a site that was down) is recorded as ``empty`` and
skipped, not treated as an error. Ingest and features are idempotent, so a catch-up that
stops half-way is simply resumed by the next run. Days that are the run's own ``ingest`` /
``features`` steps (D itself, when those steps are selected) are left to them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reco.errors import NoDataError
from reco.features import ARTICLE_TABLE, USER_TABLE, USER_WINDOW_DAYS, feature_table_dir
from reco.lake import list_dates, partition_files
from reco.settings import Settings

# Reference days the monitor step compares D with (``reco.drift.monitor``'s default).
DRIFT_REFERENCE_DAYS = 7

# Called before each day of work: ("ingest" | "features" | "feast", day).
CatchUpCallback = Callable[[str, dt.date], None]


@dataclass
class Needs:
    """Days whose silver partition / feature snapshot the selected steps read."""

    silver: set[dt.date] = field(default_factory=set)
    snapshots: set[dt.date] = field(default_factory=set)


@dataclass
class CatchUpReport:
    """What a catch-up did: days ingested, days featurized, days without events, seconds."""

    ingest: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def days(self) -> list[str]:
        return sorted(set(self.ingest) | set(self.features))

    def summary(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "ingest": self.ingest,
            "features": self.features,
            "empty": self.empty,
            "seconds": round(self.seconds, 3),
        }


def _span(last: dt.date, days: int) -> set[dt.date]:
    """The ``days`` dates ending at ``last`` (inclusive)."""
    return {last - dt.timedelta(days=k) for k in range(days)}


def needs(settings: Settings, day: dt.date, steps: Iterable[str]) -> Needs:
    """What the named steps of a run for ``day`` read, beyond what the run's own steps write."""
    names = set(steps)
    wanted = Needs()
    before = day - dt.timedelta(days=1)
    if "validate" in names:
        wanted.silver.add(day)
        wanted.silver |= _span(before, settings.contract_volume_days)
    if "features" in names:
        wanted.silver |= _span(before, USER_WINDOW_DAYS - 1)
    if "train" in names:
        window = max(settings.train_window_days, settings.retrain_window_days)
        wanted.silver |= _span(before, window)
        wanted.snapshots |= _span(before, window)
    if "evaluate" in names:
        wanted.silver.add(day)
        wanted.snapshots.add(before)
    if "monitor" in names:
        wanted.snapshots |= _span(day, DRIFT_REFERENCE_DAYS + 1)
        wanted.silver |= _span(day, DRIFT_REFERENCE_DAYS + 1)
    # A snapshot of d aggregates the 30 days of silver up to d.
    for snapshot in list(wanted.snapshots):
        wanted.silver |= _span(snapshot, USER_WINDOW_DAYS)
    # The run's own steps produce D's partitions.
    if "ingest" in names:
        wanted.silver.discard(day)
    if "features" in names:
        wanted.snapshots.discard(day)
    return wanted


def _has_snapshot(settings: Settings, day: dt.date) -> bool:
    return all(partition_files(feature_table_dir(settings, table), day) for table in (USER_TABLE, ARTICLE_TABLE))


def plan(settings: Settings, day: dt.date, steps: Iterable[str]) -> tuple[list[dt.date], list[dt.date], list[dt.date]]:
    """(days to ingest, days to featurize, days without any event), each oldest first.

    Only days from the lake's first day up to ``day`` are considered; a day is ingested when bronze has
    events for it and silver does not, featurized when either of its snapshot tables is missing.
    """
    bronze = list_dates(settings.bronze_events_dir)
    silver = set(list_dates(settings.silver_events_dir))
    known = sorted(set(bronze) | silver)
    if not known:
        return [], [], []
    first = known[0]
    wanted = needs(settings, day, steps)
    in_lake = {d for d in wanted.silver if first <= d <= day}
    bronze_days = set(bronze)
    to_ingest = sorted(d for d in in_lake if d not in silver and d in bronze_days)
    empty = sorted(d for d in in_lake if d not in silver and d not in bronze_days)
    to_featurize = sorted(d for d in wanted.snapshots if first <= d <= day and not _has_snapshot(settings, d))
    return to_ingest, to_featurize, empty


def catch_up(
    settings: Settings, day: dt.date, steps: Iterable[str], on_day: CatchUpCallback | None = None
) -> CatchUpReport:
    """Ingest, then featurize, every missing day the steps of ``day`` read (see the module docstring).

    Snapshots are built first and the feature store is applied and materialized once, for the newest
    day caught up (materialization loads the newest snapshot into the online store).
    """
    from reco.features import build_features
    from reco.featurestore import apply_and_materialize
    from reco.ingest import ingest_date

    started = time.perf_counter()
    to_ingest, to_featurize, empty = plan(settings, day, steps)
    report = CatchUpReport(empty=[d.isoformat() for d in empty])
    for d in to_ingest:
        if on_day:
            on_day("ingest", d)
        ingest_date(settings, d)
        report.ingest.append(d.isoformat())
    for d in to_featurize:
        if on_day:
            on_day("features", d)
        try:
            build_features(settings, d)
        except NoDataError:
            # No silver in the 30 days up to d (a gap at the start of the lake): nothing to describe.
            report.empty.append(d.isoformat())
            continue
        report.features.append(d.isoformat())
    if report.features:
        newest = dt.date.fromisoformat(report.features[-1])
        if on_day:
            on_day("feast", newest)
        apply_and_materialize(settings, newest)
    report.empty = sorted(set(report.empty))
    report.seconds = time.perf_counter() - started
    return report
