"""The step runner: order, selection, retries, summary merging and persistence."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from reco import pipeline
from reco.errors import DataContractError, NoDataError, RecoError, StepError
from reco.pipeline import RunContext, Step

DAY = dt.date(2026, 11, 20)


def test_step_list_is_the_documented_daily_order() -> None:
    names = pipeline.step_names()
    assert names[:3] == ["ingest", "validate", "features"]
    assert names.index("validate") < names.index("train")  # a broken contract stops the run before training
    assert len(names) == len(set(names))


def test_select_steps_keeps_dag_order_and_rejects_unknown() -> None:
    assert [s.name for s in pipeline.select_steps(["features", "ingest"])] == ["ingest", "features"]
    with pytest.raises(RecoError, match="unknown step"):
        pipeline.select_steps(["ingest", "nope"])


def test_runner_merges_results_retries_and_persists(settings, monkeypatch) -> None:
    calls: list[str] = []
    flaky = {"left": 1}

    def first(ctx: RunContext) -> dict[str, Any]:
        calls.append("first")
        return {"counts": {"first": {"rows": 3}}}

    def second(ctx: RunContext) -> dict[str, Any]:
        calls.append("second")
        if flaky["left"]:
            flaky["left"] -= 1
            raise RuntimeError("transient")
        assert ctx.summary["counts"]["first"]["rows"] == 3  # sees what earlier steps wrote
        return {"counts": {"second": {"rows": 5}}, "gate": {"decision": "promoted"}}

    monkeypatch.setattr(pipeline, "STEPS", [Step("first", first, "a"), Step("second", second, "b", retries=1)])
    events: list[tuple[str, str]] = []
    ctx = pipeline.run_pipeline(settings, DAY, on_event=lambda s, what, _: events.append((s.name, what)))

    assert calls == ["first", "second", "second"]
    assert ("second", "retry") in events
    saved = json.loads(ctx.summary_path.read_text())
    assert saved["counts"] == {"first": {"rows": 3}, "second": {"rows": 5}}
    assert saved["gate"]["decision"] == "promoted"
    assert set(saved["steps"]) == {"first", "second"}
    assert saved["date"] == DAY.isoformat()


def test_runner_gives_up_after_retries_and_records_the_failed_step(settings, monkeypatch) -> None:
    def broken(ctx: RunContext) -> dict[str, Any]:
        raise RuntimeError("always")

    attempts: list[int] = []

    def counted(ctx: RunContext) -> dict[str, Any]:
        attempts.append(1)
        return broken(ctx)

    monkeypatch.setattr(pipeline, "STEPS", [Step("broken", counted, "x", retries=2)])
    with pytest.raises(StepError, match=rf"step broken failed for {DAY}: RuntimeError: always") as failure:
        pipeline.run_pipeline(settings, DAY)
    assert failure.value.unexpected and isinstance(failure.value.cause, RuntimeError)
    assert len(attempts) == 3
    saved = json.loads((settings.runs_dir / DAY.isoformat() / "summary.json").read_text())
    assert saved["failed_step"] == "broken"
    assert saved["error"] == str(failure.value)


def test_a_clear_data_error_is_not_retried(settings, monkeypatch) -> None:
    attempts: list[int] = []

    def empty(ctx: RunContext) -> dict[str, Any]:
        attempts.append(1)
        raise NoDataError("no bronze events for that day")

    monkeypatch.setattr(pipeline, "STEPS", [Step("ingest", empty, "x", retries=3)])
    with pytest.raises(StepError, match=r"step ingest failed for .*: no bronze events") as failure:
        pipeline.run_pipeline(settings, DAY)
    assert not failure.value.unexpected
    assert attempts == [1]


def test_a_broken_data_contract_is_not_retried_and_stops_the_run(settings, monkeypatch) -> None:
    ran: list[str] = []

    def breach(ctx: RunContext) -> dict[str, Any]:
        ran.append("validate")
        ctx.summary["validate"] = {"passed": False, "failed": ["events.volume"]}
        raise DataContractError("data contract failed")

    def train(ctx: RunContext) -> dict[str, Any]:
        ran.append("train")
        return {}

    monkeypatch.setattr(pipeline, "STEPS", [Step("validate", breach, "v", retries=2), Step("train", train, "t")])
    with pytest.raises(StepError, match="data contract failed") as failure:
        pipeline.run_pipeline(settings, DAY, catch_up=False)
    assert not failure.value.retryable
    assert ran == ["validate"]
    saved = json.loads((settings.runs_dir / DAY.isoformat() / "summary.json").read_text())
    assert saved["failed_step"] == "validate" and saved["validate"]["failed"] == ["events.volume"]


def test_a_step_that_succeeds_on_a_later_attempt_clears_the_failure(settings, monkeypatch) -> None:
    outcomes = [RuntimeError("pod evicted"), None]

    def flaky(ctx: RunContext) -> dict[str, Any]:
        error = outcomes.pop(0)
        if error:
            raise error
        return {"counts": {"a": 1}}

    monkeypatch.setattr(pipeline, "STEPS", [Step("a", flaky, "a", retries=0)])
    with pytest.raises(StepError):
        pipeline.run_single_step(settings, "a", DAY)  # one pod fails ...
    ctx = pipeline.run_single_step(settings, "a", DAY)  # ... Argo's retry succeeds
    assert "failed_step" not in ctx.summary and "error" not in ctx.summary


def test_single_step_continues_the_summary_of_earlier_steps(settings, monkeypatch) -> None:
    monkeypatch.setattr(
        pipeline,
        "STEPS",
        [Step("a", lambda ctx: {"counts": {"a": 1}}, "a"), Step("b", lambda ctx: {"counts": {"b": 2}}, "b")],
    )
    pipeline.run_single_step(settings, "a", DAY)
    ctx = pipeline.run_single_step(settings, "b", DAY)
    assert ctx.summary["counts"] == {"a": 1, "b": 2}
    assert set(ctx.summary["steps"]) == {"a", "b"}


def test_default_date_needs_events(settings) -> None:
    with pytest.raises(NoDataError, match="no events"):
        pipeline.latest_event_date(settings)


def test_drift_above_threshold_triggers_one_retraining_on_the_short_window(settings, monkeypatch) -> None:
    windows: list[int] = []

    def train(ctx: RunContext) -> dict[str, Any]:
        windows.append(ctx.settings.train_window_days)
        return {"train": {"run_id": f"run-{len(windows)}"}}

    def noop(ctx: RunContext) -> dict[str, Any]:
        return {}

    def monitor(ctx: RunContext) -> dict[str, Any]:
        return {"drift": {"share": 0.6, "retrain_recommended": True}}

    names = ["train", "evaluate", "register", "deploy"]
    steps = [Step(n, train if n == "train" else noop, n) for n in names] + [Step("monitor", monitor, "m")]
    monkeypatch.setattr(pipeline, "STEPS", steps)
    ctx = pipeline.run_pipeline(settings, DAY)

    assert windows == [settings.train_window_days, settings.retrain_window_days]
    assert ctx.summary["train"]["run_id"] == "run-2"
    assert ctx.summary["retrain"]["first_run"]["train"]["run_id"] == "run-1"
    assert "retrain:train" in ctx.summary["steps"]


@pytest.mark.parametrize(
    "drift",
    [{"share": 0.1, "retrain_recommended": False}, {"share": 0.6, "retrain_recommended": True, "warmup": True}],
    ids=["quiet", "warming-up"],
)
def test_no_retraining_on_a_quiet_day_or_while_the_reference_warms_up(settings, monkeypatch, drift) -> None:
    trained: list[int] = []
    steps = [
        Step("train", lambda ctx: trained.append(1) or {"train": {"run_id": "r"}}, "t"),
        Step("monitor", lambda ctx: {"drift": drift}, "m"),
    ]
    monkeypatch.setattr(pipeline, "STEPS", steps)
    ctx = pipeline.run_pipeline(settings, DAY)
    assert trained == [1]
    assert "retrain" not in ctx.summary
