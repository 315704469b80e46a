"""The daily training DAG on Argo Workflows, built from ``reco.pipeline.STEPS``.

* ``reco-pipeline`` (WorkflowTemplate): parameters ``date`` (empty: yesterday as of the workflow's
  creation, resolved by the first task so every task sees one date), ``train-device`` (``gpu`` | ``cpu``)
  and ``retrain`` (a training window in days for a drift-triggered retraining; ``0``: a normal run). Its
  entry template ``daily`` is a DAG: ``date``, then one task per step in the runner's order, each running
  the pipeline image as ``reco pipeline step NAME --date …``. A step with ``gpu=True`` has two tasks, one
  per device, of which the ``train-device`` parameter runs exactly one; the GPU one lands on the GPU node
  pool (its labels, its taint tolerated, ``nvidia.com/gpu: 1``).
* ``reco-daily`` (CronWorkflow): 03:00 UTC, one run at a time, referencing the template.
* ``backfill(first, last)``: one Workflow running ``daily`` for each date in order, at most ``parallelism``
  dates at once.

Adding a step to ``reco.pipeline.STEPS`` adds its task here with nothing else to edit (resources and
deadlines fall back to defaults). Retries follow the CLI's exit codes: 1 is a clear error of the input or
the data (not retried), anything else — 75 for an unexpected failure, a pod error, an OOM kill — is retried
after 5 min, then with exponential backoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from hera.workflows import (
    DAG,
    ConfigMapEnv,
    Container,
    CronWorkflow,
    EmptyDirVolume,
    Env,
    ExistingVolume,
    Parameter,
    RetryStrategy,
    SecretEnv,
    Task,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import (
    Backoff,
    Capabilities,
    Metadata,
    PodGC,
    PodSecurityContext,
    ResourceRequirements,
    SeccompProfile,
    SecurityContext,
    TemplateRef,
    Toleration,
    TTLStrategy,
    ValueFrom,
    WorkflowTemplateRef,
)

from reco.pipeline import STEPS, Step
from workflows.names import platform

TEMPLATE_NAME = "reco-pipeline"
CRON_NAME = "reco-daily"
ENTRY = "daily"
DATE_TASK = "date"
EXIT_HANDLER = "exit-handler"
OUTPUTS_DIR = "/tmp/outputs"
# Exit codes of the reco CLI (reco.cli): 1 = clear error of input or data, the same on every attempt.
EXIT_CLEAR_ERROR = 1
WORKFLOW_DEADLINE_S = 2 * 3600
RUN_AS = 10001


@dataclass(frozen=True)
class Sizing:
    """Requests = limits for memory (no overcommit of a batch job); CPU limit 2x the request."""

    cpu: str
    memory: str
    deadline_s: int


# Measured on the benchmark's 1M-event day (README "Benchmarks"), with headroom; a new step gets DEFAULT.
SIZING: dict[str, Sizing] = {
    "ingest": Sizing("1", "2Gi", 1800),
    "validate": Sizing("1", "2Gi", 900),  # pandera over the day in pandas: ~3 s, < 1 GiB at 1M events
    "features": Sizing("1", "4Gi", 1800),
    "train": Sizing("2", "8Gi", 3600),
    "evaluate": Sizing("1", "4Gi", 1800),
    "register": Sizing("250m", "1Gi", 600),
    "deploy": Sizing("500m", "2Gi", 600),
    "monitor": Sizing("1", "4Gi", 1800),
}
DEFAULT = Sizing("1", "4Gi", 1800)


def _cpu_limit(cpu: str) -> str:
    return f"{int(cpu[:-1]) * 2}m" if cpu.endswith("m") else str(int(float(cpu) * 2))


def _resources(sizing: Sizing, gpus: int = 0) -> ResourceRequirements:
    limits = {"cpu": _cpu_limit(sizing.cpu), "memory": sizing.memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return ResourceRequirements(requests={"cpu": sizing.cpu, "memory": sizing.memory}, limits=limits)


def _container_security() -> SecurityContext:
    return SecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=Capabilities(drop=["ALL"]),
    )


def _pod_security() -> PodSecurityContext:
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS,
        run_as_group=RUN_AS,
        fs_group=RUN_AS,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def _env(*, argo: bool = False, alerts: bool = False, gitops: bool = False) -> list[Env | SecretEnv | ConfigMapEnv]:
    """What every pipeline pod reads: the workdir on the FUSE mount, MLflow's server, Redis (Feast online)."""
    names = platform()
    config = names.config_map("pipeline")
    redis = names.secret("redis")
    env: list[Env | SecretEnv | ConfigMapEnv] = [
        Env(name="RECO_ENVIRONMENT", value="gke"),
        Env(name="RECO_WORKDIR", value=names.workdir["mount_path"]),
        Env(name="HOME", value="/tmp"),  # MLflow, Feast and numba write caches under $HOME
        Env(name="OPENBLAS_NUM_THREADS", value="1"),
        ConfigMapEnv(name="RECO_MLFLOW_TRACKING_URI", config_map_name=config["name"], config_map_key=config["mlflow_key"]),
        SecretEnv(name="RECO_REDIS_URL", secret_name=redis["name"], secret_key=redis["url_key"]),
    ]
    if argo:
        secret = names.secret("argo")
        env += [
            SecretEnv(name="RECO_ARGO_SERVER_URL", secret_name=secret["name"], secret_key=secret["url_key"]),
            SecretEnv(name="RECO_ARGO_TOKEN", secret_name=secret["name"], secret_key=secret["token_key"]),
            Env(name="RECO_ARGO_NAMESPACE", value=names.namespace),
        ]
    if gitops:
        # The GitOps repository's URL (cloned per release: a pod has no checkout) and a token that may push.
        secret = names.secret("gitops")
        env += [
            ConfigMapEnv(name="RECO_GITOPS_REPO", config_map_name=config["name"], config_map_key=config["gitops_repo_key"]),
            SecretEnv(name="RECO_GITOPS_TOKEN", secret_name=secret["name"], secret_key=secret["token_key"]),
        ]
    if alerts:
        secret = names.secret("alerts")
        env.append(
            SecretEnv(name="RECO_ALERT_WEBHOOK_URL", secret_name=secret["name"], secret_key=secret["webhook_key"])
        )
    return env


def _volumes() -> list[EmptyDirVolume | ExistingVolume]:
    workdir = platform().workdir
    return [
        EmptyDirVolume(name="tmp", mount_path="/tmp"),
        ExistingVolume(name="workdir", claim_name=workdir["claim"], mount_path=workdir["mount_path"]),
    ]


def retry_unless_clear_error(limit: int, *, first: str = "5m", cap: str = "1h") -> RetryStrategy:
    """Retry up to ``limit`` times with exponential backoff (``first``, doubling, at most ``cap``), except after a
    clear error (exit 1: the same input fails the same way). Argo evaluates the expression after each failed
    attempt; a pod error (evicted, OOM-killed) has no exit code of ours and is retried."""
    return RetryStrategy(
        limit=str(limit),
        retry_policy="Always",
        expression=f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) != {EXIT_CLEAR_ERROR}',
        backoff=Backoff(duration=first, factor="2", max_duration=cap),
    )


def _retry(step: Step) -> RetryStrategy:
    return retry_unless_clear_error(step.retries)


def _step_template(step: Step, *, gpu: bool) -> Container:
    sizing = SIZING.get(step.name, DEFAULT)
    names = platform()
    pool = names.gpu_pool if gpu else names.cpu_pool
    selector = dict(pool["labels"])
    tolerations = None
    if gpu:
        selector[pool["accelerator_label"]] = pool["accelerator"]
        taint = pool["taint"]
        tolerations = [Toleration(key=taint["key"], operator="Equal", value=taint["value"], effect=taint["effect"])]
    env = _env(argo=step.name == "monitor", alerts=step.name == "monitor", gitops=step.name == "deploy")
    env.append(Env(name="RECO_TRAIN_DEVICE", value="gpu" if gpu else "cpu"))
    return Container(
        name=f"{step.name}-gpu" if gpu else step.name,
        image=names.pipeline_image,
        command=["reco"],
        args=[
            "pipeline", "step", step.name,
            "--date", "{{inputs.parameters.date}}",
            "--retrain-window", "{{inputs.parameters.retrain}}",
            "--outputs", OUTPUTS_DIR,
        ],
        inputs=[Parameter(name="date"), Parameter(name="retrain")],
        outputs=[
            Parameter(name=key.replace("_", "-"), value_from=ValueFrom(path=f"{OUTPUTS_DIR}/{key}", default=""))
            for key in step.outputs
        ],
        env=env,
        resources=_resources(sizing, gpus=1 if gpu else 0),
        security_context=_container_security(),
        volumes=_volumes(),
        active_deadline_seconds=sizing.deadline_s,
        retry_strategy=_retry(step),
        node_selector=selector,
        tolerations=tolerations,
    )


def _resolve_date_template() -> Container:
    return Container(
        name="resolve-date",
        image=platform().pipeline_image,
        command=["reco"],
        args=[
            "pipeline", "resolve-date",
            "--date", "{{inputs.parameters.date}}",
            "--created", "{{workflow.creationTimestamp}}",
            "--out", f"{OUTPUTS_DIR}/date",
        ],
        inputs=[Parameter(name="date")],
        outputs=[Parameter(name="date", value_from=ValueFrom(path=f"{OUTPUTS_DIR}/date"))],
        resources=_resources(Sizing("100m", "256Mi", 300)),
        security_context=_container_security(),
        volumes=[EmptyDirVolume(name="tmp", mount_path="/tmp")],
        active_deadline_seconds=300,
        node_selector=dict(platform().cpu_pool["labels"]),
    )


def _exit_template() -> Container:
    config = platform().config_map("pipeline")
    return Container(
        name=EXIT_HANDLER,
        image=platform().pipeline_image,
        command=["reco"],
        args=[
            "pipeline", "notify-exit",
            "--workflow", "{{workflow.name}}",
            "--status", "{{workflow.status}}",
            "--failures", "{{workflow.failures}}",
            "--date", "{{workflow.parameters.date}}",
            "--link", "$(ARGO_UI_URL)/workflows/{{workflow.namespace}}/{{workflow.name}}",
        ],
        env=[
            *_env(alerts=True),
            ConfigMapEnv(name="ARGO_UI_URL", config_map_name=config["name"], config_map_key=config["argo_ui_key"]),
        ],
        resources=_resources(Sizing("100m", "512Mi", 300)),
        security_context=_container_security(),
        volumes=[EmptyDirVolume(name="tmp", mount_path="/tmp")],
        active_deadline_seconds=300,
        node_selector=dict(platform().cpu_pool["labels"]),
    )


def _task_args(step_input: str) -> list[Parameter]:
    return [Parameter(name="date", value=step_input), Parameter(name="retrain", value="{{inputs.parameters.retrain}}")]


def _build_daily_dag(steps: Sequence[Step]) -> None:
    """Inside a workflow context: the step templates and the ``daily`` DAG over them."""
    resolve = _resolve_date_template()
    templates = {s.name: _step_template(s, gpu=False) for s in steps}
    gpu_templates = {s.name: _step_template(s, gpu=True) for s in steps if s.gpu}
    date = f"{{{{tasks.{DATE_TASK}.outputs.parameters.date}}}}"
    with DAG(
        name=ENTRY,
        inputs=[Parameter(name="date"), Parameter(name="train-device"), Parameter(name="retrain")],
    ):
        Task(name=DATE_TASK, template=resolve, arguments=[Parameter(name="date", value="{{inputs.parameters.date}}")])
        previous = [DATE_TASK]
        for step in steps:
            depends = " || ".join(f"{p}.Succeeded" for p in previous)
            if step.name in gpu_templates:
                device = "{{inputs.parameters.train-device}}"
                Task(name=step.name, template=templates[step.name], arguments=_task_args(date), depends=depends,
                     when=f"{device} == cpu")  # fmt: skip
                Task(name=f"{step.name}-gpu", template=gpu_templates[step.name], arguments=_task_args(date),
                     depends=depends, when=f"{device} == gpu")  # fmt: skip
                previous = [step.name, f"{step.name}-gpu"]
            else:
                Task(name=step.name, template=templates[step.name], arguments=_task_args(date), depends=depends)
                previous = [step.name]


def _spec() -> dict[str, object]:
    """Workflow-level settings shared by the template and a backfill."""
    return {
        "service_account_name": platform().pipeline_service_account,
        "active_deadline_seconds": WORKFLOW_DEADLINE_S,
        "security_context": _pod_security(),
        # Pods of a successful run are deleted at once; a failed run keeps its pods (and logs) until its TTL.
        "pod_gc": PodGC(strategy="OnWorkflowSuccess"),
        "ttl_strategy": TTLStrategy(seconds_after_success=3 * 86400, seconds_after_failure=14 * 86400),
        # GKE's Cloud Storage FUSE CSI driver injects its sidecar into pods annotated so.
        "pod_metadata": Metadata(annotations={"gke-gcsfuse/volumes": "true"}),
        "labels": {"app.kubernetes.io/part-of": "reco-articles"},
    }


def build_pipeline(steps: Sequence[Step] = STEPS) -> WorkflowTemplate:
    """The ``reco-pipeline`` WorkflowTemplate over ``steps`` (default: the runner's ``STEPS``)."""
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        namespace=platform().namespace,
        entrypoint=ENTRY,
        arguments=[
            Parameter(name="date", value="", description="Run date YYYY-MM-DD; empty: yesterday (UTC) as of creation"),
            Parameter(name="train-device", value="gpu", enum=["gpu", "cpu"], description="Where the train step runs"),
            Parameter(name="retrain", value="0", description="Retraining window in days (drift-triggered); 0: none"),
        ],
        on_exit=EXIT_HANDLER,
        **_spec(),  # type: ignore[arg-type]
    ) as template:
        _build_daily_dag(steps)
        _exit_template()
    return template


def build_cron() -> CronWorkflow:
    """``reco-daily``: the template at 03:00 UTC, never two at once, missed runs started within an hour."""
    return CronWorkflow(
        name=CRON_NAME,
        namespace=platform().namespace,
        schedules=["0 3 * * *"],
        timezone="UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=7,
        failed_jobs_history_limit=14,
        workflow_template_ref=WorkflowTemplateRef(name=TEMPLATE_NAME),
        labels={"app.kubernetes.io/part-of": "reco-articles"},
    )


def build_backfill(first: dt.date, last: dt.date, *, parallelism: int = 1, train_device: str = "gpu") -> Workflow:
    """One Workflow running the template's ``daily`` DAG for each date of [first, last], oldest first;
    date i waits for date i - ``parallelism``, so at most that many run at once, started in order."""
    if last < first:
        raise ValueError(f"--from {first} is after --to {last}")
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    spec = _spec()
    spec["active_deadline_seconds"] = WORKFLOW_DEADLINE_S * len(days)
    with Workflow(
        generate_name=f"{TEMPLATE_NAME}-backfill-",
        namespace=platform().namespace,
        entrypoint="backfill",
        parallelism=parallelism,
        on_exit=EXIT_HANDLER,
        arguments=[Parameter(name="date", value=f"{first}..{last}")],
        **spec,  # type: ignore[arg-type]
    ) as workflow:
        _exit_template()
        with DAG(name="backfill"):
            for k, day in enumerate(days):
                Task(
                    name=f"d-{day.isoformat()}",
                    template_ref=TemplateRef(name=TEMPLATE_NAME, template=ENTRY),
                    arguments=[
                        Parameter(name="date", value=day.isoformat()),
                        Parameter(name="train-device", value=train_device),
                        Parameter(name="retrain", value="0"),
                    ],
                    depends=f"d-{days[k - parallelism].isoformat()}" if k >= parallelism else None,
                )
    return workflow
