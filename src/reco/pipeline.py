"""The daily pipeline: one ordered step list, shared by the local runner and the Argo workflow.

Each step is a thin wrapper around a stage function in its own module. Steps hand results
to each other only through the workdir (lake, feature tables, MLflow, ``runs/<D>/summary.json``),
never through memory, so every step can also run alone in its own pod
(``reco pipeline step NAME --date D``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reco.errors import NoDataError, RecoError
from reco.lake import list_dates
from reco.settings import Settings


@dataclass
class RunContext:
    """What one step of one run sees: settings, the run date and the summary so far."""

    settings: Settings
    date: dt.date
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.settings.runs_dir / self.date.isoformat()

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"


StepFunc = Callable[[RunContext], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    """One node of the DAG. ``func`` returns a partial summary that is merged into the run's."""

    name: str
    func: StepFunc
    description: str
    retries: int = 1
    # Production hint for the Argo workflow: this step wants the GPU node pool.
    gpu: bool = False


def _as_dict(report: Any) -> dict[str, Any]:
    return dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else dict(report)


def _ingest(ctx: RunContext) -> dict[str, Any]:
    from reco.ingest import ingest_date

    return {"counts": {"ingest": _as_dict(ingest_date(ctx.settings, ctx.date))}}


def _features(ctx: RunContext) -> dict[str, Any]:
    from reco.features import build_features
    from reco.featurestore import apply_and_materialize

    built = _as_dict(build_features(ctx.settings, ctx.date))
    store = _as_dict(apply_and_materialize(ctx.settings, ctx.date))
    return {"counts": {"features": built, "feast": store}}


STEPS: list[Step] = [
    Step("ingest", _ingest, "bronze events of D -> typed, deduplicated silver; bad rows quarantined"),
    Step("features", _features, "silver -> user/article feature tables; feast apply + materialize D"),
]


def step_names() -> list[str]:
    return [s.name for s in STEPS]


def select_steps(names: Sequence[str] | None) -> list[Step]:
    """The steps named, in DAG order; all of them when ``names`` is empty."""
    if not names:
        return list(STEPS)
    unknown = sorted(set(names) - set(step_names()))
    if unknown:
        raise RecoError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(step_names())}")
    return [s for s in STEPS if s.name in set(names)]


def latest_event_date(settings: Settings) -> dt.date:
    """The newest date with events in the lake (bronze, else silver)."""
    days = list_dates(settings.bronze_events_dir) or list_dates(settings.silver_events_dir)
    if not days:
        raise NoDataError(f"no events under {settings.bronze_events_dir}; run `reco data generate` or an import first")
    return days[-1]


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def load_summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_summary(ctx: RunContext) -> Path:
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.summary_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ctx.summary, indent=2, sort_keys=True, default=str))
    tmp.replace(ctx.summary_path)
    return ctx.summary_path


StepCallback = Callable[[Step, str, float], None]


def run_step(ctx: RunContext, step: Step, on_event: StepCallback | None = None) -> None:
    """Run one step with its retries, merge its result and persist the summary."""
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        if on_event:
            on_event(step, "start", 0.0)
        try:
            part = step.func(ctx)
        except NoDataError:
            raise
        except Exception:
            seconds = time.perf_counter() - started
            if attempt > step.retries:
                ctx.summary.setdefault("failed_step", step.name)
                write_summary(ctx)
                if on_event:
                    on_event(step, "failed", seconds)
                raise
            if on_event:
                on_event(step, "retry", seconds)
            continue
        seconds = time.perf_counter() - started
        _merge(ctx.summary, part)
        ctx.summary.setdefault("steps", {})[step.name] = round(seconds, 3)
        write_summary(ctx)
        if on_event:
            on_event(step, "done", seconds)
        return


def run_pipeline(
    settings: Settings,
    day: dt.date | None = None,
    steps: Sequence[str] | None = None,
    on_event: StepCallback | None = None,
) -> RunContext:
    """Run the selected steps for one date, in order; returns the context with the summary."""
    day = day or latest_event_date(settings)
    ctx = RunContext(settings, day)
    ctx.summary = {"date": day.isoformat(), "steps": {}}
    for step in select_steps(steps):
        run_step(ctx, step, on_event)
    return ctx


def run_single_step(settings: Settings, name: str, day: dt.date) -> RunContext:
    """Run one named step for one date, continuing the summary earlier steps wrote (Argo pods)."""
    ctx = RunContext(settings, day)
    ctx.summary = load_summary(ctx.summary_path) or {"date": day.isoformat(), "steps": {}}
    (step,) = select_steps([name])
    run_step(ctx, step)
    return ctx
