"""Deploy: make sure what ``@champion`` points at is loadable and answers, and record it.

Locally the recommend service polls the ``champion`` alias and swaps new versions in by itself,
so deploying means proving the champion loads through the same loader the service uses and
returns recommendations for the serving day, then writing ``deploy/current.json``. (In
production the same step will also bump the model version in the GitOps overlay.)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from reco.errors import NoChampionError, RecoError
from reco.settings import Settings

SMOKE_USER = "__deploy_smoke_test__"


@dataclass
class DeployResult:
    target: str
    champion_version: str | None
    smoke_items: int
    smoke_reasons: list[str]
    record: str
    status: str = "deployed"


def deploy(settings: Settings, day: dt.date, *, alias: str = "champion", promoted: bool = False) -> DeployResult:
    """Load ``@alias`` as the service would and ask it for a cold-start page as of the end of ``day`` (UTC).

    With no version behind ``alias`` yet (every model so far was gated out), there is nothing to
    deploy: the result says so (``status`` "skipped: …") and the service keeps waiting for one.
    In production (``environment`` gke) a release is a git commit of the model version to the
    staging overlay: when this run's gate ``promoted``, the step commits it in ``settings.gitops_repo``
    (``reco.gitops.promote``) and pushes it; Argo CD syncs, Argo Rollouts runs the canary.
    """
    from reco.model import recommend_for_user

    serving_time = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    try:
        items, version = recommend_for_user(settings, SMOKE_USER, k=10, now=serving_time, alias=alias)
    except NoChampionError:
        return DeployResult("local", None, 0, [], "", status=f"skipped: no {alias} yet (no model has passed the gate)")
    if not items:
        raise RecoError(f"{settings.model_name}@{alias} (version {version}) returned no items for {serving_time}")
    record = settings.workdir / "deploy" / "current.json"
    result = DeployResult(
        target="local" if settings.environment == "local" else settings.environment,
        champion_version=version,
        smoke_items=len(items),
        smoke_reasons=sorted({item.reason for item in items}),
        record=str(record),
    )
    if settings.environment != "local" and promoted:
        result.status = _release(settings, day, version)
    _write_json(record, {**asdict(result), "alias": alias, "run_date": day.isoformat(),
                         "deployed_at": dt.datetime.now(dt.UTC).isoformat()})
    return result


def _release(settings: Settings, day: dt.date, version: str) -> str:
    """Commit ``version`` to the GitOps overlay and push it; the status line for the summary."""
    from reco.gitops import GitOpsError, checkout, promote, push
    from reco.registry import version_gate

    if not settings.gitops_repo:
        return f"smoke-tested; release commit not made: RECO_GITOPS_REPO is empty (run `reco gitops promote --env {settings.gitops_env} --model-version {version}`)"
    reason, _ = version_gate(settings, version)
    with checkout(settings.gitops_repo, token=settings.gitops_token) as (repo, _):
        try:
            commit = promote(repo, settings.gitops_env, version, reason=reason, run_date=day.isoformat())
        except GitOpsError as error:
            if "already releases" in str(error):
                return f"smoke-tested; {settings.gitops_env} already releases version {version}"
            raise
        push(repo, commit.branch)
    return f"released: commit {commit.sha[:10]} on {commit.branch} pushed ({settings.gitops_env} -> model version {version})"


def _write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
