"""Model registry and quality gate: every trained model is registered, only a better one is champion.

``register_and_gate`` makes run ``run_id``'s pyfunc a new version of ``settings.model_name``,
points alias ``challenger`` at it, and moves alias ``champion`` only when ``gate`` says so.
Aliases, never stages (MLflow deprecated stages). The decision and its reason are tags on the
model version and on the training run, so the registry UI tells why a version is or is not live.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from reco.errors import RecoError
from reco.model import MODEL_ARTIFACT_NAME
from reco.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
GUARD_METRICS: tuple[str, ...] = ("coverage", "recall@20")


@dataclass
class GateResult:
    """``decision``: "promoted" | "rejected"; ``model_version``: the version just registered;
    ``champion_version``: the champion after the decision (None if there is none)."""

    decision: str
    reason: str
    model_version: str
    champion_version: str | None


def gate(
    metrics: Mapping[str, Any],
    *,
    has_champion: bool,
    min_gain: float,
    max_guard_drop: float,
    heuristic_rule: str = "not-worse",
    backfill: str = "keep-newer",
) -> tuple[bool, str]:
    """(promote?, reason) from evaluation metrics (``reco.evaluate.EvalResult.metrics``). The rule, in order:

    1. **The best simple rule.** H = ``strongest_heuristic`` (the best of popularity, newest, newest in the
       top category, fresh-popular, trending in the top category on this test day) and its paired bootstrap
       95 % interval of the model's NDCG@10 difference, [lo, hi]. ``heuristic_rule`` "not-worse" (default): rejected when hi < 0 — the model
       is shown to lose to H; "beats": rejected unless lo > 0 — it must be shown to win.
    2. **The champion**, when there is one and it is comparable: promoted only if NDCG@10 >= champion x
       (1 + ``min_gain``) **and** the paired interval's lower bound against the champion is above 0, and no
       guard metric (coverage, recall@20) falls below champion x (1 - ``max_guard_drop``).
    3. A champion trained on data at or after the test day (``champion_not_comparable``, a backfill) cannot be
       compared: the reason says so and 1 judges the model. ``backfill`` "keep-newer" (default): even a model
       that passes 1 is not promoted — a champion trained on newer data stays, so a backfill never moves the
       served model back in time (promote by hand to serve it); "baselines": 1 alone decides. A champion that
       exists but was not scored for any other reason blocks promotion.
    4. No champion yet: 1 decides.

    Metrics without intervals (written before they existed) fall back to point comparisons with popularity.
    """
    model = metrics["model"]
    ndcg = float(model["ndcg@10"])
    paired = metrics.get("paired") or {}
    heuristic = metrics.get("strongest_heuristic")
    failures: list[str] = []
    if heuristic and heuristic in paired:
        diff = paired[heuristic]
        lo, hi = float(diff["lo"]), float(diff["hi"])
        base = float(metrics["baselines"][heuristic]["ndcg@10"])
        versus = f"ndcg@10 {ndcg:.4f} vs {heuristic} {base:.4f} ({float(diff['diff']):+.4f} [{lo:+.4f}, {hi:+.4f}])"
        if heuristic_rule == "beats" and lo <= 0:
            failures.append(f"not shown to beat the best simple rule: {versus}")
        elif hi < 0:
            failures.append(f"loses to the best simple rule: {versus}")
    else:
        base = float(metrics["popularity"]["ndcg@10"])
        versus = f"ndcg@10 {ndcg:.4f} vs popularity {base:.4f}"
        if ndcg <= base:
            failures.append(f"must beat popularity: {versus}")

    champion = metrics.get("champion")
    if champion is None:
        not_comparable = metrics.get("champion_not_comparable")
        if has_champion and not not_comparable:
            return False, "a champion exists but was not evaluated on this test day"
        prefix = f"{not_comparable}; decided on the baselines: " if has_champion else "first model: "
        if failures:
            return False, prefix + "; ".join(failures)
        if has_champion and backfill == "keep-newer":
            return False, (
                f"{prefix}passes ({versus}), but a model of an earlier day does not replace a champion trained on "
                "newer data (RECO_GATE_BACKFILL=keep-newer; `reco model promote` serves it by hand)"
            )
        return True, prefix + versus

    needed = float(champion["ndcg@10"]) * (1.0 + min_gain)
    if ndcg < needed:
        failures.append(f"ndcg@10 {ndcg:.4f} < champion {float(champion['ndcg@10']):.4f} x {1 + min_gain:g}")
    against = paired.get("champion")
    if against is not None and float(against["lo"]) <= 0:
        failures.append(
            f"gain over the champion not shown: {float(against['diff']):+.4f} "
            f"[{float(against['lo']):+.4f}, {float(against['hi']):+.4f}]"
        )
    for name in GUARD_METRICS:
        floor = float(champion[name]) * (1.0 - max_guard_drop)
        if float(model[name]) < floor:
            failures.append(
                f"{name} {float(model[name]):.4f} < champion {float(champion[name]):.4f} x {1 - max_guard_drop:g}"
            )
    if failures:
        return False, "; ".join(failures)
    gain = f" ({float(against['diff']):+.4f} [{float(against['lo']):+.4f}, {float(against['hi']):+.4f}])" if against else ""
    return True, (
        f"ndcg@10 {ndcg:.4f} >= champion {float(champion['ndcg@10']):.4f} x {1 + min_gain:g}{gain}, {versus}, guards hold"
    )


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def register_and_gate(
    settings: Settings,
    day: dt.date,
    run_id: str,
    metrics: Mapping[str, Any],
    *,
    min_gain: float | None = None,
    max_guard_drop: float | None = None,
) -> GateResult:
    """Register run ``run_id``'s model, alias it ``challenger``, and ``champion`` if the gate passes.

    ``min_gain`` / ``max_guard_drop`` default to ``settings.gate_min_gain`` / ``gate_max_guard_drop``.
    The champion the metrics were computed against (tag ``eval.champion_version`` set by
    ``reco.evaluate``) must still be the champion; otherwise the comparison is stale and the model
    is rejected.
    """
    min_gain = settings.gate_min_gain if min_gain is None else min_gain
    max_guard_drop = settings.gate_max_guard_drop if max_guard_drop is None else max_guard_drop
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise RecoError(f"no training run {run_id} in {settings.tracking_uri}") from error
    model_uri = run.data.tags.get("model_uri") or f"runs:/{run_id}/{MODEL_ARTIFACT_NAME}"

    champion_before = _alias_version(client, settings.model_name, CHAMPION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = mlflow.register_model(
            model_uri, settings.model_name, tags={"reco.day": day.isoformat(), "run_id": run_id}
        )
    new_version = str(version.version)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, new_version)

    evaluated_against = run.data.tags.get("eval.champion_version")
    if evaluated_against is not None and (evaluated_against or None) != champion_before:
        promote, reason = (
            False,
            (
                f"champion changed since evaluation (evaluated against {evaluated_against or 'none'}, now {champion_before})"
            ),
        )
    else:
        promote, reason = gate(
            metrics,
            has_champion=champion_before is not None,
            min_gain=min_gain,
            max_guard_drop=max_guard_drop,
            heuristic_rule=settings.gate_heuristic_rule,
            backfill=settings.gate_backfill,
        )
    decision = "promoted" if promote else "rejected"
    if promote:
        client.set_registered_model_alias(settings.model_name, CHAMPION, new_version)
    champion_after = new_version if promote else champion_before

    tags = {
        "gate.decision": decision,
        "gate.reason": reason,
        "gate.day": day.isoformat(),
        "gate.min_gain": str(min_gain),
        "gate.max_guard_drop": str(max_guard_drop),
        "gate.champion_before": champion_before or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, new_version, key, value)
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, "registered_version", new_version)
    log.info("version %s %s: %s", new_version, decision, reason)
    return GateResult(decision=decision, reason=reason, model_version=new_version, champion_version=champion_after)


@dataclass
class VersionInfo:
    version: str
    aliases: list[str]
    day: str
    decision: str
    reason: str
    champion_before: str


def _client(settings: Settings) -> MlflowClient:
    from reco.tracking_store import ready

    uri = ready(settings)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every registered version, newest first, with its aliases and the gate's verdict."""
    client = _client(settings)
    try:
        versions = client.search_model_versions(f"name = '{settings.model_name}'")
    except MlflowException as error:
        raise RecoError(f"cannot read the registry at {settings.tracking_uri}: {error}") from error
    # Version search results carry no aliases; the registered model holds the alias -> version map.
    aliases: dict[str, list[str]] = {}
    if versions:
        for alias, version in (client.get_registered_model(settings.model_name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = v.tags or {}
        rows.append(
            VersionInfo(
                version=str(v.version),
                aliases=sorted(aliases.get(str(v.version), [])),
                day=tags.get("gate.day", tags.get("reco.day", "")),
                decision="rolled back" if "rolled_back" in tags else tags.get("gate.decision", ""),
                reason=tags.get("gate.reason", ""),
                champion_before=tags.get("gate.champion_before", ""),
            )
        )
    return rows


def promote(settings: Settings, version: str, *, reason: str) -> tuple[str | None, str]:
    """Point ``champion`` at ``version`` by hand (an operator's override of the gate).

    Returns (previous champion, new champion). The previous champion is recorded on the version
    (tag ``gate.champion_before``) so ``rollback`` can return to it.
    """
    client = _client(settings)
    try:
        client.get_model_version(settings.model_name, version)
    except MlflowException as error:
        raise RecoError(f"{settings.model_name} has no version {version}") from error
    before = _alias_version(client, settings.model_name, CHAMPION)
    if before == version:
        return before, version
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    for key, value in {"gate.decision": "promoted", "gate.reason": f"manual: {reason}",
                       "gate.champion_before": before or ""}.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    log.info("champion %s -> %s (manual: %s)", before, version, reason)
    return before, version


def rollback(settings: Settings) -> tuple[str, str]:
    """Move ``champion`` back to the version it replaced; returns (from, to).

    The service polls the alias and swaps the old version back in by itself; in production the
    deploy step writes the same version to the GitOps overlay.
    """
    client = _client(settings)
    current = _alias_version(client, settings.model_name, CHAMPION)
    if current is None:
        raise RecoError(f"{settings.model_name} has no champion to roll back")
    previous = (client.get_model_version(settings.model_name, current).tags or {}).get("gate.champion_before")
    if not previous:
        raise RecoError(f"champion version {current} replaced no earlier champion: nothing to roll back to")
    client.set_registered_model_alias(settings.model_name, CHAMPION, previous)
    client.set_model_version_tag(settings.model_name, current, "rolled_back", dt.datetime.now(dt.UTC).isoformat())
    log.info("champion rolled back %s -> %s", current, previous)
    return current, previous


def version_gate(settings: Settings, version: str) -> tuple[str, str]:
    """(gate reason, run date) recorded on ``version``; empty strings where the registry has none."""
    try:
        tags = _client(settings).get_model_version(settings.model_name, version).tags or {}
    except MlflowException:
        return "", ""
    return tags.get("gate.reason", ""), tags.get("gate.day", tags.get("reco.day", ""))


def mark_canary_aborted(settings: Settings, version: str, env: str) -> tuple[str, str]:
    """Tag ``version`` ``canary=aborted`` (and where), and move ``champion`` off it if it points there.

    Returns (what was tagged, what happened to the champion).
    """
    client = _client(settings)
    try:
        client.get_model_version(settings.model_name, version)
    except MlflowException as error:
        raise RecoError(f"{settings.model_name} has no version {version}") from error
    client.set_model_version_tag(settings.model_name, version, "canary", "aborted")
    client.set_model_version_tag(settings.model_name, version, "canary.aborted_in", env)
    client.set_model_version_tag(settings.model_name, version, "canary.aborted_at", dt.datetime.now(dt.UTC).isoformat())
    champion = _alias_version(client, settings.model_name, CHAMPION)
    if champion != version:
        return f"version {version} canary=aborted", f"champion stays {champion or 'none'}"
    current, previous = rollback(settings)
    return f"version {version} canary=aborted", f"champion rolled back {current} -> {previous}"
