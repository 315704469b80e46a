"""The rendered Argo workflows: committed YAML equals the Python, no unknown keys, every reference
resolves, the DAG is the runner's step list, and production settings are where they must be."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from reco.pipeline import STEPS, Step
from workflows.check import dag_order, roundtrip_differences, step_problems, structure_problems
from workflows.daily import build_backfill, build_cron, build_pipeline
from workflows.names import platform
from workflows.render import documents, dump

RENDERED = Path(__file__).resolve().parents[2] / "gitops" / "workflows"


def template() -> dict[str, Any]:
    return build_pipeline().to_dict()


def templates_by_name(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in obj["spec"]["templates"]}


def test_committed_yaml_is_what_the_python_renders() -> None:
    rendered = documents()
    committed = sorted(p.name for p in RENDERED.glob("*.yaml"))
    assert committed == sorted(rendered), "run `reco workflows render` and commit gitops/workflows/"
    for name, objects in rendered.items():
        assert (RENDERED / name).read_text() == dump(objects), f"{name} is stale: run `reco workflows render`"


@pytest.mark.parametrize("name", ["reco-pipeline.yaml", "reco-daily.yaml", "serviceaccount.yaml"])
def test_every_object_survives_the_argo_models_unchanged(name: str) -> None:
    for obj in yaml.safe_load_all((RENDERED / name).read_text()):
        assert roundtrip_differences(obj) == []


def test_the_strict_check_sees_what_the_models_let_through() -> None:
    good = template()
    assert structure_problems(good) == [] and step_problems(good) == []

    typo = copy.deepcopy(good)
    templates_by_name(typo)["train"]["container"]["resource"] = {"limits": {"cpu": "1"}}  # 'resources'
    assert any("container.resource: unknown" in p for p in roundtrip_differences(typo))

    undeclared = copy.deepcopy(good)
    templates_by_name(undeclared)["evaluate"]["container"]["args"].append("{{inputs.parameters.day}}")
    assert "template evaluate: uses undeclared input 'day'" in structure_problems(undeclared)

    dangling = copy.deepcopy(good)
    dag = templates_by_name(dangling)["daily"]["dag"]["tasks"]
    next(t for t in dag if t["name"] == "register")["depends"] = "evalute.Succeeded"
    assert "dag daily, task register: depends on unknown task 'evalute'" in structure_problems(dangling)

    missing = copy.deepcopy(good)
    del templates_by_name(missing)["monitor"]["inputs"]["parameters"][1]
    assert "dag daily, task monitor: argument 'retrain' is not an input of monitor" in structure_problems(missing)

    reordered = copy.deepcopy(good)
    dag = templates_by_name(reordered)["daily"]["dag"]["tasks"]
    next(t for t in dag if t["name"] == "evaluate")["depends"] = "features.Succeeded"
    next(t for t in dag if t["name"] == "train")["depends"] = "evaluate.Succeeded"
    next(t for t in dag if t["name"] == "train-gpu")["depends"] = "evaluate.Succeeded"
    next(t for t in dag if t["name"] == "register")["depends"] = "train.Succeeded || train-gpu.Succeeded"
    assert any("differs from the runner's" in p for p in step_problems(reordered))


def test_a_step_added_to_the_runner_appears_in_the_dag() -> None:
    steps = list(STEPS)
    steps.insert(3, Step("audit", lambda ctx: {}, "a step nobody wrote a template for", retries=0))
    obj = build_pipeline(steps).to_dict()
    assert structure_problems(obj, steps) == [] and step_problems(obj, steps) == []
    tasks = templates_by_name(obj)["daily"]["dag"]["tasks"]
    order = [n for n in dag_order(tasks) if n != "date"]
    assert order[:5] == ["ingest", "validate", "features", "audit", "train"]
    audit = templates_by_name(obj)["audit"]
    assert audit["container"]["args"][:3] == ["pipeline", "step", "audit"]
    assert audit["retryStrategy"]["limit"] == "0"


def test_the_data_contract_runs_between_ingest_and_features_and_a_breach_is_not_retried() -> None:
    tasks = {t["name"]: t for t in templates_by_name(template())["daily"]["dag"]["tasks"]}
    assert tasks["validate"]["depends"] == "ingest.Succeeded"
    assert tasks["features"]["depends"] == "validate.Succeeded"
    # A broken contract exits 1 (reco.contract.ContractError is a clear data error): Argo does not retry it.
    retry = templates_by_name(template())["validate"]["retryStrategy"]
    assert retry["expression"] == 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != 1'


def test_every_task_runs_its_step_through_the_cli_with_one_date() -> None:
    obj = template()
    by_name = templates_by_name(obj)
    for task in by_name["daily"]["dag"]["tasks"]:
        if task["name"] == "date":
            assert task["template"] == "resolve-date"
            continue
        step = task["name"].removesuffix("-gpu")
        container = by_name[task["template"]]["container"]
        assert container["command"] == ["reco"]
        assert container["args"][:4] == ["pipeline", "step", step, "--date"]
        args = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        assert args["date"] == "{{tasks.date.outputs.parameters.date}}"


def test_retries_deadlines_and_security_for_each_step() -> None:
    obj = template()
    spec = obj["spec"]
    by_name = templates_by_name(obj)
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["serviceAccountName"] == platform().pipeline_service_account
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["podGC"]["strategy"] and spec["ttlStrategy"]["secondsAfterFailure"] > 0
    assert spec["onExit"] == "exit-handler"
    for step in STEPS:
        t = by_name[step.name]
        retry = t["retryStrategy"]
        assert retry["limit"] == str(step.retries) and retry["retryPolicy"] == "Always"
        assert retry["backoff"]["duration"] == "5m" and retry["backoff"]["factor"] == "2"
        # Exit code 1 (a clear data error) is not retried; errors and other codes are.
        assert retry["expression"] == 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != 1'
        assert 0 < t["activeDeadlineSeconds"] <= 3600
        container = t["container"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", platform().workdir["mount_path"]}
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RECO_WORKDIR"]["value"] == platform().workdir["mount_path"]
        assert env["RECO_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == platform().secret("redis")["name"]


def test_the_gpu_variant_uses_the_gpu_pool_named_in_platform_yaml() -> None:
    by_name = templates_by_name(template())
    pool = platform().gpu_pool
    gpu, cpu = by_name["train-gpu"], by_name["train"]
    assert gpu["nodeSelector"] == {**pool["labels"], pool["accelerator_label"]: pool["accelerator"]}
    assert gpu["tolerations"] == [{"key": pool["taint"]["key"], "operator": "Equal", "value": pool["taint"]["value"],
                                   "effect": pool["taint"]["effect"]}]  # fmt: skip
    assert gpu["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in cpu["container"]["resources"]["limits"] and "tolerations" not in cpu
    assert cpu["nodeSelector"] == platform().cpu_pool["labels"]
    env = {e["name"]: e.get("value") for e in gpu["container"]["env"]}
    assert env["RECO_TRAIN_DEVICE"] == "gpu"
    tasks = {t["name"]: t for t in by_name["daily"]["dag"]["tasks"]}
    assert tasks["train-gpu"]["when"] == "{{inputs.parameters.train-device}} == gpu"
    assert tasks["train"]["when"] == "{{inputs.parameters.train-device}} == cpu"
    assert tasks["evaluate"]["depends"] == "train.Succeeded || train-gpu.Succeeded"


def test_outputs_and_the_monitor_steps_secrets() -> None:
    by_name = templates_by_name(template())
    outputs = {t: [p["name"] for p in by_name[t].get("outputs", {}).get("parameters", [])] for t in by_name}
    assert outputs["register"] == ["model-version", "gate-decision"]
    assert outputs["monitor"] == ["drift-share", "retrain-recommended"]
    monitor_env = {e["name"]: e for e in by_name["monitor"]["container"]["env"]}
    assert monitor_env["RECO_ARGO_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == platform().secret("argo")["name"]
    assert "RECO_ALERT_WEBHOOK_URL" in monitor_env
    assert "RECO_ARGO_TOKEN" not in {e["name"] for e in by_name["train"]["container"]["env"]}


def test_the_cron_runs_the_template_daily_at_three_utc() -> None:
    spec = build_cron().to_dict()["spec"]
    assert spec["schedules"] == ["0 3 * * *"] and spec["timezone"] == "UTC"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] > 0 and spec["failedJobsHistoryLimit"] > 0
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "reco-pipeline"}
    # The date is computed in the workflow (by its first task), not frozen at render time.
    params = {p["name"]: p for p in template()["spec"]["arguments"]["parameters"]}
    assert params["date"]["value"] == "" and params["train-device"]["enum"] == ["gpu", "cpu"]


def test_backfill_runs_the_dates_in_order_with_a_parallelism_limit() -> None:
    obj = build_backfill(dt.date(2026, 11, 1), dt.date(2026, 11, 5), parallelism=2).to_dict()
    assert obj["spec"]["parallelism"] == 2 and structure_problems(obj) == []
    assert roundtrip_differences(obj) == []
    tasks = {t["name"]: t for t in templates_by_name(obj)["backfill"]["dag"]["tasks"]}
    assert list(tasks) == [f"d-2026-11-0{k}" for k in range(1, 6)]
    assert "depends" not in tasks["d-2026-11-01"] and "depends" not in tasks["d-2026-11-02"]
    assert tasks["d-2026-11-03"]["depends"] == "d-2026-11-01"
    assert tasks["d-2026-11-05"]["templateRef"] == {"name": "reco-pipeline", "template": "daily"}
    assert {p["name"]: p["value"] for p in tasks["d-2026-11-04"]["arguments"]["parameters"]}["date"] == "2026-11-04"
    with pytest.raises(ValueError, match="after"):
        build_backfill(dt.date(2026, 11, 5), dt.date(2026, 11, 1))


def test_names_come_from_platform_yaml() -> None:
    """The service account document and every reference use the names written once in platform.yaml."""
    names = platform()
    sa, _role, binding = documents()["serviceaccount.yaml"]
    assert sa["metadata"]["name"] == names.pipeline_service_account
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith(names.pipeline_service_account)
    assert binding["subjects"][0]["name"] == names.pipeline_service_account
    claims = {v["persistentVolumeClaim"]["claimName"] for t in template()["spec"]["templates"]
              for v in t.get("volumes", []) if "persistentVolumeClaim" in v}  # fmt: skip
    assert claims == {names.workdir["claim"]}
    assert dataclasses.is_dataclass(STEPS[0])


def test_a_pipeline_pod_settings_put_everything_on_the_mounted_workdir(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings side of "where the workdir lives in a pod": the env of the rendered train template (secrets
    and config maps stood in) gives a workdir on the bucket's mount, the Feast registry beside the lake, Redis
    (TLS, AUTH) as the online store and MLflow's server as tracking URI — no path outside the mount."""
    from reco.featurestore import repo_config
    from reco.settings import Settings

    container = templates_by_name(template())["train"]["container"]
    stand_ins = {"RECO_REDIS_URL": "rediss://:pw@10.0.0.3:6378/0", "RECO_MLFLOW_TRACKING_URI": "http://mlflow.reco:5000"}
    for item in container["env"]:
        monkeypatch.setenv(item["name"], item.get("value", stand_ins.get(item["name"], "")))
    settings = Settings()
    mount = Path(platform().workdir["mount_path"])
    assert settings.environment == "gke" and settings.workdir == mount
    for path in (settings.lake_dir, settings.features_dir, settings.feast_dir, settings.runs_dir):
        assert path.is_relative_to(mount)
    assert settings.tracking_uri == "http://mlflow.reco:5000"
    config = repo_config(settings)
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "10.0.0.3:6378,db=0,password=pw,ssl=true"
    assert str(config.registry.path).startswith(str(mount / "feast"))
