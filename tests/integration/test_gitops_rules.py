"""The recommend API's alerts, recording rules and dashboard, and the canary analysis' Prometheus queries,
evaluated by ``promtool`` on synthetic series.

* gitops/base/monitoring/prometheusrule.yaml: its ``spec`` passes ``promtool check rules``; a steady
  service (a stable and a canary pod) fires no alert while every recorded value it is judged on is present;
  a degraded one fires each alert (CTR 20 % below yesterday, p99 doubled past 0.25 s, 3 % 5xx, 10 %
  fallback, a pod without a model, a failed canary analysis) and a model trained on data more than 3 days
  old fires the age alert.
* gitops/base/analysis-templates.yaml: each Prometheus query, with its ``{{args.…}}`` filled in, is a
  recording rule; for a good, a flawless (no 5xx at all), a bad, an absent and an idle canary the test
  states what the query yields and which outcome the template's own conditions draw from it.
* gitops/base/monitoring/dashboard.yaml: the JSON parses and every expr is valid PromQL.

Times: promtool's clock starts at the Unix epoch; series are one sample per minute unless said otherwise.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import need_binary

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "gitops" / "base" / "monitoring"
ANALYSIS_TEMPLATES = ROOT / "gitops" / "base" / "analysis-templates.yaml"

NAMESPACE = "reco"
STABLE_HASH, CANARY_HASH = "5d8f7c9b4", "7f9c4d2b1"  # Rollouts' pod-template hashes
STABLE_POD, CANARY_POD = f"reco-api-{STABLE_HASH}-x2k9p", f"reco-api-{CANARY_HASH}-q4w8n"
EMPTY_POD = f"reco-api-{STABLE_HASH}-m7q2z"  # a pod that never loads a model
YESTERDAY, SERVED, CANARY = "11", "12", "13"  # model versions: served on day 0, on day 1, the canary's
CANARY_RUN = f"reco-api-{CANARY_HASH}-3"  # AnalysisRun: <rollout>-<pod hash>-<revision>
OLD_RUN = "reco-api-6c4b9d8f1-2"  # an earlier canary's failed run, kept in the history

DAY = 24 * 60  # minutes
EVAL = DAY + 120  # the service scenarios are judged two hours after SERVED took over from YESTERDAY
SPAN = EVAL + 10

ALERTS = {
    "RecoCtrDrop",
    "RecoRecommendLatencyHigh",
    "RecoErrorRateHigh",
    "RecoFallbackRateHigh",
    "RecoModelStale",
    "RecoNoModelServed",
    "RecoModelLoadFailures",
    "RecoCanaryAnalysisFailed",
}

# /recommend answers per minute at or below each bucket bound (cumulative, as the histogram exports them).
LE = ("0.02", "0.03", "0.05", "0.1", "0.25", "0.5", "+Inf")
FAST = (1000, 2000, 2800, 2955, 2985, 3000, 3000)  # p50 0.025 s, p99 0.175 s
SLOW = (1000, 2000, 2500, 2800, 2950, 3000, 3000)  # p99 0.35 s: doubled, above the 0.25 s bar
EVENTS_PER_MINUTE = 1000  # /events answers, all 202: the error ratio's denominator is 3000 + 1000


# -- series ------------------------------------------------------------------------------------


def counter(segments: Sequence[tuple[int, float]], *, start: int = 0) -> str:
    """promtool's notation for a counter absent for ``start`` minutes, then 0, then rising by ``per_minute``
    for each ``(minutes, per_minute)`` segment in turn."""
    parts = [f"_x{start}"] if start else []
    parts.append("0")
    value = 0.0
    for minutes, per_minute in segments:
        value += per_minute
        parts.append(f"{value:g}+{per_minute:g}x{minutes - 1}")
        value += per_minute * (minutes - 1)
    return " ".join(parts)


def gauge(segments: Sequence[tuple[int, float]], *, start: int = 0) -> str:
    """A gauge absent for ``start`` minutes, then holding each ``(minutes, value)`` in turn."""
    parts = [f"_x{start}"] if start else []
    parts += [f"{value:g}x{minutes - 1}" for minutes, value in segments]
    return " ".join(parts)


def series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    body = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


@dataclass(frozen=True)
class Traffic:
    """One pod's /recommend answers per minute: the latency histogram, how many were 5xx, and how many
    came from the fallback, by cause."""

    latency: tuple[int, ...] = FAST
    errors: int = 4
    fallback: Mapping[str, int] = field(default_factory=lambda: {"online_store": 3})


def pod_traffic(
    pod: str, pod_hash: str, variant: str, version: str, traffic: Traffic, *, start: int, minutes: int, idle: int = 0
) -> list[dict[str, str]]:
    """A pod's requests, latency buckets and fallbacks, as the PodMonitor labels them: absent until minute
    ``start``, then ``minutes`` of ``traffic``, then ``idle`` minutes without any request."""
    labels = {"namespace": NAMESPACE, "pod": pod, "rollouts_pod_template_hash": pod_hash, "variant": variant}

    def per_minute(n: float) -> str:
        return counter([(minutes, n), (idle, 0)] if idle else [(minutes, n)], start=start)

    out = [
        series(
            "reco_requests_total",
            {**labels, "endpoint": "recommend", "status": "200", "model_version": version},
            per_minute(traffic.latency[-1] - traffic.errors),
        ),
        series(
            "reco_requests_total",
            {**labels, "endpoint": "events", "status": "202", "model_version": version},
            per_minute(EVENTS_PER_MINUTE),
        ),
    ]
    if traffic.errors:  # as in the service: a status series appears with its first answer
        out.append(
            series(
                "reco_requests_total",
                {**labels, "endpoint": "recommend", "status": "500", "model_version": version},
                per_minute(traffic.errors),
            )
        )
    for le, n in zip(LE, traffic.latency, strict=True):
        out.append(
            series(
                "reco_request_latency_seconds_bucket",
                {**labels, "endpoint": "recommend", "model_version": version, "le": le},
                per_minute(n),
            )
        )
    for cause in ("online_store", "no_model", "model_error"):  # exported from the start, at 0
        out.append(
            series("reco_fallback_total", {**labels, "cause": cause}, per_minute(traffic.fallback.get(cause, 0)))
        )
    return out


def service_scenario(
    *, ctr_today: float, canary_clicked: bool, traffic: Traffic, failed_analysis: bool, empty_pod: bool
) -> list[dict[str, str]]:
    """Day 0: YESTERDAY is served at a CTR of 5 %. Day 1: SERVED replaces it on the stable pod (its training
    data ended at the start of day 1), at ``ctr_today``; a canary pod serves CANARY to a few users, whose
    lists get a 5 % CTR where ``canary_clicked``, else no click at all. Both pods answer ``traffic`` from day
    1 on. Clicks and impressions are counted where they arrive (here all on the stable pod), labelled with
    the version that served the list."""
    stable = {"namespace": NAMESPACE, "pod": STABLE_POD, "rollouts_pod_template_hash": STABLE_HASH, "variant": "stable"}
    canary = {"namespace": NAMESPACE, "pod": CANARY_POD, "rollouts_pod_template_hash": CANARY_HASH, "variant": "canary"}
    today = SPAN - DAY
    out = [
        # Served versions: YESTERDAY until day 1, then SERVED; both gauges stay exported, at 0 when replaced.
        series("reco_model_info", {**stable, "model_version": YESTERDAY}, gauge([(DAY, 1), (today, 0)])),
        series("reco_model_info", {**stable, "model_version": SERVED}, gauge([(today, 1)], start=DAY)),
        series(
            "reco_model_trained_timestamp_seconds",
            {**stable, "model_version": YESTERDAY},
            gauge([(today, 0)], start=DAY),
        ),
        series(
            "reco_model_trained_timestamp_seconds",
            {**stable, "model_version": SERVED},
            gauge([(today, DAY * 60)], start=DAY),
        ),
        series("reco_model_load_failures_total", stable, counter([(SPAN, 0)])),
        series("reco_model_info", {**canary, "model_version": CANARY}, gauge([(today, 1)], start=DAY)),
        series(
            "reco_model_trained_timestamp_seconds",
            {**canary, "model_version": CANARY},
            gauge([(today, DAY * 60)], start=DAY),
        ),
        series("reco_model_load_failures_total", canary, counter([(today, 0)], start=DAY)),
        # Feedback: 2000 impressions a minute, 5 % clicked yesterday; the canary's 20 a minute stay under
        # the CTR alert's 2000 impressions per 30 minutes.
        series("reco_impressions_total", {**stable, "model_version": YESTERDAY}, counter([(DAY, 2000), (today, 0)])),
        series("reco_clicks_total", {**stable, "model_version": YESTERDAY}, counter([(DAY, 100), (today, 0)])),
        series("reco_impressions_total", {**stable, "model_version": SERVED}, counter([(today, 2000)], start=DAY)),
        series(
            "reco_clicks_total", {**stable, "model_version": SERVED}, counter([(today, 2000 * ctr_today)], start=DAY)
        ),
        series("reco_impressions_total", {**stable, "model_version": CANARY}, counter([(today, 20)], start=DAY)),
        *pod_traffic(STABLE_POD, STABLE_HASH, "stable", SERVED, traffic, start=DAY, minutes=today),
        *pod_traffic(CANARY_POD, CANARY_HASH, "canary", CANARY, traffic, start=DAY, minutes=today),
        # Argo Rollouts' controller: an earlier canary's run failed and stays in the history.
        *analysis_run(OLD_RUN, {"p99-latency": "Failed", "error-rate": "Successful", "ctr": "Successful"}),
    ]
    if canary_clicked:  # a click series exists once a click arrives
        out.append(series("reco_clicks_total", {**stable, "model_version": CANARY}, counter([(today, 1)], start=DAY)))
    if failed_analysis:
        out += analysis_run(CANARY_RUN, {"p99-latency": "Failed", "error-rate": "Successful", "ctr": "Running"})
        out.append(rollout("Degraded"))
    else:
        out += analysis_run(CANARY_RUN, {"p99-latency": "Running", "error-rate": "Running", "ctr": "Running"})
        out.append(rollout("Progressing"))
    if empty_pod:
        # Started with day 1, never loads a model: a failed attempt every 10 minutes.
        empty = {
            "namespace": NAMESPACE,
            "pod": EMPTY_POD,
            "rollouts_pod_template_hash": STABLE_HASH,
            "variant": "stable",
        }
        out.append(series("reco_model_load_failures_total", empty, counter([(today, 0.1)], start=DAY)))
    return out


def analysis_run(name: str, phases: Mapping[str, str]) -> list[dict[str, str]]:
    """``analysis_run_metric_phase``: per metric, 1 for its phase and 0 for the five others (as the controller
    exports it), the whole SPAN."""
    types = {"p99-latency": "Prometheus", "error-rate": "Prometheus", "ctr": "Web"}
    return [
        series(
            "analysis_run_metric_phase",
            {
                "namespace": NAMESPACE,
                "name": name,
                "metric": metric,
                "type": types[metric],
                "dry_run": "false",
                "phase": phase,
            },
            gauge([(SPAN, int(phase == current))]),
        )
        for metric, current in phases.items()
        for phase in ("Pending", "Running", "Successful", "Failed", "Error", "Inconclusive")
    ]


def rollout(phase: str) -> dict[str, str]:
    labels = {"namespace": NAMESPACE, "name": "reco-api", "strategy": "canary", "traffic_router": "", "phase": phase}
    return series("rollout_info", labels, gauge([(SPAN, 1)]))


# -- promtool ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    return need_binary("promtool")


def promtool_run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def write_yaml(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def promtool_test(
    promtool: str,
    tmp_path: Path,
    rules: Mapping[str, Any],
    tests: list[dict[str, Any]],
    *,
    evaluation_interval: str = "1m",
    expect_pass: bool = True,
) -> str:
    """``promtool test rules`` on ``tests`` against ``rules``; its output. A pass must say SUCCESS (so an
    empty or skipped file cannot pass for one); a failure, when expected, must say FAILED."""
    write_yaml(tmp_path / "rules.yaml", rules)
    # promtool evaluates groups in map order unless told: with the alerts first, an alert reads the recorded
    # series of the previous step, which a 10-minute step puts beyond the 5-minute lookback (flaky, 1 in 4).
    # In the file's order, as a Prometheus at a 30 s interval sees them within one lookback.
    order = [group["name"] for group in rules["groups"]]
    unit = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": evaluation_interval,
        "group_eval_order": order,
        "tests": tests,
    }
    write_yaml(tmp_path / "unit.yaml", unit)
    done = promtool_run(promtool, "test", "rules", "unit.yaml", cwd=tmp_path)
    output = done.stdout + done.stderr
    if expect_pass:
        assert done.returncode == 0 and "SUCCESS" in output, output
    else:
        assert done.returncode != 0 and "FAILED" in output, output
    return output


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def prometheus_rule() -> dict[str, Any]:
    (rule,) = load_yaml_documents(MONITORING / "prometheusrule.yaml")
    return rule


def unit_test_rules() -> dict[str, Any]:
    """The PrometheusRule's spec without annotations: promtool compares rendered annotations verbatim, and
    the runbook prose is not what these tests judge (``promtool check rules`` parses its templates)."""
    spec = copy.deepcopy(prometheus_rule()["spec"])
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return spec


def alert_tests(eval_minute: int, firing: Mapping[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """An alert_rule_test for every alert of the rule file: those in ``firing`` with exactly those labels,
    every other one silent."""
    assert set(firing) <= ALERTS
    return [
        {
            "eval_time": f"{eval_minute}m",
            "alertname": name,
            "exp_alerts": [{"exp_labels": labels} for labels in firing.get(name, [])],
        }
        for name in sorted(ALERTS)
    ]


def sample(expr: str, eval_minute: int, value: float, *labels: str) -> dict[str, Any]:
    """A promql_expr_test: ``expr`` gives ``value`` for exactly the series ``labels`` (default: one series
    without labels). promtool compares floats exactly, and rates and quantiles carry rounding, so the
    comparison is made in PromQL within a relative 1e-9: 1 per series that matches, 0 per series that does
    not."""
    tolerance = 1e-9 * max(abs(value), 1.0)
    return {
        "expr": f"abs(({expr}) - {value!r}) <= bool {tolerance!r}",
        "eval_time": f"{eval_minute}m",
        "exp_samples": [{"labels": one, "value": 1} for one in labels or ("{}",)],
    }


# -- the PrometheusRule ------------------------------------------------------------------------


def test_prometheus_rule_is_what_kube_prometheus_stack_loads(promtool: str, tmp_path: Path) -> None:
    rule = prometheus_rule()
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["name"] == "reco-api"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == ALERTS, "a new alert needs its case in this file"
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"].strip() and len(alert["annotations"]["description"]) > 80, alert["alert"]
    path = write_yaml(tmp_path / "rules.yaml", rule["spec"])
    done = promtool_run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_steady_service_fires_nothing(promtool: str, tmp_path: Path) -> None:
    """CTR 5 % below yesterday's (within the 15 % margin), p99 0.175 s, 0.1 % 5xx, 0.1 % fallback, a fresh
    model, a canary analysis in progress (an earlier run's failure in the history does not count)."""
    inputs = service_scenario(
        ctr_today=0.05 * 0.95, canary_clicked=True, traffic=Traffic(), failed_analysis=False, empty_pod=False
    )
    ns = f'{{namespace="{NAMESPACE}"}}'
    served = f'{{namespace="{NAMESPACE}", model_version="{SERVED}"}}'
    canary = f'{{namespace="{NAMESPACE}", model_version="{CANARY}"}}'
    exprs = [
        # Silence is not from missing data: every value the alerts read is there.
        sample("namespace_model_version:reco_ctr:ratio_rate30m" + served, EVAL, 0.0475, served),
        sample("namespace_model_version:reco_ctr:ratio_rate30m" + canary, EVAL, 0.05, canary),
        sample("namespace:reco_ctr:ratio_rate30m" + ns, EVAL - DAY, 0.05, ns),
        sample("namespace:reco_recommend_latency_seconds:p99_rate5m", EVAL, 0.175, ns),
        sample("namespace:reco_recommend_latency_seconds:p50_rate5m", EVAL, 0.025, ns),
        sample("namespace:reco_requests:error_ratio_rate5m", EVAL, 0.001, ns),
        sample("namespace:reco_fallback:ratio_rate5m", EVAL, 0.001, ns),
        sample(
            'namespace_cause:reco_fallback:ratio_rate5m{cause="online_store"}',
            EVAL,
            0.001,
            f'{{namespace="{NAMESPACE}", cause="online_store"}}',
        ),
        # Age of the served versions only (YESTERDAY's gauge is 0 now): 2 hours for both.
        sample("namespace_model_version:reco_model_age_seconds", EVAL, 7200, served, canary),
    ]
    tests = [
        {"interval": "1m", "input_series": inputs, "alert_rule_test": alert_tests(EVAL, {}), "promql_expr_test": exprs}
    ]
    promtool_test(promtool, tmp_path, unit_test_rules(), tests)


def test_degraded_service_fires_each_alert(promtool: str, tmp_path: Path) -> None:
    """CTR 20 % below yesterday's, p99 0.35 s, 3 % 5xx, 10 % fallback, a pod that cannot load a model, a
    failed canary analysis with the Rollout Degraded."""
    bad = Traffic(latency=SLOW, errors=120, fallback={"online_store": 300})
    inputs = service_scenario(ctr_today=0.04, canary_clicked=False, traffic=bad, failed_analysis=True, empty_pod=True)
    ns = {"namespace": NAMESPACE}
    firing = {
        "RecoCtrDrop": [{**ns, "model_version": SERVED, "severity": "warning"}],
        "RecoRecommendLatencyHigh": [{**ns, "severity": "warning"}],
        "RecoErrorRateHigh": [{**ns, "severity": "critical"}],
        "RecoFallbackRateHigh": [{**ns, "severity": "warning"}],
        "RecoNoModelServed": [{**ns, "pod": EMPTY_POD, "severity": "critical"}],
        "RecoModelLoadFailures": [{**ns, "pod": EMPTY_POD, "severity": "warning"}],
        "RecoCanaryAnalysisFailed": [
            {"name": CANARY_RUN, "metric": "p99-latency", "phase": "Failed", "severity": "warning"},
            {"name": OLD_RUN, "metric": "p99-latency", "phase": "Failed", "severity": "warning"},
        ],
    }
    served = f'{{namespace="{NAMESPACE}", model_version="{SERVED}"}}'
    canary = f'{{namespace="{NAMESPACE}", model_version="{CANARY}"}}'
    exprs = [
        sample("namespace:reco_recommend_latency_seconds:p99_rate5m", EVAL, 0.35, f'{{namespace="{NAMESPACE}"}}'),
        sample("namespace:reco_requests:error_ratio_rate5m", EVAL, 0.03, f'{{namespace="{NAMESPACE}"}}'),
        sample(f"namespace_model_version:reco_ctr:ratio_rate30m{served}", EVAL, 0.04, served),
        # Shown, never clicked: CTR 0 (not missing), but too few impressions for the CTR alert.
        sample(f"namespace_model_version:reco_ctr:ratio_rate30m{canary}", EVAL, 0, canary),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": alert_tests(EVAL, firing),
            "promql_expr_test": exprs,
        },
        # The CTR alert holds for its 30 minutes: SERVED is 20 % down from its first minute, still silent 25 in.
        {
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [{"eval_time": f"{DAY + 25}m", "alertname": "RecoCtrDrop", "exp_alerts": []}],
        },
    ]
    promtool_test(promtool, tmp_path, unit_test_rules(), tests)


def test_model_trained_on_data_older_than_three_days_fires_the_age_alert(promtool: str, tmp_path: Path) -> None:
    """The served version's training data ended at 01:00 on day 0; its predecessor's gauge is 0 (no longer
    served) and must not count as 1970. Ten-minute steps: the clock must run for days."""
    pod = {"namespace": NAMESPACE, "pod": STABLE_POD, "rollouts_pod_template_hash": STABLE_HASH, "variant": "stable"}
    steps = 4 * 24 * 6 + 1  # four days and one step, at 10 minutes
    inputs = [
        series("reco_model_info", {**pod, "model_version": SERVED}, gauge([(steps, 1)])),
        series("reco_model_trained_timestamp_seconds", {**pod, "model_version": SERVED}, gauge([(steps, 3600)])),
        series("reco_model_info", {**pod, "model_version": YESTERDAY}, gauge([(steps, 0)])),
        series("reco_model_trained_timestamp_seconds", {**pod, "model_version": YESTERDAY}, gauge([(steps, 0)])),
    ]
    labels = {"namespace": NAMESPACE, "model_version": SERVED}
    three_days, four_days = 3 * DAY, 4 * DAY
    tests = [
        {
            "interval": "10m",
            "input_series": inputs,
            "alert_rule_test": [
                # 2 days 23 hours old; then 3 days 10 minutes, pending for less than its hour.
                {"eval_time": f"{three_days}m", "alertname": "RecoModelStale", "exp_alerts": []},
                {"eval_time": f"{three_days + 70}m", "alertname": "RecoModelStale", "exp_alerts": []},
                {
                    "eval_time": f"{four_days}m",
                    "alertname": "RecoModelStale",
                    "exp_alerts": [{"exp_labels": {**labels, "severity": "warning"}}],
                },
            ],
            "promql_expr_test": [
                sample(
                    "namespace_model_version:reco_model_age_seconds",
                    four_days,
                    four_days * 60 - 3600,
                    f'{{namespace="{NAMESPACE}", model_version="{SERVED}"}}',
                ),
            ],
        }
    ]
    promtool_test(promtool, tmp_path, unit_test_rules(), tests, evaluation_interval="10m")


def test_a_wrong_expectation_is_reported_as_a_failure(promtool: str, tmp_path: Path) -> None:
    """The harness can fail: a p99 expected at 0.2 s where the series give 0.175 s, and an alert expected
    where none fires, are both reported."""
    inputs = pod_traffic(STABLE_POD, STABLE_HASH, "stable", SERVED, Traffic(), start=0, minutes=30)
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "RecoErrorRateHigh",
                    "exp_alerts": [{"exp_labels": {"namespace": NAMESPACE, "severity": "critical"}}],
                }
            ],
            "promql_expr_test": [
                sample("namespace:reco_recommend_latency_seconds:p99_rate5m", 20, 0.2, f'{{namespace="{NAMESPACE}"}}')
            ],
        }
    ]
    output = promtool_test(promtool, tmp_path, unit_test_rules(), tests, expect_pass=False)
    assert "RecoErrorRateHigh" in output and "reco_recommend_latency_seconds:p99_rate5m" in output, output


# -- the canary analysis' Prometheus queries ---------------------------------------------------


@dataclass(frozen=True)
class PrometheusMetric:
    """One Prometheus-provider metric of an AnalysisTemplate, its args filled in."""

    template: str
    metric: str
    query: str
    success: str
    failure: str

    @property
    def record(self) -> str:
        return f"analysis:{self.template}:{self.metric}".replace("-", "_")


CONDITION = re.compile(r"len\(result\) > 0 && result\[0\] (<=|<|>=|>) ([0-9.eE+-]+)")
COMPARE = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def holds(condition: str, result: list[float]) -> bool:
    """A condition of the form ``len(result) > 0 && result[0] <op> <number>``, as Rollouts' expr evaluates it
    (NaN compares false both ways, as in Go)."""
    match = CONDITION.fullmatch(condition.strip())
    assert match, f"not the guarded form the analysis relies on: {condition!r}"
    return len(result) > 0 and COMPARE[match[1]](result[0], float(match[2]))


def outcome(metric: PrometheusMetric, result: list[float]) -> str:
    success, failure = holds(metric.success, result), holds(metric.failure, result)
    assert not (success and failure), (metric, result)
    return "Successful" if success else "Failed" if failure else "Inconclusive"


def prometheus_metrics() -> list[PrometheusMetric]:
    """Each AnalysisTemplate's Prometheus metrics with ``{{args.X}}`` replaced by the arg's default, or the
    test's canary hash for ``canary-hash`` (the Rollout passes it)."""
    found = []
    for template in load_yaml_documents(ANALYSIS_TEMPLATES):
        assert template["kind"] == "AnalysisTemplate"
        args = {a["name"]: a.get("value") for a in template["spec"].get("args", [])}
        args["canary-hash"] = CANARY_HASH

        def fill(text: str, args: dict[str, str | None] = args) -> str:
            filled = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: str(args[m[1]]), text)
            assert "{{" not in filled and "None" not in filled, filled
            return filled

        for metric in template["spec"]["metrics"]:
            if "prometheus" not in metric["provider"]:
                continue
            found.append(
                PrometheusMetric(
                    template["metadata"]["name"],
                    metric["name"],
                    fill(metric["provider"]["prometheus"]["query"]),
                    fill(metric["successCondition"]),
                    fill(metric["failureCondition"]),
                )
            )
    return found


def analysis_rules(metrics: list[PrometheusMetric]) -> dict[str, Any]:
    return {"groups": [{"name": "analysis", "rules": [{"record": m.record, "expr": m.query} for m in metrics]}]}


def analysis_scenario(canary: Traffic | None, *, idle: bool = False) -> list[dict[str, str]]:
    """A stable pod that is slow and failing (the queries must not see it), and the canary's pod answering
    ``canary`` (none: no canary series at all). ``idle``: the canary answered for 10 minutes, then nothing."""
    broken = Traffic(latency=SLOW, errors=600)
    out = pod_traffic(STABLE_POD, STABLE_HASH, "stable", SERVED, broken, start=0, minutes=30)
    if canary is not None:
        minutes, rest = (10, 20) if idle else (30, 0)
        out += pod_traffic(CANARY_POD, CANARY_HASH, "canary", CANARY, canary, start=0, minutes=minutes, idle=rest)
    return out


ANALYSIS_EVAL = 20  # minutes; the queries read 2 minutes


@pytest.mark.parametrize(
    ("case", "canary", "idle", "expected"),
    [
        # (p99 seconds, error ratio): values, or [] for an empty result, or NaN
        ("good", Traffic(), False, {"p99-latency": [0.175], "error-rate": [0.001]}),
        # No 5xx series exists before the first 5xx: the query must still give 0, not nothing.
        ("flawless", Traffic(errors=0), False, {"p99-latency": [0.175], "error-rate": [0.0]}),
        ("bad", Traffic(latency=SLOW, errors=120), False, {"p99-latency": [0.35], "error-rate": [0.03]}),
        ("no traffic yet", None, False, {"p99-latency": [], "error-rate": []}),
        ("idle", Traffic(), True, {"p99-latency": [math.nan], "error-rate": [math.nan]}),
    ],
)
def test_analysis_queries_judge_the_canary(
    promtool: str, tmp_path: Path, case: str, canary: Traffic | None, idle: bool, expected: dict[str, list[float]]
) -> None:
    metrics = prometheus_metrics()
    assert {(m.template, m.metric) for m in metrics} == {
        ("reco-latency-p99", "p99-latency"),
        ("reco-error-rate", "error-rate"),
    }
    exprs = []
    for metric in metrics:
        result = expected[metric.metric]
        if not result:
            exprs.append({"expr": metric.record, "eval_time": f"{ANALYSIS_EVAL}m", "exp_samples": []})
        elif math.isnan(result[0]):  # NaN equals nothing, itself included: count the samples that are NaN
            nan = f"count({metric.record} != {metric.record})"
            exprs.append(sample(nan, ANALYSIS_EVAL, 1))
        else:
            exprs.append(sample(metric.record, ANALYSIS_EVAL, result[0]))
    tests = [{"interval": "1m", "input_series": analysis_scenario(canary, idle=idle), "promql_expr_test": exprs}]
    promtool_test(promtool, tmp_path, analysis_rules(metrics), tests)

    want = {"good": "Successful", "flawless": "Successful", "bad": "Failed"}.get(case, "Inconclusive")
    for metric in metrics:
        assert outcome(metric, expected[metric.metric]) == want, (case, metric.metric)


# -- the dashboard -----------------------------------------------------------------------------

# Grafana's variables, as the queries would be sent for the reco namespace.
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$namespace": NAMESPACE}


def dashboard() -> dict[str, Any]:
    (config_map,) = load_yaml_documents(MONITORING / "dashboard.yaml")
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "reco-api-dashboard"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    return json.loads(text)


def test_dashboard_json_and_its_promql(promtool: str, tmp_path: Path) -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    exprs = []
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{panel['title']}: a variable the test does not know: {expr}"
            exprs.append(expr)
    text = "\n".join(exprs)
    for metric in ("reco_requests_total", "reco_model_info", "reco_events_buffered", "analysis_run_metric_phase"):
        assert metric in text, metric
    # Recorded series the panels read must be recorded by the PrometheusRule.
    recorded = {r["record"] for g in prometheus_rule()["spec"]["groups"] for r in g["rules"] if "record" in r}
    used = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+\b", text))
    assert used and used <= recorded, used - recorded
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:panel_{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = write_yaml(tmp_path / "dashboard-rules.yaml", rules)
    done = promtool_run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in done.stdout, done.stdout + done.stderr
