"""The chain an aborted canary sets off, link by link: the Rollouts notification's request, the event binding that
matches it, and the rendered abort workflow's command run for real against a git remote and an MLflow registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reco.gitops import read_release

ROOT = Path(__file__).resolve().parents[2]
RECO = str(Path(sys.executable).with_name("reco"))


def objects(path: Path) -> list[dict]:
    return [o for o in yaml.safe_load_all(path.read_text()) if o]


def one(objs: list[dict], kind: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return objects(ROOT / "gitops/workflows/reco-gitops-abort.yaml")


@pytest.fixture(scope="module")
def notification() -> dict:
    data = one(objects(ROOT / "gitops/platform/argo-rollouts/notifications.yaml"), "ConfigMap")["data"]
    return yaml.safe_load(data["template.reco-rollout-aborted"])["webhook"]["reco-abort"]


def test_the_notification_reaches_the_binding(rendered: list[dict], notification: dict) -> None:
    binding = one(rendered, "WorkflowEventBinding")
    namespace, discriminator = re.fullmatch(r"/api/v1/events/([\w-]+)/([\w-]+)", notification["path"]).groups()
    assert namespace == binding["metadata"]["namespace"]
    assert f'discriminator == "{discriminator}"' in binding["spec"]["event"]["selector"]
    # The body as the controller sends it for the Rollout (Go templates filled with sample values).
    body = re.sub(r"\{\{[^}]*\}\}", "x", notification["body"])
    payload_keys = set(json.loads(body))
    used = set(re.findall(r"payload\.(\w+)", json.dumps(binding["spec"])))
    assert used <= payload_keys, used - payload_keys
    assert 'payload.rollout == "reco-api"' in binding["spec"]["event"]["selector"]


def test_the_binding_submits_every_parameter_of_the_abort_template(rendered: list[dict]) -> None:
    binding, template = one(rendered, "WorkflowEventBinding"), one(rendered, "WorkflowTemplate")
    assert binding["spec"]["submit"]["workflowTemplateRef"]["name"] == template["metadata"]["name"]
    submitted = {p["name"] for p in binding["spec"]["submit"]["arguments"]["parameters"]}
    declared = {p["name"] for p in template["spec"]["arguments"]["parameters"]}
    assert submitted == declared
    used = set(re.findall(r"workflow\.parameters\.([\w-]+)", json.dumps(template["spec"]["templates"])))
    assert used == declared


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_each_overlay_names_its_environment_for_the_notification(env: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "gitops/overlays" / env)], capture_output=True, text=True)
    if out.returncode != 0 and "not found" in out.stderr and "kubectl" in out.stderr:
        pytest.skip("kubectl is not installed")
    assert out.returncode == 0, out.stderr
    rollout = one(objects_from(out.stdout), "Rollout")
    assert rollout["metadata"]["annotations"]["reco-articles/environment"] == env
    assert "notifications.argoproj.io/subscribe.on-rollout-aborted.reco-abort" in rollout["metadata"]["annotations"]


def objects_from(text: str) -> list[dict]:
    return [o for o in yaml.safe_load_all(text) if o]


def test_the_rendered_abort_command_reverts_the_remote_and_tags_the_registry(
    rendered: list[dict], tmp_path: Path, settings
) -> None:
    """The container's command with the event's parameters, the pod's env pointing at a bare git remote and a
    registry: the remote's staging release goes back, the version is tagged, the champion moves back."""
    from mlflow import MlflowClient

    from reco.gitops import promote
    from reco.registry import promote as make_champion

    work = tmp_path / "repo"
    folder = work / "gitops/overlays/staging"
    folder.mkdir(parents=True)
    (folder / "release.yaml").write_text((ROOT / "gitops/overlays/staging/release.yaml").read_text())
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"],
                 ["add", "."], ["commit", "-q", "-m", "initial"]):  # fmt: skip
        subprocess.run(["git", "-C", str(work), *args], check=True)
    before = read_release((folder / "release.yaml").read_text()).model_version
    settings.mlflow_dir.mkdir(parents=True)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.create_registered_model(settings.model_name)
    for n in range(int(before) + 1):
        client.create_model_version(settings.model_name, source=str(tmp_path / f"m{n}"))
    canary = str(int(before) + 1)
    make_champion(settings, before, reason="earlier")
    make_champion(settings, canary, reason="gate")
    promote(work, "staging", canary)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)

    template = one(rendered, "WorkflowTemplate")
    (container,) = [t["container"] for t in template["spec"]["templates"] if "container" in t]
    params = {"env": "staging", "model-version": canary}
    argv = [re.sub(r"\{\{workflow\.parameters\.([\w-]+)\}\}", lambda m: params[m.group(1)], a)
            for a in container["command"] + container["args"]]  # fmt: skip
    assert argv[0] == "reco"
    env_names = {e["name"] for e in container["env"]}
    assert {"RECO_GITOPS_REPO", "RECO_GITOPS_TOKEN", "RECO_MLFLOW_TRACKING_URI"} <= env_names
    env = {"PATH": f"{Path(RECO).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "RECO_GITOPS_REPO": f"file://{bare}",
           "RECO_MLFLOW_TRACKING_URI": settings.tracking_uri, "RECO_WORKDIR": str(settings.workdir)}  # fmt: skip
    done = subprocess.run([RECO, *argv[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    shown = subprocess.run(["git", "-C", str(bare), "show", "main:gitops/overlays/staging/release.yaml"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert read_release(shown).model_version == before
    assert client.get_model_version(settings.model_name, canary).tags["canary"] == "aborted"
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == before
