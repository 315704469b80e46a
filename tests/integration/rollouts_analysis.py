"""Evaluate rendered Argo Rollouts AnalysisTemplates the way the Rollouts controller does, against real servers.

What is reproduced (read from argo-rollouts' metricproviders/prometheus, metricproviders/webmetric and
utils/evaluate):

* args: a template's ``{{args.NAME}}`` take the value the Rollout passes, else the template's default; an
  arg without either, or one passed that the template does not declare, is an error (as in the controller);
* Prometheus provider: an instant query; a vector becomes ``result`` = the list of its sample values, a
  scalar its value; any other result type is an Error;
* Web provider: GET the URL; a non-2xx answer is an Error; the body is JSON, ``jsonPath`` picks the value,
  and ``result`` is its text;
* the phase: success and failure conditions are both evaluated; failure wins; neither true is
  Inconclusive; only a success condition means "not success = Failed"; an error evaluating either is Error.

Conditions are expressions of antonmedv/expr. This module evaluates a small, exact subset — ``&&``, ``||``,
comparisons, ``len(result)``, ``result``, ``result[i]``, numbers and strings — and refuses anything else with
``UnsupportedCondition``: a condition it cannot evaluate faithfully fails the test instead of being guessed.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"
_ARG = re.compile(r"\{\{\s*args\.([\w-]+)\s*\}\}")


class UnsupportedCondition(Exception):
    """A condition (or jsonPath, or arg source) outside what this evaluator reproduces exactly."""


# -- args --------------------------------------------------------------------------------------------------


def resolve_args(template: dict[str, Any], passed: dict[str, str]) -> dict[str, str]:
    """The template's args: the value passed, else the default; unknown or missing args are errors."""
    declared = {arg["name"]: arg for arg in template["spec"].get("args", [])}
    unknown = set(passed) - set(declared)
    if unknown:
        raise ValueError(
            f"args {sorted(unknown)} passed to {template['metadata']['name']}, which does not declare them"
        )
    values: dict[str, str] = {}
    for name, arg in declared.items():
        if name in passed:
            values[name] = passed[name]
        elif "value" in arg:
            values[name] = str(arg["value"])
        else:
            raise ValueError(f"arg {name} of {template['metadata']['name']} has no value and none was passed")
    return values


def rollout_args(args: list[dict[str, Any]], *, annotations: dict[str, str], pod_template_hash: str) -> dict[str, str]:
    """Values of a Rollout's analysis args, resolving the two ``valueFrom`` forms the controller resolves here:
    ``podTemplateHashValue: Latest`` (the canary's hash) and ``fieldRef`` on the Rollout's annotations."""
    values: dict[str, str] = {}
    for arg in args:
        if "value" in arg:
            values[arg["name"]] = str(arg["value"])
            continue
        source = arg.get("valueFrom", {})
        if source.get("podTemplateHashValue") == "Latest":
            values[arg["name"]] = pod_template_hash
            continue
        path = source.get("fieldRef", {}).get("fieldPath", "")
        match = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
        if match:
            values[arg["name"]] = annotations[match.group(1)]
            continue
        raise UnsupportedCondition(f"arg {arg['name']}: valueFrom {source} is not reproduced here")
    return values


def substitute(text: str, args: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in args:
            raise ValueError(f"{{{{args.{match.group(1)}}}}} is not an arg")
        return args[match.group(1)]

    out = _ARG.sub(value, text)
    if "{{" in out:
        raise UnsupportedCondition(f"unresolved template expression in {out!r}")
    return out


# -- conditions ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<str>\"[^\"\\]*\")|(?P<op>&&|\|\||==|!=|<=|>=|<|>)"
    r"|(?P<name>len\(result\)|result\[\d+\]|result))"
)


def _tokens(condition: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(condition.rstrip()):
        match = _TOKEN.match(condition, at)
        if not match or match.end() == at:
            raise UnsupportedCondition(f"cannot evaluate {condition!r} faithfully (at {condition[at:]!r})")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        at = match.end()
    return out


class _EvalError(Exception):
    """What expr reports as a runtime error (e.g. an index out of range): the measurement is an Error."""


def _operand(kind: str, text: str, result: Any) -> Any:
    if kind == "num":
        return float(text)
    if kind == "str":
        return text[1:-1]
    if text == "result":
        return result
    if text == "len(result)":
        if not isinstance(result, (list, str)):
            raise _EvalError("len of a non-list")
        return len(result)
    index = int(text[len("result[") : -1])
    if not isinstance(result, list) or index >= len(result):
        raise _EvalError(f"index {index} out of range")
    return result[index]


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) != isinstance(right, str):
        raise UnsupportedCondition(f"comparison of {left!r} and {right!r} (mixed types)")
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if isinstance(left, str):
        raise UnsupportedCondition(f"ordering of strings {left!r} {op} {right!r}")
    # IEEE comparisons, as Go's: any comparison with NaN is false.
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def evaluate_condition(condition: str, result: Any) -> bool:
    """``a op b (&& | ||) ...`` with ``&&`` binding tighter, short-circuiting left to right as expr does."""
    tokens = _tokens(condition)
    # Split into || groups of && groups of comparisons.
    groups: list[list[list[tuple[str, str]]]] = [[[]]]
    for kind, text in tokens:
        if kind == "op" and text == "||":
            groups.append([[]])
        elif kind == "op" and text == "&&":
            groups[-1].append([])
        else:
            groups[-1][-1].append((kind, text))
    for conjunction in groups:
        holds = True
        for comparison in conjunction:
            if len(comparison) != 3 or comparison[1][0] != "op" or comparison[0][0] == "op" or comparison[2][0] == "op":
                raise UnsupportedCondition(f"cannot evaluate {condition!r} faithfully: {comparison}")
            left = _operand(*comparison[0], result)
            right = _operand(*comparison[2], result)
            if not _compare(left, comparison[1][1], right):
                holds = False
                break
        if holds:
            return True
    return False


def phase(metric: dict[str, Any], result: Any) -> str:
    """utils/evaluate.EvaluateResult."""
    success, failure = metric.get("successCondition", ""), metric.get("failureCondition", "")
    try:
        ok = evaluate_condition(success, result) if success else False
        bad = evaluate_condition(failure, result) if failure else False
    except _EvalError:
        return ERROR
    if not success and not failure:
        return SUCCESSFUL
    if success and not failure:
        bad = not ok
    if failure and not success:
        ok = not bad
    if bad:
        return FAILED
    return SUCCESSFUL if ok else INCONCLUSIVE


# -- providers ------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    metric: str
    phase: str
    value: Any
    detail: str = ""


def measure(template: dict[str, Any], args: dict[str, str], *, prometheus_url: str | None = None) -> list[Measurement]:
    """One measurement of each metric of ``template`` with resolved ``args``. ``prometheus_url`` replaces the
    provider's in-cluster address (the query, args and conditions are the template's own)."""
    out = []
    for raw in template["spec"]["metrics"]:
        metric = json.loads(substitute(json.dumps(raw), args))
        provider = metric["provider"]
        if "prometheus" in provider:
            out.append(_prometheus(metric, prometheus_url or provider["prometheus"]["address"]))
        elif "web" in provider:
            out.append(_web(metric))
        else:
            raise UnsupportedCondition(f"provider {sorted(provider)} of metric {metric['name']}")
    return out


def _prometheus(metric: dict[str, Any], address: str) -> Measurement:
    query = metric["provider"]["prometheus"]["query"]
    response = httpx.get(f"{address.rstrip('/')}/api/v1/query", params={"query": query}, timeout=30.0)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        return Measurement(metric["name"], ERROR, None, f"{response.status_code} {body}")
    data = body["data"]
    if data["resultType"] == "vector":
        result: Any = [float(sample["value"][1]) for sample in data["result"]]
    elif data["resultType"] == "scalar":
        result = float(data["result"][1])
    else:
        return Measurement(metric["name"], ERROR, None, f"result type {data['resultType']} not supported")
    return Measurement(metric["name"], phase(metric, result), result, query)


def _web(metric: dict[str, Any]) -> Measurement:
    web = metric["provider"]["web"]
    if web.get("method", "GET") != "GET" or web.get("body"):
        raise UnsupportedCondition("web metrics other than GET without a body")
    path = re.fullmatch(r"\{\$((?:\.[A-Za-z_]\w*)+)\}", web.get("jsonPath", ""))
    if not path:
        raise UnsupportedCondition(f"jsonPath {web.get('jsonPath')!r}: only {{$.a.b}} paths are reproduced")
    url = web["url"]
    urllib.parse.urlparse(url)  # a malformed URL raises, as url.Parse would
    headers = {h["key"]: h["value"] for h in web.get("headers", [])}
    try:
        response = httpx.get(url, headers=headers, timeout=float(web.get("timeoutSeconds") or 10))
    except httpx.HTTPError as error:
        return Measurement(metric["name"], ERROR, None, str(error))
    if not 200 <= response.status_code < 300:
        return Measurement(metric["name"], ERROR, None, f"received non 2xx response code: {response.status_code}")
    value: Any = response.json()
    for key in path.group(1).split(".")[1:]:
        if not isinstance(value, dict) or key not in value:
            return Measurement(metric["name"], ERROR, None, f"JSONPath {web['jsonPath']} not in {response.text}")
        value = value[key]
    # k8s jsonpath prints a string as itself, other values as JSON text.
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, float) and math.isnan(value):
        text = "NaN"
    return Measurement(metric["name"], phase(metric, text), text, response.text)
