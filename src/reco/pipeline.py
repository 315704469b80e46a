"""The daily pipeline: one ordered step list, shared by the local runner and the Argo workflow.

Each step is a thin wrapper around a stage function in its own module. Steps hand results
to each other only through the workdir (lake, feature tables, MLflow, ``runs/<D>/summary.json``),
never through memory, so every step can also run alone in its own pod
(``reco pipeline step NAME --date D``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reco.errors import DataContractError, NoDataError, RecoError, StepError
from reco.lake import list_dates
from reco.settings import Settings

if TYPE_CHECKING:
    from reco.catchup import CatchUpCallback


@dataclass
class RunContext:
    """What one step of one run sees: settings, the run date and the summary so far."""

    settings: Settings
    date: dt.date
    summary: dict[str, Any] = field(default_factory=dict)
    # A drift-triggered retraining (shorter window): it never asks for another one.
    retraining: bool = False

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
    # Summary values this step exports (``step_outputs``): Argo output parameters of its task.
    outputs: tuple[str, ...] = ()


def _as_dict(report: Any) -> dict[str, Any]:
    return dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else dict(report)


def _ingest(ctx: RunContext) -> dict[str, Any]:
    from reco.ingest import ingest_date

    return {"counts": {"ingest": _as_dict(ingest_date(ctx.settings, ctx.date))}}


def _validate(ctx: RunContext) -> dict[str, Any]:
    from reco.contract import ContractError, validate_day

    try:
        report = validate_day(ctx.settings, ctx.date)
    except ContractError as error:
        # The run stops here; its summary still says which checks failed, on how many rows, with examples.
        ctx.summary["validate"] = error.report.summary()
        raise
    return {"validate": report.summary()}


def _features(ctx: RunContext) -> dict[str, Any]:
    from reco.features import build_features
    from reco.featurestore import apply_and_materialize

    built = _as_dict(build_features(ctx.settings, ctx.date))
    store = _as_dict(apply_and_materialize(ctx.settings, ctx.date))
    return {"counts": {"features": built, "feast": store}}


def _train(ctx: RunContext) -> dict[str, Any]:
    from reco.train import train

    result = _as_dict(train(ctx.settings, ctx.date))
    return {"train": result}


def _evaluate(ctx: RunContext) -> dict[str, Any]:
    from reco.evaluate import evaluate

    result = evaluate(ctx.settings, ctx.date, _run_id(ctx))
    return {"metrics": result.metrics, "counts": {"evaluate": {"test_users": result.test_users}}}


def _register(ctx: RunContext) -> dict[str, Any]:
    from reco.registry import register_and_gate

    if "metrics" not in ctx.summary:
        raise RecoError(f"no metrics in {ctx.summary_path}: run the evaluate step first")
    gate = register_and_gate(ctx.settings, ctx.date, _run_id(ctx), ctx.summary["metrics"])
    return {
        "gate": {"decision": gate.decision, "reason": gate.reason},
        "model_version": gate.model_version,
        "champion_version": gate.champion_version,
    }


def _deploy(ctx: RunContext) -> dict[str, Any]:
    from reco.deploy import deploy

    promoted = ctx.summary.get("gate", {}).get("decision") == "promoted"
    return {"deploy": _as_dict(deploy(ctx.settings, ctx.date, promoted=promoted))}


def _monitor(ctx: RunContext) -> dict[str, Any]:
    from reco.drift import monitor

    result = monitor(ctx.settings, ctx.date, run_id=ctx.summary.get("train", {}).get("run_id"))
    drift = {**result.summary(), "columns": result.columns}
    part: dict[str, Any] = {"drift": drift}
    if ctx.settings.environment == "gke" and drift_settled(drift) and drift.get("retrain_recommended"):
        part["drift"]["actions"] = _production_drift_actions(ctx, drift)
    return part


def drift_settled(drift: dict[str, Any]) -> bool:
    """Whether a drift verdict may start a retraining: not while the reference's windows fill up."""
    return not drift.get("warmup", False)


def _production_drift_actions(ctx: RunContext, drift: dict[str, Any]) -> dict[str, Any]:
    """On GKE, a drifted day asks Argo for a retraining run (unless this run is one) and alerts people."""
    from reco.orchestration import drift_alert, submit_retrain

    actions: dict[str, Any] = {"alert": drift_alert(ctx.settings, ctx.date, drift, drift.get("columns", {}))}
    if ctx.retraining:
        actions["retrain"] = "not submitted: this run already is a retraining run"
    else:
        submitted = submit_retrain(ctx.settings, ctx.date, ctx.settings.retrain_window_days)
        actions["retrain"] = {"submitted": submitted.name, "parameters": submitted.parameters}
    return actions


def _run_id(ctx: RunContext) -> str:
    run_id = ctx.summary.get("train", {}).get("run_id")
    if not run_id:
        raise RecoError(f"no training run recorded in {ctx.summary_path}: run the train step first")
    return str(run_id)


STEPS: list[Step] = [
    Step("ingest", _ingest, "bronze events of D -> typed, deduplicated silver; bad rows quarantined"),
    Step("validate", _validate, "data contract of D's silver events and the article table; a breach stops the run"),
    Step("features", _features, "silver -> user/article feature tables; feast apply + materialize D"),
    Step("train", _train, "ALS (grid) + ranker + popularity on days < D, windows learned, cap and decay chosen; MLflow", gpu=True),
    Step("evaluate", _evaluate, "served model at each session of D vs heuristics, ALS, popularity, oracle and champion, with intervals; OPE"),
    Step(
        "register",
        _register,
        "new registry version, alias challenger; champion only through the gate",
        outputs=("model_version", "gate_decision"),
    ),
    Step("deploy", _deploy, "local: load @champion and smoke-test it; production: bump the gitops overlay"),
    Step(
        "monitor",
        _monitor,
        "Evidently drift of D's features vs the training reference; CTR and mix trends",
        outputs=("drift_share", "retrain_recommended"),
    ),
]


def step_outputs(summary: dict[str, Any]) -> dict[str, str]:
    """Every exportable summary value present, as text (Argo output parameters are strings)."""
    values = {
        "model_version": summary.get("model_version"),
        "gate_decision": summary.get("gate", {}).get("decision"),
        "drift_share": summary.get("drift", {}).get("share"),
        "retrain_recommended": summary.get("drift", {}).get("retrain_recommended"),
    }
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items() if v is not None}

# What a drift-triggered retraining re-runs, in order.
RETRAIN_STEPS: tuple[str, ...] = ("train", "evaluate", "register", "deploy")


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


def resolve_run_date(date: str, created: str) -> dt.date:
    """``date`` (YYYY-MM-DD) when given, else the UTC day before ``created`` (RFC 3339): the scheduled run of
    03:00 UTC processes yesterday, and every task of one workflow sees the same date."""
    if date.strip():
        try:
            return dt.date.fromisoformat(date.strip())
        except ValueError as error:
            raise RecoError(f"parameter date: {date!r} is not a date (YYYY-MM-DD)") from error
    try:
        when = dt.datetime.fromisoformat(created.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise RecoError(f"--created: {created!r} is not an RFC 3339 time") from error
    return (when.astimezone(dt.UTC) if when.tzinfo else when).date() - dt.timedelta(days=1)


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
        except Exception as error:
            seconds = time.perf_counter() - started
            # A clear data error (nothing to work on, a broken contract) fails the same way on every attempt.
            if attempt > step.retries or isinstance(error, (NoDataError, DataContractError)):
                failure = StepError(step.name, ctx.date.isoformat(), error)
                ctx.summary.setdefault("failed_step", step.name)
                ctx.summary.setdefault("error", str(failure))
                write_summary(ctx)
                if on_event:
                    on_event(step, "failed", seconds)
                raise failure from error
            if on_event:
                on_event(step, "retry", seconds)
            continue
        seconds = time.perf_counter() - started
        if ctx.summary.get("failed_step") == step.name:  # an earlier attempt (another pod) failed
            ctx.summary.pop("failed_step")
            ctx.summary.pop("error", None)
        _merge(ctx.summary, part)
        ctx.summary.setdefault("steps", {})[step.name] = round(seconds, 3)
        write_summary(ctx)
        if on_event:
            on_event(step, "done", seconds)
        return


def run_catch_up(
    ctx: RunContext, steps: Sequence[Step], on_day: CatchUpCallback | None = None
) -> None:
    """Ingest and featurize the missing days the steps read (``reco.catchup``); recorded in the summary."""
    from reco.catchup import catch_up

    report = catch_up(ctx.settings, ctx.date, [s.name for s in steps], on_day)
    if report.days or report.empty:
        ctx.summary["catch_up"] = report.summary()
        write_summary(ctx)


def run_pipeline(
    settings: Settings,
    day: dt.date | None = None,
    steps: Sequence[str] | None = None,
    on_event: StepCallback | None = None,
    *,
    retrain_on_drift: bool = True,
    catch_up: bool = True,
    on_catch_up: CatchUpCallback | None = None,
) -> RunContext:
    """Run the selected steps for one date, in order; returns the context with the summary.

    With ``catch_up`` (the default), the days the steps read but nobody ingested or featurized yet
    are prepared first (``reco.catchup``); without it a missing input is the step's clear error.
    When the monitor step recommends retraining, the runner re-runs ``RETRAIN_STEPS`` once on a
    recent window (``settings.retrain_window_days``) so the model catches up with the shift.
    """
    day = day or latest_event_date(settings)
    ctx = RunContext(settings, day)
    ctx.summary = {"date": day.isoformat(), "steps": {}}
    selected = select_steps(steps)
    if catch_up:
        run_catch_up(ctx, selected, on_catch_up)
    for step in selected:
        run_step(ctx, step, on_event)
    drift = ctx.summary.get("drift", {})
    # While the reference still holds days whose 7/30-day windows were filling up, everything looks drifted.
    settled = drift_settled(drift)
    if retrain_on_drift and settled and drift.get("retrain_recommended") and "train" in {s.name for s in selected}:
        first = copy.deepcopy({k: ctx.summary.get(k) for k in ("train", "gate", "model_version", "metrics")})
        retrain = RunContext(
            settings.model_copy(update={"train_window_days": settings.retrain_window_days}), day, retraining=True
        )
        retrain.summary = ctx.summary
        for step in select_steps(RETRAIN_STEPS):
            run_step(retrain, dataclasses.replace(step, name=f"retrain:{step.name}"), on_event)
        ctx.summary["retrain"] = {"reason": f"drift share {drift.get('share')} above threshold", "first_run": first}
        write_summary(ctx)
    return ctx


def run_single_step(
    settings: Settings, name: str, day: dt.date, *, catch_up: bool = True, retrain_window_days: int = 0
) -> RunContext:
    """Run one named step for one date, continuing the summary earlier steps wrote (Argo pods).

    Like ``run_pipeline``, it first catches up the days this step reads unless ``catch_up`` is false.
    ``retrain_window_days`` > 0 marks a drift-triggered retraining run with that training window.
    """
    if retrain_window_days > 0:
        settings = settings.model_copy(update={"train_window_days": retrain_window_days})
    ctx = RunContext(settings, day, retraining=retrain_window_days > 0)
    ctx.summary = load_summary(ctx.summary_path) or {"date": day.isoformat(), "steps": {}}
    (step,) = select_steps([name])
    if catch_up:
        run_catch_up(ctx, [step])
    run_step(ctx, step)
    return ctx
