"""The strict check of rendered workflows. Hera's models accept unknown keys silently and Argo only
complains at submission time, in the cluster; this check fails here, on the rendered YAML:

* **no unknown key**: every object survives a round trip through Hera's Argo models unchanged (a key
  the model does not know is dropped by the round trip, so it shows as a difference);
* every template a task or the ``onExit`` names exists (``templateRef`` must name ``reco-pipeline``);
* every ``{{inputs.parameters.X}}`` a template uses is one of its inputs, every ``{{workflow.parameters.X}}``
  is a workflow argument, every ``{{tasks.T.outputs.parameters.P}}`` names a task of the same DAG that
  declares that output, every ``depends`` names tasks of the DAG;
* every DAG task is a step of ``reco.pipeline.STEPS`` (or its GPU variant, or the date task), each step
  has its task, and the DAG's dependency order is the local runner's order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from hera.workflows.models import CronWorkflow, Workflow, WorkflowEventBinding, WorkflowTemplate

from reco.pipeline import STEPS, Step

_MODELS = {
    "WorkflowTemplate": WorkflowTemplate,
    "CronWorkflow": CronWorkflow,
    "Workflow": Workflow,
    "WorkflowEventBinding": WorkflowEventBinding,
}
_INPUT = re.compile(r"\{\{\s*inputs\.parameters\.([\w-]+)\s*\}\}")
_WORKFLOW = re.compile(r"\{\{\s*workflow\.parameters\.([\w-]+)\s*\}\}")
_TASK_OUT = re.compile(r"\{\{\s*tasks\.([\w-]+)\.outputs\.parameters\.([\w-]+)\s*\}\}")
_DEPENDS_NAME = re.compile(r"([A-Za-z0-9][\w-]*)(?:\.\w+)?")
_DEPENDS_WORDS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}


def roundtrip_differences(obj: dict[str, Any]) -> list[str]:
    """Paths where ``obj`` and its round trip through Hera's model of its kind differ (unknown keys)."""
    model = _MODELS.get(str(obj.get("kind")))
    if model is None:
        return []
    again = model.model_validate(obj).model_dump(by_alias=True, exclude_none=True, mode="json")
    return list(_diff(obj, again, obj.get("kind", "?")))


def _diff(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                yield f"{path}.{key}: unknown to Argo's schema (dropped by the model)"
            elif key not in a:
                yield f"{path}.{key}: added by the model"
            else:
                yield from _diff(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b and str(a) != str(b):
        yield f"{path}: {a!r} became {b!r}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _names(params: dict[str, Any] | None) -> set[str]:
    return {p["name"] for p in (params or {}).get("parameters", [])}


def structure_problems(obj: dict[str, Any], steps: Sequence[Step] = STEPS) -> list[str]:
    """What is wrong with a rendered WorkflowTemplate or Workflow (empty: nothing)."""
    spec = obj.get("spec", {})
    templates = {t["name"]: t for t in spec.get("templates", [])}
    arguments = _names(spec.get("arguments"))
    problems: list[str] = []
    if spec.get("entrypoint") not in templates:
        problems.append(f"entrypoint {spec.get('entrypoint')!r} is not a template")
    if spec.get("onExit") and spec["onExit"] not in templates:
        problems.append(f"onExit {spec['onExit']!r} is not a template")
    for name, template in templates.items():
        declared = _names(template.get("inputs"))
        body = {k: v for k, v in template.items() if k not in ("inputs", "outputs", "name")}
        for text in _strings(body):
            problems += [f"template {name}: uses undeclared input {p!r}" for p in _INPUT.findall(text) if p not in declared]
            problems += [f"template {name}: uses unknown workflow parameter {p!r}" for p in _WORKFLOW.findall(text)
                         if p not in arguments]  # fmt: skip
        for text in _strings(template.get("outputs", {})):
            problems += [f"template {name}: output uses input {p!r}" for p in _INPUT.findall(text) if p not in declared]
        if "dag" in template:
            problems += _dag_problems(name, template["dag"]["tasks"], templates)
    return problems


def _dag_problems(dag: str, tasks: list[dict[str, Any]], templates: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    by_name = {t["name"]: t for t in tasks}
    for task in tasks:
        where = f"dag {dag}, task {task['name']}"
        if "templateRef" in task:
            if task["templateRef"].get("name") != "reco-pipeline":
                problems.append(f"{where}: templateRef to unknown WorkflowTemplate {task['templateRef'].get('name')!r}")
            target_inputs = None
        elif task.get("template") not in templates:
            problems.append(f"{where}: template {task.get('template')!r} does not exist")
            continue
        else:
            target_inputs = _names(templates[task["template"]].get("inputs"))
        passed = _names(task.get("arguments"))
        if target_inputs is not None:
            problems += [f"{where}: input {p!r} of {task['template']} is not passed" for p in sorted(target_inputs - passed)]
            problems += [f"{where}: argument {p!r} is not an input of {task['template']}"
                         for p in sorted(passed - target_inputs)]  # fmt: skip
        for text in _strings(task.get("arguments", {})) if task.get("arguments") else []:
            for other, output in _TASK_OUT.findall(text):
                source = by_name.get(other)
                if source is None:
                    problems.append(f"{where}: reads the output of unknown task {other!r}")
                elif output not in {p["name"] for p in templates.get(source.get("template", ""), {}).get("outputs", {}).get("parameters", [])}:
                    problems.append(f"{where}: task {other!r} has no output {output!r}")
        for word in _DEPENDS_NAME.findall(task.get("depends") or ""):
            if word not in by_name and word not in _DEPENDS_WORDS:
                problems.append(f"{where}: depends on unknown task {word!r}")
    return problems


def dag_order(tasks: list[dict[str, Any]]) -> list[str]:
    """Task names in dependency order (Kahn's algorithm, ties in listing order)."""
    deps = {t["name"]: {w for w in _DEPENDS_NAME.findall(t.get("depends") or "") if w not in _DEPENDS_WORDS}
            for t in tasks}  # fmt: skip
    order: list[str] = []
    while len(order) < len(deps):
        ready = [n for n in deps if n not in order and deps[n] <= set(order)]
        if not ready:
            raise ValueError(f"cycle among tasks {sorted(set(deps) - set(order))}")
        order.append(ready[0])
    return order


def step_problems(obj: dict[str, Any], steps: Sequence[Step] = STEPS, *, entry: str = "daily") -> list[str]:
    """Every task of the ``entry`` DAG is a step (or its GPU variant, or the date task), in the runner's order."""
    templates = {t["name"]: t for t in obj["spec"]["templates"]}
    tasks = templates[entry]["dag"]["tasks"]
    names = [s.name for s in steps]
    known = {"date", *names, *(f"{s.name}-gpu" for s in steps if s.gpu)}
    problems = [f"task {t['name']!r} is not a step of reco.pipeline.STEPS" for t in tasks if t["name"] not in known]
    problems += [f"step {n!r} has no task" for n in names if n not in {t["name"] for t in tasks}]
    ordered = [n.removesuffix("-gpu") for n in dag_order(tasks) if n != "date"]
    ordered = list(dict.fromkeys(ordered))
    if ordered != names:
        problems.append(f"DAG order {ordered} differs from the runner's {names}")
    return problems
