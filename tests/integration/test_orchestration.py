"""Production hand-offs of the pipeline, tested against local HTTP servers that record what they receive:
the monitor step's retraining request to the Argo Server, the drift alert and the onExit failure alert;
a refused or unreachable server is a clear failure of the step, never a silent pass."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from reco import pipeline
from reco.cli import app
from reco.errors import RetryableError, StepError
from reco.orchestration import OrchestrationError, drift_alert, failure_alert, submit_retrain
from reco.pipeline import RunContext, Step
from reco.settings import Settings

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 4, 2)


@dataclass
class Recorder:
    """A loopback HTTP server answering every POST with ``status`` and ``reply``, keeping each request."""

    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec.requests.append(
                {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"{}")}
            )
            payload = json.dumps(rec.reply).encode()
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def gke(settings: Settings, recorder: Recorder, **extra: Any) -> Settings:
    return settings.model_copy(
        update={"environment": "gke", "argo_server_url": recorder.url, "argo_token": "s3cret",
                "alert_webhook_url": f"{recorder.url}/hooks/alerts", **extra}
    )


def test_retraining_is_submitted_from_the_workflow_template(settings: Settings, recorder: Recorder) -> None:
    recorder.reply = {"metadata": {"name": "reco-pipeline-retrain-x7k2p", "namespace": "reco"}, "spec": {}}

    submitted = submit_retrain(gke(settings, recorder), DAY, 4)

    assert submitted.name == "reco-pipeline-retrain-x7k2p"
    (request,) = recorder.requests
    assert request["path"] == "/api/v1/workflows/reco/submit"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    body = request["body"]
    assert body["resourceKind"] == "WorkflowTemplate" and body["resourceName"] == "reco-pipeline"
    assert body["namespace"] == "reco"
    assert sorted(body["submitOptions"]["parameters"]) == ["date=2026-04-02", "retrain=4"]
    assert body["submitOptions"]["generateName"] == "reco-pipeline-retrain-"


@pytest.mark.parametrize(("status", "retryable"), [(403, False), (500, True)])
def test_a_refused_submission_fails_clearly(settings: Settings, recorder: Recorder, status: int, retryable: bool) -> None:
    recorder.status, recorder.reply = status, {"code": 7, "message": "denied"}
    with pytest.raises(OrchestrationError, match=f"{recorder.url} did not accept the retraining run of {DAY}") as error:
        submit_retrain(gke(settings, recorder), DAY, 4)
    assert isinstance(error.value, RetryableError) is retryable


def test_an_unreachable_argo_server_fails_clearly(settings: Settings, recorder: Recorder) -> None:
    down = gke(settings, recorder, argo_server_url="http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RetryableError, match="did not accept"):
        submit_retrain(down, DAY, 4)
    with pytest.raises(OrchestrationError, match="RECO_ARGO_SERVER_URL is empty"):
        submit_retrain(gke(settings, recorder, argo_server_url=""), DAY, 4)


def test_drift_alert_names_share_top_columns_and_report(settings: Settings, recorder: Recorder) -> None:
    drift = {"share": 0.5, "threshold": 0.3, "report_path": "/mnt/reco/reports/2026-04-02/drift.html"}
    columns = {"ctr_24h": 0.4, "views_24h": 0.31, "clicks_7d": 0.02}

    assert drift_alert(gke(settings, recorder), DAY, drift, columns) == "sent"

    (request,) = recorder.requests
    assert request["path"] == "/hooks/alerts"
    body = request["body"]
    assert "50%" in body["text"] and "ctr_24h 0.40" in body["text"]
    assert list(body["top_columns"]) == ["ctr_24h", "views_24h", "clicks_7d"]
    assert body["report"].endswith("drift.html") and body["date"] == DAY.isoformat()


def test_no_webhook_configured_is_said_and_a_failing_one_is_an_error(settings: Settings, recorder: Recorder) -> None:
    assert drift_alert(settings, DAY, {"share": 0.5, "threshold": 0.3}, {}).startswith("not sent")
    recorder.status = 500
    with pytest.raises(RetryableError, match="HTTP 500"):
        drift_alert(gke(settings, recorder), DAY, {"share": 0.5, "threshold": 0.3}, {})
    recorder.status = 404
    with pytest.raises(OrchestrationError, match="HTTP 404"):
        drift_alert(gke(settings, recorder), DAY, {"share": 0.5, "threshold": 0.3}, {})


def test_the_monitor_step_on_gke_asks_argo_and_alerts(settings: Settings, recorder: Recorder, monkeypatch) -> None:
    """The real step function, with the drift verdict of a settled, drifted day."""
    from reco import drift as drift_module

    class Verdict:
        columns: ClassVar[dict[str, float]] = {"ctr_24h": 0.5}

        def summary(self) -> dict[str, Any]:
            return {"share": 0.6, "threshold": 0.3, "retrain_recommended": True, "warmup": False}

    monkeypatch.setattr(drift_module, "monitor", lambda *a, **k: Verdict())
    recorder.reply = {"metadata": {"name": "reco-pipeline-retrain-abcde"}, "spec": {}}
    monitor = next(s for s in pipeline.STEPS if s.name == "monitor")

    part = monitor.func(RunContext(gke(settings, recorder), DAY))

    assert part["drift"]["actions"]["alert"] == "sent"
    assert part["drift"]["actions"]["retrain"]["submitted"] == "reco-pipeline-retrain-abcde"
    assert [r["path"] for r in recorder.requests] == ["/hooks/alerts", "/api/v1/workflows/reco/submit"]
    # A retraining run never asks for another one.
    again = monitor.func(RunContext(gke(settings, recorder), DAY, retraining=True))
    assert again["drift"]["actions"]["retrain"].startswith("not submitted")
    assert len(recorder.requests) == 3  # only its alert


def test_a_refused_retraining_fails_the_monitor_step(settings: Settings, recorder: Recorder, monkeypatch) -> None:
    def refuse(ctx: RunContext) -> dict[str, Any]:
        submit_retrain(ctx.settings, ctx.date, 4)
        return {}

    recorder.status, recorder.reply = 401, {"code": 16, "message": "token not valid"}  # what Argo answers
    monkeypatch.setattr(pipeline, "STEPS", [Step("monitor", refuse, "m", retries=0)])
    with pytest.raises(StepError, match="step monitor failed") as failure:
        pipeline.run_single_step(gke(settings, recorder), "monitor", DAY, catch_up=False)
    assert not failure.value.retryable  # a clear error (exit 1): retrying a refused token does not help
    recorder.status = 503
    with pytest.raises(StepError) as failure:
        pipeline.run_single_step(gke(settings, recorder), "monitor", DAY, catch_up=False)
    assert failure.value.retryable and not failure.value.unexpected  # exit 75: Argo retries the step


def test_failure_alert_names_the_failed_step_and_links(settings: Settings, recorder: Recorder) -> None:
    failures = json.dumps([{"displayName": "train", "message": "OOMKilled", "phase": "Failed"}])
    link = "https://argo.example/workflows/reco/reco-daily-123"
    assert failure_alert(gke(settings, recorder), "reco-daily-123", "Failed", failures, "2026-04-02", link) == "sent"
    body = recorder.requests[0]["body"]
    assert body["failed"] == ["train: OOMKilled"] and body["link"] == link
    assert "reco-daily-123 Failed for 2026-04-02" in body["text"]


def test_the_exit_handler_command_posts_only_on_failure(recorder: Recorder, monkeypatch) -> None:
    monkeypatch.setenv("RECO_ALERT_WEBHOOK_URL", f"{recorder.url}/hooks/alerts")
    from reco.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(app, ["pipeline", "notify-exit", "--workflow", "w", "--status", "Succeeded"])
        assert ok.exit_code == 0 and recorder.requests == []
        failed = runner.invoke(app, ["pipeline", "notify-exit", "--workflow", "w", "--status", "Failed",
                                     "--failures", "[]", "--date", "2026-04-02"])  # fmt: skip
        assert failed.exit_code == 0, failed.output
        assert len(recorder.requests) == 1
    finally:
        get_settings.cache_clear()
