"""The canary analysis end to end, without a cluster: real service processes, a real Prometheus, the real judge,
and the analysis read from the rendered GitOps tree and evaluated as the Rollouts controller evaluates it.

* Three registered versions over the same ALS factors, which are also the ground truth of the click model:
  ``stable`` ranks by freshness only (a plausible mediocre model), ``good`` ranks by the true affinity,
  ``degraded`` by its opposite. Each serves from its own process, pinned with ``RECO_MODEL_VERSION`` as the
  overlay pins it, scraped by Prometheus with the labels the PodMonitor sets (namespace, pod,
  rollouts_pod_template_hash).
* Traffic: users request pages from the canary or stable pod (a weighted router), and a simulated reader
  clicks each shown article with the ground-truth probability. Feedback is posted to a random pod, without
  ``model_version``: attribution comes from the request id, as from a frontend that echoes nothing.
* The Rollout's analysis (rendered ``gitops/overlays/staging``): the step analysis ``reco-ctr`` through the
  judge (``reco analysis serve``, as deployed), the background ``reco-latency-p99`` / ``reco-error-rate``
  on the canary's pod-template hash. Verdicts: Inconclusive with too little traffic, Successful for the good
  canary, Failed for the degraded one.
"""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from rollouts_analysis import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    UnsupportedCondition,
    evaluate_condition,
    measure,
    phase,
    resolve_args,
    rollout_args,
)
from service_scenario import REPO, ServiceProcess, make_model, register, write_features

from reco.featurestore import apply_and_materialize
from reco.model import RANKER_FEATURES, LinearRanker
from reco.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECO = str(Path(sys.executable).with_name("reco"))
OVERLAY = REPO / "gitops" / "overlays" / "staging"
CANARY_SHARE = 0.25  # of pages; the canary's impressions reach the judge's minimum in seconds
PAGE = 10


# -- the evaluator itself (no servers) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        ("len(result) > 0 && result[0] <= 0.25", [0.1], True),
        ("len(result) > 0 && result[0] <= 0.25", [0.3], False),
        ("len(result) > 0 && result[0] <= 0.25", [], False),
        ("len(result) > 0 && result[0] <= 0.25", [math.nan], False),
        ("len(result) > 0 && result[0] > 0.25", [math.nan], False),
        ('result == "Successful"', "Successful", True),
        ('result == "Failed" || result == "Error"', "Error", True),
    ],
)
def test_conditions_evaluate_as_expr_does(condition: str, result: Any, expected: bool) -> None:
    assert evaluate_condition(condition, result) is expected


def test_unguarded_index_of_an_empty_result_is_an_error_and_unknown_syntax_is_refused() -> None:
    assert phase({"successCondition": "result[0] <= 0.25"}, []) == ERROR
    assert (
        phase(
            {
                "successCondition": "len(result) > 0 && result[0] < 1",
                "failureCondition": "len(result) > 0 && result[0] >= 1",
            },
            [],
        )
        == INCONCLUSIVE
    )
    assert phase({"successCondition": "len(result) > 0 && result[0] < 1"}, []) == FAILED  # no failure condition
    with pytest.raises(UnsupportedCondition):
        evaluate_condition("all(result, {# < 1})", [0.5])
    with pytest.raises(UnsupportedCondition):
        evaluate_condition("asFloat(result) > 1", "2")


# -- the world ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pod:
    name: str
    version: str
    template_hash: str
    process: ServiceProcess


def ranked_by_affinity(base: Any, weight: float, affinity_scale: float) -> Any:
    """``base`` with a ranker that scores only the ALS (= true) affinity, standardised, times ``weight``."""
    n = len(RANKER_FEATURES)
    coef, scale = np.zeros(n), np.ones(n)
    coef[RANKER_FEATURES.index("als_score")] = weight
    scale[RANKER_FEATURES.index("als_score")] = affinity_scale
    return dataclasses.replace(
        base, ranker=LinearRanker(tuple(RANKER_FEATURES), np.zeros(n), scale, coef, 0.0), fingerprint=f"weight-{weight}"
    )


@dataclasses.dataclass
class World:
    users: list[str]
    click_probability: dict[str, dict[str, float]]  # user -> article -> P(click), the ground truth
    pods: dict[str, Pod]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(workdir=tmp_path_factory.mktemp("canary") / "work")
    day, user_ids, article_ids = write_features(settings, n_users=400, n_articles=400, seed=3)
    apply_and_materialize(settings, day, online="sqlite")
    truth = make_model(user_ids, article_ids, factors=16, seed=3, scale=10.0)
    affinity = truth.user_factors @ truth.item_factors.T  # (known users, articles): the ground truth
    # P(click) = sigmoid(-3 + 1.5 z), z the user's standardised affinity: ~5 % at the mean, ~50 % two sd up.
    z = (affinity - affinity.mean(axis=1, keepdims=True)) / affinity.std(axis=1, keepdims=True)
    probability = 1.0 / (1.0 + np.exp(-(-3.0 + 1.5 * z)))
    users = [str(u) for u in truth.user_ids]
    click_probability = {
        u: dict(zip(article_ids, map(float, row), strict=True)) for u, row in zip(users, probability, strict=True)
    }

    no_affinity = ranked_by_affinity(truth, 0.0, float(affinity.std()))  # freshness decides: mediocre
    versions = {
        "stable": register(settings, no_affinity),
        "good": register(settings, ranked_by_affinity(truth, 2.0, float(affinity.std())), alias="challenger"),
        "degraded": register(settings, ranked_by_affinity(truth, -2.0, float(affinity.std())), alias="degraded"),
    }
    pods = {}
    for name, version in versions.items():
        env = {"RECO_ONLINE_STORE": "sqlite", "RECO_MODEL_VERSION": version, "RECO_EXPLORATION_EPSILON": "0",
               "RECO_VARIANT": "stable" if name == "stable" else "canary", "RECO_EVENTS_FLUSH_INTERVAL_S": "0.2"}  # fmt: skip
        pods[name] = Pod(f"reco-api-{name}", version, f"hash{name}", ServiceProcess(settings.workdir, env))
    try:
        for pod in pods.values():
            pod.process.start()
        for pod in pods.values():
            assert pod.process.wait_ready()["model_version"] == pod.version
        yield World(users, click_probability, pods)
    finally:
        for pod in pods.values():
            pod.process.stop()


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """The staging overlay as Argo CD would apply it: the Rollout and the AnalysisTemplates by name."""
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    (rollout,) = [o for o in objects if o["kind"] == "Rollout"]
    templates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "AnalysisTemplate"}
    return {"rollout": rollout, "templates": templates}


@pytest.fixture(scope="module")
def scraped(world: World, prometheus_server: Any) -> Iterator[Any]:
    for pod in world.pods.values():
        labels = {"namespace": "reco", "pod": pod.name, "rollouts_pod_template_hash": pod.template_hash}
        prometheus_server.scrape(f"canary-e2e-{pod.name}", f"127.0.0.1:{pod.process.port}", labels=labels)
    yield prometheus_server
    for pod in world.pods.values():
        prometheus_server.forget(f"canary-e2e-{pod.name}")


@pytest.fixture(scope="module")
def judge(scraped: Any) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([RECO, "analysis", "serve", "--host", "127.0.0.1", "--port", str(port), "--prometheus", scraped.url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            import time

            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- traffic -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    impressions: int = 0
    clicks: int = 0


def drive(world: World, stable: Pod, canary: Pod, *, canary_impressions: int, rng: random.Random) -> dict[str, Tally]:
    """Pages until the canary has shown ``canary_impressions`` articles; clicks from the ground truth.
    Returns what was shown and clicked, by version (the test's own count, to compare with Prometheus')."""
    tallies = {stable.version: Tally(), canary.version: Tally()}
    pending: list[dict[str, Any]] = []
    pods = [stable, canary]
    with httpx.Client(timeout=30.0) as client:

        def flush() -> None:
            if pending:
                target = rng.choice(pods)  # any pod receives feedback, as behind the gateway
                answer = client.post(f"{target.process.url}/events", json={"events": pending})
                assert answer.status_code in (200, 202), answer.text
                pending.clear()

        while tallies[canary.version].impressions < canary_impressions:
            pod = canary if rng.random() < CANARY_SHARE else stable
            user = rng.choice(world.users)
            answer = client.post(f"{pod.process.url}/recommend", json={"user_id": user, "k": PAGE})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            assert page["model_version"] == pod.version
            tally = tallies[pod.version]
            for item in page["items"]:
                base = {"user_id": user, "article_id": item["article_id"], "request_id": page["request_id"]}
                pending.append({**base, "event_type": "impression", "position": item["position"]})
                tally.impressions += 1
                if rng.random() < world.click_probability[user][item["article_id"]]:
                    pending.append({**base, "event_type": "click", "position": item["position"]})
                    tally.clicks += 1
            if len(pending) > 800:
                flush()
        flush()
    return tallies


def wait_counted(prometheus: Any, tallies: dict[str, Tally], before: dict[str, Tally]) -> None:
    """Until Prometheus has scraped every impression and click the driver sent (summed over all pods)."""
    for version, tally in tallies.items():
        earlier = before.get(version, Tally())
        for kind in ("impressions", "clicks"):
            expected = getattr(earlier, kind) + getattr(tally, kind)
            prometheus.wait_for(
                f'sum(reco_{kind}_total{{model_version="{version}"}})',
                lambda r, expected=expected: bool(r) and float(r[0]["value"][1]) >= expected,
                timeout=30,
            )


def analysis(
    rendered: dict[str, Any], world: World, canary: Pod, judge_url: str, prometheus_url: str
) -> dict[str, str]:
    """Every metric of the Rollout's analysis (step and background) for ``canary``, as the controller runs them."""
    rollout = rendered["rollout"]
    annotations = {**rollout["metadata"].get("annotations", {}), "reco-articles/model-version": canary.version}
    canary_spec = rollout["spec"]["strategy"]["canary"]
    runs = [step["analysis"] for step in canary_spec["steps"] if "analysis" in step] + [canary_spec["analysis"]]
    phases: dict[str, str] = {}
    for run in runs:
        passed = rollout_args(run.get("args", []), annotations=annotations, pod_template_hash=canary.template_hash)
        for ref in run["templates"]:
            template = rendered["templates"][ref["templateName"]]
            args = resolve_args(template, passed)
            if "judge-url" in args:
                args["judge-url"] = judge_url  # the in-cluster Service name -> this test's judge process
            for measurement in measure(template, args, prometheus_url=prometheus_url):
                phases[measurement.metric] = measurement.phase
                phases[f"{measurement.metric}.value"] = str(measurement.value)
    return phases


def test_the_rollouts_analysis_judges_good_degraded_and_thin_canaries(
    world: World, rendered: dict[str, Any], scraped: Any, judge: str
) -> None:
    rng = random.Random(11)
    stable, good, degraded = world.pods["stable"], world.pods["good"], world.pods["degraded"]
    metric_names = {m["name"] for t in rendered["templates"].values() for m in t["spec"]["metrics"]}
    assert {"ctr", "p99-latency", "error-rate"} <= metric_names

    # Too little traffic: the judge must not decide either way.
    thin = drive(world, stable, good, canary_impressions=150, rng=rng)
    wait_counted(scraped, thin, {})
    verdict = analysis(rendered, world, good, judge, scraped.url)
    assert verdict["ctr"] == INCONCLUSIVE, verdict

    # The good canary, with enough impressions: the judge clears it; latency and errors pass.
    more = drive(world, stable, good, canary_impressions=3000, rng=rng)
    wait_counted(scraped, more, thin)
    good_ctr = more[good.version].clicks / more[good.version].impressions
    stable_ctr = more[stable.version].clicks / more[stable.version].impressions
    assert good_ctr > stable_ctr  # the ground truth agrees the canary is better
    verdict = analysis(rendered, world, good, judge, scraped.url)
    assert verdict["ctr"] == SUCCESSFUL, verdict
    assert verdict["p99-latency"] == SUCCESSFUL and verdict["error-rate"] == SUCCESSFUL, verdict

    # The degraded canary earns fewer clicks from the same readers: Failed, which aborts the rollout.
    bad = drive(world, stable, degraded, canary_impressions=3000, rng=rng)
    totals = {v: Tally(thin[v].impressions + more[v].impressions, thin[v].clicks + more[v].clicks) for v in thin}
    wait_counted(scraped, bad, totals)
    assert (
        bad[degraded.version].clicks / bad[degraded.version].impressions
        < bad[stable.version].clicks / bad[stable.version].impressions
    )
    verdict = analysis(rendered, world, degraded, judge, scraped.url)
    assert verdict["ctr"] == FAILED, verdict
    # Latency and errors are properties of the canary's pods, not of its ranking: they still pass.
    assert verdict["p99-latency"] == SUCCESSFUL and verdict["error-rate"] == SUCCESSFUL, verdict
