"""What a step does in production that the local runner does in-process: ask Argo for a retraining run,
and tell people (the alert webhook) about drift and failures.

Locally, ``reco.pipeline.run_pipeline`` retrains right after a drifted monitor step. On GKE every step is
its own pod, so the monitor step instead submits a new run of the ``reco-pipeline`` WorkflowTemplate with
the retraining window, through the Argo Server API (hera's ``WorkflowsService``: server URL and token from
a Secret, ``RECO_ARGO_SERVER_URL`` / ``RECO_ARGO_TOKEN``). A refused or unreachable server is a step
failure (``OrchestrationError``), never a silent pass: the drift would otherwise go unanswered.

Webhook messages are Slack-compatible JSON (``{"text": ..., plus structured fields}``) posted to
``RECO_ALERT_WEBHOOK_URL``; an empty URL means "no alerting configured" and is said in the result.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from reco.errors import RecoError, RetryableError
from reco.settings import Settings

# The WorkflowTemplate the retraining run is submitted from (workflows/ renders it under this name).
WORKFLOW_TEMPLATE = "reco-pipeline"
HTTP_TIMEOUT_S = 15.0


class OrchestrationError(RecoError):
    """Argo or the alert webhook refused the request (bad token, unknown template): a retry would not help."""


class UnavailableError(OrchestrationError, RetryableError):
    """Argo or the alert webhook could not be reached or failed on its side (5xx): a retry may help."""


@dataclass
class Submitted:
    """A workflow run Argo accepted: its generated name and the parameters it was given."""

    name: str
    parameters: dict[str, str]


def submit_retrain(settings: Settings, day: dt.date, window_days: int) -> Submitted:
    """Submit ``reco-pipeline`` for ``day`` with the training window overridden to ``window_days``."""
    from hera.exceptions import AlreadyExists, BadRequest, Forbidden, HeraException, NotFound, Unauthorized
    from hera.workflows import WorkflowsService
    from hera.workflows.models import SubmitOpts, WorkflowSubmitRequest

    if not settings.argo_server_url:
        raise OrchestrationError("RECO_ARGO_SERVER_URL is empty: the monitor step cannot ask Argo for a retraining run")
    parameters = {"date": day.isoformat(), "retrain": str(window_days)}
    service = WorkflowsService(
        host=settings.argo_server_url,
        token=settings.argo_token or None,
        namespace=settings.argo_namespace,
        verify_ssl=settings.argo_verify_tls,
    )
    request = WorkflowSubmitRequest(
        namespace=settings.argo_namespace,
        resource_kind="WorkflowTemplate",
        resource_name=WORKFLOW_TEMPLATE,
        submit_options=SubmitOpts(
            generate_name=f"{WORKFLOW_TEMPLATE}-retrain-",
            parameters=[f"{k}={v}" for k, v in parameters.items()],
            labels="reco-articles/trigger=drift",
        ),
    )
    problem = f"Argo Server at {settings.argo_server_url} did not accept the retraining run of {day}"
    try:
        workflow = service.submit_workflow(request, namespace=settings.argo_namespace)
    except (Unauthorized, Forbidden, BadRequest, NotFound, AlreadyExists) as error:  # our request is wrong
        raise OrchestrationError(f"{problem}: {error}") from error
    except (HeraException, OSError) as error:  # 5xx, connection refused, timeout (requests' errors are OSErrors)
        raise UnavailableError(f"{problem}: {error}") from error
    except (KeyError, ValueError) as error:  # an answer that is not Argo's (hera cannot parse it)
        raise UnavailableError(f"{problem}: unexpected answer ({type(error).__name__}: {error})") from error
    name = workflow.metadata.name if workflow.metadata and workflow.metadata.name else "?"
    return Submitted(name=name, parameters=parameters)


def post_webhook(settings: Settings, text: str, fields: dict[str, Any]) -> str:
    """POST ``{"text": text, **fields}`` to the alert webhook; returns "sent" or why nothing was sent."""
    url = settings.alert_webhook_url
    if not url:
        return "not sent: RECO_ALERT_WEBHOOK_URL is empty"
    body = json.dumps({"text": text, **fields}, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        raise UnavailableError(f"alert webhook {url} could not be reached: {error}") from error
    if status >= 500:
        raise UnavailableError(f"alert webhook {url} answered HTTP {status}")
    if not 200 <= status < 300:
        raise OrchestrationError(f"alert webhook {url} answered HTTP {status}")
    return "sent"


def drift_alert(settings: Settings, day: dt.date, drift: dict[str, Any], columns: dict[str, float]) -> str:
    """Post the drift verdict of ``day`` (share, top drifted columns, report link) to the alert webhook."""
    top = sorted(columns.items(), key=lambda kv: kv[1], reverse=True)[:5]
    share = drift.get("share")
    text = (
        f"reco-articles: feature drift on {day}: {share:.0%} of columns drifted "
        f"(threshold {drift.get('threshold'):.0%}); top: {', '.join(f'{c} {s:.2f}' for c, s in top) or 'none'}"
    )
    return post_webhook(
        settings,
        text,
        {"date": day.isoformat(), "share": share, "top_columns": dict(top), "report": drift.get("report_path")},
    )


def failure_alert(settings: Settings, workflow: str, status: str, failures: str, day: str, link: str) -> str:
    """The onExit message of a workflow that did not succeed: which step failed, for which date, and a link."""
    try:
        parsed = json.loads(failures) if failures else []
    except ValueError:
        parsed = []
    failed = [f"{f.get('displayName', '?')}: {f.get('message', '')}".strip() for f in parsed if isinstance(f, dict)]
    text = f"reco-articles: workflow {workflow} {status} for {day or '?'}" + (f" — {'; '.join(failed)}" if failed else "")
    return post_webhook(
        settings, text, {"workflow": workflow, "status": status, "date": day, "failed": failed, "link": link}
    )
