"""The rendered commands are the ones that work: every task of the committed WorkflowTemplate, in dependency
order, runs its container's command and arguments (parameters substituted, env from the template, a temporary
workdir instead of the bucket) as a subprocess — no cluster, no Argo — and the chain leaves the same summary
as `reco pipeline run` on a copy of the same data."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reco.generate import generate
from reco.gitops import Release, read_release, write_release
from reco.settings import Settings
from workflows.check import dag_order
from workflows.names import platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RENDERED = REPO / "gitops" / "workflows" / "reco-pipeline.yaml"
END = dt.date(2026, 5, 10)
BIN = Path(sys.executable).parent
_PARAM = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise AssertionError(f"the test does not know how Argo would fill {{{{{key}}}}} in {text!r}")
        return values[key]

    return _PARAM.sub(one, text)


def when_holds(expression: str) -> bool:
    left, op, right = expression.split()
    assert op == "==", f"only `a == b` conditions are evaluated here, not {expression!r}"
    return left == right


def pod_env(container: dict[str, Any], workdir: Path, pod_tmp: Path, redis_url: str, gitops_url: str) -> dict[str, str]:
    env = {"PATH": f"{BIN}:{os.environ['PATH']}"}
    # "" = SQLite in the workdir for MLflow; no Argo Server and no webhook: a drifted day would fail the
    # monitor step loudly (it must ask Argo), which this lake's warm-up days do not reach. The GitOps
    # repository is a bare git remote the deploy step clones and pushes to.
    from_sources = {"RECO_REDIS_URL": redis_url, "RECO_MLFLOW_TRACKING_URI": "", "RECO_ARGO_SERVER_URL": "",
                    "RECO_ARGO_TOKEN": "", "RECO_ALERT_WEBHOOK_URL": "", "RECO_GITOPS_REPO": gitops_url,
                    "RECO_GITOPS_TOKEN": ""}  # fmt: skip
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = item["value"]
        else:
            assert name in from_sources, f"the test has no stand-in for {name} ({item['valueFrom']})"
            env[name] = from_sources[name]
    if "RECO_WORKDIR" in env:
        assert env["RECO_WORKDIR"] == platform().workdir["mount_path"]
        env["RECO_WORKDIR"] = str(workdir)  # the bucket's mount, here a folder
    env["HOME"] = str(pod_tmp)
    return env


def local_path(arg: str, pod_tmp: Path) -> str:
    """The pod's /tmp (an emptyDir) is a temporary folder here."""
    return str(pod_tmp / arg.removeprefix("/tmp/")) if arg.startswith("/tmp/") else arg


def gitops_remote(tmp_path: Path) -> str:
    """A bare git repository with the staging overlay's release file, as the GitOps remote."""
    work = tmp_path / "gitops-work"
    (work / "gitops/overlays/staging").mkdir(parents=True)
    text = (REPO / "gitops/overlays/staging/release.yaml").read_text()
    # Releasing version 0 (none yet), so the run's first promoted version is a change to commit.
    (work / "gitops/overlays/staging/release.yaml").write_text(write_release(text, Release(read_release(text).image_tag, "0")))
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"],
                 ["add", "."], ["commit", "-q", "-m", "initial"]):  # fmt: skip
        subprocess.run(["git", "-C", str(work), *args], check=True)
    bare = tmp_path / "gitops.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return f"file://{bare}"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("argo") / "lake"
    generate(Settings(workdir=workdir), users=600, articles=250, days=8, seed=5, end=END)
    return workdir


def test_the_rendered_dag_runs_as_the_local_runner_does(lake: Path, tmp_path: Path, redis_server) -> None:
    local, argo = tmp_path / "local", tmp_path / "argo"
    shutil.copytree(lake, local)
    shutil.copytree(lake, argo)
    base = redis_server.url.rsplit("/", 1)[0]
    gitops = gitops_remote(tmp_path)

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "RECO_ENVIRONMENT": "gke", "RECO_REDIS_URL": f"{base}/3"}
    ran = subprocess.run([str(BIN / "reco"), "pipeline", "run", "--workdir", str(local), "--date", END.isoformat()],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    expected = json.loads((local / "runs" / END.isoformat() / "summary.json").read_text())

    document = yaml.safe_load(RENDERED.read_text())
    templates = {t["name"]: t for t in document["spec"]["templates"]}
    workflow = {p["name"]: p["value"] for p in document["spec"]["arguments"]["parameters"]}
    workflow |= {"date": END.isoformat(), "train-device": "cpu"}
    entry = templates[document["spec"]["entrypoint"]]
    dag_inputs = {f"inputs.parameters.{k}": v for k, v in workflow.items()}
    tasks = {t["name"]: t for t in entry["dag"]["tasks"]}
    outputs: dict[str, str] = {}
    ran_tasks = []
    for name in dag_order(list(tasks.values())):
        task = tasks[name]
        if "when" in task and not when_holds(substitute(task["when"], dag_inputs)):
            continue
        template = templates[task["template"]]
        arguments = {p["name"]: substitute(p["value"], {**dag_inputs, **outputs})
                     for p in task.get("arguments", {}).get("parameters", [])}  # fmt: skip
        values = {f"inputs.parameters.{k}": v for k, v in arguments.items()}
        values["workflow.creationTimestamp"] = dt.datetime.now(dt.UTC).isoformat()
        pod_tmp = tmp_path / f"pod-{name}"
        pod_tmp.mkdir()
        container = template["container"]
        command = [local_path(substitute(a, values), pod_tmp) for a in container["command"] + container["args"]]
        command[0] = str(BIN / command[0])
        result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                env=pod_env(container, argo, pod_tmp, f"{base}/4", gitops))  # fmt: skip
        assert result.returncode == 0, f"task {name}: {command}\n{result.stdout}{result.stderr}"
        for output in template.get("outputs", {}).get("parameters", []):
            path = Path(local_path(output["valueFrom"]["path"], pod_tmp))
            value = path.read_text() if path.is_file() else output["valueFrom"].get("default")
            assert value is not None, f"task {name} left no output {output['name']}"
            outputs[f"tasks.{name}.outputs.parameters.{output['name']}"] = value
        ran_tasks.append(name)

    assert ran_tasks == ["date", "ingest", "validate", "features", "train", "evaluate", "register", "deploy", "monitor"]
    assert outputs["tasks.date.outputs.parameters.date"] == END.isoformat()
    got = json.loads((argo / "runs" / END.isoformat() / "summary.json").read_text())
    assert set(got["steps"]) == set(expected["steps"])
    assert got["gate"] == expected["gate"]
    assert got["model_version"] == expected["model_version"]
    assert got["metrics"]["model"]["ndcg@10"] == pytest.approx(expected["metrics"]["model"]["ndcg@10"])
    assert outputs["tasks.register.outputs.parameters.model-version"] == str(got["model_version"])
    assert outputs["tasks.register.outputs.parameters.gate-decision"] == got["gate"]["decision"]
    assert outputs["tasks.monitor.outputs.parameters.drift-share"] == str(got["drift"]["share"])
    assert got["deploy"]["target"] == "gke"
    # The deploy step cloned the GitOps remote, committed the promoted version to staging and pushed it.
    released = subprocess.run(["git", "-C", gitops.removeprefix("file://"), "show", "main:gitops/overlays/staging/release.yaml"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    if got["gate"]["decision"] == "promoted":
        assert read_release(released).model_version == str(got["model_version"]), got["deploy"]
        assert got["deploy"]["status"].startswith("released"), got["deploy"]
